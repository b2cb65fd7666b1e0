//! Monitoring: the Prometheus metrics the daemon exports, per-model request
//! statistics (for Triton's ModelStatistics), the `/metrics` endpoint, and
//! what the host's settings mean for latency (`host`, logged at startup).
//!
//! Metric names live here only, so that a dashboard author reads one file.
//! Recording is cheap (atomics and the `metrics` crate's handles) and never
//! blocks the inference path.

mod exporter;
mod metrics;
mod recorder;
/// The exported metric names, for the modules that count without handles.
pub mod metrics_names {
    pub use super::metrics::{AUDIT_EVENTS, DEPLOYS, LATENCY_ALERTS, ROLLBACKS};
}
pub mod drift;
pub mod host;
pub mod probation;
pub mod process;
pub mod sampler;
pub mod shadow;
mod stats;
mod window;

pub use drift::{DriftReport, DriftTracker};
pub use exporter::{MetricsEndpoint, install_recorder};
pub use metrics::{DeploymentLabels, DeploymentMetrics, record_request, set_models_loaded};
pub use recorder::forget_model;
pub use shadow::Shadow;
pub use stats::{ModelStats, StatsSnapshot};
pub use window::{LatencyWindow, WindowSummary};
