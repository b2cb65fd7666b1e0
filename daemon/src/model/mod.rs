//! Model formats: reading an uploaded model, checking its structure and
//! describing it (inputs, outputs, operators, parameter count) before any
//! runtime sees it.
//!
//! Pure functions over bytes: no runtime, no store, no async. A refusal lists
//! every problem found, each naming the node or tensor it concerns.

mod onnx;
mod onnx_ops;
mod operators;
mod security;

pub use onnx::{ModelInfo, OperatorRef, inspect_onnx};
pub use operators::check_operators;

use std::fmt;

/// Formats a model upload can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Onnx,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format, ModelError> {
        match name {
            "" | "onnx" => Ok(Format::Onnx),
            other => Err(ModelError::UnsupportedFormat(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Onnx => "onnx",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model format {0:?} is not supported (supported: onnx)")]
    UnsupportedFormat(String),
    #[error("not an ONNX model (the bytes do not decode as onnx.ModelProto: {0}); is the file truncated?")]
    NotOnnx(String),
    #[error("invalid ONNX model, {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
}
