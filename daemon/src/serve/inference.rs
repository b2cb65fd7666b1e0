//! `inference.GRPCInferenceService`: the KServe v2 RPCs plus Triton's
//! ModelConfig, ModelStatistics, ModelStreamInfer (through the same
//! inference path as ModelInfer), RepositoryIndex and LogSettings (read-only;
//! [`triton`] holds their pure parts); Triton's other RPCs answer with what to
//! use instead. Handlers decode, call the registry and the
//! pool, record the request's metrics and encode. They never run a model
//! themselves, and never judge a new version: each answer is handed to
//! `Registry::record_outcome`, which judges probation and raises alarms.
//!
//! Every handler asks the [`Gate`] first: a known principal to connect at
//! all, then client role and the model's layer as clearance to infer (the
//! model reads need viewer and the clearance).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsmil_proto::inference as pb;
use dsmil_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::InferError;
use super::convert;
use super::gate::Gate;
use super::status::{code_label, infer_code};
use super::triton::{self, Unsupported};
use crate::access::{Action, Caller};
use crate::backend::DataType;
use crate::deploy::{ActiveModel, Registry};
use crate::monitor::{self, DeploymentLabels};

pub const SERVER_NAME: &str = "dsmild";

#[derive(Clone)]
pub struct InferenceService {
    registry: Arc<Registry>,
    gate: Gate,
}

impl InferenceService {
    pub fn new(registry: Arc<Registry>, gate: Gate) -> InferenceService {
        InferenceService { registry, gate }
    }

