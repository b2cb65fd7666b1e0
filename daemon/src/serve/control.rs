//! `dsmil.v1.Control`: the operator's API. Handlers decode, hand the work to
//! the deployer on a blocking thread, and encode the answer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use dsmil_proto::control as pb;
use dsmil_proto::control::control_server::Control;
use sha2::Digest;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::deploy::{DeployError, DeploySpec, Deployer, Progress, RollbackTarget, Staged};
use crate::topology::format_id_list;

/// Facts about the running server that status reports.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub unix_socket: String,
    pub tcp_address: String,
    pub metrics_address: String,
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
}

impl ControlService {
    pub fn new(
        deployer: Arc<Deployer>,
        reloader: Arc<crate::reload::Reloader>,
        info: ServerInfo,
        health: tonic_health::server::HealthReporter,
    ) -> ControlService {
        ControlService {
            deployer,
            reloader,
            info: Arc::new(info),
            started: Instant::now(),
            health,
        }
    }
}

/// The Deploy and Quantize uploads: a DeploySpec, then the model's and the
/// declared attachments' chunks, each staged in its own temp blob.
impl ControlService {
    async fn read_spec(&self, inbound: &mut Streaming<pb::DeployRequest>) -> Result<pb::DeploySpec, Status> {
        let spec = match inbound.message().await.map_err(inbound_error)? {
            Some(pb::DeployRequest {
                part: Some(pb::deploy_request::Part::Spec(spec)),
            }) => spec,
            _ => return Err(DeployError::MissingSpec.into()),
        };
        let limit = self.deployer.config().deployment.max_model_bytes;
        if spec.size_bytes > limit {
            return Err(DeployError::TooLarge { limit_mb: limit >> 20 }.into());
        }
        Ok(spec)
    }

    async fn receive(
        &self,
        inbound: &mut Streaming<pb::DeployRequest>,
        spec: pb::DeploySpec,
    ) -> Result<(DeploySpec, Staged), Status> {
        let limit = self.deployer.config().deployment.max_model_bytes;
        let blobs = self.deployer.blobs();
        let mut model = blobs.begin_upload().await.map_err(DeployError::from)?;
        let mut weights = match &spec.weights {
            Some(_) => Some(blobs.begin_upload().await.map_err(DeployError::from)?),
            None => None,
        };
        let mut calibration = match &spec.calibration {
            Some(_) => Some(blobs.begin_upload().await.map_err(DeployError::from)?),
            None => None,
        };
        let mut validation = match &spec.validation {
            Some(_) => Some(blobs.begin_upload().await.map_err(DeployError::from)?),
            None => None,
        };
        while let Some(message) = inbound.message().await.map_err(inbound_error)? {
            use pb::deploy_request::Part;
            let (upload, chunk) = match message.part {
                Some(Part::Chunk(chunk)) => (Some(&mut model), chunk),
                Some(Part::CalibrationChunk(chunk)) => (calibration.as_mut(), chunk),
                Some(Part::ValidationChunk(chunk)) => (validation.as_mut(), chunk),
                Some(Part::WeightsChunk(chunk)) => (weights.as_mut(), chunk),
                Some(Part::Spec(_)) | None => {
                    return Err(Status::invalid_argument(
                        "only the first message may carry a DeploySpec",
                    ));
                }
            };
            let upload = upload.ok_or_else(|| {
                Status::invalid_argument(
                    "a weights, calibration or validation chunk arrived that the DeploySpec did not declare",
                )
            })?;
            if upload.size() + chunk.len() as u64 > limit {
                return Err(DeployError::TooLarge { limit_mb: limit >> 20 }.into());
            }
            upload.write(&chunk).await.map_err(DeployError::from)?;
        }
        let staged = Staged {
            model: model.finish().await.map_err(DeployError::from)?,
            weights: match weights {
                Some(u) => Some(u.finish().await.map_err(DeployError::from)?),
                None => None,
            },
            calibration: match calibration {
                Some(u) => Some(u.finish().await.map_err(DeployError::from)?),
                None => None,
            },
            validation: match validation {
                Some(u) => Some(u.finish().await.map_err(DeployError::from)?),
                None => None,
            },
        };
        let attachment = |a: Option<pb::Attachment>| a.map(|a| (a.size_bytes, a.sha256));
        let spec = DeploySpec {
            name: spec.name,
            device: spec.device,
            layer: spec.layer,
            format: spec.format,
            size_bytes: spec.size_bytes,
            sha256: spec.sha256,
            classification: spec.classification,
            note: spec.note,
            weights: attachment(spec.weights),
            calibration: attachment(spec.calibration),
            validation: attachment(spec.validation),
            method: spec.method,
            activations: spec.activations,
            allow_fp32: spec.allow_fp32,
            backend: spec.backend,
            performance_hint: spec.performance_hint,
            workers: spec.infer_requests,
            precision: spec.precision,
            max_batch: spec.max_batch,
        };
        Ok((spec, staged))
    }
}

