//! Every `monitoring.metrics_collection_interval_seconds`: the process's
//! RSS and CPU and the host's memory (from `sysinfo`), each layer's memory
//! (budget, estimated, measured), each deployment's live p99, and the p99
//! alert: a deployment whose p99 over the last minute rises above
//! `monitoring.alert_on_latency_p99_ms` raises a `latency_alert` event
//! (journal, metrics, log), once per crossing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

use super::metrics::*;
use crate::deploy::Deployer;
use crate::store::EventRecord;

/// The span live percentiles are taken over.
pub const LIVE_SPAN: Duration = Duration::from_secs(60);
/// Fewer recent requests than this say nothing about a p99.
const MIN_SAMPLES: usize = 20;

pub async fn run(deployer: Arc<Deployer>, token: CancellationToken) {
    let mut system = System::new()
        .map_err(|e| tracing::warn!(error = %e, "no process or host figures from sysinfo"))
        .ok();
    let pid = Pid::from_u32(std::process::id());
    loop {
        let interval = deployer.config().monitoring.metrics_collection_interval;
        sample(&deployer, system.as_mut(), pid);
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One sample of everything. Cheap: no runtime calls, one /proc read.
pub fn sample(deployer: &Deployer, system: Option<&mut System>, pid: Pid) {
    if let Some(system) = system {
        system.refresh_memory();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        if let Some(me) = system.process(pid) {
            metrics::gauge!(PROCESS_RSS).set(me.memory() as f64);
            metrics::gauge!(PROCESS_CPU).set(f64::from(me.cpu_usage()) / 100.0);
        }
        metrics::gauge!(HOST_MEMORY_TOTAL).set(system.total_memory() as f64);
        metrics::gauge!(HOST_MEMORY_AVAILABLE).set(system.available_memory() as f64);
    }

    let config = deployer.config();
    let serving = deployer.registry().all();
    for layer in config.topology.layers().iter().filter(|l| !l.reserved) {
        let label = [("layer", layer.id.to_string())];
        let here = serving.iter().filter(|m| m.record.layer == layer.id);
        let (estimated, measured) = here.fold((0, 0), |(e, m), d| {
            (e + d.record.estimated_bytes, m + d.record.measured_bytes)
        });
        metrics::gauge!(LAYER_BUDGET, &label).set(layer.budget_bytes.unwrap_or(0) as f64);
        metrics::gauge!(LAYER_ESTIMATED, &label).set(estimated as f64);
        metrics::gauge!(LAYER_MEASURED, &label).set(measured as f64);
    }

    for m in &serving {
        check_drift(deployer, m);
    }
    let threshold = Duration::from_millis(config.monitoring.alert_on_latency_p99_ms);
    for m in &serving {
        let live = m.recent.summary(LIVE_SPAN);
        m.metrics.set_p99(live.p99);
        let over = live.samples >= MIN_SAMPLES && live.p99 > threshold;
        let was = m.latency_alert.swap(over, Ordering::Relaxed);
        let (kind, detail) = match (was, over) {
            (false, true) => (
                "latency_alert",
                format!(
                    "p99 {:.3} ms over the last {} requests is above alert_on_latency_p99_ms {}",
                    live.p99.as_secs_f64() * 1e3,
                    live.samples,
                    threshold.as_millis()
                ),
            ),
            (true, false) => (
                "latency_recovered",
                format!("p99 {:.3} ms", live.p99.as_secs_f64() * 1e3),
            ),
            _ => continue,
        };
        if over {
            metrics::counter!(LATENCY_ALERTS, m.metrics.labels().to_labels()).increment(1);
        }
        deployer.audit(EventRecord::about(kind, &m.record, detail));
    }
}

/// Evaluates a deployment's drift: sets its gauge, and raises (once per
/// crossing) a `drift_alert` event, and with `drift_auto_rollback` a
/// rollback, when output drift or accuracy drift passes the threshold.
/// Called by the sampler and by `dsmilctl drift`, so that what the
/// operator reads has been judged.
pub fn check_drift(deployer: &Deployer, m: &crate::deploy::ActiveModel) -> (crate::monitor::DriftReport, Option<f64>) {
    let config = deployer.config();
    let threshold = config.monitoring.drift_detection_threshold_percent / 100.0;
    let report = m.drift.report();
    m.metrics.set_drift(report.score());
    if let Some((rows, agreed)) = m.shadow.as_ref().map(|s| s.agreement()).filter(|(rows, _)| *rows > 0) {
        metrics::gauge!(SHADOW_AGREEMENT, m.metrics.labels().to_labels()).set(agreed as f64 / rows as f64);
    }
    // Accuracy drift: live accuracy from reported outcomes against the
    // accuracy the version was validated at (its quantization report).
    let validated = m.drift.validated_accuracy();
    let accuracy_drop = match (report.live_accuracy, validated) {
        (Some(live), Some(valid)) if valid > 0.0 && report.reported >= 20 => Some((valid - live) / valid),
        _ => None,
    };
    let output_drift = report.ready && report.score() > threshold;
    let accuracy_drift = accuracy_drop.is_some_and(|d| d > threshold);
    let over = output_drift || accuracy_drift;
    let was = m.drift_alert.swap(over, Ordering::Relaxed);
    if over && !was {
        let mut why = Vec::new();
        if output_drift {
            why.push(format!(
                "output drift: PSI {:.4}, mean confidence {:+.2}% ({} live rows against a baseline of {})",
                report.psi,
                report.confidence_change * 100.0,
                report.live_rows,
                report.baseline_rows
            ));
        }
        if let Some(drop) = accuracy_drop.filter(|_| accuracy_drift) {
            why.push(format!(
                "accuracy drift: live {:.4} is {:.2}% below the validated {:.4}",
                report.live_accuracy.unwrap_or_default(),
                drop * 100.0,
                validated.unwrap_or_default()
            ));
        }
        let reason = format!(
            "{} (threshold {}%)",
            why.join("; "),
            config.monitoring.drift_detection_threshold_percent
        );
        metrics::counter!(DRIFT_ALERTS, m.metrics.labels().to_labels()).increment(1);
        deployer.audit(EventRecord::about("drift_alert", &m.record, reason.clone()));
        if config.monitoring.drift_auto_rollback {
            deployer.registry().raise(crate::deploy::supervisor::Alarm::Drifted {
                model: m.record.model.clone(),
                deployment_id: m.record.id,
                reason,
            });
        }
    } else if was && !over {
        deployer.audit(EventRecord::about(
            "drift_recovered",
            &m.record,
            format!("drift score {:.4}", report.score()),
        ));
    }
    (report, accuracy_drop)
}
