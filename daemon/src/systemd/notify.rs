//! `sd_notify(3)`, in Rust: one datagram per state change, sent to the
//! path (or, with a leading '@', the abstract name) in `$NOTIFY_SOCKET`.
//! A socket nobody listens on any more (a start script that waited for
//! READY=1 and left) is said once, not at every watchdog ping.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The notify socket, resolved once from the environment. Clones share
/// whether the last message failed.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<String>,
    failing: Arc<AtomicBool>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier::to(std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty()))
    }

    fn to(target: Option<String>) -> Notifier {
        Notifier {
            target,
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog period systemd expects pings within (`WatchdogSec=`,
    /// passed as `$WATCHDOG_USEC`), when it is meant for this process.
    pub fn watchdog_period(&self) -> Option<std::time::Duration> {
        self.target.as_ref()?;
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        (for_us && usec > 0).then(|| std::time::Duration::from_micros(usec))
    }

    /// Sends newline-separated `KEY=VALUE` assignments. Failures are never
    /// fatal (the daemon serves whether or not systemd listens) and are
    /// logged once until a message gets through again. Returns whether
    /// this one did.
    pub fn send(&self, state: &str) -> bool {
        let Some(target) = &self.target else { return false };
        match send_to(target, state) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(socket = %target, "systemd's notify socket takes messages again");
                }
                true
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        socket = %target,
                        error = %e,
                        "could not notify systemd; further failures are not logged until a message gets through"
                    );
                } else {
                    tracing::debug!(socket = %target, error = %e, "could not notify systemd");
                }
                false
            }
        }
    }
}

/// Convenience for a one-off message with the process's `$NOTIFY_SOCKET`.
pub fn notify(state: &str) {
    Notifier::from_env().send(state);
}

fn send_to(target: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let addr = if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else {
        SocketAddr::from_pathname(PathBuf::from(target))?
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_that_went_away_fails_quietly_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to(Some(path.to_str().unwrap().to_owned()));
        assert!(notifier.send("READY=1"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        // The start script leaves: its socket file stays, nobody reads it.
        drop(listener);
        let clone = notifier.clone();
        assert!(!notifier.send("WATCHDOG=1"));
        assert!(notifier.failing.load(Ordering::Relaxed), "the first failure is noted");
        assert!(!clone.send("WATCHDOG=1"), "and clones share it");

        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        assert!(notifier.send("STATUS=back"));
        assert!(!clone.failing.load(Ordering::Relaxed), "a success clears it");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=back");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        assert!(!Notifier::to(None).send("READY=1"));
    }
}
