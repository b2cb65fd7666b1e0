//! dsmild: parse arguments, set up logging, load config, handle signals, and
//! hand over to `dsmild::run`. Nothing else belongs here.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dsmild::config;

#[derive(Parser)]
#[command(name = "dsmild", version, about = "dsmil edge inference daemon")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: config::Flags,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file (layered over the defaults) and exit.
    CheckConfig { file: PathBuf },
    /// Print the built-in default configuration.
    DefaultConfig,
    /// Quantize a model to INT8 offline (no daemon): calibrate, rewrite, gate.
    Quantize(dsmild::compress::offline::QuantizeArgs),
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
    match cli.command {
        Some(Command::DefaultConfig) => print!("{}", config::DEFAULT_TOML),
        Some(Command::Quantize(args)) => {
            dsmild::logging::init_human();
            let config = config::load(cli.run.config.as_deref(), &cli.run.overrides())?;
            cli.run.warn_if_default_missing();
            let report = dsmild::compress::offline::run(&config, &args.into_job(&config)?)?;
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
            let destination = dsmild::logging::init(&config.logging);
            tracing::info!(version = env!("CARGO_PKG_VERSION"), log = %destination, "dsmild starting");
            cli.run.warn_if_default_missing();
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
                let source = dsmild::ConfigSource {
                    file: cli.run.config.clone(),
                    overrides: cli.run.overrides(),
                };
                dsmild::run(config, source, shutdown)
                    .await
                    .context("dsmild stopped on an error")
            })?;
        }
    }
    Ok(())
}
