//! The Prometheus text endpoint: `GET /metrics` over HTTP/1.1 on the metrics
//! listener (loopback by default). The recorder is process-global; the
//! endpoint renders it on demand, on a blocking thread (see
//! [`Recorders::render`]: hooks, /proc).

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::describe;
use super::recorder::Recorders;

/// Installs the global recorder. Call once per process.
pub fn install_recorder() -> Result<Recorders, String> {
    let recorders = Recorders::install()?;
    describe();
    Ok(recorders)
}

pub struct MetricsEndpoint {
    pub local_addr: SocketAddr,
}

impl MetricsEndpoint {
    /// Serves `/metrics` until `shutdown` fires.
    pub async fn serve(
        listener: TcpListener,
        handle: Recorders,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> std::io::Result<MetricsEndpoint> {
        let local_addr = listener.local_addr()?;
        let upkeep = handle.clone();
        let stop = shutdown.clone();
        // Histograms are drained into their buckets by upkeep; without it
        // samples accumulate between scrapes.
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => upkeep.run_upkeep(),
                }
            }
        });
        let conn_tasks = tasks.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let handle = handle.clone();
                conn_tasks.spawn(async move {
                    let service = hyper::service::service_fn(move |req| respond(req, handle.clone()));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(MetricsEndpoint { local_addr })
    }
}

async fn respond(req: Request<Incoming>, handle: Recorders) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = if req.uri().path() == "/metrics" {
        // Rendering reads /proc and runs the scrape hooks: off the tokio
        // workers, like every other blocking read.
        match tokio::task::spawn_blocking(move || handle.render()).await {
            Ok(text) => Response::builder()
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(text))),
            Err(e) => {
                tracing::error!(error = %e, "rendering /metrics failed");
                Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body(Full::new(Bytes::from_static(b"rendering the metrics failed\n")))
            }
        }
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"dsmild serves /metrics\n")))
    };
    Ok(response.expect("static response parts are valid"))
}
