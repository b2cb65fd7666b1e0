//! `dsmil.v1.Control`: the operator's API. Handlers decode (`convert`), call
//! the deployer or read the registry and journal (on a blocking thread
//! whenever the journal or a runtime is touched), and encode (`convert`).
//!
//! Owns nothing but the handlers and grpc.health's per-model status around
//! deploys and undeploys. Never builds a status (`status` maps every error),
//! never decides what a deploy, rollback or quantization does (the
//! deployer's), and never streams an upload itself (`upload`).
//!
//! Each handler first asks the [`Gate`] whether its caller may (one
//! `access::authorise` per call); lists keep only what the caller's
//! clearance covers; a state-changing call runs with its caller set on its
//! thread, so the events it journals name who asked.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use dsmil_proto::control as pb;
use dsmil_proto::control::control_server::Control;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::error::ControlError;
use super::gate::{Gate, event_caller};
use super::{convert, upload};
use crate::access::{Action, Caller};
use crate::deploy::{Deployer, Progress, RollbackTarget};
use dsmil_kinds::{DeployState, EventKind};

/// Facts about the running server that status reports.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub unix_socket: String,
    pub tcp_address: String,
    pub metrics_address: String,
    /// The KServe v2 REST listener's address; empty when off.
    pub http_address: String,
    pub state_dir: String,
}

#[derive(Clone)]
pub struct ControlService {
    deployer: Arc<Deployer>,
    info: Arc<ServerInfo>,
    started: Instant,
    reloader: Arc<crate::reload::Reloader>,
    /// Per-model grpc.health status, set before a deploy or undeploy answers.
    health: tonic_health::server::HealthReporter,
    gate: Gate,
}

impl ControlService {
    pub fn new(
        deployer: Arc<Deployer>,
        reloader: Arc<crate::reload::Reloader>,
        info: ServerInfo,
        health: tonic_health::server::HealthReporter,
        gate: Gate,
    ) -> ControlService {
        ControlService {
            gate,
            deployer,
            reloader,
            info: Arc::new(info),
            started: Instant::now(),
            health,
        }
    }
}

/// The highest layer `model` serves or served in (its deployments'), so a
/// clearance covers the model only if it covers all of them; None for a
/// model never deployed.
fn model_layer(deployer: &Deployer, model: &str) -> Result<Option<u8>, ControlError> {
    if let Some(serving) = deployer.registry().get(model) {
        return Ok(Some(serving.record.layer));
    }
    Ok(deployer
        .journal()
        .deployments()?
        .iter()
        .filter(|d| d.model == model)
        .map(|d| d.layer)
        .max())
}

/// The models a caller may not see: some deployment of theirs is in a layer
/// above the caller's clearance.
fn hidden_models(deployer: &Deployer, caller: &Caller) -> Result<std::collections::HashSet<String>, ControlError> {
    Ok(deployer
        .journal()
        .deployments()?
        .into_iter()
        .filter(|d| !caller.sees(d.layer))
        .map(|d| d.model)
        .collect())
}

/// The layer a rollback touches (None when the target does not exist: the
/// deployer then says so).
fn rollback_layer(deployer: &Deployer, target: &RollbackTarget) -> Result<Option<u8>, ControlError> {
    Ok(match target {
        RollbackTarget::Model(m) => model_layer(deployer, m)?,
        RollbackTarget::Device(d) => {
            let topology = &deployer.config().topology;
            topology.device(*d).ok().map(|d| topology.layer_of(d).id)
        }
        RollbackTarget::Layer(l) => Some(u8::try_from(*l).unwrap_or(u8::MAX)),
    })
}

