//! What the journal holds, as serde records (JSON in sled values, so that an
//! operator can read a dump and new optional fields need no migration).

use serde::{Deserialize, Serialize};

use crate::deploy::DeployState;

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
    pub format: String,
    pub classification: u32,
    pub created_ms: u64,
    #[serde(default)]
    pub note: String,
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
    pub target: String,
    pub effective_target: String,
    pub backend: String,
    /// OpenVINO's performance hint: "latency" or "throughput".
    #[serde(default = "latency")]
    pub performance_hint: String,
    /// Worker threads, each with its own infer request (0: the config's
    /// serving.workers_per_deployment, for records older than the field).
    #[serde(default)]
    pub workers: u32,
    /// OpenVINO's inference precision for this deployment ("": the
    /// daemon's default).
    #[serde(default)]
    pub precision: String,
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
}

fn latency() -> String {
    "latency".into()
}

impl DeploymentRecord {
    /// The workers (infer requests) this deployment runs with.
    pub fn workers(&self, config: &crate::config::Config) -> usize {
        match self.workers {
            0 => config.serving.workers_per_deployment,
            n => n as usize,
        }
    }

    /// The limits every request to this deployment is checked against.
    pub fn request_limits(&self, config: &crate::config::Config) -> crate::backend::RequestLimits {
        crate::backend::RequestLimits {
            max_bytes: config.serving.max_request_bytes,
            max_batch: match self.max_batch {
                0 => config.serving.max_batch_size,
                n => n,
            },
        }
    }

    pub fn last_change_ms(&self) -> u64 {
        self.history.last().map_or(self.created_ms, |c| c.at_ms)
    }
}

impl EventRecord {
    /// An event about a deployment: its model, version, device, layer and id.
    pub fn about(kind: &str, deployment: &DeploymentRecord, detail: impl Into<String>) -> EventRecord {
        EventRecord {
            kind: kind.into(),
            model: deployment.model.clone(),
            version: deployment.version,
            device: Some(deployment.device),
            layer: Some(deployment.layer),
            deployment_id: deployment.id,
            detail: detail.into(),
            ..EventRecord::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EventRecord {
    /// Assigned by the journal.
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub at_ms: u64,
    /// deploy, activate, retire, undeploy, refuse, fail, restore, interrupted, ...
    pub kind: String,
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
}
