//! The shadow check: a sampled fraction of a quantized deployment's
//! requests is run again, after the answer went out, on its FP32 original
//! (one worker of its own), and the INT8 and FP32 top-1 choices compared.
//! The agreement says, on live traffic, what the accuracy gate said on
//! validation data.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::backend::{DataType, Pool, Tensor, argmax, f32s};

pub struct Shadow {
    pub pool: Pool,
    /// One request in `every` is checked.
    every: u64,
    seen: AtomicU64,
    checked: AtomicU64,
    agreed: AtomicU64,
}

impl Shadow {
    pub fn new(pool: Pool, fraction: f64) -> Shadow {
        Shadow {
            pool,
            every: (1.0 / fraction).round().max(1.0) as u64,
            seen: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            agreed: AtomicU64::new(0),
        }
    }

    /// Whether this request is one of the sampled ones.
    pub fn sample(&self) -> bool {
        self.seen.fetch_add(1, Relaxed).is_multiple_of(self.every)
    }

    /// Compares the INT8 answer's top-1 choices with the FP32 one's.
    pub fn record(&self, int8: &[usize], fp32: &[Tensor]) {
        let reference = top1(fp32);
        let agreed = int8.iter().zip(&reference).filter(|(a, b)| a == b).count() as u64;
        self.checked.fetch_add(int8.len().min(reference.len()) as u64, Relaxed);
        self.agreed.fetch_add(agreed, Relaxed);
    }

    /// (rows checked, rows whose top-1 agreed).
    pub fn agreement(&self) -> (u64, u64) {
        (self.checked.load(Relaxed), self.agreed.load(Relaxed))
    }
}

/// Each row's top-1 class from the first FP32 output of rank 2.
pub fn top1(outputs: &[Tensor]) -> Vec<usize> {
    let Some(t) = outputs.iter().find(|t| t.dtype == DataType::F32 && t.shape.len() == 2) else {
        return Vec::new();
    };
    let width = t.shape[1].max(1) as usize * 4;
    t.data.chunks(width).map(|row| argmax(f32s(row)).0).collect()
}
