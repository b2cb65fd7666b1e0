//! Deployment: from an uploaded model to a serving version on a device, and
//! back. Owns the state machine ([`DeployState`]), placement, the pipeline's
//! stages, activation (the version switch), undeploy and the restore after a
//! restart.
//!
//! Everything here blocks (journal fsyncs, runtime loads, warmup runs): call
//! it from `spawn_blocking` or a dedicated thread, never from a tokio worker.

mod activation;
pub mod admission;
mod checks;
mod error;
mod launch;
mod manifests;
mod pipeline;
mod placement;
mod plan;
pub mod probes;
mod quantize;
mod registry;
mod request;
mod restore;
mod rollback;
pub mod signature;
mod validate;
mod workers;

pub mod supervisor;

use std::sync::{Arc, Mutex};

pub use dsmil_kinds::DeployState;
pub use error::{DeployError, chain as error_chain};
pub use manifests::Reconciled;
pub use pipeline::Progress;
pub use plan::Staged;
pub use quantize::QuantizeError;
pub use registry::{ActiveModel, Registry};
pub use request::{DeployRequest, DeploySpec, MAX_WORKERS, validate_name};
pub use restore::RestoreReport;
pub use rollback::RollbackTarget;

use crate::backend::Runtimes;
use crate::config::Config;
use crate::store::{BlobStore, DeploymentRecord, EventRecord, Journal};

pub struct Deployer {
    /// Swapped whole by a reload; each operation works on one snapshot.
    config: std::sync::RwLock<Arc<Config>>,
    journal: Journal,
    blobs: BlobStore,
    runtimes: Arc<Runtimes>,
    registry: Arc<Registry>,
    deploy_lock: Mutex<()>,
}

impl Deployer {
    pub fn new(
        config: Arc<Config>,
        journal: Journal,
        blobs: BlobStore,
        runtimes: Arc<Runtimes>,
        registry: Arc<Registry>,
    ) -> Deployer {
        Deployer {
            config: std::sync::RwLock::new(config),
            journal,
            blobs,
            runtimes,
            registry,
            deploy_lock: Mutex::new(()),
        }
    }

    /// The configuration now in force (a snapshot: a reload swaps it).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `config` in force for every operation that starts from now on.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// A deployment's drift tracker: sized by the config, and holding the
    /// accuracy its version was validated at (read from the journal once).
    pub fn drift_tracker_for(&self, record: &DeploymentRecord) -> crate::monitor::DriftTracker {
        let config = self.config();
        let validated = self
            .journal
            .report(&record.model, record.version)
            .ok()
            .flatten()
            .and_then(|r: crate::compress::Report| r.evaluation)
            .filter(|e| e.metric == "top-1 accuracy")
            .map(|e| e.int8);
        crate::monitor::DriftTracker::new(
            config.monitoring.drift_baseline_rows,
            config.monitoring.drift_window_rows,
        )
        .with_validated_accuracy(validated)
    }

    /// The shadow check's FP32 original for a deployment that serves a
    /// model dsmil quantized, when `monitoring.shadow_fraction` is on: the
    /// version's upload, on ONNX Runtime, one worker. None (logged) when it
    /// cannot be loaded: the shadow check is advisory.
    pub fn shadow_for(&self, record: &DeploymentRecord) -> Option<crate::monitor::Shadow> {
        let fraction = self.config().monitoring.shadow_fraction;
        if fraction <= 0.0 {
            return None;
        }
        let version = self.journal.version(&record.model, record.version).ok().flatten()?;
        if version.sha256 == record.sha256 || version.format != crate::model::Format::Onnx {
            return None; // served as uploaded: nothing to compare with
        }
        let load = || -> Result<crate::monitor::Shadow, String> {
            let bytes = self.blobs.read(&version.sha256).map_err(|e| e.to_string())?;
            let backend = self
                .runtimes
                .backend_for(crate::topology::Target::Cpu)
                .map_err(|e| e.to_string())?;
            let model = backend
                .load(&bytes, &crate::backend::LoadOptions::default())
                .map_err(|e| e.to_string())?;
            let label = format!("{}-v{}-fp32", record.model, record.version);
            let pool = crate::backend::Pool::start(&label, vec![model], 8, None, &[]).map_err(|e| e.to_string())?;
            Ok(crate::monitor::Shadow::new(pool, fraction))
        };
        load()
            .map_err(|e| tracing::warn!(model = %record.model, error = %e, "no shadow check for this deployment"))
            .ok()
    }

    /// Stops serving `model` and retires its active deployment(s).
    pub fn undeploy(&self, model: &str) -> Result<Vec<DeploymentRecord>, DeployError> {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
        // The journal is the truth: a deployment may be Active there and not
        // loaded (its restore failed); undeploy retires it all the same.
        let active: Vec<DeploymentRecord> = self
            .journal
            .deployments()?
            .into_iter()
            .filter(|d| d.model == model && d.state == DeployState::Active)
            .collect();
        if active.is_empty() {
            return Err(DeployError::NotDeployed(model.to_owned()));
        }
        let changes: Vec<(u64, DeployState, &str)> = active
            .iter()
            .map(|d| (d.id, DeployState::Retired, "undeployed by operator"))
            .collect();
        let first = &active[0];
        let retired = self.journal.apply(
            &changes,
            Some(EventRecord::about(
                dsmil_kinds::EventKind::Undeploy,
                first,
                format!("version {} retired from device {}", first.version, first.device),
            )),
        )?;
        if let Some(old) = self.registry.remove(model) {
            unload(old);
        }
        self.registry.undeployed(model);
        tracing::info!(model, version = first.version, device = first.device, "undeployed");
        Ok(retired)
    }
}

/// Stops a deployment's workers and returns its memory, once no request
/// holds it any more; if one still does, the last holder's drop does it.
fn unload(model: Arc<ActiveModel>) {
    if let Ok(model) = Arc::try_unwrap(model) {
        model.pool.close_and_join();
        crate::monitor::process::release_free_memory();
    }
}

impl Deployer {
    /// What the monitor's sampler reads: the registry's deployments, the
    /// configuration in force and the journal. It gets no deployer, so it
    /// can observe and never act.
    pub fn monitoring_sources(self: &Arc<Self>) -> crate::monitor::sampler::Sources {
        let registry = Arc::clone(&self.registry);
        let deployer = Arc::clone(self);
        crate::monitor::sampler::Sources {
            serving: Box::new(move || registry.watched()),
            config: Box::new(move || deployer.config()),
            journal: self.journal.clone(),
        }
    }
}

impl Deployer {
    /// What an operator should know is wrong: runtimes that did not load,
    /// deployments on a fallback target, and why the server is not ready.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .runtimes
            .status()
            .iter()
            .filter(|r| !r.available)
            .map(|r| format!("{} unavailable: {}", r.name, r.detail))
            .collect();
        for m in &self.registry.all() {
            if m.record.target != m.record.effective_target {
                warnings.push(format!(
                    "{} v{} on device {} wants {} (absent on this host); running on {}",
                    m.record.model, m.record.version, m.record.device, m.record.target, m.record.effective_target
                ));
            }
        }
        if let Some(why) = self.registry.not_ready_reason() {
            warnings.push(format!("not ready: {why}"));
        }
        warnings
    }
}

impl Deployer {
    /// Appends an audit event; a journal failure here is logged, not fatal,
    /// because the refusal it records has already been answered.
    pub fn audit(&self, event: EventRecord) {
        if let Err(e) = self.journal.append_event(event) {
            tracing::error!(error = %e, "could not journal an audit event");
        }
    }
}
