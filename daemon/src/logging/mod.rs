//! Where the daemon's log goes. Under systemd (`$JOURNAL_STREAM` set, or
//! `logging.format = "journal"`), records go to journald over its native
//! protocol, with structured fields (MODEL, VERSION, DEVICE, LAYER,
//! DEPLOYMENT, EVENT) and a stable MESSAGE_ID per audit event kind, so that
//! Loki (promtail or Grafana Alloy reading the journal) can label by them.
//! Otherwise human lines, or JSON, on stderr, coloured only when stderr is a
//! terminal. The native runtimes' own chatter (the `ort` target) is kept at
//! warning unless the filter names it (`RUST_LOG=info,ort=info`).

mod audit;
mod journald;

pub use audit::run as audit_to_log;
pub use journald::JournaldLayer;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LoggingConfig;

/// The `ort` crate's target, which carries ONNX Runtime's own log (graph
/// transformers, arena growth: thousands of lines per model at info).
const RUNTIME_TARGET: &str = "ort";

/// The filter: `RUST_LOG` when set, else `default`, as [`directives`] reads it.
fn filter(default: &str) -> EnvFilter {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_owned());
    EnvFilter::new(directives(&spec))
}

/// `spec` as written, plus `ort=warn` unless `spec` says what it wants for
/// the `ort` target.
fn directives(spec: &str) -> String {
    let names_runtime = spec.split(',').any(|directive| {
        let target = directive.trim().split(['=', '[']).next().unwrap_or("");
        target
            .strip_prefix(RUNTIME_TARGET)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    match (names_runtime, spec.trim().is_empty()) {
        (true, _) => spec.to_owned(),
        (false, true) => format!("{RUNTIME_TARGET}=warn"),
        (false, false) => format!("{spec},{RUNTIME_TARGET}=warn"),
    }
}

/// Colour codes only for a person at a terminal (and not with `NO_COLOR`).
fn ansi() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber; `RUST_LOG` overrides `config.level`.
/// Returns where the log goes, for the first line of it.
pub fn init(config: &LoggingConfig) -> String {
    let filter = filter(&config.level);
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
                let fallback = tracing_subscriber::fmt::layer()
                    .with_ansi(ansi())
                    .with_writer(std::io::stderr);
                registry.with(fallback).init();
                tracing::warn!(socket = %config.journal_socket.display(), error = %e, "journald unreachable; logging to stderr");
                return "stderr (journald unreachable)".into();
            }
        },
        "json" => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .init(),
        _ => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi())
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    format!("stderr ({format})")
}

/// Human lines on stderr, for the one-shot commands (quantize, checks).
pub fn init_human() {
    tracing_subscriber::registry()
        .with(filter("info"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi())
                .with_writer(std::io::stderr),
        )
        .init();
}

#[cfg(test)]
mod tests {
    use super::{RUNTIME_TARGET, directives};

    #[test]
    fn the_runtime_is_kept_at_warning_unless_the_filter_names_it() {
        assert_eq!(directives("info"), "info,ort=warn");
        assert_eq!(directives("debug,dsmild=trace"), "debug,dsmild=trace,ort=warn");
        assert_eq!(directives(""), "ort=warn");
        assert_eq!(directives("info,ort=info"), "info,ort=info");
        let submodule = format!("{RUNTIME_TARGET}::logging=trace");
        assert_eq!(directives(&submodule), submodule);
        assert_eq!(directives("ort[span]=debug"), "ort[span]=debug");
        // A target that only starts with the same letters is not the runtime.
        assert_eq!(directives("ortho=debug"), "ortho=debug,ort=warn");
    }
}
