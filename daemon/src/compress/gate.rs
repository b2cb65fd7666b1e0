//! The accuracy gate: the FP32 and INT8 models run the same validation
//! samples, and each FP32 output is judged by a metric that fits its kind:
//! top-1 accuracy with labels, top-1 agreement for classifier rows,
//! per-position agreement for sequences, whole decoded sequences for CTC
//! outputs (an OCR line, a transcript), thresholded-mask IoU for
//! probability maps, cosine similarity for other dense outputs (maps, boxes,
//! embeddings, audio); SQNR in dB on request. The operator may name the
//! metric; each has its own threshold ([`Thresholds`]). The verdict is the
//! output that does worst against its threshold, and the evaluation says
//! which output judged, by which metric, and why.

use dsmil_kinds::GateMetric;

use super::CompressError;
use super::data::{Samples, Stepper};
use crate::backend::{BackendError, DataType, LoadedModel, Tensor, split_rows};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// "top-1 accuracy", "top-1 agreement", "per-position agreement",
    /// "sequence match", "cosine similarity", "SQNR dB" or "mask IoU".
    pub metric: String,
    pub fp32: f64,
    pub int8: f64,
    /// The value judged against `threshold` (int8 / fp32 for accuracy, the
    /// metric itself otherwise).
    pub retention: f64,
    pub mean_cosine: f64,
    pub samples: usize,
    /// One-sample latency of each model on this host with half its CPUs
    /// (the gate runs the two side by side), in ms.
    pub fp32_p50_ms: f64,
    pub fp32_p95_ms: f64,
    pub int8_p50_ms: f64,
    pub int8_p95_ms: f64,
    /// What `retention` must reach (older reports: 0, meaning the config's
    /// min_accuracy_retention of the day).
    #[serde(default)]
    pub threshold: f64,
    /// The output that judged, and why its metric was chosen.
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub reason: String,
}

impl Evaluation {
    pub fn passes(&self) -> bool {
        self.retention >= self.threshold
    }

    /// The judged value as a share of its threshold: comparable across
    /// evaluations judged by different outputs or metrics (a cosine of
    /// 0.98 against 0.99 stands higher than 8 dB against 20).
    pub fn standing(&self) -> f64 {
        standing(self.retention, self.threshold)
    }
}

fn standing(value: f64, threshold: f64) -> f64 {
    if threshold > 0.0 { value / threshold } else { value }
}

/// Each metric's pass mark (`[quantization]` in the config).
pub use dsmil_kinds::GateThresholds as Thresholds;

/// How the gate judges: a metric named by the operator (else chosen per
/// output), and the thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateSpec {
    pub metric: Option<GateMetric>,
    pub thresholds: Thresholds,
}

pub(super) fn label(metric: GateMetric) -> &'static str {
    match metric {
        GateMetric::Accuracy => "top-1 accuracy",
        GateMetric::Agreement => "top-1 agreement",
        GateMetric::Position => "per-position agreement",
        GateMetric::Sequence => "sequence match",
        GateMetric::Cosine => "cosine similarity",
        GateMetric::Snr => "SQNR dB",
        GateMetric::Iou => "mask IoU",
    }
}

/// The SQNR reported for outputs identical to FP32's.
const MAX_SNR_DB: f64 = 300.0;

/// Classes a classifier-shaped last axis may have.
const MAX_CLASSES: i64 = 1000;

