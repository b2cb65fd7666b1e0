//! Output drift of a deployment. Its first N answered rows (the deploy's
//! validation data when it brought some) make the baseline; a sliding
//! window of the last rows is the live side.
//!
//! For a classifier (an FP32 output of shape [rows, classes]) each row
//! gives its predicted class and its top-1 confidence (the row itself if it
//! is a probability distribution, else its softmax); for other models,
//! each float output's row mean, binned by the baseline's deciles (the
//! output that moved most is reported). Drift is the
//! population stability index (PSI) between baseline and live histograms,
//! and the relative change of mean confidence. With labels reported back
//! by applications, accuracy drift is the relative drop of live accuracy
//! against the accuracy the deployment was validated at.
//!
//! Owns the evidence and the judgement against a threshold ([`Assessment`]);
//! never records an event or acts on a judgement (the sampler reports
//! crossings, the supervisor decides). What the inference path calls is
//! lock-short and allocates only the rows it keeps.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::backend::{DataType, Tensor, argmax, f32s, mean_f32};

/// The most float outputs a non-classifier's drift watches.
const MAX_OUTPUTS: usize = 8;

/// Accuracy drift needs this many reported outcomes before it is judged.
const MIN_REPORTS: u64 = 20;

// What wakes the sampler to judge drift as soon as there is new evidence,
// rather than at its next collection interval. One per process, not per
// tracker: a wake-up only says "look", and the sampler looks at every
// deployment. notify_one is an atomic store while nobody waits, so the
// inference path pays almost nothing.
static ROWS_OBSERVED: Notify = Notify::const_new();
static OUTCOME_REPORTED: Notify = Notify::const_new();

/// Completes once answered rows were observed since the last call.
pub async fn rows_observed() {
    ROWS_OBSERVED.notified().await
}

/// Completes once an outcome was reported since the last call.
pub async fn outcome_reported() {
    OUTCOME_REPORTED.notified().await
}

/// What one answered row contributes (fixed size: the window holds
/// hundreds of them, and the inference path makes one per row).
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Classifier: the predicted class. Otherwise, per float output, the
    /// row's mean value.
    values: [f32; MAX_OUTPUTS],
    /// How many of `values` hold something.
    outputs: u8,
    confidence: Option<f32>,
}

#[derive(Debug)]
pub struct DriftTracker {
    inner: Mutex<Inner>,
    baseline_rows: usize,
    window_rows: usize,
    validated_accuracy: Option<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    baseline: Vec<Row>,
    live: VecDeque<Row>,
    classifier: Option<bool>,
    /// Reported outcomes: (correct, total).
    outcomes: (u64, u64),
}

/// Baseline against live, as `dsmilctl drift` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftReport {
    pub classifier: bool,
    pub baseline_rows: usize,
    pub live_rows: usize,
    /// Bin labels (classes, or decile ranges) and the shares in each.
    pub bins: Vec<String>,
    pub baseline_share: Vec<f64>,
    pub live_share: Vec<f64>,
    pub psi: f64,
    pub baseline_confidence: f64,
    pub live_confidence: f64,
    /// Relative change of mean confidence, live against baseline.
    pub confidence_change: f64,
    /// Live accuracy from reported outcomes (None without reports).
    pub live_accuracy: Option<f64>,
    pub reported: u64,
    /// Whether the baseline is complete and the window full enough to judge.
    pub ready: bool,
}

impl DriftReport {
    /// The drift score: the larger of PSI and the confidence change.
    pub fn score(&self) -> f64 {
        self.psi.max(self.confidence_change.abs())
    }
}

impl DriftTracker {
    pub fn new(baseline_rows: usize, window_rows: usize) -> DriftTracker {
        DriftTracker {
            inner: Mutex::new(Inner::default()),
            baseline_rows,
            window_rows,
            validated_accuracy: None,
        }
    }

    /// The accuracy the version was validated at (its quantization
    /// report's top-1 accuracy), against which reported outcomes are judged.
    pub fn with_validated_accuracy(mut self, accuracy: Option<f64>) -> DriftTracker {
        self.validated_accuracy = accuracy;
        self
    }

    pub fn validated_accuracy(&self) -> Option<f64> {
        self.validated_accuracy
    }

