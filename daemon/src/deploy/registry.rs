//! What is serving now: model name → its active deployment. The inference
//! path reads it on every request; deploys swap entries atomically.
//!
//! Swapping an `Arc` is the version switch: requests that already hold the
//! old entry finish on the old version, new requests see the new one, and the
//! old workers exit when the last request holding them is done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use super::supervisor::Alarm;
use crate::backend::{Pool, Signature};
use crate::monitor::probation::Probation;
use crate::monitor::{self, DeploymentLabels, DeploymentMetrics, ModelStats};
use crate::store::DeploymentRecord;

pub struct ActiveModel {
    pub record: DeploymentRecord,
    pub signature: Signature,
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
        pool: Pool,
        probation: Probation,
        drift: monitor::DriftTracker,
    ) -> ActiveModel {
        let labels = DeploymentLabels {
            model: record.model.clone(),
            version: record.version.to_string(),
            device: record.device.to_string(),
            layer: record.layer.to_string(),
            backend: record.backend.clone(),
        };
        ActiveModel {
            record,
            signature,
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

pub struct Registry {
    models: RwLock<HashMap<String, Arc<ActiveModel>>>,
    /// Where failed probations and probes are reported (the supervisor).
    alarms: tokio::sync::mpsc::UnboundedSender<Alarm>,
    /// Woken whenever what serves, or its health, changes.
    changed: tokio::sync::Notify,
    /// Strict readiness: true once every deployment found active at startup
    /// is loaded again.
    ready: AtomicBool,
}

impl Registry {
    pub fn new(alarms: tokio::sync::mpsc::UnboundedSender<Alarm>) -> Registry {
        Registry {
            models: RwLock::default(),
            alarms,
            changed: tokio::sync::Notify::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// Reports a problem with a serving deployment to the supervisor.
    pub fn raise(&self, alarm: Alarm) {
        if self.alarms.send(alarm).is_err() {
            tracing::warn!("an alarm was raised after the supervisor stopped");
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
        previous
    }

    /// Re-installs an entry that `insert` displaced; returns the one it displaces.
    pub fn put_back(&self, model: Arc<ActiveModel>) -> Option<Arc<ActiveModel>> {
        let mut models = self.write();
        let displaced = models.insert(model.record.model.clone(), model);
        drop(models);
        self.changed.notify_one();
        displaced
    }

    pub fn remove(&self, model: &str) -> Option<Arc<ActiveModel>> {
        let mut models = self.write();
        let removed = models.remove(model);
        monitor::set_models_loaded(models.len());
        drop(models);
        self.changed.notify_one();
        removed
    }

    /// All serving entries, by model name.
    pub fn all(&self) -> Vec<Arc<ActiveModel>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.record.model.cmp(&b.record.model));
        all
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
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
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
