//! Activation: from loaded instances to the version that serves. Starts the
//! workers, warms them up (WarmingUp), measures and admits their memory,
//! checks their health (HealthChecking), seeds the drift baseline, then
//! switches the model's name to this deployment: the registry entry first,
//! then one journal transaction (`new → Active`, the replaced deployment to
//! the plan's state), the entry put back if that write fails. So an
//! `activate` event always means "serving", and a crash in between restarts
//! on what served before.
//!
//! Must never leave a failed deployment's workers running, nor journal
//! `Active` for a version the registry does not serve.

use std::sync::Arc;
use std::time::Duration;

use super::checks::{check_inputs, check_outputs, synthetic_inputs};
use super::pipeline::StageRunner;
use super::workers::{Instances, Workers};
use super::{DeployError, DeployState, admission};
use dsmil_kinds::EventKind;

use crate::monitor::probation::Probation;
use crate::store::{DeploymentRecord, EventRecord};

impl StageRunner<'_, '_> {
    /// Starts the workers, warms them up, measures and admits their memory,
    /// checks health, then switches the model's name to this deployment in
    /// the journal and the registry.
    pub(super) fn activate(
        mut self,
        record: DeploymentRecord,
        instances: Instances,
    ) -> Result<DeploymentRecord, DeployError> {
        let deployer = self.deployer;
        let config = Arc::clone(&self.config);
        let workers = match instances.start(&record, &self.launch, config.serving.queue_capacity) {
            Ok(w) => w,
            Err(e) => {
                let e = DeployError::Threads(e);
                self.fail(&e);
                return Err(e);
            }
        };
        let (measured, health_ms) = match self.warm_measure_check(&record, &workers) {
            Ok(v) => v,
            Err(e) => {
                self.fail(&e);
                workers.stop();
                return Err(e);
            }
        };

        let previous = deployer.registry.get(&record.model);
        let detail = format!("health check passed in {health_ms:.3} ms; serving");
        let mut changes = vec![(record.id, DeployState::Active, detail.as_str())];
        if let Some(prev) = &previous {
            changes.push((prev.record.id, self.replaced.0, self.replaced.1.as_str()));
        }
        let activated = match &previous {
            Some(p) => format!("version {} replaces version {}", record.version, p.record.version),
            None => format!("version {} serving", record.version),
        };
        let event = EventRecord::about(EventKind::Activate, &record, activated);
        // Serve first, then commit. Whoever sees the activate event (in the
        // journal) can rely on the new version serving; a crash in between
        // restarts on what the journal says, the previous version.
        let mut serving = record.clone();
        serving.state = DeployState::Active;
        serving.measured_bytes = measured;
        let probation = Probation::new(
            config.deployment.probation_requests,
            config.deployment.probation,
            Duration::from_millis(config.monitoring.alert_on_latency_p99_ms),
        );
        let entry = workers.serve(deployer, serving, probation, &config);
        if let Some(samples) = self.baseline.take() {
            // The drift baseline from the deploy's own data, before any live
            // request can take its place.
            let rows = config.monitoring.drift_baseline_rows.min(samples.len());
            let timeout = config.deployment.health_check_timeout;
            // A recurrent model's baseline carries its state, as the
            // streams it will serve do.
            let mut stepper = crate::compress::Stepper::new(&samples);
            for i in 0..rows {
                if let Ok(outcome) = entry.pool.run_blocking(stepper.inputs(i), timeout) {
                    stepper.keep(&outcome.outputs);
                    entry.drift.observe(&outcome.outputs);
                }
            }
        }
        let displaced = deployer.registry.insert(entry);
        let updated = match deployer.journal.apply(&changes, Some(event)) {
            Ok(updated) => updated,
            Err(e) => {
                // Put back what served: the new version never counted as active.
                let ours = match displaced {
                    Some(previous) => deployer.registry.put_back(previous),
                    None => deployer.registry.remove(&record.model),
                };
                if let Some(ours) = ours {
                    super::unload(ours);
                }
                let e = DeployError::from(e);
                self.fail(&e);
                return Err(e);
            }
        };
        crate::failpoint::hit("activate");
        if let Some(old) = displaced {
            super::unload(old);
        }
        let mut active = updated.into_iter().next().expect("the new deployment comes first");
        active.measured_bytes = measured;
        self.report(DeployState::Active, detail, active.id);
        tracing::info!(
            model = %active.model, version = active.version, device = active.device,
            layer = active.layer, deployment = active.id, measured_bytes = measured, "deployment active"
        );
        Ok(active)
    }

    /// WarmingUp and HealthChecking: returns (measured bytes, health ms).
    fn warm_measure_check(&mut self, record: &DeploymentRecord, workers: &Workers) -> Result<(u64, f64), DeployError> {
        let deployer = self.deployer;
        let config = &Arc::clone(&self.config);
        let (pool, signature) = (&workers.pool, &workers.signature);
        let iterations = config.deployment.warmup_iterations;
        self.enter(DeployState::WarmingUp, format!("{iterations} synthetic inference(s)"))?;
        let timeout = config.deployment.health_check_timeout;
        let mut latencies = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            let outcome = pool
                .run_blocking(
                    synthetic_inputs(signature, &self.probe_shapes, &self.probe_values),
                    timeout,
                )
                .map_err(|e| DeployError::stage(DeployState::WarmingUp, e))?;
            latencies.push(outcome.compute);
        }
        latencies.sort();
        let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
        let max = latencies.last().copied().unwrap_or_default();

        // The measured footprint: everything the instances hold once warm.
        let measured = workers.measure();
        deployer.journal.set_measured(record.id, measured)?;
        let layer = config.topology.layer(u32::from(record.layer))?;
        admission::admit(
            config,
            &deployer.registry,
            layer,
            &record.model,
            measured,
            "measured after loading",
        )?;

        self.enter(
            DeployState::HealthChecking,
            format!(
                "warmup p50 {:.3} ms, max {:.3} ms; memory {} measured, {} estimated",
                ms(p50),
                ms(max),
                admission::human(measured),
                admission::human(record.estimated_bytes)
            ),
        )?;
        let mut slowest = Duration::ZERO;
        for (what, inputs) in check_inputs(signature, self.baseline.as_ref(), &self.probe_shapes) {
            let fail = |e: String| DeployError::stage(DeployState::HealthChecking, format!("on {what}: {e}"));
            let outcome = pool.run_blocking(inputs, timeout).map_err(|e| fail(e.to_string()))?;
            check_outputs(signature, &outcome.outputs).map_err(fail)?;
            slowest = slowest.max(outcome.compute);
        }
        Ok((measured, ms(slowest)))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
