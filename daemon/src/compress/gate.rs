//! The accuracy gate: the FP32 and INT8 models run the same validation
//! samples. With labels, the metric is top-1 accuracy and retention is
//! int8 / fp32; without, it is top-1 agreement between the two, with the
//! mean cosine similarity of their outputs alongside.

use super::CompressError;
use super::data::Samples;
use crate::backend::{DataType, LoadedModel, Tensor};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// "top-1 accuracy" or "top-1 agreement".
    pub metric: String,
    pub fp32: f64,
    pub int8: f64,
    pub retention: f64,
    pub mean_cosine: f64,
    pub samples: usize,
    /// One-sample latency of each model on this host, in ms.
    pub fp32_p50_ms: f64,
    pub fp32_p95_ms: f64,
    pub int8_p50_ms: f64,
    pub int8_p95_ms: f64,
}

fn percentile_ms(samples: &mut [std::time::Duration], q: f64) -> f64 {
    crate::monitor::probation::percentile(samples, q).as_secs_f64() * 1e3
}

/// The first FP32 output, as rows of scores (the classifier's).
fn scores(outputs: &[Tensor]) -> Result<(Vec<f32>, usize), CompressError> {
    let t = outputs
        .iter()
        .find(|t| t.dtype == DataType::F32)
        .ok_or(CompressError::NoFloatOutput)?;
    let values: Vec<f32> = t
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let width = t.shape.last().copied().unwrap_or(1).max(1) as usize;
    Ok((values, width))
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

pub fn evaluate(
    fp32: &mut dyn LoadedModel,
    int8: &mut dyn LoadedModel,
    samples: &Samples,
) -> Result<Evaluation, CompressError> {
    let (mut right_fp32, mut right_int8, mut agree, mut cos_sum, mut rows) = (0usize, 0usize, 0usize, 0.0f64, 0usize);
    let labels = samples.labels();
    let (mut t_fp32, mut t_int8) = (Vec::new(), Vec::new());
    for i in 0..samples.len() {
        let inputs = samples.sample(i);
        let started = std::time::Instant::now();
        let out_a = fp32.run(&inputs)?;
        t_fp32.push(started.elapsed());
        let started = std::time::Instant::now();
        let out_b = int8.run(&inputs)?;
        t_int8.push(started.elapsed());
        let (a, width) = scores(&out_a)?;
        let (b, _) = scores(&out_b)?;
        for (r, (ra, rb)) in a.chunks(width).zip(b.chunks(width)).enumerate() {
            let (pa, pb) = (argmax(ra), argmax(rb));
            agree += usize::from(pa == pb);
            cos_sum += cosine(ra, rb);
            if let Some(labels) = labels
                && r == 0
            {
                right_fp32 += usize::from(pa as i64 == labels[i]);
                right_int8 += usize::from(pb as i64 == labels[i]);
            }
            rows += 1;
        }
    }
    let n = samples.len() as f64;
    let mean_cosine = cos_sum / rows.max(1) as f64;
    let (fp32_p50_ms, fp32_p95_ms) = (percentile_ms(&mut t_fp32, 0.5), percentile_ms(&mut t_fp32, 0.95));
    let (int8_p50_ms, int8_p95_ms) = (percentile_ms(&mut t_int8, 0.5), percentile_ms(&mut t_int8, 0.95));
    Ok(match labels {
        Some(_) => {
            let (fp32, int8) = (right_fp32 as f64 / n, right_int8 as f64 / n);
            let retention = if fp32 > 0.0 {
                int8 / fp32
            } else {
                f64::from(u8::from(int8 == 0.0))
            };
            Evaluation {
                metric: "top-1 accuracy".into(),
                fp32,
                int8,
                retention,
                mean_cosine,
                samples: samples.len(),
                fp32_p50_ms,
                fp32_p95_ms,
                int8_p50_ms,
                int8_p95_ms,
            }
        }
        None => {
            let agreement = agree as f64 / rows.max(1) as f64;
            Evaluation {
                metric: "top-1 agreement".into(),
                fp32: 1.0,
                int8: agreement,
                retention: agreement,
                mean_cosine,
                samples: samples.len(),
                fp32_p50_ms,
                fp32_p95_ms,
                int8_p50_ms,
                int8_p95_ms,
            }
        }
    })
}
