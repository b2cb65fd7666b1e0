//! Restarts: a clean stop, a kill -9, and a restore that cannot succeed.

mod common;

use common::*;
use dsmil_proto::inference as pb;

fn request() -> pb::ModelInferRequest {
    digits_request(1, 3.0)
}

/// The deployment list minus the measured footprints, which a restore
/// measures afresh.
fn without_measurements(mut list: serde_json::Value) -> serde_json::Value {
    for d in list["deployments"].as_array_mut().unwrap() {
        d.as_object_mut().unwrap().remove("measured_bytes");
    }
    list
}

async fn serving_version(daemon: &Daemon) -> String {
    let mut client = daemon.inference().await;
    client.model_infer(request()).await.unwrap().into_inner().model_version
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_flushes_unlinks_the_socket_and_a_restart_restores() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let socket = daemon.socket();
    let dir = daemon.stop();
    assert!(!socket.exists(), "a clean exit removes the socket");

    let daemon = Daemon::start_in(dir, &[]);
    assert_eq!(serving_version(&daemon).await, "2");
    let ready = daemon.notices.iter().find(|n| n.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=serving 1 deployment(s)"), "{ready}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_serving_loses_no_deployment() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    daemon.deploy_sample(&["--name", "other", "--layer", "3"]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let before = without_measurements(daemon.ctl_json(&["deployments"]));
    let mut client = daemon.inference().await;
    // Requests in flight when the process dies.
    let inflight: Vec<_> = (0..8)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { c.model_infer(request()).await })
        })
        .collect();
    client.model_infer(request()).await.unwrap();
    let dir = daemon.kill9();
    for task in inflight {
        let _ = task.await; // each either answered or saw the connection drop
    }

    let daemon = Daemon::start_in(dir, &[]);
    assert_eq!(
        without_measurements(daemon.ctl_json(&["deployments"])),
        before,
        "the journal is as before the kill (but for memory, measured again at restore)"
    );
    assert_eq!(serving_version(&daemon).await, "2");
    let other = daemon.ctl_json(&["devices"]);
    let layer3: Vec<_> = other["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["model"] == "other")
        .collect();
    assert_eq!(layer3.len(), 1);
    assert_eq!(layer3[0]["layer"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_that_cannot_be_restored_keeps_the_server_not_ready() {
    let daemon = Daemon::start();
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let sha = deployed["sha256"].as_str().unwrap().to_owned();
    let dir = daemon.stop();
    // The blob vanishes while the daemon is down.
    std::fs::remove_file(dir.path().join("state/blobs/sha256").join(&sha)).unwrap();

    let mut daemon = Daemon::spawn(dir, &[], &[]);
    let ready = daemon.wait_for("READY=1");
    assert!(ready.contains("NOT READY: 1 failed to restore"), "{ready}");
    let mut client = daemon.inference().await;
    assert!(
        !client
            .server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        client
            .server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert_eq!(
        daemon.health_check("").await,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );

    // Nothing was forgotten: the deployment is still Active in the journal,
    // status says why the server is not ready, and the event log has it.
    let status = daemon.ctl_json(&["status"]);
    assert_eq!(status["ready"], false);
    assert!(
        status["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("not ready"))
    );
    let deployments = daemon.ctl_json(&["deployments"]);
    assert_eq!(deployments["deployments"][0]["state"], "Active");
    let events = daemon.ctl_json(&["events"]);
    let failed = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "restore_failed")
        .unwrap();
    assert!(failed["detail"].as_str().unwrap().contains(&sha), "{failed}");
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused_and_a_stale_socket_is_replaced() {
    let first = Daemon::start();
    let second_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsmild"))
        .arg("--state-dir")
        .arg(second_dir.path())
        .arg("--socket")
        .arg(first.socket())
        .args(["--tcp", "", "--metrics", ""])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another dsmild owns"), "{stderr}");
    assert!(
        first.socket().exists(),
        "the refused daemon left the first one's socket alone"
    );

    // A socket file left by a crash (nobody holds the lock) is replaced.
    let dir = first.kill9();
    assert!(
        dir.path().join("dsmild.sock").exists(),
        "kill -9 leaves the socket file"
    );
    let daemon = Daemon::start_in(dir, &[]);
    let out = daemon.ctl(&["status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
