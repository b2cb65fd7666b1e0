//! What the journal holds, as serde records (JSON in sled values, so that an
//! operator can read a dump and new optional fields need no migration).

use serde::{Deserialize, Serialize};

use dsmil_kinds::{BackendKind, DeployState, EventKind, Format, PerformanceHint, Precision, Target};

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRecord {
    pub name: String,
    /// The highest version number handed out so far.
    pub latest_version: u32,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionRecord {
    pub model: String,
    pub version: u32,
    pub sha256: String,
    pub size_bytes: u64,
    pub format: Format,
    pub classification: u32,
    pub created_ms: u64,
    #[serde(default)]
    pub note: String,
    /// The trusted key whose signature over the model was verified at
    /// deploy (none: deployed unsigned, or before signatures existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<SignedBy>,
}

/// A verified signature's key: its name in `[signing].trusted_keys` then,
/// and its fingerprint ("sha256:" + hex), which stays true if the name is
/// later given to another key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedBy {
    pub key: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateChange {
    pub state: DeployState,
    pub at_ms: u64,
    /// Time spent in the previous state.
    pub elapsed_ms: u64,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentRecord {
    pub id: u64,
    pub model: String,
    pub version: u32,
    pub device: u32,
    pub layer: u8,
    pub classification: u32,
    /// The device's configured target and the one actually used.
    pub target: Target,
    pub effective_target: Target,
    pub backend: BackendKind,
    /// OpenVINO's performance hint.
    #[serde(default)]
    pub performance_hint: PerformanceHint,
    /// Worker threads, each with its own infer request (0: the config's
    /// serving.workers_per_deployment, for records older than the field).
    #[serde(default)]
    pub workers: u32,
    /// OpenVINO's inference precision for this deployment.
    #[serde(default)]
    pub precision: Precision,
    /// The largest batch a request may send to a batched model (0: the
    /// config's serving.max_batch_size, for records older than the field).
    #[serde(default)]
    pub max_batch: u64,
    pub sha256: String,
    pub state: DeployState,
    pub history: Vec<StateChange>,
    pub created_ms: u64,
    /// Memory expected before loading, and measured after (0: not yet).
    #[serde(default)]
    pub estimated_bytes: u64,
    #[serde(default)]
    pub measured_bytes: u64,
    /// The concrete shape of each input that synthetic runs (warmup,
    /// health probes) feed, where the declared shape is dynamic: from the
    /// deploy's data or `--input-shape`. Empty: dynamic dimensions are 1.
    #[serde(default)]
    pub probe_shapes: Vec<(String, Vec<i64>)>,
    /// The values synthetic runs feed small integer and bool inputs (a
    /// sample rate, a mode flag), from the deploy's data: counting 0, 1, 2
    /// there can send a model down a branch it never takes. Empty: counted.
    #[serde(default)]
    pub probe_values: Vec<(String, Vec<i64>)>,
    /// Serving settings the deploy chose; what it left unset follows the
    /// config (`deploy::launch`).
    #[serde(default)]
    pub serving: ServingChoice,
}

/// How a deploy asked its deployment to serve. Each `None` (or empty list)
/// means the configuration's value at launch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServingChoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_op_threads: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_batch_sizes: Vec<u64>,
}

impl DeploymentRecord {
    pub fn last_change_ms(&self) -> u64 {
        self.history.last().map_or(self.created_ms, |c| c.at_ms)
    }
}

impl EventRecord {
    /// An event about a deployment: its model, version, device, layer and id.
    pub fn about(kind: EventKind, deployment: &DeploymentRecord, detail: impl Into<String>) -> EventRecord {
        EventRecord {
            seq: 0,
            at_ms: 0,
            kind,
            model: deployment.model.clone(),
            version: deployment.version,
            device: Some(deployment.device),
            layer: Some(deployment.layer),
            deployment_id: deployment.id,
            detail: detail.into(),
            principal: String::new(),
            caller_uid: None,
            caller_pid: None,
            transport: String::new(),
            peer: String::new(),
        }
        .by_current_caller()
    }

    /// An event about `model` (or the daemon, with ""), not a deployment.
    pub fn of(kind: EventKind, model: &str, detail: impl Into<String>) -> EventRecord {
        EventRecord {
            seq: 0,
            at_ms: 0,
            kind,
            model: model.to_owned(),
            version: 0,
            device: None,
            layer: None,
            deployment_id: 0,
            detail: detail.into(),
            principal: String::new(),
            caller_uid: None,
            caller_pid: None,
            transport: String::new(),
            peer: String::new(),
        }
        .by_current_caller()
    }

    /// The caller's fields, from the one [`EventCaller::acting`] set on this
    /// thread (none outside a caller's request).
    fn by_current_caller(self) -> EventRecord {
        CURRENT_CALLER.with_borrow(|c| match c {
            Some(c) => self.by(c),
            None => self,
        })
    }

    /// This event, as done by `caller`.
    pub fn by(self, caller: &EventCaller) -> EventRecord {
        EventRecord {
            principal: caller.principal.clone(),
            caller_uid: caller.uid,
            caller_pid: caller.pid,
            transport: caller.transport.clone(),
            peer: caller.peer.clone(),
            ..self
        }
    }
}

/// Who asked for what an event records: the principal and how it came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCaller {
    pub principal: String,
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    /// "unix" or "tcp".
    pub transport: String,
    /// A TCP caller's address ("" on the Unix socket).
    pub peer: String,
}

thread_local! {
    static CURRENT_CALLER: std::cell::RefCell<Option<EventCaller>> = const { std::cell::RefCell::new(None) };
}

impl EventCaller {
    /// Runs `f` (a caller's deploy, undeploy, rollback or reload, on its
    /// blocking thread) with every event made on this thread naming `self`.
    pub fn acting<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = CURRENT_CALLER.with_borrow_mut(|c| c.replace(self.clone()));
        struct Restore(Option<EventCaller>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT_CALLER.with_borrow_mut(|c| *c = previous);
            }
        }
        let _restore = Restore(previous);
        f()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    /// Assigned by the journal.
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub at_ms: u64,
    pub kind: EventKind,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub device: Option<u32>,
    #[serde(default)]
    pub layer: Option<u8>,
    #[serde(default)]
    pub deployment_id: u64,
    #[serde(default)]
    pub detail: String,
    /// Who asked (empty for the daemon's own actions: restores, alarms,
    /// the sampler, a file-watch reload).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_pid: Option<i32>,
    /// "unix" or "tcp"; empty with no caller.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transport: String,
    /// A TCP caller's address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
}