    /// Takes an answer's rows: a classifier's first FP32 output ([rows,
    /// classes]), or the row means of its first `MAX_OUTPUTS` FP32 outputs.
    /// On the inference path: reads the output bytes in place, allocates
    /// only the rows' summaries, and holds the lock only to store them.
    pub fn observe(&self, outputs: &[Tensor]) {
        let floats = || outputs.iter().filter(|t| t.dtype == DataType::F32).take(MAX_OUTPUTS);
        let Some(first) = floats().next() else {
            return;
        };
        let classifier = matches!(first.shape.as_slice(), [_, classes] if *classes >= 2);
        // Rows are the leading dimension; each output's row is `width` floats.
        let rows_of = |t: &Tensor| t.shape.first().map_or(1, |&r| r.max(1) as usize);
        let rows = floats().map(rows_of).min().unwrap_or(0);
        fn row_bytes(t: &Tensor, rows: usize, r: usize) -> &[u8] {
            let width = t.data.len() / rows;
            &t.data[r * width..(r + 1) * width]
        }
        // The rows are summarised before the lock is taken: an image-sized
        // output's means take long enough that holding the lock through them
        // would serialise concurrent answers.
        let summaries: Vec<Row> = (0..rows)
            .map(|r| {
                if classifier {
                    return summarize_class(row_bytes(first, rows_of(first), r));
                }
                let mut row = Row {
                    values: [f32::NAN; MAX_OUTPUTS],
                    outputs: 0,
                    confidence: None,
                };
                for (k, t) in floats().enumerate() {
                    row.values[k] = mean_f32(row_bytes(t, rows_of(t), r));
                    row.outputs = k as u8 + 1;
                }
                row
            })
            .collect();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.classifier.get_or_insert(classifier);
        for row in summaries {
            if inner.baseline.len() < self.baseline_rows {
                inner.baseline.push(row);
            } else {
                inner.live.push_back(row);
                if inner.live.len() > self.window_rows {
                    inner.live.pop_front();
                }
            }
        }
        drop(inner);
        ROWS_OBSERVED.notify_one();
    }

    /// An application's report: what the model predicted and what was true.
    pub fn report_outcome(&self, correct: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.outcomes.0 += u64::from(correct);
        inner.outcomes.1 += 1;
        drop(inner);
        OUTCOME_REPORTED.notify_one();
    }

    /// The drift judged against `threshold` (a fraction): what `dsmilctl
    /// drift` shows and what the sampler alerts on. Judging records nothing.
    pub fn assess(&self, threshold: f64) -> Assessment {
        let report = self.report();
        // Accuracy drift: live accuracy from reported outcomes against the
        // accuracy the version was validated at (its quantization report).
        let accuracy_drop = match (report.live_accuracy, self.validated_accuracy) {
            (Some(live), Some(valid)) if valid > 0.0 && report.reported >= MIN_REPORTS => Some((valid - live) / valid),
            _ => None,
        };
        Assessment {
            output_drift: report.ready && report.score() > threshold,
            accuracy_drift: accuracy_drop.is_some_and(|d| d > threshold),
            validated_accuracy: self.validated_accuracy,
            report,
            accuracy_drop,
        }
    }

    pub fn report(&self) -> DriftReport {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let classifier = inner.classifier.unwrap_or(false);
        let baseline: Vec<Row> = inner.baseline.clone();
        let live: Vec<Row> = inner.live.iter().copied().collect();
        let (correct, total) = inner.outcomes;
        drop(inner);
        let ready = baseline.len() >= self.baseline_rows && live.len() >= self.window_rows.div_ceil(2);
        // One histogram per output (a classifier has one: its classes); the
        // report shows the output that moved most.
        let outputs = baseline.first().map_or(1, |r| usize::from(r.outputs)).max(1);
        // (psi, bin labels, baseline shares, live shares) of the worst output.
        type Histograms = (f64, Vec<String>, Vec<f64>, Vec<f64>);
        let mut worst: Option<Histograms> = None;
        for k in 0..outputs {
            let value = |r: &Row| r.values[k];
            let edges = if classifier {
                Vec::new()
            } else {
                deciles(baseline.iter().map(value))
            };
            let mut bins = if classifier {
                let classes = baseline
                    .iter()
                    .chain(&live)
                    .map(|r| value(r) as usize)
                    .max()
                    .unwrap_or(0)
                    + 1;
                (0..classes).map(|c| format!("class {c}")).collect()
            } else {
                decile_labels(&edges)
            };
            if outputs > 1 {
                bins = bins.into_iter().map(|b| format!("output {k}: {b}")).collect();
            }
            let bin_of = |r: &Row| -> usize {
                let v = value(r);
                if classifier {
                    v as usize
                } else {
                    edges.iter().take_while(|&&e| v >= e).count()
                }
            };
            let shares = |rows: &[Row]| -> Vec<f64> {
                let mut counts = vec![0f64; bins.len()];
                for r in rows {
                    counts[bin_of(r).min(bins.len() - 1)] += 1.0;
                }
                let n = rows.len().max(1) as f64;
                counts.iter().map(|c| c / n).collect()
            };
            let (base, now) = (shares(&baseline), shares(&live));
            let psi = if ready {
                psi_beyond_noise(&base, &now, baseline.len(), live.len())
            } else {
                0.0
            };
            if worst.as_ref().is_none_or(|w| psi > w.0) {
                worst = Some((psi, bins, base, now));
            }
        }
        let (psi, bins, baseline_share, live_share) = worst.expect("at least one output");
        let mean_conf = |rows: &[Row]| -> f64 {
            let confs: Vec<f64> = rows.iter().filter_map(|r| r.confidence).map(f64::from).collect();
            if confs.is_empty() {
                0.0
            } else {
                confs.iter().sum::<f64>() / confs.len() as f64
            }
        };
        let (baseline_confidence, live_confidence) = (mean_conf(&baseline), mean_conf(&live));
        DriftReport {
            classifier,
            baseline_rows: baseline.len(),
            live_rows: live.len(),
            psi,
            confidence_change: if ready && baseline_confidence > 0.0 {
                (live_confidence - baseline_confidence) / baseline_confidence
            } else {
                0.0
            },
            bins,
            baseline_share,
            live_share,
            baseline_confidence,
            live_confidence,
            live_accuracy: (total > 0).then(|| correct as f64 / total as f64),
            reported: total,
            ready,
        }
    }
}

