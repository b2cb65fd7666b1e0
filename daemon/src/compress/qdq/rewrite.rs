//! The QDQ rewrite itself: runs the passes that prepare the float graph,
//! then puts a QuantizeLinear/DequantizeLinear pair after every quantized
//! activation, int8 weights and int32 biases behind per-channel
//! DequantizeLinear nodes, per-tensor quantized constants into integer Adds,
//! and drops the float weights nothing reads any more. It works on a copy:
//! the caller's model is never changed, and nodes the mixed-precision
//! fallback names keep float weights and inputs.

use std::collections::{HashMap, HashSet};

use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{ModelProto, NodeProto, TensorProto};

use super::activations::{fuse_activations, shared_ranges};
use super::batch_norm::fold_batch_norms;
use super::div_constant::divisions_to_products;
use super::matmul_bias::fuse_matmul_bias;
use super::ops::{WEIGHT_OPS, activation_candidates, weight_axis};
use super::read::{attr_f, float_values};
use crate::compress::calibrate::Range;
use crate::compress::graph::{default_opset, dequantized_constant, floats, node, tensor};
use crate::compress::params::{ActivationType, activation_params, quantize_bias, quantize_per_channel};
use crate::compress::{Calibration, CompressError};

/// What the rewrite did, for the report.
#[derive(Debug, Default, Clone)]
pub struct RewriteSummary {
    pub quantized_nodes: Vec<String>,
    pub quantized_activations: usize,
    pub folded_batch_norms: usize,
    /// Relu/Clip nodes absorbed by the quantization of their input.
    pub fused_activations: usize,
    /// MatMul + Add(bias) pairs made one Gemm.
    pub fused_biases: usize,
}

/// A float constant quantized per tensor with the activations' type and
/// its own range; returns its DequantizeLinear and that node's output.
fn quantized_operand(
    name: &str,
    dims: Vec<i64>,
    values: &[f32],
    kind: ActivationType,
    inits: &mut Vec<TensorProto>,
) -> (NodeProto, String) {
    let range = values.iter().fold(Range { min: 0.0, max: 0.0 }, |r, &v| Range {
        min: r.min.min(v),
        max: r.max.max(v),
    });
    let p = activation_params(range, kind);
    let (dtype, lo, hi) = match kind {
        ActivationType::U8Asymmetric => (OnnxType::Uint8, 0.0, 255.0),
        ActivationType::I8Symmetric => (OnnxType::Int8, -127.0, 127.0),
    };
    let raw = values
        .iter()
        .map(|&v| ((v / p.scale).round() + p.zero_point as f32).clamp(lo, hi) as i32 as u8)
        .collect();
    let base = format!("{name}_operand");
    let names = [
        format!("{base}_quantized"),
        format!("{base}_scale"),
        format!("{base}_zero_point"),
    ];
    inits.push(tensor(&names[0], dims, dtype, raw));
    inits.push(floats(&names[1], vec![], &[p.scale]));
    inits.push(tensor(&names[2], vec![], dtype, vec![p.zero_point as u8]));
    let output = format!("{base}_dequantized");
    let dq = node(
        "DequantizeLinear",
        &format!("{base}_DequantizeLinear"),
        names.to_vec(),
        vec![output.clone()],
        None,
    );
    (dq, output)
}

