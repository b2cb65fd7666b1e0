//! Compression: post-training INT8 quantization of ONNX models (static QDQ),
//! calibrated on representative data and gated on accuracy.
//!
//! The flow: read calibration samples (`data`), run the model with the
//! activations it needs exposed and gather their ranges (`calibrate`), turn
//! ranges into quantization parameters (`params`), rewrite the graph into QDQ
//! form (`qdq`), then evaluate FP32 against INT8 on validation samples
//! (`gate`). Blocking throughout: runtime calls happen on the caller's
//! (blocking) thread, or on scoped threads it waits for (the gate and the
//! upgrade check run FP32 and INT8 side by side). This module never
//! touches the store.

pub mod calibrate;
pub mod data;
pub mod dynamic;
pub mod gate;
mod graph;
mod npz;
pub mod offline;
pub mod opset;
pub mod params;
pub mod qdq;
pub mod sensitivity;

use std::collections::{HashMap, HashSet};

use dsmil_proto::onnx::{ModelProto, ValueInfoProto};
use prost::Message;

pub use data::{Samples, StateLink, Stepper};
pub use gate::Evaluation;
pub use params::ActivationType;

use crate::backend::{Backend, BackendError, DataType, LoadOptions};
use calibrate::{Histogram, MinMax, Range};

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("{path}: {detail}")]
    Data { path: String, detail: String },
    #[error("the model imports opset {0}; INT8 QDQ needs opset 13 or later (per-channel DequantizeLinear)")]
    Opset(i64),
    #[error(transparent)]
    Upgrade(#[from] opset::UpgradeError),
    #[error(
        "the model upgraded from opset {from} to {} computes {output:?} differently from the original on sample \
         {sample} ({detail}); quantize an opset-13 export instead",
        opset::TARGET
    )]
    UpgradeChanged {
        from: i64,
        output: String,
        sample: usize,
        detail: String,
    },
    #[error("the model has no graph")]
    NoGraph,
    #[error("not an ONNX model: {0}")]
    Decode(String),
    #[error("the {0} method calibrates activation ranges from samples: give calibration data (or use dynamic)")]
    NeedsCalibration(String),
    #[error("invalid quantization option: {0}")]
    InvalidOption(String),
    #[error("the model has no FP32 output to evaluate")]
    NoFloatOutput,
    #[error("calibration")]
    Backend(#[from] BackendError),
    #[error(
        "INT8 accuracy gate failed on output {output:?}: {metric} {retention:.4} is below {min} \
         ({figures}{metric} because {reason}); try another --method, more calibration data, or --gate-metric if \
         this output is judged by the wrong measure"
    )]
    GateFailed {
        metric: String,
        output: String,
        reason: String,
        retention: f64,
        min: f64,
        /// "fp32 A, int8 B; " where the judged value is a ratio of the two
        /// (accuracy), else "": FP32 is the reference the others measure
        /// against, not a figure of its own.
        figures: String,
    },
}

pub use dsmil_kinds::Method;

#[derive(Debug, Clone)]
pub struct Options {
    pub method: Method,
    pub activations: ActivationType,
    /// At most this many calibration samples are used.
    pub max_samples: usize,
    /// How the gate judges: the metric (named, or chosen per output) and
    /// each metric's threshold.
    pub gate: gate::GateSpec,
    /// The mixed-precision fallback's budget of evaluations.
    pub fallback_evaluations: usize,
    /// A recurrent model's state links: how its data is read
    /// ([`data::Stepper`]).
    pub state: Vec<StateLink>,
}

impl Options {
    /// The options a request names by `method` and `activations` (None =
    /// the config's choice), with the config's sample cap, gate and budget.
    pub fn resolve(
        q: &crate::config::QuantizationConfig,
        method: Option<dsmil_kinds::MethodName>,
        activations: Option<ActivationType>,
        metric: Option<dsmil_kinds::GateMetric>,
    ) -> Options {
        Options {
            method: method.map_or(q.method, |m| Method::from_name(m, q.percentile)),
            activations: activations.unwrap_or(q.activations),
            max_samples: q.calibration_samples as usize,
            gate: gate::GateSpec {
                metric,
                thresholds: q.thresholds,
            },
            fallback_evaluations: q.fallback_evaluations as usize,
            state: Vec::new(),
        }
    }
}