/// A deployment's drift against the alert threshold.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub report: DriftReport,
    /// How far live accuracy is below the validated one, relatively (None
    /// without enough reported outcomes or a validated accuracy).
    pub accuracy_drop: Option<f64>,
    pub validated_accuracy: Option<f64>,
    pub output_drift: bool,
    pub accuracy_drift: bool,
}

impl Assessment {
    /// Whether the drift alert should be raised.
    pub fn over(&self) -> bool {
        self.output_drift || self.accuracy_drift
    }

    /// Why the alert is raised, for its event; `threshold_percent` as
    /// configured.
    pub fn reason(&self, threshold_percent: f64) -> String {
        let r = &self.report;
        let mut why = Vec::new();
        if self.output_drift {
            why.push(format!(
                "output drift: PSI {:.4}, mean confidence {:+.2}% ({} live rows against a baseline of {})",
                r.psi,
                r.confidence_change * 100.0,
                r.live_rows,
                r.baseline_rows
            ));
        }
        if let Some(drop) = self.accuracy_drop.filter(|_| self.accuracy_drift) {
            why.push(format!(
                "accuracy drift: live {:.4} is {:.2}% below the validated {:.4}",
                r.live_accuracy.unwrap_or_default(),
                drop * 100.0,
                self.validated_accuracy.unwrap_or_default()
            ));
        }
        format!("{} (threshold {}%)", why.join("; "), threshold_percent)
    }
}

/// A classifier row (its bytes): the predicted class and its confidence.
fn summarize_class(row: &[u8]) -> Row {
    let values = f32s(row);
    let (class, max) = argmax(values.clone());
    // A probability row already sums to 1; logits get their softmax.
    let is_distribution =
        values.clone().all(|v| (0.0..=1.0).contains(&v)) && (values.clone().sum::<f32>() - 1.0).abs() < 1e-3;
    let confidence = if is_distribution {
        max
    } else {
        1.0 / values.map(|v| (v - max).exp()).sum::<f32>()
    };
    let mut summary = Row {
        values: [f32::NAN; MAX_OUTPUTS],
        outputs: 1,
        confidence: Some(confidence),
    };
    summary.values[0] = class as f32;
    summary
}

/// The baseline's decile boundaries (9 edges, 10 bins).
fn deciles(values: impl Iterator<Item = f32>) -> Vec<f32> {
    let mut values: Vec<f32> = values.filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return Vec::new();
    }
    values.sort_by(f32::total_cmp);
    (1..10).map(|k| values[(values.len() - 1) * k / 10]).collect()
}

fn decile_labels(edges: &[f32]) -> Vec<String> {
    if edges.is_empty() {
        return vec!["all".into()];
    }
    let mut labels = vec![format!("< {:.4}", edges[0])];
    for w in edges.windows(2) {
        labels.push(format!("{:.4} – {:.4}", w[0], w[1]));
    }
    labels.push(format!("≥ {:.4}", edges[edges.len() - 1]));
    labels
}

