//! Configuration: the layered, validated contents of dsmil.toml.
//!
//! Layers, lowest first: the defaults (config/dsmil.toml, embedded at build
//! time, so the shipped file *is* the code's defaults), the operator's file,
//! then command-line overrides. Layering happens on raw TOML values; only the
//! merged document is deserialized (unknown keys rejected) and resolved into
//! [`Config`], whose topology has been checked by [`crate::topology`].
//!
//! This module reads files; it never opens sockets or the store.

mod access;
mod flags;
mod raw;
mod resolve;

use std::path::{Path, PathBuf};

pub use access::{TlsConfig, group_id};
pub use flags::Flags;
pub use resolve::{
    Config, DeploymentConfig, HardwareConfig, ListenerConfig, LoggingConfig, MAX_BATCH_SIZE, MAX_INTRA_OP_THREADS,
    MAX_QUEUE_DELAY_US, MemoryConfig, MonitoringConfig, PathsConfig, QuantizationConfig, RuntimesConfig, ServingConfig,
    check_preferred_batch_sizes, default_workers,
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

/// The file the systemd unit names with `--config`. It alone may be missing:
/// dsmild then runs on the built-in defaults (and logs a warning, see
/// [`is_missing_default`]), as on a host whose admin removed the packaged
/// conffile. Any other missing file given with `--config` is an error.
pub const DEFAULT_FILE: &str = "/etc/dsmil/dsmil.toml";

/// Loads the defaults, layers `file` (if any) and `overrides` over them, and
/// resolves the result. A missing [`DEFAULT_FILE`] counts as empty.
pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<Config, ConfigError> {
    layered(file, overrides, Path::new(DEFAULT_FILE))
}

/// Validates a file as `dsmild check-config` does: layered over the defaults.
/// The file must exist, whatever its path.
pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
    layered(Some(path), &[], Path::new(""))
}

/// Whether `file` is [`DEFAULT_FILE`] and absent, so [`load`] used the
/// built-in defaults alone: the caller logs it once logging is set up.
pub fn is_missing_default(file: &Path) -> bool {
    file == Path::new(DEFAULT_FILE)
        && std::fs::symlink_metadata(file).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// [`load`], with `optional` the one file whose absence is not an error.
fn layered(file: Option<&Path>, overrides: &[Override], optional: &Path) -> Result<Config, ConfigError> {
    let mut doc = parse(DEFAULT_TOML, "built-in defaults")?;
    let origin = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == optional => {
                format!("built-in defaults ({} is missing)", path.display())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
            Ok(text) => {
                let origin = path.display().to_string();
                merge(&mut doc, parse(&text, &origin)?);
                origin
            }
        },
        None => "built-in defaults".to_owned(),
    };
    for (key, value) in overrides {
        set_dotted(&mut doc, key, value.clone());
    }
    resolve::resolve(doc, &origin)
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

#[cfg(test)]
mod missing_default {
    use super::*;

    #[test]
    fn only_the_default_file_may_be_missing() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("dsmil.toml");
        let defaults = layered(Some(&default), &[], &default).unwrap();
        assert_eq!(
            defaults.listeners.unix_socket,
            load(None, &[]).unwrap().listeners.unix_socket
        );

        let other = dir.path().join("other.toml");
        let err = layered(Some(&other), &[], &default).unwrap_err().to_string();
        assert!(err.contains("cannot read") && err.contains("other.toml"), "{err}");
        // check-config is asked about a file: it must be there.
        assert!(check_file(&default).is_err());
        assert!(!is_missing_default(&default));
    }
}
