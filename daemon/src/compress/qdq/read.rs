//! Reading what an ONNX graph already holds: a node's integer and float
//! attributes (with the operator's default when absent) and a float
//! initializer's values, whether stored raw or typed. Shared by the passes
//! and by the dynamic rewrite; never builds or changes anything (the
//! builders are in `compress::graph`).

use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{NodeProto, TensorProto};

pub(super) fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.i)
        .unwrap_or(default)
}

pub(super) fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.f)
        .unwrap_or(default)
}

/// A float initializer's values.
pub fn float_values(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type() != OnnxType::Float as i32 {
        return None;
    }
    match &t.raw_data {
        Some(raw) => Some(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        ),
        None => Some(t.float_data.clone()),
    }
}