    /// The caller, if it is a known principal at all.
    async fn connect<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let caller = self.gate.caller(request);
        self.gate.check(&caller, Action::Connect).await?;
        Ok(caller)
    }

    /// `resolve`, then the caller's clearance for the model's layer.
    async fn resolve_for(&self, caller: &Caller, name: &str, version: &str) -> Result<Arc<ActiveModel>, Status> {
        let model = self.resolve(name, version)?;
        let layer = model.record.layer;
        self.gate
            .check(caller, Action::ReadModel { model: name, layer })
            .await?;
        Ok(model)
    }

    fn resolve(&self, name: &str, version: &str) -> Result<Arc<ActiveModel>, InferError> {
        let model = self
            .registry
            .get(name)
            .ok_or_else(|| InferError::ModelNotFound(name.to_owned()))?;
        if !version.is_empty() && version != model.record.version.to_string() {
            return Err(InferError::VersionNotFound {
                model: name.to_owned(),
                asked: version.to_owned(),
                serving: model.record.version,
            });
        }
        Ok(model)
    }

    async fn infer(
        &self,
        model: &Arc<ActiveModel>,
        req: &mut pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::ModelInferResponse, InferError> {
        let started = Instant::now();
        let inputs = convert::request_inputs(&model.record.model, req, &model.signature, model.limits)?;
        // Rows, as Triton counts inferences: the batch dimension, or one.
        let items = inputs
            .first()
            .filter(|_| model.signature.is_batched())
            .and_then(|t| t.shape.first())
            .map_or(1, |&d| d.max(1) as u64);
        // A sampled request is kept for the shadow check (after the answer).
        let shadow_inputs = model.shadow.as_ref().filter(|s| s.sample()).map(|_| inputs.clone());
        let answer = model.pool.submit(inputs, deadline)?;
        let outcome = match answer.await {
            Ok(result) => result?,
            Err(_) => {
                return Err(InferError::Pool(crate::backend::PoolError::Closed {
                    model: req.model_name.clone(),
                }));
            }
        };
        model.drift.observe(&outcome.outputs);
        if let (Some(shadow), Some(inputs)) = (&model.shadow, shadow_inputs) {
            let int8 = crate::monitor::shadow::top1(&outcome.outputs);
            // A full shadow queue skips the check rather than delay anyone.
            if let Ok(reference) = shadow.pool.submit(inputs, None) {
                let model = Arc::clone(model);
                tokio::spawn(async move {
                    if let Ok(Ok(fp32)) = reference.await
                        && let Some(shadow) = &model.shadow
                    {
                        shadow.record(&int8, &fp32.outputs);
                    }
                });
            }
        }
        let requested: Vec<String> = req.outputs.iter().map(|o| o.name.clone()).collect();
        let outputs = convert::select_outputs(&req.model_name, &requested, &model.signature, outcome.outputs)?;
        let (outputs, raw) = convert::response_outputs(outputs);
        model
            .stats
            .record_success(started.elapsed(), outcome.queued, outcome.compute, items);
        model.metrics.record_stages(outcome.queued, outcome.compute);
        model.metrics.record_inferences(items, model.pool.executions());
        Ok(pb::ModelInferResponse {
            model_name: model.record.model.clone(),
            model_version: model.record.version.to_string(),
            id: req.id.clone(),
            outputs,
            raw_output_contents: raw,
            ..Default::default()
        })
    }

    /// One inference, after the caller is known: resolve the model, the
    /// caller's clearance to infer on it, the caller's in-flight limit, run,
    /// record metrics and the outcome. ModelInfer and every request of
    /// ModelStreamInfer go through here.
    async fn infer_request(
        &self,
        caller: &Caller,
        mut req: pb::ModelInferRequest,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<pb::ModelInferResponse, Status> {
        let model = match self.resolve(&req.model_name, &req.model_version) {
            Ok(model) => model,
            Err(e) => {
                // Counted without the name: a label per name a client
                // invents would let clients grow the metrics without bound.
                monitor::record_request(
                    &DeploymentLabels::unknown(),
                    code_label(infer_code(&e)),
                    started.elapsed(),
                );
                return Err(e.into());
            }
        };
        self.gate
            .check(
                caller,
                Action::Infer {
                    model: &req.model_name,
                    layer: model.record.layer,
                },
            )
            .await?;
        let _share = self.gate.admit_inference(caller)?;
        let in_flight = model.metrics.start();
        let result = self.infer(&model, &mut req, deadline).await;
        drop(in_flight);
        let elapsed = started.elapsed();
        let code = result.as_ref().map_or_else(infer_code, |_| tonic::Code::Ok);
        model.metrics.record(code_label(code), elapsed);
        match &result {
            Ok(_) => model.recent.record(elapsed),
            Err(_) => model.stats.record_failure(elapsed),
        }
        // Only the server's own failures count against a new version.
        let server_error = result.as_ref().err().filter(|_| code == tonic::Code::Internal);
        self.registry
            .record_outcome(&model, elapsed, server_error.map(|e| e as &dyn std::fmt::Display));
        result.map_err(Status::from)
    }

    /// A Triton RPC dsmild does not serve: the caller must be known; the
    /// answer names what to use instead.
    async fn unsupported<T, R>(
        &self,
        request: &Request<T>,
        rpc: &'static str,
        instead: &'static str,
    ) -> Result<Response<R>, Status> {
        self.connect(request).await?;
        Err(Unsupported::Rpc { rpc, instead }.into())
    }
}

/// The `grpc-timeout` header as an absolute deadline ("100m" = 100 ms).
fn deadline_of<T>(req: &Request<T>) -> Option<Instant> {
    let value = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Some(Instant::now() + timeout)
}

fn tensor_metadata(spec: &crate::backend::TensorSpec) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.dtype.kserve_name().to_owned(),
        shape: spec.shape.clone(),
    }
}

fn triton_type(dtype: DataType) -> pb::DataType {
    match dtype {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::U8 => pb::DataType::TypeUint8,
        DataType::U16 => pb::DataType::TypeUint16,
        DataType::U32 => pb::DataType::TypeUint32,
        DataType::U64 => pb::DataType::TypeUint64,
        DataType::I8 => pb::DataType::TypeInt8,
        DataType::I16 => pb::DataType::TypeInt16,
        DataType::I32 => pb::DataType::TypeInt32,
        DataType::I64 => pb::DataType::TypeInt64,
        DataType::F16 => pb::DataType::TypeFp16,
        DataType::BF16 => pb::DataType::TypeBf16,
        DataType::F32 => pb::DataType::TypeFp32,
        DataType::F64 => pb::DataType::TypeFp64,
    }
}

