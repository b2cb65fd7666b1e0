//! dsmild: parse arguments, set up logging, load config, handle signals, and
//! hand over to `dsmild::run`. Nothing else belongs here.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dsmild::config::{self, Override};

#[derive(Parser)]
#[command(name = "dsmild", version, about = "dsmil edge inference daemon")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file (layered over the defaults) and exit.
    CheckConfig { file: PathBuf },
    /// Print the built-in default configuration.
    DefaultConfig,
    /// Quantize a model to INT8 offline (no daemon): calibrate, rewrite, gate.
    Quantize(QuantizeArgs),
}

#[derive(clap::Args)]
struct QuantizeArgs {
    input: PathBuf,
    /// Calibration samples (.npz keyed by input name).
    #[arg(long)]
    calib: PathBuf,
    /// Validation samples for the accuracy gate (.npz; `labels` optional).
    #[arg(long)]
    val: Option<PathBuf>,
    #[arg(long, default_value = "minmax", value_parser = ["minmax", "percentile", "entropy"])]
    method: String,
    #[arg(long, default_value_t = 99.999)]
    percentile: f64,
    /// Activation type: uint8 (asymmetric) or int8 (symmetric).
    #[arg(long, default_value = "uint8", value_parser = ["uint8", "int8"])]
    activations: String,
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Config file layered over the built-in defaults.
    #[arg(long, short, env = "DSMIL_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long)]
    state_dir: Option<String>,
    #[arg(long)]
    cache_dir: Option<String>,
    #[arg(long)]
    socket: Option<String>,
    /// gRPC TCP listener address; "" turns it off.
    #[arg(long)]
    tcp: Option<String>,
    /// Prometheus listener address; "" turns it off.
    #[arg(long)]
    metrics: Option<String>,
}

impl RunArgs {
    fn overrides(&self) -> Vec<Override> {
        let s = |v: &Option<String>| v.clone().map(toml::Value::String);
        [
            ("paths.state_dir", s(&self.state_dir)),
            ("paths.cache_dir", s(&self.cache_dir)),
            ("listeners.unix_socket", s(&self.socket)),
            ("listeners.tcp", s(&self.tcp)),
            ("listeners.metrics", s(&self.metrics)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, once, without a backtrace: operators read this.
            eprintln!("dsmild: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    dsmild::monitor::process::configure_allocator();
    let _failpoints = dsmild::failpoint::setup();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Command::DefaultConfig) => print!("{}", config::DEFAULT_TOML),
        Some(Command::Quantize(q)) => {
            use dsmild::compress::{ActivationType, Method, Options, offline};
            let config = config::load(cli.run.config.as_deref(), &cli.run.overrides())?;
            let options = Options {
                method: Method::parse(&q.method, q.percentile).expect("clap checked the name"),
                activations: if q.activations == "int8" {
                    ActivationType::I8Symmetric
                } else {
                    ActivationType::U8Asymmetric
                },
                max_samples: config.quantization.calibration_samples as usize,
                fallback_evaluations: config.quantization.fallback_evaluations as usize,
                min_retention: config.quantization.min_accuracy_retention,
            };
            let job = offline::Job {
                input: q.input,
                calibration: q.calib,
                validation: q.val,
                output: q.output,
                options,
            };
            let report = offline::run(&config, &job)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some(Command::CheckConfig { file }) => {
            let config = config::check_file(&file)?;
            println!(
                "{}: ok ({} devices in {} layers)",
                file.display(),
                config.topology.devices().len(),
                config.topology.layers().len()
            );
        }
        None => {
            let config = config::load(cli.run.config.as_deref(), &cli.run.overrides())?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("dsmild-io")
                .build()?;
            runtime.block_on(async {
                // Signals are hooked before anything slow starts, so a SIGTERM
                // during startup is honoured, not lost.
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
                let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
                let shutdown = async move {
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                    tracing::info!("shutdown requested");
                };
                dsmild::run(config, shutdown)
                    .await
                    .context("dsmild stopped on an error")
            })?;
        }
    }
    Ok(())
}
