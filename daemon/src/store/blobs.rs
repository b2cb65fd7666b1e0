//! The content-addressed blob store: `blobs/sha256/<hex>` under the state dir.
//!
//! A blob is written atomically: uploads stream into `blobs/tmp/`, are
//! hashed on the way, fsynced, then renamed into place and the directory
//! fsynced; an interrupted upload leaves only a temp file, swept at startup.
//! What the store writes under `sha256/` is exactly the bytes it is named
//! after, but the disk (or an operator) may change them later, so every read
//! checks the hash, and a commit replaces whatever file holds the name: the
//! next upload of the same bytes heals a corrupt blob.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::StoreError;

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating) the store under `root` and removes temp files left by
    /// uploads a crash interrupted.
    pub fn open(root: &Path) -> Result<BlobStore, StoreError> {
        let store = BlobStore { root: root.to_owned() };
        for dir in [store.sha_dir(), store.tmp_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
        }
        let tmp = store.tmp_dir();
        let entries = std::fs::read_dir(&tmp).map_err(|e| StoreError::io("listing", &tmp, e))?;
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(store)
    }

    fn sha_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.sha_dir().join(sha256)
    }

    /// Reads a blob, checking that its bytes still hash to its name.
    pub fn read(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob(path));
            }
            Err(e) => return Err(StoreError::io("reading", path, e)),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(StoreError::Corrupt {
                what: "blob",
                key: path.display().to_string(),
                detail: format!(
                    "its bytes hash to sha256:{actual}, not to its name; deploying the same model again replaces it"
                ),
            });
        }
        Ok(bytes)
    }

    /// Every stored blob: its name (sha256), size and last write, for
    /// pruning. Blocking.
    pub fn list(&self) -> Result<Vec<(String, u64, std::time::SystemTime)>, StoreError> {
        let dir = self.sha_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| StoreError::io("listing", &dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("listing", &dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let meta = entry
                .metadata()
                .map_err(|e| StoreError::io("reading", entry.path(), e))?;
            if !meta.is_file() {
                continue;
            }
            let written = meta
                .modified()
                .map_err(|e| StoreError::io("reading", entry.path(), e))?;
            out.push((name, meta.len(), written));
        }
        out.sort();
        Ok(out)
    }

    /// Removes a blob if it was last written before `unless_newer_than`
    /// (a commit since then means something uses it again), then syncs the
    /// directory. True if it was removed. Blocking.
    pub fn remove(&self, sha256: &str, unless_newer_than: std::time::SystemTime) -> Result<bool, StoreError> {
        let path = self.path(sha256);
        match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(written) if written < unless_newer_than => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("reading", path, e)),
        }
        std::fs::remove_file(&path).map_err(|e| StoreError::io("removing", &path, e))?;
        let dir = self.sha_dir();
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io("syncing", &dir, e))?;
        Ok(true)
    }

    /// Stores bytes the daemon made (a quantized model), atomically like an
    /// upload; returns their sha256. Blocking.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        // Written even when the name exists: that file may be corrupt, and
        // checking it would read as much as this writes.
        let staged = self.stage(bytes)?;
        let sha256 = staged.sha256.clone();
        staged.commit(self)?;
        Ok(sha256)
    }

    /// Stages bytes already in memory (a manifest's files), like a finished
    /// upload: temp file, fsync, hash. Blocking.
    pub fn stage(&self, bytes: &[u8]) -> Result<StagedBlob, StoreError> {
        use std::io::Write;
        let path = self.tmp_dir().join(format!(
            "stage-{}-{}",
            std::process::id(),
            UPLOAD_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let guard = TempFile(Some(path.clone()));
        let mut file = std::fs::File::create(&path).map_err(|e| StoreError::io("creating", &path, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io("writing", &path, e))?;
        Ok(StagedBlob {
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            guard,
        })
    }

    /// Starts an upload into a fresh temp file.
    pub async fn begin_upload(&self) -> Result<Upload, StoreError> {
        let path = self.tmp_dir().join(format!(
            "upload-{}-{}",
            std::process::id(),
            UPLOAD_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| StoreError::io("creating", &path, e))?;
        Ok(Upload {
            file: Some(file),
            guard: TempFile(Some(path)),
            hasher: Sha256::new(),
            size: 0,
        })
    }
}

static UPLOAD_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Removes its file when dropped, unless the file was committed.
#[derive(Debug)]
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An upload in progress. Dropping it removes the temp file.
pub struct Upload {
    file: Option<tokio::fs::File>,
    guard: TempFile,
    hasher: Sha256,
    size: u64,
}

impl Upload {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        let path = self.guard.0.clone().unwrap_or_default();
        let file = self.file.as_mut().expect("open until finish");
        file.write_all(chunk)
            .await
            .map_err(|e| StoreError::io("writing", path, e))
    }

    /// Flushes the bytes to disk and returns the staged blob with its hash.
    pub async fn finish(mut self) -> Result<StagedBlob, StoreError> {
        let path = self.guard.0.clone().unwrap_or_default();
        let mut file = self.file.take().expect("open until finish");
        file.flush().await.map_err(|e| StoreError::io("writing", &path, e))?;
        file.sync_all().await.map_err(|e| StoreError::io("syncing", &path, e))?;
        Ok(StagedBlob {
            sha256: hex::encode(self.hasher.clone().finalize()),
            size: self.size,
            guard: TempFile(self.guard.0.take()),
        })
    }
}

/// A complete, synced upload not yet in the store. Dropping it removes it.
#[derive(Debug)]
pub struct StagedBlob {
    pub sha256: String,
    pub size: u64,
    guard: TempFile,
}

impl StagedBlob {
    pub fn path(&self) -> &Path {
        self.guard.0.as_deref().expect("staged until committed")
    }

    pub fn read(&self) -> Result<Vec<u8>, StoreError> {
        std::fs::read(self.path()).map_err(|e| StoreError::io("reading", self.path(), e))
    }

    /// Moves the blob into place (blocking: rename and directory fsync),
    /// replacing any file of that name: these bytes are known to hash to it,
    /// an existing file is not (a flipped bit that a restore reported), and
    /// the rename is cheaper than hashing that file again. A reader that
    /// has the old file open keeps reading it.
    pub fn commit(mut self, store: &BlobStore) -> Result<PathBuf, StoreError> {
        let from = self.guard.0.take().expect("staged until committed");
        let to = store.path(&self.sha256);
        std::fs::rename(&from, &to).map_err(|e| {
            let _ = std::fs::remove_file(&from);
            StoreError::io("storing", &to, e)
        })?;
        let dir = store.sha_dir();
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io("syncing", &dir, e))?;
        Ok(to)
    }
}
