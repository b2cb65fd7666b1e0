//! `dsmild quantize`: the same quantizer without a daemon, for operators who
//! prepare models on a workstation. Reads the model and the .npz files,
//! quantizes on the CPU runtime, writes the INT8 model atomically, and
//! returns the report.

use std::path::PathBuf;

use super::{CompressError, Options, Report, Samples, quantize_static};
use crate::backend::Runtimes;
use crate::config::Config;
use crate::topology::Target;

/// `dsmild quantize`'s command line.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    input: PathBuf,
    /// Calibration samples (.npz keyed by input name); not for --method dynamic.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Validation samples for the accuracy gate (.npz; `labels` optional).
    #[arg(long)]
    val: Option<PathBuf>,
    #[arg(long, default_value = "minmax", value_parser = ["minmax", "percentile", "entropy", "dynamic"])]
    method: String,
    #[arg(long, default_value_t = 99.999)]
    percentile: f64,
    /// Activation type: uint8 (asymmetric) or int8 (symmetric).
    #[arg(long, default_value = "uint8", value_parser = ["uint8", "int8"])]
    activations: String,
    #[arg(short, long)]
    output: PathBuf,
}

impl QuantizeArgs {
    /// The job, with the gate's threshold and sample cap from `config`.
    pub fn into_job(self, config: &Config) -> Job {
        let q = &config.quantization;
        Job {
            dynamic: self.method == "dynamic",
            options: Options {
                method: super::Method::parse(&self.method, self.percentile).unwrap_or(super::Method::MinMax),
                activations: if self.activations == "int8" {
                    super::ActivationType::I8Symmetric
                } else {
                    super::ActivationType::U8Asymmetric
                },
                max_samples: q.calibration_samples as usize,
                min_retention: q.min_accuracy_retention,
                fallback_evaluations: q.fallback_evaluations as usize,
            },
            input: self.input,
            calibration: self.calib,
            validation: self.val,
            output: self.output,
        }
    }
}

pub struct Job {
    pub input: PathBuf,
    /// Required unless `dynamic`.
    pub calibration: Option<PathBuf>,
    /// Dynamic quantization (weights now, activations at run time).
    pub dynamic: bool,
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
    #[error("static quantization needs calibration data: give --calib FILE.npz (or use --method dynamic)")]
    NeedsCalibration,
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
    let validation = match &job.validation {
        Some(path) => Some(Samples::read(path, &signature, usize::MAX)?),
        None => None,
    };
    let quantized = if job.dynamic {
        super::quantize_dynamic(&*backend, &model, validation.as_ref(), job.options.min_retention)?
    } else {
        let path = job.calibration.as_ref().ok_or(OfflineError::NeedsCalibration)?;
        let calibration = Samples::read(path, &signature, job.options.max_samples)?;
        quantize_static(&*backend, &model, &calibration, validation.as_ref(), &job.options)?
    };
    let tmp = job.output.with_extension("onnx.tmp");
    std::fs::write(&tmp, &quantized.model).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &job.output).map_err(io("renaming into", &job.output))?;
    Ok(quantized.report)
}
