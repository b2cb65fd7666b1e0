//! Whether the journal's files are still the ones it opened. sled keeps
//! writing through its open descriptors into files a restart would never
//! read once the directory is removed or replaced, so the journal records
//! the (device, inode) of its directory, its marker and sled's `db` at open
//! and checks them after every flush (see the store's `Integrity` notes).
//!
//! It only stats files; it never writes to the journal itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::StoreError;

/// dsmild's marker in the journal directory: its disappearance means the
/// directory's contents were removed even if the directory itself stayed.
pub const MARKER: &str = "dsmil-journal";

/// The journal's files as they were at open, and whether they still are.
pub(super) struct Files {
    pub(super) dir: PathBuf,
    /// (path, (device, inode)).
    pub(super) watched: Vec<(PathBuf, (u64, u64))>,
    /// Why the journal stopped accepting writes, once it has.
    pub(super) lost: OnceLock<String>,
}

impl Files {
    /// Creates the marker if it is missing and records the identities.
    pub(super) fn record(dir: &Path) -> Result<Files, StoreError> {
        let marker = dir.join(MARKER);
        if !marker.exists() {
            std::fs::write(
                &marker,
                "dsmild's journal: removing or replacing this directory while dsmild runs loses deploys\n",
            )
            .and_then(|()| std::fs::File::open(dir)?.sync_all())
            .map_err(|e| StoreError::io("creating", &marker, e))?;
        }
        let identity = |path: &Path| {
            std::fs::metadata(path)
                .map(|m| (m.dev(), m.ino()))
                .map_err(|e| StoreError::io("checking", path, e))
        };
        let mut watched = vec![(dir.to_owned(), identity(dir)?), (marker.clone(), identity(&marker)?)];
        // sled 0.34's data file, watched only if this sled has one by that
        // name: the marker already covers a directory that was emptied.
        let data = dir.join("db");
        if let Ok(id) = identity(&data) {
            watched.push((data, id));
        }
        Ok(Files {
            dir: dir.to_owned(),
            watched,
            lost: OnceLock::new(),
        })
    }

    pub(super) fn lost_error(&self, why: &str) -> StoreError {
        StoreError::Io {
            action: "journal",
            path: self.dir.clone(),
            source: std::io::Error::other(why.to_owned()),
        }
    }
}
