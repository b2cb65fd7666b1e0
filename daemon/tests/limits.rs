//! Per-principal bounds on a real dsmild: with `max_concurrent_deploys = 1`,
//! a second deploy by the same principal while the first is in flight is
//! refused at once with RESOURCE_EXHAUSTED naming the setting, and nothing
//! of it is journaled. The first deploy is held at its first stage by a
//! failpoint (`stage-Uploaded=pause`), and the test waits for its `deploy`
//! event (the event log's long poll), so the two never race.

mod common;

use common::{Daemon, SAMPLE_MODEL, ctl_binary};

#[test]
fn a_principal_over_its_deploy_bound_is_refused_at_once() {
    let (dir, config) = common::config_with(&[("max_concurrent_deploys = 2", "max_concurrent_deploys = 1")]);
    let daemon = Daemon::start_with_env(dir, &["--config", &config], &[("FAILPOINTS", "stage-Uploaded=pause")]);
    let mut first = std::process::Command::new(ctl_binary())
        .arg("--socket")
        .arg(daemon.socket())
        .args([
            "deploy",
            SAMPLE_MODEL,
            "--allow-fp32",
            "--name",
            "first",
            "--layer",
            "3",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    daemon.wait_event("first", "deploy", 0);

    let second = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--allow-fp32",
        "--name",
        "second",
        "--layer",
        "3",
    ]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second deploy was admitted");
    for expected in [
        "ResourceExhausted",
        "\"root\"",
        "1 deploys in flight",
        "access.max_concurrent_deploys",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from: {err}");
    }
    assert!(
        daemon.deployment_states(Some("second")).is_empty(),
        "a refused deploy leaves nothing behind"
    );
    // Reads are not bounded by deploys in flight.
    daemon.ctl_json(&["status"]);
    let _ = first.kill();
    let _ = first.wait();
    daemon.kill9();
}
