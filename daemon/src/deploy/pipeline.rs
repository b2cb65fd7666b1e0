//! One deployment's journey from an uploaded file to serving. Runs on a
//! blocking thread (it fsyncs, loads runtimes and runs inference); every
//! transition is journaled and flushed before the next stage starts, then
//! reported through `progress`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::launch::Launch;
use super::{ActiveModel, DeployError, DeployRequest, DeployState, Deployer, admission, placement};
use dsmil_kinds::EventKind;

use crate::backend::{LoadOptions, LoadedModel, Pool, Signature, Tensor};
use crate::compress::{Samples, quantize};
use crate::config::Config;
use crate::model::{Format, ModelError, check_operators};
use crate::monitor::probation::Probation;
use crate::monitor::process;
use crate::store::{DeploymentRecord, EventRecord, NewDeployment, StagedBlob};
use crate::topology::check_deploy_clearance;

/// An upload: the model and the attachments the spec declared.
pub struct Staged {
    pub model: StagedBlob,
    /// An IR's .bin.
    pub weights: Option<StagedBlob>,
    pub calibration: Option<StagedBlob>,
    pub validation: Option<StagedBlob>,
}

impl Staged {
    /// Checks each upload against the size and sha256 the spec declared.
    pub fn check(&self, spec: &DeployRequest) -> Result<(), DeployError> {
        check_upload(&self.model, spec.size_bytes, &spec.sha256)?;
        for (declared, blob, what) in [
            (&spec.weights, &self.weights, "weights"),
            (&spec.calibration, &self.calibration, "calibration"),
            (&spec.validation, &self.validation, "validation"),
        ] {
            if let Some((size, sha256)) = declared {
                check_upload(
                    blob.as_ref().ok_or(DeployError::MissingAttachment(what))?,
                    *size,
                    sha256,
                )?;
            }
        }
        Ok(())
    }
}

/// How a journaled deployment is launched, decided before its stages run:
/// the operation's configuration snapshot, the runtime that serves it, what
/// the Quantizing stage does, and the state and detail the deployment it
/// replaces ends with. Deploy, rollback and reload each make one and hand
/// it to the same runner ([`Deployer::launch`]).
pub(super) struct Plan {
    pub config: Arc<Config>,
    pub backend: Arc<dyn crate::backend::Backend>,
    pub quantize: Quantize,
    pub replaced: (DeployState, String),
}

/// What the Quantizing stage does with a model.
pub(super) enum Quantize {
    /// Rewrite to INT8 by `options.method` (static methods calibrate on the
    /// calibration data), gated on the validation data, else the calibration
    /// data; at least one of the two is there.
    Int8 {
        calibration: Option<StagedBlob>,
        validation: Option<StagedBlob>,
        options: crate::compress::Options,
    },
    /// The upload is already INT8.
    AlreadyInt8,
    /// FP32 by operator override.
    AllowFp32,
    /// A rollback or reload: the blob is what this version served before.
    Served,
}

/// One step of progress, as streamed to `dsmilctl deploy`.
#[derive(Debug, Clone)]
pub struct Progress {
    pub deployment_id: u64,
    pub stage: DeployState,
    pub detail: String,
    pub elapsed: Duration,
}

