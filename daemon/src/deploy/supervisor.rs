//! The supervisor: acts on alarms about serving deployments, one at a time,
//! off the tokio workers. A failed probation rolls the model back; failing
//! health probes reload it, and roll it back if the reload fails (both only
//! with `deployment.auto_rollback_on_failure`). Every alarm is an event.
//! An alarm about a deployment that no longer serves is dropped.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::{DeployState, Deployer, RollbackTarget};
use crate::store::EventRecord;

#[derive(Debug, Clone)]
pub enum Alarm {
    ProbationFailed {
        model: String,
        deployment_id: u64,
        reason: String,
    },
    ProbesFailing {
        model: String,
        deployment_id: u64,
        reason: String,
    },
    /// Output or accuracy drift above the threshold, with
    /// `monitoring.drift_auto_rollback` on.
    Drifted {
        model: String,
        deployment_id: u64,
        reason: String,
    },
}

pub async fn supervise(deployer: Arc<Deployer>, mut alarms: UnboundedReceiver<Alarm>, shutdown: CancellationToken) {
    loop {
        let alarm = tokio::select! {
            _ = shutdown.cancelled() => return,
            alarm = alarms.recv() => match alarm { Some(a) => a, None => return },
        };
        let deployer = Arc::clone(&deployer);
        if let Err(e) = tokio::task::spawn_blocking(move || deployer.handle_alarm(alarm)).await {
            tracing::error!(error = %e, "the supervisor's worker failed");
        }
    }
}

impl Deployer {
    fn handle_alarm(&self, alarm: Alarm) {
        let (model, deployment_id, reason, kind) = match &alarm {
            Alarm::ProbationFailed {
                model,
                deployment_id,
                reason,
            } => (model, *deployment_id, reason, "probation"),
            Alarm::ProbesFailing {
                model,
                deployment_id,
                reason,
            } => (model, *deployment_id, reason, "probes"),
            Alarm::Drifted {
                model,
                deployment_id,
                reason,
            } => (model, *deployment_id, reason, "drift"),
        };
        let Some(current) = self.registry.get(model).filter(|m| m.record.id == deployment_id) else {
            tracing::info!(
                model,
                deployment_id,
                "alarm about a deployment that no longer serves; dropped"
            );
            return;
        };
        let serving = current.record.clone();
        drop(current);
        tracing::warn!(
            model,
            version = serving.version,
            deployment = deployment_id,
            reason,
            "alert: {kind} failed"
        );
        self.audit(EventRecord::about("alert", &serving, format!("{kind}: {reason}")));
        let auto = self.config().deployment.auto_rollback_on_failure;
        let outcome = match alarm {
            Alarm::ProbationFailed { .. } if auto => self
                .rollback(
                    &RollbackTarget::Model(model.clone()),
                    &format!("probation failed: {reason}"),
                    &mut |_| {},
                )
                .map(|_| ()),
            Alarm::ProbesFailing { .. } => {
                let _serial = self.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
                let replaced = (
                    DeployState::Retired,
                    format!("reloaded after failed health probes: {reason}"),
                );
                let reloaded = self.relaunch(&serving, "reload", reason, replaced, &mut |_| {});
                drop(_serial);
                match reloaded {
                    Ok(_) => Ok(()),
                    Err(e) if auto => {
                        tracing::warn!(model, error = %e, "reload failed; rolling back");
                        let why = format!("reload after failed health probes failed: {e}");
                        self.rollback(&RollbackTarget::Model(model.clone()), &why, &mut |_| {})
                            .map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            }
            Alarm::ProbationFailed { .. } => Ok(()),
            Alarm::Drifted { .. } => self
                .rollback(
                    &RollbackTarget::Model(model.clone()),
                    &format!("drift: {reason}"),
                    &mut |_| {},
                )
                .map(|_| ()),
        };
        if let Err(e) = outcome {
            tracing::error!(model, error = %e, "could not recover from the alert");
            self.audit(EventRecord::about("alert", &serving, format!("could not recover: {e}")));
        }
    }
}
