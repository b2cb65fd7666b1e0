//! Connecting to dsmild: the Unix socket by default, TCP with --addr, TLS
//! (mutual with a client certificate) with --ca/--cert/--key.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use dsmil_proto::control::control_client::ControlClient;
use dsmil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// TLS files for a TCP connection; all None: plain TCP (unless the address
/// says https, then the system's roots are not consulted: --ca is needed).
#[derive(Default)]
pub struct Tls {
    pub ca: Option<std::path::PathBuf>,
    /// Certificate and key (PEM) for mutual TLS.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Tls {
    fn config(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        if self.ca.is_none() && self.identity.is_none() {
            return Ok(None);
        }
        let read =
            |path: &std::path::Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(config))
    }
}

pub struct Clients {
    pub control: ControlClient<Channel>,
    pub inference: GrpcInferenceServiceClient<Channel>,
}

const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// dsmilctl's HTTP/2 channel settings, set deliberately (issue 14; see
/// docs/benchmarks.md, "Transport"), for TCP and the Unix socket alike:
/// - TCP_NODELAY (tonic's default, stated so it stays): a gRPC call is a
///   few small writes in a row, and with Nagle each waits for the peer's
///   delayed ACK (40 ms).
/// - Fixed receive windows, as large as dsmild's (4 MiB per call, 16 MiB per
///   connection), no adaptive window: an image-sized answer or a 1 MiB
///   deploy chunk arrives without waiting a round trip for a WINDOW_UPDATE,
///   from the first call on (the adaptive mode starts at 64 KiB).
/// - Frames up to 256 KiB accepted from dsmild (16 KiB is HTTP/2's default).
fn channel_settings(endpoint: Endpoint) -> Endpoint {
    endpoint
        .tcp_nodelay(true)
        .http2_adaptive_window(false)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(256 << 10)
}

pub async fn connect(socket: &str, addr: Option<&str>, tls: &Tls) -> anyhow::Result<Clients> {
    let channel = match addr {
        Some(addr) => {
            let tls = tls.config()?;
            let url = if addr.contains("://") {
                addr.to_owned()
            } else if tls.is_some() {
                format!("https://{addr}")
            } else {
                format!("http://{addr}")
            };
            let mut endpoint =
                Endpoint::from_shared(url.clone()).with_context(|| format!("{url} is not an address"))?;
            if let Some(tls) = tls {
                endpoint = endpoint
                    .tls_config(tls)
                    .with_context(|| format!("TLS settings for {url}"))?;
            }
            // tonic layers TLS, when set, over what this connector dials.
            channel_settings(endpoint)
                .connect_with_connector(tower::service_fn(|uri: Uri| async move {
                    let host = uri.host().unwrap_or_default();
                    let port = uri
                        .port_u16()
                        .unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
                    let stream = tokio::net::TcpStream::connect(format!("{host}:{port}")).await?;
                    // See channel_settings: the default connector did this.
                    stream.set_nodelay(true)?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(NoSigPipe(stream)))
                }))
                .await
                .with_context(|| format!("cannot reach dsmild at {url}"))?
        }
        None => {
            let path = socket.to_owned();
            // The URI is a placeholder: the connector ignores it and dials the socket.
            channel_settings(Endpoint::from_static("http://dsmild.local"))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(&path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(NoSigPipe(stream)))
                    }
                }))
                .await
                .with_context(|| {
                    format!("cannot reach dsmild on {socket} (is it running? --socket or DSMIL_SOCKET picks another)")
                })?
        }
    };
    Ok(Clients {
        control: ControlClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        inference: GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    })
}

/// A socket written with `send(MSG_NOSIGNAL)`. `main` gives SIGPIPE back
/// its default action (so `dsmilctl ... | head` just stops), and a write to
/// a connection the daemon closed would then kill dsmilctl silently with
/// exit 141: a plain write() on the Unix socket, and writev() on TCP, which
/// h2 and rustls use (std's TcpStream passes MSG_NOSIGNAL only to its
/// unvectored writes). This way the write fails with EPIPE and the caller
/// says what happened: a TLS handshake the daemon refused, a daemon that died.
struct NoSigPipe<S>(S);

/// The two sockets dsmilctl dials, as NoSigPipe needs them.
trait Socket: tokio::io::AsyncRead + tokio::io::AsyncWrite + AsRawFd + Unpin {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    fn try_write_with(&self, f: impl FnOnce() -> std::io::Result<usize>) -> std::io::Result<usize>;
}

impl Socket for tokio::net::UnixStream {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::net::UnixStream::poll_write_ready(self, cx)
    }
    fn try_write_with(&self, f: impl FnOnce() -> std::io::Result<usize>) -> std::io::Result<usize> {
        self.try_io(tokio::io::Interest::WRITABLE, f)
    }
}

impl Socket for tokio::net::TcpStream {
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::net::TcpStream::poll_write_ready(self, cx)
    }
    fn try_write_with(&self, f: impl FnOnce() -> std::io::Result<usize>) -> std::io::Result<usize> {
        self.try_io(tokio::io::Interest::WRITABLE, f)
    }
}

impl<S: Socket> tokio::io::AsyncRead for NoSigPipe<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: Socket> tokio::io::AsyncWrite for NoSigPipe<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let stream = &self.0;
        loop {
            std::task::ready!(stream.poll_write_ready(cx))?;
            match stream.try_write_with(|| send_no_signal(stream.as_raw_fd(), buf)) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn send_no_signal(fd: std::os::fd::RawFd, buf: &[u8]) -> std::io::Result<usize> {
    /// Linux's value (bits/socket.h).
    const MSG_NOSIGNAL: i32 = 0x4000;
    unsafe extern "C" {
        fn send(fd: i32, buf: *const std::ffi::c_void, len: usize, flags: i32) -> isize;
    }
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call; `fd` is the
    // open socket the caller borrows.
    let sent = unsafe { send(fd, buf.as_ptr().cast(), buf.len(), MSG_NOSIGNAL) };
    if sent < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}
