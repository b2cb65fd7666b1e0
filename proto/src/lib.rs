//! Wire types for dsmil: the KServe v2 inference protocol (package `inference`),
//! the daemon's control API (`dsmil.v1`) and the ONNX IR (`onnx`), generated
//! at build time from the .proto files in this crate. No logic lives here:
//! conversions to the daemon's domain types belong to the daemon's `serve`
//! module, so that this crate stays a plain contract both binaries share.

/// The encoded `FileDescriptorSet` of every .proto above, for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dsmil_descriptor.bin"));

pub mod inference {
    tonic::include_proto!("inference");
}

pub mod control {
    tonic::include_proto!("dsmil.v1");
}

pub mod onnx {
    tonic::include_proto!("onnx");
}
