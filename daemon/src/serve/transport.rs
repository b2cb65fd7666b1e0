//! The gRPC listeners' HTTP/2 and socket settings, chosen here and nowhere
//! else (issue 14: a 600 KB request stalled for ~40 ms over TCP). Measured
//! and explained in docs/benchmarks.md ("Transport").
//!
//! - **TCP_NODELAY on every accepted TCP socket.** An answer is at least
//!   two writes (HEADERS and DATA, then the trailers), and WINDOW_UPDATEs
//!   go out while a large request arrives. With Nagle's algorithm on, a
//!   small write waits until everything sent before it is acknowledged, and
//!   a client waiting for its answer delays that ACK (40 ms on Linux): a
//!   call over TCP took ~44 ms where the Unix socket took 0.3 ms. tonic
//!   sets the option only on listeners it binds itself (its `tcp_nodelay`
//!   is ignored by `serve_with_incoming`); dsmild binds its own listeners (a
//!   bind error is reported before anything starts), so [`tcp_incoming`]
//!   sets it on each accepted socket. The Unix socket has no Nagle.
//! - **Fixed flow-control windows, no adaptive window.** The stream window
//!   is what a client may send on one call before it must wait a round trip
//!   for a WINDOW_UPDATE: 4 MiB takes an image-sized request (a 3×224×224
//!   float tensor is 602,112 bytes) in one go with room to spare. The
//!   connection window, shared by the calls on one connection, is 16 MiB so
//!   that 16 concurrent image requests do not queue behind one another's
//!   updates. hyper's adaptive (BDP) mode would start both at 64 KiB and
//!   grow them with pings, so the first large requests on a new connection
//!   would wait round trips; fixed windows behave the same on every call.
//!   What a client can make dsmild hold is still bounded per message by
//!   `serving.max_request_bytes` and per caller by
//!   `access.max_concurrent_inferences`.
//! - **256 KiB largest frame** a client may send (HTTP/2's default is
//!   16 KiB): a client may send an image tensor in 3 DATA frames, not 37.
//!   Larger frames save nothing more and would hold other calls' frames on
//!   the same connection behind one stream's.
//! - **Coalesced writes** ([`Coalesced`] on every accepted connection, TCP
//!   and Unix): what a client lets dsmild send is its own choice of frame
//!   size, 16 KiB for most, and h2 writes each frame on its own; the
//!   wrapper joins them into writes of up to 256 KiB.

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::authority;
pub use super::coalesce::Coalesced;

/// HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE advertised to clients.
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// The connection-level receive window (raised by a WINDOW_UPDATE on stream 0).
pub const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;
/// HTTP/2 SETTINGS_MAX_FRAME_SIZE advertised to clients.
pub const MAX_FRAME_BYTES: u32 = 256 << 10;

/// A server builder with the settings above. (Its `tcp_nodelay` is set
/// too, for clarity, but only [`tcp_incoming`] makes it true of our sockets.)
pub fn server() -> Server {
    Server::builder()
        .tcp_nodelay(true)
        .http2_adaptive_window(Some(false))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
}

/// The accepted connections of `listener`, each with TCP_NODELAY set and
/// its writes coalesced.
pub fn tcp_incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<Coalesced<TcpStream>>> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio_stream::StreamExt::map(incoming, |accepted| accepted.map(Coalesced::new))
}

/// The accepted connections of the Unix socket, with stock gRPC C-core's
/// `:authority` made acceptable to h2 ([`authority`]) and writes coalesced.
pub fn unix_incoming(
    listener: UnixListener,
) -> impl Stream<Item = std::io::Result<Coalesced<authority::Fixed<UnixStream>>>> {
    tokio_stream::StreamExt::map(UnixListenerStream::new(listener), |accepted| {
        accepted.map(|io| Coalesced::new(authority::Fixed::new(io)))
    })
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_tcp_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = std::pin::pin!(tcp_incoming(listener));
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(
            accepted.get_ref().nodelay().unwrap(),
            "the server's end of a connection has TCP_NODELAY"
        );
        drop(client);
    }
}