/// PSI beyond what sampling alone gives: two samples of one distribution,
/// of n₁ and n₂ rows over k bins, still show a PSI of about
/// (k − 1)(1/n₁ + 1/n₂) (PSI is a symmetric KL divergence; 2n·KL is χ²
/// with k − 1 degrees of freedom). Subtracting it keeps small windows from
/// crying drift over noise.
pub fn psi_beyond_noise(base: &[f64], live: &[f64], n_base: usize, n_live: usize) -> f64 {
    let occupied = base.iter().zip(live).filter(|(b, l)| **b > 0.0 || **l > 0.0).count();
    let noise = occupied.saturating_sub(1) as f64 * (1.0 / n_base.max(1) as f64 + 1.0 / n_live.max(1) as f64);
    (psi(base, live) - noise).max(0.0)
}

/// Population stability index: Σ (live − base) · ln(live / base), with
/// empty bins floored at a small share so that a new bin counts, finitely.
pub fn psi(base: &[f64], live: &[f64]) -> f64 {
    const FLOOR: f64 = 1e-4;
    base.iter()
        .zip(live)
        .map(|(&b, &l)| {
            let (b, l) = (b.max(FLOOR), l.max(FLOOR));
            (l - b) * (l / b).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probabilities(rows: &[[f32; 3]]) -> Tensor {
        Tensor {
            name: "p".into(),
            dtype: DataType::F32,
            shape: vec![rows.len() as i64, 3],
            data: rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn psi_is_zero_for_the_same_shares_and_grows_with_the_shift() {
        assert!(psi(&[0.5, 0.5], &[0.5, 0.5]).abs() < 1e-12);
        let small = psi(&[0.5, 0.5], &[0.55, 0.45]);
        let large = psi(&[0.5, 0.5], &[0.95, 0.05]);
        assert!(small > 0.0 && large > 10.0 * small, "{small} {large}");
    }

    fn regression(first: &[f32], second: &[f32]) -> Vec<Tensor> {
        let tensor = |name: &str, values: &[f32]| Tensor {
            name: name.into(),
            dtype: DataType::F32,
            shape: vec![values.len() as i64, 1],
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        vec![tensor("a", first), tensor("b", second)]
    }

    #[test]
    fn every_output_of_a_non_classifier_is_watched() {
        let tracker = DriftTracker::new(100, 100);
        let spread: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        tracker.observe(&regression(&spread, &spread));
        tracker.observe(&regression(&spread, &spread));
        let same = tracker.report();
        assert!(!same.classifier && same.ready && same.psi == 0.0, "{same:?}");
        // Only the second output moves: it is the one reported.
        let high = vec![0.995; 100];
        tracker.observe(&regression(&spread, &high));
        let moved = tracker.report();
        assert!(moved.psi > 1.0, "{moved:?}");
        assert!(moved.bins[0].starts_with("output 1: "), "{:?}", moved.bins);
    }

    #[test]
    fn accuracy_drift_is_judged_only_after_enough_reports() {
        let tracker = DriftTracker::new(10, 10).with_validated_accuracy(Some(0.9));
        for i in 0..MIN_REPORTS - 1 {
            tracker.report_outcome(i % 2 == 0);
        }
        let early = tracker.assess(0.1);
        assert!(!early.over() && early.accuracy_drop.is_none(), "{early:?}");
        tracker.report_outcome(false);
        let judged = tracker.assess(0.1);
        assert!(judged.accuracy_drift && !judged.output_drift, "{judged:?}");
        assert!((judged.accuracy_drop.unwrap() - (0.9 - 0.5) / 0.9).abs() < 1e-9);
        let reason = judged.reason(10.0);
        assert!(reason.starts_with("accuracy drift: live 0.5000"), "{reason}");
        assert!(reason.ends_with("(threshold 10%)"), "{reason}");
    }

    #[test]
    fn a_shifted_class_mix_drifts_and_the_same_mix_does_not() {
        let tracker = DriftTracker::new(30, 30);
        let mixed: Vec<[f32; 3]> = (0..30)
            .map(|i| {
                let mut r = [0.1, 0.1, 0.1];
                r[i % 3] = 0.8;
                r
            })
            .collect();
        tracker.observe(&[probabilities(&mixed)]);
        tracker.observe(&[probabilities(&mixed)]);
        let same = tracker.report();
        assert!(same.ready && same.psi == 0.0, "{same:?}");
        assert!((same.baseline_confidence - 0.8).abs() < 1e-6);
        let shifted = vec![[0.7, 0.2, 0.1]; 30];
        tracker.observe(&[probabilities(&shifted)]);
        let drifted = tracker.report();
        assert!(drifted.psi > 1.0, "{drifted:?}");
        assert!((drifted.confidence_change - (0.7 - 0.8) / 0.8).abs() < 1e-3);
        assert_eq!(drifted.live_share[0], 1.0);
    }
}
