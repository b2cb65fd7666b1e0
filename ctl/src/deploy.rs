//! `dsmilctl deploy`: stream the model with its sha256, show each stage.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dsmil_proto::control::{Attachment, DeployProgress, DeployRequest, DeploySpec, deploy_request::Part};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::client::Clients;
use crate::output;

const CHUNK: usize = 1 << 20;

pub struct Args<'a> {
    pub file: &'a Path,
    pub name: String,
    pub device: Option<u32>,
    pub layer: Option<u32>,
    pub classification: Option<u32>,
    pub note: String,
    /// An OpenVINO IR's .bin (default: beside the .xml).
    pub weights: Option<&'a Path>,
    pub int8: &'a Int8Flags,
    pub allow_fp32: bool,
    pub backend: String,
    pub performance_hint: String,
    pub infer_requests: u32,
    pub precision: String,
    pub max_batch: u64,
    /// A detached signature file (`dsmilctl sign`).
    pub signature: Option<&'a Path>,
    /// NAME=D0,D1,... for synthetic runs.
    pub input_shapes: Vec<String>,
}

/// How an FP32 upload becomes INT8: the flags `deploy` and `quantize` share.
#[derive(clap::Args)]
pub struct Int8Flags {
    /// Calibration data (.npz keyed by input name): quantizes an FP32 model to INT8.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Validation data for the accuracy gate (.npz; a `labels` array makes it top-1 accuracy).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Method: minmax, percentile, entropy (calibrated), or dynamic (default: the daemon's config).
    #[arg(long, default_value = "")]
    pub method: String,
    /// Activation type: uint8 or int8 (default: the daemon's config).
    #[arg(long, default_value = "")]
    pub activations: String,
    /// What the accuracy gate measures: accuracy, agreement, position,
    /// cosine, snr or iou (default: chosen per output by its kind).
    #[arg(long, default_value = "")]
    pub gate_metric: String,
}

/// The INT8 flags' files, read, with the spec fields they fill.
pub struct Int8Files {
    pub calibration: Option<(Vec<u8>, Attachment)>,
    pub validation: Option<(Vec<u8>, Attachment)>,
}

impl Int8Flags {
    /// The data files' names, for dsmild's messages about them.
    pub fn file_names(&self) -> (String, String) {
        let name = |p: &Option<std::path::PathBuf>| {
            p.as_deref()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        (name(&self.calib), name(&self.val))
    }

    pub fn read(&self) -> anyhow::Result<Int8Files> {
        Ok(Int8Files {
            calibration: self.calib.as_deref().map(read).transpose()?,
            validation: self.val.as_deref().map(read).transpose()?,
        })
    }
}

/// A file's bytes and its declared size and sha256.
pub fn read(path: &Path) -> anyhow::Result<(Vec<u8>, Attachment)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let attachment = Attachment {
        size_bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    Ok((bytes, attachment))
}

pub async fn run(clients: &mut Clients, args: Args<'_>, json: bool) -> anyhow::Result<()> {
    // A snapshot directory or archive names its model; a checkpoint is
    // refused with the command that exports it.
    let located = crate::bring::locate(args.file)?;
    let file = located.model.as_path();
    let (bytes, model) = read(file)?;
    let format = dsmil_kinds::Format::from_path(file);
    // An IR's .bin: as given, else beside the .xml with the same stem. A
    // missing .bin is the daemon's to refuse, with the fix in its message.
    let weights_path = match (format, args.weights) {
        (_, Some(path)) => Some(path.to_owned()),
        (_, None) if located.weights.is_some() => located.weights.clone(),
        (dsmil_kinds::Format::Ir, None) => Some(file.with_extension("bin")).filter(|p| p.is_file()),
        _ => None,
    };
    let weights = weights_path.as_deref().map(read).transpose()?;
    let signature = args.signature.map(crate::keys::read_signature).transpose()?;
    let Int8Files {
        calibration,
        validation,
    } = args.int8.read()?;
    let spec = DeploySpec {
        name: args.name,
        device: args.device,
        layer: args.layer,
        format: format.to_string(),
        weights: weights.as_ref().map(|(_, a)| a.clone()),
        size_bytes: model.size_bytes,
        sha256: model.sha256,
        classification: args.classification,
        note: args.note,
        calibration: calibration.as_ref().map(|(_, a)| a.clone()),
        calibration_file: args.int8.file_names().0,
        validation_file: args.int8.file_names().1,
        validation: validation.as_ref().map(|(_, a)| a.clone()),
        method: args.int8.method.clone(),
        activations: args.int8.activations.clone(),
        gate_metric: args.int8.gate_metric.clone(),
        allow_fp32: args.allow_fp32,
        backend: args.backend,
        performance_hint: args.performance_hint,
        infer_requests: args.infer_requests,
        precision: args.precision,
        max_batch: args.max_batch,
        signature: signature.unwrap_or_default(),
        input_shapes: args.input_shapes,
    };
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(bytes.len() as u64)
    };
    bar.set_style(ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes}").expect("static template"));
    let mut messages = upload(spec, &bytes, calibration.as_ref(), validation.as_ref());
    if let Some((data, _)) = &weights {
        messages.extend(data.chunks(CHUNK).map(|c| DeployRequest {
            part: Some(Part::WeightsChunk(c.to_vec())),
        }));
    }
    let uploaded = bar.clone();
    let outbound = tokio_stream::iter(messages.into_iter().inspect(move |m| {
        if let Some(Part::Chunk(c)) = &m.part {
            uploaded.inc(c.len() as u64);
        }
    }));
    let mut progress = clients.control.deploy(outbound).await?.into_inner();
    bar.finish_and_clear();
    let mut last: Option<DeployProgress> = None;
    while let Some(step) = progress.message().await? {
        if !json && !step.done {
            println!("{:<15} {} ({} ms)", step.stage, step.detail, step.elapsed_ms);
        }
        last = Some(step);
    }
    let last = last.context("dsmild closed the deploy without a result")?;
    let deployment = last.deployment.context("dsmild's last message carried no deployment")?;
    output::print(&deployment, json, || {
        println!(
            "deployed {} version {} on device {} (layer {}, {} on {}), deployment {}",
            deployment.model,
            deployment.version,
            deployment.device,
            deployment.layer,
            deployment.backend,
            deployment.effective_target,
            deployment.id
        );
    })
}

/// The upload Deploy and Quantize share: the spec, then the model's chunks,
/// then each attachment's.
pub fn upload(
    spec: DeploySpec,
    model: &[u8],
    calibration: Option<&(Vec<u8>, Attachment)>,
    validation: Option<&(Vec<u8>, Attachment)>,
) -> Vec<DeployRequest> {
    let mut messages = vec![DeployRequest {
        part: Some(Part::Spec(spec)),
    }];
    messages.extend(model.chunks(CHUNK).map(|c| DeployRequest {
        part: Some(Part::Chunk(c.to_vec())),
    }));
    if let Some((data, _)) = calibration {
        messages.extend(data.chunks(CHUNK).map(|c| DeployRequest {
            part: Some(Part::CalibrationChunk(c.to_vec())),
        }));
    }
    if let Some((data, _)) = validation {
        messages.extend(data.chunks(CHUNK).map(|c| DeployRequest {
            part: Some(Part::ValidationChunk(c.to_vec())),
        }));
    }
    messages
}
