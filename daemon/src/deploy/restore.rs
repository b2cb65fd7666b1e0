//! After a restart: deployments the crash interrupted end Failed
//! ("interrupted"), and every deployment that was Active is loaded again from
//! its blob. The journal is not otherwise changed: an Active deployment that
//! cannot be loaded now (say, its runtime is missing) stays Active, is
//! reported, and keeps the server not ready, so nothing is lost and the
//! operator sees why, until a deploy of that model serves it again.
//!
//! Such a deploy activates with nothing in the registry to replace, so the
//! unrestored deployment stays Active beside it in the journal; the next
//! restore retires it (only the newest Active deployment of a model is
//! loaded), or it would be loaded for nothing, or fail again.

use std::time::Instant;

use super::launch::Launch;
use super::workers::Instances;
use super::{DeployState, Deployer};
use crate::monitor::probation::Probation;
use crate::store::{DeploymentRecord, EventRecord};

#[derive(Debug, Default)]
pub struct RestoreReport {
    /// (model, version) serving again.
    pub restored: Vec<(String, u32)>,
    /// Deployments that were mid-pipeline and are now Failed.
    pub interrupted: Vec<u64>,
    /// Active deployments that could not be loaded, with why.
    pub failed: Vec<(u64, String)>,
    pub elapsed_ms: u64,
}

impl Deployer {
    pub fn restore(&self) -> Result<RestoreReport, super::DeployError> {
        let started = Instant::now();
        let mut report = RestoreReport::default();
        let all = self.journal.deployments()?;
        for record in all.iter().filter(|d| d.state.is_in_progress()) {
            let detail = format!("interrupted during {} by a daemon restart", record.state);
            self.journal.apply(
                &[(record.id, DeployState::Failed, "interrupted")],
                Some(EventRecord::about(dsmil_kinds::EventKind::Interrupted, record, detail)),
            )?;
            report.interrupted.push(record.id);
        }
        let mut newest: Vec<DeploymentRecord> = Vec::new();
        for record in all.into_iter().filter(|d| d.state == DeployState::Active) {
            match newest.iter_mut().find(|n| n.model == record.model) {
                // Ids grow, and deployments() is in id order: this one is newer.
                Some(older) => {
                    self.retire_superseded(older, &record)?;
                    *older = record;
                }
                None => newest.push(record),
            }
        }
        let mut unrestored = Vec::new();
        for record in newest {
            match self.load_active(record.clone()) {
                Ok(()) => report.restored.push((record.model, record.version)),
                Err(why) => {
                    tracing::error!(
                        deployment = record.id, model = %record.model, version = record.version, error = %why,
                        "could not restore a deployment"
                    );
                    self.audit(EventRecord::about(
                        dsmil_kinds::EventKind::RestoreFailed,
                        &record,
                        why.clone(),
                    ));
                    unrestored.push(record.model.clone());
                    report.failed.push((record.id, why));
                }
            }
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        self.registry.restore_finished(unrestored);
        Ok(report)
    }

    fn retire_superseded(&self, older: &DeploymentRecord, newer: &DeploymentRecord) -> Result<(), super::DeployError> {
        let detail = format!(
            "superseded by deployment {} (version {}), activated while this one was not restored",
            newer.id, newer.version
        );
        tracing::warn!(deployment = older.id, model = %older.model, version = older.version, "{detail}");
        self.journal.apply(
            &[(older.id, DeployState::Retired, &detail)],
            Some(EventRecord::about(
                dsmil_kinds::EventKind::Retire,
                older,
                detail.clone(),
            )),
        )?;
        Ok(())
    }

    /// Loads an Active deployment as the pipeline does (see `workers.rs`),
    /// but without its stages: the version passed them when it was
    /// deployed, so there is no quantizing, warmup, health check or stage
    /// transition, and it serves with its probation passed.
    fn load_active(&self, record: DeploymentRecord) -> Result<(), String> {
        let started = std::time::Instant::now();
        let bytes = self.blobs.read(&record.sha256).map_err(|e| e.to_string())?;
        let read_ms = started.elapsed().as_millis() as u64;
        let backend = self
            .runtimes
            .backend(record.effective_target, record.backend)
            .map_err(|e| e.to_string())?;
        // One configuration for the whole load.
        let config = self.config();
        let launch = Launch::of(&record, &config);
        let mut instances =
            Instances::load_first(&*backend, &bytes, &launch.instance_options(0)).map_err(|e| e.to_string())?;
        let from_cache = instances.compiled_from().is_some();
        instances
            .load_rest(&*backend, &bytes, &launch)
            .map_err(|e| e.to_string())?;
        let workers = instances
            .start(&record, &launch, config.serving.queue_capacity)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            model = %record.model, version = record.version, device = record.device,
            read_ms, load_ms = started.elapsed().as_millis() as u64 - read_ms, from_cache,
            "deployment restored"
        );
        // The blob is not part of what the deployment holds.
        drop(bytes);
        let measured = workers.measure();
        let record = self
            .journal
            .set_measured(record.id, measured)
            .map_err(|e| e.to_string())?;
        self.registry
            .insert(workers.serve(self, record, Probation::passed(), &config));
        Ok(())
    }
}
