//! Dynamic quantization, for transformer-style models whose activation
//! ranges vary too much per input for static ranges: MatMul weights become
//! int8 per output column, activations are quantized at run time.
//!
//!   x ─ DynamicQuantizeLinear ─ (x_q, x_scale, x_zp)
//!   MatMulInteger(x_q, w_q, x_zp, w_zp) ─ Cast(float) ─ Mul(x_scale × w_scale) ─ y
//!
//! No calibration data is needed; the accuracy gate still applies.

use std::collections::HashSet;

use dsmil_proto::onnx::ModelProto;
use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;

use super::CompressError;
use super::graph::{cast_to_float, default_opset, floats, node, tensor};
use super::params::quantize_per_channel;
use super::qdq::float_values;

/// Rewrites every MatMul with a constant rank-2 weight; returns the model and
/// the names of the rewritten nodes.
pub fn rewrite(model: &ModelProto) -> Result<(ModelProto, Vec<String>), CompressError> {
    let opset = default_opset(model);
    if opset < 11 {
        return Err(CompressError::Opset(opset));
    }
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or(CompressError::NoGraph)?;
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut inits = Vec::new();
    let mut rewritten = Vec::new();
    // Dynamic quantization of one activation is shared by its consumers.
    let mut quantized_inputs = HashSet::new();
    for n in std::mem::take(&mut graph.node) {
        let weight = (n.op_type() == "MatMul" && n.domain().is_empty())
            .then(|| n.input.get(1))
            .flatten()
            .and_then(|w| graph.initializer.iter().find(|t| t.name() == w))
            .filter(|w| w.dims.len() == 2)
            .and_then(|w| float_values(w).map(|v| (w.clone(), v)));
        let Some((w, values)) = weight else {
            nodes.push(n);
            continue;
        };
        let (x, y, name) = (n.input[0].clone(), n.output[0].clone(), n.name().to_owned());
        let dims: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
        let (q, scales) = quantize_per_channel(&values, &dims, 1);
        let wn = w.name().to_owned();
        let columns = vec![dims[1] as i64];
        inits.push(tensor(
            &format!("{wn}_dq_quantized"),
            w.dims.clone(),
            OnnxType::Int8,
            q.iter().map(|&v| v as u8).collect(),
        ));
        inits.push(tensor(
            &format!("{wn}_dq_zero_point"),
            columns.clone(),
            OnnxType::Int8,
            vec![0; dims[1]],
        ));
        inits.push(floats(&format!("{wn}_dq_scale"), columns, &scales));
        if quantized_inputs.insert(x.clone()) {
            let outputs = vec![format!("{x}_dq"), format!("{x}_dq_scale"), format!("{x}_dq_zero_point")];
            nodes.push(node(
                "DynamicQuantizeLinear",
                &format!("{x}_DynamicQuantizeLinear"),
                vec![x.clone()],
                outputs,
                None,
            ));
        }
        let int_inputs = vec![
            format!("{x}_dq"),
            format!("{wn}_dq_quantized"),
            format!("{x}_dq_zero_point"),
            format!("{wn}_dq_zero_point"),
        ];
        nodes.push(node(
            "MatMulInteger",
            &format!("{name}_MatMulInteger"),
            int_inputs,
            vec![format!("{name}_int32")],
            None,
        ));
        nodes.push(cast_to_float(
            &format!("{name}_Cast"),
            format!("{name}_int32"),
            format!("{name}_float"),
        ));
        let scales_in = vec![format!("{x}_dq_scale"), format!("{wn}_dq_scale")];
        nodes.push(node(
            "Mul",
            &format!("{name}_scales"),
            scales_in,
            vec![format!("{name}_scale")],
            None,
        ));
        let rescale_in = vec![format!("{name}_float"), format!("{name}_scale")];
        nodes.push(node("Mul", &format!("{name}_rescale"), rescale_in, vec![y], None));
        rewritten.push(name);
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
    let used: HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.initializer.retain(|t| used.contains(t.name()));
    Ok((model, rewritten))
}
