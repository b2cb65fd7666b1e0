//! Which ops and tensors the static rewrite touches: the ops with weights
//! to quantize, the ops kept in the integer domain between them, the
//! activations calibration must measure for them, each weight's per-channel
//! axis, and the multiply-accumulates the report counts. Lookups only: this
//! file never changes a graph.

use std::collections::{BTreeSet, HashMap, HashSet};

use dsmil_proto::onnx::{GraphProto, NodeProto, TensorProto};

use super::read::attr_i;

/// Ops whose weights are quantized.
pub const WEIGHT_OPS: [&str; 4] = ["Conv", "ConvTranspose", "MatMul", "Gemm"];
/// Ops kept in the integer domain between quantized ops (the runtimes have
/// integer kernels for them, or they only move data). The elementwise ones
/// are the set ONNX Runtime's own quantizer wraps, so its QDQ fusions
/// (QLinearAdd, QLinearMul, QLinearSigmoid, ...) find the same shapes here:
/// left in float between quantized neighbours, each would cost a
/// dequantize and a quantize per call.
pub const PASS_OPS: [&str; 17] = [
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Add",
    "Mul",
    "Div",
    "Sigmoid",
    "HardSigmoid",
    "Softmax",
    "Concat",
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Clip",
];

/// The activations whose ranges calibration must find: non-initializer
/// inputs and outputs of weight and pass-through ops.
pub fn activation_candidates(graph: &GraphProto) -> Vec<String> {
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let mut out = BTreeSet::new();
    for node in &graph.node {
        let op = node.op_type();
        if !WEIGHT_OPS.contains(&op) && !PASS_OPS.contains(&op) {
            continue;
        }
        if !node.domain().is_empty() {
            continue;
        }
        let inputs: Vec<&String> = match op {
            // Conv/Gemm: only the data input is an activation; MatMul may have two.
            "Conv" | "ConvTranspose" | "Gemm" => node.input.iter().take(1).collect(),
            "Reshape" => node.input.iter().take(1).collect(),
            _ => node.input.iter().collect(),
        };
        for name in inputs.into_iter().chain(node.output.iter().take(1)) {
            if !name.is_empty() && !initializers.contains(name.as_str()) {
                out.insert(name.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// A weight's per-channel axis for its op, or None to leave it in float.
pub(super) fn weight_axis(op: &NodeProto, weight: &TensorProto) -> Option<usize> {
    let rank = weight.dims.len();
    match op.op_type() {
        "Conv" if rank >= 3 => Some(0),
        "ConvTranspose" if rank >= 3 && attr_i(op, "group", 1) == 1 => Some(1),
        "MatMul" if rank == 2 => Some(1),
        "Gemm" if rank == 2 => Some(if attr_i(op, "transB", 0) == 1 { 0 } else { 1 }),
        _ => None,
    }
}

/// Multiply-accumulates per sample of a weight op: its weight elements times
/// the output positions per output channel (from the output shape seen in
/// calibration). 0 when the weight is not a constant or the shape unknown.
pub fn macs(graph: &GraphProto, node: &NodeProto, shapes: &HashMap<String, Vec<i64>>) -> u64 {
    let Some(w) = node
        .input
        .get(1)
        .and_then(|w| graph.initializer.iter().find(|t| t.name() == w))
    else {
        return 0;
    };
    let weights: u64 = w.dims.iter().map(|&d| d.max(0) as u64).product();
    // Without the output's shape (dynamic quantization calibrates nothing),
    // one output position: each weight used once, enough to weigh layers
    // against each other.
    let (Some(axis), Some(out)) = (weight_axis(node, w), node.output.first().and_then(|o| shapes.get(o))) else {
        return weights;
    };
    let outputs: u64 = out.iter().map(|&d| d.max(0) as u64).product();
    let channels = w.dims.get(axis).copied().unwrap_or(1).max(1) as u64;
    weights * (outputs / channels)
}
