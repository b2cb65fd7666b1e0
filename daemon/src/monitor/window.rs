//! A deployment's recent requests: the last `CAPACITY` latencies with their
//! times, for live percentiles and throughput (`dsmilctl top`, the p99
//! alert) without Prometheus. Fixed memory; one short lock per request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const CAPACITY: usize = 2048;

#[derive(Debug)]
pub struct LatencyWindow {
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    /// (when it finished, how long it took).
    samples: Vec<(Instant, Duration)>,
    next: usize,
}

/// Percentiles and rate over the recent requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowSummary {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    /// Requests per second over the last `span`.
    pub per_second: f64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            ring: Mutex::new(Ring {
                samples: Vec::with_capacity(CAPACITY),
                next: 0,
            }),
        }
    }
}

impl LatencyWindow {
    pub fn record(&self, latency: Duration) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let sample = (Instant::now(), latency);
        if ring.samples.len() < CAPACITY {
            ring.samples.push(sample);
        } else {
            let i = ring.next;
            ring.samples[i] = sample;
        }
        ring.next = (ring.next + 1) % CAPACITY;
    }

    /// Percentiles of the requests that finished within `span`, and their rate.
    pub fn summary(&self, span: Duration) -> WindowSummary {
        let now = Instant::now();
        let mut recent: Vec<Duration> = {
            let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.samples
                .iter()
                .filter(|(at, _)| now.duration_since(*at) <= span)
                .map(|(_, d)| *d)
                .collect()
        };
        if recent.is_empty() {
            return WindowSummary::default();
        }
        let samples = recent.len();
        // The same nearest-rank percentile probation and the gate use.
        let mut at = |q: f64| super::probation::percentile(&mut recent, q);
        WindowSummary {
            samples,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            per_second: samples as f64 / span.as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_the_recent_requests() {
        let w = LatencyWindow::default();
        for ms in 1..=100 {
            w.record(Duration::from_millis(ms));
        }
        let s = w.summary(Duration::from_secs(60));
        assert_eq!(s.samples, 100);
        assert_eq!(s.p50, Duration::from_millis(50), "nearest rank: the 50th of 100");
        assert_eq!(s.p99, Duration::from_millis(99));
        assert!((s.per_second - 100.0 / 60.0).abs() < 1e-9);
        for _ in 0..3000 {
            w.record(Duration::from_millis(5));
        }
        assert_eq!(w.summary(Duration::from_secs(60)).samples, 2048, "fixed memory");
    }
}
