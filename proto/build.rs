//! Generates the prost/tonic code from the .proto files beside this crate.
//! protoc comes from the protoc-bin-vendored crate, so a build needs no system
//! protoc and downloads nothing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let protos = [
        "inference/grpc_service.proto",
        "inference/model_config.proto",
        "dsmil/v1/control.proto",
        "onnx/onnx.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // The descriptor set gRPC server reflection serves (`FILE_DESCRIPTOR_SET`).
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("dsmil_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptors)
        .build_server(true)
        .build_client(true)
        // dsmilctl prints control responses as JSON for scripts.
        .type_attribute(".dsmil.v1", "#[derive(serde::Serialize)]")
        // A tensor's raw bytes decode as slices of the received message and
        // encode from the answer's own buffer: no copy of an image-sized
        // tensor into a fresh Vec on either side.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_protos(&protos, &["."])?;
    Ok(())
}
