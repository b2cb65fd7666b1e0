//! Probation: the first requests a newly activated version serves are
//! watched. It passes when `requests` of them succeeded with a p99 within the
//! threshold, or when the window's time runs out first; it fails on the first
//! server-side error or on a p99 above the threshold.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Passed,
    Failed(String),
}

pub struct Probation {
    started: Instant,
    window: Duration,
    requests: usize,
    threshold: Duration,
    decided: AtomicBool,
    latencies: Mutex<Vec<Duration>>,
}

impl Probation {
    pub fn new(requests: u32, window: Duration, threshold: Duration) -> Probation {
        Probation {
            started: Instant::now(),
            window,
            requests: requests as usize,
            threshold,
            decided: AtomicBool::new(requests == 0 || window.is_zero()),
            latencies: Mutex::new(Vec::new()),
        }
    }

    /// A deployment restored after a restart already served: no probation.
    pub fn passed() -> Probation {
        Probation::new(0, Duration::ZERO, Duration::ZERO)
    }

    pub fn is_over(&self) -> bool {
        self.decided.load(Ordering::Acquire)
    }

    /// Records one request; returns the verdict once, when it is reached.
    pub fn record(&self, latency: Duration, server_error: Option<&str>) -> Option<Verdict> {
        if self.is_over() {
            return None;
        }
        let mut latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        // Another request may have decided while this one waited for the lock.
        if self.is_over() {
            return None;
        }
        let verdict = if let Some(error) = server_error {
            Some(Verdict::Failed(format!("a request failed during probation: {error}")))
        } else if self.started.elapsed() > self.window {
            Some(Verdict::Passed)
        } else {
            latencies.push(latency);
            (latencies.len() >= self.requests).then(|| {
                let p99 = percentile(&mut latencies, 0.99);
                if p99 > self.threshold {
                    Verdict::Failed(format!(
                        "p99 latency {:.3} ms over the first {} requests exceeds {} ms",
                        p99.as_secs_f64() * 1e3,
                        latencies.len(),
                        self.threshold.as_millis()
                    ))
                } else {
                    Verdict::Passed
                }
            })
        };
        if verdict.is_some() {
            self.decided.store(true, Ordering::Release);
            latencies.clear();
        }
        verdict
    }
}

/// The nearest-rank percentile `q` (0..=1) of the samples.
pub fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn passes_after_enough_fast_requests() {
        let p = Probation::new(3, Duration::from_secs(60), 10 * MS);
        assert_eq!(p.record(MS, None), None);
        assert_eq!(p.record(2 * MS, None), None);
        assert_eq!(p.record(3 * MS, None), Some(Verdict::Passed));
        assert_eq!(p.record(100 * MS, None), None, "decided once");
    }

    #[test]
    fn fails_on_a_slow_p99_or_a_server_error() {
        let p = Probation::new(2, Duration::from_secs(60), 10 * MS);
        p.record(MS, None);
        let Some(Verdict::Failed(why)) = p.record(50 * MS, None) else {
            panic!("should fail")
        };
        assert!(
            why.contains("p99 latency 50.000 ms over the first 2 requests exceeds 10 ms"),
            "{why}"
        );
        let p = Probation::new(100, Duration::from_secs(60), 10 * MS);
        let Some(Verdict::Failed(why)) = p.record(MS, Some("inference failed: boom")) else {
            panic!()
        };
        assert!(why.contains("boom"));
    }

    #[test]
    fn restored_deployments_have_no_probation() {
        let p = Probation::passed();
        assert!(p.is_over());
        assert_eq!(p.record(Duration::from_secs(9), Some("x")), None);
    }

    #[test]
    fn nearest_rank_percentile() {
        let mut v: Vec<Duration> = (1..=100).map(|i| i * MS).collect();
        assert_eq!(percentile(&mut v, 0.99), 99 * MS);
        assert_eq!(percentile(&mut v, 0.5), 50 * MS);
        assert_eq!(percentile(&mut [], 0.99), Duration::ZERO);
    }
}
