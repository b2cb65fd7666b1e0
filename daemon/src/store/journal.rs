//! The sled journal.
//!
//! # Layout (schema version 3)
//!
//! ```text
//! tree "meta"         "schema_version"      -> u32 BE
//!                     "next_deployment_id"  -> u64 BE   (ids start at 1)
//!                     "next_event_seq"      -> u64 BE   (seqs start at 1)
//!                     "manifest/" <name>    -> fingerprint (UTF-8) of the
//!                                              models.d manifest that
//!                                              deployed <name>
//! tree "models"       <name>                -> ModelRecord (JSON)
//! tree "versions"     <name> 0x00 <u32 BE>  -> VersionRecord (JSON)
//! tree "deployments"  <u64 BE id>           -> DeploymentRecord (JSON)
//! tree "events"       <u64 BE seq>          -> EventRecord (JSON), append-only
//! tree "reports"      <name> 0x00 <u32 BE>  -> a quantization report (JSON, the
//!                                              caller's type: compress::Report) (since v2)
//! ```
//!
//! Big-endian integer keys keep sled's byte order equal to numeric order, so
//! scans come back oldest first. Since v3 every kind-like field of a record
//! (state, format, target, backend, hint, precision, event kind) holds one of
//! the spellings of its `dsmil_kinds` type, so records decode into typed
//! values. Writes that touch several trees run in one
//! sled transaction, then the database is flushed before returning: a crash
//! leaves either all of a change or none of it.
//!
//! # Its files on disk
//!
//! Besides sled's own files the directory holds `integrity::MARKER`. The journal
//! remembers the (device, inode) of the directory, the marker and sled's
//! `db` at open and checks them after every flush (see the store's
//! `Integrity` notes): sled keeps writing through its open descriptors into
//! files a restart would never read once the directory is removed or
//! replaced, so an unchanged identity is what makes a flush durable.
//!
//! # Migrations
//!
//! `migrations.rs` lists, in order, the step from each schema version to
//! the next. Opening a journal runs the steps it lacks and records the
//! version; a journal from a newer dsmild is refused rather than misread.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Db, Tree};

use super::StoreError;
use super::integrity::Files;
use super::migrations::{MIGRATIONS, SCHEMA_VERSION};
use super::records::{DeploymentRecord, EventRecord, ModelRecord, StateChange, VersionRecord, now_ms};
use dsmil_kinds::{BackendKind, DeployState, EventKind, Format, PerformanceHint, Precision, Target};

#[derive(Clone)]
pub struct Journal {
    /// The newest event's sequence number, for callers that wait for events.
    latest_event: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    files: Arc<Files>,
    db: Db,
    meta: Tree,
    models: Tree,
    versions: Tree,
    deployments: Tree,
    events: Tree,
    reports: Tree,
}

/// What a deploy records before its pipeline starts.
pub struct NewDeployment {
    pub model: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub format: Format,
    pub classification: u32,
    pub note: String,
    pub device: u32,
    pub layer: u8,
    pub target: Target,
    pub effective_target: Target,
    pub backend: BackendKind,
    pub performance_hint: PerformanceHint,
    pub workers: u32,
    pub precision: Precision,
    pub max_batch: u64,
    pub estimated_bytes: u64,
    /// Shapes for synthetic runs (`DeploymentRecord::probe_shapes`).
    pub probe_shapes: Vec<(String, Vec<i64>)>,
    /// Values for synthetic runs (`DeploymentRecord::probe_values`).
    pub probe_values: Vec<(String, Vec<i64>)>,
    pub serving: super::ServingChoice,
    /// A new version's verified signer (an existing version keeps its own).
    pub signed_by: Option<super::SignedBy>,
    /// Re-deploy an existing version (a rollback or a reload) instead of
    /// recording a new one.
    pub existing: Option<Existing>,
}

/// An existing version deployed again, and why.
pub struct Existing {
    pub version: u32,
    /// Rollback or Reload.
    pub kind: EventKind,
    pub reason: String,
}

