//! KServe v2 REST over HTTP/1.1 (the protocol Triton and OVMS serve on port
//! 8000, and what curl, load balancers and `tritonclient.http` speak):
//! health, server and model metadata, model readiness and inference, with
//! JSON tensors (flat or nested `data`) and Triton's binary tensor data
//! extension (`binary_data_size`, `binary_data`, `binary_data_output`,
//! `Inference-Header-Content-Length`).
//!
//! This file only translates: each route calls the same
//! `GrpcInferenceService` method a gRPC client reaches, so resolution, the
//! request checks and limits (`convert::request_inputs`), the pool, the
//! metrics, the statistics and probation are the gRPC path's own. It never
//! decides an error's meaning: a domain error arrives as the gRPC code
//! `status.rs` chose and becomes the HTTP status of that code here. A body is
//! bounded by `serving.max_request_bytes` before it is read.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

use dsmil_proto::inference as pb;
use dsmil_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpConnectInfo;

use super::InferenceService;
use crate::backend::DataType;

/// Triton's binary tensor data extension: the JSON part's length.
const HEADER_LENGTH: &str = "inference-header-content-length";
/// A client gets this long to send its request line and headers...
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// ...and this long for the body, so a slow sender cannot hold a
/// connection (and its buffer) open for ever.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

type Reply = Response<Full<Bytes>>;

/// The REST front of one inference service.
#[derive(Clone)]
pub struct Rest {
    inference: InferenceService,
    /// serving.max_request_bytes: the largest body read.
    max_request_bytes: usize,
    /// The connection's addresses, as tonic records a TCP peer: the gRPC
    /// handlers identify a REST caller as they identify a gRPC one.
    peer: Option<TcpConnectInfo>,
}

impl Rest {
    pub fn new(inference: InferenceService, max_request_bytes: usize) -> Rest {
        Rest {
            inference,
            max_request_bytes,
            peer: None,
        }
    }

    /// `message` as the gRPC handlers receive it, with this connection's peer.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        request
    }
}

