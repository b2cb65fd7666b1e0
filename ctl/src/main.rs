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
                Some(s) => eprintln!("dsmilctl: {:?}: {}", s.code(), status_text(s)),
                None => eprintln!("dsmilctl: {}", joined(e.chain().map(|c| c.to_string()))),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// A status's message and what lies under it when tonic made the status
/// itself ("transport error"): the reason the connection failed.
fn status_text(status: &tonic::Status) -> String {
    let mut parts = vec![status.message().to_owned()];
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    joined(parts)
}

/// An error and its causes on one line. Some errors print their cause and
/// also return it as their source (tonic's connect error), so a part equal
/// to the one before it is left out.
fn joined(parts: impl IntoIterator<Item = String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    for part in parts {
        if kept.last() != Some(&part) {
            kept.push(part);
        }
    }
    kept.join(": ")
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

#[cfg(test)]
mod tests {
    use super::joined;

    #[test]
    fn a_cause_repeated_by_its_wrapper_is_said_once() {
        let parts = [
            "cannot reach dsmild",
            "transport error",
            "Connection refused",
            "Connection refused",
        ];
        assert_eq!(
            joined(parts.map(String::from)),
            "cannot reach dsmild: transport error: Connection refused"
        );
        assert_eq!(joined(["a", "b", "a"].map(String::from)), "a: b: a", "only neighbours");
    }
}
