//! The metrics dsmild exports, by name. Conventions: `dsmil_` prefix, base
//! units with their suffix (`_seconds`), counters end in `_total`; the
//! standard `process_*` family keeps the names every Prometheus client
//! library gives it, so stock dashboards and alerts work unchanged.

use std::time::Duration;

pub const REQUESTS_TOTAL: &str = "dsmil_inference_requests_total";
/// Rows inferred (the batch dimension), as Triton's nv_inference_count.
pub const INFERENCE_COUNT: &str = "dsmil_inference_count_total";
/// Runs of the model, as Triton's nv_inference_exec_count.
pub const EXEC_COUNT: &str = "dsmil_inference_exec_count_total";
pub const BUILD_INFO: &str = "dsmil_build_info";
pub const REQUEST_DURATION: &str = "dsmil_inference_request_duration_seconds";
pub const MODELS_LOADED: &str = "dsmil_models_loaded";
pub const QUEUE_DURATION: &str = "dsmil_inference_queue_duration_seconds";
pub const COMPUTE_DURATION: &str = "dsmil_inference_compute_duration_seconds";
pub const IN_FLIGHT: &str = "dsmil_inference_in_flight_requests";
pub const HEALTH_PROBE_FAILURES: &str = "dsmil_health_probe_failures_total";
pub const DEPLOYS: &str = "dsmil_deploys_total";
pub const ROLLBACKS: &str = "dsmil_rollbacks_total";
pub const AUDIT_EVENTS: &str = "dsmil_audit_events_total";
pub const LATENCY_ALERTS: &str = "dsmil_latency_alerts_total";
pub const LAYER_BUDGET: &str = "dsmil_layer_memory_budget_bytes";
pub const LAYER_ESTIMATED: &str = "dsmil_layer_memory_estimated_bytes";
pub const LAYER_MEASURED: &str = "dsmil_layer_memory_measured_bytes";
/// Deprecated: `process_resident_memory_bytes`, read at each scrape.
pub const PROCESS_RSS: &str = "dsmil_process_resident_memory_bytes";
/// Deprecated: `rate(process_cpu_seconds_total[...])`.
pub const PROCESS_CPU: &str = "dsmil_process_cpu_usage_ratio";
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const PROCESS_RESIDENT: &str = "process_resident_memory_bytes";
pub const PROCESS_VIRTUAL: &str = "process_virtual_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
pub const HOST_MEMORY_TOTAL: &str = "dsmil_host_memory_total_bytes";
pub const HOST_MEMORY_AVAILABLE: &str = "dsmil_host_memory_available_bytes";
pub const LATENCY_P99: &str = "dsmil_inference_latency_p99_seconds";
pub const DRIFT_SCORE: &str = "dsmil_drift_score";
pub const DRIFT_ALERTS: &str = "dsmil_drift_alerts_total";
pub const SHADOW_AGREEMENT: &str = "dsmil_shadow_agreement_ratio";

/// Histogram buckets for request latency, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels every per-deployment metric carries.
#[derive(Debug, Clone, Default)]
pub struct DeploymentLabels {
    pub model: String,
    pub version: String,
    pub device: String,
    pub layer: String,
    /// The runtime serving it: "onnxruntime" or "openvino".
    pub backend: String,
}

impl DeploymentLabels {
    /// For requests that named no served model: every label empty. The name
    /// asked for is the client's, so it never becomes a label value.
    pub fn unknown() -> DeploymentLabels {
        DeploymentLabels::default()
    }

    pub fn to_labels(&self) -> Vec<metrics::Label> {
        vec![
            metrics::Label::new("model", self.model.clone()),
            metrics::Label::new("version", self.version.clone()),
            metrics::Label::new("device", self.device.clone()),
            metrics::Label::new("layer", self.layer.clone()),
            metrics::Label::new("backend", self.backend.clone()),
        ]
    }

    fn with_code(&self, code: &'static str) -> Vec<metrics::Label> {
        let mut labels = self.to_labels();
        labels.push(metrics::Label::new("code", code));
        labels
    }
}

/// One inference request: its gRPC code ("OK", "INVALID_ARGUMENT", ...) and
/// its end-to-end duration.
pub fn record_request(labels: &DeploymentLabels, code: &'static str, duration: Duration) {
    metrics::counter!(REQUESTS_TOTAL, labels.with_code(code)).increment(1);
    metrics::histogram!(REQUEST_DURATION, labels.to_labels()).record(duration.as_secs_f64());
}

