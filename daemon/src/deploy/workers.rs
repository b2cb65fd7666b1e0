//! A deployment's worker instances, from the first load to the registry
//! entry: loading the instances, starting their threads, measuring what they
//! hold, and building the [`ActiveModel`] with its request limits, drift
//! tracker and shadow check. The pipeline (its Compiling and Loading stages,
//! then activation) and the restore after a restart both launch through
//! here, so a deployment serves the same way however it came to serve.
//!
//! Never journals, admits memory or touches the registry: what a load means
//! for the deployment (a stage, a failure, a restore report) is the
//! caller's to say and record.

use crate::backend::{Backend, BackendError, LoadOptions, LoadedModel, Pool, Signature};
use crate::config::Config;
use crate::monitor::probation::Probation;
use crate::monitor::process;
use crate::store::DeploymentRecord;

use super::launch::Launch;
use super::{ActiveModel, Deployer};

/// Loaded instances whose threads have not started.
pub(super) struct Instances {
    /// Process RSS just before the first instance was built.
    rss_before: u64,
    signature: Signature,
    models: Vec<Box<dyn LoadedModel>>,
}

impl Instances {
    /// Loads the first instance. The process's RSS is read just before
    /// (with the allocator's free pages given back), so that the
    /// measurement counts what the instances hold and nothing older.
    pub fn load_first(backend: &dyn Backend, bytes: &[u8], options: &LoadOptions) -> Result<Instances, BackendError> {
        process::release_free_memory();
        let rss_before = process::rss_bytes();
        let first = backend.load(bytes, options)?;
        Ok(Instances {
            rss_before,
            signature: first.signature().clone(),
            models: vec![first],
        })
    }

    /// Where the first instance's compiled model came from, if not a
    /// compile (`LoadedModel::compiled_from`).
    pub fn compiled_from(&self) -> Option<&'static str> {
        self.models.first().and_then(|m| m.compiled_from())
    }

    /// Loads further instances until there are `launch.workers` (never
    /// fewer than the first), each with its own options (its CPUs).
    pub fn load_rest(&mut self, backend: &dyn Backend, bytes: &[u8], launch: &Launch) -> Result<(), BackendError> {
        while self.models.len() < launch.workers {
            let options = launch.instance_options(self.models.len());
            self.models.push(backend.load(bytes, &options)?);
        }
        Ok(())
    }

    /// Starts one thread per instance, named after the deployment, on one
    /// queue of `queue_capacity`, batching if the model is batched.
    pub fn start(self, record: &DeploymentRecord, launch: &Launch, queue_capacity: usize) -> std::io::Result<Workers> {
        let label = format!("{}-v{}", record.model, record.version);
        let batching = launch.batching.clone().filter(|_| self.signature.is_batched());
        let pool = Pool::start(&label, self.models, queue_capacity, batching, &launch.cpus)?;
        Ok(Workers {
            pool,
            signature: self.signature,
            rss_before: self.rss_before,
        })
    }
}

/// Running instances, not yet in the registry.
pub(super) struct Workers {
    pub pool: Pool,
    pub signature: Signature,
    rss_before: u64,
}

impl Workers {
    /// The instances' measured footprint: how much the process grew since
    /// just before the first was built.
    pub fn measure(&self) -> u64 {
        process::release_free_memory();
        process::rss_bytes().saturating_sub(self.rss_before)
    }

    /// Joins the threads and gives their memory back, for a deployment that
    /// will not serve.
    pub fn stop(self) {
        self.pool.close_and_join();
        process::release_free_memory();
    }

    /// The registry entry that serves `record` on these workers: its request
    /// limits (from the record and `config`), its drift tracker and, for a
    /// model dsmil quantized, its shadow check.
    pub fn serve(
        self,
        deployer: &Deployer,
        record: DeploymentRecord,
        probation: Probation,
        config: &Config,
    ) -> ActiveModel {
        let limits = Launch::of(&record, config).limits;
        let drift = deployer.drift_tracker_for(&record);
        let shadow = deployer.shadow_for(&record);
        ActiveModel::new(record, self.signature, limits, self.pool, probation, drift).with_shadow(shadow)
    }
}
