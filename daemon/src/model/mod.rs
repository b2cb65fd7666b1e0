//! Model formats: reading an uploaded model, checking its structure and
//! describing it (inputs, outputs, operators, parameter count) before any
//! runtime sees it.
//!
//! Pure functions over bytes: no runtime, no store, no async. A refusal lists
//! every problem found, each naming the node or tensor it concerns.

mod onnx;
mod onnx_ops;
mod openvino_formats;
mod operators;
mod security;

pub use onnx::{ModelInfo, OperatorRef, inspect_onnx};
pub use openvino_formats::{is_tflite, pack_ir, unpack_ir};
pub use operators::check_operators;

/// Describes a stored model of `format` (an IR is stored packed, see
/// [`pack_ir`]).
pub fn inspect(format: Format, bytes: &[u8]) -> Result<ModelInfo, ModelError> {
    match format {
        Format::Onnx => inspect_onnx(bytes),
        Format::Ir => openvino_formats::inspect_ir(bytes),
        Format::Tflite => openvino_formats::inspect_tflite(bytes),
    }
}

pub use dsmil_kinds::Format;

/// The format a request or record names ("" is ONNX).
pub fn format_named(name: &str) -> Result<Format, ModelError> {
    match name {
        "" => Ok(Format::Onnx),
        name => name.parse().map_err(|_| ModelError::UnsupportedFormat(name.to_owned())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model format {0:?} is not supported (supported: onnx, ir, tflite)")]
    UnsupportedFormat(String),
    #[error("not an OpenVINO IR: {0}")]
    NotIr(String),
    #[error("not a TensorFlow Lite model: {0}")]
    NotTflite(String),
    #[error("not an ONNX model (the bytes do not decode as onnx.ModelProto: {0}); is the file truncated?")]
    NotOnnx(String),
    /// Weights of a training framework, not a model a runtime can run.
    #[error(
        "this is {0}, not a model dsmil can serve: export it to ONNX first, e.g. \
         `torch.onnx.export(model, example_input, \"model.onnx\", opset_version=17, dynamic_axes={{...}})` \
         (or `optimum-cli export onnx --model DIR out/` for a Hugging Face checkpoint), then deploy model.onnx"
    )]
    TrainingCheckpoint(&'static str),
    #[error("invalid ONNX model, {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
}
