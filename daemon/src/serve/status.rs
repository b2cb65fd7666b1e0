//! The one place domain errors become gRPC statuses. Each error keeps its own
//! message (it already says what and why); this file only picks the code.

use tonic::{Code, Status};

use super::InferError;
use super::error::ControlError;
use crate::access::Denial;
use crate::backend::{BackendError, PoolError};
use crate::compress::CompressError;
use crate::compress::offline::OfflineError;
use crate::deploy::{DeployError, QuantizeError};
use crate::store::StoreError;
use crate::topology::TopologyError;

/// The full chain, so the client sees causes too (the journal keeps the
/// same text: `deploy::error::chain`).
fn message(err: &dyn std::error::Error) -> String {
    crate::deploy::error_chain(err)
}

pub fn deploy_code(err: &DeployError) -> Code {
    match err {
        DeployError::InvalidName(_)
        | DeployError::MissingSpec
        | DeployError::Model(_)
        | DeployError::DeviceNotInLayer { .. }
        | DeployError::TooManyParameters { .. }
        | DeployError::DryRun(_) => Code::InvalidArgument,
        DeployError::TooLarge { .. } => Code::InvalidArgument,
        DeployError::SizeMismatch { .. } | DeployError::ChecksumMismatch { .. } => Code::DataLoss,
        DeployError::Topology(t) => match t {
            TopologyError::WriteDown { .. } => Code::PermissionDenied,
            TopologyError::UnknownDevice { .. }
            | TopologyError::ReservedDevice { .. }
            | TopologyError::UnknownLayer { .. }
            | TopologyError::ReservedLayer { .. }
            | TopologyError::UnknownLevel(_) => Code::InvalidArgument,
        },
        DeployError::DeviceBusy { .. } => Code::FailedPrecondition,
        DeployError::NoFreeDevice { .. } | DeployError::OverBudget { .. } | DeployError::NoPlacement { .. } => {
            Code::ResourceExhausted
        }
        DeployError::StageFailed { .. } => Code::FailedPrecondition,
        DeployError::NotDeployed(_) | DeployError::NothingOnDevice(_) | DeployError::NothingInLayer(_) => {
            Code::NotFound
        }
        DeployError::NoEarlierVersion { .. } => Code::FailedPrecondition,
        // Like a failed gate: the result, not the request, is refused.
        DeployError::MostlyFp32(_) => Code::FailedPrecondition,
        DeployError::NeedsCalibration(_)
        | DeployError::NeedsValidation(_)
        | DeployError::MissingAttachment(_)
        | DeployError::UnknownBackend(_)
        | DeployError::UnknownHint(_)
        | DeployError::InvalidOption(_)
        | DeployError::TooManyWorkers(_)
        | DeployError::MaxBatch(_)
        | DeployError::UnknownPrecision(_)
        | DeployError::IrWithoutWeights
        | DeployError::CannotQuantize(_) => Code::InvalidArgument,
        DeployError::NeedsOpenVino { .. } => Code::FailedPrecondition,
        DeployError::Signature(_) => Code::PermissionDenied,
        DeployError::Quantization(q) => compress_code(q),
        DeployError::Backend(b) => backend_code(b),
        DeployError::Store(s) => store_code(s),
        DeployError::Threads(_) => Code::ResourceExhausted,
    }
}

pub fn compress_code(err: &CompressError) -> Code {
    match err {
        CompressError::GateFailed { .. } | CompressError::UpgradeChanged { .. } => Code::FailedPrecondition,
        CompressError::Data { .. }
        | CompressError::Upgrade(_)
        | CompressError::Opset(_)
        | CompressError::Decode(_)
        | CompressError::NoGraph
        | CompressError::NeedsCalibration(_)
        | CompressError::InvalidOption(_)
        | CompressError::NoFloatOutput => Code::InvalidArgument,
        CompressError::Backend(b) => backend_code(b),
    }
}

