//! Monitoring: the Prometheus metrics the daemon exports, per-model request
//! statistics (for Triton's ModelStatistics), and the `/metrics` endpoint.
//!
//! Metric names live here only, so that a dashboard author reads one file.
//! Recording is cheap (atomics and the `metrics` crate's handles) and never
//! blocks the inference path.

mod exporter;
mod metrics;
pub mod probation;
pub mod process;
mod stats;

pub use exporter::{MetricsEndpoint, install_recorder};
pub use metrics::{DeploymentLabels, DeploymentMetrics, record_request, set_models_loaded};
pub use stats::{ModelStats, StatsSnapshot};
