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
use crate::backend::{Backend, Batching, LoadOptions, RequestLimits};
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
    /// The options every instance loads with (`instance_options` adds its
    /// CPUs when pinning).
    pub options: LoadOptions,
    pub limits: RequestLimits,
    /// Dynamic batching if the deployment's model is batched (the caller
    /// knows its signature); None: off.
    pub batching: Option<Batching>,
    /// Per instance, the CPUs it is pinned to; empty: none pinned.
    pub cpus: Vec<Vec<usize>>,
}

impl Launch {
    /// From the record, where 0, "" and unset mean the configuration's
    /// value.
    pub fn of(record: &DeploymentRecord, config: &Config) -> Launch {
        let serving = &config.serving;
        let choice = &record.serving;
        // A deploy records the count it resolved; 0 is a record from before
        // host-sized defaults, which ran one worker and keeps doing so (its
        // memory was admitted for one).
        let workers = match record.workers {
            0 => 1,
            n => n as usize,
        };
        let cpus = serving.host_cpus.len().max(1);
        // 0 everywhere: ONNX Runtime gets the host's CPUs shared among the
        // instances; OpenVINO sizes its own streams from its hint.
        let intra_op_threads = match (choice.intra_op_threads, serving.intra_op_threads) {
            (Some(n), _) => n as usize,
            (None, n) if n > 0 => n,
            (None, _) if record.backend == BackendKind::OnnxRuntime => (cpus / workers).max(1),
            (None, _) => 0,
        };
        let max_batch = match record.max_batch {
            0 => serving.max_batch_size,
            n => n,
        };
        let batching = choice
            .dynamic_batching
            .unwrap_or(serving.dynamic_batching)
            .then(|| Batching {
                max_rows: usize::try_from(max_batch).unwrap_or(usize::MAX),
                delay: choice
                    .max_queue_delay_us
                    .map_or(serving.max_queue_delay, std::time::Duration::from_micros),
                preferred: match choice.preferred_batch_sizes.is_empty() {
                    true => serving.preferred_batch_sizes.clone(),
                    false => choice.preferred_batch_sizes.clone(),
                }
                .into_iter()
                // The config's sizes may exceed a deploy's own smaller max.
                .filter(|&n| n <= max_batch)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .collect(),
            });
        let cpus = match serving.cpu_pinning {
            true => pinned_cpus(&serving.host_cpus, record.id, workers, intra_op_threads.max(1)),
            false => Vec::new(),
        };
        Launch {
            workers,
            options: LoadOptions {
                intra_op_threads,
                throughput: record.performance_hint == PerformanceHint::Throughput,
                precision: record.precision.hint().map(str::to_owned),
                inspect: false,
                cpus: Vec::new(),
            },
            limits: RequestLimits {
                max_bytes: serving.max_request_bytes,
                max_batch,
            },
            batching,
            cpus,
        }
    }

    /// The load options of instance `i`: the shared ones plus its CPUs.
    pub fn instance_options(&self, i: usize) -> LoadOptions {
        LoadOptions {
            cpus: self.cpus.get(i).cloned().unwrap_or_default(),
            ..self.options.clone()
        }
    }
}

/// Each instance's CPUs: `threads` consecutive CPUs of `host` per instance,
/// instance after instance, starting where deployment `id`'s turn falls, so
/// that deployments spread over the host instead of all starting on its
/// first CPU (wrapping when there are more threads than CPUs).
pub fn pinned_cpus(host: &[usize], id: u64, workers: usize, threads: usize) -> Vec<Vec<usize>> {
    if host.is_empty() {
        return Vec::new();
    }
    let per_deployment = workers * threads;
    let start = (id as usize).wrapping_mul(per_deployment) % host.len();
    (0..workers)
        .map(|w| {
            (0..threads)
                .map(|t| host[(start + w * threads + t) % host.len()])
                .collect()
        })
        .collect()
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

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
