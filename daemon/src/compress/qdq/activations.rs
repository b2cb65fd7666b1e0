//! What the activations' quantization parameters can take over from the
//! ops around them: Relu and Clip(0, max) absorbed into the uint8
//! quantization of their producer's output, and one range shared along a
//! chain of data-movement ops so they run on the integers unrequantized.
//! Both follow the calibrated ranges. Absorption never removes an op next
//! to a node the mixed-precision fallback keeps in float, nor one whose
//! input the graph returns; sharing only changes ranges, never nodes.

use std::collections::{HashMap, HashSet};

use dsmil_proto::onnx::GraphProto;

use super::ops::WEIGHT_OPS;
use super::read::float_values;
use crate::compress::calibrate::Range;

/// Ops that only move or select values: their output reuses their input's
/// range, so the runtimes can run them on the integers with no requantizing.
const MOVE_OPS: [&str; 6] = ["Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "MaxPool"];

/// `ranges` with each data-movement op's output given its input's range
/// (in graph order, so chains of them share one).
pub(super) fn shared_ranges(graph: &GraphProto, ranges: &HashMap<String, Range>) -> HashMap<String, Range> {
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
pub(super) fn fuse_activations(
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
