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
//!
//! `request.rs` reads an infer body, `reply.rs` writes its answer; this file
//! holds the server, the routes and the error replies.

use std::convert::Infallible;
use std::time::Duration;

use dsmil_proto::inference as pb;
use dsmil_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpConnectInfo;

use super::InferenceService;

/// Triton's binary tensor data extension: the JSON part's length.
pub(super) const HEADER_LENGTH: &str = "inference-header-content-length";
/// A client gets this long to send its request line and headers...
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// ...and this long for the body, so a slow sender cannot hold a
/// connection (and its buffer) open for ever.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) type Reply = Response<Full<Bytes>>;

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

pub(super) struct Body {
    bytes: Bytes,
    /// `Inference-Header-Content-Length`: the JSON part, before binary data.
    header_length: Option<usize>,
}

/// The KServe v2 endpoints (a trailing `/` is ignored).
#[derive(Debug, PartialEq)]
pub(super) enum Route<'a> {
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
pub(super) enum RestError {
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
pub(super) fn http_status(code: tonic::Code) -> StatusCode {
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

pub(super) fn json(code: StatusCode, value: &impl Serialize) -> Reply {
    let body = serde_json::to_vec(value).expect("a reply serializes");
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// KServe's error body: `{"error": "..."}`.
pub(super) fn error(code: StatusCode, message: &str) -> Reply {
    json(code, &serde_json::json!({ "error": message }))
}

pub(super) fn from_status(status: &tonic::Status) -> Reply {
    error(http_status(status.code()), status.message())
}

pub(super) fn rest_error(e: &RestError, close: bool) -> Reply {
    let mut reply = error(e.status(), &e.to_string());
    if close {
        reply
            .headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    reply
}

pub(super) fn readiness(ready: bool, body: serde_json::Value) -> Reply {
    json(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

mod reply;
mod request;

use reply::infer_reply;
use request::parse_infer;

#[cfg(test)]
mod tests;