/// How long an open waits for sled's file lock to be released by the same
/// process's previous handle, whose background I/O may outlive its drop
/// for a moment. Another process holding it is refused after this wait.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The sled database under `dir`, without sled's background flusher (every
/// write is flushed before the call returns anyway). A lock still held by
/// this process's previous handle of the same journal (an in-process
/// restart, a test's reopen) is waited for, up to [`LOCK_WAIT`].
pub(super) fn open_sled(dir: &Path) -> Result<Db, sled::Error> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open();
        match opened {
            // sled reports the held lock as an Other error wrapping EWOULDBLOCK.
            Err(sled::Error::Io(e))
                if (e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock"))
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

impl Journal {
    pub fn open(dir: &Path) -> Result<Journal, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("creating", dir, e))?;
        let db = open_sled(dir)?;
        let files = Arc::new(Files::record(dir)?);
        let meta = db.open_tree("meta")?;
        let found = match meta.get("schema_version")? {
            Some(v) => u32::from_be_bytes(fixed(&v, "meta/schema_version")?),
            None => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (from, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            step(&db)?;
            meta.insert("schema_version", &(from as u32 + 1).to_be_bytes())?;
        }
        db.flush()?;
        let events = db.open_tree("events")?;
        let newest = match events.last()? {
            Some((k, _)) => u64::from_be_bytes(fixed(&k, "events/last")?),
            None => 0,
        };
        Ok(Journal {
            latest_event: std::sync::Arc::new(tokio::sync::watch::Sender::new(newest)),
            files,
            models: db.open_tree("models")?,
            versions: db.open_tree("versions")?,
            deployments: db.open_tree("deployments")?,
            events,
            reports: db.open_tree("reports")?,
            meta,
            db,
        })
    }

    /// Stores the quantization report of a model version.
    /// The fingerprint of the manifest that last deployed `name` (models.d).
    pub fn manifest(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get(format!("manifest/{name}"))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every model name a manifest deployed.
    pub fn manifests(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for kv in self.meta.scan_prefix("manifest/") {
            let (k, _) = kv?;
            names.push(String::from_utf8_lossy(&k["manifest/".len()..]).into_owned());
        }
        Ok(names)
    }

    /// Records (Some) or forgets (None) the manifest behind `name`.
    pub fn set_manifest(&self, name: &str, fingerprint: Option<&str>) -> Result<(), StoreError> {
        self.writable()?;
        let key = format!("manifest/{name}");
        match fingerprint {
            Some(f) => self.meta.insert(key, f.as_bytes())?,
            None => self.meta.remove(key)?,
        };
        self.flush()
    }

    pub fn put_report(&self, model: &str, version: u32, report: &impl serde::Serialize) -> Result<(), StoreError> {
        self.writable()?;
        self.reports.insert(version_key(model, version), encode(report))?;
        self.flush()
    }

    pub fn report<R: serde::de::DeserializeOwned>(&self, model: &str, version: u32) -> Result<Option<R>, StoreError> {
        self.reports
            .get(version_key(model, version))?
            .map(|v| decode(&v, &format!("reports/{model}/{version}")))
            .transpose()
    }

    /// A receiver that changes whenever an event is appended.
    pub fn subscribe_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.latest_event.subscribe()
    }

    /// Publishes the newest sequence number after a flushed write.
    fn published(&self) {
        if let Ok(Some((k, _))) = self.events.last()
            && let Ok(seq) = fixed::<8>(&k, "events/last")
        {
            self.latest_event.send_replace(u64::from_be_bytes(seq));
        }
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let v = self.meta.get("schema_version")?.ok_or_else(|| StoreError::Corrupt {
            what: "journal entry",
            key: "meta/schema_version".into(),
            detail: "missing".into(),
        })?;
        Ok(u32::from_be_bytes(fixed(&v, "meta/schema_version")?))
    }

    /// Records a new version of `model` and its deployment in state Uploaded,
    /// with a `deploy` event, atomically.
    ///
    /// Version numbers only go up, and one whose deploy failed keeps its
    /// number: the failed deployment's history, its events (journald
    /// included), its quantization report (`reports`, keyed by version: a
    /// gate failure's report is what explains it) and `prune`'s plans all
    /// name it, so reusing it would make "version 3" mean two uploads with
    /// different sha256s. `dsmilctl models` and `show` mark such versions
    /// as failed attempts instead.
    pub fn create_deployment(&self, new: NewDeployment) -> Result<(VersionRecord, DeploymentRecord), StoreError> {
        self.writable()?;
        let trees = (
            &self.meta,
            &self.models,
            &self.versions,
            &self.deployments,
            &self.events,
        );
        let result = trees.transaction(|(meta, models, versions, deployments, events)| {
            let now = now_ms();
            let mut model = match models.get(new.model.as_bytes())? {
                Some(v) => decode::<ModelRecord>(&v, &new.model).map_err(abort)?,
                None => ModelRecord {
                    name: new.model.clone(),
                    latest_version: 0,
                    created_ms: now,
                },
            };
            let version = match &new.existing {
                Some(Existing { version: number, .. }) => match versions.get(version_key(&new.model, *number))? {
                    Some(v) => decode::<VersionRecord>(&v, &new.model).map_err(abort)?,
                    None => {
                        return Err(abort(StoreError::Corrupt {
                            what: "journal entry",
                            key: format!("versions/{}/{number}", new.model),
                            detail: "missing".into(),
                        }));
                    }
                },
                None => {
                    model.latest_version += 1;
                    VersionRecord {
                        model: new.model.clone(),
                        version: model.latest_version,
                        sha256: new.sha256.clone(),
                        size_bytes: new.size_bytes,
                        format: new.format,
                        classification: new.classification,
                        created_ms: now,
                        note: new.note.clone(),
                        signed_by: new.signed_by.clone(),
                    }
                }
            };
            let id = next_counter(meta, "next_deployment_id")?;
            let deployment = DeploymentRecord {
                id,
                model: new.model.clone(),
                version: version.version,
                device: new.device,
                layer: new.layer,
                classification: new.classification,
                target: new.target,
                effective_target: new.effective_target,
                backend: new.backend,
                performance_hint: new.performance_hint,
                workers: new.workers,
                precision: new.precision,
                max_batch: new.max_batch,
                serving: new.serving.clone(),
                sha256: new.sha256.clone(),
                state: DeployState::Uploaded,
                history: vec![StateChange {
                    state: DeployState::Uploaded,
                    at_ms: now,
                    elapsed_ms: 0,
                    detail: format!("{} bytes, sha256:{}", new.size_bytes, new.sha256),
                }],
                created_ms: now,
                estimated_bytes: new.estimated_bytes,
                measured_bytes: 0,
                probe_shapes: new.probe_shapes.clone(),
                probe_values: new.probe_values.clone(),
            };
            models.insert(new.model.as_bytes(), encode(&model))?;
            if new.existing.is_none() {
                versions.insert(version_key(&new.model, version.version), encode(&version))?;
            }
            deployments.insert(&id.to_be_bytes(), encode(&deployment))?;
            let seq = next_counter(meta, "next_event_seq")?;
            let (kind, detail) = match &new.existing {
                Some(e) if e.kind == EventKind::Rollback => {
                    (e.kind, format!("rolling back to version {}: {}", e.version, e.reason))
                }
                Some(e) => (e.kind, format!("reloading version {}: {}", e.version, e.reason)),
                None => (
                    EventKind::Deploy,
                    format!("version {} uploaded for device {}", version.version, new.device),
                ),
            };
            let event = EventRecord {
                seq,
                at_ms: now,
                ..EventRecord::about(kind, &deployment, detail)
            };
            events.insert(&seq.to_be_bytes(), encode(&event))?;
            Ok((version, deployment))
        });
        let out = result.map_err(unwrap_tx)?;
        self.flush()?;
        self.published();
        Ok(out)
    }

    /// Moves deployment `id` to `to`, appending to its history; refuses a move
    /// the state machine does not allow.
    pub fn transition(&self, id: u64, to: DeployState, detail: &str) -> Result<DeploymentRecord, StoreError> {
        let record = self.apply(&[(id, to, detail)], None)?;
        Ok(record.into_iter().next().expect("one change in, one record out"))
    }

    /// Applies several transitions and an optional event in one transaction:
    /// e.g. activating a version while retiring the one it replaces.
    pub fn apply(
        &self,
        changes: &[(u64, DeployState, &str)],
        event: Option<EventRecord>,
    ) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.writable()?;
        let trees = (&self.meta, &self.deployments, &self.events);
        let result = trees.transaction(|(meta, deployments, events)| {
            let now = now_ms();
            let mut out = Vec::with_capacity(changes.len());
            for &(id, to, detail) in changes {
                let key = id.to_be_bytes();
                let mut record: DeploymentRecord = match deployments.get(key)? {
                    Some(v) => decode(&v, &format!("deployments/{id}")).map_err(abort)?,
                    None => return Err(abort(StoreError::UnknownDeployment(id))),
                };
                if !record.state.can_move_to(to) {
                    return Err(abort(StoreError::InvalidTransition {
                        id,
                        from: record.state,
                        to,
                    }));
                }
                let elapsed_ms = now.saturating_sub(record.last_change_ms());
                record.state = to;
                record.history.push(StateChange {
                    state: to,
                    at_ms: now,
                    elapsed_ms,
                    detail: detail.to_owned(),
                });
                deployments.insert(&key, encode(&record))?;
                out.push(record);
            }
            if let Some(mut event) = event.clone() {
                event.seq = next_counter(meta, "next_event_seq")?;
                event.at_ms = now;
                events.insert(&event.seq.to_be_bytes(), encode(&event))?;
            }
            Ok(out)
        });
        let out = result.map_err(unwrap_tx)?;
        self.flush()?;
        if event.is_some() {
            self.published();
        }
        Ok(out)
    }

    /// Records a deployment's measured memory footprint.
    pub fn set_measured(&self, id: u64, bytes: u64) -> Result<DeploymentRecord, StoreError> {
        self.update(id, |r| r.measured_bytes = bytes)
    }

    /// Records the blob a deployment serves (its quantized model).
    /// Records the shapes and small integer values synthetic runs of this
    /// deployment use.
    pub fn set_probe_inputs(
        &self,
        id: u64,
        shapes: &[(String, Vec<i64>)],
        values: &[(String, Vec<i64>)],
    ) -> Result<DeploymentRecord, StoreError> {
        self.update(id, |r| {
            r.probe_shapes = shapes.to_vec();
            r.probe_values = values.to_vec();
        })
    }

    pub fn set_served(&self, id: u64, sha256: &str) -> Result<DeploymentRecord, StoreError> {
        self.update(id, |r| r.sha256 = sha256.to_owned())
    }

    /// Changes fields of a deployment that are not its state.
    fn update(&self, id: u64, change: impl Fn(&mut DeploymentRecord)) -> Result<DeploymentRecord, StoreError> {
        self.writable()?;
        let key = id.to_be_bytes();
        let result = self.deployments.transaction(|deployments| {
            let mut record: DeploymentRecord = match deployments.get(key)? {
                Some(v) => decode(&v, &format!("deployments/{id}")).map_err(abort)?,
                None => return Err(abort(StoreError::UnknownDeployment(id))),
            };
            change(&mut record);
            deployments.insert(&key, encode(&record))?;
            Ok(record)
        });
        let record = result.map_err(unwrap_tx)?;
        self.flush()?;
        Ok(record)
    }

    /// Appends an audit event; returns its sequence number.
    pub fn append_event(&self, event: EventRecord) -> Result<u64, StoreError> {
        self.writable()?;
        let result = (&self.meta, &self.events).transaction(|(meta, events)| {
            let mut event = event.clone();
            event.seq = next_counter(meta, "next_event_seq")?;
            event.at_ms = now_ms();
            events.insert(&event.seq.to_be_bytes(), encode(&event))?;
            Ok(event.seq)
        });
        let seq = result.map_err(unwrap_tx)?;
        self.flush()?;
        self.published();
        Ok(seq)
    }

    pub fn deployment(&self, id: u64) -> Result<DeploymentRecord, StoreError> {
        match self.deployments.get(id.to_be_bytes())? {
            Some(v) => decode(&v, &format!("deployments/{id}")),
            None => Err(StoreError::UnknownDeployment(id)),
        }
    }

    /// All deployments, oldest first.
    pub fn deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        self.deployments
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&v, &format!("deployments/{:?}", k.as_ref()))
            })
            .collect()
    }

    pub fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        self.models
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&v, &String::from_utf8_lossy(&k))
            })
            .collect()
    }

    /// A model's versions, oldest first.
    pub fn versions(&self, model: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let mut prefix = model.as_bytes().to_vec();
        prefix.push(0);
        self.versions
            .scan_prefix(prefix)
            .map(|kv| {
                let (_, v) = kv?;
                decode(&v, &format!("versions/{model}"))
            })
            .collect()
    }

    pub fn version(&self, model: &str, version: u32) -> Result<Option<VersionRecord>, StoreError> {
        self.versions
            .get(version_key(model, version))?
            .map(|v| decode(&v, &format!("versions/{model}/{version}")))
            .transpose()
    }

    /// Events with seq > `after`, optionally of one model, at most `limit`
    /// (0: no limit), oldest first.
    pub fn events(&self, after: u64, model: Option<&str>, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.events.range(after.saturating_add(1).to_be_bytes()..) {
            let (k, v) = kv?;
            let event: EventRecord = decode(&v, &format!("events/{:?}", k.as_ref()))?;
            if model.is_some_and(|m| m != event.model) {
                continue;
            }
            out.push(event);
            if limit != 0 && out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The id the next deployment will get: unchanged means no deployment
    /// was created in between.
    pub(super) fn next_deployment_id(&self) -> Result<u64, StoreError> {
        Ok(match self.meta.get("next_deployment_id")? {
            Some(v) => u64::from_be_bytes(fixed(&v, "next_deployment_id")?),
            None => 1,
        })
    }

    /// Removes `versions` of their models, with their reports and the
    /// deployments `deployments`, in one transaction, provided the journal
    /// is as `seen` (every deployment, read after `next_id`) says: no
    /// deployment created or changed since, else [`StoreError::PruneRaced`]
    /// and nothing is removed. Model records stay, so version numbers are
    /// never reused; events stay (append-only).
    pub(super) fn remove_versions(
        &self,
        next_id: u64,
        seen: &[DeploymentRecord],
        versions: &[(String, u32)],
        deployments: &[u64],
    ) -> Result<(), StoreError> {
        self.writable()?;
        let trees = (&self.meta, &self.versions, &self.deployments, &self.reports);
        let result = trees.transaction(|(meta, version_tree, deployment_tree, reports)| {
            let now_next = match meta.get("next_deployment_id")? {
                Some(v) => u64::from_be_bytes(fixed(&v, "next_deployment_id").map_err(abort)?),
                None => 1,
            };
            if now_next != next_id {
                return Err(abort(StoreError::PruneRaced));
            }
            for record in seen {
                let key = record.id.to_be_bytes();
                let now: Option<DeploymentRecord> = deployment_tree
                    .get(key)?
                    .map(|v| decode(&v, &format!("deployments/{}", record.id)))
                    .transpose()
                    .map_err(abort)?;
                if now.as_ref() != Some(record) {
                    return Err(abort(StoreError::PruneRaced));
                }
            }
            for id in deployments {
                deployment_tree.remove(&id.to_be_bytes())?;
            }
            for (model, version) in versions {
                version_tree.remove(version_key(model, *version))?;
                reports.remove(version_key(model, *version))?;
            }
            Ok(())
        });
        result.map_err(unwrap_tx)?;
        self.flush()
    }

    /// The newest events with seq > `after` that `keep` accepts, at most
    /// `limit` (0: no limit), newest first. Reads back from the end of the
    /// log and stops at `limit`, so the newest few cost little however long
    /// the log is.
    pub fn newest_events(
        &self,
        after: u64,
        limit: usize,
        mut keep: impl FnMut(&EventRecord) -> bool,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.events.range(after.saturating_add(1).to_be_bytes()..).rev() {
            let (k, v) = kv?;
            let event: EventRecord = decode(&v, &format!("events/{:?}", k.as_ref()))?;
            if !keep(&event) {
                continue;
            }
            out.push(event);
            if limit != 0 && out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Flushes to disk, then checks that the disk is still where a restart
    /// will read the journal: only then is what was written durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.verify()
    }

    /// Checks that the journal's directory, marker and data file are the
    /// ones it opened. The first mismatch is kept: every later write is
    /// refused with it, since sled cannot move to the new files. Blocking
    /// (a few stats).
    pub fn verify(&self) -> Result<(), StoreError> {
        self.writable()?;
        for (path, identity) in &self.files.watched {
            let change = match std::fs::metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == *identity => continue,
                Ok(_) => "was replaced",
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was removed",
                // Not proof of a swap (say, a permission change): report
                // it for this call without giving up on the journal.
                Err(e) => return Err(StoreError::io("checking", path, e)),
            };
            let what = if *path == self.files.dir {
                "its directory".to_owned()
            } else {
                format!("its file {}", path.display())
            };
            let why = self.files.lost.get_or_init(|| {
                let why = format!(
                    "{what} {change} while dsmild was running; nothing more can be recorded \
                     (deploys, undeploys and events are refused): put it back or restore it, then restart dsmild"
                );
                tracing::error!(journal = %self.files.dir.display(), "{why}");
                why
            });
            return Err(self.files.lost_error(why));
        }
        Ok(())
    }

    /// Whether the journal's files were found gone (it refuses writes).
    pub fn is_lost(&self) -> bool {
        self.files.lost.get().is_some()
    }

    /// Refuses a write once the journal's files were found gone.
    fn writable(&self) -> Result<(), StoreError> {
        match self.files.lost.get() {
            Some(why) => Err(self.files.lost_error(why)),
            None => Ok(()),
        }
    }
}

fn version_key(model: &str, version: u32) -> Vec<u8> {
    let mut key = model.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn next_counter(
    meta: &sled::transaction::TransactionalTree,
    key: &str,
) -> Result<u64, ConflictableTransactionError<StoreError>> {
    let current = match meta.get(key)? {
        Some(v) => u64::from_be_bytes(fixed(&v, key).map_err(abort)?),
        None => 1,
    };
    meta.insert(key, &(current + 1).to_be_bytes())?;
    Ok(current)
}

fn fixed<const N: usize>(bytes: &[u8], key: &str) -> Result<[u8; N], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        what: "journal entry",
        key: key.to_owned(),
        detail: format!("expected {N} bytes, found {}", bytes.len()),
    })
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize: plain data, string keys")
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], key: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: "journal entry",
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn unwrap_tx(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}
