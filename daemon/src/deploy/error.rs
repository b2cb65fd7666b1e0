//! Why a deploy, undeploy or restore was refused. Each variant says what went
//! wrong and, where there is one, what to do; the gRPC code for each is chosen
//! in one place, `serve::status`.

use crate::backend::{BackendError, PoolError};
use crate::model::ModelError;
use crate::store::StoreError;
use crate::topology::TopologyError;

use super::DeployState;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("model name {0:?} is invalid: use 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit")]
    InvalidName(String),
    #[error("the upload did not start with a DeploySpec message")]
    MissingSpec,
    #[error("the upload is larger than deployment.max_model_size_mb ({limit_mb} MiB)")]
    TooLarge { limit_mb: u64 },
    #[error("upload size mismatch: the spec declared {declared} bytes, {received} arrived")]
    SizeMismatch { declared: u64, received: u64 },
    #[error("upload checksum mismatch: the spec declared sha256 {declared}, the bytes hash to {actual}")]
    ChecksumMismatch { declared: String, actual: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("device {device} is in layer {actual}, not layer {requested}")]
    DeviceNotInLayer { device: u32, actual: u8, requested: u32 },
    #[error("device {device} is serving model {model:?}; undeploy it or choose another device")]
    DeviceBusy { device: u32, model: String },
    #[error(
        "{scope} cannot take this deployment: it needs {} ({when}), {} of {} is in use",
        super::admission::human(*need), super::admission::human(*used), super::admission::human(*limit)
    )]
    OverBudget {
        scope: String,
        when: &'static str,
        need: u64,
        used: u64,
        limit: u64,
    },
    #[error("no layer can take this deployment: {}", reasons.join("; "))]
    NoPlacement { reasons: Vec<String> },
    #[error("no free device in {scope}; undeploy a model there or choose another layer")]
    NoFreeDevice { scope: String },
    #[error(
        "model has {parameters} parameters; layer {layer} ({name}) accepts at most {limit} (layers.max_parameters)"
    )]
    TooManyParameters {
        parameters: u64,
        layer: u8,
        name: String,
        limit: u64,
    },
    #[error("dry run failed: {0}")]
    DryRun(String),
    #[error("{stage} failed: {detail}")]
    StageFailed { stage: DeployState, detail: String },
    #[error("no model serves on device {0}")]
    NothingOnDevice(u32),
    #[error("no model serves in layer {0}")]
    NothingInLayer(u8),
    #[error("model {model:?} has no earlier version that ever served (serving: version {serving})")]
    NoEarlierVersion { model: String, serving: u32 },
    #[error("model {0:?} has no active deployment")]
    NotDeployed(String),
    #[error(
        "model {0:?} is FP32 and dsmil serves INT8: give calibration data (dsmilctl deploy --calib calib.npz \
         [--val val.npz], arrays keyed by input name), or serve it as FP32 explicitly with --allow-fp32 (audited)"
    )]
    NeedsCalibration(String),
    #[error(
        "model {0:?} is FP32: dynamic quantization needs data for the accuracy gate (dsmilctl deploy --method \
         dynamic --val val.npz), or serve it as FP32 explicitly with --allow-fp32 (audited)"
    )]
    NeedsValidation(String),
    #[error(
        "{0}: it is FP32 in practice, so it needs --allow-fp32 like any FP32 deploy (audited), or a method that \
         quantizes its weights (--method dynamic reaches only MatMul; none reaches weights inside control flow)"
    )]
    MostlyFp32(crate::compress::MostlyFp32),
    #[error(
        "an OpenVINO IR upload is the .xml and its .bin: the .bin is missing (dsmilctl deploy model.xml --weights model.bin)"
    )]
    IrWithoutWeights,
    #[error(
        "a {0} model is FP32 as far as dsmil can tell, and dsmil quantizes ONNX models only: upload an INT8 model \
         (for IR: with FakeQuantize layers, e.g. from OpenVINO's NNCF), the ONNX original with --calib, or serve it \
         as FP32 explicitly with --allow-fp32 (audited)"
    )]
    CannotQuantize(crate::model::Format),
    #[error(
        "a {format} model runs only on OpenVINO, and this device would serve it with {backend}: deploy with \
         --backend openvino (or onto an npu/gpu device)"
    )]
    NeedsOpenVino {
        format: crate::model::Format,
        backend: &'static str,
    },
    #[error("inference precision {0:?}: expected f32, bf16 or f16")]
    UnknownPrecision(String),
    #[error("{0} infer requests: at most 64 per deployment")]
    TooManyWorkers(u32),
    #[error("max batch {0}: at most {max} (0 = serving.max_batch_size)", max = crate::config::MAX_BATCH_SIZE)]
    MaxBatch(u64),
    #[error("performance hint {0:?}: expected latency or throughput")]
    UnknownHint(String),
    /// A quantization option (method, activations) no quantizer has.
    #[error("{0}")]
    InvalidOption(String),
    #[error("backend {0:?}: expected onnxruntime or openvino")]
    UnknownBackend(String),
    #[error("{0:?} was declared in the DeploySpec but not uploaded")]
    MissingAttachment(&'static str),
    /// A missing or bad signature ([`super::signature`]).
    #[error(transparent)]
    Signature(#[from] super::signature::SignatureError),
    #[error("quantizing")]
    Quantization(#[from] crate::compress::CompressError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("starting inference threads: {0}")]
    Threads(std::io::Error),
}

impl DeployError {
    /// The message and its causes, ": "-separated, each said once: what the
    /// client is told and what the journal keeps, so a deploy from models.d
    /// or a script leaves the same reason the CLI would have printed.
    pub fn reason(&self) -> String {
        chain(self)
    }

    pub(crate) fn stage(stage: DeployState, err: impl std::fmt::Display) -> DeployError {
        DeployError::StageFailed {
            stage,
            detail: err.to_string(),
        }
    }
}

impl From<PoolError> for DeployError {
    fn from(e: PoolError) -> DeployError {
        match e {
            PoolError::Backend(b) => DeployError::Backend(b),
            other => DeployError::StageFailed {
                stage: DeployState::HealthChecking,
                detail: other.to_string(),
            },
        }
    }
}

/// An error and its causes, ": "-separated, each said once (a message that
/// already quotes its cause does not repeat it). The one rendering of an
/// error chain: the journal's reasons and the gRPC messages use it.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
