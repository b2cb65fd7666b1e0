//! The stage runner: one journaled deployment's way from its blob to loaded
//! worker instances, through Validating (checks and a dry run), Quantizing,
//! Compiling and Loading, then on to activation (`activation.rs`). Deploy,
//! rollback and reload all run here, each with the [`Plan`] it made. Runs
//! on a blocking thread (it fsyncs, loads runtimes and runs inference).
//!
//! Every transition is journaled and flushed before the next stage starts,
//! then reported through `progress`; a failure in any stage ends the
//! deployment `Failed` and must never touch what was serving.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::launch::Launch;
use super::plan::{Plan, Quantize};
use super::validate::Data;
use super::workers::Instances;
use super::{DeployError, DeployState, Deployer, admission};
use dsmil_kinds::EventKind;

use crate::backend::{Backend, LoadOptions};
use crate::compress::{Samples, quantize};
use crate::config::Config;
use crate::model::ModelInfo;
use crate::store::{DeploymentRecord, EventRecord};
use crate::topology::Layer;

/// One step of progress, as streamed to `dsmilctl deploy`.
#[derive(Debug, Clone)]
pub struct Progress {
    pub deployment_id: u64,
    pub stage: DeployState,
    pub detail: String,
    pub elapsed: Duration,
}

impl Deployer {
    /// Runs a journaled deployment through its stages and activates it; the
    /// deployment it replaces (if any) ends in `replaced.0` with `replaced.1`.
    /// Called with `deploy_lock` held.
    pub(super) fn launch(
        &self,
        record: DeploymentRecord,
        bytes: &[u8],
        info: &ModelInfo,
        plan: Plan,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DeploymentRecord, DeployError> {
        let Plan {
            config,
            backend,
            quantize,
            replaced,
        } = plan;
        let layer = config.topology.layer(u32::from(record.layer))?;
        let fallback = if record.effective_target != record.target {
            format!(" (fallback: no {} on this host)", record.target)
        } else {
            String::new()
        };
        progress(Progress {
            deployment_id: record.id,
            stage: DeployState::Uploaded,
            detail: format!(
                "version {} → device {} (layer {} {}), target {}{fallback}; memory estimate {}",
                record.version,
                record.device,
                layer.id,
                layer.name,
                record.effective_target,
                admission::human(record.estimated_bytes)
            ),
            elapsed: Duration::ZERO,
        });
        crate::failpoint::hit("stage-Uploaded");
        let launch = Launch::of(&record, &config);
        let mut run = StageRunner {
            deployer: self,
            config: Arc::clone(&config),
            id: record.id,
            progress,
            since: Instant::now(),
            replaced,
            baseline: None,
            probe_shapes: record.probe_shapes.clone(),
            probe_values: record.probe_values.clone(),
            launch,
        };
        let options = run.launch.options.clone();
        match run.stages(bytes, info, layer, &*backend, &options, quantize) {
            Ok((record, instances)) => run.activate(record, instances),
            Err(e) => {
                run.fail(&e);
                Err(e)
            }
        }
    }
}

/// What the stages before activation leave: the journal's record as they
/// left it, and the loaded worker instances.
type Loaded = (DeploymentRecord, Instances);

pub(super) struct StageRunner<'a, 'p> {
    pub(super) deployer: &'a Deployer,
    /// The operation's one configuration snapshot: a reload while it runs
    /// applies to the next operation, never to half of this one.
    pub(super) config: Arc<Config>,
    pub(super) id: u64,
    progress: &'p mut dyn FnMut(Progress),
    since: Instant,
    /// The state and detail the deployment this one replaces ends with.
    pub(super) replaced: (DeployState, String),
    /// The deploy's validation (else calibration) samples: the drift
    /// baseline, run through the new version before it serves.
    pub(super) baseline: Option<Samples>,
    /// What synthetic runs feed (`DeploymentRecord::probe_shapes`), set at
    /// Validating.
    pub(super) probe_shapes: Vec<(String, Vec<i64>)>,
    /// And the values of its small integer inputs (`probe_values`).
    pub(super) probe_values: Vec<(String, Vec<i64>)>,
    /// How the instances load and serve (`deploy::launch`).
    pub(super) launch: Launch,
}

impl StageRunner<'_, '_> {
    /// Journals the move to `stage`, then reports it.
    pub(super) fn enter(&mut self, stage: DeployState, detail: String) -> Result<DeploymentRecord, DeployError> {
        let record = self.deployer.journal.transition(self.id, stage, &detail)?;
        self.report(stage, detail, self.id);
        self.since = Instant::now();
        if let Some(why) = crate::failpoint::hit(&format!("stage-{stage}")) {
            return Err(DeployError::stage(stage, format!("injected failure {why}")));
        }
        Ok(record)
    }

    /// Streams a step to the caller, with the time the last stage took.
    pub(super) fn report(&mut self, stage: DeployState, detail: String, deployment_id: u64) {
        (self.progress)(Progress {
            deployment_id,
            stage,
            detail,
            elapsed: self.since.elapsed(),
        });
    }

    fn stages(
        &mut self,
        bytes: &[u8],
        info: &ModelInfo,
        layer: &Layer,
        backend: &dyn Backend,
        options: &LoadOptions,
        plan: Quantize,
    ) -> Result<Loaded, DeployError> {
        let data = self.validate(bytes, info, layer, backend, options, &plan)?;
        let (served, quantized) = self.quantize(bytes, backend, options, plan, data)?;
        self.compile_and_load(&served, backend, options, quantized)
    }

