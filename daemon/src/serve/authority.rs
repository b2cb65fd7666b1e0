//! Makes stock gRPC C-core clients (grpcio, tritonclient) work on the Unix
//! socket without options. For a `unix:///run/dsmild/dsmild.sock` target
//! C-core sends the percent-encoded path as `:authority`
//! (`run%2Fdsmild%2Fdsmild.sock`); the `http` crate accepts `%` in an
//! authority only inside userinfo, so h2 answers every such request with
//! RST_STREAM(PROTOCOL_ERROR) before tonic sees it. HTTP/2 has no place
//! to hook in between, so [`Fixed`] wraps each accepted Unix connection and,
//! in the bytes the client sends, replaces each `%` of an `:authority` value
//! with `_` — the same length, so the HPACK dynamic table the client
//! indexes the value into stays in step with h2's.
//!
//! Only what C-core sends is rewritten: an `:authority` literal (static
//! name index 1, or the name spelled out) with a plain (not Huffman-coded)
//! value, within one HEADERS frame. Everything else passes through
//! unchanged (DATA payloads straight into the caller's buffer, without a
//! copy); nothing is ever dropped or added. dsmild never reads the
//! authority: who calls is SO_PEERCRED, which the wrapper passes through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use super::transport::MAX_FRAME_BYTES;

const PREFACE_BYTES: usize = 24;
const FRAME_HEADER_BYTES: usize = 9;
const HEADERS: u8 = 0x1;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A server-side connection whose `:authority` values are made acceptable
/// to h2 (see the module doc).
pub struct Fixed<IO> {
    io: IO,
    scan: Scan,
    /// Bytes read from `io` and not yet handed out; the first `cleared`
    /// are final.
    held: Vec<u8>,
    cleared: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Bytes of the client's connection preface still to pass.
    Preface(usize),
    /// At a frame header.
    Header,
    /// Bytes of a frame's payload still to pass unchanged.
    Payload(usize),
}

impl<IO> Fixed<IO> {
    pub fn new(io: IO) -> Fixed<IO> {
        Fixed {
            io,
            scan: Scan::Preface(PREFACE_BYTES),
            held: Vec::new(),
            cleared: 0,
        }
    }

    /// Advances over `held` as far as it can, rewriting whole HEADERS
    /// frames in place; `eof`: nothing more will come, clear everything.
    fn advance(&mut self, eof: bool) {
        loop {
            let rest = self.held.len() - self.cleared;
            match self.scan {
                Scan::Preface(0) | Scan::Payload(0) => self.scan = Scan::Header,
                Scan::Preface(left) if rest > 0 => {
                    let n = left.min(rest);
                    self.cleared += n;
                    self.scan = Scan::Preface(left - n);
                }
                Scan::Payload(left) if rest > 0 => {
                    let n = left.min(rest);
                    self.cleared += n;
                    self.scan = Scan::Payload(left - n);
                }
                Scan::Header if rest >= FRAME_HEADER_BYTES => {
                    let at = self.cleared;
                    let head = &self.held[at..at + FRAME_HEADER_BYTES];
                    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                    let (kind, flags) = (head[3], head[4]);
                    // An oversized frame is h2's to refuse; never hold it.
                    if kind == HEADERS && len <= MAX_FRAME_BYTES as usize {
                        if rest < FRAME_HEADER_BYTES + len {
                            break;
                        }
                        let payload = at + FRAME_HEADER_BYTES..at + FRAME_HEADER_BYTES + len;
                        fix_headers_payload(&mut self.held[payload], flags);
                        self.cleared += FRAME_HEADER_BYTES + len;
                    } else {
                        self.cleared += FRAME_HEADER_BYTES;
                        self.scan = Scan::Payload(len);
                    }
                }
                _ => break,
            }
        }
        if eof {
            self.cleared = self.held.len();
        }
    }
}

/// Rewrites the `:authority` literals of one HEADERS frame's payload.
fn fix_headers_payload(payload: &mut [u8], flags: u8) {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let Some(&pad) = payload.first() else { return };
        start = 1;
        end = end.saturating_sub(usize::from(pad));
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    if start < end {
        fix_header_block(&mut payload[start..end]);
    }
}