/// Serves `listener` until `shutdown`; then each connection finishes the
/// request it is in and closes (the caller bounds how long that may take).
pub async fn serve(
    rest: Rest,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(rest.clone().connection(stream, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

impl Rest {
    async fn connection(mut self, stream: TcpStream, stop: CancellationToken) {
        self.peer = Some(TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: stream.peer_addr().ok(),
        });
        let service = hyper::service::service_fn(move |req| {
            let rest = self.clone();
            async move { Ok::<_, Infallible>(rest.respond(req).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }

    async fn respond(&self, req: Request<Incoming>) -> Reply {
        let path = req.uri().path().to_owned();
        let Some(route) = Route::of(&path) else {
            return error(StatusCode::NOT_FOUND, &format!("no KServe v2 endpoint at {path}"));
        };
        let method = req.method();
        let allowed = match route {
            Route::Infer { .. } => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        };
        if !allowed {
            let allow = if matches!(route, Route::Infer { .. }) {
                "POST"
            } else {
                "GET, HEAD"
            };
            let mut reply = error(StatusCode::METHOD_NOT_ALLOWED, &format!("{path} takes {allow}"));
            reply
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
            return reply;
        }
        match route {
            Route::Live => self.live().await,
            Route::Ready => self.ready().await,
            Route::Server => self.server().await,
            Route::Metadata { name, version } => self.metadata(name, version).await,
            Route::ModelReady { name, version } => self.model_ready(name, version).await,
            Route::Infer { name, version } => self.infer(name, version, req).await,
        }
    }

    async fn live(&self) -> Reply {
        match self.inference.server_live(self.request(pb::ServerLiveRequest {})).await {
            Ok(r) => {
                let live = r.into_inner().live;
                readiness(live, serde_json::json!({ "live": live }))
            }
            Err(status) => from_status(&status),
        }
    }

    /// 200 when every model that should serve does (KServe: ready), 503 not.
    async fn ready(&self) -> Reply {
        match self
            .inference
            .server_ready(self.request(pb::ServerReadyRequest {}))
            .await
        {
            Ok(r) => {
                let ready = r.into_inner().ready;
                readiness(ready, serde_json::json!({ "ready": ready }))
            }
            Err(status) => from_status(&status),
        }
    }

    async fn server(&self) -> Reply {
        match self
            .inference
            .server_metadata(self.request(pb::ServerMetadataRequest {}))
            .await
        {
            Ok(r) => {
                let mut meta = r.into_inner();
                meta.extensions.push("binary_tensor_data".into());
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "name": meta.name,
                        "version": meta.version,
                        "extensions": meta.extensions,
                    }),
                )
            }
            Err(status) => from_status(&status),
        }
    }

    async fn metadata(&self, name: &str, version: &str) -> Reply {
        let request = pb::ModelMetadataRequest {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        match self.inference.model_metadata(self.request(request)).await {
            Ok(r) => {
                let meta = r.into_inner();
                let tensors = |list: &[pb::model_metadata_response::TensorMetadata]| {
                    list.iter()
                        .map(|t| serde_json::json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape }))
                        .collect::<Vec<_>>()
                };
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "name": meta.name,
                        "versions": meta.versions,
                        "platform": meta.platform,
                        "inputs": tensors(&meta.inputs),
                        "outputs": tensors(&meta.outputs),
                    }),
                )
            }
            Err(status) => from_status(&status),
        }
    }

    /// 200 when the model serves and is healthy; 404 for a model (or
    /// version) that does not serve, 503 for one that is not healthy.
    async fn model_ready(&self, name: &str, version: &str) -> Reply {
        let request = pb::ModelReadyRequest {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        let ready = match self.inference.model_ready(self.request(request)).await {
            Ok(r) => r.into_inner().ready,
            Err(status) => return from_status(&status),
        };
        if !ready {
            // Not ready, or not there at all: the metadata call says which.
            let reply = self.metadata(name, version).await;
            if reply.status() != StatusCode::OK {
                return reply;
            }
        }
        readiness(ready, serde_json::json!({ "name": name, "ready": ready }))
    }

    async fn infer(&self, name: &str, version: &str, req: Request<Incoming>) -> Reply {
        let body = match self.read_body(req).await {
            Ok(body) => body,
            // The body was left unread: the connection cannot carry another
            // request.
            Err(e) => return rest_error(&e, true),
        };
        let (request, binary) = match parse_infer(name, version, &body.bytes, body.header_length) {
            Ok(parsed) => parsed,
            Err(e) => return rest_error(&e, false),
        };
        match self.inference.model_infer(self.request(request)).await {
            Ok(r) => infer_reply(r.into_inner(), &binary),
            Err(status) => from_status(&status),
        }
    }

    /// The whole body, once its size is known to be within the limit.
    async fn read_body(&self, req: Request<Incoming>) -> Result<Body, RestError> {
        let limit = self.max_request_bytes;
        let headers = req.headers();
        let fail = Err;
        if headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return fail(RestError::Encoding);
        }
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return fail(RestError::TooLarge(limit));
        }
        let header_length = match headers.get(HEADER_LENGTH) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) {
                Some(n) => Some(n),
                None => {
                    return fail(RestError::HeaderLength(
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    ));
                }
            },
        };
        let read = Limited::new(req.into_body(), limit).collect();
        match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Err(_) => fail(RestError::Slow(BODY_TIMEOUT.as_secs())),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => fail(RestError::TooLarge(limit)),
            Ok(Err(e)) => fail(RestError::Body(e.to_string())),
            Ok(Ok(collected)) => Ok(Body {
                bytes: collected.to_bytes(),
                header_length,
            }),
        }
    }
}

struct Body {
    bytes: Bytes,
    /// `Inference-Header-Content-Length`: the JSON part, before binary data.
    header_length: Option<usize>,
}

/// The KServe v2 endpoints (a trailing `/` is ignored).
#[derive(Debug, PartialEq)]
enum Route<'a> {
    Live,
    Ready,
    Server,
    Metadata { name: &'a str, version: &'a str },
    ModelReady { name: &'a str, version: &'a str },
    Infer { name: &'a str, version: &'a str },
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Option<Route<'a>> {
        let path = path
            .strip_prefix("/v2")
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))?;
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        Some(match segments.as_slice() {
            [] => Route::Server,
            ["health", "live"] => Route::Live,
            ["health", "ready"] => Route::Ready,
            ["models", name] => Route::Metadata { name, version: "" },
            ["models", name, "versions", version] => Route::Metadata { name, version },
            ["models", name, "ready"] => Route::ModelReady { name, version: "" },
            ["models", name, "versions", version, "ready"] => Route::ModelReady { name, version },
            ["models", name, "infer"] => Route::Infer { name, version: "" },
            ["models", name, "versions", version, "infer"] => Route::Infer { name, version },
            _ => return None,
        })
        .filter(|route| match route {
            Route::Metadata { name, .. } | Route::ModelReady { name, .. } | Route::Infer { name, .. } => {
                !name.is_empty()
            }
            _ => true,
        })
    }
}

