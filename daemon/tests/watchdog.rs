//! The systemd watchdog: dsmild pings WATCHDOG=1 while it can answer, keeps
//! STATUS= saying what it serves, and stops pinging when an inference
//! wedges the runtime (injected with the `infer-external` failpoint, which
//! pauses the worker on an application's request).

#![cfg(feature = "failpoints")]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn watchdog_pings_stop_when_the_inference_path_wedges() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with_env(
        dir,
        &[],
        &[("WATCHDOG_USEC", "400000"), ("FAILPOINTS", "infer-external=pause")],
    );
    daemon.wait_for("WATCHDOG=1");
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    daemon.wait_for("STATUS=serving 1: digits v1 on 47");

    // An application's request: its worker pauses inside the run.
    let socket = daemon.socket();
    let client = std::thread::spawn(move || ctl_with_socket(&socket, &["infer", "digits", "--random"]));
    let wedged = daemon.wait_for("STATUS=inference wedged");
    assert!(wedged.contains("digits-v1"), "{wedged}");
    let after = daemon.notices_within(Duration::from_millis(1200));
    assert!(
        !after.iter().any(|n| n.contains("WATCHDOG=1")),
        "three periods without a ping after the wedge: {after:?}"
    );
    assert!(daemon.log().contains("the runtime is wedged"), "{}", daemon.log());
    drop(daemon);
    let answered = client.join().unwrap();
    assert!(!answered.status.success(), "the wedged request never answered");
}