/// The metric for an output of `shape` whose FP32 values on the first
/// sample are `values`, and why.
pub fn choose(shape: &[i64], values: &[f32], labelled: bool) -> (GateMetric, String) {
    let last = shape.last().copied().unwrap_or(1);
    let rows_are_distributions = last >= 2 && {
        let rows = values.chunks(last as usize);
        rows.len() > 0
            && values.iter().all(|v| *v >= 0.0)
            && values
                .chunks(last as usize)
                .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-2)
    };
    let in_unit_range = !values.is_empty() && values.iter().all(|v| (0.0..=1.0).contains(v));
    match shape.len() {
        2 if labelled => (
            GateMetric::Accuracy,
            "labels given with a [batch, classes] output".into(),
        ),
        2 if (2..=MAX_CLASSES).contains(&last) || rows_are_distributions => {
            (GateMetric::Agreement, format!("[batch, {last}] rows of class scores"))
        }
        3 if rows_are_distributions => match ctc_blank(shape, values) {
            // Most positions of a CTC output are blanks: a changed
            // character costs one position of forty but breaks the line.
            Some((blank, share)) => (
                GateMetric::Sequence,
                format!(
                    "a CTC sequence: class {blank} (the blank) wins {:.0}% of positions, so whole decoded \
                     sequences are compared",
                    share * 100.0
                ),
            ),
            None => (
                GateMetric::Position,
                format!("a sequence: each position's {last} scores sum to 1"),
            ),
        },
        r if r >= 3 && in_unit_range => (
            GateMetric::Iou,
            "a probability map: rank ≥ 3, every value in [0, 1]".into(),
        ),
        // A cosine of one or two numbers says nothing (two positive values
        // always agree): the noise over all samples does.
        _ if values.len() <= 2 => (
            GateMetric::Snr,
            format!("{} value(s) per sample: signal-to-noise over all samples", values.len()),
        ),
        _ => (GateMetric::Cosine, format!("a dense output of shape {shape:?}")),
    }
}

/// The blank of a CTC output of `shape` ([batch, time, classes]) whose
/// values on one sample are `values`, and the share of positions it wins:
/// class 0 or the last class (the two conventions), when it wins more than
/// half the positions, as a blank does.
fn ctc_blank(shape: &[i64], values: &[f32]) -> Option<(usize, f64)> {
    let width = usize::try_from(*shape.last()?).ok().filter(|w| *w >= 2)?;
    if shape.len() != 3 || values.len() < width {
        return None;
    }
    let rows = values.len() / width;
    let (mut first, mut last) = (0usize, 0usize);
    for row in values.chunks_exact(width) {
        match argmax(row) {
            0 => first += 1,
            k if k == width - 1 => last += 1,
            _ => {}
        }
    }
    let (blank, wins) = if first >= last { (0, first) } else { (width - 1, last) };
    (2 * wins > rows).then_some((blank, wins as f64 / rows as f64))
}

/// Greedy CTC decoding of one sequence's rows: the argmax at each
/// position, repeats merged, blanks dropped.
fn ctc_decode(rows: &[f32], width: usize, blank: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut previous = None;
    for row in rows.chunks_exact(width) {
        let k = argmax(row);
        if previous != Some(k) && k != blank {
            out.push(k);
        }
        previous = Some(k);
    }
    out
}

fn percentile_ms(samples: &mut [std::time::Duration], q: f64) -> f64 {
    crate::monitor::probation::percentile(samples, q).as_secs_f64() * 1e3
}

fn floats(t: &Tensor) -> Vec<f32> {
    crate::backend::f32s(&t.data).collect()
}

fn argmax(row: &[f32]) -> usize {
    crate::backend::argmax(row.iter().copied()).0
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        f64::from(u8::from(na == nb))
    } else {
        dot / (na * nb)
    }
}

/// One FP32 output's running comparison.
#[derive(Default)]
struct Tally {
    name: String,
    metric: Option<(GateMetric, String)>,
    width: usize,
    /// Values per sequence (time × classes) and the CTC blank, when the
    /// sequence metric judges.
    sequence: Option<(usize, usize)>,
    /// Decoded sequences identical to FP32's, of all sequences.
    same_sequences: usize,
    sequences: usize,
    /// Rows (last-axis vectors) whose argmax agreed, of all rows.
    agree: usize,
    rows: usize,
    /// Per-sample cosine of the whole output.
    cosine_sum: f64,
    samples: usize,
    signal: f64,
    noise: f64,
    intersection: u64,
    union: u64,
    right_fp32: usize,
    right_int8: usize,
}