/// A deployment's own metric handles, made once when it starts serving, so
/// a successful request records without building labels or looking its
/// series up.
pub struct DeploymentMetrics {
    labels: DeploymentLabels,
    ok: metrics::Counter,
    duration: metrics::Histogram,
    queue: metrics::Histogram,
    compute: metrics::Histogram,
    in_flight: metrics::Gauge,
    probe_failures: metrics::Counter,
    inferences: metrics::Counter,
    executions: metrics::Counter,
    p99: metrics::Gauge,
    drift: metrics::Gauge,
    /// Set when the model is undeployed: a late error must not register
    /// the name's series again.
    retired: std::sync::atomic::AtomicBool,
}

/// Counts a request in flight for as long as it lives.
pub struct InFlight<'a>(&'a metrics::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl DeploymentMetrics {
    pub fn new(labels: DeploymentLabels) -> DeploymentMetrics {
        let l = labels.to_labels();
        // Counters that may stay at zero are registered now, so that a
        // dashboard (and `rate()`) sees 0 rather than no series.
        metrics::counter!(LATENCY_ALERTS, l.clone()).absolute(0);
        metrics::counter!(DRIFT_ALERTS, l.clone()).absolute(0);
        metrics::counter!(ROLLBACKS, "model" => labels.model.clone()).increment(0);
        metrics::counter!(DEPLOYS, "model" => labels.model.clone()).increment(0);
        DeploymentMetrics {
            ok: metrics::counter!(REQUESTS_TOTAL, labels.with_code("OK")),
            duration: metrics::histogram!(REQUEST_DURATION, l.clone()),
            queue: metrics::histogram!(QUEUE_DURATION, l.clone()),
            compute: metrics::histogram!(COMPUTE_DURATION, l.clone()),
            in_flight: metrics::gauge!(IN_FLIGHT, l.clone()),
            probe_failures: metrics::counter!(HEALTH_PROBE_FAILURES, l.clone()),
            inferences: metrics::counter!(INFERENCE_COUNT, l.clone()),
            executions: metrics::counter!(EXEC_COUNT, l.clone()),
            p99: metrics::gauge!(LATENCY_P99, l.clone()),
            drift: metrics::gauge!(DRIFT_SCORE, l),
            labels,
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn labels(&self) -> &DeploymentLabels {
        &self.labels
    }

    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.increment(1.0);
        InFlight(&self.in_flight)
    }

    /// Where a successful request's time went: waiting for a worker, and
    /// in the runtime.
    pub fn record_stages(&self, queued: Duration, compute: Duration) {
        self.queue.record(queued.as_secs_f64());
        self.compute.record(compute.as_secs_f64());
    }

    /// A successful request's rows (1 for a model without a batch
    /// dimension), and the number of runs the deployment's workers have
    /// made for applications so far (the pool counts them where they run).
    pub fn record_inferences(&self, rows: u64, executions: u64) {
        self.inferences.increment(rows);
        // A counter set absolutely only ever rises (the recorder keeps the
        // larger value), so concurrent requests cannot move it back.
        self.executions.absolute(executions);
    }

    pub fn probe_failed(&self) {
        self.probe_failures.increment(1);
    }

    /// The drift score: max(PSI, |relative confidence change|).
    pub fn set_drift(&self, score: f64) {
        self.drift.set(score);
    }

    /// The live p99 (from the deployment's recent requests).
    pub fn set_p99(&self, p99: Duration) {
        self.p99.set(p99.as_secs_f64());
    }

    pub fn retire(&self) {
        self.retired.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn record(&self, code: &'static str, duration: Duration) {
        if code == "OK" {
            self.ok.increment(1);
            self.duration.record(duration.as_secs_f64());
        } else if !self.retired.load(std::sync::atomic::Ordering::Acquire) {
            record_request(&self.labels, code, duration);
        }
    }
}

pub fn set_models_loaded(count: usize) {
    metrics::gauge!(MODELS_LOADED).set(count as f64);
}

/// `dsmil_build_info` = 1, its labels naming what is running: the
/// package version and, when the build had it, the git commit
/// (`DSMIL_GIT_COMMIT` in the build's environment; "unknown" otherwise).
fn set_build_info() {
    let commit = option_env!("DSMIL_GIT_COMMIT")
        .filter(|c| !c.is_empty())
        .unwrap_or("unknown");
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "git_commit" => commit,
    )
    .set(1.0);
}

/// The standard process family in the text exposition format, one block
/// per metric as the Prometheus exporter writes them. Rendered from a
/// fresh read at each scrape; `metrics` counters hold only integers, and
/// CPU seconds need their fraction.
pub(super) fn process_exposition(figures: &super::process::Figures) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n");
        }
    };
    family(
        PROCESS_CPU_SECONDS,
        "counter",
        "Total user and system CPU time spent in seconds.",
        figures.cpu_seconds,
    );
    family(
        PROCESS_RESIDENT,
        "gauge",
        "Resident memory size in bytes.",
        figures.resident_bytes.map(|v| v as f64),
    );
    family(
        PROCESS_VIRTUAL,
        "gauge",
        "Virtual memory size in bytes.",
        figures.virtual_bytes.map(|v| v as f64),
    );
    family(
        PROCESS_OPEN_FDS,
        "gauge",
        "Number of open file descriptors.",
        figures.open_fds.map(|v| v as f64),
    );
    family(
        PROCESS_MAX_FDS,
        "gauge",
        "Maximum number of open file descriptors.",
        figures.max_fds.map(|v| v as f64),
    );
    family(
        PROCESS_START_TIME,
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        figures.start_time_seconds,
    );
    out
}

