//! Why a request was refused at the serving layer: [`InferError`] for
//! inference, [`ControlError`] for the operator's API. Request-shape errors
//! name the tensor and what was expected, so a client author can fix the
//! call from the message alone. No gRPC code is chosen here (`status` does).

use crate::backend::PoolError;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("model {0:?} is not deployed")]
    ModelNotFound(String),
    #[error("model {model:?} has no version {asked} serving (serving: {serving})")]
    VersionNotFound { model: String, asked: String, serving: u32 },
    #[error("the server is not ready yet (restoring deployments)")]
    NotReady,
    #[error("input {name:?} is not an input of {model} (inputs: {expected})")]
    UnknownInput {
        model: String,
        name: String,
        expected: String,
    },
    #[error("input {0:?} is given twice")]
    DuplicateInput(String),
    #[error("input(s) {missing} missing (the model needs {expected})")]
    MissingInput { missing: String, expected: String },
    #[error("input {name:?}: datatype {got:?} given, the model expects {expected}")]
    Datatype {
        name: String,
        got: String,
        expected: String,
    },
    #[error("input {name:?}: shape {got} does not fit the model's {expected} (? = any size)")]
    Shape {
        name: String,
        got: String,
        expected: String,
    },
    #[error("input {name:?}: {got} bytes of data, but shape {shape} of {dtype} needs {expected}")]
    ByteSize {
        name: String,
        got: usize,
        expected: usize,
        shape: String,
        dtype: String,
    },
    #[error("input {name:?}: {got} values in contents, but shape {shape} needs {expected}")]
    ElementCount {
        name: String,
        got: usize,
        expected: usize,
        shape: String,
    },
    #[error("input {name:?}: {detail}")]
    Contents { name: String, detail: String },
    #[error("input {name:?}: shape {shape} of {dtype} is larger than this machine can address")]
    Overflow { name: String, shape: String, dtype: String },
    #[error("the request's inputs take {bytes} bytes; the limit is {limit} (serving.max_request_bytes)")]
    TooLarge { bytes: usize, limit: usize },
    #[error("input {name:?}: a batch of {rows} rows; this deployment takes at most {max} (its max batch)")]
    BatchTooLarge { name: String, rows: i64, max: u64 },
    #[error(
        "input {name:?} has {rows} rows but input {other:?} has {other_rows}; a batch's inputs share their first dimension"
    )]
    BatchMismatch {
        name: String,
        rows: i64,
        other: String,
        other_rows: i64,
    },
    #[error("raw_input_contents has {raw} entries for {inputs} inputs; send one per input, or none")]
    RawCount { raw: usize, inputs: usize },
    #[error("input {0:?} has typed contents while raw_input_contents is used; use one or the other")]
    MixedContents(String),
    #[error("requested output {name:?} is not an output of {model} (outputs: {expected})")]
    UnknownOutput {
        model: String,
        name: String,
        expected: String,
    },
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// Why a `dsmil.v1.Control` request was refused, beyond what the deployer
/// itself refuses: the upload stream's own faults and queries about
/// something that is not there.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The client stream failed (a transport or decode error); its status
    /// gets this daemon's code in `status`.
    #[error(transparent)]
    Stream(tonic::Status),
    #[error("only the first message may carry a DeploySpec")]
    SpecNotFirst,
    #[error("a weights, calibration or validation chunk arrived that the DeploySpec did not declare")]
    UndeclaredChunk,
    #[error("say what to roll back: a model, a device or a layer")]
    NoRollbackTarget,
    #[error("model {0:?} has no versions")]
    NoVersions(String),
    #[error(
        "{model} version {version} has no quantization report (it was uploaded already INT8, or served FP32 with \
         --allow-fp32)"
    )]
    NoReport { model: String, version: u32 },
    #[error("model {0:?} is not serving")]
    NotServing(String),
    #[error("model {model:?} has no version {version} (its versions: {versions})")]
    NoSuchVersion {
        model: String,
        version: u32,
        versions: String,
    },
    /// A version whose deploy failed or has not got that far: `why` says
    /// which (the failure's reason, or the stage it is at).
    #[error("{model} version {version} has no quantization report: {why}")]
    ReportMissing { model: String, version: u32, why: String },
    #[error("unknown event kind {given:?}; the kinds are {known}")]
    UnknownEventKind { given: String, known: String },
    /// `undeploy` of a model a models.d manifest declares: the manifest is
    /// the model's declared state, and it would deploy the model again.
    #[error(
        "{model} is deployed by the manifest {manifest}: an undeploy here would last only until that manifest \
         (or a file it names) changes, when dsmild deploys it again. Remove the manifest instead: dsmild then \
         undeploys {model} itself"
    )]
    ManagedByManifest { model: String, manifest: String },
    #[error("worker thread failed: {0}")]
    Worker(String),
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error(transparent)]
    Quantize(#[from] crate::deploy::QuantizeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Reload(#[from] crate::reload::ReloadError),
}