/// Rewrites `model` (float) into QDQ form with the calibrated `ranges`.
/// Nodes named in `keep_float` keep float weights and inputs (mixed precision).
pub fn rewrite(
    model: &ModelProto,
    calibration: &Calibration,
    kind: ActivationType,
    keep_float: &HashSet<String>,
) -> Result<(ModelProto, RewriteSummary), CompressError> {
    let ranges = &calibration.ranges;
    let opset = default_opset(model);
    if opset < 13 {
        return Err(CompressError::Opset(opset));
    }
    let mut model = model.clone();
    let graph = model.graph.as_mut().ok_or(CompressError::NoGraph)?;
    let mut summary = RewriteSummary {
        folded_batch_norms: fold_batch_norms(graph),
        fused_biases: fuse_matmul_bias(graph, &calibration.shapes, keep_float),
        ..Default::default()
    };
    divisions_to_products(graph);

    let (act_type, zp_bytes): (OnnxType, fn(i32) -> u8) = match kind {
        ActivationType::U8Asymmetric => (OnnxType::Uint8, |z| z as u8),
        ActivationType::I8Symmetric => (OnnxType::Int8, |z| z as i8 as u8),
    };
    let excluded: HashSet<String> = graph
        .node
        .iter()
        .filter(|n| keep_float.contains(n.name()))
        .flat_map(|n| n.input.iter().take(1).chain(n.output.iter().take(1)).cloned())
        .collect();
    if kind == ActivationType::U8Asymmetric {
        summary.fused_activations = fuse_activations(graph, ranges, &excluded, keep_float);
    }
    let ranges = &shared_ranges(graph, ranges);
    // Graph outputs stay float: the last op dequantizes into them directly,
    // and the caller gets full precision.
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name()).collect();
    let activations: Vec<String> = activation_candidates(graph)
        .into_iter()
        .filter(|t| ranges.contains_key(t) && !excluded.contains(t) && !outputs.contains(t.as_str()))
        .collect();
    let act_set: HashSet<&str> = activations.iter().map(String::as_str).collect();
    let mut new_inits = Vec::new();
    let mut qdq_after: HashMap<String, Vec<NodeProto>> = HashMap::new();
    let mut scale_of = HashMap::new();
    for t in &activations {
        let p = activation_params(ranges[t], kind);
        scale_of.insert(t.clone(), p.scale);
        new_inits.push(floats(&format!("{t}_scale"), vec![], &[p.scale]));
        new_inits.push(tensor(
            &format!("{t}_zero_point"),
            vec![],
            act_type,
            vec![zp_bytes(p.zero_point)],
        ));
        let q_in = vec![t.clone(), format!("{t}_scale"), format!("{t}_zero_point")];
        let dq_in = vec![
            format!("{t}_quantized"),
            format!("{t}_scale"),
            format!("{t}_zero_point"),
        ];
        qdq_after.insert(
            t.clone(),
            vec![
                node(
                    "QuantizeLinear",
                    &format!("{t}_QuantizeLinear"),
                    q_in,
                    vec![format!("{t}_quantized")],
                    None,
                ),
                node(
                    "DequantizeLinear",
                    &format!("{t}_DequantizeLinear"),
                    dq_in,
                    vec![format!("{t}_dequantized")],
                    None,
                ),
            ],
        );
    }
    summary.quantized_activations = activations.len();

    // Weights and biases: per node, which inputs to redirect where.
    let init_index: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name().to_owned(), i))
        .collect();
    let mut redirect: HashMap<(usize, usize), String> = HashMap::new();
    let mut weight_nodes = Vec::new();
    let mut done_weights: HashMap<(String, usize), (String, Vec<f32>)> = HashMap::new();
    for (ni, n) in graph.node.iter().enumerate() {
        if !WEIGHT_OPS.contains(&n.op_type()) || !n.domain().is_empty() || keep_float.contains(n.name()) {
            continue;
        }
        let Some(wname) = n.input.get(1) else { continue };
        let Some(&wi) = init_index.get(wname) else { continue };
        let w = &graph.initializer[wi];
        let (Some(axis), Some(values)) = (weight_axis(n, w), float_values(w)) else {
            continue;
        };
        let key = (wname.clone(), axis);
        if !done_weights.contains_key(&key) {
            let dims: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
            let (q, scales) = quantize_per_channel(&values, &dims, axis);
            let raw = q.iter().map(|&v| v as u8).collect();
            let base = format!("{wname}_axis{axis}");
            let (dq, dequantized) = dequantized_constant(
                &base,
                w.dims.clone(),
                OnnxType::Int8,
                raw,
                &scales,
                axis as i64,
                &mut new_inits,
            );
            weight_nodes.push(dq);
            done_weights.insert(key.clone(), (dequantized, scales));
        }
        let (dequantized, scales) = done_weights[&key].clone();
        redirect.insert((ni, 1), dequantized);
        summary.quantized_nodes.push(n.name().to_owned());

        // Bias: Conv/ConvTranspose input 2, Gemm C (only with beta = 1), one
        // value per output channel, and only when the input is quantized.
        let bias_ok = match n.op_type() {
            "Gemm" => attr_f(n, "beta", 1.0) == 1.0 && attr_f(n, "alpha", 1.0) == 1.0,
            "Conv" | "ConvTranspose" => true,
            _ => false,
        };
        let x_scale = n.input.first().and_then(|x| scale_of.get(x)).copied();
        if let (true, Some(bname), Some(x_scale)) = (bias_ok, n.input.get(2), x_scale)
            && let Some(&bi) = init_index.get(bname)
            && let Some(b) = float_values(&graph.initializer[bi])
            && b.len() == scales.len()
        {
            let (q, bscales) = quantize_bias(&b, x_scale, &scales);
            let raw = q.iter().flat_map(|v| v.to_le_bytes()).collect();
            let base = format!("{bname}_{}", n.name());
            let (dq, dequantized) = dequantized_constant(
                &base,
                vec![q.len() as i64],
                OnnxType::Int32,
                raw,
                &bscales,
                0,
                &mut new_inits,
            );
            weight_nodes.push(dq);
            redirect.insert((ni, 2), dequantized);
        }
    }

    // Constant operands of Add and Mul (biases after MatMul, scales, and
    // divisors turned into reciprocals by `div_constant`): quantized per
    // tensor like an activation, so the runtime can compute on integers.
    let mut done_operands: HashMap<String, String> = HashMap::new();
    for (ni, n) in graph.node.iter().enumerate() {
        let quantized_peer = n.input.iter().any(|i| act_set.contains(i.as_str()));
        let output_quantized = n.output.first().is_some_and(|o| act_set.contains(o.as_str()));
        let elementwise = matches!(n.op_type(), "Add" | "Mul");
        if !elementwise || !n.domain().is_empty() || !quantized_peer || !output_quantized {
            continue;
        }
        for (ii, name) in n.input.iter().enumerate() {
            let Some(values) = init_index.get(name).and_then(|&i| float_values(&graph.initializer[i])) else {
                continue;
            };
            if !done_operands.contains_key(name) {
                let dims = graph.initializer[init_index[name]].dims.clone();
                let (dq, out) = quantized_operand(name, dims, &values, kind, &mut new_inits);
                weight_nodes.push(dq);
                done_operands.insert(name.clone(), out);
            }
            redirect.insert((ni, ii), done_operands[name].clone());
        }
    }

    // The new node list, in an order that keeps the graph topologically sorted.
    let mut nodes = weight_nodes;
    for input in &graph.input {
        if let Some(qdq) = qdq_after.remove(input.name()) {
            nodes.extend(qdq);
        }
    }
    for (ni, n) in graph.node.iter().enumerate() {
        let mut n = n.clone();
        for (ii, input) in n.input.iter_mut().enumerate() {
            if let Some(to) = redirect.get(&(ni, ii)) {
                *input = to.clone();
            } else if act_set.contains(input.as_str()) {
                *input = format!("{input}_dequantized");
            }
        }
        let outputs = n.output.clone();
        nodes.push(n);
        for out in outputs {
            if let Some(qdq) = qdq_after.remove(&out) {
                nodes.extend(qdq);
            }
        }
    }
    graph.node = nodes;
    graph.initializer.extend(new_inits);
    // Float weights no node reads any more are dropped: that is the size
    // saving. Subgraphs (If and Loop bodies) read the outer scope by name.
    let used = crate::compress::graph::names_read(graph);
    let graph_inputs: HashSet<String> = graph.input.iter().map(|i| i.name().to_owned()).collect();
    graph
        .initializer
        .retain(|t| used.contains(t.name()) || graph_inputs.contains(t.name()));
    Ok((model, summary))
}
