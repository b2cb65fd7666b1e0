//! What is serving now: model name → its active deployment. The inference
//! path reads it on every request; deploys swap entries atomically.
//!
//! Swapping an `Arc` is the version switch: requests that already hold the
//! old entry finish on the old version, new requests see the new one, and the
//! old workers exit when the last request holding them is done.
//!
//! It also answers strict readiness: ready once the restore has finished,
//! while every model whose active deployment could not be restored is
//! served again (a later deploy of it healed the failure) and the journal
//! is still the one on disk.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::supervisor::Alarm;
use crate::backend::{Pool, RequestLimits, Signature};
use crate::monitor::probation::{Probation, Verdict};
use crate::monitor::{self, DeploymentLabels, DeploymentMetrics, ModelStats};
use crate::store::DeploymentRecord;

pub struct ActiveModel {
    pub record: DeploymentRecord,
    pub signature: Signature,
    /// What one request may ask (bytes, batch rows), fixed at activation.
    pub limits: RequestLimits,
    pub pool: Pool,
    pub stats: ModelStats,
    pub metrics: DeploymentMetrics,
    pub probation: Probation,
    /// The last health probe's result; ModelReady reports it.
    pub healthy: AtomicBool,
    /// Health probes failed in a row.
    pub probe_failures: AtomicU32,
    /// The recent requests' latencies: live percentiles and throughput.
    pub recent: monitor::LatencyWindow,
    /// Whether the p99 alert is raised now (it fires once per crossing).
    pub latency_alert: AtomicBool,
    /// Output drift, baseline against live.
    pub drift: monitor::DriftTracker,
    /// Whether the drift alert is raised now.
    pub drift_alert: AtomicBool,
    /// The FP32 original for the shadow check (quantized deployments, when
    /// `monitoring.shadow_fraction` > 0).
    pub shadow: Option<monitor::Shadow>,
}

impl ActiveModel {
    pub fn new(
        record: DeploymentRecord,
        signature: Signature,
        limits: RequestLimits,
        pool: Pool,
        probation: Probation,
        drift: monitor::DriftTracker,
    ) -> ActiveModel {
        let labels = DeploymentLabels {
            model: record.model.clone(),
            version: record.version.to_string(),
            device: record.device.to_string(),
            layer: record.layer.to_string(),
            backend: record.backend.to_string(),
        };
        ActiveModel {
            record,
            signature,
            limits,
            pool,
            stats: ModelStats::default(),
            metrics: DeploymentMetrics::new(labels),
            probation,
            healthy: AtomicBool::new(true),
            probe_failures: AtomicU32::new(0),
            recent: monitor::LatencyWindow::default(),
            latency_alert: AtomicBool::new(false),
            drift,
            drift_alert: AtomicBool::new(false),
            shadow: None,
        }
    }

    pub fn with_shadow(mut self, shadow: Option<monitor::Shadow>) -> ActiveModel {
        self.shadow = shadow;
        self
    }

    /// The bytes admission charges: measured once known, else the estimate.
    pub fn footprint(&self) -> u64 {
        if self.record.measured_bytes > 0 {
            self.record.measured_bytes
        } else {
            self.record.estimated_bytes
        }
    }
}

impl monitor::sampler::Watched for ActiveModel {
    fn record(&self) -> &DeploymentRecord {
        &self.record
    }
    fn metrics(&self) -> &DeploymentMetrics {
        &self.metrics
    }
    fn recent(&self) -> &monitor::LatencyWindow {
        &self.recent
    }
    fn drift(&self) -> &monitor::DriftTracker {
        &self.drift
    }
    fn shadow(&self) -> Option<&monitor::Shadow> {
        self.shadow.as_ref()
    }
    fn latency_alert(&self) -> &AtomicBool {
        &self.latency_alert
    }
    fn drift_alert(&self) -> &AtomicBool {
        &self.drift_alert
    }
}

