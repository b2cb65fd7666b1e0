//! The command line: every subcommand with its flags and help, and which
//! module runs it. Flags become each module's arguments here; no command's
//! work, and nothing printed, lives in this file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{actions, client, deploy, infer, keys, quantize, views};

#[derive(Parser)]
#[command(name = "dsmilctl", version, about = "Control the dsmil edge inference daemon")]
pub struct Cli {
    /// dsmild's Unix socket.
    #[arg(long, global = true, env = "DSMIL_SOCKET", default_value = "/run/dsmild/dsmild.sock")]
    socket: String,
    /// Reach dsmild over TCP instead (host:port, or https://host:port).
    #[arg(long, global = true, env = "DSMIL_ADDR")]
    addr: Option<String>,
    /// With --addr: the CA (PEM) that signed dsmild's TLS certificate; turns
    /// TLS on.
    #[arg(long, global = true, env = "DSMIL_CA", requires = "addr")]
    ca: Option<PathBuf>,
    /// With --addr: this client's certificate (PEM) for mutual TLS; it names
    /// the principal (the Control API over TCP needs one).
    #[arg(long, global = true, env = "DSMIL_CERT", requires_all = ["addr", "key"])]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, global = true, env = "DSMIL_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a model and deploy it (a new version if the name exists).
    Deploy {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        device: Option<u32>,
        #[arg(long)]
        layer: Option<u32>,
        /// Classification level (default: the target layer).
        #[arg(long)]
        classification: Option<u32>,
        #[arg(long, default_value = "")]
        note: String,
        /// An OpenVINO IR's .bin (default: the .xml's name with .bin).
        #[arg(long)]
        weights: Option<PathBuf>,
        #[command(flatten)]
        int8: deploy::Int8Flags,
        /// Serve an FP32 model without quantizing it (recorded as an audit event).
        #[arg(long, conflicts_with_all = ["calib", "val"])]
        allow_fp32: bool,
        /// Runtime for a cpu device: onnxruntime or openvino (default: the device's configured one).
        #[arg(long, default_value = "")]
        backend: String,
        /// OpenVINO performance hint: latency (default) or throughput.
        #[arg(long, default_value = "")]
        performance_hint: String,
        /// Worker threads, each with its own infer request (default: the daemon's config).
        #[arg(long, default_value_t = 0)]
        infer_requests: u32,
        /// OpenVINO inference precision: f32, bf16 or f16 (default: the daemon's config).
        #[arg(long, default_value = "")]
        precision: String,
        /// Largest batch a request may send to a batched model (default: the
        /// daemon's serving.max_batch_size).
        #[arg(long, default_value_t = 0)]
        max_batch: u64,
        /// A detached signature of the model (`dsmilctl sign`); required in
        /// the layers dsmild's [signing].required_layers lists.
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Make an ed25519 key pair for signing models: PREFIX.key (private,
    /// mode 0600) and PREFIX.pub; never overwrites.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a model: a detached signature over "dsmil-model-v1\n" + its
    /// sha256 (hex), written to MODEL.sig, for `deploy --signature`.
    Sign {
        model: PathBuf,
        /// The private key (PKCS#8 PEM, from `dsmilctl keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signature (default: MODEL.sig).
        #[arg(long)]
        out: Option<PathBuf>,
        /// An OpenVINO IR's .bin, signed with the .xml (default: the .xml's
        /// name with .bin, if there).
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Quantize a model to INT8 on the daemon without deploying it; writes
    /// the INT8 model and prints the report.
    Quantize {
        file: PathBuf,
        #[command(flatten)]
        int8: deploy::Int8Flags,
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the report as a self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Stop serving a model and retire its deployment.
    Undeploy { model: String },
    /// Go back to the previous version of a model, or of every model on a
    /// device or in a layer (through warmup and health checks).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["model", "device", "layer"])))]
    Rollback {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        device: Option<u32>,
        #[arg(long)]
        layer: Option<u32>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The INT8 quantization report of MODEL or MODEL@VERSION.
    Report {
        model: String,
        /// Also write it as a self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Live p50/p95/p99, throughput and memory per deployment (refreshes
    /// until interrupted; --json or --once print one sample).
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2)]
        every: u64,
        #[arg(long)]
        once: bool,
    },
    /// Output and accuracy drift: baseline against live, per deployment.
    Drift {
        #[arg(default_value = "")]
        model: String,
    },
    /// Report an outcome (what the model predicted, what was true) for
    /// accuracy drift.
    Feedback {
        model: String,
        #[arg(long)]
        predicted: i64,
        #[arg(long)]
        actual: i64,
    },
    /// Re-read dsmild's configuration file (as SIGHUP does); prints what changed.
    Reload,
    /// Models with their versions.
    Models,
    /// Deployments with their state.
    Deployments {
        #[arg(long, default_value = "")]
        model: String,
    },
    /// One deployment's history.
    Show { id: u64 },
    /// All devices: layer, target, what they serve.
    Devices,
    /// Layers: devices, budget, use.
    Layers,
    /// Daemon status: readiness, runtimes, listeners, warnings.
    Status,
    /// The audit log.
    Events {
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Only events of this kind (deploy, activate, fail, rollback, refuse, ...).
        #[arg(long, default_value = "")]
        kind: String,
        /// If none match yet, wait this long for one.
        #[arg(long, default_value_t = 0)]
        wait_ms: u32,
        /// Keep printing new events as they happen.
        #[arg(long)]
        follow: bool,
    },
    /// Run one inference and print the outputs.
    Infer {
        model: String,
        /// FILE.npy (one-input models), NAME=FILE.npy, or FILE.npz keyed by input name.
        #[arg(long = "input", short)]
        inputs: Vec<String>,
        /// Random inputs of the declared shapes.
        #[arg(long, conflicts_with = "inputs")]
        random: bool,
        /// Size of dynamic dimensions with --random.
        #[arg(long, default_value_t = 1)]
        batch: i64,
        #[arg(long, default_value = "")]
        version: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    // Key work is local: no daemon needed.
    match &cli.command {
        Command::Keygen { out } => return keys::keygen(out, json),
        Command::Sign {
            model,
            key,
            out,
            weights,
        } => return keys::sign(model, key, weights.as_deref(), out.as_deref(), json),
        _ => {}
    }
    let tls = client::Tls {
        ca: cli.ca.clone(),
        identity: cli.cert.clone().zip(cli.key.clone()),
    };
    let mut c = client::connect(&cli.socket, cli.addr.as_deref(), &tls).await?;
    match cli.command {
        Command::Keygen { .. } | Command::Sign { .. } => unreachable!("run above, without a connection"),
        Command::Deploy {
            file,
            name,
            device,
            layer,
            classification,
            note,
            weights,
            int8,
            allow_fp32,
            backend,
            performance_hint,
            infer_requests,
            precision,
            max_batch,
            signature,
        } => {
            let args = deploy::Args {
                file: &file,
                name,
                device,
                layer,
                classification,
                note,
                weights: weights.as_deref(),
                int8: &int8,
                allow_fp32,
                backend,
                performance_hint,
                infer_requests,
                precision,
                max_batch,
                signature: signature.as_deref(),
            };
            deploy::run(&mut c, args, json).await
        }
        Command::Quantize {
            file,
            int8,
            output,
            html,
        } => {
            let args = quantize::Args {
                file: &file,
                int8: &int8,
                output: &output,
            };
            quantize::run(&mut c, args, html.as_deref(), json).await
        }
        Command::Undeploy { model } => actions::undeploy(&mut c, model, json).await,
        Command::Rollback {
            model,
            device,
            layer,
            reason,
        } => {
            use dsmil_proto::control::rollback_request::Target;
            let target = match (model, device, layer) {
                (Some(m), _, _) => Target::Model(m),
                (_, Some(d), _) => Target::Device(d),
                (_, _, Some(l)) => Target::Layer(l),
                _ => unreachable!("clap requires one of --model, --device, --layer"),
            };
            actions::rollback(&mut c, target, reason, json).await
        }
        Command::Report { model, html } => views::report::run(&mut c, &model, html.as_deref(), json).await,
        Command::Reload => actions::reload(&mut c, json).await,
        Command::Drift { model } => views::drift::run(&mut c, model, json).await,
        Command::Feedback {
            model,
            predicted,
            actual,
        } => actions::feedback(&mut c, model, predicted, actual, json).await,
        Command::Top { every, once } => views::top::run(&mut c, every, once, json).await,
        Command::Models => views::models::run(&mut c, json).await,
        Command::Deployments { model } => views::deployments::list(&mut c, model, json).await,
        Command::Show { id } => views::deployments::show(&mut c, id, json).await,
        Command::Devices => views::topology::devices(&mut c, json).await,
        Command::Layers => views::topology::layers(&mut c, json).await,
        Command::Status => views::status::run(&mut c, json).await,
        Command::Events {
            model,
            after,
            limit,
            kind,
            wait_ms,
            follow,
        } => {
            let query = views::events::Query {
                model,
                after,
                limit,
                kind,
                wait_ms,
            };
            views::events::run(&mut c, query, follow, json).await
        }
        Command::Infer {
            model,
            inputs,
            random,
            batch,
            version,
        } => {
            infer::run(
                &mut c,
                infer::Args {
                    model,
                    version,
                    inputs,
                    random,
                    batch,
                },
                json,
            )
            .await
        }
    }
}