fn backend_code(err: &BackendError) -> Code {
    match err {
        BackendError::RuntimeMissing { .. } | BackendError::RuntimeLoad { .. } | BackendError::Unavailable { .. } => {
            Code::FailedPrecondition
        }
        // The runtime refused the model itself: the caller's input is at fault.
        BackendError::Load(_) | BackendError::UnsupportedTensor { .. } | BackendError::Rejected(_) => {
            Code::InvalidArgument
        }
        BackendError::Run(_) | BackendError::Panicked(_) => Code::Internal,
    }
}

fn store_code(err: &StoreError) -> Code {
    match err {
        StoreError::DiskFull { .. } => Code::ResourceExhausted,
        StoreError::UnknownDeployment(_) => Code::NotFound,
        StoreError::InvalidTransition { .. } => Code::FailedPrecondition,
        StoreError::PruneRaced => Code::Aborted,
        StoreError::Sled(_)
        | StoreError::Corrupt { .. }
        | StoreError::SchemaTooNew { .. }
        | StoreError::Io { .. }
        | StoreError::MissingBlob(_) => Code::Internal,
    }
}

pub fn infer_code(err: &InferError) -> Code {
    match err {
        InferError::ModelNotFound(_) | InferError::VersionNotFound { .. } => Code::NotFound,
        InferError::NotReady => Code::Unavailable,
        InferError::TooLarge { .. } => Code::ResourceExhausted,
        InferError::UnknownInput { .. }
        | InferError::DuplicateInput(_)
        | InferError::MissingInput { .. }
        | InferError::Datatype { .. }
        | InferError::Shape { .. }
        | InferError::ByteSize { .. }
        | InferError::ElementCount { .. }
        | InferError::Contents { .. }
        | InferError::Overflow { .. }
        | InferError::BatchTooLarge { .. }
        | InferError::BatchMismatch { .. }
        | InferError::RawCount { .. }
        | InferError::MixedContents(_)
        | InferError::UnknownOutput { .. } => Code::InvalidArgument,
        InferError::Pool(p) => match p {
            // Triton answers an overfull queue with UNAVAILABLE: retryable.
            PoolError::QueueFull { .. } | PoolError::Closed { .. } => Code::Unavailable,
            PoolError::DeadlineExceeded { .. } | PoolError::TimedOut { .. } => Code::DeadlineExceeded,
            PoolError::Backend(b) => backend_code(b),
        },
    }
}

impl From<DeployError> for Status {
    fn from(err: DeployError) -> Status {
        Status::new(deploy_code(&err), message(&err))
    }
}

fn quantize_code(err: &QuantizeError) -> Code {
    match err {
        QuantizeError::Deploy(d) => deploy_code(d),
        QuantizeError::Options(c) => compress_code(c),
        QuantizeError::Quantizer(o) => offline_code(o),
    }
}

fn offline_code(err: &OfflineError) -> Code {
    match err {
        OfflineError::Compress(c) => compress_code(c),
        OfflineError::NeedsCalibration => Code::InvalidArgument,
        OfflineError::MostlyFp32(_) => Code::FailedPrecondition,
        OfflineError::Io { .. } => Code::Internal,
    }
}

fn reload_code(err: &crate::reload::ReloadError) -> Code {
    match err {
        crate::reload::ReloadError::Config(_) => Code::InvalidArgument,
        crate::reload::ReloadError::Incompatible(_) => Code::FailedPrecondition,
    }
}

