//! `sd_notify(3)`, in Rust: one datagram per state change, sent to the
//! path (or, with a leading '@', the abstract name) in `$NOTIFY_SOCKET`.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

/// The notify socket, resolved once from the environment.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<String>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            target: std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty()),
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

    /// Sends newline-separated `KEY=VALUE` assignments. Failures are logged,
    /// never fatal: the daemon serves whether or not systemd listens.
    pub fn send(&self, state: &str) {
        let Some(target) = &self.target else { return };
        if let Err(e) = send_to(target, state) {
            tracing::warn!(socket = %target, error = %e, "could not notify systemd");
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
