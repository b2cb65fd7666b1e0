//! The static QDQ rewrite. Activations feeding or leaving a quantized op get
//! a QuantizeLinear/DequantizeLinear pair; weights of Conv, ConvTranspose,
//! MatMul and Gemm become int8 initializers behind a per-channel
//! DequantizeLinear (axis chosen per op and transposition); biases become
//! int32 at input scale × weight scale. ONNX Runtime fuses these patterns
//! into integer kernels, and OpenVINO's ONNX frontend reads them as INT8.
//! BatchNormalization is folded into the Conv before it first.

use std::collections::{BTreeSet, HashMap, HashSet};

use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{GraphProto, ModelProto, NodeProto, TensorProto};

use super::calibrate::Range;
use super::graph::{default_opset, dequantized_constant, floats, node, tensor};
use super::params::{ActivationType, activation_params, quantize_bias, quantize_per_channel};
use super::{Calibration, CompressError};

/// Ops whose weights are quantized.
pub const WEIGHT_OPS: [&str; 4] = ["Conv", "ConvTranspose", "MatMul", "Gemm"];
/// Ops kept in the integer domain between quantized ops (the runtimes have
/// integer kernels for them, or they only move data).
pub const PASS_OPS: [&str; 12] = [
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Add",
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

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.i)
        .unwrap_or(default)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
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

/// Folds BatchNormalization (inference form, constant parameters) into the
/// Conv that alone feeds it.
pub fn fold_batch_norms(graph: &mut GraphProto) -> usize {
    let mut folded = 0;
    loop {
        let consumers =
            |name: &str, g: &GraphProto| g.node.iter().filter(|n| n.input.iter().any(|i| i == name)).count();
        let init = |g: &GraphProto, name: &str| g.initializer.iter().position(|t| t.name() == name);
        let found = graph.node.iter().enumerate().find_map(|(bi, bn)| {
            if bn.op_type() != "BatchNormalization" || bn.input.len() < 5 || bn.output.len() != 1 {
                return None;
            }
            let ci = graph
                .node
                .iter()
                .position(|n| n.op_type() == "Conv" && n.output.first() == bn.input.first())?;
            let conv = &graph.node[ci];
            let y = conv.output[0].as_str();
            if consumers(y, graph) != 1 || graph.output.iter().any(|o| o.name() == y) {
                return None;
            }
            let params: Option<Vec<usize>> = bn.input[1..5].iter().map(|n| init(graph, n)).collect();
            Some((bi, ci, params?, init(graph, conv.input.get(1)?)?))
        });
        let Some((bi, ci, params, wi)) = found else {
            return folded;
        };
        let values: Vec<Vec<f32>> = params
            .iter()
            .filter_map(|&i| float_values(&graph.initializer[i]))
            .collect();
        let Some(w) = float_values(&graph.initializer[wi]) else {
            return folded;
        };
        if values.len() != 4 {
            return folded;
        }
        let (gamma, beta, mean, var) = (&values[0], &values[1], &values[2], &values[3]);
        let eps = attr_f(&graph.node[bi], "epsilon", 1e-5);
        let channels = gamma.len();
        let factor: Vec<f32> = (0..channels).map(|c| gamma[c] / (var[c] + eps).sqrt()).collect();
        let per_channel = w.len() / channels;
        let new_w: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * factor[i / per_channel]).collect();
        let conv = graph.node[ci].clone();
        let old_bias = conv
            .input
            .get(2)
            .and_then(|b| init(graph, b))
            .and_then(|i| float_values(&graph.initializer[i]));
        let bias: Vec<f32> = (0..channels)
            .map(|c| (old_bias.as_ref().map_or(0.0, |b| b[c]) - mean[c]) * factor[c] + beta[c])
            .collect();
        let w_name = format!("{}_bn_folded", conv.input[1]);
        let b_name = format!("{}_bias_bn_folded", conv.name());
        let dims = graph.initializer[wi].dims.clone();
        graph.initializer.push(floats(&w_name, dims, &new_w));
        graph.initializer.push(floats(&b_name, vec![channels as i64], &bias));
        let bn_out = graph.node[bi].output[0].clone();
        let c = &mut graph.node[ci];
        c.input.truncate(2);
        c.input[1] = w_name;
        c.input.push(b_name);
        c.output[0] = bn_out;
        graph.node.remove(bi);
        folded += 1;
    }
}

