//! gRPC server reflection (v1 and v1alpha) for every service dsmild serves:
//! `inference.GRPCInferenceService`, `dsmil.v1.Control`, `grpc.health.v1.Health`
//! and reflection itself, so that grpcurl, Postman and grpcio-reflection list
//! and call them without the .proto files. It serves descriptors only: it
//! never answers for a model or a caller, so it asks no [`super::Gate`].

use tonic_reflection::server::{Builder, v1, v1alpha};

fn builder() -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(dsmil_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

// The descriptor sets are compiled into the binary by dsmil-proto's and
// tonic-health's build steps; one that does not decode is a build defect,
// caught by the test below, never a runtime condition.
const BUILT_IN: &str = "the descriptor sets built into dsmild decode";

/// grpc.reflection.v1.ServerReflection.
pub fn v1() -> v1::ServerReflectionServer<impl v1::ServerReflection> {
    builder().build_v1().expect(BUILT_IN)
}

/// grpc.reflection.v1alpha.ServerReflection (older grpcurl and grpcio).
pub fn v1alpha() -> v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection> {
    builder().build_v1alpha().expect(BUILT_IN)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_descriptor_sets_decode() {
        let _ = super::v1();
        let _ = super::v1alpha();
    }
}
