//! `dsmild quantize`: the same quantizer without a daemon, for operators who
//! prepare models on a workstation. Reads the model and the .npz files,
//! quantizes on the CPU runtime, writes the INT8 model atomically, and
//! returns the report.

use std::path::PathBuf;

use super::{CompressError, Options, Report, Samples, quantize_static};
use crate::backend::Runtimes;
use crate::config::Config;
use crate::topology::Target;

pub struct Job {
    pub input: PathBuf,
    pub calibration: PathBuf,
    pub validation: Option<PathBuf>,
    pub output: PathBuf,
    pub options: Options,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Compress(#[from] CompressError),
}

pub fn run(config: &Config, job: &Job) -> Result<Report, OfflineError> {
    let io = |action, path: &PathBuf| {
        let path = path.clone();
        move |source| OfflineError::Io { action, path, source }
    };
    let model = std::fs::read(&job.input).map_err(io("reading", &job.input))?;
    let runtimes = Runtimes::load(config);
    let backend = runtimes.backend_for(Target::Cpu).map_err(CompressError::from)?;
    // The model's own signature decides how the .npz arrays are read.
    let probe = backend
        .load(&model, &crate::backend::LoadOptions { intra_op_threads: 0 })
        .map_err(CompressError::from)?;
    let signature = probe.signature().clone();
    drop(probe);
    let calibration = Samples::read(&job.calibration, &signature, job.options.max_samples)?;
    let validation = match &job.validation {
        Some(path) => Some(Samples::read(path, &signature, usize::MAX)?),
        None => None,
    };
    let quantized = quantize_static(&*backend, &model, &calibration, validation.as_ref(), &job.options)?;
    let tmp = job.output.with_extension("onnx.tmp");
    std::fs::write(&tmp, &quantized.model).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &job.output).map_err(io("renaming into", &job.output))?;
    Ok(quantized.report)
}
