//! The supervisor: decides what happens to a serving deployment when
//! something is wrong with it, one decision at a time, off the tokio
//! workers. Alarms come from the registry (a failed probation, failing
//! health probes); alerts from the monitor (drift). A failed probation rolls
//! the model back and failing health probes reload it, rolling back if the
//! reload fails (both only with `deployment.auto_rollback_on_failure`); a
//! drift alert rolls back only with `monitoring.drift_auto_rollback`. Every
//! alarm acted on is an event. An alarm about a deployment that no longer
//! serves is dropped.
//!
//! Never observes anything itself: the monitor and the registry do.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::{DeployState, Deployer, RollbackTarget};
use crate::monitor::sampler::Alert;
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
    /// The monitor's drift alert, acted on because
    /// `monitoring.drift_auto_rollback` is on.
    Drifted {
        model: String,
        deployment_id: u64,
        reason: String,
    },
}

pub async fn supervise(
    deployer: Arc<Deployer>,
    mut alarms: UnboundedReceiver<Alarm>,
    mut alerts: UnboundedReceiver<Alert>,
    shutdown: CancellationToken,
) {
    loop {
        let alarm = tokio::select! {
            _ = shutdown.cancelled() => return,
            alarm = alarms.recv() => match alarm { Some(a) => a, None => return },
            // A closed alert channel (the sampler stopped) disables this branch.
            Some(alert) = alerts.recv() => match deployer.decide(alert) {
                Some(alarm) => alarm,
                None => continue,
            },
        };
        let deployer = Arc::clone(&deployer);
        if let Err(e) = tokio::task::spawn_blocking(move || deployer.handle_alarm(alarm)).await {
            tracing::error!(error = %e, "the supervisor's worker failed");
        }
    }
}

impl Deployer {
    /// Whether a monitor's alert calls for action, on the configuration in
    /// force now; the monitor has already recorded the alert itself.
    fn decide(&self, alert: Alert) -> Option<Alarm> {
        match alert {
            Alert::Drifted {
                model,
                deployment_id,
                reason,
            } => self.config().monitoring.drift_auto_rollback.then_some(Alarm::Drifted {
                model,
                deployment_id,
                reason,
            }),
        }
    }

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
        self.audit(EventRecord::about(
            dsmil_kinds::EventKind::Alert,
            &serving,
            format!("{kind}: {reason}"),
        ));
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
                let reloaded = self.relaunch(&serving, dsmil_kinds::EventKind::Reload, reason, replaced, &mut |_| {});
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
            self.audit(EventRecord::about(
                dsmil_kinds::EventKind::Alert,
                &serving,
                format!("could not recover: {e}"),
            ));
        }
    }
}
