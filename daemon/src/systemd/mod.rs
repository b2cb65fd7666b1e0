//! systemd integration without libsystemd: the notify protocol (READY=1,
//! STATUS=, STOPPING=1, WATCHDOG=1) is a datagram to `$NOTIFY_SOCKET`.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op.

mod notify;
pub mod watchdog;

pub use notify::{Notifier, notify};
