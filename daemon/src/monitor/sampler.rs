//! The sampler observes and reports. Every
//! `monitoring.metrics_collection_interval_seconds`: the process's RSS and
//! CPU (the deprecated `dsmil_process_*` gauges; `process_*` is read at each
//! scrape) and the host's memory (from `sysinfo`), each layer's memory
//! (budget, estimated, measured; also set at every scrape, so a restart's
//! first scrape shows what was restored), each deployment's live p99 and
//! the p99 alert: a
//! deployment whose p99 over the last minute rises above
//! `monitoring.alert_on_latency_p99_ms` gets a `latency_alert` event
//! (journal, metrics, log), once per crossing. Drift is judged then too, and
//! as soon as new evidence arrives (answered rows, reported outcomes): a
//! crossing of `monitoring.drift_detection_threshold_percent` is a
//! `drift_alert` event and an [`Alert`] to the supervisor.
//!
//! Never decides what happens to a deployment (the supervisor rolls back,
//! on its own configuration), never touches the deployer (it sees serving
//! deployments through [`Watched`], which `deploy` implements), and never
//! writes the journal on a tokio worker: each sample runs on a blocking
//! thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::*;
use super::{DeploymentMetrics, DriftTracker, LatencyWindow, Shadow};
use crate::config::Config;
use crate::store::{DeploymentRecord, EventRecord, Journal};
use dsmil_kinds::EventKind;

/// The span live percentiles are taken over.
pub const LIVE_SPAN: Duration = Duration::from_secs(60);
/// Fewer recent requests than this say nothing about a p99.
const MIN_SAMPLES: usize = 20;
/// Answered rows arrive with every request: under load, drift is judged at
/// most this often between samples. Reported outcomes are judged at once.
const ROWS_GAP: Duration = Duration::from_secs(1);

/// What the monitor reports for the supervisor to decide on.
#[derive(Debug, Clone)]
pub enum Alert {
    /// Output or accuracy drift crossed the threshold.
    Drifted {
        model: String,
        deployment_id: u64,
        reason: String,
    },
}

/// A serving deployment as the sampler watches it: its record and the
/// monitoring state it carries.
pub trait Watched: Send + Sync {
    fn record(&self) -> &DeploymentRecord;
    fn metrics(&self) -> &DeploymentMetrics;
    fn recent(&self) -> &LatencyWindow;
    fn drift(&self) -> &DriftTracker;
    fn shadow(&self) -> Option<&Shadow>;
    /// Whether the p99 alert is raised now (it fires once per crossing).
    fn latency_alert(&self) -> &AtomicBool;
    /// Whether the drift alert is raised now.
    fn drift_alert(&self) -> &AtomicBool;
}

/// What the sampler reads.
pub struct Sources {
    /// The deployments serving now.
    pub serving: Box<dyn Fn() -> Vec<Arc<dyn Watched>> + Send + Sync>,
    /// The configuration in force now (a reload swaps it).
    pub config: Box<dyn Fn() -> Arc<Config> + Send + Sync>,
    /// Where alerts' events go.
    pub journal: Journal,
}

pub struct Sampler {
    sources: Sources,
    alerts: UnboundedSender<Alert>,
    system: Mutex<Option<System>>,
    pid: Pid,
}

impl Sampler {
    pub fn new(sources: Sources, alerts: UnboundedSender<Alert>) -> Sampler {
        let system = System::new()
            .map_err(|e| tracing::warn!(error = %e, "no process or host figures from sysinfo"))
            .ok();
        Sampler {
            sources,
            alerts,
            system: Mutex::new(system),
            pid: Pid::from_u32(std::process::id()),
        }
    }
}

pub async fn run(sampler: Sampler, token: CancellationToken) {
    let sampler = Arc::new(sampler);
    // Layer memory changes with every deploy, undeploy and restore, not on
    // the sampler's clock: a scrape sets it from what serves then, so it is
    // right from the first scrape after a start.
    let watched = Arc::downgrade(&sampler);
    super::recorder::on_scrape(Box::new(move || {
        if let Some(sampler) = watched.upgrade() {
            sampler.layer_memory();
        }
    }));
    let mut next_sample = Instant::now();
    let mut rows_quiet_until = Instant::now();
    loop {
        let rows_waiting = rows_quiet_until > Instant::now();
        let work: fn(&Sampler) = tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(next_sample) => {
                next_sample = Instant::now() + (sampler.sources.config)().monitoring.metrics_collection_interval;
                Sampler::sample
            }
            _ = super::drift::outcome_reported() => Sampler::judge_drift,
            _ = super::drift::rows_observed(), if !rows_waiting => {
                rows_quiet_until = Instant::now() + ROWS_GAP;
                Sampler::judge_drift
            }
            // Rows that arrived during the gap are judged when it ends.
            _ = tokio::time::sleep_until(rows_quiet_until), if rows_waiting => continue,
        };
        let sampler = Arc::clone(&sampler);
        if let Err(e) = tokio::task::spawn_blocking(move || work(&sampler)).await {
            tracing::error!(error = %e, "the sampler's worker failed");
        }
    }
}