impl Tally {
    fn add(&mut self, a: &[f32], b: &[f32], label: Option<i64>) {
        for (ra, rb) in a.chunks(self.width).zip(b.chunks(self.width)) {
            self.agree += usize::from(argmax(ra) == argmax(rb));
            self.rows += 1;
        }
        if let Some(label) = label {
            let (first_a, first_b) = (&a[..self.width.min(a.len())], &b[..self.width.min(b.len())]);
            self.right_fp32 += usize::from(argmax(first_a) as i64 == label);
            self.right_int8 += usize::from(argmax(first_b) as i64 == label);
        }
        if let Some((stride, blank)) = self.sequence {
            for (sa, sb) in a.chunks(stride).zip(b.chunks(stride)) {
                let same = ctc_decode(sa, self.width, blank) == ctc_decode(sb, self.width, blank);
                self.same_sequences += usize::from(same);
                self.sequences += 1;
            }
        }
        self.cosine_sum += cosine(a, b);
        self.samples += 1;
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            self.signal += x * x;
            self.noise += (x - y) * (x - y);
            let (mx, my) = (x > 0.5, y > 0.5);
            self.intersection += u64::from(mx && my);
            self.union += u64::from(mx || my);
        }
    }

    /// (fp32, int8, value judged) for `metric`.
    fn score(&self, metric: GateMetric) -> (f64, f64, f64) {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::from(u8::from(a == 0.0)) };
        match metric {
            GateMetric::Accuracy => {
                let n = self.samples.max(1) as f64;
                let (f, i) = (self.right_fp32 as f64 / n, self.right_int8 as f64 / n);
                (f, i, ratio(i, f))
            }
            GateMetric::Agreement | GateMetric::Position => {
                let a = self.agree as f64 / self.rows.max(1) as f64;
                (1.0, a, a)
            }
            GateMetric::Sequence => {
                let s = self.same_sequences as f64 / self.sequences.max(1) as f64;
                (1.0, s, s)
            }
            GateMetric::Cosine => {
                let c = self.cosine_sum / self.samples.max(1) as f64;
                (1.0, c, c)
            }
            GateMetric::Snr => {
                // Capped so it stays a number in the journal's JSON (an
                // exact match has no noise at all); FP32 is the reference,
                // so its column holds no measurement: 0.
                let db = if self.noise == 0.0 {
                    MAX_SNR_DB
                } else {
                    (10.0 * (self.signal / self.noise).log10()).min(MAX_SNR_DB)
                };
                (0.0, db, db)
            }
            GateMetric::Iou => {
                let iou = if self.union == 0 {
                    1.0
                } else {
                    self.intersection as f64 / self.union as f64
                };
                (1.0, iou, iou)
            }
        }
    }
}

/// The model's own outputs, sample by sample, as a run over the samples
/// (calibration's) visits them: FP32's answers for a gate on that data.
pub struct Answers {
    own: std::collections::HashSet<String>,
    current: Vec<Tensor>,
    answers: Vec<Vec<Tensor>>,
    bytes: usize,
    budget: usize,
    gave_up: bool,
}

impl Answers {
    /// For a model whose graph is `graph` (its outputs are the answers;
    /// the run may expose more), keeping at most `budget` bytes.
    pub fn new(graph: &dsmil_proto::onnx::GraphProto, budget: usize) -> Answers {
        Answers {
            own: graph.output.iter().map(|o| o.name().to_owned()).collect(),
            current: Vec::new(),
            answers: Vec::new(),
            bytes: 0,
            budget,
            gave_up: false,
        }
    }

    /// One output of the run under way, in the model's output order.
    pub fn see(&mut self, t: &crate::backend::TensorView) {
        if !self.gave_up && self.own.contains(t.name) {
            self.current.push(Tensor {
                name: t.name.to_owned(),
                dtype: t.dtype,
                shape: t.shape.to_vec(),
                data: bytes::Bytes::copy_from_slice(t.data),
            });
        }
    }