/// A weight's per-channel axis for its op, or None to leave it in float.
fn weight_axis(op: &NodeProto, weight: &TensorProto) -> Option<usize> {
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
    let (Some(axis), Some(out)) = (weight_axis(node, w), node.output.first().and_then(|o| shapes.get(o))) else {
        return 0;
    };
    let weights: u64 = w.dims.iter().map(|&d| d.max(0) as u64).product();
    let outputs: u64 = out.iter().map(|&d| d.max(0) as u64).product();
    let channels = w.dims.get(axis).copied().unwrap_or(1).max(1) as u64;
    weights * (outputs / channels)
}

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

/// Makes MatMul(A, W) + B one Gemm(A, W, B) where A is a matrix (rank 2 in
/// calibration), W a constant matrix and B a constant row of biases. The
/// bias then becomes int32 inside the integer kernel instead of a separate
/// Add on a requantized product: one rounding step fewer, and faster. The
/// Gemm keeps the MatMul's name, so reports and mixed precision still name
/// the layer as the model does.
fn fuse_matmul_bias(graph: &mut GraphProto, shapes: &HashMap<String, Vec<i64>>, keep_float: &HashSet<String>) -> usize {
    let mut fused = 0;
    let mut i = 0;
    while i < graph.node.len() {
        let m = &graph.node[i];
        let init = |name: &str| graph.initializer.iter().find(|t| t.name() == name);
        let matrix_input = m
            .input
            .first()
            .and_then(|a| shapes.get(a))
            .is_some_and(|s| s.len() == 2);
        let columns = m
            .input
            .get(1)
            .and_then(|w| init(w))
            .filter(|w| w.dims.len() == 2 && w.data_type() == OnnxType::Float as i32)
            .map(|w| w.dims[1]);
        let eligible =
            m.op_type() == "MatMul" && m.domain().is_empty() && matrix_input && !keep_float.contains(m.name());
        let (Some(columns), true) = (columns, eligible) else {
            i += 1;
            continue;
        };
        let y = m.output[0].clone();
        let consumers: Vec<usize> = (0..graph.node.len())
            .filter(|&j| graph.node[j].input.contains(&y))
            .collect();
        let add = match consumers.as_slice() {
            [j] if graph.node[*j].op_type() == "Add" && graph.node[*j].domain().is_empty() => *j,
            _ => {
                i += 1;
                continue;
            }
        };
        let bias = graph.node[add].input.iter().find(|b| **b != y).cloned();
        let bias_ok = bias.as_deref().and_then(init).is_some_and(|b| {
            let elements: i64 = b.dims.iter().product();
            b.data_type() == OnnxType::Float as i32 && elements == columns && b.dims.last() == Some(&columns)
        });
        if !bias_ok || graph.output.iter().any(|o| o.name() == y) {
            i += 1;
            continue;
        }
        let out = graph.node[add].output[0].clone();
        let gemm = &mut graph.node[i];
        gemm.op_type = Some("Gemm".into());
        gemm.input.push(bias.expect("checked"));
        gemm.output[0] = out;
        graph.node.remove(add);
        fused += 1;
        i += 1;
    }
    fused
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

/// Ops that only move or select values: their output reuses their input's
/// range, so the runtimes can run them on the integers with no requantizing.
const MOVE_OPS: [&str; 6] = ["Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "MaxPool"];

/// `ranges` with each data-movement op's output given its input's range
/// (in graph order, so chains of them share one).
fn shared_ranges(graph: &GraphProto, ranges: &HashMap<String, Range>) -> HashMap<String, Range> {
    let mut shared = ranges.clone();
    for n in &graph.node {
        if !MOVE_OPS.contains(&n.op_type()) || !n.domain().is_empty() {
            continue;
        }
        if let (Some(x), Some(y)) = (n.input.first(), n.output.first())
            && let Some(&r) = shared.get(x)
            && shared.contains_key(y)
        {
            shared.insert(y.clone(), r);
        }
    }
    shared
}

/// Removes each Relu, and each Clip from 0, that alone consumes the output
/// of a quantized weight op or Add: with uint8 activations whose range
/// starts at 0 (zero point 0), the QuantizeLinear after the producer clamps
/// exactly as they would, so the producer can write their output directly.
/// This saves a float op and a QDQ pair each, and (more important for
/// accuracy) the producer's output is quantized over [0, max] instead of
/// spending levels on negative values the activation discards.
fn fuse_activations(
    graph: &mut GraphProto,
    ranges: &HashMap<String, Range>,
    excluded: &HashSet<String>,
    keep_float: &HashSet<String>,
) -> usize {
    let constant = |g: &GraphProto, name: Option<&String>| -> Option<f32> {
        let t = g.initializer.iter().find(|t| Some(&t.name().to_owned()) == name)?;
        float_values(t).filter(|v| v.len() == 1).map(|v| v[0])
    };
    let mut fused = 0;
    let mut i = 0;
    while i < graph.node.len() {
        let n = &graph.node[i];
        let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else {
            i += 1;
            continue;
        };
        let clamps = match n.op_type() {
            "Relu" => true,
            // Clip(x, 0, max), with the calibrated range inside [0, max].
            "Clip" => {
                constant(graph, n.input.get(1)) == Some(0.0)
                    && constant(graph, n.input.get(2)).is_some_and(|max| ranges.get(y).is_some_and(|r| r.max <= max))
            }
            _ => false,
        };
        let starts_at_zero = ranges.get(y).is_some_and(|r| r.min >= 0.0);
        let consumers = graph.node.iter().filter(|c| c.input.iter().any(|v| v == x)).count();
        let producer = graph.node.iter().position(|p| {
            p.output.first() == Some(x)
                && p.domain().is_empty()
                && (WEIGHT_OPS.contains(&p.op_type()) || p.op_type() == "Add")
                && !keep_float.contains(p.name())
        });
        let fusable = clamps
            && starts_at_zero
            && n.domain().is_empty()
            && consumers == 1
            && !excluded.contains(y)
            && !excluded.contains(x)
            && !graph.output.iter().any(|o| o.name() == x);
        match producer {
            Some(p) if fusable => {
                let y = y.clone();
                graph.node[p].output[0] = y;
                graph.node.remove(i);
                fused += 1;
            }
            _ => i += 1,
        }
    }
    fused
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

    // Constant operands of Add (biases after MatMul, mostly): quantized per
    // tensor like an activation, so the runtime can add on integers.
    let mut done_operands: HashMap<String, String> = HashMap::new();
    for (ni, n) in graph.node.iter().enumerate() {
        let quantized_peer = n.input.iter().any(|i| act_set.contains(i.as_str()));
        let output_quantized = n.output.first().is_some_and(|o| act_set.contains(o.as_str()));
        if n.op_type() != "Add" || !n.domain().is_empty() || !quantized_peer || !output_quantized {
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
    // Float weights no node reads any more are dropped: that is the size saving.
    let used: HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    let graph_inputs: HashSet<String> = graph.input.iter().map(|i| i.name().to_owned()).collect();
    graph
        .initializer
        .retain(|t| used.contains(t.name()) || graph_inputs.contains(t.name()));
    Ok((model, summary))
}
