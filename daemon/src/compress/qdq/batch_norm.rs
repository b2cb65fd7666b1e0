//! BatchNormalization folding, run before quantizing: a Conv followed only
//! by an inference-form BatchNormalization with constant parameters becomes
//! one Conv with scaled weights and a shifted bias, so the weights are
//! quantized once, with the normalization inside them, and no float op is
//! left between the Conv and the next quantized one. It never folds a Conv
//! whose output anything else reads or the graph returns, and stops at the
//! first candidate whose parameters or weights are not float constants.

use dsmil_proto::onnx::GraphProto;

use super::read::{attr_f, float_values};
use crate::compress::graph::floats;

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