    /// The run under way held `len` samples: its answers, split by rows.
    /// Past the budget, or answers that do not split by rows, none is kept.
    pub fn finish_run(&mut self, len: usize) {
        let run = std::mem::take(&mut self.current);
        if self.gave_up {
            return;
        }
        self.bytes += run.iter().map(|t| t.data.len()).sum::<usize>();
        let split = match len {
            1 => Some(vec![run]),
            _ => split_rows(&run, &vec![1; len]),
        };
        match split {
            Some(samples) if self.bytes <= self.budget => self.answers.extend(samples),
            _ => {
                self.gave_up = true;
                self.answers = Vec::new();
            }
        }
    }

    /// Every sample's answers, unless some were not kept.
    pub fn into_answers(self) -> Option<Vec<Vec<Tensor>>> {
        (!self.gave_up).then_some(self.answers)
    }
}

/// Samples the gate runs one at a time, for the report's one-sample
/// latencies (the rest may run in batches).
const TIMED_SAMPLES: usize = 16;

/// FP32's side of the gate, kept across evaluations: the mixed-precision
/// fallback judges up to `fallback_evaluations` candidates on the same
/// samples, and FP32's answers and latency do not change between them. Its
/// answers are kept up to a budget of bytes; past that, FP32 runs again.
/// The latencies are the first evaluation's, timed beside that INT8.
pub struct Reference<'m> {
    model: &'m mut dyn LoadedModel,
    /// Answers by the run that produced them: (first sample, samples).
    answers: std::collections::HashMap<(usize, usize), Vec<Tensor>>,
    bytes: usize,
    budget: usize,
    /// One-sample latencies, from the first evaluation.
    timings: Vec<std::time::Duration>,
}

/// FP32 runs timed for the report when its answers are known already.
const KNOWN_TIMINGS: usize = 4;

/// Bytes of FP32 answers a [`Reference`] keeps when more than one
/// evaluation will read them.
pub const REFERENCE_BUDGET: usize = 256 << 20;

impl<'m> Reference<'m> {
    /// `budget`: bytes of answers to keep (0 for a single evaluation, which
    /// tallies each answer and drops it).
    pub fn new(model: &'m mut dyn LoadedModel, budget: usize) -> Reference<'m> {
        Reference {
            model,
            answers: Default::default(),
            bytes: 0,
            budget,
            timings: Vec::new(),
        }
    }

    /// A reference that knows FP32's answer for each sample already (the
    /// calibration computed them when the gate judges on its data): only
    /// a few runs are made, to time FP32.
    pub fn with_answers(model: &'m mut dyn LoadedModel, answers: Vec<Vec<Tensor>>, budget: usize) -> Reference<'m> {
        Reference {
            bytes: answers.iter().flatten().map(|t| t.data.len()).sum(),
            answers: answers.into_iter().enumerate().map(|(i, a)| ((i, 1), a)).collect(),
            ..Reference::new(model, budget)
        }
    }

    /// Whether each of the first `n` samples' answer is known.
    fn covers(&self, n: usize) -> bool {
        (0..n).all(|i| self.answers.contains_key(&(i, 1)))
    }

    /// FP32's answer for the run `key` on `inputs`, and how long it took
    /// when it ran (None when it was kept). `timing`: run it even when
    /// kept, while fewer than [`KNOWN_TIMINGS`] runs have been timed.
    fn run(
        &mut self,
        key: (usize, usize),
        inputs: &[Tensor],
        timing: bool,
    ) -> Result<(Vec<Tensor>, Option<std::time::Duration>), BackendError> {
        if let Some(kept) = self.answers.get(&key)
            && !(timing && self.timings.len() < KNOWN_TIMINGS)
        {
            return Ok((kept.clone(), None));
        }
        let started = std::time::Instant::now();
        let answer = self.model.run(inputs)?;
        let took = started.elapsed();
        let size: usize = answer.iter().map(|t| t.data.len()).sum();
        if !self.answers.contains_key(&key) && self.bytes + size <= self.budget {
            self.bytes += size;
            self.answers.insert(key, answer.clone());
        }
        Ok((answer, Some(took)))
    }

    fn signature(&self) -> &crate::backend::Signature {
        self.model.signature()
    }
}

/// Runs `a` on a scoped thread and `b` on this one, side by side (two
/// models, each loaded with half the CPUs), and returns both results; `a`
/// panicking is an error naming `what`.
pub(super) fn side_by_side<A: Send, B>(
    what: &str,
    a: impl FnOnce() -> Result<A, BackendError> + Send,
    b: impl FnOnce() -> Result<B, BackendError>,
) -> Result<(A, B), CompressError> {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(a);
        (a.join(), b())
    });
    let a = a.map_err(|_| CompressError::Backend(BackendError::Panicked(what.into())))??;
    Ok((a, b?))
}

