//! Small builders for the graph rewrites (static QDQ and dynamic): tensors,
//! nodes, and a quantized constant behind its DequantizeLinear.

use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{AttributeProto, ModelProto, NodeProto, TensorProto, attribute_proto};

/// The model's default-domain (ai.onnx) opset; 0 if it imports none.
pub fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map_or(0, |o| o.version())
}

pub fn tensor(name: &str, dims: Vec<i64>, dtype: OnnxType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims,
        data_type: Some(dtype as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

pub fn floats(name: &str, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    tensor(
        name,
        dims,
        OnnxType::Float,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// A node; `axis`, when given, becomes its `axis` attribute.
pub fn node(op: &str, name: &str, inputs: Vec<String>, outputs: Vec<String>, axis: Option<i64>) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs,
        output: outputs,
        attribute: axis.map(|a| int_attribute("axis", a)).into_iter().collect(),
        ..Default::default()
    }
}

/// A Cast to float.
pub fn cast_to_float(name: &str, input: String, output: String) -> NodeProto {
    let mut cast = node("Cast", name, vec![input], vec![output], None);
    cast.attribute.push(int_attribute("to", OnnxType::Float as i64));
    cast
}

/// An integer constant (`raw`, of `dtype`, with `dims`) quantized per channel
/// along `axis` with `scales` and zero points of 0: its three initializers go
/// into `inits`; returns its DequantizeLinear node and that node's output.
pub fn dequantized_constant(
    base: &str,
    dims: Vec<i64>,
    dtype: OnnxType,
    raw: Vec<u8>,
    scales: &[f32],
    axis: i64,
    inits: &mut Vec<TensorProto>,
) -> (NodeProto, String) {
    let width = if dtype == OnnxType::Int32 { 4 } else { 1 };
    let channels = vec![scales.len() as i64];
    let names = [
        format!("{base}_quantized"),
        format!("{base}_scale"),
        format!("{base}_zero_point"),
    ];
    inits.push(tensor(&names[0], dims, dtype, raw));
    inits.push(floats(&names[1], channels.clone(), scales));
    inits.push(tensor(&names[2], channels, dtype, vec![0; scales.len() * width]));
    let output = format!("{base}_dequantized");
    let dq = node(
        "DequantizeLinear",
        &format!("{base}_DequantizeLinear"),
        names.to_vec(),
        vec![output.clone()],
        Some(axis),
    );
    (dq, output)
}
