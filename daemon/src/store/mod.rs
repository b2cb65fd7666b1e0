//! Store: everything dsmild must not lose. The sled journal (models, versions,
//! deployments with their state history, the append-only event log) and the
//! content-addressed blob store holding model files.
//!
//! Only this module opens sled or writes under `state_dir`. Every write is
//! flushed (fsync) before the call returns, so a caller may report success as
//! soon as it gets it. All calls block: run them off tokio's workers.

mod blobs;
mod journal;
mod records;

pub use blobs::{BlobStore, StagedBlob, Upload};
pub use journal::{Existing, Journal, NewDeployment, SCHEMA_VERSION};
pub use records::{DeploymentRecord, EventRecord, ModelRecord, StateChange, VersionRecord, now_ms};

use std::path::PathBuf;

use crate::deploy::DeployState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal")]
    Sled(#[from] sled::Error),
    #[error("journal entry {key} is unreadable: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("journal schema version {found} is newer than this dsmild understands ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no space left on the state volume while {action} {path}; free space and retry")]
    DiskFull { action: &'static str, path: PathBuf },
    #[error("deployment {0} is not in the journal")]
    UnknownDeployment(u64),
    #[error("blob sha256:{0} is missing from the blob store")]
    MissingBlob(String),
    #[error("deployment {id} cannot move from {from} to {to}")]
    InvalidTransition {
        id: u64,
        from: DeployState,
        to: DeployState,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        // ENOSPC and EDQUOT: tell the operator what to do rather than an errno.
        if matches!(source.raw_os_error(), Some(28) | Some(122)) {
            StoreError::DiskFull { action, path }
        } else {
            StoreError::Io { action, path, source }
        }
    }
}

#[cfg(test)]
mod tests;