pub fn evaluate(
    fp32: &mut Reference,
    int8: &mut dyn LoadedModel,
    samples: &Samples,
    spec: &GateSpec,
) -> Result<Evaluation, CompressError> {
    let labels = samples.labels();
    let mut tallies: Vec<Tally> = Vec::new();
    // Each sample's answers are tallied as they come and dropped: a
    // detector's maps for a thousand samples would not fit in memory.
    let mut tally = |i: usize, out_a: &[Tensor], out_b: &[Tensor]| {
        let pairs = out_a
            .iter()
            .zip(out_b)
            .filter(|(a, b)| a.dtype == DataType::F32 && b.dtype == DataType::F32);
        for (j, (a, b)) in pairs.enumerate() {
            let (va, vb) = (floats(a), floats(b));
            if tallies.len() == j {
                // Labels belong to the first output (the classifier's).
                let labelled = j == 0 && labels.is_some();
                let (chosen, reason) = match spec.metric {
                    // Accuracy needs labels; without them, agreement.
                    Some(GateMetric::Accuracy) if !labelled => (
                        GateMetric::Agreement,
                        "named by the operator (accuracy, but no labels)".to_owned(),
                    ),
                    Some(m) => (m, "named by the operator".to_owned()),
                    None => choose(&a.shape, &va, labelled),
                };
                let width = a.shape.last().copied().unwrap_or(1).max(1) as usize;
                // One sequence is the last two axes; an output named for
                // the sequence metric without a clear blank takes class 0.
                let sequence = (chosen == GateMetric::Sequence).then(|| {
                    let time = a.shape.iter().rev().nth(1).copied().unwrap_or(1).max(1) as usize;
                    (time * width, ctc_blank(&a.shape, &va).map_or(0, |(blank, _)| blank))
                });
                tallies.push(Tally {
                    name: a.name.clone(),
                    metric: Some((chosen, reason)),
                    width,
                    sequence,
                    ..Default::default()
                });
            }
            let label = labels.filter(|_| j == 0).map(|l| l[i]);
            tallies[j].add(&va, &vb, label);
        }
    };
    let mut t_int8 = Vec::new();
    let timed_before = !fp32.timings.is_empty();
    // The first samples run one at a time, timed, for the report's
    // latencies. The rest run in batches only if those answers showed every
    // output with one row per sample: a dynamic first dimension is not
    // always the batch (a detector's list of boxes), and splitting such an
    // output by rows would score one sample's answer against another's.
    // A recurrent model's samples run in order, one at a time, and each
    // model carries its own state: INT8 is judged on the state its own
    // errors leave, as it would be serving a stream.
    let (mut step_a, mut step_b) = (Stepper::new(samples), Stepper::new(samples));
    let timed = samples.len().min(TIMED_SAMPLES);
    let mut per_sample_rows =
        fp32.signature().is_batched() && int8.signature().is_batched() && !samples.is_sequential();
    for i in 0..timed {
        let (in_a, in_b) = (step_a.inputs(i), step_b.inputs(i));
        // Each on its own half of the CPUs, as they were loaded: timed
        // side by side, each run is its model's latency with those threads.
        let ((out_a, took_a), (out_b, took_b)) = side_by_side(
            "FP32 run in the gate",
            || fp32.run((i, 1), &in_a, !timed_before),
            || {
                let started = std::time::Instant::now();
                int8.run(&in_b).map(|out| (out, started.elapsed()))
            },
        )?;
        if let (Some(took), false) = (took_a, timed_before) {
            fp32.timings.push(took);
        }
        t_int8.push(took_b);
        per_sample_rows &= out_a.iter().chain(&out_b).all(|t| t.shape.first() == Some(&1));
        step_a.keep(&out_a);
        step_b.keep(&out_b);
        tally(i, &out_a, &out_b);
    }
    // Answers known per sample are met by INT8 runs per sample.
    let mut batched = per_sample_rows && !fp32.covers(samples.len());
    let mut next = timed;
    while next < samples.len() {
        let len = if batched {
            samples.rows_per_run().min(samples.len() - next)
        } else {
            1
        };
        // Stacked whole inputs cannot be joined: one sample per run.
        let (in_a, in_b, len) = match samples.rows(next, len).filter(|_| len > 1) {
            Some(batch) => (batch.clone(), batch, len),
            None => (step_a.inputs(next), step_b.inputs(next), 1),
        };
        // The two models are independent: each runs on its own thread, so
        // the gate takes about the slower one's time, not the sum.
        let ((out_a, _), out_b) = side_by_side(
            "FP32 run in the gate",
            || fp32.run((next, len), &in_a, false),
            || int8.run(&in_b),
        )?;
        if len == 1 {
            step_a.keep(&out_a);
            step_b.keep(&out_b);
            tally(next, &out_a, &out_b);
        } else {
            let counts = vec![1; len];
            match (split_rows(&out_a, &counts), split_rows(&out_b, &counts)) {
                (Some(a), Some(b)) => {
                    for (k, (a, b)) in a.iter().zip(&b).enumerate() {
                        tally(next + k, a, b);
                    }
                }
                // Not split by rows after all: these samples one by one,
                // and no more batches.
                _ => {
                    batched = false;
                    for i in next..next + len {
                        let inputs = samples.sample(i);
                        tally(i, &fp32.run((i, 1), &inputs, false)?.0, &int8.run(&inputs)?);
                    }
                }
            }
        }
        next += len;
    }
    // The output that does worst against its threshold judges.
    let judged = tallies
        .iter()
        .map(|t| {
            let (metric, reason) = t.metric.clone().expect("set when created");
            let (f, i, value) = t.score(metric);
            let threshold = spec.thresholds.of(metric);
            (standing(value, threshold), t, metric, reason, f, i, value, threshold)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .ok_or(CompressError::NoFloatOutput)?;
    let (_, tally, metric, reason, fp32_value, int8_value, value, threshold) = judged;
    let mean_cosine = tally.cosine_sum / tally.samples.max(1) as f64;
    let mut t_fp32 = fp32.timings.clone();
    let (fp32_p50_ms, fp32_p95_ms) = (percentile_ms(&mut t_fp32, 0.5), percentile_ms(&mut t_fp32, 0.95));
    let (int8_p50_ms, int8_p95_ms) = (percentile_ms(&mut t_int8, 0.5), percentile_ms(&mut t_int8, 0.95));
    Ok(Evaluation {
        metric: label(metric).into(),
        fp32: fp32_value,
        int8: int8_value,
        retention: value,
        mean_cosine,
        samples: samples.len(),
        fp32_p50_ms,
        fp32_p95_ms,
        int8_p50_ms,
        int8_p95_ms,
        threshold,
        output: tally.name.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_fits_the_output() {
        let probs = [0.1, 0.7, 0.2, 0.3, 0.3, 0.4];
        assert_eq!(choose(&[2, 3], &probs, true).0, GateMetric::Accuracy);
        assert_eq!(
            choose(&[2, 3], &[3.0, -1.0, 0.5, 2.0, 2.5, -7.0], false).0,
            GateMetric::Agreement
        );
        // Embeddings: too wide for classes, not distributions.
        let wide = vec![0.25f32; 2 * 2048];
        assert_eq!(choose(&[2, 2048], &wide, false).0, GateMetric::Cosine);
        // One probability per sample (a voice-activity score): a cosine of
        // one positive number is always 1, so the noise over the set judges.
        assert_eq!(choose(&[1, 1], &[0.93], false).0, GateMetric::Snr);
        // Token scores: [batch, time, classes] rows summing to 1.
        assert_eq!(choose(&[1, 2, 3], &probs, false).0, GateMetric::Position);
        // CTC: the blank (class 0) wins most positions.
        let ctc = [0.8, 0.1, 0.1, 0.1, 0.7, 0.2, 0.6, 0.2, 0.2];
        let (metric, reason) = choose(&[1, 3, 3], &ctc, false);
        assert_eq!(metric, GateMetric::Sequence);
        assert!(reason.contains("class 0 (the blank) wins 67%"), "{reason}");
        // A text detector's probability map.
        let map = vec![0.2f32, 0.9, 0.0, 1.0];
        assert_eq!(choose(&[1, 1, 2, 2], &map, false).0, GateMetric::Iou);
        // YOLO-style raw boxes and scores: dense.
        let raw = vec![12.5f32, 0.3, 300.0, 0.01];
        assert_eq!(choose(&[1, 4, 1], &raw, false).0, GateMetric::Cosine);
    }

    #[test]
    fn ctc_sequences_are_compared_whole() {
        // Blank 0; FP32 "1 _ 1 2" decodes to [1, 1, 2].
        let one_hot = |ks: &[usize]| {
            ks.iter()
                .flat_map(|&k| (0..3).map(move |c| f32::from(u8::from(c == k))))
                .collect::<Vec<_>>()
        };
        assert_eq!(ctc_decode(&one_hot(&[1, 0, 1, 2]), 3, 0), vec![1, 1, 2]);
        // Repeats merge without a blank between them.
        assert_eq!(ctc_decode(&one_hot(&[1, 1, 2, 2]), 3, 0), vec![1, 2]);
        let mut t = Tally {
            width: 3,
            sequence: Some((4 * 3, 0)),
            ..Default::default()
        };
        // Two samples of one sequence each; the second loses its blank,
        // which merges the repeated character: 3 of 4 positions agree, but
        // the line differs.
        t.add(&one_hot(&[1, 0, 2, 0]), &one_hot(&[1, 0, 2, 2]), None);
        t.add(&one_hot(&[1, 0, 1, 0]), &one_hot(&[1, 1, 1, 0]), None);
        assert_eq!(t.score(GateMetric::Position).2, 6.0 / 8.0);
        assert_eq!(t.score(GateMetric::Sequence).2, 0.5);
    }

    #[test]
    fn scores_are_what_their_names_say() {
        let mut t = Tally {
            width: 2,
            ..Default::default()
        };
        t.add(&[0.9, 0.1, 0.2, 0.8], &[0.8, 0.2, 0.6, 0.4], Some(0));
        assert_eq!(t.score(GateMetric::Agreement).2, 0.5);
        assert_eq!(t.score(GateMetric::Accuracy), (1.0, 1.0, 1.0));
        // Masks > 0.5: fp32 {0, 3}, int8 {0, 2}: IoU 1/3.
        assert!((t.score(GateMetric::Iou).2 - 1.0 / 3.0).abs() < 1e-12);
        let snr = t.score(GateMetric::Snr).2;
        let (signal, noise): (f64, f64) = (0.81 + 0.01 + 0.04 + 0.64, 0.01 + 0.01 + 0.16 + 0.16);
        assert!((snr - 10.0 * (signal / noise).log10()).abs() < 1e-6, "{snr}");
    }
}
