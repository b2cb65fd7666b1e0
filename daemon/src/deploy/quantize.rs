//! The Quantize RPC's work: an uploaded model quantized and handed back,
//! never stored, journaled or served. It checks the upload as a deploy
//! would, then runs the same quantizer `dsmild quantize` runs on files.
//!
//! Blocks for as long as calibration and the gate take: call it from
//! `spawn_blocking`, never from a tokio worker. It takes no `deploy_lock`,
//! because it touches nothing a deploy, rollback or reload does.

use crate::compress::offline::OfflineError;
use crate::compress::{CompressError, Options, Quantized};
use crate::topology::Target;

use super::{DeployError, DeployRequest, Deployer, Staged};

/// Why a Quantize request failed; each cause keeps its own message.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The upload does not match its spec, or no CPU runtime is loaded.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The spec's method or activation type is not one the quantizer has.
    #[error(transparent)]
    Options(#[from] CompressError),
    #[error(transparent)]
    Quantizer(#[from] OfflineError),
}

impl Deployer {
    /// Quantizes the staged upload by the spec's method, gated like a deploy.
    pub fn quantize(&self, request: &DeployRequest, staged: &Staged) -> Result<Quantized, QuantizeError> {
        staged.check(request)?;
        let config = self.config();
        let options = Options {
            state: request.state.clone(),
            ..Options::resolve(
                &config.quantization,
                request.method,
                request.activations,
                request.gate_metric,
            )
        };
        // Calibration and the gate run on the CPU runtime, as offline.
        let backend = self.runtimes.backend_for(Target::Cpu).map_err(DeployError::from)?;
        Ok(crate::compress::offline::quantize_files(
            &*backend,
            staged.model.path(),
            staged.calibration.as_ref().map(|b| b.path()),
            staged.validation.as_ref().map(|b| b.path()),
            &options,
        )?)
    }
}
