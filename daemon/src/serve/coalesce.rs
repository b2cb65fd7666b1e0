//! Fewer, larger socket writes for large answers (issue 14).
//!
//! h2 writes each DATA frame with its own `writev` and flushes after each:
//! an image-sized answer (602,112 bytes) to a client that takes HTTP/2's
//! default 16 KiB frames (gRPC C-core, perf_analyzer, tonic) was 37 system
//! calls, each pushing one small segment through the TCP stack and waking
//! the client once. Over loopback that cost ~0.3 ms per answer where three
//! 256 KiB writes cost ~0.13 ms (measured in docs/benchmarks.md,
//! "Transport").
//!
//! [`Coalesced`] wraps each accepted connection and copies what h2 writes
//! into one buffer of up to [`CAPACITY`] bytes, which goes to the socket
//! when it is full or when the writer is done:
//!
//! - A flush right after at least [`DEFER_FROM`] bytes were written (h2 in
//!   the middle of a large message) is put off: it returns at once and
//!   wakes the connection's task, so it is polled again. The buffer then
//!   goes out on the next flush with nothing written since the previous
//!   one, the next read or a shutdown, whichever comes first. h2 ends every
//!   poll of a connection with a flush; rustls's handshake, which flushes
//!   only after it wrote, reads next. So buffered bytes wait at most one
//!   more poll of the task that wrote them, never for the next call.
//! - Any other flush sends the buffer at once: small answers, the usual
//!   case, go out as before, with no extra poll.
//! - A shutdown sends the buffer first, and a drop tries to, once.
//!
//! It never drops, reorders or adds a byte, and reads pass straight through.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The most a connection buffers before it writes to the socket.
pub const CAPACITY: usize = 256 << 10;
/// A flush is put off only once this much was written since the last one:
/// a full DATA frame at HTTP/2's default frame size.
pub const DEFER_FROM: usize = 16 << 10;
/// What a connection keeps allocated between answers; a larger buffer is
/// freed once it is sent, so idle connections hold little.
const KEEP: usize = 64 << 10;

pub struct Coalesced<IO: AsyncWrite + Unpin> {
    io: IO,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written to `io`.
    sent: usize,
    /// Bytes taken since the last flush.
    since_flush: usize,
}

