//! Configuration: the layered, validated contents of dsmil.toml.
//!
//! Layers, lowest first: the defaults (config/dsmil.toml, embedded at build
//! time, so the shipped file *is* the code's defaults), the operator's file,
//! then command-line overrides. Layering happens on raw TOML values; only the
//! merged document is deserialized (unknown keys rejected) and resolved into
//! [`Config`], whose topology has been checked by [`crate::topology`].
//!
//! This module reads files; it never opens sockets or the store.

mod flags;
mod raw;
mod resolve;

use std::path::{Path, PathBuf};

pub use flags::Flags;
pub use resolve::{
    Config, DeploymentConfig, HardwareConfig, ListenerConfig, LoggingConfig, MAX_BATCH_SIZE, MemoryConfig,
    MonitoringConfig, PathsConfig, QuantizationConfig, RuntimesConfig, ServingConfig, group_id,
};

/// The shipped defaults, byte for byte.
pub const DEFAULT_TOML: &str = include_str!("../../../config/dsmil.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    /// Every problem found, one per line, each naming its key.
    #[error("{origin}: {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid { origin: String, problems: Vec<String> },
}

/// A command-line override: a dotted key and its value, applied last.
pub type Override = (&'static str, toml::Value);

/// Loads the defaults, layers `file` (if any) and `overrides` over them, and
/// resolves the result.
pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigError> {
    let mut doc = parse(DEFAULT_TOML, "built-in defaults")?;
    let origin = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let origin = path.display().to_string();
            merge(&mut doc, parse(&text, &origin)?);
            origin
        }
        None => "built-in defaults".to_owned(),
    };
    for (key, value) in overrides {
        set_dotted(&mut doc, key, value.clone());
    }
    resolve::resolve(doc, &origin)
}

/// Validates a file as `dsmild check-config` does: layered over the defaults.
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    load(Some(path), &[])
}

fn parse(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Tables merge key by key; any other value (arrays included) replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_dotted(doc: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("override keys are non-empty");
    let mut table = doc;
    for part in parts {
        let entry = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("just made a table");
    }
    table.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests;
