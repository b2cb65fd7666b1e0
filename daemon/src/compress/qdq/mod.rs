//! The static QDQ rewrite. Activations feeding or leaving a quantized op get
//! a QuantizeLinear/DequantizeLinear pair; weights of Conv, ConvTranspose,
//! MatMul and Gemm become int8 initializers behind a per-channel
//! DequantizeLinear (axis chosen per op and transposition); biases become
//! int32 at input scale × weight scale. ONNX Runtime fuses these patterns
//! into integer kernels, and OpenVINO's ONNX frontend reads them as INT8.
//!
//! `rewrite` runs, in order: BatchNormalization folding (`batch_norm`),
//! MatMul + bias into Gemm (`matmul_bias`), division by a constant into
//! multiplication by its reciprocal (`div_constant`), Relu/Clip absorption and ranges
//! shared through data-movement ops (`activations`), then the QDQ rewrite
//! itself (`rewrite`). `ops` says which ops and tensors take part; `read`
//! reads attributes and float initializers. Pure graph work on a copy of the
//! model, no runtime and no I/O. Every preparation pass keeps what the float
//! graph computes, except that an absorbed Relu/Clip is left to the clamp of
//! the uint8 quantization after its producer.

mod activations;
mod batch_norm;
mod div_constant;
mod matmul_bias;
mod ops;
mod read;
mod rewrite;

pub use batch_norm::fold_batch_norms;
pub use ops::{PASS_OPS, WEIGHT_OPS, activation_candidates, macs};
pub use read::float_values;
pub use rewrite::{RewriteSummary, rewrite};