impl Deployer {
    /// Deploys a staged upload. Refusals before the journal entry (bad bytes,
    /// bad placement) record nothing but an audit event where it matters; a
    /// failure in a later stage ends the deployment Failed, and whatever
    /// served before keeps serving.
    pub fn deploy(
        &self,
        spec: DeployRequest,
        staged: Staged,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DeploymentRecord, DeployError> {
        // One configuration for the whole deploy: a reload meanwhile applies
        // to the next one.
        let config = self.config();
        staged.check(&spec)?;
        let format = spec.format;
        // An IR is its .xml and .bin, stored packed as one blob.
        let bytes = match (format, &staged.weights) {
            (Format::Ir, Some(weights)) => crate::model::pack_ir(&staged.model.read()?, &weights.read()?),
            (Format::Ir, None) => return Err(DeployError::IrWithoutWeights),
            _ => staged.model.read()?,
        };
        let info = crate::model::inspect(format, &bytes)?;
        let options = crate::compress::Options::resolve(&config.quantization, spec.method, spec.activations);
        let method = options.method;
        // Static methods calibrate on the calibration data; dynamic needs
        // only data for the gate (either file).
        let has_data = match method.is_static() {
            true => staged.calibration.is_some(),
            false => staged.calibration.is_some() || staged.validation.is_some(),
        };
        let plan = if info.is_quantized() {
            Quantize::AlreadyInt8
        } else if format.needs_openvino() && !spec.allow_fp32 {
            // The quantizer rewrites ONNX graphs only.
            return Err(DeployError::CannotQuantize(format));
        } else if has_data {
            Quantize::Int8 {
                calibration: staged.calibration,
                validation: staged.validation,
                options,
            }
        } else if spec.allow_fp32 {
            Quantize::AllowFp32
        } else {
            return Err(match method.is_static() {
                true => DeployError::NeedsCalibration(spec.name.clone()),
                false => DeployError::NeedsValidation(spec.name.clone()),
            });
        };
        let workers = spec
            .workers
            .map_or(config.serving.workers_per_deployment, |n| n as usize);
        let max_batch = spec.max_batch.unwrap_or(config.serving.max_batch_size);
        let estimate = admission::estimate(&info, workers, max_batch);

        // One deploy at a time: placement and activation read and change the
        // registry, and must not interleave with another deploy's.
        let _serial = self.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
        let topology = &config.topology;
        let request = placement::Request {
            model: &spec.name,
            device: spec.device,
            layer: spec.layer,
            classification: spec.classification,
            need: estimate,
        };
        let device = match placement::choose(&config, &self.registry, &request) {
            Ok(device) => device,
            Err(e) => {
                // Policy refusals are audited; malformed requests are not.
                if matches!(e, DeployError::OverBudget { .. } | DeployError::NoPlacement { .. }) {
                    self.audit(EventRecord {
                        device: spec.device,
                        layer: spec.layer.and_then(|l| u8::try_from(l).ok()),
                        ..EventRecord::of(EventKind::Refuse, &spec.name, e.to_string())
                    });
                }
                return Err(e);
            }
        };
        let layer = topology.layer_of(device);
        let classification = spec.classification.unwrap_or(u32::from(layer.id));
        if let Err(e) = check_deploy_clearance(topology, layer, classification) {
            self.audit(EventRecord {
                device: Some(device.id),
                layer: Some(layer.id),
                ..EventRecord::of(EventKind::Refuse, &spec.name, e.to_string())
            });
            return Err(e.into());
        }
        let super::launch::Runtime {
            wanted,
            effective,
            backend,
        } = self.runtime_for(&config, device, layer, spec.backend)?;
        if format.needs_openvino() && backend.name() != "openvino" {
            return Err(DeployError::NeedsOpenVino {
                format,
                backend: backend.name(),
            });
        }

        let sha256 = match format {
            Format::Ir => self.blobs.put(&bytes)?,
            _ => {
                let sha256 = staged.model.sha256.clone();
                staged.model.commit(&self.blobs)?;
                sha256
            }
        };
        let record = self.journal.create_deployment(NewDeployment {
            model: spec.name.clone(),
            sha256,
            size_bytes: spec.size_bytes,
            format,
            classification,
            note: spec.note.clone(),
            device: device.id,
            layer: layer.id,
            target: wanted,
            effective_target: effective,
            backend: backend.kind(),
            performance_hint: spec.performance_hint,
            workers: spec.workers.unwrap_or(0),
            precision: spec.precision,
            max_batch,
            estimated_bytes: estimate,
            existing: None,
        })?;
        let replaced = (
            DeployState::Retired,
            format!("replaced by version {}", record.1.version),
        );
        self.launch(
            record.1,
            &bytes,
            &info,
            Plan {
                config,
                backend,
                quantize: plan,
                replaced,
            },
            progress,
        )
    }

    /// Runs a journaled deployment through its stages and activates it; the
    /// deployment it replaces (if any) ends in `replaced.0` with `replaced.1`.
    /// Called with `deploy_lock` held.
    pub(super) fn launch(
        &self,
        record: DeploymentRecord,
        bytes: &[u8],
        info: &crate::model::ModelInfo,
        plan: Plan,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DeploymentRecord, DeployError> {
        let Plan {
            config,
            backend,
            quantize,
            replaced,
        } = plan;
        let (config, backend) = (&config, &*backend);
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
        let mut run = StageRunner {
            deployer: self,
            config: Arc::clone(config),
            id: record.id,
            progress,
            since: Instant::now(),
            rss_before: 0,
            replaced,
            quantized: None,
            baseline: None,
            workers: Launch::of(&record, config).workers,
        };
        let options = Launch::of(&record, config).options;
        match run.stages(bytes, info, layer, backend, &options, quantize) {
            Ok((record, signature, models)) => run.activate(record, signature, models),
            Err(e) => {
                run.fail(&e);
                Err(e)
            }
        }
    }
}

/// What the stages before activation leave: the journal's record as they
/// left it, the signature, and the loaded worker instances.
type Loaded = (DeploymentRecord, Signature, Vec<Box<dyn LoadedModel>>);

struct StageRunner<'a, 'p> {
    deployer: &'a Deployer,
    /// The operation's one configuration snapshot: a reload while it runs
    /// applies to the next operation, never to half of this one.
    config: Arc<Config>,
    id: u64,
    progress: &'p mut dyn FnMut(Progress),
    since: Instant,
    /// Process RSS just before the first serving instance was built.
    rss_before: u64,
    /// The state and detail the deployment this one replaces ends with.
    replaced: (DeployState, String),
    /// The quantizer's summary, once it has run.
    quantized: Option<String>,
    /// The deploy's validation (else calibration) samples: the drift
    /// baseline, run through the new version before it serves.
    baseline: Option<Samples>,
    /// Worker instances (infer requests) to load.
    workers: usize,
}

impl StageRunner<'_, '_> {
    fn enter(&mut self, stage: DeployState, detail: String) -> Result<DeploymentRecord, DeployError> {
        let record = self.deployer.journal.transition(self.id, stage, &detail)?;
        (self.progress)(Progress {
            deployment_id: self.id,
            stage,
            detail,
            elapsed: self.since.elapsed(),
        });
        self.since = Instant::now();
        if let Some(why) = crate::failpoint::hit(&format!("stage-{stage}")) {
            return Err(DeployError::stage(stage, format!("injected failure {why}")));
        }
        Ok(record)
    }

    fn stages(
        &mut self,
        bytes: &[u8],
        info: &crate::model::ModelInfo,
        layer: &crate::topology::Layer,
        backend: &dyn crate::backend::Backend,
        options: &LoadOptions,
        plan: Quantize,
    ) -> Result<Loaded, DeployError> {
        let config = &Arc::clone(&self.config);
        let described = if info.format == Format::Onnx {
            format!(
                "ONNX IR {}, opsets {}, {} nodes, {} operators, {} parameters",
                info.ir_version,
                info.opsets
                    .iter()
                    .map(|(d, v)| format!("{}:{v}", if d.is_empty() { "ai.onnx" } else { d }))
                    .collect::<Vec<_>>()
                    .join(","),
                info.node_count,
                info.operators.len(),
                info.parameter_count
            )
        } else {
            format!(
                "{}, {} layers, {} operator types, {} bytes of weights",
                info.producer,
                info.node_count,
                info.operators.len(),
                info.weight_bytes
            )
        };
        self.enter(DeployState::Validating, described)?;
        if let Some(limit) = layer.max_parameters.filter(|&l| info.parameter_count > l) {
            return Err(DeployError::TooManyParameters {
                parameters: info.parameter_count,
                layer: layer.id,
                name: layer.name.clone(),
                limit,
            });
        }
        // The ONNX operator checks; other formats' layers are OpenVINO's own.
        let mut problems = match info.format == Format::Onnx {
            true => check_operators(info, &config.deployment.allowed_operator_domains),
            false => Vec::new(),
        };
        problems.extend(
            info.operators
                .iter()
                .filter(|(domain, op)| !backend.supports_operator(domain, op))
                .map(|(domain, op)| {
                    format!(
                        "{} does not implement operator {op} of domain {domain:?}",
                        backend.name()
                    )
                }),
        );
        if !problems.is_empty() {
            return Err(ModelError::Invalid(problems).into());
        }
        // The compatibility test: a throwaway instance runs the deploy's
        // own data when it brought some (read once, here: the gate and the
        // health check use it too), else synthetic inputs of the declared
        // shapes (dynamic dimensions = 1).
        let mut probe = backend
            .load(bytes, options)
            .map_err(|e| DeployError::DryRun(e.to_string()))?;
        let signature = probe.signature().clone();
        let (calibration, validation) = match &plan {
            Quantize::Int8 {
                calibration,
                validation,
                options,
            } => (
                calibration
                    .as_ref()
                    .map(|c| Samples::read(c.path(), &signature, options.max_samples))
                    .transpose()?,
                validation
                    .as_ref()
                    .map(|v| Samples::read(v.path(), &signature, usize::MAX))
                    .transpose()?,
            ),
            _ => (None, None),
        };
        for (what, inputs) in check_inputs(&signature, validation.as_ref().or(calibration.as_ref())) {
            let outputs = probe
                .run(&inputs)
                .map_err(|e| DeployError::DryRun(format!("on {what}: {e}")))?;
            check_outputs(&signature, &outputs).map_err(|e| DeployError::DryRun(format!("on {what}: {e}")))?;
        }
        drop(probe);

        self.enter(DeployState::Quantizing, plan.describe())?;
        let serving_options = options;
        let served: std::borrow::Cow<[u8]> = match plan {
            Quantize::Int8 { options, .. } => {
                // Calibrated and gated with the serving options (precision).
                let serving = crate::backend::Serving {
                    backend,
                    options: serving_options.clone(),
                };
                let q = quantize(&serving, bytes, calibration.as_ref(), validation.as_ref(), &options)?;
                self.baseline = validation.or(calibration);
                let sha256 = self.deployer.blobs.put(&q.model)?;
                let record = self.deployer.journal.set_served(self.id, &sha256)?;
                self.deployer
                    .journal
                    .put_report(&record.model, record.version, &q.report)?;
                let e = q.report.evaluation.as_ref().expect("the plan guarantees gate data");
                self.quantized = Some(format!(
                    "INT8 ({}, {} samples): {} {:.4} vs {:.4} FP32, retention {:.4}; {} → {} bytes",
                    q.report.method,
                    q.report.calibration_samples,
                    e.metric,
                    e.int8,
                    e.fp32,
                    e.retention,
                    q.report.size_before,
                    q.report.size_after
                ));
                std::borrow::Cow::Owned(q.model)
            }
            Quantize::AllowFp32 => {
                let record = self.deployer.journal.deployment(self.id)?;
                let detail = "served in FP32 by operator override (--allow-fp32)";
                self.deployer
                    .audit(EventRecord::about(EventKind::AllowFp32, &record, detail));
                std::borrow::Cow::Borrowed(bytes)
            }
            Quantize::AlreadyInt8 | Quantize::Served => std::borrow::Cow::Borrowed(bytes),
        };
        let bytes: &[u8] = &served;

        let compiling = match self.quantized.take() {
            Some(q) => format!("{q}; building the {} session", backend.describe(options)),
            None => format!("building the {} session", backend.describe(options)),
        };
        let workers = self.workers;
        let compiling = match workers {
            1 => compiling,
            n => format!("{compiling}, {n} infer requests"),
        };
        self.enter(DeployState::Compiling, compiling)?;
        process::release_free_memory();
        self.rss_before = process::rss_bytes();
        let started = Instant::now();
        let first = backend
            .load(bytes, options)
            .map_err(|e| DeployError::stage(DeployState::Compiling, e))?;
        let signature = first.signature().clone();
        let compile_ms = started.elapsed().as_millis();

        // The journal's record from here on: it carries what the stages
        // decided (the served blob, for one).
        let record = self.enter(
            DeployState::Loading,
            format!("compiled in {compile_ms} ms; loading {workers} worker instance(s)"),
        )?;
        let mut models = vec![first];
        for _ in 1..workers {
            models.push(
                backend
                    .load(bytes, options)
                    .map_err(|e| DeployError::stage(DeployState::Loading, e))?,
            );
        }
        Ok((record, signature, models))
    }

    /// Starts the workers, warms them up, measures and admits their memory,
    /// checks health, then switches the model's name to this deployment in
    /// the journal and the registry.
    fn activate(
        mut self,
        record: DeploymentRecord,
        signature: Signature,
        models: Vec<Box<dyn LoadedModel>>,
    ) -> Result<DeploymentRecord, DeployError> {
        let deployer = self.deployer;
        let label = format!("{}-v{}", record.model, record.version);
        let pool = match Pool::start(&label, models, self.config.serving.queue_capacity) {
            Ok(p) => p,
            Err(e) => {
                let e = DeployError::Threads(e);
                self.fail(&e);
                return Err(e);
            }
        };
        let (measured, health_ms) = match self.warm_measure_check(&record, &signature, &pool) {
            Ok(v) => v,
            Err(e) => {
                self.fail(&e);
                pool.close_and_join();
                process::release_free_memory();
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
        let limits = Launch::of(&serving, &self.config).limits;
        let probation = Probation::new(
            self.config.deployment.probation_requests,
            self.config.deployment.probation,
            Duration::from_millis(self.config.monitoring.alert_on_latency_p99_ms),
        );
        let drift = deployer.drift_tracker_for(&record);
        if let Some(samples) = self.baseline.take() {
            // The drift baseline from the deploy's own data, before any live
            // request can take its place.
            let rows = self.config.monitoring.drift_baseline_rows.min(samples.len());
            let timeout = self.config.deployment.health_check_timeout;
            for i in 0..rows {
                if let Ok(outcome) = pool.run_blocking(samples.sample(i), timeout) {
                    drift.observe(&outcome.outputs);
                }
            }
        }
        let displaced = deployer.registry.insert(
            ActiveModel::new(serving, signature, limits, pool, probation, drift)
                .with_shadow(deployer.shadow_for(&record)),
        );
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
        (self.progress)(Progress {
            deployment_id: active.id,
            stage: DeployState::Active,
            detail,
            elapsed: self.since.elapsed(),
        });
        tracing::info!(
            model = %active.model, version = active.version, device = active.device,
            layer = active.layer, deployment = active.id, measured_bytes = measured, "deployment active"
        );
        Ok(active)
    }

    /// WarmingUp and HealthChecking: returns (measured bytes, health ms).
    fn warm_measure_check(
        &mut self,
        record: &DeploymentRecord,
        signature: &Signature,
        pool: &Pool,
    ) -> Result<(u64, f64), DeployError> {
        let deployer = self.deployer;
        let config = &Arc::clone(&self.config);
        let iterations = config.deployment.warmup_iterations;
        self.enter(DeployState::WarmingUp, format!("{iterations} synthetic inference(s)"))?;
        let timeout = config.deployment.health_check_timeout;
        let mut latencies = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            let outcome = pool
                .run_blocking(synthetic_inputs(signature), timeout)
                .map_err(|e| DeployError::stage(DeployState::WarmingUp, e))?;
            latencies.push(outcome.compute);
        }
        latencies.sort();
        let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
        let max = latencies.last().copied().unwrap_or_default();

        // The measured footprint: everything the instances hold once warm.
        process::release_free_memory();
        let measured = process::rss_bytes().saturating_sub(self.rss_before);
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
        for (what, inputs) in check_inputs(signature, self.baseline.as_ref()) {
            let fail = |e: String| DeployError::stage(DeployState::HealthChecking, format!("on {what}: {e}"));
            let outcome = pool.run_blocking(inputs, timeout).map_err(|e| fail(e.to_string()))?;
            check_outputs(signature, &outcome.outputs).map_err(fail)?;
            slowest = slowest.max(outcome.compute);
        }
        Ok((measured, ms(slowest)))
    }

    /// Ends the deployment Failed (best effort: the journal may be what failed).
    fn fail(&mut self, error: &DeployError) {
        let detail = error.to_string();
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
            Ok(_) => (self.progress)(Progress {
                deployment_id: self.id,
                stage: DeployState::Failed,
                detail: detail.clone(),
                elapsed: self.since.elapsed(),
            }),
            Err(e) => {
                tracing::error!(deployment = self.id, error = %e, "could not record a failed deployment")
            }
        }
        tracing::warn!(deployment = self.id, error = %detail, "deployment failed");
    }
}

impl Quantize {
    fn describe(&self) -> String {
        match self {
            Quantize::Int8 {
                options, validation, ..
            } => format!(
                "{} to INT8, gated on {} data (retention ≥ {})",
                match options.method {
                    crate::compress::Method::Dynamic => "dynamic quantization (activations at run time)".to_owned(),
                    m => format!("calibrating ({}) and rewriting", m.name()),
                },
                if validation.is_some() {
                    "validation"
                } else {
                    "the calibration"
                },
                options.min_retention
            ),
            Quantize::AlreadyInt8 => "already INT8 (QDQ or integer operators): passes through".into(),
            Quantize::AllowFp32 => "FP32 kept by operator override (--allow-fp32)".into(),
            Quantize::Served => "the version's served model, quantized when it was first deployed".into(),
        }
    }
}

/// Checks an upload against its declared size and sha256.
fn check_upload(blob: &StagedBlob, size: u64, sha256: &str) -> Result<(), DeployError> {
    if blob.size != size {
        return Err(DeployError::SizeMismatch {
            declared: size,
            received: blob.size,
        });
    }
    if !blob.sha256.eq_ignore_ascii_case(sha256) {
        return Err(DeployError::ChecksumMismatch {
            declared: sha256.to_owned(),
            actual: blob.sha256.clone(),
        });
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// How many of the deploy's samples the dry run and the health check run:
/// enough to meet a value the model cannot take, few enough to stay quick.
const CHECK_SAMPLES: usize = 8;

/// The inputs a dry run or health check runs, each with what it is: the
/// first samples of the deploy's data when it brought some (a model that
/// answers NaN on real data must not pass on synthetic inputs), else one
/// synthetic input.
fn check_inputs(signature: &Signature, data: Option<&Samples>) -> Vec<(String, Vec<Tensor>)> {
    match data {
        Some(samples) => (0..samples.len().min(CHECK_SAMPLES))
            .map(|i| (format!("the deploy's data, sample {i}"), samples.sample(i)))
            .collect(),
        None => vec![("synthetic inputs".to_owned(), synthetic_inputs(signature))],
    }
}

/// One synthetic tensor per input, dynamic dimensions set to 1.
pub(super) fn synthetic_inputs(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| Tensor::synthetic(spec, spec.concrete_shape(1)))
        .collect()
}

/// A healthy run gives every declared output, of its type, with finite values.
pub(super) fn check_outputs(signature: &Signature, outputs: &[Tensor]) -> Result<(), String> {
    for spec in &signature.outputs {
        let Some(out) = outputs.iter().find(|o| o.name == spec.name) else {
            return Err(format!("output {} is missing", spec.name));
        };
        if out.dtype != spec.dtype {
            return Err(format!(
                "output {} is {}, declared {}",
                spec.name, out.dtype, spec.dtype
            ));
        }
        if !out.is_finite() {
            return Err(format!("output {} has NaN or infinite values", spec.name));
        }
    }
    Ok(())
}
