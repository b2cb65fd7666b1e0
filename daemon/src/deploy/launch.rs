//! How a deployment runs, decided in one place: which runtime serves it
//! (from its device and what was asked), and, from its record and one
//! configuration snapshot, its worker count, load options and request
//! limits. Deploy, rollback, reload and restore all ask here, so a new
//! launch-time rule lands once.
//!
//! Decisions only: it never loads a model, touches the journal or the
//! registry.

use std::sync::Arc;

use dsmil_kinds::{BackendKind, PerformanceHint, Target};

use super::{DeployError, Deployer};
use crate::backend::{Backend, LoadOptions, RequestLimits};
use crate::config::Config;
use crate::store::DeploymentRecord;
use crate::topology::{Device, Layer};

/// Where a deployment runs: the target its device asks for, the one this
/// host has (the fallback when it lacks it), and the runtime on it.
pub struct Runtime {
    pub wanted: Target,
    pub effective: Target,
    pub backend: Arc<dyn Backend>,
}

/// What a journaled deployment's workers load and serve with.
pub struct Launch {
    pub workers: usize,
    pub options: LoadOptions,
    pub limits: RequestLimits,
}

impl Launch {
    /// From the record, where 0 and "" mean the configuration's default.
    pub fn of(record: &DeploymentRecord, config: &Config) -> Launch {
        Launch {
            workers: match record.workers {
                0 => config.serving.workers_per_deployment,
                n => n as usize,
            },
            options: LoadOptions {
                intra_op_threads: config.serving.intra_op_threads,
                throughput: record.performance_hint == PerformanceHint::Throughput,
                precision: record.precision.hint().map(str::to_owned),
                inspect: false,
            },
            limits: RequestLimits {
                max_bytes: config.serving.max_request_bytes,
                max_batch: match record.max_batch {
                    0 => config.serving.max_batch_size,
                    n => n,
                },
            },
        }
    }
}

impl Deployer {
    /// The runtime for a deployment on `device`: npu and gpu devices are
    /// OpenVINO's; a cpu device uses `asked`, else the configured
    /// `cpu_backend` of the device, its layer or the host.
    pub(super) fn runtime_for(
        &self,
        config: &Config,
        device: &Device,
        layer: &Layer,
        asked: Option<BackendKind>,
    ) -> Result<Runtime, DeployError> {
        let wanted = device.target.expect("hosting devices have a target");
        let effective = self.runtimes.effective_target(wanted);
        let kind = asked.unwrap_or_else(|| config.hardware.cpu_backend(device.id, layer.id));
        let backend = self.runtimes.backend(effective, kind)?;
        Ok(Runtime {
            wanted,
            effective,
            backend,
        })
    }
}
