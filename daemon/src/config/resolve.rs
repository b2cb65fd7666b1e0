//! From the raw document to a [`Config`]: every value checked, every problem
//! collected (not only the first) and named by its key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::raw::RawConfig;
use crate::topology::{DeviceSpec, LayerSpec, Target, Topology};
use dsmil_kinds::{ActivationType, BackendKind, Method};

const GIB: f64 = (1u64 << 30) as f64;

/// The largest max batch a deployment or the config may set: a bound on
/// what admission multiplies a model's activations by.
pub const MAX_BATCH_SIZE: u64 = 65_536;

/// Most intra-op threads one instance may run.
pub const MAX_INTRA_OP_THREADS: u32 = 256;

/// The longest a batch may wait for more requests (Triton has no bound; a
/// second is already far past any latency an edge caller accepts).
pub const MAX_QUEUE_DELAY_US: u64 = 1_000_000;

/// Workers per deployment when the file says 0: two where there are two
/// CPUs to run them, so one computes while the other takes a request.
pub fn default_workers(cpus: usize) -> usize {
    if cpus >= 2 { 2 } else { 1 }
}

/// The CPUs this process may run on: its affinity mask (which honours
/// `taskset`, cpusets and systemd's `CPUAffinity=`), else 0..n.
fn host_cpus() -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => {
            let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect();
            if cpus.is_empty() { (0..n).collect() } else { cpus }
        }
        Err(_) => (0..n).collect(),
    }
}

