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
    pub workers_per_deployment: usize,
    pub intra_op_threads: usize,
    pub max_request_bytes: usize,
    pub max_batch_size: u64,
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
        (1..=64).contains(&s.workers_per_deployment),
        format!(
            "serving.workers_per_deployment = {} must be in 1..=64",
            s.workers_per_deployment
        ),
    );
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
    let access = resolve_access(&raw.access, &mut problems);

    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        });
    }
    let topology = topology.expect("no problems means the topology resolved");
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
            workers_per_deployment: s.workers_per_deployment,
            intra_op_threads: s.intra_op_threads,
            max_request_bytes: usize::try_from(s.max_request_bytes).unwrap_or(usize::MAX),
            max_batch_size: s.max_batch_size,
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
        },
        access,
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
        },
    })
}

fn resolve_access(raw: &super::raw::RawAccess, problems: &mut Vec<String>) -> crate::access::Policy {
    use super::raw::RawId;
    use crate::access::{MAX_CLEARANCE, Policy, PrincipalRule, Role};
    let clearance_ok = |c: u8| (1..=MAX_CLEARANCE).contains(&c);
    let tcp = raw.tcp_anonymous_clearance;
    if tcp > MAX_CLEARANCE {
        problems.push(format!(
            "access.tcp_anonymous_clearance = {tcp}: expected 0 (refuse TCP callers) or a clearance 1-{MAX_CLEARANCE}"
        ));
    }
    let mut principals = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, p) in raw.principals.iter().enumerate() {
        let key = format!("access.principals[{i}] ({:?})", p.name);
        if p.name.is_empty() || p.name == "anonymous" || p.name == "unknown" {
            problems.push(format!("{key}: name must be set, and not \"anonymous\" or \"unknown\""));
        } else if !names.insert(p.name.clone()) {
            problems.push(format!("{key}: the name is used twice"));
        }
        let role = p.role.parse::<Role>().unwrap_or_else(|e| {
            problems.push(format!("{key}: role: {e}"));
            Role::Viewer
        });
        if !clearance_ok(p.clearance) {
            problems.push(format!(
                "{key}: clearance = {}: expected 1-{MAX_CLEARANCE}",
                p.clearance
            ));
        }
        if p.users.is_empty() && p.groups.is_empty() {
            problems.push(format!("{key}: names no users and no groups, so it covers nobody"));
        }
        let mut ids = |list: &[RawId], what: &str, table: &str| -> Vec<u32> {
            list.iter()
                .filter_map(|id| match id {
                    RawId::Id(n) => Some(*n),
                    RawId::Name(name) => lookup_id(table, name).or_else(|| {
                        problems.push(format!("{key}: {what} {name:?} does not exist (in {table})"));
                        None
                    }),
                })
                .collect()
        };
        let uids = ids(&p.users, "user", "/etc/passwd");
        let gids = ids(&p.groups, "group", "/etc/group");
        principals.push(PrincipalRule {
            name: p.name.as_str().into(),
            role,
            clearance: p.clearance,
            uids,
            gids,
        });
    }
    let socket_group = match &raw.socket_group {
        RawId::Id(n) => n.to_string(),
        RawId::Name(name) if name.is_empty() => {
            problems.push("access.socket_group must be set (a group name or gid)".to_owned());
            String::new()
        }
        RawId::Name(name) => name.clone(),
    };
    Policy {
        socket_group,
        principals,
        tcp_anonymous_clearance: (tcp > 0).then_some(tcp),
        daemon_uid: daemon_uid(),
    }
}

/// The effective uid of this process (the owner of /proc/self).
fn daemon_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// A user's uid (`/etc/passwd`) or a group's gid (`/etc/group`) by name,
/// from the files themselves: NSS sources (LDAP, sssd) are not consulted,
/// so such users and groups are named by their numeric ids.
pub fn lookup_id(table: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(table).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// A group given as a name or a numeric gid, if it exists.
pub fn group_id(group: &str) -> Option<u32> {
    match group.parse::<u32>() {
        Ok(gid) => Some(gid),
        Err(_) => lookup_id("/etc/group", group),
    }
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

#[cfg(test)]
mod access_tests {
    use crate::access::Role;

    fn load(access: &str) -> Result<super::Config, super::ConfigError> {
        let mut doc: toml::Table = super::super::DEFAULT_TOML.parse().unwrap();
        doc.insert("access".into(), toml::Value::Table(access.parse().unwrap()));
        super::resolve(doc, "test")
    }

    #[test]
    fn principals_resolve_names_and_ids_and_every_problem_is_named() {
        let config = load(
            r#"socket_group = "root"
               tcp_anonymous_clearance = 0
               principals = [{ name = "ops", users = ["root", 1001], groups = [7], role = "operator", clearance = 7 }]"#,
        )
        .unwrap();
        let p = &config.access.principals[0];
        assert_eq!(
            (p.role, p.clearance, &p.uids, &p.gids),
            (Role::Operator, 7, &vec![0, 1001], &vec![7])
        );
        assert_eq!(config.access.tcp_anonymous_clearance, None);

        let err = load(
            r#"socket_group = ""
               tcp_anonymous_clearance = 10
               principals = [
                 { name = "a", users = ["no-such-user-here"], role = "boss", clearance = 0 },
                 { name = "a", role = "viewer", clearance = 3 },
               ]"#,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "access.tcp_anonymous_clearance = 10",
            "user \"no-such-user-here\" does not exist",
            "\"boss\" is not a role",
            "clearance = 0: expected 1-9",
            "the name is used twice",
            "covers nobody",
            "access.socket_group must be set",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from: {err}");
        }
    }

    #[test]
    fn the_shipped_defaults_map_nobody_and_serve_tcp_inference_at_nine() {
        let config = super::super::load(None, &[]).unwrap();
        assert!(config.access.principals.is_empty());
        assert_eq!(config.access.socket_group, "dsmil");
        assert_eq!(config.access.tcp_anonymous_clearance, Some(9));
    }
}