/// An HPACK integer with an `n`-bit prefix at `block[*at]` (RFC 7541 5.1).
fn integer(block: &[u8], at: &mut usize, n: u32) -> Option<usize> {
    let mask = (1u16 << n) as u8 - 1;
    let mut value = usize::from(*block.get(*at)? & mask);
    *at += 1;
    if value < usize::from(mask) {
        return Some(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at)?;
        *at += 1;
        value = value.checked_add(usize::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// A string literal at `block[*at]`: (Huffman-coded, its byte range).
fn string(block: &[u8], at: &mut usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = *block.get(*at)? & 0x80 != 0;
    let len = integer(block, at, 7)?;
    let range = *at..at.checked_add(len)?;
    if range.end > block.len() {
        return None;
    }
    *at = range.end;
    Some((huffman, range))
}

/// Walks a header block fragment (RFC 7541 6) and rewrites the `%` of each
/// plain `:authority` literal value; stops at anything it cannot parse
/// (e.g. a field continued in a CONTINUATION frame).
fn fix_header_block(block: &mut [u8]) {
    let mut at = 0;
    while let Some(&first) = block.get(at) {
        let prefix = if first & 0x80 != 0 {
            // Indexed field: nothing to rewrite.
            if integer(block, &mut at, 7).is_none() {
                return;
            }
            continue;
        } else if first & 0xc0 == 0x40 {
            6
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            if integer(block, &mut at, 5).is_none() {
                return;
            }
            continue;
        } else {
            4
        };
        let Some(index) = integer(block, &mut at, prefix) else {
            return;
        };
        let authority = if index == 0 {
            let Some((huffman, name)) = string(block, &mut at) else {
                return;
            };
            !huffman && &block[name] == b":authority"
        } else {
            index == 1
        };
        let Some((huffman, value)) = string(block, &mut at) else {
            return;
        };
        if authority && !huffman {
            for b in &mut block[value] {
                if *b == b'%' {
                    *b = b'_';
                }
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Fixed<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.cleared > 0 {
                let n = this.cleared.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.drain(..n);
                this.cleared -= n;
                return Poll::Ready(Ok(()));
            }
            // A payload with nothing held: straight into the caller's buffer.
            if let Scan::Payload(left) = this.scan
                && left > 0
                && this.held.is_empty()
                && buf.remaining() > 0
            {
                let want = left.min(buf.remaining());
                let mut limited = ReadBuf::new(buf.initialize_unfilled_to(want));
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
                let n = limited.filled().len();
                buf.advance(n);
                this.scan = Scan::Payload(left - n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 << 10];
            let mut more = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut more))?;
            let eof = more.filled().is_empty();
            this.held.extend_from_slice(more.filled());
            this.advance(eof);
            if eof && this.cleared == 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Fixed<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Fixed<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// What grpcio 1.85 sends first on `unix:///tmp/cap/y.sock`: the
    /// preface, SETTINGS, and a HEADERS frame with `:authority` as a plain
    /// literal with incremental indexing.
    fn client_bytes(authority: &[u8]) -> Vec<u8> {
        let mut block = vec![0x40, 5];
        block.extend_from_slice(b":path");
        block.push(7);
        block.extend_from_slice(b"/a/Call");
        block.extend_from_slice(&[0x40, 10]);
        block.extend_from_slice(b":authority");
        block.push(authority.len() as u8);
        block.extend_from_slice(authority);
        block.extend_from_slice(&[0x83, 0x86]);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, block.len() as u8, HEADERS, 4, 0, 0, 0, 1]);
        bytes.extend_from_slice(&block);
        // A DATA frame whose payload holds a '%' that must stay.
        bytes.extend_from_slice(&[0, 0, 3, 0, 1, 0, 0, 0, 1, b'%', b'%', b'%']);
        bytes
    }

    async fn through(bytes: &[u8], read_size: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(read_size);
        let sent = bytes.to_vec();
        let writer = tokio::spawn(async move {
            for part in sent.chunks(read_size) {
                tokio::io::AsyncWriteExt::write_all(&mut client, part).await.unwrap();
            }
        });
        let mut fixed = Fixed::new(server);
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        while out.len() < bytes.len() {
            let n = fixed.read(&mut buf).await.unwrap();
            assert!(n > 0, "ended early");
            out.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_percent_of_an_authority_becomes_an_underscore_at_the_same_length() {
        for read_size in [1, 5, 64, 4096] {
            let out = through(&client_bytes(b"tmp%2Fcap%2Fy.sock"), read_size).await;
            assert_eq!(out, client_bytes(b"tmp_2Fcap_2Fy.sock"), "reads of {read_size}");
        }
    }

    #[tokio::test]
    async fn other_bytes_pass_unchanged() {
        let bytes = client_bytes(b"localhost");
        assert_eq!(through(&bytes, 3).await, bytes);
    }

    #[test]
    fn a_huffman_or_truncated_block_is_left_alone() {
        let mut huffman = vec![0x41, 0x83, b'%', b'%', b'%'];
        fix_header_block(&mut huffman);
        assert_eq!(huffman, [0x41, 0x83, b'%', b'%', b'%']);
        let mut truncated = vec![0x41, 0x05, b'%', b'%'];
        fix_header_block(&mut truncated);
        assert_eq!(truncated, [0x41, 0x05, b'%', b'%']);
        let mut by_static_index = vec![0x41, 0x03, b'a', b'%', b'b'];
        fix_header_block(&mut by_static_index);
        assert_eq!(by_static_index, [0x41, 0x03, b'a', b'_', b'b']);
    }
}
