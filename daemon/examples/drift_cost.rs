//! What drift tracking and the live latency window cost per request, on
//! the digits sample's answer (one row of 10 probabilities): the work the
//! inference path adds, timed alone. Run it through bench/observability.sh.
//!
//!     drift_cost [ITERATIONS]

use std::time::{Duration, Instant};

use dsmild::backend::{DataType, Tensor};
use dsmild::monitor::{DriftTracker, LatencyWindow};

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let row: Vec<f32> = (0..10).map(|i| if i == 3 { 0.91 } else { 0.01 }).collect();
    let answer = vec![Tensor {
        name: "probabilities".into(),
        dtype: DataType::F32,
        shape: vec![1, 10],
        data: row.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }];
    let drift = DriftTracker::new(200, 200);
    let window = LatencyWindow::default();
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for i in 0..iterations {
            drift.observe(&answer);
            window.record(Duration::from_nanos(i as u64));
        }
        rounds.push(started.elapsed().as_nanos() as f64 / iterations as f64);
    }
    rounds.sort_by(f64::total_cmp);
    let report_started = Instant::now();
    let report = drift.report();
    let report_us = report_started.elapsed().as_secs_f64() * 1e6;
    println!(
        "{{\"per_request_ns\":{:.1},\"report_us\":{report_us:.1},\"psi\":{}}}",
        rounds[rounds.len() / 2],
        report.psi
    );
}
