//! dsmilctl: the operator's controller for dsmild. Parses the command line,
//! connects, runs one command, and exits non-zero with the daemon's own
//! message (and gRPC code) on any failure. Wiring only: the commands are in
//! `cli` and the modules it names.

mod actions;
mod bring;
mod cli;
mod client;
mod deploy;
mod generate;
mod html;
mod infer;
mod keys;
mod output;
mod quantize;
mod table;
mod tensors;
mod views;

use clap::Parser;

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(interrupted) = e.downcast_ref::<deploy::Interrupted>() {
                eprintln!("dsmilctl: {interrupted}");
                return std::process::ExitCode::from(130);
            }
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("dsmilctl: {:?}: {}{}", s.code(), s.message(), causes(s)),
                None => eprintln!("dsmilctl: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// What lies under a status tonic made itself ("transport error"): the
/// reason the connection failed, such as the TLS alert the daemon sent.
fn causes(status: &tonic::Status) -> String {
    let mut out = String::new();
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        out.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    out
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`dsmilctl ... |
/// head`) would panic; like other Unix tools, dsmilctl should just stop.
fn restore_sigpipe() {
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // SAFETY: resetting a signal to its default action has no preconditions.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}