impl From<ControlError> for Status {
    fn from(err: ControlError) -> Status {
        let code = match &err {
            // The transport's status, given this daemon's code for it.
            ControlError::Stream(status) => return inbound(status.clone(), super::MAX_CONTROL_MESSAGE_BYTES),
            ControlError::SpecNotFirst
            | ControlError::UndeclaredChunk
            | ControlError::NoRollbackTarget
            | ControlError::UnknownEventKind { .. } => Code::InvalidArgument,
            ControlError::NoVersions(_)
            | ControlError::NoReport { .. }
            | ControlError::NoSuchVersion { .. }
            | ControlError::ReportMissing { .. }
            | ControlError::NotServing(_) => Code::NotFound,
            ControlError::Worker(_) => Code::Internal,
            ControlError::ManagedByManifest { .. } => Code::FailedPrecondition,
            ControlError::Deploy(d) => deploy_code(d),
            ControlError::Quantize(q) => quantize_code(q),
            ControlError::Store(s) => store_code(s),
            ControlError::Reload(r) => reload_code(r),
        };
        Status::new(code, message(&err))
    }
}

/// Access control's refusals: UNAUTHENTICATED for a caller with no
/// principal, PERMISSION_DENIED for a principal without the role or
/// clearance. The message names the principal, the rule and the level.
pub fn denial_code(denial: &Denial) -> Code {
    match denial {
        Denial::Unauthenticated { .. } => Code::Unauthenticated,
        Denial::Forbidden { .. } => Code::PermissionDenied,
    }
}

impl From<Denial> for Status {
    fn from(denial: Denial) -> Status {
        Status::new(denial_code(&denial), denial.to_string())
    }
}

/// A principal over its in-flight bound: RESOURCE_EXHAUSTED (Triton's code
/// for a full queue), which clients treat as "retry later".
impl From<crate::access::Saturated> for Status {
    fn from(saturated: crate::access::Saturated) -> Status {
        Status::new(Code::ResourceExhausted, saturated.to_string())
    }
}

/// A Triton RPC dsmild does not serve (repository load and unload, log
/// updates, shared memory, tracing): UNIMPLEMENTED, the code Triton itself
/// gives for an unsupported operation (e.g. a load without explicit model
/// control), which tritonclient reports with the message as it is; the
/// message names what to use instead.
impl From<super::triton::Unsupported> for Status {
    fn from(err: super::triton::Unsupported) -> Status {
        Status::new(Code::Unimplemented, err.to_string())
    }
}

impl From<InferError> for Status {
    fn from(err: InferError) -> Status {
        Status::new(infer_code(&err), message(&err))
    }
}

/// tonic answers a body that does not decode with INTERNAL and a message
/// over the size limit with OUT_OF_RANGE; both are the caller's doing, and
/// gRPC's own servers say INVALID_ARGUMENT and RESOURCE_EXHAUSTED. This is
/// the one place that says so.
fn transport_status(code: Code, message: &str, max_request_bytes: usize) -> Option<Status> {
    match code {
        Code::Internal if message.starts_with("failed to decode Protobuf message") => Some(Status::invalid_argument(
            "the request body is not a valid protobuf message of this call's type",
        )),
        Code::OutOfRange if message.starts_with("Error, decoded message length too large") => {
            // tonic's text ends "the limit is: N bytes": say which setting
            // that is when it is the inference limit.
            let limit = message
                .rsplit(|c: char| !c.is_ascii_digit())
                .find(|part| !part.is_empty())
                .and_then(|n| n.parse::<usize>().ok());
            Some(Status::resource_exhausted(match limit {
                Some(n) if n == max_request_bytes => {
                    format!("the request message is larger than {n} bytes (serving.max_request_bytes)")
                }
                Some(n) => format!("the request message is larger than {n} bytes"),
                None => "the request message is larger than this call accepts".to_owned(),
            }))
        }
        _ => None,
    }
}

/// A transport status in the headers of a trailers-only response (where a
/// unary call's decoding errors arrive, before any handler runs), given
/// this daemon's code.
pub fn rewrite_transport_status(headers: &mut tonic::codegen::http::HeaderMap, max_request_bytes: usize) {
    // Most responses carry no status in their headers: look before decoding.
    if !headers.contains_key("grpc-status") {
        return;
    }
    let Some(sent) = Status::from_header_map(headers) else {
        return;
    };
    if let Some(status) = transport_status(sent.code(), sent.message(), max_request_bytes) {
        headers.remove("grpc-message");
        // add_header only fails on a message that cannot be a header value;
        // these are fixed ASCII text.
        let _ = status.add_header(headers);
    }
}

