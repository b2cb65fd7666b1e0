//! Serving: the gRPC services (KServe v2 inference, dsmil.v1 control,
//! grpc.health.v1, server reflection) on the Unix socket and the optional
//! TCP listener, and KServe v2 REST ([`rest`], the same inference service)
//! on the optional HTTP listener.
//!
//! Handlers are thin: decode, call the domain (`deploy`, the registry, a
//! model's pool), encode. Domain errors become statuses in [`status`] only;
//! wire conversions live in [`convert`] only. Who may call is checked at the
//! top of every handler of both services through [`Gate`] (one
//! `access::authorise`), with the peer tonic puts in each request's
//! extensions: SO_PEERCRED on the Unix socket, the address and the client
//! certificate ([`tls`]) on TCP. Health and reflection (descriptors only)
//! answer anyone who reaches the listener, as the README's Security says.

mod authority;
mod coalesce;
mod control;
// Public only for the fuzz targets (fuzz/), which drive request checking
// without a server; not an API.
#[doc(hidden)]
pub mod convert;
mod error;
mod gate;
pub mod health;
mod inference;
mod reflection;
mod rest;
pub mod socket;
pub mod status;
// Public only for the identity benchmark (daemon/benches/identity.rs).
#[doc(hidden)]
pub mod tls;
pub mod transport;
mod triton;
mod upload;

use std::time::Duration;

use dsmil_proto::control::control_server::ControlServer;
use dsmil_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

pub use control::{ControlService, ServerInfo};
pub use error::InferError;
pub use gate::Gate;
pub use inference::InferenceService;

/// Control messages (deploy chunks are 1 MiB, responses carry reports and
/// quantized models in chunks) stay far below this.
pub(crate) const MAX_CONTROL_MESSAGE_BYTES: usize = 64 << 20;

pub type HealthServer = tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// Everything one listener serves.
#[derive(Clone)]
pub struct Services {
    pub inference: InferenceService,
    pub control: ControlService,
    pub health: HealthServer,
    /// serving.max_request_bytes: the largest inference message decoded.
    pub max_request_bytes: usize,
    /// TLS (mutual with a client CA) on the TCP listener; None: plain TCP.
    pub tls: Option<crate::config::TlsConfig>,
}

type Router<L> = tonic::transport::server::Router<L>;

impl Services {
    // The type names the status-rewriting closure's layer, which has no
    // name to alias on stable Rust.
    #[allow(clippy::type_complexity)]
    fn router(
        self,
        tls: Option<crate::config::TlsConfig>,
    ) -> Result<
        Router<
            tower::layer::util::Stack<
                tower::util::MapResponseLayer<impl Fn(TransportResponse) -> TransportResponse + Clone>,
                tower::layer::util::Identity,
            >,
        >,
        tonic::transport::Error,
    > {
        let limit = self.max_request_bytes;
        let rewrite = move |mut response: TransportResponse| {
            status::rewrite_transport_status(response.headers_mut(), limit);
            response
        };
        // HTTP/2 windows and frame size: chosen and explained in `transport`.
        let mut server = transport::server();
        if let Some(tls) = tls {
            server = server.tls_config(tls::server_config(&tls))?;
        }
        Ok(server
            .layer(tower::util::MapResponseLayer::new(rewrite))
            .add_service(
                GrpcInferenceServiceServer::new(self.inference)
                    .max_decoding_message_size(limit)
                    // Outputs are bounded by what the model computes, not
                    // by the caller: a 2 GiB cap is gRPC's own.
                    .max_encoding_message_size(i32::MAX as usize),
            )
            .add_service(
                ControlServer::new(self.control)
                    .max_decoding_message_size(MAX_CONTROL_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_CONTROL_MESSAGE_BYTES),
            )
            .add_service(self.health)
            .add_service(reflection::v1())
            .add_service(reflection::v1alpha()))
    }
}

type TransportResponse = tonic::codegen::http::Response<tonic::body::Body>;

/// Serves on the listeners until `shutdown`, then lets in-flight calls finish
/// for at most `drain`.
pub async fn serve(
    services: Services,
    unix: UnixListener,
    tcp: Option<TcpListener>,
    http: Option<TcpListener>,
    shutdown: CancellationToken,
    drain: Duration,
) -> Result<(), tonic::transport::Error> {
    let mut servers = tokio::task::JoinSet::new();
    let stop = shutdown.clone();
    let router = services.clone().router(None)?;
    servers.spawn(async move {
        let incoming = transport::unix_incoming(unix);
        router
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
    });
    if let Some(http) = http {
        let rest = rest::Rest::new(services.inference.clone(), services.max_request_bytes);
        servers.spawn(rest::serve(rest, http, shutdown.clone()));
    }
    if let Some(tcp) = tcp {
        let stop = shutdown.clone();
        let tls = services.tls.clone();
        let router = services.router(tls)?;
        servers.spawn(async move {
            let incoming = transport::tcp_incoming(tcp);
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        });
    }
    let mut first_error = None;
    let mut collect = async |servers: &mut tokio::task::JoinSet<_>| {
        while let Some(done) = servers.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::error!(error = %e, "a listener failed");
                first_error.get_or_insert(e);
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = collect(&mut servers) => {}
    }
    if tokio::time::timeout(drain, collect(&mut servers)).await.is_err() {
        tracing::warn!(
            drain_s = drain.as_secs(),
            "in-flight requests did not finish in time; closing"
        );
        servers.abort_all();
    }
    first_error.map_or(Ok(()), Err)
}
