//! Where the daemon's log goes. Under systemd (`$JOURNAL_STREAM` set, or
//! `logging.format = "journal"`), records go to journald over its native
//! protocol, with structured fields (MODEL, VERSION, DEVICE, LAYER,
//! DEPLOYMENT, EVENT) and a stable MESSAGE_ID per audit event kind, so that
//! Loki (promtail or Grafana Alloy reading the journal) can label by them.
//! Otherwise human lines, or JSON, on stderr.

mod audit;
mod journald;

pub use audit::run as audit_to_log;
pub use journald::JournaldLayer;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LoggingConfig;

/// Installs the global subscriber; `RUST_LOG` overrides `config.level`.
/// Returns where the log goes, for the first line of it.
pub fn init(config: &LoggingConfig) -> String {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let format = match config.format.as_str() {
        "auto" if std::env::var_os("JOURNAL_STREAM").is_some() => "journal",
        "auto" => "human",
        other => other,
    };
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        "journal" => match JournaldLayer::new(&config.journal_socket) {
            Ok(layer) => {
                registry.with(layer).init();
                return format!("journald ({})", config.journal_socket.display());
            }
            Err(e) => {
                let fallback = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
                registry.with(fallback).init();
                tracing::warn!(socket = %config.journal_socket.display(), error = %e, "journald unreachable; logging to stderr");
                return "stderr (journald unreachable)".into();
            }
        },
        "json" => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .init(),
        _ => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
    format!("stderr ({format})")
}

/// Human lines on stderr, for the one-shot commands (quantize, checks).
pub fn init_human() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}
