//! Store: everything dsmild must not lose. The sled journal (models, versions,
//! deployments with their state history, the append-only event log) and the
//! content-addressed blob store holding model files.
//!
//! Only this module opens sled or writes under `state_dir`. Every write is
//! flushed (fsync) before the call returns, so a caller may report success as
//! soon as it gets it. All calls block: run them off tokio's workers.
//!
//! # Integrity
//!
//! - The journal remembers, when it opens, the (device, inode) of its
//!   directory, of a marker file dsmild keeps in it and of sled's data file.
//!   sled writes through descriptors it opened once, so after the directory
//!   is removed or swapped its writes still "succeed" into files that no
//!   restart will read. Every write therefore checks those identities after
//!   its flush and fails if one changed; from then on the journal refuses
//!   every write ([`Journal::verify`] says why) until dsmild restarts. The
//!   daemon also runs `verify` periodically and, on a failure, goes not ready
//!   but keeps serving what is loaded: inference does not need the journal,
//!   and stopping would let a restart open an empty journal.
//! - [`open`] refuses a missing or empty journal directory beside a blob
//!   store that holds models: that journal was lost, and starting anyway
//!   would be ready with nothing deployed.
//! - A blob is verified against its name on every read; committing a blob
//!   always replaces the file under its name, so deploying the same model
//!   again heals a blob whose bytes went bad.

mod blobs;
mod integrity;
mod journal;
mod migrations;
mod prune;
mod records;

pub use blobs::{BlobStore, StagedBlob, Upload};
pub use journal::{Existing, Journal, NewDeployment};
pub use migrations::SCHEMA_VERSION;
pub use prune::{BLOB_GRACE, Pruned, PrunedBlob, PrunedVersion, prune};
pub use records::{
    DeploymentRecord, EventCaller, EventRecord, ModelRecord, ServingChoice, SignedBy, StateChange, VersionRecord,
    now_ms,
};

use std::path::{Path, PathBuf};

use dsmil_kinds::DeployState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal")]
    Sled(#[from] sled::Error),
    /// `what` says which store: "journal entry" (key: tree/key) or "blob"
    /// (key: its path).
    #[error("{what} {key} is unreadable: {detail}")]
    Corrupt {
        what: &'static str,
        key: String,
        detail: String,
    },
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
    #[error("blob {} is missing; deploying the same model again restores it", .0.display())]
    MissingBlob(PathBuf),
    #[error("deployment {id} cannot move from {from} to {to}")]
    InvalidTransition {
        id: u64,
        from: DeployState,
        to: DeployState,
    },
    #[error("the journal changed while pruning (a deploy, rollback or undeploy); nothing was removed: prune again")]
    PruneRaced,
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

/// Opens the journal (`<state_dir>/journal`) and the blob store
/// (`<state_dir>/blobs`). Blocking.
pub fn open(state_dir: &Path) -> Result<(Journal, BlobStore), StoreError> {
    let journal_dir = state_dir.join("journal");
    let blobs_dir = state_dir.join("blobs");
    let journal_absent = match std::fs::read_dir(&journal_dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(StoreError::io("listing", &journal_dir, e)),
    };
    if journal_absent {
        let sha_dir = blobs_dir.join("sha256");
        let blobs = match std::fs::read_dir(&sha_dir) {
            Ok(entries) => entries.count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::io("listing", &sha_dir, e)),
        };
        if blobs > 0 {
            return Err(StoreError::Io {
                action: "opening the journal",
                path: journal_dir,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "it is missing or empty, yet {} holds {blobs} model file(s): the journal was lost. \
                         Restore it from a backup, or remove {} to start with nothing deployed",
                        sha_dir.display(),
                        blobs_dir.display()
                    ),
                ),
            });
        }
    }
    let journal = Journal::open(&journal_dir)?;
    let blobs = BlobStore::open(&blobs_dir)?;
    Ok((journal, blobs))
}

#[cfg(test)]
mod tests;
