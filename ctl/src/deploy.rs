//! `dsmilctl deploy`: stream the model with its sha256, show each stage.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    pub serving: &'a ServingFlags,
    /// A detached signature file (`dsmilctl sign`).
    pub signature: Option<&'a Path>,
    /// NAME=D0,D1,... for synthetic runs.
    pub input_shapes: Vec<String>,
}

/// How the deployment's instances run and batch; each unset flag leaves the
/// daemon's [serving] value.
#[derive(clap::Args)]
pub struct ServingFlags {
    /// Threads inside the runtime per worker instance (default: the daemon's
    /// serving.intra_op_threads; 0 there shares the host's CPUs among the
    /// instances).
    #[arg(long, default_value_t = 0)]
    pub intra_op_threads: u32,
    /// Dynamic batching of a batched model's queued requests: on or off
    /// (default: the daemon's serving.dynamic_batching).
    #[arg(long, value_parser = ["on", "off"])]
    pub batching: Option<String>,
    /// Longest wait in microseconds for more requests once a batch has one
    /// (default: serving.max_queue_delay_us).
    #[arg(long, value_name = "US")]
    pub max_queue_delay_us: Option<u64>,
    /// Batch sizes that run as soon as they are reached, without waiting out
    /// the delay, e.g. 4,8 (default: serving.preferred_batch_sizes).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub preferred_batch_sizes: Vec<u64>,
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
    /// sequence, cosine, snr or iou (default: chosen per output by its kind).
    #[arg(long, default_value = "")]
    pub gate_metric: String,
    /// INPUT=OUTPUT: a recurrent state (OUTPUT of one call is INPUT of the
    /// next). The data's samples then run in order, each model carrying its
    /// own state; a `sequence_start` array in the data starts new sequences.
    /// Repeatable.
    #[arg(long, value_name = "INPUT=OUTPUT")]
    pub state: Vec<String>,
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
        intra_op_threads: args.serving.intra_op_threads,
        dynamic_batching: args.serving.batching.clone().unwrap_or_default(),
        max_queue_delay_us: args.serving.max_queue_delay_us,
        preferred_batch_sizes: args.serving.preferred_batch_sizes.clone(),
        signature: signature.unwrap_or_default(),
        input_shapes: args.input_shapes,
        state: args.int8.state.clone(),
    };
    let model_name = spec.name.clone();
    // Spinners and the upload bar only on a terminal: a pipe, a log or
    // --json gets plain lines and no escape codes.
    let live = !json && std::io::stdout().is_terminal();
    let bar = if live {
        ProgressBar::new(bytes.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes}").expect("static template"));
    let mut messages = upload(spec, &bytes, calibration.as_ref(), validation.as_ref());
    if let Some((data, _)) = &weights {
        messages.extend(data.chunks(CHUNK).map(|c| DeployRequest {
            part: Some(Part::WeightsChunk(c.to_vec())),
        }));
    }
    let uploaded = bar.clone();
    // Set once the transport has taken the last message: from then on the
    // daemon may hold the whole upload before its answer arrives here.
    let all_sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::clone(&all_sent);
    let outbound = tokio_stream::iter(
        messages
            .into_iter()
            .inspect(move |m| {
                if let Some(Part::Chunk(c)) = &m.part {
                    uploaded.inc(c.len() as u64);
                }
            })
            .chain(std::iter::from_fn(move || {
                sent.store(true, std::sync::atomic::Ordering::Relaxed);
                None
            })),
    );
    let mut watch = Watch {
        live,
        json,
        upload_done: false,
        deployment_id: None,
        stage: None,
    };
    let outcome = tokio::select! {
        outcome = follow(clients, outbound, &bar, &mut watch) => outcome,
        interrupted = tokio::signal::ctrl_c() => {
            interrupted.context("listening for Ctrl-C")?;
            bar.finish_and_clear();
            watch.finish_stage(None, "interrupted");
            let all_sent = all_sent.load(std::sync::atomic::Ordering::Relaxed);
            return Err(interruption(&watch, all_sent, &model_name).into());
        }
    };
    let last = match outcome {
        Ok(last) => last,
        Err(status) => {
            bar.finish_and_clear();
            watch.finish_stage(None, "failed");
            return Err(connection_lost(&status, &watch).unwrap_or_else(|| status.into()));
        }
    };
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

/// What `deploy` has seen so far: enough to say, on Ctrl-C or a lost
/// connection, what became of the deploy.
struct Watch {
    live: bool,
    json: bool,
    /// dsmild answered the upload: it holds the whole upload and runs the
    /// deploy whether or not this client stays.
    upload_done: bool,
    deployment_id: Option<u64>,
    /// The stage in progress: its line, when it started here, its spinner.
    stage: Option<(String, Instant, ProgressBar)>,
}

impl Watch {
    /// A progress message: the stage it names has begun, and its
    /// `elapsed_ms` is the time dsmild spent in the stage before it (see
    /// `DeployProgress` in control.proto), so that is the number printed on
    /// the previous stage's line.
    fn step(&mut self, step: &DeployProgress) {
        self.deployment_id = Some(step.deployment_id);
        self.finish_stage(Some(step.elapsed_ms), "");
        if self.json {
            return;
        }
        let line = format!("{:<15} {}", step.stage, step.detail);
        if step.stage == dsmil_kinds::DeployState::Active.to_string() {
            // The end state: nothing more to time.
            println!("{line}");
            return;
        }
        let spinner = if self.live {
            let spinner = ProgressBar::new_spinner();
            spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("static template"));
            spinner.set_message(line.clone());
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner
        } else {
            ProgressBar::hidden()
        };
        self.stage = Some((line, Instant::now(), spinner));
    }

    /// Ends the stage in progress: its line with its own duration (dsmild's
    /// when known, else as timed here) and `outcome` when it did not end
    /// normally.
    fn finish_stage(&mut self, elapsed_ms: Option<u64>, outcome: &str) {
        let Some((line, started, spinner)) = self.stage.take() else {
            return;
        };
        spinner.finish_and_clear();
        let ms = elapsed_ms.unwrap_or_else(|| started.elapsed().as_millis() as u64);
        if outcome.is_empty() {
            println!("{line} ({ms} ms)");
        } else {
            println!("{line} ({outcome} after {ms} ms)");
        }
    }
}

