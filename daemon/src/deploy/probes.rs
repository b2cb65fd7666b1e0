//! Periodic health probes: every `deployment.health_probe_interval`, each
//! serving deployment runs a synthetic input of its declared shapes. The
//! result is what ModelReady reports; `health_probe_failures` failures in a
//! row raise an alarm (the supervisor reloads, then rolls back).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::checks::{check_outputs, synthetic_inputs};
use super::supervisor::Alarm;
use super::{ActiveModel, Deployer};

pub async fn run(deployer: Arc<Deployer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(deployer.config().deployment.health_probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; deployments were just checked
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for model in deployer.registry().all() {
            let deployer = Arc::clone(&deployer);
            let probed = tokio::task::spawn_blocking(move || probe(&deployer, &model)).await;
            if let Err(e) = probed {
                tracing::error!(error = %e, "a health probe's thread failed");
            }
        }
    }
}

fn probe(deployer: &Deployer, model: &ActiveModel) {
    let timeout = deployer.config().deployment.health_check_timeout;
    let result = match crate::failpoint::hit("probe") {
        Some(injected) => Err(format!("injected failure {injected}")),
        None => model
            .pool
            .run_blocking(
                synthetic_inputs(&model.signature, &model.record.probe_shapes, &model.record.probe_values),
                timeout,
            )
            .map_err(|e| e.to_string())
            .and_then(|outcome| check_outputs(&model.signature, &outcome.outputs)),
    };
    let was_healthy = model.healthy.load(Ordering::Acquire);
    if was_healthy != result.is_ok() {
        model.healthy.store(result.is_ok(), Ordering::Release);
        deployer.registry().health_changed();
    }
    match result {
        Ok(()) => model.probe_failures.store(0, Ordering::Relaxed),
        Err(reason) => {
            let failures = model.probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
            model.metrics.probe_failed();
            tracing::warn!(model = %model.record.model, version = model.record.version, failures, reason, "health probe failed");
            if failures == deployer.config().deployment.health_probe_failures {
                deployer.registry().raise(Alarm::ProbesFailing {
                    model: model.record.model.clone(),
                    deployment_id: model.record.id,
                    reason: format!("{failures} health probes failed in a row; last: {reason}"),
                });
            }
        }
    }
}
