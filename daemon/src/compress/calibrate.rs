//! Activation ranges from calibration data. Every statistic streams: memory
//! depends on the number of tensors and histogram bins, never on the number
//! of samples.
//!
//! - `minmax`: the smallest and largest value seen.
//! - `percentile`: the range holding `percentile`% of the values' magnitudes
//!   (a histogram of |x| over the range found in a first pass).
//! - `entropy`: the clipping threshold whose 128-level quantized distribution
//!   is closest, by Kullback–Leibler divergence, to the observed one (the
//!   method TensorRT popularised), over the same histogram.
//!
//! Whatever the method, the outputs of bounded operators (Sigmoid, Softmax,
//! ...) and the model's own outputs keep their whole observed range
//! ([`kept_whole`]): their rare high values are often the answer.

use super::Method;

/// Histogram bins for percentile and entropy.
pub const BINS: usize = 2048;

/// A tensor's calibrated range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

/// First pass: min and max.
#[derive(Debug, Clone, Copy)]
pub struct MinMax {
    pub min: f32,
    pub max: f32,
}

/// Calls `f` with a tensor's bytes as floats: in place when they are
/// aligned (the runtimes' buffers are), else through a decoded copy.
fn with_floats<R>(raw: &[u8], f: impl FnOnce(&[f32]) -> R) -> R {
    // SAFETY: every bit pattern is a valid f32, and align_to only
    // reinterprets the aligned middle. Tensor bytes are in the host's
    // (little-endian) order.
    let (head, middle, tail) = unsafe { raw.align_to::<f32>() };
    if head.is_empty() && tail.is_empty() {
        return f(middle);
    }
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    f(&decoded)
}

impl Default for MinMax {
    fn default() -> Self {
        MinMax {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }
}

impl MinMax {
    /// Takes a tensor's f32 bytes as the runtime returned them: no float
    /// copy per tensor, and 16 independent lanes, which the compiler turns
    /// into vector min/max (this loop sees every activation of every
    /// calibration sample).
    pub fn update(&mut self, raw: &[u8]) {
        const LANES: usize = 16;
        let (mut lo, mut hi) = ([self.min; LANES], [self.max; LANES]);
        with_floats(raw, |floats| {
            let mut chunks = floats.chunks_exact(LANES);
            for chunk in &mut chunks {
                for j in 0..LANES {
                    let v = chunk[j];
                    lo[j] = if v < lo[j] { v } else { lo[j] };
                    hi[j] = if v > hi[j] { v } else { hi[j] };
                }
            }
            for &v in chunks.remainder() {
                lo[0] = lo[0].min(v);
                hi[0] = hi[0].max(v);
            }
        });
        self.min = lo.into_iter().fold(f32::INFINITY, f32::min);
        self.max = hi.into_iter().fold(f32::NEG_INFINITY, f32::max);
    }

    pub fn abs_max(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }
}

/// Second pass: a histogram of |x| over [0, abs_max].
#[derive(Debug, Clone)]
pub struct Histogram {
    pub bins: Vec<u64>,
    pub width: f32,
}

impl Histogram {
    pub fn new(abs_max: f32) -> Histogram {
        Histogram {
            bins: vec![0; BINS],
            width: if abs_max > 0.0 { abs_max / BINS as f32 } else { 1.0 },
        }
    }

    /// A tensor's f32 bytes, as for [`MinMax::update`].
    pub fn update(&mut self, raw: &[u8]) {
        let per_bin = 1.0 / self.width;
        with_floats(raw, |floats| {
            for v in floats {
                let i = ((v.abs() * per_bin) as usize).min(BINS - 1);
                self.bins[i] += 1;
            }
        });
    }

    /// The |x| below which `percent` of the values lie.
    pub fn percentile(&self, percent: f64) -> f32 {
        let total: u64 = self.bins.iter().sum();
        let target = (total as f64 * percent / 100.0).ceil() as u64;
        let mut seen = 0;
        for (i, &count) in self.bins.iter().enumerate() {
            seen += count;
            if seen >= target {
                return (i + 1) as f32 * self.width;
            }
        }
        BINS as f32 * self.width
    }

