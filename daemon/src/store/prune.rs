//! Pruning (`dsmilctl prune`): the versions nothing serves or can roll back
//! to are removed from the journal with their deployments and reports, then
//! the blobs no remaining record names are deleted; a dry run only lists
//! them. Events stay (append-only) and model records stay (version numbers
//! are never reused).
//!
//! What is always kept, whatever the dry run says: a version with an
//! `Active` deployment; the version a rollback from it would go back to (the
//! highest lower version that was ever Active: the rule of
//! `deploy::rollback`, which must stay the same); every version of a model
//! with a deploy in progress; and while any deploy is in progress, every
//! blob. A blob written less than [`BLOB_GRACE`] ago is kept too: a deploy
//! commits its blob just before journaling the version that names it.
//! The journal part is one transaction that is refused if any deployment
//! changed since it was planned ([`StoreError::PruneRaced`]).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use dsmil_kinds::DeployState;

use super::{BlobStore, DeploymentRecord, Journal, StoreError};

/// How recently written a blob may be and still be removed: never.
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);

/// What a prune removed, or (dry run) would remove.
#[derive(Debug, Default)]
pub struct Pruned {
    pub versions: Vec<PrunedVersion>,
    pub blobs: Vec<PrunedBlob>,
    /// Why some things were kept that might look prunable.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrunedVersion {
    pub model: String,
    pub version: u32,
    /// Its deployments, removed with it.
    pub deployments: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrunedBlob {
    pub sha256: String,
    pub size_bytes: u64,
}

/// Prunes the journal and the blob store, or with `dry_run` only says what
/// it would remove. Blocking.
pub fn prune(journal: &Journal, blobs: &BlobStore, dry_run: bool) -> Result<Pruned, StoreError> {
    let next_id = journal.next_deployment_id()?;
    let deployments = journal.deployments()?;
    let mut pruned = Pruned::default();
    for model in journal.models()? {
        let mine: Vec<&DeploymentRecord> = deployments.iter().filter(|d| d.model == model.name).collect();
        if let Some(busy) = mine.iter().find(|d| d.state.is_in_progress()) {
            pruned.notes.push(format!(
                "{}: kept whole, deployment {} is {}",
                model.name, busy.id, busy.state
            ));
            continue;
        }
        let keep = kept_versions(&mine);
        for version in journal.versions(&model.name)? {
            if keep.contains(&version.version) {
                continue;
            }
            pruned.versions.push(PrunedVersion {
                model: model.name.clone(),
                version: version.version,
                deployments: mine
                    .iter()
                    .filter(|d| d.version == version.version)
                    .map(|d| d.id)
                    .collect(),
            });
        }
    }
    let doomed: HashSet<u64> = pruned
        .versions
        .iter()
        .flat_map(|v| v.deployments.iter().copied())
        .collect();
    if !dry_run && !pruned.versions.is_empty() {
        let versions: Vec<(String, u32)> = pruned.versions.iter().map(|v| (v.model.clone(), v.version)).collect();
        let ids: Vec<u64> = doomed.iter().copied().collect();
        journal.remove_versions(next_id, &deployments, &versions, &ids)?;
    }
    // The blobs, from the journal as it now is (or, for a dry run, as it
    // would be).
    let gone: HashSet<(&str, u32)> = pruned.versions.iter().map(|v| (v.model.as_str(), v.version)).collect();
    let deployments = journal.deployments()?;
    if let Some(busy) = deployments.iter().find(|d| d.state.is_in_progress()) {
        pruned
            .notes
            .push(format!("no blob removed: deployment {} is {}", busy.id, busy.state));
        return Ok(pruned);
    }
    let mut named: HashSet<String> = deployments
        .iter()
        .filter(|d| !doomed.contains(&d.id))
        .map(|d| d.sha256.clone())
        .collect();
    for model in journal.models()? {
        for v in journal.versions(&model.name)? {
            if !gone.contains(&(model.name.as_str(), v.version)) {
                named.insert(v.sha256);
            }
        }
    }
    let cutoff = SystemTime::now()
        .checked_sub(BLOB_GRACE)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut young = 0;
    for (sha256, size_bytes, written) in blobs.list()? {
        if named.contains(&sha256) {
            continue;
        }
        if written >= cutoff {
            young += 1;
            continue;
        }
        if dry_run || blobs.remove(&sha256, cutoff)? {
            pruned.blobs.push(PrunedBlob { sha256, size_bytes });
        }
    }
    if young > 0 {
        pruned.notes.push(format!(
            "{young} unreferenced blob(s) kept: written less than {} min ago",
            BLOB_GRACE.as_secs() / 60
        ));
    }
    Ok(pruned)
}

/// The versions of one model (its deployments) that stay: each one with an
/// Active deployment, and for each of those the version a rollback would
/// return to.
fn kept_versions(mine: &[&DeploymentRecord]) -> HashSet<u32> {
    let ever_active = |d: &&&DeploymentRecord| d.history.iter().any(|c| c.state == DeployState::Active);
    let mut keep = HashSet::new();
    for serving in mine.iter().filter(|d| d.state == DeployState::Active) {
        keep.insert(serving.version);
        let previous = mine
            .iter()
            .filter(ever_active)
            .map(|d| d.version)
            .filter(|&v| v < serving.version)
            .max();
        keep.extend(previous);
    }
    keep
}