/// A quantized model that runs too little of its arithmetic in INT8 to be
/// INT8 but in name (`quantization.min_int8_mac_share`): the policy the
/// deploy pipeline and `dsmild quantize` both apply, worded once.
#[derive(Debug, thiserror::Error)]
#[error(
    "the INT8 model runs only {share:.1}% of its multiply-accumulates in INT8 ({int8} of {layers} weight layers \
     in the main graph; quantization.min_int8_mac_share is {min:.0}%){subgraphs}"
)]
pub struct MostlyFp32 {
    share: f64,
    min: f64,
    int8: usize,
    layers: usize,
    /// "; left in FP32 inside control flow: ..." or "".
    subgraphs: String,
}

impl Report {
    /// Why this result is FP32 in practice, if it runs less than `min` of
    /// its multiply-accumulates in INT8.
    pub fn mostly_fp32(&self, min: f64) -> Option<MostlyFp32> {
        (self.int8_mac_share < min).then(|| MostlyFp32 {
            share: self.int8_mac_share * 100.0,
            min: min * 100.0,
            int8: self.layers.iter().filter(|l| l.precision == "int8").count(),
            layers: self.layers.len(),
            subgraphs: match self.fp32_subgraphs.is_empty() {
                true => String::new(),
                false => format!("; left in FP32 inside control flow: {}", self.fp32_subgraphs.join("; ")),
            },
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub method: String,
    pub activations: String,
    pub calibration_samples: usize,
    pub size_before: usize,
    pub size_after: usize,
    pub quantized_nodes: Vec<String>,
    pub quantized_activations: usize,
    pub folded_batch_norms: usize,
    pub evaluation: Option<Evaluation>,
    /// Every weight op (Conv, ConvTranspose, MatMul, Gemm) and its precision.
    pub layers: Vec<LayerPrecision>,
    /// Share of the weight ops' multiply-accumulates that run in INT8.
    pub int8_mac_share: f64,
    /// Layers kept in FP32 by the fallback (empty: full INT8).
    pub fp32_fallback: Vec<String>,
    /// Evaluations the gate and the fallback spent.
    pub evaluations: usize,
    /// Wall time of the quantization proper (calibration and rewrite) and
    /// of the accuracy gate (with the fallback's evaluations), in ms.
    #[serde(default)]
    pub quantize_ms: u64,
    #[serde(default)]
    pub gate_ms: u64,
    /// The opset the upload had when it was upgraded to 13 first.
    #[serde(default)]
    pub upgraded_from_opset: Option<i64>,
    /// What the upgrade rewrote, one line per node.
    #[serde(default)]
    pub opset_rewrites: Vec<String>,
    /// Constant nodes (or Identity/Cast of weights) made initializers.
    #[serde(default)]
    pub promoted_constants: usize,
    /// Control-flow nodes whose bodies stay FP32, with the weight ops in
    /// them (`graph::fp32_subgraphs`).
    #[serde(default)]
    pub fp32_subgraphs: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LayerPrecision {
    pub node: String,
    pub op: String,
    /// "int8" or "fp32".
    pub precision: String,
    /// Multiply-accumulates per sample (from the shapes seen in calibration).
    pub macs: u64,
}

pub struct Quantized {
    pub model: Vec<u8>,
    pub report: Report,
}

/// Finds activation ranges by running `model` on the samples (two passes for
/// histogram methods); memory is independent of the number of samples.
/// What calibration learns: each activation's range, and the shape each
/// had on the first sample (for counting multiply-accumulates).
pub struct Calibration {
    pub ranges: HashMap<String, Range>,
    pub shapes: HashMap<String, Vec<i64>>,
    /// The model's own outputs for each sample, when asked for and within
    /// the gate's budget: FP32's answers when the gate judges on the
    /// calibration data.
    pub answers: Option<Vec<Vec<crate::backend::Tensor>>>,
}

/// Whether `signature` (of a model augmented with extra outputs) takes
/// batches: its inputs and `graph`'s own outputs all start with a dynamic
/// dimension.
fn batched(signature: &crate::backend::Signature, graph: &dsmil_proto::onnx::GraphProto) -> bool {
    let own: HashSet<&str> = graph.output.iter().map(|o| o.name()).collect();
    crate::backend::Signature {
        inputs: signature.inputs.clone(),
        outputs: signature
            .outputs
            .iter()
            .filter(|o| own.contains(o.name.as_str()))
            .cloned()
            .collect(),
    }
    .is_batched()
}

/// How the gate loads its two models: they run side by side (see
/// `gate::evaluate`), so each gets half the CPUs rather than a pool the size
/// of the host that the other's would fight.
fn gate_load_options() -> LoadOptions {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    LoadOptions {
        intra_op_threads: (cpus / 2).max(1),
        ..Default::default()
    }
}

pub fn calibrate(
    backend: &dyn Backend,
    model: &ModelProto,
    samples: &Samples,
    method: Method,
    keep_answers: bool,
) -> Result<Calibration, CompressError> {
    let graph = model.graph.as_ref().ok_or(CompressError::NoGraph)?;
    let candidates = qdq::activation_candidates(graph);
    let mut augmented = model.clone();
    let g = augmented.graph.as_mut().expect("checked above");
    let outputs: HashSet<String> = g.output.iter().map(|o| o.name().to_owned()).collect();
    for name in candidates.iter().filter(|c| !outputs.contains(*c)) {
        g.output.push(ValueInfoProto {
            name: Some(name.clone()),
            ..Default::default()
        });
    }
    let inspect = LoadOptions {
        inspect: true,
        ..Default::default()
    };
    let mut runner = backend.load(&augmented.encode_to_vec(), &inspect)?;
    let wanted: HashSet<&str> = candidates.iter().map(String::as_str).collect();

    // Statistics only sum over samples, so a batched model sees them in
    // batches; the first runs alone, for shapes of one sample.
    let batched = batched(runner.signature(), graph);
    let mut minmax: HashMap<String, MinMax> = HashMap::new();
    let mut shapes = HashMap::new();
    let mut stepper = Stepper::new(samples);
    let mut answers = keep_answers.then(|| gate::Answers::new(graph, gate::REFERENCE_BUDGET));
    let first = stepper.inputs(0);
    runner.run_visit(&first, &mut |t| {
        stepper.keep_view(t);
        if let Some(a) = answers.as_mut() {
            a.see(t);
        }
        if t.dtype == DataType::F32 && wanted.contains(t.name) {
            minmax.entry(t.name.to_owned()).or_default().update(t.data);
            shapes.insert(t.name.to_owned(), t.shape.to_vec());
        }
    })?;
    if let Some(a) = answers.as_mut() {
        a.finish_run(1);
    }
    visit_samples(
        runner.as_mut(),
        samples,
        1,
        batched,
        &mut stepper,
        answers.as_mut(),
        &mut |t| {
            if let Some(m) = minmax.get_mut(t.name) {
                m.update(t.data);
            }
        },
    )?;
    let mut histograms: HashMap<String, Histogram> = HashMap::new();
    if method != Method::MinMax {
        for (name, m) in &minmax {
            histograms.insert(name.clone(), Histogram::new(m.abs_max()));
        }
        visit_samples(
            runner.as_mut(),
            samples,
            0,
            batched,
            &mut Stepper::new(samples),
            None,
            &mut |t| {
                if let Some(h) = histograms.get_mut(t.name) {
                    h.update(t.data);
                }
            },
        )?;
    }
    let whole = calibrate::kept_whole(graph);
    let ranges = minmax
        .iter()
        .map(|(name, m)| {
            let histogram = histograms.get(name).filter(|_| !whole.contains(name.as_str()));
            (name.clone(), calibrate::range(method, m, histogram))
        })
        .collect();
    Ok(Calibration {
        ranges,
        shapes,
        answers: answers.and_then(gate::Answers::into_answers),
    })
}

/// Runs `runner` over the samples from `first` on, visiting every output:
/// in batches where the model and the data allow, one at a time in order,
/// with `stepper` carrying the state, for a recurrent model.
fn visit_samples(
    runner: &mut dyn crate::backend::LoadedModel,
    samples: &Samples,
    first: usize,
    batched: bool,
    stepper: &mut Stepper,
    mut answers: Option<&mut gate::Answers>,
    visit: &mut dyn FnMut(&crate::backend::TensorView),
) -> Result<(), CompressError> {
    if samples.is_sequential() {
        for i in first..samples.len() {
            let inputs = stepper.inputs(i);
            runner.run_visit(&inputs, &mut |t| {
                stepper.keep_view(t);
                if let Some(a) = answers.as_mut() {
                    a.see(t);
                }
                visit(t);
            })?;
            if let Some(a) = answers.as_mut() {
                a.finish_run(1);
            }
        }
        return Ok(());
    }
    for (inputs, len) in samples.runs(first, batched, samples.rows_per_run()) {
        runner.run_visit(&inputs, &mut |t| {
            if let Some(a) = answers.as_mut() {
                a.see(t);
            }
            visit(t);
        })?;
        if let Some(a) = answers.as_mut() {
            a.finish_run(len);
        }
    }
    Ok(())
}

/// Quantizes `model` by `options.method`: static QDQ from the calibration
/// samples, or dynamic. The gate evaluates on the validation samples, else
/// on the calibration samples; with neither (dynamic only) it is skipped.
pub fn quantize(
    backend: &dyn Backend,
    model: &[u8],
    calibration: Option<&Samples>,
    validation: Option<&Samples>,
    options: &Options,
) -> Result<Quantized, CompressError> {
    let gate_data = validation.or(calibration);
    if options.method != Method::Dynamic && calibration.is_none() {
        return Err(CompressError::NeedsCalibration(options.method.name()));
    }
    // Before calibration: a model that cannot be upgraded is refused cheaply.
    let upgraded = upgrade_checked(backend, model, gate_data)?;
    let bytes = upgraded.as_ref().map_or(model, |(bytes, _)| bytes.as_slice());
    // Weights held in Constant nodes become initializers, so they are found.
    let mut proto = ModelProto::decode(bytes).map_err(|e| CompressError::Decode(e.to_string()))?;
    let promoted = graph::promote_constants(&mut proto);
    let promoted_bytes = (promoted > 0).then(|| proto.encode_to_vec());
    let bytes = promoted_bytes.as_deref().unwrap_or(bytes);
    let mut quantized = match (options.method, calibration) {
        (Method::Dynamic, _) => quantize_dynamic(backend, bytes, gate_data, &options.gate),
        (_, Some(calibration)) => quantize_static(backend, bytes, calibration, gate_data, options),
        (method, None) => Err(CompressError::NeedsCalibration(method.name())),
    }?;
    quantized.report.promoted_constants = promoted;
    if let Some(graph) = &proto.graph {
        quantized.report.fp32_subgraphs = graph::fp32_subgraphs(graph);
        if !quantized.report.fp32_subgraphs.is_empty() {
            tracing::info!(subgraphs = ?quantized.report.fp32_subgraphs, "control-flow bodies stay FP32");
        }
    }
    quantized.report.size_before = model.len();
    if let Some((_, upgrade)) = upgraded {
        quantized.report.upgraded_from_opset = Some(upgrade.from);
        quantized.report.opset_rewrites = upgrade.rewrites;
    }
    Ok(quantized)
}

/// Samples the upgrade check compares: an upgrade rewrites operators, not
/// values, so a wrong rewrite shows on any real sample; a few guard against
/// one that happens to hide it.
const UPGRADE_CHECK_SAMPLES: usize = 2;

/// `model` upgraded to opset 13 when it is older (None when it is not),
/// after checking that the upgraded model computes the same outputs as the
/// original on the first samples of `data` (up to [`UPGRADE_CHECK_SAMPLES`]). Without data the
/// conversion's own rules are all there is, and the log says so.
pub fn upgrade_checked(
    backend: &dyn Backend,
    model: &[u8],
    data: Option<&Samples>,
) -> Result<Option<(Vec<u8>, opset::Upgraded)>, CompressError> {
    let proto = ModelProto::decode(model).map_err(|e| CompressError::Decode(e.to_string()))?;
    let Some(upgrade) = opset::upgrade(&proto)? else {
        return Ok(None);
    };
    let bytes = upgrade.model.encode_to_vec();
    match data {
        Some(data) => {
            // Unoptimised, as calibration runs: two samples do not repay
            // optimising the graph twice, and the comparison is of the two
            // graphs as written.
            let load = LoadOptions {
                inspect: true,
                ..gate_load_options()
            };
            let mut original = backend.load(model, &load)?;
            let mut upgraded = backend.load(&bytes, &load)?;
            // Each model carries its own state, as it would serving.
            let (mut a, mut b) = (Stepper::new(data), Stepper::new(data));
            for i in 0..data.len().min(UPGRADE_CHECK_SAMPLES) {
                // Side by side, as in the gate: the check is on the way to
                // every older model's quantization.
                let (in_a, in_b) = (a.inputs(i), b.inputs(i));
                let (want, got) =
                    gate::side_by_side("the upgrade check", || original.run(&in_a), || upgraded.run(&in_b))?;
                a.keep(&want);
                b.keep(&got);
                for (w, g) in want.iter().zip(&got) {
                    if let Some(detail) = differs(w, g) {
                        return Err(CompressError::UpgradeChanged {
                            from: upgrade.from,
                            output: w.name.clone(),
                            sample: i,
                            detail,
                        });
                    }
                }
            }
        }
        None => tracing::warn!(
            from = upgrade.from,
            "upgraded to opset 13 without data to compare the outputs on; give --val or --calib to check it"
        ),
    }
    tracing::info!(
        from = upgrade.from,
        rewrites = upgrade.rewrites.len(),
        "upgraded the model to opset 13"
    );
    Ok(Some((bytes, upgrade)))
}

/// How `got` differs from `want`, if it does beyond float rounding (the
/// upgrade may reorder arithmetic, e.g. a Softmax spelled out).
fn differs(want: &crate::backend::Tensor, got: &crate::backend::Tensor) -> Option<String> {
    if want.dtype != got.dtype || want.shape != got.shape {
        return Some(format!(
            "{:?} {:?} became {:?} {:?}",
            want.dtype, want.shape, got.dtype, got.shape
        ));
    }
    if want.dtype != DataType::F32 {
        return (want.data != got.data).then(|| "different values".to_owned());
    }
    let (w, g) = (crate::backend::f32s(&want.data), crate::backend::f32s(&got.data));
    let scale = w.clone().fold(1f32, |m, v| m.max(v.abs()));
    let worst = w.zip(g).fold(0f32, |m, (a, b)| {
        if a.is_nan() && b.is_nan() {
            m
        } else {
            m.max((a - b).abs())
        }
    });
    (worst.is_nan() || worst > 1e-4 * scale).then(|| format!("largest difference {worst:e}, values up to {scale:e}"))
}

/// Dynamic quantization (weights int8 now, activations at run time), gated
/// on the validation samples when given.
pub fn quantize_dynamic(
    backend: &dyn Backend,
    model: &[u8],
    validation: Option<&Samples>,
    gate_spec: &gate::GateSpec,
) -> Result<Quantized, CompressError> {
    let started = std::time::Instant::now();
    let proto = ModelProto::decode(model).map_err(|e| CompressError::Decode(e.to_string()))?;
    let (quantized, rewritten) = dynamic::rewrite(&proto)?;
    let bytes = quantized.encode_to_vec();
    let quantize_ms = started.elapsed().as_millis() as u64;
    let evaluation = match validation {
        Some(val) => {
            let load = gate_load_options();
            let mut fp32 = backend.load(model, &load)?;
            let mut int8 = backend.load(&bytes, &load)?;
            // One evaluation: nothing to keep FP32's answers for.
            let e = gate::evaluate(&mut gate::Reference::new(&mut *fp32, 0), &mut *int8, val, gate_spec)?;
            Some(gate_verdict(e)?)
        }
        None => None,
    };
    let layers = layer_precisions(&proto, &rewritten, &HashMap::new());
    let int8_mac_share = mac_share(&layers);
    Ok(Quantized {
        report: Report {
            method: "dynamic".into(),
            activations: "uint8 (at run time)".into(),
            calibration_samples: 0,
            size_before: model.len(),
            size_after: bytes.len(),
            quantized_nodes: rewritten,
            quantized_activations: 0,
            folded_batch_norms: 0,
            evaluation,
            layers,
            int8_mac_share,
            fp32_fallback: Vec::new(),
            evaluations: usize::from(validation.is_some()),
            quantize_ms,
            gate_ms: started.elapsed().as_millis() as u64 - quantize_ms,
            upgraded_from_opset: None,
            opset_rewrites: Vec::new(),
            promoted_constants: 0,
            fp32_subgraphs: Vec::new(),
        },
        model: bytes,
    })
}

/// Quantizes `model` (ONNX bytes) to INT8 QDQ. With validation samples,
/// evaluates FP32 against INT8; if full INT8 fails the gate, ranks the
/// quantized layers by the error each adds (`sensitivity`, one pass) and
/// searches for the fewest of the most harmful to return to FP32 that
/// pass the gate, within `fallback_evaluations`.
pub fn quantize_static(
    backend: &dyn Backend,
    model: &[u8],
    calibration: &Samples,
    validation: Option<&Samples>,
    options: &Options,
) -> Result<Quantized, CompressError> {
    let started = std::time::Instant::now();
    let proto = ModelProto::decode(model).map_err(|e| CompressError::Decode(e.to_string()))?;
    // Gated on its own calibration data, the gate's FP32 answers are what
    // calibration computes anyway (the augmented model's own outputs).
    let gate_on_calibration = validation.is_some_and(|v| std::ptr::eq(v, calibration));
    let mut calibrated = calibrate(backend, &proto, calibration, options.method, gate_on_calibration)?;
    let known = calibrated.answers.take();
    tracing::info!(
        samples = calibration.len(),
        method = %options.method.name(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "calibrated"
    );
    let rewrite = |keep: &HashSet<String>| qdq::rewrite(&proto, &calibrated, options.activations, keep);
    let (mut quantized, mut summary) = rewrite(&HashSet::new())?;
    let quantize_ms = started.elapsed().as_millis() as u64;
    let mut keep = HashSet::new();
    // Counted in a Cell: the evaluation closure and the budget checks share it.
    let evaluations = std::cell::Cell::new(0usize);
    let evaluation = match validation {
        None => None,
        Some(val) => {
            let load = gate_load_options();
            let mut fp32 = backend.load(model, &load)?;
            // FP32's answers are computed once for all the evaluations.
            let budget = match options.fallback_evaluations > 1 {
                true => gate::REFERENCE_BUDGET,
                false => 0,
            };
            let mut reference = match known {
                Some(answers) => gate::Reference::with_answers(&mut *fp32, answers, budget),
                None => gate::Reference::new(&mut *fp32, budget),
            };
            let mut evaluate = |candidate: &ModelProto| -> Result<Evaluation, CompressError> {
                evaluations.set(evaluations.get() + 1);
                let mut int8 = backend.load(&candidate.encode_to_vec(), &load)?;
                gate::evaluate(&mut reference, &mut *int8, val, &options.gate)
            };
            let mut best = evaluate(&quantized)?;
            if !best.passes() && options.fallback_evaluations > 1 {
                let candidates = fallback_candidates(&quantized);
                let ranked = sensitivity::rank(backend, &proto, &quantized, &candidates, val)?;
                tracing::info!(
                    most_harmful = ?ranked.iter().take(5).collect::<Vec<_>>(),
                    "layers ranked by the quantization noise they add"
                );
                tracing::debug!(?ranked, "every candidate, most harmful first");
                // The fewest of the most harmful layers in FP32 that pass:
                // 1, 2, 4, ... of them until one passes, then halving the
                // gap to the largest count that failed. A model rescued by
                // two layers costs two or three evaluations; one that needs
                // fifty costs about a dozen, not fifty.
                let ranked: Vec<String> = ranked.into_iter().map(|(node, _)| node).collect();
                let budget_left = || evaluations.get() < options.fallback_evaluations;
                fewest_passing(ranked.len(), budget_left, |count| {
                    let candidate_keep: HashSet<String> = ranked[..count].iter().cloned().collect();
                    let (candidate, candidate_summary) = rewrite(&candidate_keep)?;
                    let e = evaluate(&candidate)?;
                    let passes = e.passes();
                    tracing::info!(
                        fp32_layers = count,
                        retention = e.retention,
                        passes,
                        "fallback candidate"
                    );
                    // A passing candidate with fewer FP32 layers always
                    // wins; among failures, the one nearest its threshold
                    // is kept for the refusal's figures.
                    if passes || (!best.passes() && e.standing() > best.standing()) {
                        (quantized, summary, best, keep) = (candidate, candidate_summary, e, candidate_keep);
                    }
                    Ok::<bool, CompressError>(passes)
                })?;
            }
            tracing::info!(
                evaluations = evaluations.get(),
                retention = best.retention,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "accuracy gate evaluated"
            );
            Some(gate_verdict(best)?)
        }
    };
    let bytes = quantized.encode_to_vec();
    let layers = layer_precisions(&proto, &summary.quantized_nodes, &calibrated.shapes);
    let int8_mac_share = mac_share(&layers);
    let mut fp32_fallback: Vec<String> = keep.into_iter().collect();
    fp32_fallback.sort();
    Ok(Quantized {
        report: Report {
            layers,
            int8_mac_share,
            fp32_fallback,
            evaluations: evaluations.get(),
            quantize_ms,
            gate_ms: started.elapsed().as_millis() as u64 - quantize_ms,
            activations: match options.activations {
                ActivationType::U8Asymmetric => "uint8".into(),
                ActivationType::I8Symmetric => "int8".into(),
            },
            method: options.method.name(),
            calibration_samples: calibration.len(),
            size_before: model.len(),
            size_after: bytes.len(),
            quantized_nodes: summary.quantized_nodes,
            quantized_activations: summary.quantized_activations,
            folded_batch_norms: summary.folded_batch_norms,
            evaluation,
            upgraded_from_opset: None,
            opset_rewrites: Vec::new(),
            promoted_constants: 0,
            fp32_subgraphs: Vec::new(),
        },
        model: bytes,
    })
}

/// The fallback's search over `n` ranked nodes: `try_count(k)` evaluates
/// the first `k` in FP32 and says whether that passes. Tries 1, 2, 4, …
/// until one passes (or all `n` fail), then halves the gap between the
/// largest count that failed and the smallest that passed; stops when they
/// meet or `budget_left` says no. Assumes more FP32 never hurts, which is
/// near enough to find a small count; the caller keeps whichever passing
/// candidate was smallest.
fn fewest_passing<E>(
    n: usize,
    budget_left: impl Fn() -> bool,
    mut try_count: impl FnMut(usize) -> Result<bool, E>,
) -> Result<(), E> {
    let (mut failed, mut passed) = (0usize, None::<usize>);
    let mut count = 1usize.min(n);
    while count > failed && passed.is_none_or(|p| count < p) && budget_left() {
        if try_count(count)? {
            passed = Some(count);
        } else {
            failed = count;
        }
        count = match passed {
            None if count == n => break,
            None => (count * 2).min(n),
            Some(p) => failed + (p - failed) / 2,
        };
    }
    Ok(())
}

/// The nodes of `int8` the fallback may return to FP32, by name: each that
/// reads a quantized activation. Weight layers, and also the elementwise
/// ops that pass QDQ (a Sigmoid, a Mul), whose requantized outputs can lose
/// more than any weight does (a recurrent model's gates).
fn fallback_candidates(int8: &ModelProto) -> Vec<String> {
    let Some(graph) = int8.graph.as_ref() else {
        return Vec::new();
    };
    // Activations quantized in place: what a QuantizeLinear reads that a
    // node computes or the graph takes (a weight's is a stored constant).
    let computed: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(graph.input.iter().map(|i| i.name()))
        .collect();
    let dequantized: HashSet<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type() == "QuantizeLinear")
        .filter_map(|n| n.input.first())
        .filter(|t| computed.contains(t.as_str()))
        .map(|t| format!("{t}_dequantized"))
        .collect();
    graph
        .node
        .iter()
        .filter(|n| !matches!(n.op_type(), "QuantizeLinear" | "DequantizeLinear") && !n.name().is_empty())
        .filter(|n| n.input.first().is_some_and(|i| dequantized.contains(i)))
        .map(|n| n.name().to_owned())
        .collect()
}

/// The evaluation if it passes the gate, else the refusal.
fn gate_verdict(e: Evaluation) -> Result<Evaluation, CompressError> {
    if e.passes() {
        return Ok(e);
    }
    let figures = match e.metric == gate::label(dsmil_kinds::GateMetric::Accuracy) {
        true => format!("fp32 {:.4}, int8 {:.4}; ", e.fp32, e.int8),
        false => String::new(),
    };
    Err(CompressError::GateFailed {
        metric: e.metric,
        output: e.output,
        reason: e.reason,
        retention: e.retention,
        min: e.threshold,
        figures,
    })
}

/// The share of the weight ops' multiply-accumulates that run in INT8 (0
/// for a model with none).
fn mac_share(layers: &[LayerPrecision]) -> f64 {
    let total: u64 = layers.iter().map(|l| l.macs).sum();
    let int8: u64 = layers.iter().filter(|l| l.precision == "int8").map(|l| l.macs).sum();
    if total > 0 { int8 as f64 / total as f64 } else { 0.0 }
}

/// Every weight op of the original model, with its precision (INT8 if named
/// in `int8`) and MACs per sample (from the shapes seen in calibration).
fn layer_precisions(model: &ModelProto, int8: &[String], shapes: &HashMap<String, Vec<i64>>) -> Vec<LayerPrecision> {
    model
        .graph
        .iter()
        .flat_map(|g| g.node.iter().map(move |n| (g, n)))
        .filter(|(_, n)| qdq::WEIGHT_OPS.contains(&n.op_type()))
        .map(|(g, n)| LayerPrecision {
            node: n.name().to_owned(),
            op: n.op_type().to_owned(),
            precision: if int8.iter().any(|q| q == n.name()) {
                "int8"
            } else {
                "fp32"
            }
            .into(),
            macs: qdq::macs(g, n, shapes),
        })
        .collect()
}

#[cfg(test)]
mod search_tests {
    use super::fewest_passing;

    /// The counts tried for a model that needs `need` of `n` nodes in FP32,
    /// with `budget` evaluations.
    fn tried(n: usize, need: usize, budget: usize) -> Vec<usize> {
        let tried = std::cell::RefCell::new(Vec::new());
        fewest_passing::<()>(
            n,
            || tried.borrow().len() < budget,
            |k| {
                tried.borrow_mut().push(k);
                Ok(k >= need)
            },
        )
        .unwrap();
        tried.into_inner()
    }

    #[test]
    fn the_search_doubles_then_halves_to_the_fewest_that_pass() {
        assert_eq!(tried(100, 1, 16), [1]);
        assert_eq!(tried(100, 3, 16), [1, 2, 4, 3]);
        assert_eq!(tried(100, 7, 16), [1, 2, 4, 8, 6, 7]);
        // All of them: the last doubling is capped at n.
        assert_eq!(
            tried(100, 100, 16),
            [1, 2, 4, 8, 16, 32, 64, 100, 82, 91, 95, 97, 98, 99]
        );
        // Nothing passes: stops after trying all n.
        assert_eq!(tried(10, 11, 16), [1, 2, 4, 8, 10]);
        // The budget ends it in either phase.
        assert_eq!(tried(100, 100, 3), [1, 2, 4]);
        assert_eq!(tried(100, 7, 5), [1, 2, 4, 8, 6]);
        // Nothing to search.
        assert!(tried(0, 1, 16).is_empty());
    }
}