fn inbound_error(status: Status) -> Status {
    super::status::inbound(status, super::MAX_CONTROL_MESSAGE_BYTES)
}

/// Runs blocking work (journal reads, deploys) off the tokio workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker thread failed: {e}")))?
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::DeployProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    type DeployStream = ProgressStream;

    async fn deploy(&self, request: Request<Streaming<pb::DeployRequest>>) -> Result<Response<ProgressStream>, Status> {
        let mut inbound = request.into_inner();
        let spec = self.read_spec(&mut inbound).await?;
        crate::deploy::validate_name(&spec.name)?;
        let (spec, staged) = self.receive(&mut inbound, spec).await?;

        let (tx, mut from_pipeline) = tokio::sync::mpsc::channel(16);
        let deployer = Arc::clone(&self.deployer);
        tokio::task::spawn_blocking(move || {
            let mut report = |p: Progress| {
                let _ = tx.blocking_send(Ok(pb::DeployProgress {
                    deployment_id: p.deployment_id,
                    stage: p.stage.to_string(),
                    detail: p.detail,
                    elapsed_ms: p.elapsed.as_millis() as u64,
                    done: false,
                    deployment: None,
                }));
            };
            let result = deployer.deploy(spec, staged, &mut report);
            let last = match result {
                Ok(record) => Ok(pb::DeployProgress {
                    deployment_id: record.id,
                    stage: record.state.to_string(),
                    detail: format!(
                        "{} version {} serving on device {}",
                        record.model, record.version, record.device
                    ),
                    elapsed_ms: 0,
                    done: true,
                    deployment: Some(convert::deployment(&record)),
                }),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.blocking_send(last);
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
        let model = request.into_inner().model;
        let deployer = Arc::clone(&self.deployer);
        let name = model.clone();
        let retired = blocking(move || deployer.undeploy(&name).map_err(Status::from)).await?;
        self.health
            .set_service_status(&model, tonic_health::ServingStatus::NotServing)
            .await;
        Ok(Response::new(pb::UndeployResponse {
            retired: retired.iter().map(convert::deployment).collect(),
        }))
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Result<Response<pb::RollbackResponse>, Status> {
        let req = request.into_inner();
        let target = match req.target {
            Some(pb::rollback_request::Target::Model(m)) => RollbackTarget::Model(m),
            Some(pb::rollback_request::Target::Device(d)) => RollbackTarget::Device(d),
            Some(pb::rollback_request::Target::Layer(l)) => RollbackTarget::Layer(l),
            None => {
                return Err(Status::invalid_argument(
                    "say what to roll back: a model, a device or a layer",
                ));
            }
        };
        let reason = if req.reason.is_empty() {
            "requested by operator".to_owned()
        } else {
            req.reason
        };
        let deployer = Arc::clone(&self.deployer);
        let restored = blocking(move || deployer.rollback(&target, &reason, &mut |_| {}).map_err(Status::from)).await?;
        Ok(Response::new(pb::RollbackResponse {
            restored: restored.iter().map(convert::deployment).collect(),
        }))
    }

    async fn list_models(&self, _: Request<pb::ListModelsRequest>) -> Result<Response<pb::ListModelsResponse>, Status> {
        let deployer = Arc::clone(&self.deployer);
        let models = blocking(move || {
            let journal = deployer.journal();
            let mut out = Vec::new();
            for model in journal.models()? {
                let active = deployer.registry().get(&model.name);
                let versions = journal.versions(&model.name)?;
                out.push(pb::Model {
                    name: model.name.clone(),
                    versions: versions
                        .into_iter()
                        .map(|v| pb::ModelVersion {
                            version: v.version,
                            sha256: v.sha256,
                            size_bytes: v.size_bytes,
                            classification: v.classification,
                            created_unix_ms: v.created_ms,
                            format: v.format,
                            note: v.note,
                        })
                        .collect(),
                    active_version: active.as_ref().map_or(0, |a| a.record.version),
                    device: active.as_ref().map(|a| a.record.device),
                    state: if active.is_some() {
                        "serving".into()
                    } else {
                        "not serving".into()
                    },
                });
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let model = request.into_inner().model;
        let deployer = Arc::clone(&self.deployer);
        let deployments = blocking(move || {
            Ok(deployer
                .journal()
                .deployments()?
                .iter()
                .filter(|d| model.is_empty() || d.model == model)
                .map(convert::deployment)
                .collect())
        })
        .await?;
        Ok(Response::new(pb::ListDeploymentsResponse { deployments }))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let id = request.into_inner().id;
        let deployer = Arc::clone(&self.deployer);
        let record = blocking(move || deployer.journal().deployment(id).map_err(Status::from)).await?;
        Ok(Response::new(convert::deployment(&record)))
    }

    async fn list_devices(
        &self,
        _: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let topology = &self.deployer.config().topology;
        let registry = self.deployer.registry();
        let runtimes = self.deployer.runtimes();
        let devices = topology
            .devices()
            .iter()
            .map(|d| {
                let layer = topology.layer_of(d);
                let serving = registry.on_device(d.id);
                pb::Device {
                    id: d.id,
                    layer: u32::from(d.layer),
                    layer_name: layer.name.clone(),
                    target: d.target.map(|t| t.to_string()).unwrap_or_default(),
                    effective_target: d
                        .target
                        .map(|t| runtimes.effective_target(t).to_string())
                        .unwrap_or_default(),
                    role: d.role.clone().unwrap_or_default(),
                    reserved: layer.reserved,
                    model: serving.as_ref().map(|m| m.record.model.clone()).unwrap_or_default(),
                    version: serving.as_ref().map_or(0, |m| m.record.version),
                    state: serving
                        .as_ref()
                        .map_or_else(String::new, |m| m.record.state.to_string()),
                    deployment_id: serving.as_ref().map_or(0, |m| m.record.id),
                    estimated_bytes: serving.as_ref().map_or(0, |m| m.record.estimated_bytes),
                    measured_bytes: serving.as_ref().map_or(0, |m| m.record.measured_bytes),
                }
            })
            .collect();
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    async fn list_layers(&self, _: Request<pb::ListLayersRequest>) -> Result<Response<pb::ListLayersResponse>, Status> {
        let topology = &self.deployer.config().topology;
        let serving = self.deployer.registry().all();
        let layers = topology
            .layers()
            .iter()
            .map(|l| {
                let here: Vec<_> = serving.iter().filter(|m| m.record.layer == l.id).collect();
                pb::Layer {
                    id: u32::from(l.id),
                    name: l.name.clone(),
                    devices: format_id_list(&l.devices),
                    budget_gb: l.budget_gb.unwrap_or(0.0),
                    budget_bytes: l.budget_bytes.unwrap_or(0),
                    default_target: l.target.map(|t| t.to_string()).unwrap_or_default(),
                    reserved: l.reserved,
                    active_deployments: here.len() as u32,
                    estimated_bytes: here.iter().map(|m| m.record.estimated_bytes).sum(),
                    measured_bytes: here.iter().map(|m| m.record.measured_bytes).sum(),
                }
            })
            .collect();
        Ok(Response::new(pb::ListLayersResponse { layers }))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let deployer = &self.deployer;
        let serving = deployer.registry().all();
        let runtimes = deployer.runtimes().status();
        let mut warnings: Vec<String> = runtimes
            .iter()
            .filter(|r| !r.available)
            .map(|r| format!("{} unavailable: {}", r.name, r.detail))
            .collect();
        for m in &serving {
            if m.record.target != m.record.effective_target {
                warnings.push(format!(
                    "{} v{} on device {} wants {} (absent on this host); running on {}",
                    m.record.model, m.record.version, m.record.device, m.record.target, m.record.effective_target
                ));
            }
        }
        if let Some(why) = deployer.registry().not_ready_reason() {
            warnings.push(format!("not ready: {why}"));
        }
        Ok(Response::new(pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ready: deployer.registry().is_ready(),
            uptime_seconds: self.started.elapsed().as_secs(),
            active_deployments: serving.len() as u32,
            runtimes: runtimes
                .into_iter()
                .map(|r| pb::Runtime {
                    name: r.name.to_owned(),
                    available: r.available,
                    detail: r.detail,
                })
                .collect(),
            unix_socket: self.info.unix_socket.clone(),
            tcp_address: self.info.tcp_address.clone(),
            metrics_address: self.info.metrics_address.clone(),
            warnings,
            rss_bytes: crate::monitor::process::rss_bytes(),
            openvino_devices: deployer
                .runtimes()
                .openvino()
                .map(|ov| ov.devices())
                .unwrap_or_default()
                .iter()
                .map(|d| pb::AcceleratorDevice {
                    name: d.name.clone(),
                    full_name: d.full_name.clone(),
                    properties: d.properties.iter().cloned().collect(),
                })
                .collect(),
            state_dir: self.info.state_dir.clone(),
        }))
    }

    async fn report(&self, request: Request<pb::ReportRequest>) -> Result<Response<pb::QuantizationReport>, Status> {
        let req = request.into_inner();
        let deployer = Arc::clone(&self.deployer);
        let report = blocking(move || {
            let journal = deployer.journal();
            let version = match req.version {
                0 => match deployer.registry().get(&req.model) {
                    Some(serving) => serving.record.version,
                    None => journal
                        .versions(&req.model)?
                        .last()
                        .map(|v| v.version)
                        .ok_or_else(|| Status::not_found(format!("model {:?} has no versions", req.model)))?,
                },
                v => v,
            };
            let report = journal.report(&req.model, version)?.ok_or_else(|| {
                Status::not_found(format!(
                    "{} version {version} has no quantization report (it was uploaded already INT8, or served FP32 \
                     with --allow-fp32)",
                    req.model
                ))
            })?;
            Ok(convert::report(&req.model, version, report))
        })
        .await?;
        Ok(Response::new(report))
    }

    async fn reload(&self, _: Request<pb::ReloadRequest>) -> Result<Response<pb::ReloadResponse>, Status> {
        let reloader = Arc::clone(&self.reloader);
        let outcome = blocking(move || reloader.reload("dsmilctl reload").map_err(Status::from)).await?;
        Ok(Response::new(pb::ReloadResponse {
            changes: outcome.changes,
            warnings: outcome.warnings,
        }))
    }

    async fn top(&self, _: Request<pb::TopRequest>) -> Result<Response<pb::TopResponse>, Status> {
        let span = crate::monitor::sampler::LIVE_SPAN;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let deployments = self
            .deployer
            .registry()
            .all()
            .iter()
            .map(|m| {
                let live = m.recent.summary(span);
                let stats = m.stats.snapshot();
                pb::DeploymentLoad {
                    model: m.record.model.clone(),
                    version: m.record.version,
                    device: m.record.device,
                    layer: u32::from(m.record.layer),
                    backend: m.record.backend.clone(),
                    p50_ms: ms(live.p50),
                    p95_ms: ms(live.p95),
                    p99_ms: ms(live.p99),
                    requests_per_second: live.per_second,
                    recent_requests: live.samples as u64,
                    successes: stats.success_count,
                    failures: stats.fail_count,
                    measured_bytes: m.record.measured_bytes,
                    estimated_bytes: m.record.estimated_bytes,
                    latency_alert: m.latency_alert.load(std::sync::atomic::Ordering::Relaxed),
                }
            })
            .collect();
        Ok(Response::new(pb::TopResponse {
            deployments,
            rss_bytes: crate::monitor::process::rss_bytes(),
            span_seconds: span.as_secs() as u32,
        }))
    }

    async fn drift(&self, request: Request<pb::DriftRequest>) -> Result<Response<pb::DriftResponse>, Status> {
        let wanted = request.into_inner().model;
        let deployer = Arc::clone(&self.deployer);
        let models = blocking(move || {
            let serving = deployer.registry().all();
            if !wanted.is_empty() && !serving.iter().any(|m| m.record.model == wanted) {
                return Err(Status::not_found(format!("model {wanted:?} is not serving")));
            }
            let threshold = deployer.config().monitoring.drift_detection_threshold_percent / 100.0;
            Ok(serving
                .iter()
                .filter(|m| wanted.is_empty() || m.record.model == wanted)
                .map(|m| {
                    let (r, accuracy_drop) = crate::monitor::sampler::check_drift(&deployer, m);
                    let (shadow_rows, shadow_agreed) = m.shadow.as_ref().map_or((0, 0), |s| s.agreement());
                    pb::ModelDrift {
                        model: m.record.model.clone(),
                        version: m.record.version,
                        classifier: r.classifier,
                        baseline_rows: r.baseline_rows as u64,
                        live_rows: r.live_rows as u64,
                        score: r.score(),
                        bins: r.bins,
                        baseline_share: r.baseline_share,
                        live_share: r.live_share,
                        psi: r.psi,
                        baseline_confidence: r.baseline_confidence,
                        live_confidence: r.live_confidence,
                        confidence_change: r.confidence_change,
                        reported: r.reported,
                        live_accuracy: r.live_accuracy,
                        accuracy_drop,
                        alert: m.drift_alert.load(std::sync::atomic::Ordering::Relaxed),
                        ready: r.ready,
                        threshold,
                        shadow_rows,
                        shadow_agreed,
                    }
                })
                .collect())
        })
        .await?;
        Ok(Response::new(pb::DriftResponse { models }))
    }

    async fn report_outcome(
        &self,
        request: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let req = request.into_inner();
        let model = self
            .deployer
            .registry()
            .get(&req.model)
            .ok_or_else(|| Status::not_found(format!("model {:?} is not serving", req.model)))?;
        model.drift.report_outcome(req.predicted == req.actual);
        let r = model.drift.report();
        Ok(Response::new(pb::ReportOutcomeResponse {
            reported: r.reported,
            live_accuracy: r.live_accuracy.unwrap_or_default(),
        }))
    }

    type QuantizeStream = Pin<Box<dyn Stream<Item = Result<pb::QuantizeResponse, Status>> + Send>>;

    async fn quantize(
        &self,
        request: Request<Streaming<pb::DeployRequest>>,
    ) -> Result<Response<Self::QuantizeStream>, Status> {
        use pb::quantize_response::Part;
        let mut inbound = request.into_inner();
        let spec = self.read_spec(&mut inbound).await?;
        let (spec, staged) = self.receive(&mut inbound, spec).await?;
        let deployer = Arc::clone(&self.deployer);
        let (model, result) = blocking(move || {
            staged.check(&spec)?;
            let config = deployer.config();
            let options = crate::compress::Options::resolve(&config.quantization, &spec.method, &spec.activations)?;
            // Quantization calibrates and gates on the CPU runtime.
            let backend = deployer
                .runtimes()
                .backend_for(crate::topology::Target::Cpu)
                .map_err(DeployError::from)?;
            let quantized = crate::compress::offline::quantize_files(
                &*backend,
                staged.model.path(),
                staged.calibration.as_ref().map(|b| b.path()),
                staged.validation.as_ref().map(|b| b.path()),
                &options,
            )?;
            let result = pb::QuantizeResult {
                size_bytes: quantized.model.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(&quantized.model)),
                report: Some(convert::report(&spec.name, 0, quantized.report)),
            };
            Ok((quantized.model, result))
        })
        .await?;
        let mut parts = vec![Ok(pb::QuantizeResponse {
            part: Some(Part::Result(result)),
        })];
        parts.extend(model.chunks(1 << 20).map(|c| {
            Ok(pb::QuantizeResponse {
                part: Some(Part::Chunk(c.to_vec())),
            })
        }));
        Ok(Response::new(
            Box::pin(tokio_stream::iter(parts)) as Self::QuantizeStream
        ))
    }

    async fn events(&self, request: Request<pb::EventsRequest>) -> Result<Response<pb::EventsResponse>, Status> {
        let req = request.into_inner();
        let deadline = Instant::now() + std::time::Duration::from_millis(u64::from(req.wait_ms));
        // Subscribe before the first look, so an event landing in between
        // still wakes us.
        let mut appended = self.deployer.journal().subscribe_events();
        loop {
            let deployer = Arc::clone(&self.deployer);
            let (model, kind, after, limit) = (req.model.clone(), req.kind.clone(), req.after, req.limit as usize);
            let events: Vec<pb::Event> = blocking(move || {
                let model = (!model.is_empty()).then_some(model.as_str());
                let mut found: Vec<pb::Event> = deployer
                    .journal()
                    .events(after, model, 0)?
                    .iter()
                    .filter(|e| kind.is_empty() || e.kind == kind)
                    .map(convert::event)
                    .collect();
                if limit > 0 {
                    found.truncate(limit);
                }
                Ok(found)
            })
            .await?;
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