/// Why `model` `version` has no quantization report: there is no such
/// version, its deploy failed before Quantizing finished or has not got
/// that far yet, or it was never quantized by dsmild (uploaded INT8 or
/// served FP32). Blocking (journal reads).
fn missing_report(deployer: &Deployer, model: &str, version: u32) -> Result<ControlError, ControlError> {
    let journal = deployer.journal();
    let versions = journal.versions(model)?;
    if versions.is_empty() {
        return Ok(ControlError::NoVersions(model.to_owned()));
    }
    if !versions.iter().any(|v| v.version == version) {
        return Ok(ControlError::NoSuchVersion {
            model: model.to_owned(),
            version,
            versions: versions
                .iter()
                .map(|v| v.version.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let stage = |s: DeployState| DeployState::PIPELINE.iter().position(|p| *p == s);
    let quantized_at = stage(DeployState::Quantizing);
    let newest = journal
        .deployments()?
        .into_iter()
        .filter(|d| d.model == model && d.version == version)
        .max_by_key(|d| d.id);
    let why = newest.and_then(|d| {
        // The furthest pipeline stage it reached.
        let reached = d.history.iter().filter_map(|c| stage(c.state)).max();
        if reached > quantized_at {
            return None;
        }
        if d.state == DeployState::Failed {
            let at = d
                .history
                .iter()
                .rev()
                .find(|c| c.state != DeployState::Failed)
                .map_or("upload".to_owned(), |c| c.state.to_string());
            let detail = d
                .history
                .iter()
                .rfind(|c| c.state == DeployState::Failed)
                .map_or(String::new(), |c| format!(": {}", c.detail));
            return Some(format!("its deploy failed at {at} (deployment {}){detail}", d.id));
        }
        d.state
            .is_in_progress()
            .then(|| format!("its deploy is still at {} (deployment {})", d.state, d.id))
    });
    Ok(match why {
        Some(why) => ControlError::ReportMissing {
            model: model.to_owned(),
            version,
            why,
        },
        None => ControlError::NoReport {
            model: model.to_owned(),
            version,
        },
    })
}

/// Runs blocking work (journal reads, deploys) off the tokio workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ControlError::Worker(e.to_string()))?
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::DeployProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    type DeployStream = ProgressStream;

    async fn deploy(&self, request: Request<Streaming<pb::DeployRequest>>) -> Result<Response<ProgressStream>, Status> {
        let caller = self.gate.caller(&request);
        // Unknown callers are refused before a byte is uploaded (any known
        // principal may view); the deploy rule needs the spec's layer.
        self.gate.check(&caller, Action::View).await?;
        let mut inbound = request.into_inner();
        let spec = upload::read_spec(&self.deployer, &mut inbound).await?;
        crate::deploy::validate_name(&spec.name)?;
        // The layer the spec names (by layer or device), else the model's
        // current one; with neither, placement may pick any layer.
        let layer = {
            let topology = &self.deployer.config().topology;
            match (spec.layer, spec.device) {
                (Some(l), _) => Some(u8::try_from(l).unwrap_or(u8::MAX)),
                (None, Some(d)) => topology.device(d).ok().map(|d| topology.layer_of(d).id),
                (None, None) => self.deployer.registry().get(&spec.name).map(|m| m.record.layer),
            }
        };
        self.gate
            .check(
                &caller,
                Action::Deploy {
                    model: &spec.name,
                    layer,
                },
            )
            .await?;
        // Held until the pipeline ends, upload included.
        let share = self.gate.admit_deploy(&caller)?;
        let (spec, staged) = upload::receive(&self.deployer, &mut inbound, spec).await?;

        let (tx, mut from_pipeline) = tokio::sync::mpsc::channel(16);
        let deployer = Arc::clone(&self.deployer);
        let by = event_caller(&caller);
        tokio::task::spawn_blocking(move || {
            let mut report = |p: Progress| {
                let _ = tx.blocking_send(Ok(convert::progress(p)));
            };
            let last = match by.acting(|| deployer.deploy(spec, staged, &mut report)) {
                Ok(record) => Ok(convert::deployed(&record)),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.blocking_send(last);
            drop(share);
        });
        // Forward the pipeline's progress; before the final message, mark the
        // model SERVING in grpc.health so the caller can watch it at once.
        let (to_client, rx) = tokio::sync::mpsc::channel(16);
        let health = self.health.clone();
        tokio::spawn(async move {
            while let Some(message) = from_pipeline.recv().await {
                if let Ok(pb::DeployProgress {
                    done: true,
                    deployment: Some(d),
                    ..
                }) = &message
                {
                    health
                        .set_service_status(&d.model, tonic_health::ServingStatus::Serving)
                        .await;
                }
                if to_client.send(message).await.is_err() {
                    break;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream) as ProgressStream))
    }

    async fn undeploy(&self, request: Request<pb::UndeployRequest>) -> Result<Response<pb::UndeployResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let model = request.into_inner().model;
        let deployer = Arc::clone(&self.deployer);
        let name = model.clone();
        let layer = blocking(move || model_layer(&deployer, &name)).await?;
        self.gate
            .check(
                &caller,
                Action::Undeploy {
                    model: &model,
                    layer: layer.unwrap_or(1),
                },
            )
            .await?;
        // A model a manifest declares is the manifest's: refused, naming it.
        if let Some(dir) = self.reloader.source().manifests_dir(&self.deployer.config()) {
            let deployer = Arc::clone(&self.deployer);
            let name = model.clone();
            if let Some(manifest) = blocking(move || Ok(deployer.manifest_for(&dir, &name))).await? {
                return Err(ControlError::ManagedByManifest {
                    model,
                    manifest: manifest.display().to_string(),
                }
                .into());
            }
        }
        let deployer = Arc::clone(&self.deployer);
        let name = model.clone();
        let by = event_caller(&caller);
        let retired = blocking(move || Ok(by.acting(|| deployer.undeploy(&name))?)).await?;
        self.health
            .set_service_status(&model, tonic_health::ServingStatus::NotServing)
            .await;
        Ok(Response::new(pb::UndeployResponse {
            retired: retired.iter().map(convert::deployment).collect(),
        }))
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Result<Response<pb::RollbackResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let (target, reason) = convert::rollback_target(request.into_inner())?;
        let deployer = Arc::clone(&self.deployer);
        let t = target.clone();
        let layer = blocking(move || rollback_layer(&deployer, &t)).await?;
        let described = match &target {
            RollbackTarget::Model(m) => format!("model {m:?}"),
            RollbackTarget::Device(d) => format!("device {d}"),
            RollbackTarget::Layer(l) => format!("layer {l}"),
        };
        self.gate
            .check(
                &caller,
                Action::Rollback {
                    target: &described,
                    layer: layer.unwrap_or(1),
                },
            )
            .await?;
        let deployer = Arc::clone(&self.deployer);
        let by = event_caller(&caller);
        let restored = blocking(move || Ok(by.acting(|| deployer.rollback(&target, &reason, &mut |_| {}))?)).await?;
        Ok(Response::new(pb::RollbackResponse {
            restored: restored.iter().map(convert::deployment).collect(),
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let deployer = Arc::clone(&self.deployer);
        let models = blocking(move || {
            let journal = deployer.journal();
            let hidden = hidden_models(&deployer, &caller)?;
            let mut out = Vec::new();
            for model in journal.models()?.into_iter().filter(|m| !hidden.contains(&m.name)) {
                let versions = journal.versions(&model.name)?;
                let serving = deployer.registry().get(&model.name).map(|a| a.record.clone());
                out.push((model.name, versions, serving));
            }
            Ok(out)
        })
        .await?;
        let models = models
            .into_iter()
            .map(|(name, versions, serving)| convert::model(&name, versions, serving.as_ref()))
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let model = request.into_inner().model;
        let deployer = Arc::clone(&self.deployer);
        let records = blocking(move || Ok(deployer.journal().deployments()?)).await?;
        let deployments = records
            .iter()
            .filter(|d| caller.sees(d.layer))
            .filter(|d| model.is_empty() || d.model == model)
            .map(convert::deployment)
            .collect();
        Ok(Response::new(pb::ListDeploymentsResponse { deployments }))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let id = request.into_inner().id;
        let deployer = Arc::clone(&self.deployer);
        let record = blocking(move || Ok(deployer.journal().deployment(id)?)).await?;
        let what = format!("deployment {id}");
        self.gate
            .check(
                &caller,
                Action::ViewIn {
                    what: &what,
                    layer: record.layer,
                },
            )
            .await?;
        Ok(Response::new(convert::deployment(&record)))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        // A device's effective target needs OpenVINO's device list; the
        // first question loads it, off the tokio workers.
        let deployer = Arc::clone(&self.deployer);
        blocking(move || {
            deployer.runtimes().load_all();
            Ok(())
        })
        .await?;
        let topology = &self.deployer.config().topology;
        let registry = self.deployer.registry();
        let devices = topology
            .devices()
            .iter()
            .filter(|d| caller.sees(topology.layer_of(d).id))
            .map(|d| {
                let serving = registry.on_device(d.id);
                let record = serving.as_ref().map(|m| &m.record);
                convert::device(d, topology.layer_of(d), self.deployer.runtimes(), record)
            })
            .collect();
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    async fn list_layers(
        &self,
        request: Request<pb::ListLayersRequest>,
    ) -> Result<Response<pb::ListLayersResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let topology = &self.deployer.config().topology;
        let serving = self.deployer.registry().all();
        let layers = topology
            .layers()
            .iter()
            .filter(|l| caller.sees(l.id))
            .map(|l| {
                let here: Vec<_> = serving.iter().map(|m| &m.record).filter(|r| r.layer == l.id).collect();
                convert::layer(l, &here)
            })
            .collect();
        Ok(Response::new(pb::ListLayersResponse { layers }))
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let mut status = convert::status(&self.info, self.started.elapsed(), &self.deployer);
        status.pending_restart = self.reloader.pending_restart();
        Ok(Response::new(status))
    }

    async fn report(&self, request: Request<pb::ReportRequest>) -> Result<Response<pb::QuantizationReport>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let req = request.into_inner();
        let deployer = Arc::clone(&self.deployer);
        let name = req.model.clone();
        if let Some(layer) = blocking(move || model_layer(&deployer, &name)).await? {
            let what = format!("the report of {:?}", req.model);
            self.gate.check(&caller, Action::ViewIn { what: &what, layer }).await?;
        }
        let deployer = Arc::clone(&self.deployer);
        let model = req.model.clone();
        let (version, report) = blocking(move || {
            let journal = deployer.journal();
            // Version 0: the one serving, else the latest uploaded.
            let version = match req.version {
                0 => match deployer.registry().get(&req.model) {
                    Some(serving) => serving.record.version,
                    None => journal
                        .versions(&req.model)?
                        .last()
                        .map(|v| v.version)
                        .ok_or_else(|| ControlError::NoVersions(req.model.clone()))?,
                },
                v => v,
            };
            let report: crate::compress::Report = match journal.report(&req.model, version)? {
                Some(report) => report,
                None => return Err(missing_report(&deployer, &req.model, version)?),
            };
            Ok((version, report))
        })
        .await?;
        Ok(Response::new(convert::report(&model, version, report)))
    }

    async fn reload(&self, request: Request<pb::ReloadRequest>) -> Result<Response<pb::ReloadResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::Reload).await?;
        let reloader = Arc::clone(&self.reloader);
        let by = event_caller(&caller);
        let outcome = blocking(move || Ok(by.acting(|| reloader.reload("dsmilctl reload"))?)).await?;
        Ok(Response::new(pb::ReloadResponse {
            changes: outcome.changes,
            warnings: outcome.warnings,
            pending_restart: outcome.pending_restart,
            in_force: outcome.in_force.unwrap_or_default(),
        }))
    }

    async fn top(&self, request: Request<pb::TopRequest>) -> Result<Response<pb::TopResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let span = crate::monitor::sampler::LIVE_SPAN;
        let serving = self.deployer.registry().all();
        Ok(Response::new(pb::TopResponse {
            deployments: serving
                .iter()
                .filter(|m| caller.sees(m.record.layer))
                .map(|m| convert::deployment_load(m, span))
                .collect(),
            rss_bytes: crate::monitor::process::rss_bytes(),
            span_seconds: span.as_secs() as u32,
        }))
    }

    async fn drift(&self, request: Request<pb::DriftRequest>) -> Result<Response<pb::DriftResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let wanted = request.into_inner().model;
        if let Some(m) = self.deployer.registry().get(&wanted) {
            let what = format!("the drift of {wanted:?}");
            self.gate
                .check(
                    &caller,
                    Action::ViewIn {
                        what: &what,
                        layer: m.record.layer,
                    },
                )
                .await?;
        }
        let deployer = Arc::clone(&self.deployer);
        let models = blocking(move || {
            let serving: Vec<_> = deployer
                .registry()
                .all()
                .into_iter()
                .filter(|m| caller.sees(m.record.layer))
                .collect();
            if !wanted.is_empty() && !serving.iter().any(|m| m.record.model == wanted) {
                return Err(ControlError::NotServing(wanted));
            }
            let threshold = deployer.config().monitoring.drift_detection_threshold_percent / 100.0;
            // Judged afresh, so what the operator reads is current; the
            // sampler records the crossing and the supervisor acts on it.
            Ok(serving
                .iter()
                .filter(|m| wanted.is_empty() || m.record.model == wanted)
                .map(|m| convert::model_drift(m, m.drift.assess(threshold), threshold))
                .collect())
        })
        .await?;
        Ok(Response::new(pb::DriftResponse { models }))
    }

    async fn report_outcome(
        &self,
        request: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let req = request.into_inner();
        let model = self
            .deployer
            .registry()
            .get(&req.model)
            .ok_or(ControlError::NotServing(req.model.clone()))?;
        self.gate
            .check(
                &caller,
                Action::Feedback {
                    model: &req.model,
                    layer: model.record.layer,
                },
            )
            .await?;
        model.drift.report_outcome(req.predicted == req.actual);
        Ok(Response::new(convert::outcome(&model.drift.report())))
    }

    type QuantizeStream = Pin<Box<dyn Stream<Item = Result<pb::QuantizeResponse, Status>> + Send>>;

    async fn quantize(
        &self,
        request: Request<Streaming<pb::DeployRequest>>,
    ) -> Result<Response<Self::QuantizeStream>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::Quantize).await?;
        let _share = self.gate.admit_deploy(&caller)?;
        let mut inbound = request.into_inner();
        let spec = upload::read_spec(&self.deployer, &mut inbound).await?;
        let (spec, staged) = upload::receive(&self.deployer, &mut inbound, spec).await?;
        let deployer = Arc::clone(&self.deployer);
        let name = spec.name.clone();
        let quantized = blocking(move || Ok(deployer.quantize(&spec, &staged)?)).await?;
        let parts = convert::quantized(&name, quantized).into_iter().map(Ok);
        Ok(Response::new(
            Box::pin(tokio_stream::iter(parts)) as Self::QuantizeStream
        ))
    }

    async fn prune(&self, request: Request<pb::PruneRequest>) -> Result<Response<pb::PruneResponse>, Status> {
        let caller = self.gate.caller(&request);
        // Server-wide and destructive, even as a dry run it lists every
        // layer's versions: admin, as for reload.
        self.gate.check(&caller, Action::Reload).await?;
        let dry_run = request.into_inner().dry_run;
        let deployer = Arc::clone(&self.deployer);
        let pruned = blocking(move || Ok(crate::store::prune(deployer.journal(), deployer.blobs(), dry_run)?)).await?;
        Ok(Response::new(convert::pruned(pruned, dry_run)))
    }

    async fn events(&self, request: Request<pb::EventsRequest>) -> Result<Response<pb::EventsResponse>, Status> {
        let caller = self.gate.caller(&request);
        self.gate.check(&caller, Action::View).await?;
        let req = request.into_inner();
        let kind = match req.kind.as_str() {
            "" => None,
            given => Some(given.parse::<EventKind>().map_err(|_| ControlError::UnknownEventKind {
                given: given.to_owned(),
                known: EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
            })?),
        };
        let deadline = Instant::now() + std::time::Duration::from_millis(u64::from(req.wait_ms));
        // Subscribe before the first look, so an event landing in between
        // still wakes us.
        let mut appended = self.deployer.journal().subscribe_events();
        loop {
            let deployer = Arc::clone(&self.deployer);
            let (model, after, limit) = (req.model.clone(), req.after, req.limit as usize);
            let (newest_first, since) = (req.newest_first, req.since_unix_ms);
            let caller = caller.clone();
            let events: Vec<pb::Event> = blocking(move || {
                let hidden = hidden_models(&deployer, &caller)?;
                let keep = |e: &crate::store::EventRecord| {
                    (model.is_empty() || e.model == model)
                        && kind.is_none_or(|k| e.kind == k)
                        && e.at_ms >= since
                        && e.layer.is_none_or(|l| caller.sees(l))
                        && !hidden.contains(&e.model)
                };
                if newest_first {
                    return Ok(deployer.journal().newest_events(after, limit, keep)?);
                }
                let only = (!model.is_empty()).then_some(model.as_str());
                let mut found: Vec<_> = deployer
                    .journal()
                    .events(after, only, 0)?
                    .into_iter()
                    .filter(|e| keep(e))
                    .collect();
                if limit > 0 {
                    found.truncate(limit);
                }
                Ok(found)
            })
            .await?
            .iter()
            .map(convert::event)
            .collect();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !events.is_empty() || remaining.is_zero() {
                return Ok(Response::new(pb::EventsResponse { events }));
            }
            match tokio::time::timeout(remaining, appended.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(Response::new(pb::EventsResponse { events })),
            }
        }
    }
}
