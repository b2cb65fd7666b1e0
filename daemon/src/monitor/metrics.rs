//! The metrics dsmild exports, by name. Conventions: `dsmil_` prefix, base
//! units with their suffix (`_seconds`), counters end in `_total`.

use std::time::Duration;

pub const REQUESTS_TOTAL: &str = "dsmil_inference_requests_total";
pub const REQUEST_DURATION: &str = "dsmil_inference_request_duration_seconds";
pub const MODELS_LOADED: &str = "dsmil_models_loaded";

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
    /// For requests that named no served model: only the name asked for.
    pub fn unknown(model: &str) -> DeploymentLabels {
        DeploymentLabels {
            model: model.to_owned(),
            ..Default::default()
        }
    }

    fn to_labels(&self) -> Vec<metrics::Label> {
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
}

impl DeploymentMetrics {
    pub fn new(labels: DeploymentLabels) -> DeploymentMetrics {
        let ok = metrics::counter!(REQUESTS_TOTAL, labels.with_code("OK"));
        let duration = metrics::histogram!(REQUEST_DURATION, labels.to_labels());
        DeploymentMetrics { labels, ok, duration }
    }

    pub fn record(&self, code: &'static str, duration: Duration) {
        if code == "OK" {
            self.ok.increment(1);
            self.duration.record(duration.as_secs_f64());
        } else {
            record_request(&self.labels, code, duration);
        }
    }
}

pub fn set_models_loaded(count: usize) {
    metrics::gauge!(MODELS_LOADED).set(count as f64);
}

pub(super) fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Inference requests, by model, version, device, layer and gRPC code."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "End-to-end inference request latency (validation, queue, compute)."
    );
    metrics::describe_gauge!(MODELS_LOADED, "Deployments loaded and serving.");
}