/// An error reading a client stream (a Deploy or Quantize upload), given
/// this daemon's code.
pub fn inbound(status: Status, max_message_bytes: usize) -> Status {
    transport_status(status.code(), status.message(), max_message_bytes).unwrap_or(status)
}

/// The code's name as Prometheus labels carry it.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::DeployState;
    use crate::model::ModelError;

    #[test]
    fn every_refusal_of_issue_two_maps_to_its_code() {
        let cases: Vec<(Status, Code)> = vec![
            (InferError::ModelNotFound("x".into()).into(), Code::NotFound),
            (
                InferError::Shape {
                    name: "a".into(),
                    got: "[1]".into(),
                    expected: "[?,64]".into(),
                }
                .into(),
                Code::InvalidArgument,
            ),
            (
                DeployError::Model(ModelError::NotOnnx("eof".into())).into(),
                Code::InvalidArgument,
            ),
            (
                DeployError::ChecksumMismatch {
                    declared: "a".into(),
                    actual: "b".into(),
                }
                .into(),
                Code::DataLoss,
            ),
            (
                DeployError::Topology(TopologyError::UnknownDevice { id: 104, count: 104 }).into(),
                Code::InvalidArgument,
            ),
            (
                DeployError::Topology(TopologyError::ReservedDevice {
                    id: 70,
                    layer: 1,
                    name: "SYSTEM".into(),
                })
                .into(),
                Code::InvalidArgument,
            ),
            (
                DeployError::Topology(TopologyError::WriteDown {
                    classification: 5,
                    layer: 3,
                    name: "S".into(),
                })
                .into(),
                Code::PermissionDenied,
            ),
            (
                DeployError::Store(StoreError::DiskFull {
                    action: "writing",
                    path: "/x".into(),
                })
                .into(),
                Code::ResourceExhausted,
            ),
            (
                DeployError::StageFailed {
                    stage: DeployState::WarmingUp,
                    detail: "nan".into(),
                }
                .into(),
                Code::FailedPrecondition,
            ),
            (
                InferError::Pool(PoolError::QueueFull {
                    model: "m".into(),
                    capacity: 1,
                })
                .into(),
                Code::Unavailable,
            ),
        ];
        for (status, code) in cases {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(!status.message().is_empty());
        }
    }

    #[test]
    fn control_refusals_map_to_their_codes_and_keep_their_messages() {
        let cases: Vec<(ControlError, Code)> = vec![
            (ControlError::SpecNotFirst, Code::InvalidArgument),
            (ControlError::UndeclaredChunk, Code::InvalidArgument),
            (ControlError::NoRollbackTarget, Code::InvalidArgument),
            (ControlError::NoVersions("m".into()), Code::NotFound),
            (
                ControlError::NoReport {
                    model: "m".into(),
                    version: 2,
                },
                Code::NotFound,
            ),
            (ControlError::NotServing("m".into()), Code::NotFound),
            (
                ControlError::NoSuchVersion {
                    model: "m".into(),
                    version: 9,
                    versions: "1, 2".into(),
                },
                Code::NotFound,
            ),
            (
                ControlError::ReportMissing {
                    model: "m".into(),
                    version: 2,
                    why: "its deploy failed".into(),
                },
                Code::NotFound,
            ),
            (
                ControlError::UnknownEventKind {
                    given: "bogus".into(),
                    known: "deploy, activate".into(),
                },
                Code::InvalidArgument,
            ),
            (ControlError::Worker("panicked".into()), Code::Internal),
            (DeployError::MissingSpec.into(), Code::InvalidArgument),
            (StoreError::UnknownDeployment(7).into(), Code::NotFound),
            (
                QuantizeError::Quantizer(OfflineError::NeedsCalibration).into(),
                Code::InvalidArgument,
            ),
            (
                ControlError::Stream(Status::internal("failed to decode Protobuf message: eof")),
                Code::InvalidArgument,
            ),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(!status.message().is_empty());
        }
        let missing = Status::from(ControlError::NotServing("m".into()));
        assert_eq!(missing.message(), r#"model "m" is not serving"#);
        // Wrapping a domain error changes neither its code nor its message.
        let wrapped = Status::from(ControlError::from(DeployError::MissingSpec));
        assert_eq!(wrapped.message(), Status::from(DeployError::MissingSpec).message());
    }

    #[test]
    fn denials_are_unauthenticated_or_permission_denied_and_name_the_principal() {
        use crate::access::{Action, Caller, Peer, Principal, Role, authorise};
        let unknown = Caller {
            peer: Peer::Unix {
                uid: 4242,
                gid: 4242,
                pid: Some(7),
            },
            principal: None,
        };
        let status = Status::from(authorise(&unknown, &Action::View).unwrap_err());
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("uid 4242 pid 7"), "{}", status.message());
        let viewer = Caller {
            principal: Some(Principal {
                name: "watch".into(),
                role: Role::Viewer,
                clearance: 5,
                inference_only: false,
                limits: crate::access::Limits {
                    inferences: 1,
                    deploys: 1,
                },
            }),
            ..unknown
        };
        let status = Status::from(authorise(&viewer, &Action::Reload).unwrap_err());
        let busy = Status::from(crate::access::Saturated {
            principal: "watch".into(),
            what: "inference requests",
            limit: 1,
            key: "max_concurrent_inferences",
        });
        assert_eq!(busy.code(), Code::ResourceExhausted);
        assert!(
            busy.message().contains("access.max_concurrent_inferences"),
            "{}",
            busy.message()
        );
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(
            status.message().contains("\"watch\"") && status.message().contains("needs admin"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn messages_carry_the_cause_chain_once() {
        let io = std::io::Error::other("disk on fire");
        let err = DeployError::Store(StoreError::Io {
            action: "reading",
            path: "/state/x".into(),
            source: io,
        });
        let status = Status::from(err);
        assert_eq!(status.message(), "reading /state/x: disk on fire");
    }

    #[test]
    fn the_transports_own_statuses_get_the_codes_grpc_servers_give() {
        let header = |code: Code, message: &str| {
            let mut headers = tonic::codegen::http::HeaderMap::new();
            Status::new(code, message).add_header(&mut headers).unwrap();
            rewrite_transport_status(&mut headers, 4096);
            let status = Status::from_header_map(&headers).unwrap();
            (status.code(), status.message().to_owned())
        };
        let (code, message) = header(Code::Internal, "failed to decode Protobuf message: invalid varint");
        assert_eq!(code, Code::InvalidArgument, "{message}");
        let (code, message) = header(
            Code::OutOfRange,
            "Error, decoded message length too large: found 9000 bytes, the limit is: 4096 bytes",
        );
        assert_eq!(code, Code::ResourceExhausted);
        assert!(message.contains("4096 bytes (serving.max_request_bytes)"), "{message}");
        let (code, message) = header(
            Code::OutOfRange,
            "Error, decoded message length too large: found 9000 bytes, the limit is: 8192 bytes",
        );
        assert_eq!(code, Code::ResourceExhausted);
        assert!(!message.contains("serving."), "{message}");
        // The daemon's own statuses pass untouched.
        assert_eq!(header(Code::Internal, "inference failed: x").0, Code::Internal);
        assert_eq!(header(Code::OutOfRange, "other").0, Code::OutOfRange);
        let stream = inbound(Status::internal("failed to decode Protobuf message: eof"), 1);
        assert_eq!(stream.code(), Code::InvalidArgument);
    }
}