/// What the REST layer itself refuses (the body, its JSON, the binary
/// extension's framing), before the request reaches the domain.
#[derive(Debug, thiserror::Error)]
enum RestError {
    #[error("the request body is larger than serving.max_request_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0} s")]
    Slow(u64),
    #[error("reading the request body: {0}")]
    Body(String),
    #[error("Content-Encoding is not supported: send the body uncompressed")]
    Encoding,
    #[error("{HEADER_LENGTH} {0:?} is not a byte count")]
    HeaderLength(String),
    #[error("{HEADER_LENGTH} is {length}, but the body has {body} bytes")]
    HeaderBeyondBody { length: usize, body: usize },
    #[error("the body is not a KServe v2 inference request: {0}")]
    Json(#[from] serde_json::Error),
    #[error("input {name}: {detail}")]
    Input { name: String, detail: String },
    #[error(
        "the inputs mix JSON data and binary data: send every input's data one way (tritonclient: the same \
         binary_data for each input)"
    )]
    MixedBinary,
    #[error("the binary data is {body} bytes, the inputs' binary_data_size add up to {claimed}")]
    BinarySize { claimed: u64, body: usize },
}

impl RestError {
    fn status(&self) -> StatusCode {
        match self {
            RestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RestError::Slow(_) => StatusCode::REQUEST_TIMEOUT,
            RestError::Encoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RestError::Body(_)
            | RestError::HeaderLength(_)
            | RestError::HeaderBeyondBody { .. }
            | RestError::Json(_)
            | RestError::Input { .. }
            | RestError::MixedBinary
            | RestError::BinarySize { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// The HTTP status for a gRPC code (Google's mapping, with the one
/// RESOURCE_EXHAUSTED inference answers, the byte limit, as 413).
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn json(code: StatusCode, value: &impl Serialize) -> Reply {
    let body = serde_json::to_vec(value).expect("a reply serializes");
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// KServe's error body: `{"error": "..."}`.
fn error(code: StatusCode, message: &str) -> Reply {
    json(code, &serde_json::json!({ "error": message }))
}

fn from_status(status: &tonic::Status) -> Reply {
    error(http_status(status.code()), status.message())
}

fn rest_error(e: &RestError, close: bool) -> Reply {
    let mut reply = error(e.status(), &e.to_string());
    if close {
        reply
            .headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    reply
}

fn readiness(ready: bool, body: serde_json::Value) -> Reply {
    json(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

// --- The inference request -------------------------------------------------

#[derive(Deserialize)]
struct InferBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    inputs: Vec<InputBody>,
    #[serde(default)]
    outputs: Vec<OutputBody>,
}

#[derive(Deserialize)]
struct InputBody {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Parameters,
    #[serde(default)]
    data: Option<Values>,
}

#[derive(Deserialize)]
struct OutputBody {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

/// The parameters this server reads; others are ignored, as KServe allows.
#[derive(Default, Deserialize)]
struct Parameters {
    /// Request: every output as binary data unless it says otherwise.
    #[serde(default)]
    binary_data_output: Option<bool>,
    /// Input: this many bytes of the binary part are its data.
    #[serde(default)]
    binary_data_size: Option<u64>,
    /// Output: as binary data, or JSON.
    #[serde(default)]
    binary_data: Option<bool>,
}

/// Which outputs go back as binary data: by name, else the default.
#[derive(Debug)]
struct BinaryOutputs {
    default: bool,
    named: HashMap<String, bool>,
}

impl BinaryOutputs {
    fn wants(&self, name: &str) -> bool {
        self.named.get(name).copied().unwrap_or(self.default)
    }
}

/// The JSON (and binary) body as the gRPC request it means.
fn parse_infer(
    name: &str,
    version: &str,
    body: &Bytes,
    header_length: Option<usize>,
) -> Result<(pb::ModelInferRequest, BinaryOutputs), RestError> {
    let json_length = header_length.unwrap_or(body.len());
    if json_length > body.len() {
        return Err(RestError::HeaderBeyondBody {
            length: json_length,
            body: body.len(),
        });
    }
    let parsed: InferBody = serde_json::from_slice(&body[..json_length])?;
    let binary_part = body.slice(json_length..);

    let binary_inputs = parsed
        .inputs
        .iter()
        .filter(|i| i.parameters.binary_data_size.is_some())
        .count();
    if binary_inputs != 0 && binary_inputs != parsed.inputs.len() {
        return Err(RestError::MixedBinary);
    }
    let mut raw = Vec::new();
    if binary_inputs > 0 {
        let claimed = parsed.inputs.iter().try_fold(0u64, |sum, i| {
            sum.checked_add(i.parameters.binary_data_size.unwrap_or(0))
        });
        if claimed != Some(binary_part.len() as u64) {
            return Err(RestError::BinarySize {
                claimed: claimed.unwrap_or(u64::MAX),
                body: binary_part.len(),
            });
        }
        let mut at = 0usize;
        for input in &parsed.inputs {
            // Within the body: the sizes add up to its length.
            let size = input.parameters.binary_data_size.unwrap_or(0) as usize;
            raw.push(binary_part[at..at + size].to_vec());
            at += size;
        }
    } else if !binary_part.is_empty() {
        return Err(RestError::BinarySize {
            claimed: 0,
            body: binary_part.len(),
        });
    }

    let binary = BinaryOutputs {
        default: parsed.parameters.binary_data_output.unwrap_or(false),
        named: parsed
            .outputs
            .iter()
            .filter_map(|o| o.parameters.binary_data.map(|b| (o.name.clone(), b)))
            .collect(),
    };
    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for input in parsed.inputs {
        let contents = match (binary_inputs, input.data) {
            (0, Some(values)) => match DataType::from_kserve_name(&input.datatype) {
                Some(dtype) => Some(typed_contents(&input.name, dtype, values)?),
                // Not a type dsmil serves: the domain says so, naming the
                // input's expected type.
                None => None,
            },
            (0, None) => {
                return Err(RestError::Input {
                    name: input.name,
                    detail: "no data (give \"data\", or binary_data_size and the bytes after the JSON)".into(),
                });
            }
            _ => None,
        };
        inputs.push(pb::model_infer_request::InferInputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            contents,
            ..Default::default()
        });
    }
    let request = pb::ModelInferRequest {
        model_name: name.to_owned(),
        model_version: version.to_owned(),
        id: parsed.id.unwrap_or_default(),
        inputs,
        outputs: parsed
            .outputs
            .into_iter()
            .map(|o| pb::model_infer_request::InferRequestedOutputTensor {
                name: o.name,
                ..Default::default()
            })
            .collect(),
        raw_input_contents: raw,
        ..Default::default()
    };
    Ok((request, binary))
}

/// A tensor's JSON `data`, flattened in row-major order: KServe allows a
/// flat array or one nested like the shape. Each value takes 8 bytes, and
/// JSON spends at least 2 on one, so this is at most 4 times the body.
#[derive(Debug, Default, PartialEq)]
enum Values {
    #[default]
    Empty,
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
}

const MIXED: &str = "data mixes booleans and numbers";

impl Values {
    fn push_int(&mut self, v: i64) -> Result<(), &'static str> {
        match self {
            Values::Empty => *self = Values::Ints(vec![v]),
            Values::Ints(all) => all.push(v),
            Values::Floats(all) => all.push(v as f64),
            Values::Bools(_) => return Err(MIXED),
        }
        Ok(())
    }

    fn push_float(&mut self, v: f64) -> Result<(), &'static str> {
        match self {
            Values::Empty => *self = Values::Floats(vec![v]),
            Values::Ints(all) => {
                let mut floats: Vec<f64> = all.iter().map(|&i| i as f64).collect();
                floats.push(v);
                *self = Values::Floats(floats);
            }
            Values::Floats(all) => all.push(v),
            Values::Bools(_) => return Err(MIXED),
        }
        Ok(())
    }

    fn push_bool(&mut self, v: bool) -> Result<(), &'static str> {
        match self {
            Values::Empty => *self = Values::Bools(vec![v]),
            Values::Bools(all) => all.push(v),
            Values::Ints(_) | Values::Floats(_) => return Err(MIXED),
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Values, D::Error> {
        let mut values = Values::Empty;
        Flatten(&mut values).deserialize(deserializer)?;
        Ok(values)
    }
}

/// Appends a value, or every value of a (nested) array, to the `Values`.
struct Flatten<'a>(&'a mut Values);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers or booleans, in a flat or nested array (string data is not served)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_bool(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push_int(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.0.push_int(v),
            Err(_) => Err("an integer above 2^63 - 1"),
        }
        .map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push_float(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let values = self.0;
        while seq.next_element_seed(Flatten(&mut *values))?.is_some() {}
        Ok(())
    }
}

/// JSON values as the typed contents of the gRPC request for `dtype` (half
/// types travel as fp32, as in gRPC); the domain checks the count against
/// the shape and narrow types' ranges.
fn typed_contents(name: &str, dtype: DataType, values: Values) -> Result<pb::InferTensorContents, RestError> {
    let bad = |detail: String| RestError::Input {
        name: name.to_owned(),
        detail,
    };
    let range = |what: &str| bad(format!("a value does not fit {what}"));
    let mut c = pb::InferTensorContents::default();
    match (dtype, values) {
        (_, Values::Empty) => {}
        (DataType::Bool, Values::Bools(v)) => c.bool_contents = v,
        (DataType::F16 | DataType::BF16 | DataType::F32, Values::Floats(v)) => {
            c.fp32_contents = v.into_iter().map(|x| x as f32).collect();
        }
        (DataType::F16 | DataType::BF16 | DataType::F32, Values::Ints(v)) => {
            c.fp32_contents = v.into_iter().map(|x| x as f32).collect();
        }
        (DataType::F64, Values::Floats(v)) => c.fp64_contents = v,
        (DataType::F64, Values::Ints(v)) => c.fp64_contents = v.into_iter().map(|x| x as f64).collect(),
        (DataType::I8 | DataType::I16 | DataType::I32, Values::Ints(v)) => {
            c.int_contents = v
                .into_iter()
                .map(i32::try_from)
                .collect::<Result<_, _>>()
                .map_err(|_| range(dtype.kserve_name()))?;
        }
        (DataType::I64, Values::Ints(v)) => c.int64_contents = v,
        (DataType::U8 | DataType::U16 | DataType::U32, Values::Ints(v)) => {
            c.uint_contents = v
                .into_iter()
                .map(u32::try_from)
                .collect::<Result<_, _>>()
                .map_err(|_| range(dtype.kserve_name()))?;
        }
        (DataType::U64, Values::Ints(v)) => {
            c.uint64_contents = v
                .into_iter()
                .map(u64::try_from)
                .collect::<Result<_, _>>()
                .map_err(|_| range(dtype.kserve_name()))?;
        }
        (DataType::Bool, _) => return Err(bad("BOOL data is true or false".into())),
        (_, Values::Bools(_)) => return Err(bad(format!("booleans given for {}", dtype.kserve_name()))),
        (_, Values::Floats(_)) => return Err(bad(format!("{} data must be integers", dtype.kserve_name()))),
    }
    Ok(c)
}

// --- The inference response ------------------------------------------------

#[derive(Serialize)]
struct InferReply<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    outputs: Vec<OutputReply<'a>>,
}

#[derive(Serialize)]
struct OutputReply<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Elements<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// A raw output, written as a flat JSON array of its values.
struct Elements<'a> {
    dtype: Option<DataType>,
    bytes: &'a [u8],
}

fn le<const N: usize>(chunk: &[u8]) -> [u8; N] {
    chunk.try_into().expect("chunks_exact gives N bytes")
}

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.bytes;
        let Some(dtype) = self.dtype else {
            return s.collect_seq(std::iter::empty::<u8>());
        };
        match dtype {
            DataType::Bool => s.collect_seq(b.iter().map(|&x| x != 0)),
            DataType::U8 => s.collect_seq(b.iter()),
            DataType::I8 => s.collect_seq(b.iter().map(|&x| x as i8)),
            DataType::U16 => s.collect_seq(b.chunks_exact(2).map(|c| u16::from_le_bytes(le(c)))),
            DataType::I16 => s.collect_seq(b.chunks_exact(2).map(|c| i16::from_le_bytes(le(c)))),
            DataType::U32 => s.collect_seq(b.chunks_exact(4).map(|c| u32::from_le_bytes(le(c)))),
            DataType::I32 => s.collect_seq(b.chunks_exact(4).map(|c| i32::from_le_bytes(le(c)))),
            DataType::U64 => s.collect_seq(b.chunks_exact(8).map(|c| u64::from_le_bytes(le(c)))),
            DataType::I64 => s.collect_seq(b.chunks_exact(8).map(|c| i64::from_le_bytes(le(c)))),
            DataType::F16 => s.collect_seq(b.chunks_exact(2).map(|c| half::f16::from_le_bytes(le(c)).to_f32())),
            DataType::BF16 => s.collect_seq(b.chunks_exact(2).map(|c| half::bf16::from_le_bytes(le(c)).to_f32())),
            // Non-finite values have no JSON spelling: serde_json writes null.
            DataType::F32 => s.collect_seq(b.chunks_exact(4).map(|c| f32::from_le_bytes(le(c)))),
            DataType::F64 => s.collect_seq(b.chunks_exact(8).map(|c| f64::from_le_bytes(le(c)))),
        }
    }
}

/// The gRPC answer as KServe's JSON; outputs asked for as binary data
/// follow the JSON, in order, and `Inference-Header-Content-Length` says
/// where the JSON ends.
fn infer_reply(response: pb::ModelInferResponse, binary: &BinaryOutputs) -> Reply {
    let empty = Vec::new();
    let mut tail: Vec<&[u8]> = Vec::new();
    let outputs = response
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let raw = response.raw_output_contents.get(i).unwrap_or(&empty);
            let as_binary = binary.wants(&o.name);
            if as_binary {
                tail.push(raw);
            }
            OutputReply {
                name: &o.name,
                datatype: &o.datatype,
                shape: &o.shape,
                parameters: as_binary.then_some(BinarySize {
                    binary_data_size: raw.len(),
                }),
                data: (!as_binary).then_some(Elements {
                    dtype: DataType::from_kserve_name(&o.datatype),
                    bytes: raw,
                }),
            }
        })
        .collect();
    let reply = InferReply {
        model_name: &response.model_name,
        model_version: &response.model_version,
        id: &response.id,
        outputs,
    };
    let mut body = serde_json::to_vec(&reply).expect("a reply serializes");
    let builder = Response::builder().status(StatusCode::OK);
    let builder = if tail.is_empty() {
        builder.header(CONTENT_TYPE, "application/json")
    } else {
        let json_length = body.len();
        body.reserve(tail.iter().map(|t| t.len()).sum());
        tail.iter().for_each(|t| body.extend_from_slice(t));
        builder
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(HEADER_LENGTH, json_length)
    };
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_kserve_v2s() {
        assert_eq!(Route::of("/v2"), Some(Route::Server));
        assert_eq!(Route::of("/v2/"), Some(Route::Server));
        assert_eq!(Route::of("/v2/health/live"), Some(Route::Live));
        assert_eq!(Route::of("/v2/health/ready"), Some(Route::Ready));
        assert_eq!(
            Route::of("/v2/models/digits"),
            Some(Route::Metadata {
                name: "digits",
                version: ""
            })
        );
        assert_eq!(
            Route::of("/v2/models/digits/versions/3/infer"),
            Some(Route::Infer {
                name: "digits",
                version: "3"
            })
        );
        assert_eq!(
            Route::of("/v2/models/digits/versions/3/ready"),
            Some(Route::ModelReady {
                name: "digits",
                version: "3"
            })
        );
        for nothing in [
            "/",
            "/v1/models/x",
            "/v2x",
            "/v2/models",
            "/v2/models//infer",
            "/v2/health",
        ] {
            assert_eq!(Route::of(nothing), None, "{nothing}");
        }
    }

    #[test]
    fn data_is_flattened_whether_flat_or_nested() {
        let flat: Values = serde_json::from_str("[1, 2, 3, 4]").unwrap();
        let nested: Values = serde_json::from_str("[[1, 2], [3, 4]]").unwrap();
        assert_eq!(flat, Values::Ints(vec![1, 2, 3, 4]));
        assert_eq!(nested, flat);
        let floats: Values = serde_json::from_str("[[1, 2.5], [3]]").unwrap();
        assert_eq!(floats, Values::Floats(vec![1.0, 2.5, 3.0]));
        let bools: Values = serde_json::from_str("[true, [false]]").unwrap();
        assert_eq!(bools, Values::Bools(vec![true, false]));
        for refused in ["[1, true]", "[\"a\"]", "[{}]", "[18446744073709551615]"] {
            assert!(serde_json::from_str::<Values>(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn json_values_become_the_typed_contents_grpc_carries() {
        let c = typed_contents("x", DataType::F32, Values::Ints(vec![1, 2])).unwrap();
        assert_eq!(c.fp32_contents, vec![1.0, 2.0]);
        let c = typed_contents("x", DataType::I64, Values::Ints(vec![-1, 1 << 40])).unwrap();
        assert_eq!(c.int64_contents, vec![-1, 1 << 40]);
        let c = typed_contents("x", DataType::U8, Values::Ints(vec![0, 255])).unwrap();
        assert_eq!(c.uint_contents, vec![0, 255]);
        let err = typed_contents("x", DataType::U32, Values::Ints(vec![-1])).unwrap_err();
        assert_eq!(err.to_string(), "input x: a value does not fit UINT32");
        let err = typed_contents("x", DataType::I64, Values::Floats(vec![0.5])).unwrap_err();
        assert_eq!(err.to_string(), "input x: INT64 data must be integers");
        assert!(typed_contents("x", DataType::Bool, Values::Ints(vec![1])).is_err());
    }

    #[test]
    fn a_request_with_binary_inputs_takes_its_bytes_after_the_json() {
        let json = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}],
            "outputs":[{"name":"y","parameters":{"binary_data":false}}],"parameters":{"binary_data_output":true}}"#;
        let mut body = json.to_vec();
        body.extend(1.0f32.to_le_bytes());
        body.extend(2.0f32.to_le_bytes());
        let (request, binary) = parse_infer("m", "", &Bytes::from(body), Some(json.len())).unwrap();
        assert_eq!(
            request.raw_input_contents,
            vec![[1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat()]
        );
        assert!(request.inputs[0].contents.is_none());
        assert!(!binary.wants("y") && binary.wants("z"));

        let mut short = json.to_vec();
        short.extend([0u8; 4]);
        let err = parse_infer("m", "", &Bytes::from(short), Some(json.len())).unwrap_err();
        assert!(matches!(err, RestError::BinarySize { claimed: 8, body: 4 }), "{err}");
        let err = parse_infer("m", "", &Bytes::from_static(b"{}"), Some(3)).unwrap_err();
        assert!(matches!(err, RestError::HeaderBeyondBody { .. }), "{err}");
    }

    #[test]
    fn outputs_are_json_arrays_or_binary_after_the_json() {
        let response = pb::ModelInferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            outputs: vec![
                pb::model_infer_response::InferOutputTensor {
                    name: "p".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, 2],
                    ..Default::default()
                },
                pb::model_infer_response::InferOutputTensor {
                    name: "l".into(),
                    datatype: "INT64".into(),
                    shape: vec![1],
                    ..Default::default()
                },
            ],
            raw_output_contents: vec![
                [0.5f32.to_le_bytes(), f32::NAN.to_le_bytes()].concat(),
                7i64.to_le_bytes().to_vec(),
            ],
            ..Default::default()
        };
        let binary = BinaryOutputs {
            default: false,
            named: [("l".to_owned(), true)].into(),
        };
        let reply = infer_reply(response, &binary);
        let length: usize = reply.headers()[HEADER_LENGTH].to_str().unwrap().parse().unwrap();
        let body = futures_body(reply);
        let head: serde_json::Value = serde_json::from_slice(&body[..length]).unwrap();
        assert_eq!(head["outputs"][0]["data"], serde_json::json!([0.5, null]));
        assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 8);
        assert!(head.get("id").is_none());
        assert_eq!(&body[length..], 7i64.to_le_bytes());
    }

    fn futures_body(reply: Reply) -> Bytes {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(reply.into_body().collect()).unwrap().to_bytes()
    }

    #[test]
    fn grpc_codes_become_the_http_statuses_clients_expect() {
        use tonic::Code;
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(http_status(Code::Internal), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(RestError::TooLarge(1).status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