fn duration(count: u64, ns: u64) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration { count, ns })
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        request: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        self.connect(&request).await?;
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        request: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        self.connect(&request).await?;
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.registry.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let caller = self.connect(&request).await?;
        let req = request.into_inner();
        // Not deployed is "not ready"; deployed above the caller's clearance
        // is a denial, like every other read of the model.
        let ready = match self.resolve(&req.name, &req.version) {
            Ok(model) => {
                let layer = model.record.layer;
                self.gate
                    .check(
                        &caller,
                        Action::ReadModel {
                            model: &req.name,
                            layer,
                        },
                    )
                    .await?;
                model.healthy.load(std::sync::atomic::Ordering::Acquire)
            }
            Err(_) => false,
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        self.connect(&request).await?;
        Ok(Response::new(pb::ServerMetadataResponse {
            name: SERVER_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: vec!["model_configuration".into(), "statistics".into()],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let caller = self.connect(&request).await?;
        let req = request.into_inner();
        let model = self.resolve_for(&caller, &req.name, &req.version).await?;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: model.record.model.clone(),
            versions: vec![model.record.version.to_string()],
            platform: format!("{}_onnx", model.record.backend),
            inputs: model.signature.inputs.iter().map(tensor_metadata).collect(),
            outputs: model.signature.outputs.iter().map(tensor_metadata).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let started = Instant::now();
        let deadline = deadline_of(&request);
        let caller = self.connect(&request).await?;
        self.infer_request(&caller, request.into_inner(), started, deadline)
            .await
            .map(Response::new)
    }

    type ModelStreamInferStream =
        Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send + 'static>>;

    /// Triton's streaming inference: each request on the stream is one
    /// ModelInfer (same checks, limits, metrics and code path), answered in
    /// the order the requests came with the request's id. A request that
    /// fails is answered with its error_message, as Triton does, and the
    /// stream goes on; only a broken stream (a message that does not decode,
    /// or over the size limit) ends it. The stream's grpc-timeout is every
    /// request's deadline. One request runs at a time per stream: a client
    /// wanting more in flight opens more streams, each within its caller's
    /// access.max_concurrent_inferences.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let deadline = deadline_of(&request);
        let caller = self.connect(&request).await?;
        let service = self.clone();
        let answers = request.into_inner().then(move |next| {
            let service = service.clone();
            let caller = caller.clone();
            async move {
                let req = next?;
                let started = Instant::now();
                let (id, model_name, model_version) =
                    (req.id.clone(), req.model_name.clone(), req.model_version.clone());
                Ok(match service.infer_request(&caller, req, started, deadline).await {
                    Ok(response) => pb::ModelStreamInferResponse {
                        error_message: String::new(),
                        infer_response: Some(response),
                    },
                    Err(status) => pb::ModelStreamInferResponse {
                        error_message: status.message().to_owned(),
                        infer_response: Some(pb::ModelInferResponse {
                            model_name,
                            model_version,
                            id,
                            ..Default::default()
                        }),
                    },
                })
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let caller = self.connect(&request).await?;
        let req = request.into_inner();
        // One unnamed repository: repository_name is not checked. Models
        // above the caller's clearance are left out, as in every list.
        let mut models: Vec<_> = self
            .registry
            .all()
            .iter()
            .filter(|m| caller.sees(m.record.layer))
            .map(|m| triton::index_entry(m))
            .filter(|entry| !req.ready || entry.state == triton::READY)
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        self.connect(&request).await?;
        let model = request.into_inner().model_name;
        Err(Unsupported::RepositoryLoad { model }.into())
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        self.connect(&request).await?;
        let model = request.into_inner().model_name;
        Err(Unsupported::RepositoryUnload { model }.into())
    }

    async fn log_settings(
        &self,
        request: Request<pb::LogSettingsRequest>,
    ) -> Result<Response<pb::LogSettingsResponse>, Status> {
        self.connect(&request).await?;
        let req = request.into_inner();
        if !req.settings.is_empty() {
            let keys = triton::update_keys(&req);
            return Err(Unsupported::LogSettingsUpdate { keys }.into());
        }
        Ok(Response::new(pb::LogSettingsResponse {
            settings: triton::log_settings(),
        }))
    }

    async fn trace_setting(
        &self,
        request: Request<pb::TraceSettingRequest>,
    ) -> Result<Response<pb::TraceSettingResponse>, Status> {
        self.unsupported(&request, "TraceSetting", triton::TRACE_INSTEAD).await
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<pb::SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryStatusResponse>, Status> {
        self.unsupported(&request, "SystemSharedMemoryStatus", triton::SHARED_MEMORY_INSTEAD)
            .await
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<pb::SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryRegisterResponse>, Status> {
        self.unsupported(&request, "SystemSharedMemoryRegister", triton::SHARED_MEMORY_INSTEAD)
            .await
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<pb::SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryUnregisterResponse>, Status> {
        self.unsupported(&request, "SystemSharedMemoryUnregister", triton::SHARED_MEMORY_INSTEAD)
            .await
    }

    async fn cuda_shared_memory_status(
        &self,
        request: Request<pb::CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryStatusResponse>, Status> {
        self.unsupported(&request, "CudaSharedMemoryStatus", triton::SHARED_MEMORY_INSTEAD)
            .await
    }

    async fn cuda_shared_memory_register(
        &self,
        request: Request<pb::CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryRegisterResponse>, Status> {
        self.unsupported(&request, "CudaSharedMemoryRegister", triton::SHARED_MEMORY_INSTEAD)
            .await
    }

    async fn cuda_shared_memory_unregister(
        &self,
        request: Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryUnregisterResponse>, Status> {
        self.unsupported(&request, "CudaSharedMemoryUnregister", triton::SHARED_MEMORY_INSTEAD)
            .await
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let caller = self.connect(&request).await?;
        let req = request.into_inner();
        let model = self.resolve_for(&caller, &req.name, &req.version).await?;
        let sig = &model.signature;
        // Triton's convention: the batch dimension is left out of dims.
        let batched = sig.is_batched();
        let dims = |shape: &[i64]| -> Vec<i64> { if batched { shape[1..].to_vec() } else { shape.to_vec() } };
        let config = pb::ModelConfig {
            name: model.record.model.clone(),
            platform: "onnxruntime_onnx".into(),
            backend: model.record.backend.to_string(),
            // The limit request_inputs enforces, so clients batch up to it.
            max_batch_size: if batched {
                i32::try_from(model.limits.max_batch).unwrap_or(i32::MAX)
            } else {
                0
            },
            input: sig
                .inputs
                .iter()
                .map(|s| pb::ModelInput {
                    name: s.name.clone(),
                    data_type: triton_type(s.dtype) as i32,
                    dims: dims(&s.shape),
                    ..Default::default()
                })
                .collect(),
            output: sig
                .outputs
                .iter()
                .map(|s| pb::ModelOutput {
                    name: s.name.clone(),
                    data_type: triton_type(s.dtype) as i32,
                    dims: dims(&s.shape),
                    ..Default::default()
                })
                .collect(),
            instance_group: vec![pb::ModelInstanceGroup {
                name: format!("{}-workers", model.record.model),
                count: i32::try_from(model.pool.instances()).unwrap_or(i32::MAX),
                kind: pb::model_instance_group::Kind::Cpu as i32,
            }],
            dynamic_batching: model.pool.batching().map(|b| pb::ModelDynamicBatching {
                preferred_batch_size: b
                    .preferred
                    .iter()
                    .map(|&n| i32::try_from(n).unwrap_or(i32::MAX))
                    .collect(),
                max_queue_delay_microseconds: b.delay.as_micros() as u64,
            }),
        };
        Ok(Response::new(pb::ModelConfigResponse { config: Some(config) }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let caller = self.connect(&request).await?;
        let req = request.into_inner();
        let models = if req.name.is_empty() {
            let mut all = self.registry.all();
            all.retain(|m| caller.sees(m.record.layer));
            all
        } else {
            vec![self.resolve_for(&caller, &req.name, &req.version).await?]
        };
        let model_stats = models
            .iter()
            .map(|m| {
                let s = m.stats.snapshot();
                pb::ModelStatistics {
                    name: m.record.model.clone(),
                    version: m.record.version.to_string(),
                    last_inference: s.last_inference_ms,
                    inference_count: s.inference_count,
                    // The pool's count, as dsmil_inference_exec_count_total.
                    execution_count: m.pool.executions(),
                    inference_stats: Some(pb::InferStatistics {
                        success: duration(s.success_count, s.success_ns),
                        fail: duration(s.fail_count, s.fail_ns),
                        queue: duration(s.success_count, s.queue_ns),
                        compute_input: duration(s.success_count, 0),
                        compute_infer: duration(s.success_count, s.compute_ns),
                        compute_output: duration(s.success_count, 0),
                        cache_hit: duration(0, 0),
                        cache_miss: duration(0, 0),
                    }),
                    ..Default::default()
                }
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }
}