/// Uploads, then follows the progress to the final message.
async fn follow(
    clients: &mut Clients,
    outbound: impl tokio_stream::Stream<Item = DeployRequest> + Send + 'static,
    bar: &ProgressBar,
    watch: &mut Watch,
) -> Result<Option<DeployProgress>, tonic::Status> {
    // dsmild answers only once the whole upload is received and staged.
    let mut progress = clients.control.deploy(outbound).await?.into_inner();
    watch.upload_done = true;
    bar.finish_and_clear();
    let mut last = None;
    while let Some(step) = progress.message().await? {
        if !step.done {
            watch.step(&step);
        }
        last = Some(step);
    }
    Ok(last)
}

/// dsmilctl's exit on Ctrl-C: the message says what became of the deploy;
/// `main` exits 130 (128 + SIGINT), as a shell does.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

fn interruption(watch: &Watch, all_sent: bool, model: &str) -> Interrupted {
    if !watch.upload_done && all_sent {
        return Interrupted(format!(
            "interrupted as the upload ended, before dsmild answered: the deploy of {model} may be running on \
             dsmild; see dsmilctl deployments --model {model}"
        ));
    }
    if !watch.upload_done {
        return Interrupted(format!(
            "interrupted during the upload: nothing was deployed (dsmild discards a partial upload); {model} is as it was"
        ));
    }
    let which = match watch.deployment_id {
        Some(id) => format!("deployment {id} of {model}"),
        None => format!("the deploy of {model}"),
    };
    let show = match watch.deployment_id {
        Some(id) => format!("dsmilctl show {id}"),
        None => format!("dsmilctl deployments --model {model}"),
    };
    Interrupted(format!(
        "interrupted: the upload was complete, so {which} continues on dsmild and goes Active if its checks pass.\n\
         follow it: {show}  or  dsmilctl events --model {model} --follow\n\
         undo it once it is Active: dsmilctl rollback {model} (back to the previous version) or dsmilctl undeploy {model}"
    ))
}

/// A transport failure (dsmild gone: killed, crashed, restarted) said in
/// words instead of `Unknown: h2 protocol error`; None for dsmild's own
/// refusals, which arrive as a status without a transport source.
fn connection_lost(status: &tonic::Status, watch: &Watch) -> Option<anyhow::Error> {
    use std::error::Error as _;
    let transport = matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Internal
    ) && status.source().is_some();
    if !transport {
        return None;
    }
    let during = if watch.upload_done {
        let follow = match watch.deployment_id {
            Some(id) => format!("`dsmilctl show {id}`"),
            None => "`dsmilctl deployments`".to_owned(),
        };
        format!(
            "during the deploy (did it stop or restart? see journalctl -u dsmild); the upload was complete: once dsmild is back, {follow} says how the deploy ended"
        )
    } else {
        "during the upload (did it stop or restart? see journalctl -u dsmild); nothing was deployed".to_owned()
    };
    Some(anyhow::anyhow!("dsmild closed the connection {during}"))
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