    /// Quantizing, as planned: returns the bytes to serve and, when the
    /// quantizer ran, its summary.
    fn quantize<'b>(
        &mut self,
        bytes: &'b [u8],
        backend: &dyn Backend,
        serving_options: &LoadOptions,
        plan: Quantize,
        (calibration, validation): Data,
    ) -> Result<(Cow<'b, [u8]>, Option<String>), DeployError> {
        self.enter(DeployState::Quantizing, plan.describe())?;
        let deployer = self.deployer;
        match plan {
            Quantize::Int8 {
                options, allow_fp32, ..
            } => {
                // Calibrated and gated with the serving options (precision).
                let serving = crate::backend::Serving {
                    backend,
                    options: serving_options.clone(),
                };
                let q = quantize(&serving, bytes, calibration.as_ref(), validation.as_ref(), &options)?;
                // INT8 by name only is FP32 by policy.
                if let Some(why) = q.report.mostly_fp32(self.config.quantization.min_int8_mac_share) {
                    if !allow_fp32 {
                        return Err(DeployError::MostlyFp32(why));
                    }
                    let record = deployer.journal.deployment(self.id)?;
                    let detail = format!("served mostly in FP32 by operator override (--allow-fp32): {why}");
                    deployer.audit(EventRecord::about(EventKind::AllowFp32, &record, detail));
                }
                self.baseline = validation.or(calibration);
                let sha256 = deployer.blobs.put(&q.model)?;
                let record = deployer.journal.set_served(self.id, &sha256)?;
                deployer.journal.put_report(&record.model, record.version, &q.report)?;
                let e = q.report.evaluation.as_ref().expect("the plan guarantees gate data");
                let upgraded = q.report.upgraded_from_opset.map_or_else(String::new, |from| {
                    format!(
                        "upgraded from opset {from} to 13 ({} nodes rewritten, outputs checked); ",
                        q.report.opset_rewrites.len()
                    )
                });
                let summary = format!(
                    "{upgraded}INT8 ({}, {} samples): {} {:.4} vs {:.4} FP32, retention {:.4}; {} → {} bytes",
                    q.report.method,
                    q.report.calibration_samples,
                    e.metric,
                    e.int8,
                    e.fp32,
                    e.retention,
                    q.report.size_before,
                    q.report.size_after
                );
                Ok((Cow::Owned(q.model), Some(summary)))
            }
            Quantize::AllowFp32 => {
                let record = deployer.journal.deployment(self.id)?;
                let detail = "served in FP32 by operator override (--allow-fp32)";
                deployer.audit(EventRecord::about(EventKind::AllowFp32, &record, detail));
                Ok((Cow::Borrowed(bytes), None))
            }
            Quantize::AlreadyInt8 | Quantize::Served => Ok((Cow::Borrowed(bytes), None)),
        }
    }

    /// Compiling (the first instance: the runtime's session) and Loading
    /// (the other instances).
    fn compile_and_load(
        &mut self,
        bytes: &[u8],
        backend: &dyn Backend,
        options: &LoadOptions,
        quantized: Option<String>,
    ) -> Result<Loaded, DeployError> {
        let compiling = match quantized {
            Some(q) => format!("{q}; building the {} session", backend.describe(options)),
            None => format!("building the {} session", backend.describe(options)),
        };
        let workers = self.launch.workers;
        let compiling = match workers {
            1 => compiling,
            n => format!("{compiling}, {n} infer requests"),
        };
        self.enter(DeployState::Compiling, compiling)?;
        let started = Instant::now();
        let mut instances = Instances::load_first(backend, bytes, &self.launch.instance_options(0))
            .map_err(|e| DeployError::stage(DeployState::Compiling, e))?;
        let compile_ms = started.elapsed().as_millis();
        let compiled = match instances.compiled_from() {
            Some(from) => format!("loaded from {from} in {compile_ms} ms"),
            None => format!("compiled in {compile_ms} ms"),
        };

        // The journal's record from here on: it carries what the stages
        // decided (the served blob, for one).
        let record = self.enter(
            DeployState::Loading,
            format!("{compiled}; loading {workers} worker instance(s)"),
        )?;
        instances
            .load_rest(backend, bytes, &self.launch)
            .map_err(|e| DeployError::stage(DeployState::Loading, e))?;
        Ok((record, instances))
    }

    /// Ends the deployment Failed (best effort: the journal may be what failed).
    pub(super) fn fail(&mut self, error: &DeployError) {
        let detail = error.reason();
        let event = match self.deployer.journal.deployment(self.id) {
            Ok(record) => EventRecord::about(EventKind::Fail, &record, detail.clone()),
            // The journal itself may be what failed: say at least which deployment.
            Err(_) => EventRecord {
                deployment_id: self.id,
                ..EventRecord::of(EventKind::Fail, "", detail.clone())
            },
        };
        match self
            .deployer
            .journal
            .apply(&[(self.id, DeployState::Failed, &detail)], Some(event))
        {
            Ok(_) => self.report(DeployState::Failed, detail.clone(), self.id),
            Err(e) => {
                tracing::error!(deployment = self.id, error = %e, "could not record a failed deployment")
            }
        }
        tracing::warn!(deployment = self.id, error = %detail, "deployment failed");
    }
}