/// Preferred batch sizes: at most 16, each in 1..=`max_batch`.
pub fn check_preferred_batch_sizes(sizes: &[u64], max_batch: u64) -> Result<(), String> {
    if sizes.len() > 16 {
        return Err(format!("{} sizes; at most 16", sizes.len()));
    }
    match sizes.iter().find(|&&n| n == 0 || n > max_batch) {
        Some(n) => Err(format!("{n} is not in 1..={max_batch} (the max batch)")),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub topology: Topology,
    pub hardware: HardwareConfig,
    pub memory: MemoryConfig,
    pub quantization: QuantizationConfig,
    pub deployment: DeploymentConfig,
    pub serving: ServingConfig,
    pub monitoring: MonitoringConfig,
    pub logging: LoggingConfig,
    pub listeners: ListenerConfig,
    /// `[access]`: principals, the socket's group, the interim TCP rule.
    pub access: crate::access::Policy,
    /// `[signing]`: the trusted keys and the layers that require a signature.
    pub signing: SigningConfig,
    pub paths: PathsConfig,
    pub runtimes: RuntimesConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// auto, journal, human or json.
    pub format: String,
    pub level: String,
    pub journal_socket: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HardwareConfig {
    pub fallback_target: Target,
    /// Which runtime serves CPU deployments: the device's setting, else its
    /// layer's, else `default_cpu_backend`.
    pub default_cpu_backend: BackendKind,
    pub layer_cpu_backend: HashMap<u8, BackendKind>,
    pub device_cpu_backend: HashMap<u32, BackendKind>,
}

impl HardwareConfig {
    pub fn cpu_backend(&self, device: u32, layer: u8) -> BackendKind {
        self.device_cpu_backend
            .get(&device)
            .or_else(|| self.layer_cpu_backend.get(&layer))
            .copied()
            .unwrap_or(self.default_cpu_backend)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantizationConfig {
    pub precision: String,
    pub min_accuracy_retention: f64,
    pub calibration_samples: u32,
    pub method: Method,
    /// For the percentile method, also when a deploy names it.
    pub percentile: f64,
    pub activations: ActivationType,
    pub fallback_evaluations: u32,
    /// The gate's pass mark per metric (accuracy retention included).
    pub thresholds: dsmil_kinds::GateThresholds,
    /// Below this share of MACs in INT8 a quantized model counts as FP32.
    pub min_int8_mac_share: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    /// None: models.d/ beside the config file, if there is one.
    pub manifests_dir: Option<PathBuf>,
    pub warmup_iterations: u32,
    pub health_check_timeout: std::time::Duration,
    pub auto_rollback_on_failure: bool,
    pub probation_requests: u32,
    pub probation: std::time::Duration,
    pub health_probe_interval: std::time::Duration,
    pub health_probe_failures: u32,
    pub max_model_bytes: u64,
    pub allowed_operator_domains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServingConfig {
    pub queue_capacity: usize,
    /// Resolved: `0` in the file is 2 on a host with 2+ CPUs, else 1.
    pub workers_per_deployment: usize,
    /// 0: the host's CPUs divided among a deployment's instances
    /// (`deploy::launch` decides, knowing the instance count).
    pub intra_op_threads: usize,
    pub max_request_bytes: usize,
    pub max_batch_size: u64,
    /// Batch queued requests of a batched model into one run.
    pub dynamic_batching: bool,
    /// How long a batch waits for more requests once it has one.
    pub max_queue_delay: std::time::Duration,
    pub preferred_batch_sizes: Vec<u64>,
    pub cpu_pinning: bool,
    /// The CPUs this process may run on (its affinity at startup).
    pub host_cpus: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringConfig {
    pub metrics_collection_interval: std::time::Duration,
    pub drift_detection_threshold_percent: f64,
    pub drift_baseline_rows: usize,
    pub drift_window_rows: usize,
    pub drift_auto_rollback: bool,
    /// The share of requests re-run on the FP32 original (0: off).
    pub shadow_fraction: f64,
    pub alert_on_latency_p99_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub unix_socket: PathBuf,
    pub tcp: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// KServe v2 REST (HTTP/1.1); None when off.
    pub http: Option<SocketAddr>,
    /// TLS on the gRPC TCP listener (mutual with a client CA); None: plain.
    pub tls: Option<super::access::TlsConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SigningConfig {
    pub trusted_keys: Vec<TrustedKey>,
    /// Layer ids in which a deploy must carry a valid signature.
    pub required_layers: std::collections::BTreeSet<u8>,
}

/// A public key deploy signatures may verify with, by its config name.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedKey {
    pub name: String,
    pub key: ed25519_dalek::VerifyingKey,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathsConfig {
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimesConfig {
    /// None: search ($ORT_DYLIB_PATH, the workspace's runtimes/, system dirs).
    pub onnxruntime_library: Option<PathBuf>,
    /// None: search ($OPENVINO_LIB_DIR, the workspace's runtimes/, system dirs).
    pub openvino_library: Option<PathBuf>,
    /// OpenVINO's INFERENCE_PRECISION_HINT ("f32", "bf16", "f16"); the
    /// accuracy gate evaluates with it, and each deployment records it.
    pub openvino_inference_precision: String,
    /// Load both runtimes at startup instead of on first use.
    pub load_at_startup: bool,
}

pub(super) fn resolve(doc: toml::Table, origin: &str) -> Result<Config, ConfigError> {
    let raw = RawConfig::deserialize(toml::Value::Table(doc)).map_err(|e| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let mut problems = Vec::new();
    let mut check = |ok: bool, msg: String| {
        if !ok {
            problems.push(msg);
        }
    };

    let mut backend = |value: &str, key: String| {
        value.parse::<BackendKind>().unwrap_or_else(|_| {
            check(false, format!("{key} = {value:?}: expected onnxruntime or openvino"));
            BackendKind::OnnxRuntime
        })
    };
    let default_cpu_backend = backend(&raw.hardware.cpu_backend, "hardware.cpu_backend".into());
    let layer_cpu_backend: HashMap<u8, BackendKind> = raw
        .layers
        .iter()
        .filter_map(|l| {
            Some((
                l.id,
                backend(l.cpu_backend.as_deref()?, format!("layers[id={}].cpu_backend", l.id)),
            ))
        })
        .collect();
    let device_cpu_backend: HashMap<u32, BackendKind> = raw
        .devices
        .iter()
        .filter_map(|(key, d)| {
            let kind = backend(d.cpu_backend.as_deref()?, format!("devices.{key}.cpu_backend"));
            Some((key.parse().ok()?, kind))
        })
        .collect();
    let fallback_target = parse_target(&raw.hardware.fallback_target, "hardware.fallback_target").unwrap_or_else(|e| {
        check(false, e);
        Target::Cpu
    });

    check(
        raw.memory.total_gb > 0.0,
        format!("memory.total_gb = {} must be > 0", raw.memory.total_gb),
    );
    check(
        raw.memory.available_gb > 0.0 && raw.memory.available_gb <= raw.memory.total_gb,
        format!(
            "memory.available_gb = {} must be > 0 and ≤ memory.total_gb ({})",
            raw.memory.available_gb, raw.memory.total_gb
        ),
    );
    let q = &raw.quantization;
    check(
        q.precision == "int8",
        format!("quantization.precision = {:?}: only \"int8\" is supported", q.precision),
    );
    check(
        (0.0..=1.0).contains(&q.min_accuracy_retention) && q.min_accuracy_retention > 0.0,
        format!(
            "quantization.min_accuracy_retention = {} must be in (0, 1]",
            q.min_accuracy_retention
        ),
    );
    for (key, value) in [
        ("min_position_agreement", q.min_position_agreement),
        ("min_sequence_match", q.min_sequence_match),
        ("min_cosine", q.min_cosine),
        ("min_mask_iou", q.min_mask_iou),
    ] {
        check(
            (0.0..=1.0).contains(&value) && value > 0.0,
            format!("quantization.{key} = {value} must be in (0, 1]"),
        );
    }
    check(
        (0.0..=1.0).contains(&q.min_int8_mac_share),
        format!(
            "quantization.min_int8_mac_share = {} must be in [0, 1]",
            q.min_int8_mac_share
        ),
    );
    check(
        q.min_snr_db.is_finite() && q.min_snr_db > 0.0,
        format!(
            "quantization.min_snr_db = {} must be a positive number of dB",
            q.min_snr_db
        ),
    );
    check(
        Method::parse(&q.method, q.percentile).is_ok(),
        format!(
            "quantization.method = {:?}: expected minmax, percentile, entropy or dynamic",
            q.method
        ),
    );
    check(
        q.percentile > 0.0 && q.percentile <= 100.0,
        format!("quantization.percentile = {} must be in (0, 100]", q.percentile),
    );
    check(
        matches!(raw.logging.format.as_str(), "auto" | "journal" | "human" | "json"),
        format!(
            "logging.format = {:?}: expected auto, journal, human or json",
            raw.logging.format
        ),
    );
    check(
        tracing_subscriber::EnvFilter::try_new(&raw.logging.level).is_ok(),
        format!("logging.level = {:?} is not a tracing filter", raw.logging.level),
    );
    check(
        matches!(
            raw.runtimes.openvino_inference_precision.as_str(),
            "f32" | "bf16" | "f16"
        ),
        format!(
            "runtimes.openvino_inference_precision = {:?}: expected f32, bf16 or f16",
            raw.runtimes.openvino_inference_precision
        ),
    );
    check(
        matches!(q.activations.as_str(), "uint8" | "int8"),
        format!("quantization.activations = {:?}: expected uint8 or int8", q.activations),
    );
    check(
        q.calibration_samples > 0,
        "quantization.calibration_samples must be ≥ 1".to_owned(),
    );
    let d = &raw.deployment;
    check(
        d.health_check_timeout_seconds > 0,
        "deployment.health_check_timeout_seconds must be ≥ 1".to_owned(),
    );
    check(
        d.health_probe_interval_seconds >= 0.05,
        format!(
            "deployment.health_probe_interval_seconds = {} must be ≥ 0.05",
            d.health_probe_interval_seconds
        ),
    );
    check(
        d.health_probe_failures > 0,
        "deployment.health_probe_failures must be ≥ 1".to_owned(),
    );
    check(
        d.max_model_size_mb > 0,
        "deployment.max_model_size_mb must be ≥ 1".to_owned(),
    );
    let s = &raw.serving;
    check(s.queue_capacity > 0, "serving.queue_capacity must be ≥ 1".to_owned());
    check(
        s.workers_per_deployment <= 64,
        format!(
            "serving.workers_per_deployment = {} must be in 0..=64 (0: chosen for the host)",
            s.workers_per_deployment
        ),
    );
    check(
        s.intra_op_threads <= MAX_INTRA_OP_THREADS as usize,
        format!(
            "serving.intra_op_threads = {} must be in 0..={MAX_INTRA_OP_THREADS} (0: chosen for the host)",
            s.intra_op_threads
        ),
    );
    check(
        s.max_queue_delay_us <= MAX_QUEUE_DELAY_US,
        format!(
            "serving.max_queue_delay_us = {} must be at most {MAX_QUEUE_DELAY_US} (1 s)",
            s.max_queue_delay_us
        ),
    );
    if let Err(e) = check_preferred_batch_sizes(&s.preferred_batch_sizes, s.max_batch_size) {
        check(false, format!("serving.preferred_batch_sizes: {e}"));
    }
    check(
        (1024..=(2u64 << 30)).contains(&s.max_request_bytes),
        format!(
            "serving.max_request_bytes = {} must be in 1024..=2147483648 (gRPC messages stop at 2 GiB)",
            s.max_request_bytes
        ),
    );
    check(
        (1..=MAX_BATCH_SIZE).contains(&s.max_batch_size),
        format!(
            "serving.max_batch_size = {} must be in 1..={MAX_BATCH_SIZE}",
            s.max_batch_size
        ),
    );
    let m = &raw.monitoring;
    check(
        m.metrics_collection_interval_seconds > 0,
        "monitoring.metrics_collection_interval_seconds must be ≥ 1".to_owned(),
    );
    check(
        m.drift_detection_threshold_percent > 0.0,
        "monitoring.drift_detection_threshold_percent must be > 0".to_owned(),
    );
    check(
        (0.0..=1.0).contains(&m.shadow_fraction),
        format!("monitoring.shadow_fraction = {} must be in [0, 1]", m.shadow_fraction),
    );
    check(
        m.alert_on_latency_p99_ms > 0,
        "monitoring.alert_on_latency_p99_ms must be ≥ 1".to_owned(),
    );

    let l = &raw.listeners;
    check(
        !l.unix_socket.is_empty(),
        "listeners.unix_socket must be set (the controller needs it)".to_owned(),
    );
    let tcp = optional_addr(&l.tcp, "listeners.tcp", &mut problems);
    let metrics = optional_addr(&l.metrics, "listeners.metrics", &mut problems);
    let http = optional_addr(&l.http, "listeners.http", &mut problems);
    let tls = super::access::resolve_tls(l, &mut problems);

    for (key, value) in [
        ("paths.state_dir", &raw.paths.state_dir),
        ("paths.cache_dir", &raw.paths.cache_dir),
        ("paths.runtime_dir", &raw.paths.runtime_dir),
    ] {
        if value.is_empty() {
            problems.push(format!("{key} must be set"));
        }
    }

    let topology = resolve_topology(&raw, &mut problems);
    let access = super::access::resolve_access(&raw.access, &mut problems);
    let signing = resolve_signing(&raw, &mut problems);

    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        });
    }
    let topology = topology.expect("no problems means the topology resolved");
    let host_cpus = host_cpus();
    let available_bytes = (raw.memory.available_gb * GIB) as u64;
    Ok(Config {
        topology,
        hardware: HardwareConfig {
            fallback_target,
            default_cpu_backend,
            layer_cpu_backend,
            device_cpu_backend,
        },
        memory: MemoryConfig {
            total_bytes: (raw.memory.total_gb * GIB) as u64,
            available_bytes,
        },
        quantization: QuantizationConfig {
            precision: q.precision.clone(),
            min_accuracy_retention: q.min_accuracy_retention,
            calibration_samples: q.calibration_samples,
            method: Method::parse(&q.method, q.percentile).unwrap_or(Method::MinMax),
            percentile: q.percentile,
            fallback_evaluations: q.fallback_evaluations,
            min_int8_mac_share: q.min_int8_mac_share,
            thresholds: dsmil_kinds::GateThresholds {
                retention: q.min_accuracy_retention,
                position: q.min_position_agreement,
                sequence: q.min_sequence_match,
                cosine: q.min_cosine,
                snr_db: q.min_snr_db,
                iou: q.min_mask_iou,
            },
            activations: if q.activations == "int8" {
                ActivationType::I8Symmetric
            } else {
                ActivationType::U8Asymmetric
            },
        },
        deployment: DeploymentConfig {
            manifests_dir: (!d.manifests_dir.is_empty()).then(|| PathBuf::from(&d.manifests_dir)),
            warmup_iterations: d.warmup_iterations,
            health_check_timeout: std::time::Duration::from_secs(d.health_check_timeout_seconds),
            auto_rollback_on_failure: d.auto_rollback_on_failure,
            probation_requests: d.probation_requests,
            probation: std::time::Duration::from_secs(d.probation_seconds),
            health_probe_interval: std::time::Duration::from_secs_f64(d.health_probe_interval_seconds),
            health_probe_failures: d.health_probe_failures,
            max_model_bytes: d.max_model_size_mb.saturating_mul(1 << 20),
            allowed_operator_domains: d.allowed_operator_domains.clone(),
        },
        serving: ServingConfig {
            queue_capacity: s.queue_capacity,
            workers_per_deployment: match s.workers_per_deployment {
                0 => default_workers(host_cpus.len()),
                n => n,
            },
            intra_op_threads: s.intra_op_threads,
            max_request_bytes: usize::try_from(s.max_request_bytes).unwrap_or(usize::MAX),
            max_batch_size: s.max_batch_size,
            dynamic_batching: s.dynamic_batching,
            max_queue_delay: std::time::Duration::from_micros(s.max_queue_delay_us),
            preferred_batch_sizes: s.preferred_batch_sizes.clone(),
            cpu_pinning: s.cpu_pinning,
            host_cpus,
        },
        monitoring: MonitoringConfig {
            metrics_collection_interval: std::time::Duration::from_secs(m.metrics_collection_interval_seconds),
            drift_detection_threshold_percent: m.drift_detection_threshold_percent,
            drift_baseline_rows: m.drift_baseline_rows.max(1) as usize,
            drift_window_rows: m.drift_window_rows.max(2) as usize,
            drift_auto_rollback: m.drift_auto_rollback,
            shadow_fraction: m.shadow_fraction,
            alert_on_latency_p99_ms: m.alert_on_latency_p99_ms,
        },
        listeners: ListenerConfig {
            unix_socket: PathBuf::from(&l.unix_socket),
            tcp,
            metrics,
            http,
            tls,
        },
        access,
        signing,
        paths: PathsConfig {
            state_dir: PathBuf::from(&raw.paths.state_dir),
            cache_dir: PathBuf::from(&raw.paths.cache_dir),
            runtime_dir: PathBuf::from(&raw.paths.runtime_dir),
        },
        logging: LoggingConfig {
            format: raw.logging.format.clone(),
            level: raw.logging.level.clone(),
            journal_socket: PathBuf::from(&raw.logging.journal_socket),
        },
        runtimes: RuntimesConfig {
            onnxruntime_library: (!raw.runtimes.onnxruntime_library.is_empty())
                .then(|| PathBuf::from(&raw.runtimes.onnxruntime_library)),
            openvino_library: (!raw.runtimes.openvino_library.is_empty())
                .then(|| PathBuf::from(&raw.runtimes.openvino_library)),
            openvino_inference_precision: raw.runtimes.openvino_inference_precision.clone(),
            load_at_startup: raw.runtimes.load_at_startup,
        },
    })
}

fn optional_addr(value: &str, key: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    if value.is_empty() {
        return None;
    }
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(format!(
                "{key} = {value:?} is not an address like 127.0.0.1:8001 (\"\" turns it off)"
            ));
            None
        }
    }
}

fn parse_target(value: &str, key: &str) -> Result<Target, String> {
    value
        .parse()
        .map_err(|_| format!("{key} = {value:?}: expected \"npu\", \"gpu\" or \"cpu\""))
}

fn resolve_topology(raw: &RawConfig, problems: &mut Vec<String>) -> Option<Topology> {
    let mut layers = Vec::new();
    for layer in &raw.layers {
        let key = format!("layers[id={}]", layer.id);
        // An unparsable target is reported here; the placeholder only keeps
        // the topology check from reporting it a second time as missing.
        let target = layer.target.as_ref().map(|t| {
            parse_target(t, &format!("{key}.target")).unwrap_or_else(|e| {
                problems.push(e);
                Target::Cpu
            })
        });
        layers.push(LayerSpec {
            id: layer.id,
            name: layer.name.clone(),
            devices: layer.devices.clone(),
            reserved: layer.reserved,
            budget_bytes: layer.memory_budget_gb.map(|gb| (gb * GIB) as u64),
            budget_gb: layer.memory_budget_gb,
            target,
            max_parameters: layer.max_parameters,
        });
    }
    let mut devices = Vec::new();
    for (key, device) in &raw.devices {
        let Ok(id) = key.parse::<u32>() else {
            problems.push(format!("devices.{key}: the key must be a device id"));
            continue;
        };
        let target = match &device.target {
            Some(t) => parse_target(t, &format!("devices.{key}.target"))
                .map_err(|e| problems.push(e))
                .ok(),
            None => None,
        };
        devices.push(DeviceSpec {
            id,
            target,
            role: device.role.clone(),
        });
    }
    match Topology::new(raw.topology.device_count, layers, devices) {
        Ok(t) => Some(t),
        Err(mut errs) => {
            problems.append(&mut errs);
            None
        }
    }
}

/// `[signing]`: each key parsed (a problem names the key that does not),
/// names unique, each required layer one of `[[layers]]`.
fn resolve_signing(raw: &RawConfig, problems: &mut Vec<String>) -> SigningConfig {
    let s = &raw.signing;
    let mut trusted_keys: Vec<TrustedKey> = Vec::new();
    for (i, k) in s.trusted_keys.iter().enumerate() {
        let key_name = format!("signing.trusted_keys[{i}] (name = {:?})", k.name);
        let name_ok = (1..=64).contains(&k.name.len())
            && k.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            problems.push(format!(
                "{key_name}: a key's name is 1-64 characters from A-Z a-z 0-9 . _ -"
            ));
        } else if trusted_keys.iter().any(|t| t.name == k.name) {
            problems.push(format!("{key_name}: a second key with this name"));
        }
        let text = match (&k.public_key, &k.path) {
            (Some(inline), None) => inline.clone(),
            (None, Some(path)) if !std::path::Path::new(path).is_absolute() => {
                problems.push(format!("{key_name}: path = {path:?} must be absolute"));
                continue;
            }
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    problems.push(format!("{key_name}: cannot read path = {path:?}: {e}"));
                    continue;
                }
            },
            _ => {
                problems.push(format!("{key_name}: give exactly one of public_key and path"));
                continue;
            }
        };
        match parse_public_key(&text) {
            Ok(key) => trusted_keys.push(TrustedKey {
                name: k.name.clone(),
                key,
            }),
            Err(why) => problems.push(format!("{key_name}: {why}")),
        }
    }
    let layers: Vec<u8> = raw.layers.iter().map(|l| l.id).collect();
    for id in &s.required_layers {
        if !layers.contains(id) {
            problems.push(format!(
                "signing.required_layers: layer {id} is not one of [[layers]] ({layers:?})"
            ));
        }
    }
    if !s.required_layers.is_empty() && s.trusted_keys.is_empty() {
        problems.push(
            "signing.required_layers is set but signing.trusted_keys is empty: nothing could be deployed there"
                .to_owned(),
        );
    }
    SigningConfig {
        trusted_keys,
        required_layers: s.required_layers.iter().copied().collect(),
    }
}

/// An ed25519 public key: a PEM "PUBLIC KEY" (SubjectPublicKeyInfo, what
/// `dsmilctl keygen` and `openssl pkey -pubout` write), or just its base64
/// line.
fn parse_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let text = text.trim();
    let pem = match text.starts_with("-----BEGIN") {
        true => format!("{text}\n"),
        false => format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n"),
    };
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| format!("not an ed25519 public key (PEM \"PUBLIC KEY\" or its base64 line): {e}"))?;
    if key.is_weak() {
        return Err("a weak (small-order) ed25519 key, which any signature could match".to_owned());
    }
    Ok(key)
}