pub struct Registry {
    models: RwLock<HashMap<String, Arc<ActiveModel>>>,
    /// Where failed probations and probes are reported (the supervisor).
    alarms: tokio::sync::mpsc::UnboundedSender<Alarm>,
    /// Woken whenever what serves, or its health, changes.
    changed: tokio::sync::Notify,
    /// What strict readiness is computed from.
    readiness: Mutex<Readiness>,
    /// Strict readiness as last computed; watchers see its changes.
    ready: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct Readiness {
    restored: bool,
    /// Models whose active deployment failed to restore.
    unrestored: BTreeSet<String>,
    /// Why the journal stopped recording, once it has.
    store_lost: Option<String>,
}

impl Registry {
    pub fn new(alarms: tokio::sync::mpsc::UnboundedSender<Alarm>) -> Registry {
        Registry {
            models: RwLock::default(),
            alarms,
            changed: tokio::sync::Notify::new(),
            readiness: Mutex::default(),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Reports a problem with a serving deployment to the supervisor.
    pub fn raise(&self, alarm: Alarm) {
        if self.alarms.send(alarm).is_err() {
            tracing::warn!("an alarm was raised after the supervisor stopped");
        }
    }

    /// Judges `model`'s probation by one answered request and raises a
    /// failed probation to the supervisor. `server_error` is the request's
    /// error only when the server is at fault: a client's malformed request
    /// says nothing about a new version.
    pub fn record_outcome(&self, model: &ActiveModel, latency: Duration, server_error: Option<&dyn std::fmt::Display>) {
        // Cheap on every request once probation is over: no formatting.
        if model.probation.is_over() {
            return;
        }
        let server_error = server_error.map(ToString::to_string);
        match model.probation.record(latency, server_error.as_deref()) {
            Some(Verdict::Failed(reason)) => self.raise(Alarm::ProbationFailed {
                model: model.record.model.clone(),
                deployment_id: model.record.id,
                reason,
            }),
            Some(Verdict::Passed) => {
                tracing::info!(model = %model.record.model, version = model.record.version, "probation passed")
            }
            None => {}
        }
    }

    pub fn get(&self, model: &str) -> Option<Arc<ActiveModel>> {
        self.read().get(model).cloned()
    }

    /// Makes `model` the serving entry for its name; returns the one it replaced.
    pub fn insert(&self, model: ActiveModel) -> Option<Arc<ActiveModel>> {
        let mut models = self.write();
        let previous = models.insert(model.record.model.clone(), Arc::new(model));
        monitor::set_models_loaded(models.len());
        drop(models);
        self.changed.notify_one();
        self.refresh_ready();
        previous
    }

    /// Re-installs an entry that `insert` displaced; returns the one it displaces.
    pub fn put_back(&self, model: Arc<ActiveModel>) -> Option<Arc<ActiveModel>> {
        let mut models = self.write();
        let displaced = models.insert(model.record.model.clone(), model);
        drop(models);
        self.changed.notify_one();
        self.refresh_ready();
        displaced
    }

    pub fn remove(&self, model: &str) -> Option<Arc<ActiveModel>> {
        let mut models = self.write();
        let removed = models.remove(model);
        monitor::set_models_loaded(models.len());
        drop(models);
        if let Some(gone) = &removed {
            // Nothing serves under this name any more: its series go, and
            // requests still in flight on it record nothing new.
            gone.metrics.retire();
            monitor::forget_model(model);
        }
        self.changed.notify_one();
        self.refresh_ready();
        removed
    }

    /// All serving entries, by model name.
    pub fn all(&self) -> Vec<Arc<ActiveModel>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.record.model.cmp(&b.record.model));
        all
    }

    /// All serving entries, as the monitor's sampler watches them.
    pub fn watched(&self) -> Vec<Arc<dyn monitor::sampler::Watched>> {
        self.all()
            .into_iter()
            .map(|m| m as Arc<dyn monitor::sampler::Watched>)
            .collect()
    }

    /// The entry serving on `device`, if any.
    pub fn on_device(&self, device: u32) -> Option<Arc<ActiveModel>> {
        self.read().values().find(|m| m.record.device == device).cloned()
    }

    /// Says that a deployment's health changed.
    pub fn health_changed(&self) {
        self.changed.notify_one();
    }

    /// Completes after the next change (or at once, if one is pending).
    pub async fn wait_changed(&self) {
        self.changed.notified().await;
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// A receiver that sees every change of strict readiness.
    pub fn watch_ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// The restore is done; `unrestored` names the models whose active
    /// deployment it could not load.
    pub fn restore_finished(&self, unrestored: impl IntoIterator<Item = String>) {
        let mut readiness = self.lock_readiness();
        readiness.restored = true;
        readiness.unrestored = unrestored.into_iter().collect();
        drop(readiness);
        self.refresh_ready();
    }

    /// The operator undeployed `model`: a failed restore of it no longer
    /// keeps the server not ready.
    pub fn undeployed(&self, model: &str) {
        self.lock_readiness().unrestored.remove(model);
        self.refresh_ready();
    }

    /// The journal stopped recording (see `Journal::verify`): not ready for
    /// good, whatever serves.
    pub fn store_lost(&self, why: String) {
        self.lock_readiness().store_lost.get_or_insert(why);
        self.refresh_ready();
    }

    /// Why the server is not ready (None when it is).
    pub fn not_ready_reason(&self) -> Option<String> {
        let readiness = self.lock_readiness();
        if let Some(why) = &readiness.store_lost {
            return Some(why.clone());
        }
        if !readiness.restored {
            return Some("restoring deployments".into());
        }
        let models = self.read();
        let missing: Vec<&str> = readiness
            .unrestored
            .iter()
            .filter(|m| !models.contains_key(*m))
            .map(String::as_str)
            .collect();
        match missing.as_slice() {
            [] => None,
            names => Some(format!(
                "{} failed to restore and {} not been deployed again (see `dsmilctl events`)",
                names.join(", "),
                if names.len() == 1 { "has" } else { "have" }
            )),
        }
    }

    fn refresh_ready(&self) {
        let reason = self.not_ready_reason();
        let ready = reason.is_none();
        let changed = self.ready.send_if_modified(|r| std::mem::replace(r, ready) != ready);
        match reason {
            _ if !changed => {}
            None => tracing::info!("ready: everything the journal has active is served"),
            Some(why) => tracing::warn!(reason = %why, "not ready"),
        }
    }

    fn lock_readiness(&self) -> std::sync::MutexGuard<'_, Readiness> {
        self.readiness.lock().unwrap_or_else(|p| p.into_inner())
    }

    // A panic while holding the lock cannot leave the map half-updated (every
    // write is a single insert or remove), so a poisoned lock is still usable.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ActiveModel>>> {
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<ActiveModel>>> {
        self.models.write().unwrap_or_else(|p| p.into_inner())
    }
}