impl<IO: AsyncWrite + Unpin> Coalesced<IO> {
    pub fn new(io: IO) -> Coalesced<IO> {
        Coalesced {
            io,
            buf: Vec::new(),
            sent: 0,
            since_flush: 0,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Writes out everything buffered.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        self.buf.clear();
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Coalesced<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if this.buf.len() >= CAPACITY {
            ready!(this.poll_send(cx))?;
        }
        // Nothing to join it to and too big to gain from a copy.
        if this.buf.is_empty() && total >= CAPACITY {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        let mut room = CAPACITY - this.buf.len();
        // Grows by doubling, as Vec would, but never past CAPACITY.
        let len = this.buf.len();
        let want = (len + total.min(room)).max(2 * this.buf.capacity()).min(CAPACITY);
        this.buf.reserve_exact(want.saturating_sub(len));
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(room);
            this.buf.extend_from_slice(&b[..n]);
            taken += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        this.since_flush += taken;
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let written = std::mem::take(&mut this.since_flush);
        if written >= DEFER_FROM && !this.buf.is_empty() && this.buf.len() < CAPACITY {
            // Polled again soon, which ends in another flush (see the module doc).
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesced<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A put-off flush is still owed (see the module doc). If the socket
        // cannot take it all now, its readiness wakes this task again, and
        // the read goes ahead meanwhile.
        if this.sent < this.buf.len() {
            let _ = this.poll_send(cx)?;
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

/// What is still buffered when the connection is dropped gets one try,
/// without waiting: tokio-rustls writes its last alert (an unknown CA, a
/// bad certificate) and returns the error without flushing, and the
/// connection is then dropped. Without this the client would see the
/// connection close instead of the reason.
impl<IO: AsyncWrite + Unpin> Drop for Coalesced<IO> {
    fn drop(&mut self) {
        if self.sent < self.buf.len() {
            let _ = self.poll_send(&mut Context::from_waker(std::task::Waker::noop()));
        }
    }
}

impl<IO: Connected + AsyncWrite + Unpin> Connected for Coalesced<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::*;

    /// A socket that records each write it takes; with `max_write`, it
    /// takes at most that much per call and is not ready every other call.
    #[derive(Default)]
    struct Socket {
        writes: Vec<Vec<u8>>,
        max_write: Option<usize>,
        calls: usize,
        shut: bool,
        /// Every write fails, as on a connection the peer reset.
        broken: bool,
        /// Also records the bytes here, to be read after the socket is gone.
        seen_after_drop: Option<Arc<std::sync::Mutex<Vec<u8>>>>,
    }

    impl Socket {
        fn bytes(&self) -> Vec<u8> {
            self.writes.concat()
        }
    }

    impl AsyncWrite for Socket {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            if this.broken {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let n = match this.max_write {
                Some(_) if this.calls.is_multiple_of(2) => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(max) => data.len().min(max),
                None => data.len(),
            };
            this.writes.push(data[..n].to_vec());
            if let Some(seen) = &this.seen_after_drop {
                seen.lock().unwrap().extend_from_slice(&data[..n]);
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Nothing to read yet, as a socket whose peer waits for our answer.
    impl AsyncRead for Socket {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Harness {
        conn: Coalesced<Socket>,
        wakes: Arc<CountingWaker>,
        waker: Waker,
    }

    impl Harness {
        fn new(socket: Socket) -> Harness {
            let wakes = Arc::new(CountingWaker::default());
            Harness {
                conn: Coalesced::new(socket),
                waker: Waker::from(Arc::clone(&wakes)),
                wakes,
            }
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }

        /// Polls `f` until it is ready, as a task woken each time would.
        fn until_ready<T>(&mut self, mut f: impl FnMut(Pin<&mut Coalesced<Socket>>, &mut Context<'_>) -> Poll<T>) -> T {
            let mut cx = Context::from_waker(&self.waker);
            for _ in 0..10_000 {
                if let Poll::Ready(v) = f(Pin::new(&mut self.conn), &mut cx) {
                    return v;
                }
            }
            panic!("never ready");
        }

        /// Writes all of `head` and `payload` (as h2 writes a frame: vectored).
        fn write_frame(&mut self, head: &[u8], payload: &[u8]) {
            let mut done = 0;
            let total = head.len() + payload.len();
            while done < total {
                let (h, p) = if done < head.len() {
                    (&head[done..], payload)
                } else {
                    (&[][..], &payload[done - head.len()..])
                };
                let n = self
                    .until_ready(|c, cx| c.poll_write_vectored(cx, &[IoSlice::new(h), IoSlice::new(p)]))
                    .unwrap();
                assert!(n > 0);
                done += n;
            }
        }

        fn flush(&mut self) {
            self.until_ready(|c, cx| c.poll_flush(cx)).unwrap();
        }
    }

    /// An image-sized answer as h2 sends it to a client with 16 KiB frames:
    /// a 9-byte frame header and a payload, then a flush, frame after frame.
    fn frames(total: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < total {
            let n = (total - at).min(16 << 10);
            let head = vec![0xA0 ^ (out.len() as u8); 9];
            let payload = (at..at + n).map(|i| (i * 31 % 251) as u8).collect();
            out.push((head, payload));
            at += n;
        }
        out
    }

    fn expected(frames: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        frames.iter().flat_map(|(h, p)| h.iter().chain(p).copied()).collect()
    }

    #[test]
    fn a_large_answer_written_frame_by_frame_reaches_the_socket_in_few_writes_byte_for_byte() {
        let frames = frames(602_112);
        let mut h = Harness::new(Socket::default());
        for (head, payload) in &frames {
            h.write_frame(head, payload);
            h.flush();
        }
        // h2 ends its poll with a flush that wrote nothing since the last.
        h.flush();
        let socket = h.conn.get_ref();
        assert_eq!(socket.bytes(), expected(&frames));
        let total = expected(&frames).len();
        assert!(
            socket.writes.len() <= total.div_ceil(CAPACITY),
            "{} frames went out in {} writes",
            frames.len(),
            socket.writes.len()
        );
        assert!(h.wakes() > 0, "each put-off flush asks for another poll");
    }

    #[test]
    fn a_small_answer_goes_out_on_its_first_flush_without_another_poll() {
        let mut h = Harness::new(Socket::default());
        h.write_frame(&[1; 9], &[7; 300]);
        h.flush();
        assert_eq!(h.conn.get_ref().bytes().len(), 309);
        assert_eq!(h.wakes(), 0);
    }

    #[test]
    fn a_put_off_flush_wakes_the_task_and_the_next_flush_sends() {
        let mut h = Harness::new(Socket::default());
        h.write_frame(&[1; 9], &[7; 20_000]);
        h.flush();
        assert!(h.conn.get_ref().writes.is_empty(), "put off: nothing written yet");
        assert_eq!(h.wakes(), 1, "the task is woken to flush again");
        h.flush();
        assert_eq!(h.conn.get_ref().bytes().len(), 20_009);
    }

    /// rustls's handshake flushes only after it wrote; woken after a
    /// put-off flush, it goes straight to reading the client's reply.
    #[test]
    fn a_put_off_flush_is_sent_by_the_next_read_when_no_flush_comes() {
        let mut h = Harness::new(Socket::default());
        h.write_frame(&[1; 9], &[7; 20_000]);
        h.flush();
        assert!(h.conn.get_ref().writes.is_empty());
        let mut space = [0u8; 64];
        let mut cx = Context::from_waker(&h.waker);
        let read = Pin::new(&mut h.conn).poll_read(&mut cx, &mut ReadBuf::new(&mut space));
        assert!(read.is_pending(), "nothing to read");
        assert_eq!(h.conn.get_ref().bytes().len(), 20_009, "sent before reading");
    }

    #[test]
    fn shutdown_sends_what_is_buffered_first() {
        let mut h = Harness::new(Socket::default());
        h.write_frame(&[1; 9], &[7; 20_000]);
        h.flush();
        h.until_ready(|c, cx| c.poll_shutdown(cx)).unwrap();
        let socket = h.conn.get_ref();
        assert_eq!(socket.bytes().len(), 20_009);
        assert!(socket.shut);
    }

    #[test]
    fn a_slow_socket_that_takes_part_of_each_write_still_gets_every_byte_in_order() {
        let frames = frames(602_112);
        let mut h = Harness::new(Socket {
            max_write: Some(10_000),
            ..Socket::default()
        });
        for (head, payload) in &frames {
            h.write_frame(head, payload);
            h.flush();
        }
        h.flush();
        assert_eq!(h.conn.get_ref().bytes(), expected(&frames));
    }

    #[test]
    fn a_write_larger_than_the_buffer_goes_straight_to_an_idle_socket() {
        let mut h = Harness::new(Socket::default());
        let big = vec![3u8; CAPACITY + 1];
        let n = h.until_ready(|c, cx| c.poll_write(cx, &big)).unwrap();
        assert_eq!(n, big.len());
        assert_eq!(h.conn.get_ref().writes.len(), 1);
        assert!(h.conn.buf.capacity() == 0, "no copy was made");
    }

    #[test]
    fn buffer_capacity_never_passes_the_limit_while_an_answer_is_joined() {
        let mut h = Harness::new(Socket::default());
        for (head, payload) in &frames(602_112) {
            h.write_frame(head, payload);
            assert!(h.conn.buf.capacity() <= CAPACITY, "{}", h.conn.buf.capacity());
            h.flush();
        }
    }

    /// tokio-rustls writes its alert and returns the handshake error
    /// without a flush; the connection is then dropped.
    #[test]
    fn what_was_written_but_never_flushed_is_sent_when_the_connection_is_dropped() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut h = Harness::new(Socket {
            seen_after_drop: Some(Arc::clone(&seen)),
            ..Socket::default()
        });
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x30];
        h.until_ready(|c, cx| c.poll_write(cx, &alert)).unwrap();
        assert!(seen.lock().unwrap().is_empty(), "buffered until a flush");
        drop(h);
        assert_eq!(*seen.lock().unwrap(), alert);
    }

    #[test]
    fn a_socket_error_reaches_the_flush_that_sends() {
        let mut h = Harness::new(Socket {
            broken: true,
            ..Socket::default()
        });
        h.write_frame(&[1; 9], &[7; 300]);
        let err = h.until_ready(|c, cx| c.poll_flush(cx)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    /// A flush after a large write went straight to the socket has nothing
    /// buffered to put off: it must not ask for another poll.
    #[test]
    fn a_flush_with_nothing_buffered_is_never_put_off() {
        let mut h = Harness::new(Socket::default());
        for _ in 0..CAPACITY / DEFER_FROM {
            let n = h.until_ready(|c, cx| c.poll_write(cx, &[5u8; DEFER_FROM])).unwrap();
            assert_eq!(n, DEFER_FROM);
        }
        assert_eq!(h.conn.buf.len(), CAPACITY, "buffered, not yet sent");
        let big = vec![6u8; CAPACITY];
        let n = h.until_ready(|c, cx| c.poll_write(cx, &big)).unwrap();
        assert_eq!(
            n,
            big.len(),
            "the full buffer was sent, then the write went straight through"
        );
        assert!(h.conn.buf.is_empty());
        h.flush();
        assert_eq!(h.wakes(), 0);
        assert_eq!(h.conn.get_ref().bytes().len(), 2 * CAPACITY);
    }
}