pub(super) fn describe() {
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which dsmild is running (version, git_commit)."
    );
    set_build_info();
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Inference requests, by model, version, device, layer and gRPC code."
    );
    metrics::describe_counter!(
        INFERENCE_COUNT,
        "Rows inferred by successful requests (the batch size of each; 1 without a batch dimension)."
    );
    metrics::describe_counter!(
        EXEC_COUNT,
        "Model executions run for applications' requests (one per request today: no dynamic batching)."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "End-to-end inference request latency (validation, queue, compute)."
    );
    metrics::describe_gauge!(MODELS_LOADED, "Deployments loaded and serving.");
    metrics::describe_histogram!(
        QUEUE_DURATION,
        metrics::Unit::Seconds,
        "Time a successful request waited for a worker."
    );
    metrics::describe_histogram!(
        COMPUTE_DURATION,
        metrics::Unit::Seconds,
        "Time a successful request spent in the runtime."
    );
    metrics::describe_gauge!(IN_FLIGHT, "Inference requests being answered now.");
    metrics::describe_counter!(HEALTH_PROBE_FAILURES, "Failed periodic health probes.");
    metrics::describe_counter!(DEPLOYS, "Deploys started, by model.");
    metrics::describe_counter!(ROLLBACKS, "Rollbacks, by model.");
    metrics::describe_counter!(AUDIT_EVENTS, "Audit events journaled, by kind.");
    metrics::describe_counter!(
        LATENCY_ALERTS,
        "Times a deployment's live p99 rose above monitoring.alert_on_latency_p99_ms."
    );
    metrics::describe_gauge!(LAYER_BUDGET, metrics::Unit::Bytes, "A layer's memory budget.");
    metrics::describe_gauge!(
        LAYER_ESTIMATED,
        metrics::Unit::Bytes,
        "Memory the layer's deployments were estimated to need before loading."
    );
    metrics::describe_gauge!(
        LAYER_MEASURED,
        metrics::Unit::Bytes,
        "Memory the layer's deployments were measured to take (RSS delta at load)."
    );
    metrics::describe_gauge!(
        PROCESS_RSS,
        metrics::Unit::Bytes,
        "Deprecated, use process_resident_memory_bytes: dsmild's resident memory at the last sample."
    );
    metrics::describe_gauge!(
        PROCESS_CPU,
        "Deprecated, use rate(process_cpu_seconds_total): dsmild's CPU use over the last sampling interval (1 = one core)."
    );
    metrics::describe_gauge!(HOST_MEMORY_TOTAL, metrics::Unit::Bytes, "The host's memory.");
    metrics::describe_gauge!(
        HOST_MEMORY_AVAILABLE,
        metrics::Unit::Bytes,
        "The host's available memory."
    );
    metrics::describe_gauge!(
        DRIFT_SCORE,
        "Output drift, live against baseline: the larger of PSI and the relative change of mean confidence."
    );
    metrics::describe_counter!(DRIFT_ALERTS, "Drift alerts raised (output or accuracy drift).");
    metrics::describe_gauge!(
        SHADOW_AGREEMENT,
        "Share of shadow-checked rows whose INT8 top-1 matched the FP32 original's."
    );
    metrics::describe_gauge!(
        LATENCY_P99,
        metrics::Unit::Seconds,
        "Live p99 latency over the deployment's recent requests."
    );
}

#[cfg(test)]
mod tests {
    use super::process_exposition;
    use crate::monitor::process::Figures;

    #[test]
    fn the_process_family_keeps_fractions_and_leaves_out_what_proc_did_not_say() {
        let figures = Figures {
            cpu_seconds: Some(1.25),
            resident_bytes: Some(4096),
            start_time_seconds: Some(1_796_379_396.5),
            ..Figures::default()
        };
        let text = process_exposition(&figures);
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.25\n\n"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes 4096\n"));
        assert!(text.contains("process_start_time_seconds 1796379396.5\n"));
        assert!(!text.contains("process_open_fds"), "{text}");
        assert!(!text.contains("process_max_fds"));
    }
}