    /// The clipping threshold minimising KL(P || Q): P is the histogram up
    /// to the threshold with everything beyond folded into its last bin; Q is
    /// the same bins *without* the folded outliers, quantized to 128 levels
    /// and expanded back. Q must not see the outliers: otherwise the
    /// narrowest window would quantize losslessly and always win.
    pub fn entropy_threshold(&self) -> f32 {
        const LEVELS: usize = 128;
        let mut best = (f64::INFINITY, BINS);
        for end in (LEVELS..=BINS).step_by(16) {
            let clipped: Vec<f64> = self.bins[..end].iter().map(|&c| c as f64).collect();
            let mut p = clipped.clone();
            let outliers: u64 = self.bins[end..].iter().sum();
            p[end - 1] += outliers as f64;
            let p_total: f64 = p.iter().sum();
            if p_total == 0.0 {
                continue;
            }
            // Each of the 128 levels spreads its mass evenly over the
            // non-empty bins it covers.
            let mut q = vec![0.0; end];
            let group = end as f64 / LEVELS as f64;
            for level in 0..LEVELS {
                let start = (level as f64 * group).floor() as usize;
                let stop = (((level + 1) as f64 * group).floor() as usize).min(end);
                let mass: f64 = clipped[start..stop].iter().sum();
                let nonzero = clipped[start..stop].iter().filter(|&&v| v > 0.0).count();
                if nonzero > 0 {
                    for j in start..stop {
                        if clipped[j] > 0.0 {
                            q[j] = mass / nonzero as f64;
                        }
                    }
                }
            }
            let q_total: f64 = q.iter().sum();
            if q_total == 0.0 {
                continue;
            }
            // A bin P has and Q lacks (the folded outliers landing on an
            // empty bin) gets a tiny probability instead of an infinite cost.
            let kl: f64 = p
                .iter()
                .zip(&q)
                .filter(|(pi, _)| **pi > 0.0)
                .map(|(pi, qi)| {
                    let (pn, qn) = (pi / p_total, (qi / q_total).max(1e-9));
                    pn * (pn / qn).ln()
                })
                .sum();
            if kl < best.0 {
                best = (kl, end);
            }
        }
        best.1 as f32 * self.width
    }
}

/// Operators whose outputs live in a fixed, small range (probabilities,
/// scores, gates): clipping one buys little resolution and can cut away the
/// rare high values that carry the answer (a detector's few confident class
/// scores among thousands of near-zero ones, which no percentile keeps).
const BOUNDED_OUTPUTS: [&str; 4] = ["Sigmoid", "HardSigmoid", "Softmax", "Tanh"];

/// The tensors every method calibrates to their full observed range: the
/// outputs of bounded operators and the model's own outputs (what the
/// caller reads, whose extremes are usually the point).
pub fn kept_whole(graph: &dsmil_proto::onnx::GraphProto) -> std::collections::HashSet<&str> {
    graph
        .node
        .iter()
        .filter(|n| BOUNDED_OUTPUTS.contains(&n.op_type()))
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name()))
        .collect()
}

/// The entropy method's bound: the share of values (%) it may never clip.
const ENTROPY_MAX_CLIPPED: f64 = 99.9;

