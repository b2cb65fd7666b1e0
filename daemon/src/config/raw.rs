//! The TOML document as written: serde structs mirroring config/dsmil.toml,
//! with no defaults of their own (the embedded file supplies them) and unknown
//! keys refused.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub topology: RawTopology,
    pub layers: Vec<RawLayer>,
    #[serde(default)]
    pub devices: BTreeMap<String, RawDevice>,
    pub hardware: RawHardware,
    pub memory: RawMemory,
    pub quantization: RawQuantization,
    pub deployment: RawDeployment,
    pub serving: RawServing,
    pub monitoring: RawMonitoring,
    pub logging: RawLogging,
    pub listeners: RawListeners,
    pub access: RawAccess,
    pub signing: RawSigning,
    pub paths: RawPaths,
    pub runtimes: RawRuntimes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    pub device_count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLayer {
    pub id: u8,
    pub name: String,
    pub devices: String,
    #[serde(default)]
    pub reserved: bool,
    pub memory_budget_gb: Option<f64>,
    pub target: Option<String>,
    pub max_parameters: Option<u64>,
    pub cpu_backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub target: Option<String>,
    pub role: Option<String>,
    pub cpu_backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHardware {
    pub fallback_target: String,
    pub cpu_backend: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemory {
    pub total_gb: f64,
    pub available_gb: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuantization {
    pub precision: String,
    pub min_accuracy_retention: f64,
    pub calibration_samples: u32,
    pub method: String,
    pub percentile: f64,
    pub activations: String,
    pub fallback_evaluations: u32,
    pub min_position_agreement: f64,
    pub min_sequence_match: f64,
    pub min_cosine: f64,
    pub min_snr_db: f64,
    pub min_mask_iou: f64,
    pub min_int8_mac_share: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub manifests_dir: String,
    pub warmup_iterations: u32,
    pub health_check_timeout_seconds: u64,
    pub auto_rollback_on_failure: bool,
    pub probation_requests: u32,
    pub probation_seconds: u64,
    pub health_probe_interval_seconds: f64,
    pub health_probe_failures: u32,
    pub max_model_size_mb: u64,
    pub allowed_operator_domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServing {
    pub queue_capacity: usize,
    pub workers_per_deployment: usize,
    pub intra_op_threads: usize,
    pub max_request_bytes: u64,
    pub max_batch_size: u64,
    pub dynamic_batching: bool,
    pub max_queue_delay_us: u64,
    pub preferred_batch_sizes: Vec<u64>,
    pub cpu_pinning: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitoring {
    pub metrics_collection_interval_seconds: u64,
    pub drift_detection_threshold_percent: f64,
    pub drift_baseline_rows: u32,
    pub drift_window_rows: u32,
    pub drift_auto_rollback: bool,
    pub shadow_fraction: f64,
    pub alert_on_latency_p99_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListeners {
    pub unix_socket: String,
    pub tcp: String,
    pub metrics: String,
    pub http: String,
    pub tls_certificate: String,
    pub tls_key: String,
    pub tls_client_ca: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    pub state_dir: String,
    pub cache_dir: String,
    pub runtime_dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntimes {
    pub onnxruntime_library: String,
    pub openvino_library: String,
    pub openvino_inference_precision: String,
    pub load_at_startup: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub format: String,
    pub level: String,
    pub journal_socket: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    pub socket_group: RawId,
    pub tcp_anonymous_clearance: u8,
    pub max_concurrent_inferences: u32,
    pub max_concurrent_deploys: u32,
    pub principals: Vec<RawPrincipal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrincipal {
    pub name: String,
    #[serde(default)]
    pub users: Vec<RawId>,
    #[serde(default)]
    pub groups: Vec<RawId>,
    #[serde(default)]
    pub certificate_names: Vec<String>,
    pub role: String,
    pub clearance: u8,
    pub max_concurrent_inferences: Option<u32>,
    pub max_concurrent_deploys: Option<u32>,
}

/// A user or group: a name, or a numeric id.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawId {
    Id(u32),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    pub trusted_keys: Vec<RawTrustedKey>,
    pub required_layers: Vec<u8>,
}

/// A trusted public key: inline (`public_key`) or in a PEM file (`path`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedKey {
    pub name: String,
    pub public_key: Option<String>,
    pub path: Option<String>,
}