impl Sampler {
    /// One sample of everything. Cheap: no runtime calls, one /proc read;
    /// the journal is written only on an alert's crossing.
    fn sample(&self) {
        let mut system = self.system.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(system) = system.as_mut() {
            system.refresh_memory();
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[self.pid]),
                true,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
            if let Some(me) = system.process(self.pid) {
                metrics::gauge!(PROCESS_RSS).set(me.memory() as f64);
                metrics::gauge!(PROCESS_CPU).set(f64::from(me.cpu_usage()) / 100.0);
            }
            metrics::gauge!(HOST_MEMORY_TOTAL).set(system.total_memory() as f64);
            metrics::gauge!(HOST_MEMORY_AVAILABLE).set(system.available_memory() as f64);
        }
        drop(system);

        self.layer_memory();
        let config = (self.sources.config)();
        let serving = (self.sources.serving)();
        for m in &serving {
            self.check_drift(&config, &**m);
        }
        let threshold = Duration::from_millis(config.monitoring.alert_on_latency_p99_ms);
        for m in &serving {
            let live = m.recent().summary(LIVE_SPAN);
            m.metrics().set_p99(live.p99);
            let over = live.samples >= MIN_SAMPLES && live.p99 > threshold;
            let was = m.latency_alert().swap(over, Ordering::Relaxed);
            let (kind, detail) = match (was, over) {
                (false, true) => (
                    EventKind::LatencyAlert,
                    format!(
                        "p99 {:.3} ms over the last {} requests is above alert_on_latency_p99_ms {}",
                        live.p99.as_secs_f64() * 1e3,
                        live.samples,
                        threshold.as_millis()
                    ),
                ),
                (true, false) => (
                    EventKind::LatencyRecovered,
                    format!("p99 {:.3} ms", live.p99.as_secs_f64() * 1e3),
                ),
                _ => continue,
            };
            if over {
                metrics::counter!(LATENCY_ALERTS, m.metrics().labels().to_labels()).increment(1);
            }
            self.journal_alert(EventRecord::about(kind, m.record(), detail));
        }
    }

    /// Each layer's memory gauges (budget, estimated, measured) from the
    /// configuration and the deployments serving now. Also run at every
    /// scrape: cheap, a registry read and no I/O.
    fn layer_memory(&self) {
        let config = (self.sources.config)();
        let serving = (self.sources.serving)();
        for layer in config.topology.layers().iter().filter(|l| !l.reserved) {
            let label = [("layer", layer.id.to_string())];
            let here = serving.iter().filter(|m| m.record().layer == layer.id);
            let (estimated, measured) = here.fold((0, 0), |(e, m), d| {
                (e + d.record().estimated_bytes, m + d.record().measured_bytes)
            });
            metrics::gauge!(LAYER_BUDGET, &label).set(layer.budget_bytes.unwrap_or(0) as f64);
            metrics::gauge!(LAYER_ESTIMATED, &label).set(estimated as f64);
            metrics::gauge!(LAYER_MEASURED, &label).set(measured as f64);
        }
    }

    /// Judges every serving deployment's drift.
    fn judge_drift(&self) {
        let config = (self.sources.config)();
        for m in &(self.sources.serving)() {
            self.check_drift(&config, &**m);
        }
    }

    /// Sets a deployment's drift gauges and reports a crossing of the
    /// threshold, either way, once.
    fn check_drift(&self, config: &Config, m: &dyn Watched) {
        let percent = config.monitoring.drift_detection_threshold_percent;
        let drift = m.drift().assess(percent / 100.0);
        m.metrics().set_drift(drift.report.score());
        if let Some((rows, agreed)) = m.shadow().map(|s| s.agreement()).filter(|(rows, _)| *rows > 0) {
            metrics::gauge!(SHADOW_AGREEMENT, m.metrics().labels().to_labels()).set(agreed as f64 / rows as f64);
        }
        let over = drift.over();
        let was = m.drift_alert().swap(over, Ordering::Relaxed);
        if over && !was {
            let reason = drift.reason(percent);
            metrics::counter!(DRIFT_ALERTS, m.metrics().labels().to_labels()).increment(1);
            // The event first: the supervisor's rollback, if any, follows it.
            self.journal_alert(EventRecord::about(EventKind::DriftAlert, m.record(), reason.clone()));
            let alert = Alert::Drifted {
                model: m.record().model.clone(),
                deployment_id: m.record().id,
                reason,
            };
            if self.alerts.send(alert).is_err() {
                tracing::warn!("a drift alert was reported after the supervisor stopped");
            }
        } else if was && !over {
            let detail = format!("drift score {:.4}", drift.report.score());
            self.journal_alert(EventRecord::about(EventKind::DriftRecovered, m.record(), detail));
        }
    }

    /// Journals an alert's event; a journal failure is logged, not fatal:
    /// the alert is in the log and the metrics all the same.
    fn journal_alert(&self, event: EventRecord) {
        if let Err(e) = self.sources.journal.append_event(event) {
            tracing::error!(error = %e, "could not journal an audit event");
        }
    }
}