/// The range a method settles on, from the first pass and (for percentile
/// and entropy) the histogram.
pub fn range(method: Method, minmax: &MinMax, histogram: Option<&Histogram>) -> Range {
    let clip = match (method, histogram) {
        (Method::MinMax | Method::Dynamic, _) | (_, None) => {
            return Range {
                min: minmax.min,
                max: minmax.max,
            };
        }
        (Method::Percentile(p), Some(h)) => h.percentile(p),
        // KL divergence weighs the shape of what is kept, not how much is
        // cut: on saturating activations (Relu6's spike at 6) it clips the
        // spike away. Entropy may clip at most 0.1% of the values.
        (Method::Entropy, Some(h)) => h.entropy_threshold().max(h.percentile(ENTROPY_MAX_CLIPPED)),
    };
    // Clip symmetric magnitudes back onto the observed signs.
    Range {
        min: minmax.min.max(-clip),
        max: minmax.max.min(clip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::f32_bytes as le;

    #[test]
    fn minmax_is_the_extremes() {
        let mut m = MinMax::default();
        m.update(&le(&[0.5, -2.0, 3.25]));
        m.update(&le(&[1.0]));
        assert_eq!(range(Method::MinMax, &m, None), Range { min: -2.0, max: 3.25 });
    }

    #[test]
    fn percentile_cuts_the_tail_by_hand() {
        // 999 values at 1.0 and one outlier at 100: the 99.9th percentile of
        // |x| is in the bin holding 1.0.
        let mut m = MinMax::default();
        let mut values = vec![1.0f32; 999];
        values.push(100.0);
        m.update(&le(&values));
        let mut h = Histogram::new(m.abs_max());
        h.update(&le(&values));
        let r = range(Method::Percentile(99.9), &m, Some(&h));
        let width = 100.0 / BINS as f32;
        assert_eq!(r.min, 1.0, "no negative values: the minimum stays");
        assert!((r.max - ((1.0 / width).floor() + 1.0) * width).abs() < 1e-6, "{r:?}");
        assert_eq!(range(Method::Percentile(100.0), &m, Some(&h)).max, 100.0);
    }

    #[test]
    fn entropy_clips_a_far_outlier_and_keeps_a_uniform_range() {
        // Uniform on [0, 1] plus one outlier at 1000: the threshold lands
        // near 1, far below the outlier.
        let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        values.push(1000.0);
        let mut m = MinMax::default();
        m.update(&le(&values));
        let mut h = Histogram::new(m.abs_max());
        h.update(&le(&values));
        let t = h.entropy_threshold();
        // The narrowest window considered is 128 of the 2048 bins over
        // [0, 1000]: 62.5. The outlier must fall well outside the threshold.
        assert!(t <= 62.5 + 1e-3, "threshold {t} should clip the outlier at 1000");
        // Uniform with no outlier: nothing worth clipping.
        let values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        let mut m = MinMax::default();
        m.update(&le(&values));
        let mut h = Histogram::new(m.abs_max());
        h.update(&le(&values));
        assert!(h.entropy_threshold() > 0.9, "{}", h.entropy_threshold());
    }

    #[test]
    fn entropy_keeps_the_saturation_spike_of_a_clipped_activation() {
        // Relu6-like: half zeros, most of the rest small (a geometric
        // spread below 1), and 1% saturated at 6. KL alone clips at the
        // small values; the range must still reach 6.
        let values: Vec<f32> = (0..10_000)
            .map(|i| match i % 100 {
                0 => 6.0,
                k if k < 50 => 0.0,
                k => 0.9f32.powi(k - 50) * ((i / 100) % 10) as f32 / 10.0,
            })
            .collect();
        let mut m = MinMax::default();
        m.update(&le(&values));
        let mut h = Histogram::new(m.abs_max());
        h.update(&le(&values));
        assert!(
            h.entropy_threshold() < 3.0,
            "KL alone clips the spike: {}",
            h.entropy_threshold()
        );
        let r = range(Method::Entropy, &m, Some(&h));
        assert!(r.max >= 5.99, "{r:?}");
    }

    #[test]
    fn bounded_outputs_and_model_outputs_keep_their_whole_range() {
        use dsmil_proto::onnx::{GraphProto, NodeProto, ValueInfoProto};
        let node = |op: &str, input: &str, output: &str| NodeProto {
            op_type: Some(op.into()),
            input: vec![input.into()],
            output: vec![output.into()],
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![
                node("MatMul", "x", "logits"),
                node("Sigmoid", "logits", "scores"),
                node("Relu", "scores", "y"),
            ],
            output: vec![ValueInfoProto {
                name: Some("y".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let whole = kept_whole(&graph);
        assert!(whole.contains("scores") && whole.contains("y"), "{whole:?}");
        assert!(!whole.contains("logits"));

        // A detector's class scores: almost all near 0, a few confident
        // ones (2 in 400,000, as 2 objects among 5,000 anchors × 80
        // classes) at 0.87. A percentile cuts them away (so can KL, as
        // on a real detector's scores); the whole range, which calibrate
        // gives a kept tensor whatever the method, keeps them.
        let values: Vec<f32> = (0..400_000)
            .map(|i| if i % 200_000 == 0 { 0.87 } else { (i % 7) as f32 * 0.001 })
            .collect();
        let mut m = MinMax::default();
        m.update(&le(&values));
        let mut h = Histogram::new(m.abs_max());
        h.update(&le(&values));
        assert!(range(Method::Percentile(99.999), &m, Some(&h)).max < 0.1);
        assert_eq!(range(Method::Entropy, &m, None).max, 0.87);
    }
}
