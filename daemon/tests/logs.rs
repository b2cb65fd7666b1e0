//! The daemon's log as an operator reads it: no ONNX Runtime chatter at the
//! default level (but there when asked for), no colour codes in a file, and
//! one line, not one per ping, for a notify socket nobody reads any more,
//! and a VM whose idle vCPUs halt without polling named at startup.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::*;

/// Deploys the sample as INT8 (calibrated, gated: the run that once wrote
/// thousands of `GraphTransformer` and `Extending BFCArena` lines).
fn quantize_the_sample(daemon: &Daemon) {
    let deployed = daemon.ctl_json(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--device",
        "47",
        "--calib",
        SAMPLE_TEST_SET,
        "--val",
        SAMPLE_TEST_SET,
    ]);
    assert_eq!(deployed["state"], "Active", "{deployed}");
}

fn runtime_chatter(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("GraphTransformer") || l.contains("BFCArena"))
        .collect()
}

#[test]
fn a_quantizing_deploy_logs_no_runtime_chatter_and_no_colour_codes() {
    // The harness runs dsmild with RUST_LOG=info and stderr into a file.
    let daemon = Daemon::start();
    quantize_the_sample(&daemon);
    let log = daemon.log();
    assert!(
        log.contains("listening") || log.contains("ready"),
        "the log has the daemon's own lines:\n{log}"
    );
    let chatter = runtime_chatter(&log);
    assert!(
        chatter.is_empty(),
        "ONNX Runtime's info lines reached the log: {chatter:#?}"
    );
    assert!(!log.contains("\x1b["), "colour codes in a log file:\n{log:?}");
    assert!(
        !log.contains("was designed for ONNX Runtime"),
        "the ort version note is info, not for the default log:\n{log}"
    );
    let lines = log.lines().count();
    assert!(lines < 200, "a deploy should take tens of lines, not {lines}:\n{log}");
}

#[test]
fn asking_for_the_runtime_s_log_shows_it() {
    let daemon = Daemon::start_with_env(tempfile::tempdir().unwrap(), &[], &[("RUST_LOG", "info,ort=info")]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let log = daemon.log();
    assert!(
        !runtime_chatter(&log).is_empty(),
        "RUST_LOG=ort=info shows ONNX Runtime's own info lines:\n{log}"
    );
    assert!(!log.contains("\x1b["), "still no colour codes in a file");
}

#[test]
fn a_notify_socket_nobody_reads_is_reported_once() {
    // A watchdog period of 400 ms: a ping every 200 ms. The repeats are
    // logged at debug level, which this test turns on to see them happen.
    let mut daemon = Daemon::start_with_env(
        tempfile::tempdir().unwrap(),
        &[],
        &[("WATCHDOG_USEC", "400000"), ("RUST_LOG", "info,dsmild::systemd=debug")],
    );
    // The watchdog pings (after READY=1).
    daemon.wait_for("WATCHDOG=1");
    // What a start script that waited for READY=1 and exited leaves: the
    // socket's file, with nothing bound to it (sends are refused).
    let path = daemon.dir.path().join("notify.sock");
    std::fs::remove_file(&path).unwrap();
    drop(UnixDatagram::bind(&path).unwrap());
    // Wait for the evidence itself: five refused sends after the first.
    let repeats = |log: &str| {
        log.lines()
            .filter(|l| l.contains("could not notify systemd") && l.contains("DEBUG"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while repeats(&daemon.log()) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no repeated sends:\n{}",
            daemon.log()
        );
        std::thread::yield_now();
    }
    let log = daemon.log();
    let failures = log
        .lines()
        .filter(|l| l.contains("could not notify systemd") && !l.contains("DEBUG"))
        .count();
    assert_eq!(
        failures, 1,
        "one line for a socket that went away, not one per ping:\n{log}"
    );
    assert!(log.contains("Connection refused"), "{log}");
    // The daemon serves on regardless.
    assert_eq!(daemon.ctl_json(&["status"])["ready"], true);
}

/// The hint depends on the host the test runs on, so the test reads the
/// same sysfs files and checks that the log agrees either way.
#[test]
fn a_vm_whose_idle_vcpus_halt_without_polling_is_named_at_startup() {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let halts = read("/sys/devices/system/cpu/cpuidle/current_driver").trim() == "haltpoll"
        && read("/sys/module/haltpoll/parameters/guest_halt_poll_ns").trim() == "0";
    let daemon = Daemon::start();
    // Logged before READY, which start() waited for.
    let log = daemon.log();
    let hinted = log.lines().any(|l| l.contains("idle vCPUs halt without polling"));
    assert_eq!(hinted, halts, "host halts without polling: {halts}; log:\n{log}");
    if halts {
        assert!(log.contains("Tuning the host"), "{log}");
    }
}
