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
//! What to do is decided by [`plan`], a pure function of the alarm, what
//! serves now and the configuration's two switches; `handle_alarm` only
//! carries its answer out. Never observes anything itself: the monitor and
//! the registry do.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::{DeployState, Deployer, RollbackTarget};
use crate::config::Config;
use crate::monitor::sampler::Alert;
use crate::store::{DeploymentRecord, EventRecord};

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
    /// The monitor's drift alert, acted on only with
    /// `monitoring.drift_auto_rollback`.
    Drifted {
        model: String,
        deployment_id: u64,
        reason: String,
    },
}

impl Alarm {
    /// (model, deployment id, reason, what failed).
    fn parts(&self) -> (&str, u64, &str, &'static str) {
        match self {
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
        }
    }
}

impl From<Alert> for Alarm {
    fn from(alert: Alert) -> Alarm {
        match alert {
            Alert::Drifted {
                model,
                deployment_id,
                reason,
            } => Alarm::Drifted {
                model,
                deployment_id,
                reason,
            },
        }
    }
}

/// What the supervisor does about one alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Nothing at all, not even an event.
    Drop(Dropped),
    /// An `alert` event; what serves is left alone.
    AlertOnly,
    /// An `alert` event, then a rollback of the model for this reason.
    Rollback(String),
    /// An `alert` event, then the serving version deployed again; if that
    /// fails, a rollback when `then_rollback`.
    Reload { then_rollback: bool },
}

/// Why an alarm is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    /// It is about a deployment that no longer serves: what it judged is
    /// gone already.
    NotServing,
    /// A drift alert, which the monitor has recorded already, with
    /// `monitoring.drift_auto_rollback` off: the operator decides.
    LeftToOperator,
}

/// The configuration's say in what the supervisor does.
#[derive(Debug, Clone, Copy)]
struct Policy {
    /// `deployment.auto_rollback_on_failure`: failed probations and
    /// failed reloads roll back.
    auto_rollback: bool,
    /// `monitoring.drift_auto_rollback`: drift rolls back.
    drift_auto_rollback: bool,
}

impl Policy {
    fn of(config: &Config) -> Policy {
        Policy {
            auto_rollback: config.deployment.auto_rollback_on_failure,
            drift_auto_rollback: config.monitoring.drift_auto_rollback,
        }
    }
}

/// What to do about `alarm`, given what serves its model now (None:
/// nothing) and the policy in force.
fn plan(alarm: &Alarm, serving: Option<&DeploymentRecord>, policy: Policy) -> Action {
    let (_, deployment_id, reason, _) = alarm.parts();
    // First, so that such an alert stays silent even about a deployment
    // that no longer serves: the monitor has recorded it already.
    if matches!(alarm, Alarm::Drifted { .. }) && !policy.drift_auto_rollback {
        return Action::Drop(Dropped::LeftToOperator);
    }
    if serving.is_none_or(|s| s.id != deployment_id) {
        return Action::Drop(Dropped::NotServing);
    }
    match alarm {
        Alarm::ProbationFailed { .. } if policy.auto_rollback => {
            Action::Rollback(format!("probation failed: {reason}"))
        }
        Alarm::ProbationFailed { .. } => Action::AlertOnly,
        Alarm::ProbesFailing { .. } => Action::Reload {
            then_rollback: policy.auto_rollback,
        },
        Alarm::Drifted { .. } => Action::Rollback(format!("drift: {reason}")),
    }
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
            Some(alert) = alerts.recv() => Alarm::from(alert),
        };
        let deployer = Arc::clone(&deployer);
        if let Err(e) = tokio::task::spawn_blocking(move || deployer.handle_alarm(alarm)).await {
            tracing::error!(error = %e, "the supervisor's worker failed");
        }
    }
}

impl Deployer {
    /// Carries out what [`plan`] decides, on the configuration in force now.
    fn handle_alarm(&self, alarm: Alarm) {
        let (model, deployment_id, reason, kind) = alarm.parts();
        let serving = self.registry.get(model).map(|m| m.record.clone());
        let action = plan(&alarm, serving.as_ref(), Policy::of(&self.config()));
        match action {
            Action::Drop(Dropped::NotServing) => {
                tracing::info!(
                    model,
                    deployment_id,
                    "alarm about a deployment that no longer serves; dropped"
                );
                return;
            }
            Action::Drop(Dropped::LeftToOperator) => return,
            _ => {}
        }
        let Some(serving) = serving else {
            return; // plan acts only on what serves
        };
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
        let rollback = |why: &str| {
            self.rollback(&RollbackTarget::Model(model.to_owned()), why, &mut |_| {})
                .map(|_| ())
        };
        let outcome = match action {
            Action::Drop(_) | Action::AlertOnly => Ok(()),
            Action::Rollback(why) => rollback(&why),
            Action::Reload { then_rollback } => {
                let _serial = self.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
                let replaced = (
                    DeployState::Retired,
                    format!("reloaded after failed health probes: {reason}"),
                );
                let reloaded = self.relaunch(&serving, dsmil_kinds::EventKind::Reload, reason, replaced, &mut |_| {});
                drop(_serial);
                match reloaded {
                    Ok(_) => Ok(()),
                    Err(e) if then_rollback => {
                        tracing::warn!(model, error = %e, "reload failed; rolling back");
                        rollback(&format!("reload after failed health probes failed: {e}"))
                    }
                    Err(e) => Err(e),
                }
            }
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

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
