//! Per-deployment request statistics in Triton's terms (success, fail, queue
//! and compute durations), kept as atomics beside the deployment.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct ModelStats {
    success_count: AtomicU64,
    success_ns: AtomicU64,
    fail_count: AtomicU64,
    fail_ns: AtomicU64,
    queue_ns: AtomicU64,
    compute_ns: AtomicU64,
    /// Items inferred (batch rows), as Triton counts inference_count.
    inference_count: AtomicU64,
    last_inference_ms: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatsSnapshot {
    pub success_count: u64,
    pub success_ns: u64,
    pub fail_count: u64,
    pub fail_ns: u64,
    pub queue_ns: u64,
    pub compute_ns: u64,
    pub inference_count: u64,
    pub last_inference_ms: u64,
}

impl ModelStats {
    pub fn record_success(&self, total: Duration, queued: Duration, compute: Duration, items: u64) {
        self.success_count.fetch_add(1, Relaxed);
        self.success_ns.fetch_add(total.as_nanos() as u64, Relaxed);
        self.queue_ns.fetch_add(queued.as_nanos() as u64, Relaxed);
        self.compute_ns.fetch_add(compute.as_nanos() as u64, Relaxed);
        self.inference_count.fetch_add(items, Relaxed);
        self.last_inference_ms.store(crate::store::now_ms(), Relaxed);
    }

    pub fn record_failure(&self, total: Duration) {
        self.fail_count.fetch_add(1, Relaxed);
        self.fail_ns.fetch_add(total.as_nanos() as u64, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            success_count: self.success_count.load(Relaxed),
            success_ns: self.success_ns.load(Relaxed),
            fail_count: self.fail_count.load(Relaxed),
            fail_ns: self.fail_ns.load(Relaxed),
            queue_ns: self.queue_ns.load(Relaxed),
            compute_ns: self.compute_ns.load(Relaxed),
            inference_count: self.inference_count.load(Relaxed),
            last_inference_ms: self.last_inference_ms.load(Relaxed),
        }
    }
}
