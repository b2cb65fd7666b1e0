//! `dsmild quantize`: the same quantizer without a daemon, for operators who
//! prepare models on a workstation. Reads the model and the .npz files,
//! quantizes on the CPU runtime, writes the INT8 model atomically, and
//! returns the report.

use std::path::{Path, PathBuf};

use super::{CompressError, Options, Quantized, Report, Samples, quantize};
use crate::backend::{Backend, Runtimes};
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
    /// What the accuracy gate measures: accuracy, agreement, position,
    /// sequence, cosine, snr or iou (default: chosen per output by its kind).
    #[arg(long)]
    gate_metric: Option<String>,
    /// Write the model even when little of it ends up in INT8
    /// (quantization.min_int8_mac_share), as a deploy's --allow-fp32 does.
    #[arg(long)]
    allow_fp32: bool,
    /// INPUT=OUTPUT: a recurrent state, the output of one call fed to the
    /// input of the next; the data's samples then run in order as one
    /// stream (an optional `sequence_start` array starts new sequences).
    #[arg(long, value_name = "INPUT=OUTPUT")]
    state: Vec<String>,
    #[arg(short, long)]
    output: PathBuf,
}

impl QuantizeArgs {
    /// The job, with the gate's threshold and sample cap from `config`.
    pub fn into_job(self, config: &Config) -> Result<Job, CompressError> {
        let mut q = config.quantization.clone();
        q.percentile = self.percentile;
        let invalid = |e: dsmil_kinds::Unknown| CompressError::InvalidOption(e.to_string());
        let method = self.method.parse().map_err(invalid)?;
        let activations = self.activations.parse().map_err(invalid)?;
        let metric = self
            .gate_metric
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(invalid)?;
        let state = self
            .state
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<_>, String>>()
            .map_err(CompressError::InvalidOption)?;
        Ok(Job {
            options: Options {
                state,
                ..Options::resolve(&q, Some(method), Some(activations), metric)
            },
            allow_fp32: self.allow_fp32,
            min_int8_mac_share: q.min_int8_mac_share,
            input: self.input,
            calibration: self.calib,
            validation: self.val,
            output: self.output,
        })
    }
}

pub struct Job {
    pub input: PathBuf,
    /// Required unless the method is dynamic.
    pub calibration: Option<PathBuf>,
    pub validation: Option<PathBuf>,
    pub output: PathBuf,
    pub options: Options,
    /// Write a result that stays mostly FP32 anyway.
    pub allow_fp32: bool,
    pub min_int8_mac_share: f64,
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
    #[error("{0}: nothing written; --allow-fp32 writes it anyway")]
    MostlyFp32(super::MostlyFp32),
    #[error(transparent)]
    Compress(#[from] CompressError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OfflineError {
    let path = path.to_owned();
    move |source| OfflineError::Io { action, path, source }
}

/// Quantizes the model at `job.input`; writes the result to `job.output`
/// (atomically: a temp file renamed into place).
pub fn run(config: &Config, job: &Job) -> Result<Report, OfflineError> {
    let runtimes = Runtimes::load(config);
    let backend = runtimes.backend_for(Target::Cpu).map_err(CompressError::from)?;
    let quantized = quantize_files(
        &*backend,
        &job.input,
        job.calibration.as_deref(),
        job.validation.as_deref(),
        &job.options,
    )?;
    // INT8 by name only is FP32 in practice: said, not written, as a deploy
    // refuses it.
    let r = &quantized.report;
    if let Some(why) = r.mostly_fp32(job.min_int8_mac_share).filter(|_| !job.allow_fp32) {
        return Err(OfflineError::MostlyFp32(why));
    }
    let tmp = job.output.with_extension("onnx.tmp");
    std::fs::write(&tmp, &quantized.model).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &job.output).map_err(io("renaming into", &job.output))?;
    Ok(quantized.report)
}

/// The quantizer on files, on the CPU runtime: what `dsmild quantize` and
/// the daemon's Quantize RPC (on staged uploads) both run.
pub fn quantize_files(
    backend: &dyn Backend,
    input: &Path,
    calibration: Option<&Path>,
    validation: Option<&Path>,
    options: &Options,
) -> Result<Quantized, OfflineError> {
    let model = std::fs::read(input).map_err(io("reading", input))?;
    // The model's own signature decides how the .npz arrays are read.
    // Unoptimised: only the signature is wanted, and optimising a large
    // graph costs a noticeable share of a quick quantization.
    let inspect = crate::backend::LoadOptions {
        inspect: true,
        ..Default::default()
    };
    let probe = backend.load(&model, &inspect).map_err(CompressError::from)?;
    let signature = probe.signature().clone();
    drop(probe);
    let validation = match validation {
        Some(path) => Some(Samples::read_with_state(path, &signature, usize::MAX, &options.state)?),
        None => None,
    };
    let calibration = match calibration {
        Some(path) => Some(Samples::read_with_state(
            path,
            &signature,
            options.max_samples,
            &options.state,
        )?),
        None if options.method.is_static() => return Err(OfflineError::NeedsCalibration),
        None => None,
    };
    Ok(quantize(
        backend,
        &model,
        calibration.as_ref(),
        validation.as_ref(),
        options,
    )?)
}
