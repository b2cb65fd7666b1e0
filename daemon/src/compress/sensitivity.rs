//! Which quantized layers hurt most, measured in one pass: the FP32 model
//! and the full-INT8 model run the same few samples with every activation
//! exposed, and each quantized layer is scored by how much noise (relative
//! to the signal) it adds between the float activation it reads and its
//! output as the next layers read it: the error of quantizing its input,
//! its weights and its output, which is what keeping it in FP32 removes,
//! not the error it inherits. The mixed-precision
//! fallback returns layers to FP32 in this order, so a model with hundreds
//! of layers and two sensitive ones is rescued in a few evaluations, not one
//! evaluation per layer in graph order.
//!
//! Reads and runs models; decides nothing about the gate.

use std::collections::{HashMap, HashSet};

use dsmil_proto::onnx::{ModelProto, ValueInfoProto};
use prost::Message;

use super::CompressError;
use super::data::Samples;
use crate::backend::{Backend, DataType, LoadOptions};

/// Samples the ranking runs: the layers' relative error settles quickly.
const SAMPLES: usize = 8;

/// Noise and signal energy of one tensor, INT8 against FP32.
#[derive(Default, Clone, Copy)]
struct Energy {
    signal: f64,
    noise: f64,
}

impl Energy {
    /// Noise-to-signal ratio (linear): 0 for an exact tensor, and additive
    /// enough to subtract, which dB of an exact input (infinite) is not.
    fn nsr(self) -> f64 {
        self.noise / self.signal.max(f64::MIN_POSITIVE)
    }
}

/// `nodes` (quantized layers of `int8`, by name) ordered most harmful first,
/// each with the noise-to-signal ratio it adds.
pub fn rank(
    backend: &dyn Backend,
    fp32: &ModelProto,
    int8: &ModelProto,
    nodes: &[String],
    samples: &Samples,
) -> Result<Vec<(String, f64)>, CompressError> {
    let graph = int8.graph.as_ref().ok_or(CompressError::NoGraph)?;
    // Per layer: the float activation it reads (before the QuantizeLinear
    // that feeds it) and what its consumers read of its output (after that
    // output's own QuantizeLinear and DequantizeLinear, where it has them).
    // Keeping a layer in FP32 removes the error between the two: its
    // input's quantization, its weights' and its output's.
    let dequantized: HashSet<&str> = graph
        .node
        .iter()
        .filter(|n| n.op_type() == "DequantizeLinear")
        .filter_map(|n| n.output.first().map(String::as_str))
        .collect();
    let mut layers = Vec::new();
    for name in nodes {
        let Some(n) = graph.node.iter().find(|n| n.name() == name) else {
            continue;
        };
        let (Some(input), Some(output)) = (n.input.first(), n.output.first()) else {
            continue;
        };
        let source = input.strip_suffix("_dequantized").unwrap_or(input).to_owned();
        let read = format!("{output}_dequantized");
        let read = if dequantized.contains(read.as_str()) {
            read
        } else {
            output.clone()
        };
        layers.push((name.clone(), source, output.clone(), read));
    }
    // FP32's tensor names, and INT8's (an output as its consumers read it).
    let names: HashSet<String> = layers.iter().flat_map(|l| [l.1.clone(), l.2.clone()]).collect();
    let int8_names: HashSet<String> = layers.iter().flat_map(|l| [l.1.clone(), l.3.clone()]).collect();
    // Each FP32 tensor with the INT8 tensor it is compared to (one FP32
    // tensor can be a layer's source and, read after its QDQ, another's
    // output: two pairs).
    let pairs: HashSet<(&str, &str)> = layers
        .iter()
        .flat_map(|l| [(l.1.as_str(), l.1.as_str()), (l.2.as_str(), l.3.as_str())])
        .collect();
    let expose = |model: &ModelProto, names: &HashSet<String>| {
        let mut m = model.clone();
        if let Some(g) = m.graph.as_mut() {
            // Graph inputs are not outputs; their values are the sample's.
            let present: HashSet<String> = g.output.iter().chain(&g.input).map(|o| o.name().to_owned()).collect();
            g.output
                .extend(names.iter().filter(|n| !present.contains(*n)).map(|n| ValueInfoProto {
                    name: Some(n.clone()),
                    ..Default::default()
                }));
        }
        m.encode_to_vec()
    };
    let inspect = LoadOptions {
        inspect: true,
        ..Default::default()
    };
    let mut a = backend.load(&expose(fp32, &names), &inspect)?;
    let mut b = backend.load(&expose(int8, &int8_names), &inspect)?;
    let mut energy: HashMap<String, Energy> = HashMap::new();
    // Both models see the same inputs, a recurrent model's state being
    // FP32's: the measure is what each layer loses, not how far INT8's
    // own state has drifted.
    let mut stepper = super::Stepper::new(samples);
    for i in 0..samples.len().min(SAMPLES) {
        let inputs = stepper.inputs(i);
        let outputs = a.run(&inputs)?;
        stepper.keep(&outputs);
        let want: HashMap<String, Vec<f32>> = outputs
            .into_iter()
            .chain(inputs.iter().cloned())
            .filter(|t| t.dtype == DataType::F32 && names.contains(&t.name))
            .map(|t| (t.name, crate::backend::f32s(&t.data).collect()))
            .collect();
        let got: HashMap<String, Vec<f32>> = b
            .run(&inputs)?
            .into_iter()
            .chain(inputs.iter().cloned())
            .filter(|t| t.dtype == DataType::F32 && int8_names.contains(&t.name))
            .map(|t| (t.name, crate::backend::f32s(&t.data).collect()))
            .collect();
        for (name, int8_name) in &pairs {
            let (Some(x), Some(y)) = (want.get(*name), got.get(*int8_name)) else {
                continue;
            };
            if x.len() != y.len() {
                continue;
            }
            let e = energy.entry((*int8_name).to_owned()).or_default();
            for (x, y) in x.iter().zip(y) {
                let (x, y) = (f64::from(*x), f64::from(*y));
                e.signal += x * x;
                e.noise += (x - y) * (x - y);
            }
        }
    }
    let nsr = |name: &String| energy.get(name).map(|e| e.nsr());
    let mut ranked: Vec<(String, f64)> = layers
        .iter()
        .map(|(name, src, _, out)| {
            // A layer whose tensors could not be compared ranks last.
            let lost = match (nsr(src), nsr(out)) {
                (Some(before), Some(after)) => after - before,
                _ => f64::NEG_INFINITY,
            };
            (name.clone(), lost)
        })
        .collect();
    ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
    Ok(ranked)
}
