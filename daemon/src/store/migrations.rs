//! The journal's schema versions and the step from each to the next.
//!
//! `MIGRATIONS[i]` moves a journal from version i to i + 1; `Journal::open`
//! runs the steps a journal lacks, in order, and records the version. Each
//! step has a test in `tests.rs`. A step never deletes what it cannot read:
//! it refuses, naming the entry.

use sled::{Db, Tree};

use super::StoreError;
use super::journal::{decode, encode};
use super::records::{DeploymentRecord, EventRecord, VersionRecord};

pub const SCHEMA_VERSION: u32 = 3;

type Migration = fn(&Db) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` moves a journal from version i to i + 1.
pub(super) const MIGRATIONS: [Migration; 3] = [migrate_0_to_1, migrate_1_to_2, migrate_2_to_3];

/// Version 0 is an empty database: create the trees and the counters.
fn migrate_0_to_1(db: &Db) -> Result<(), StoreError> {
    for name in ["models", "versions", "deployments", "events"] {
        db.open_tree(name)?;
    }
    let meta = db.open_tree("meta")?;
    meta.insert("next_deployment_id", &1u64.to_be_bytes())?;
    meta.insert("next_event_seq", &1u64.to_be_bytes())?;
    Ok(())
}

/// Version 2 adds the quantization reports, one per model version.
fn migrate_1_to_2(db: &Db) -> Result<(), StoreError> {
    db.open_tree("reports")?;
    Ok(())
}

/// Version 3 holds typed records: every version, deployment and event is
/// read through its typed form (a spelling no kind knows is refused, naming
/// the entry, rather than misread later) and written back whole, so the
/// defaults older records left implicit (hint, precision) are explicit.
fn migrate_2_to_3(db: &Db) -> Result<(), StoreError> {
    fn retype<T: serde::Serialize + serde::de::DeserializeOwned>(
        tree: &Tree,
        name: &str,
        key_text: impl Fn(&[u8]) -> String,
    ) -> Result<(), StoreError> {
        for kv in tree.iter() {
            let (key, value) = kv?;
            let record: T = decode(&value, &format!("{name} {}", key_text(&key)))?;
            tree.insert(key, encode(&record))?;
        }
        Ok(())
    }
    let id = |k: &[u8]| <[u8; 8]>::try_from(k).map_or_else(|_| hex::encode(k), |b| u64::from_be_bytes(b).to_string());
    // <name> 0x00 <u32 BE>, shown as name@version.
    let versioned = |k: &[u8]| match k.split_last_chunk::<4>() {
        Some((name, version)) if name.last() == Some(&0) => format!(
            "{}@{}",
            String::from_utf8_lossy(&name[..name.len() - 1]),
            u32::from_be_bytes(*version)
        ),
        _ => hex::encode(k),
    };
    retype::<VersionRecord>(&db.open_tree("versions")?, "version", versioned)?;
    retype::<DeploymentRecord>(&db.open_tree("deployments")?, "deployment", id)?;
    retype::<EventRecord>(&db.open_tree("events")?, "event", id)?;
    Ok(())
}

#[cfg(test)]
pub(super) fn run_migration(db: &Db, index: usize) -> Result<(), StoreError> {
    MIGRATIONS[index](db)
}
