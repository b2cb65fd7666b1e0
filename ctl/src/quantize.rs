//! `dsmilctl quantize`: the daemon's quantizer without a deploy. Uploads
//! the model and its data like `deploy`, receives the report and the INT8
//! model, checks the model's sha256 and writes it atomically, then prints
//! the report as `dsmilctl report` does.

use std::path::Path;

use anyhow::Context;
use dsmil_proto::control::{DeploySpec, quantize_response::Part};
use sha2::{Digest, Sha256};

use crate::client::Clients;
use crate::deploy::{Int8Files, Int8Flags, read, upload};
use crate::views;

pub struct Args<'a> {
    pub file: &'a Path,
    pub int8: &'a Int8Flags,
    pub output: &'a Path,
}

/// `html`: where to write the report as a page too.
pub async fn run(clients: &mut Clients, args: Args<'_>, html: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let (bytes, model) = read(args.file)?;
    let Int8Files {
        calibration,
        validation,
    } = args.int8.read()?;
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let spec = DeploySpec {
        name,
        format: "onnx".into(),
        size_bytes: model.size_bytes,
        sha256: model.sha256,
        calibration: calibration.as_ref().map(|(_, a)| a.clone()),
        calibration_file: args.int8.file_names().0,
        validation_file: args.int8.file_names().1,
        validation: validation.as_ref().map(|(_, a)| a.clone()),
        method: args.int8.method.clone(),
        activations: args.int8.activations.clone(),
        gate_metric: args.int8.gate_metric.clone(),
        state: args.int8.state.clone(),
        ..Default::default()
    };
    let messages = upload(spec, &bytes, calibration.as_ref(), validation.as_ref());
    let mut answer = clients
        .control
        .quantize(tokio_stream::iter(messages))
        .await?
        .into_inner();
    let result = match answer.message().await?.and_then(|m| m.part) {
        Some(Part::Result(r)) => r,
        _ => anyhow::bail!("dsmild's answer did not start with the quantization result"),
    };
    let mut quantized = Vec::with_capacity(result.size_bytes as usize);
    while let Some(message) = answer.message().await? {
        if let Some(Part::Chunk(c)) = message.part {
            quantized.extend_from_slice(&c);
        }
    }
    let sha256 = hex::encode(Sha256::digest(&quantized));
    if quantized.len() as u64 != result.size_bytes || sha256 != result.sha256 {
        anyhow::bail!(
            "the INT8 model arrived damaged ({} bytes, sha256 {sha256}; dsmild sent {} bytes, sha256 {})",
            quantized.len(),
            result.size_bytes,
            result.sha256
        );
    }
    let tmp = args.output.with_extension("onnx.tmp");
    std::fs::write(&tmp, &quantized).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, args.output).with_context(|| format!("renaming into {}", args.output.display()))?;
    let report = result.report.context("dsmild's result carried no report")?;
    if !json {
        println!("wrote {}", args.output.display());
    }
    views::report::print(&report, html, json)
}
