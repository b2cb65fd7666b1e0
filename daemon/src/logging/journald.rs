//! A `tracing` layer speaking journald's native protocol: one datagram per
//! record to the journal socket, `KEY=value` lines, and the length-prefixed
//! form for values with a newline (see systemd's "Native Journal Protocol").
//! Field names become journal fields in upper case; `message_id` becomes
//! MESSAGE_ID. Written here rather than taken from a crate because the
//! socket path must be configurable (the tests use a fake journal).

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

pub struct JournaldLayer {
    socket: UnixDatagram,
    path: PathBuf,
}

impl JournaldLayer {
    /// Checks that the journal socket takes datagrams (an empty one).
    pub fn new(path: &Path) -> std::io::Result<JournaldLayer> {
        let socket = UnixDatagram::unbound()?;
        socket.send_to(&[], path)?;
        // A journal that does not keep up costs a logging thread at most
        // this long per line, then the line is dropped: it never stalls
        // the daemon for good.
        socket.set_write_timeout(Some(std::time::Duration::from_millis(250)))?;
        Ok(JournaldLayer {
            socket,
            path: path.to_owned(),
        })
    }
}

/// syslog priorities, as journald reads them.
fn priority(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "6",
        _ => "7",
    }
}

/// A journal field name: upper case, [A-Z0-9_], not starting with '_' or
/// a digit (those are the journal's own).
fn field_name(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    match upper.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => upper,
        _ => format!("F{upper}"),
    }
}

fn put(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            name => self.others.push((field_name(name), value.to_owned())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        match field.name() {
            "message" => self.message = text,
            name => self.others.push((field_name(name), text)),
        }
    }
}

impl<S: Subscriber> Layer<S> for JournaldLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let mut buf = Vec::with_capacity(256);
        put(&mut buf, "MESSAGE", &fields.message);
        put(&mut buf, "PRIORITY", priority(meta.level()));
        put(&mut buf, "SYSLOG_IDENTIFIER", "dsmild");
        put(&mut buf, "TARGET", meta.target());
        for (name, value) in &fields.others {
            put(&mut buf, name, value);
        }
        // A line that cannot be delivered in time is dropped: logging must
        // never stop the daemon.
        let _ = self.socket.send_to(&buf, &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_journal_names_and_multiline_values_are_length_prefixed() {
        assert_eq!(field_name("model"), "MODEL");
        assert_eq!(field_name("message_id"), "MESSAGE_ID");
        assert_eq!(field_name("_private"), "F_PRIVATE");
        let mut buf = Vec::new();
        put(&mut buf, "MESSAGE", "two\nlines");
        let mut expected = b"MESSAGE\n".to_vec();
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(b"two\nlines\n");
        assert_eq!(buf, expected);
    }
}
