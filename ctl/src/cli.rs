//! The command line: every subcommand with its flags and help, and which
//! module runs it. Flags become each module's arguments here; no command's
//! work, and nothing printed, lives in this file. Every argument has help
//! (a test walks the definitions): completions and man pages
//! (`generate`) are made from them.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use dsmil_kinds::{DeployState, EventKind};

use crate::{actions, client, deploy, generate, infer, keys, quantize, views};

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
        /// The model: .onnx, an OpenVINO IR's .xml, or .tflite.
        file: PathBuf,
        /// The model's name, as inference clients address it.
        #[arg(long)]
        name: String,
        /// The device to serve on (default: the model's current device, else
        /// the first free one).
        #[arg(long)]
        device: Option<u32>,
        /// The layer to serve in; dsmild picks the device.
        #[arg(long)]
        layer: Option<u32>,
        /// Classification level (default: the target layer).
        #[arg(long)]
        classification: Option<u32>,
        /// Free text kept with the version (who, why).
        #[arg(long, default_value = "")]
        note: String,
        /// An OpenVINO IR's .bin (default: the .xml's name with .bin).
        #[arg(long)]
        weights: Option<PathBuf>,
        #[command(flatten)]
        int8: deploy::Int8Flags,
        /// Accept FP32 (audited): without data, serve the model as it is; with
        /// --calib/--val, quantize but accept a result that stays mostly FP32.
        #[arg(long)]
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
        #[command(flatten)]
        serving: Box<deploy::ServingFlags>,
        /// A detached signature of the model (`dsmilctl sign`); required in
        /// the layers dsmild's [signing].required_layers lists.
        #[arg(long)]
        signature: Option<PathBuf>,
        /// The shape synthetic runs (dry run, warmup, health probes) feed an
        /// input with dynamic dimensions, e.g. images=1,3,320,320; repeat per
        /// input (default: the data's shapes with --calib/--val, else 1s).
        #[arg(long = "input-shape", value_name = "NAME=D0,D1,...")]
        input_shapes: Vec<String>,
    },
    /// Make an ed25519 key pair for signing models: PREFIX.key (private,
    /// mode 0600) and PREFIX.pub; never overwrites.
    Keygen {
        /// The key pair's path prefix: writes PREFIX.key and PREFIX.pub.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a model: a detached signature over "dsmil-model-v1\n" + its
    /// sha256 (hex), written to MODEL.sig, for `deploy --signature`.
    Sign {
        /// The model file to sign.
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
        /// The FP32 model (.onnx).
        file: PathBuf,
        #[command(flatten)]
        int8: deploy::Int8Flags,
        /// Where to write the INT8 model.
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the report as a self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Stop serving a model and retire its deployment.
    Undeploy {
        /// The model's name.
        model: String,
    },
    /// Go back to the previous version of a model, or of every model on a
    /// device or in a layer (through warmup and health checks).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["name", "model", "device", "layer"])))]
    Rollback {
        /// The model to roll back (as --model).
        #[arg(value_name = "MODEL")]
        name: Option<String>,
        /// The model to roll back.
        #[arg(long)]
        model: Option<String>,
        /// Roll back every model on this device.
        #[arg(long)]
        device: Option<u32>,
        /// Roll back every model in this layer.
        #[arg(long)]
        layer: Option<u32>,
        /// Why, for the event log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The INT8 quantization report of MODEL or MODEL:VERSION (or MODEL@VERSION).
    Report {
        /// MODEL (the serving version, else the latest) or MODEL:VERSION.
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
        /// Print one sample and exit.
        #[arg(long)]
        once: bool,
    },
    /// Output and accuracy drift: baseline against live, per deployment.
    Drift {
        /// Only this model (default: every serving model).
        #[arg(default_value = "")]
        model: String,
    },
    /// Report an outcome (what the model predicted, what was true) for
    /// accuracy drift.
    Feedback {
        /// The model that made the prediction.
        model: String,
        /// The class the model predicted.
        #[arg(long)]
        predicted: i64,
        /// The class that was true.
        #[arg(long)]
        actual: i64,
    },
    /// Re-read dsmild's configuration file (as SIGHUP does); prints what changed.
    Reload,
    /// Models with their versions and the deployment serving each.
    Models,
    /// Deployments with their state.
    Deployments {
        /// Only this model's deployments.
        #[arg(long, default_value = "")]
        model: String,
        /// Only deployments in this state.
        #[arg(long, value_parser = PossibleValuesParser::new(state_names()), ignore_case = true)]
        state: Option<String>,
    },
    /// One deployment's history: by id, or MODEL (its serving deployment,
    /// else its newest) or MODEL:VERSION (that version's newest).
    Show {
        /// A deployment id, MODEL or MODEL:VERSION (an all-digit model name
        /// needs the :VERSION form).
        deployment: String,
    },
    /// All devices: layer, target, what they serve.
    Devices {
        /// Only this layer's devices.
        #[arg(long)]
        layer: Option<u32>,
    },
    /// Layers: devices, budget, use.
    Layers,
    /// Daemon status: readiness, runtimes, listeners, warnings.
    Status,
    /// The audit log, newest first; --follow prints new events as they
    /// happen (oldest first, with --json one JSON object a line, each shaped
    /// as an element of the list's "events").
    Events {
        /// Only events about this model.
        #[arg(long, default_value = "")]
        model: String,
        /// Only events after this sequence number, oldest first (a cursor
        /// for scripts: with --wait-ms, the next events after it).
        #[arg(long)]
        after: Option<u64>,
        /// At most this many: the newest N (0: all). With --follow, the newest
        /// N are printed before the new ones.
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Only events since then: a duration ago (10m, 2h, 1d) or an RFC
        /// 3339 time (2026-12-04T13:00:00Z).
        #[arg(long, value_parser = views::events::parse_since)]
        since: Option<u64>,
        /// Only events of this kind.
        #[arg(long, value_parser = PossibleValuesParser::new(EventKind::ALL.iter().map(|k| k.as_str())))]
        kind: Option<String>,
        /// If none match yet, wait this long (milliseconds) for one.
        #[arg(long, default_value_t = 0)]
        wait_ms: u32,
        /// Keep printing new events as they happen (from now, unless --after,
        /// --since or --limit asks for some history first).
        #[arg(long, conflicts_with = "wait_ms")]
        follow: bool,
    },
    /// Run one inference and print the outputs.
    Infer {
        /// The model to ask.
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
        /// A version that must be serving (default: whichever is).
        #[arg(long, default_value = "")]
        version: String,
    },
    /// Remove the versions nothing serves or can roll back to (with their
    /// deployments and reports; events stay) and the model files nothing in
    /// the journal names. Admin only.
    Prune {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write man pages: dsmilctl(1) to stdout, or with --out every page
    /// (dsmilctl.1 and one per command, dsmilctl-deploy.1, ...) into DIR.
    Man {
        /// The directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// dsmilctl's command definitions, for the generators and the tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Every deployment state's name: the pipeline's stages, then the ends.
fn state_names() -> Vec<&'static str> {
    let ends = [DeployState::Failed, DeployState::RolledBack, DeployState::Retired];
    DeployState::PIPELINE.iter().chain(&ends).map(|s| s.as_str()).collect()
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    // Key work and the generators are local: no daemon needed.
    match &cli.command {
        Command::Keygen { out } => return keys::keygen(out, json),
        Command::Sign {
            model,
            key,
            out,
            weights,
        } => return keys::sign(model, key, weights.as_deref(), out.as_deref(), json),
        Command::Completions { shell } => return generate::completions(*shell),
        Command::Man { out } => return generate::man(out.as_deref()),
        _ => {}
    }
    let tls = client::Tls {
        ca: cli.ca.clone(),
        identity: cli.cert.clone().zip(cli.key.clone()),
    };
    let mut c = client::connect(&cli.socket, cli.addr.as_deref(), &tls).await?;
    match cli.command {
        Command::Keygen { .. } | Command::Sign { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("run above, without a connection")
        }
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
            serving,
            signature,
            input_shapes,
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
                serving: &serving,
                signature: signature.as_deref(),
                input_shapes,
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
            name,
            model,
            device,
            layer,
            reason,
        } => {
            use dsmil_proto::control::rollback_request::Target;
            let target = match (name.or(model), device, layer) {
                (Some(m), _, _) => Target::Model(m),
                (_, Some(d), _) => Target::Device(d),
                (_, _, Some(l)) => Target::Layer(l),
                _ => unreachable!("clap requires one of --model, --device, --layer"),
            };
            actions::rollback(&mut c, target, reason, json).await
        }
        Command::Report { model, html } => views::report::run(&mut c, &model, html.as_deref(), json).await,
        Command::Reload => actions::reload(&mut c, json).await,
        Command::Prune { dry_run } => actions::prune(&mut c, dry_run, json).await,
        Command::Drift { model } => views::drift::run(&mut c, model, json).await,
        Command::Feedback {
            model,
            predicted,
            actual,
        } => actions::feedback(&mut c, model, predicted, actual, json).await,
        Command::Top { every, once } => views::top::run(&mut c, every, once, json).await,
        Command::Models => views::models::run(&mut c, json).await,
        Command::Deployments { model, state } => views::deployments::list(&mut c, model, state, json).await,
        Command::Show { deployment } => views::deployments::show(&mut c, &deployment, json).await,
        Command::Devices { layer } => views::topology::devices(&mut c, layer, json).await,
        Command::Layers => views::topology::layers(&mut c, json).await,
        Command::Status => views::status::run(&mut c, json).await,
        Command::Events {
            model,
            after,
            limit,
            since,
            kind,
            wait_ms,
            follow,
        } => {
            let query = views::events::Query {
                model,
                after,
                limit,
                since_unix_ms: since.unwrap_or(0),
                kind: kind.unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        command().debug_assert();
    }

    /// Completions and man pages are made from the help; an argument
    /// without it is a blank line in both.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() {
                missing.push(format!("command `{path}`"));
            }
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`{path}` argument {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&command(), "dsmilctl", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn state_filter_names_every_state_once() {
        let names = state_names();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        // Exhaustive: a new state fails to compile here until it is listed.
        let listed = |s: DeployState| match s {
            DeployState::Uploaded
            | DeployState::Validating
            | DeployState::Quantizing
            | DeployState::Compiling
            | DeployState::Loading
            | DeployState::WarmingUp
            | DeployState::HealthChecking
            | DeployState::Active
            | DeployState::Failed
            | DeployState::RolledBack
            | DeployState::Retired => names.contains(&s.as_str()),
        };
        assert_eq!(names.len(), 11);
        assert!(listed(DeployState::Retired) && listed(DeployState::Active));
    }
}
