//! kill -9 at every stage of a deploy, and a restart: the journal is intact,
//! an interrupted deployment ends Failed ("interrupted"), and every device
//! serves what was active before. Needs the `failpoints` feature (the test
//! script enables it): the daemon pauses exactly at the stage under test.
#![cfg(feature = "failpoints")]

mod common;

use common::*;
use dsmil_proto::control::{DeployRequest, DeploySpec, deploy_request::Part};
use sha2::{Digest, Sha256};

fn spec(name: &str, device: u32, bytes: &[u8]) -> DeployRequest {
    DeployRequest {
        part: Some(Part::Spec(DeploySpec {
            name: name.into(),
            device: Some(device),
            size_bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            allow_fp32: true,
            ..Default::default()
        })),
    }
}

/// A daemon serving version 1 of "m" on device 10, restarted with `failpoints`.
fn serving_v1_then_restart_with(failpoints: Option<&str>) -> Daemon {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "m", "--device", "10"]);
    let dir = daemon.stop();
    match failpoints {
        Some(f) => Daemon::start_with_env(dir, &[], &[("FAILPOINTS", f)]),
        None => Daemon::start_in(dir, &[]),
    }
}

/// Deploys version 2 and returns once the daemon reports `stage`.
async fn deploy_v2_until(daemon: &Daemon, stage: &str) {
    let bytes = onnx::mlp(64, 1);
    let mut control = daemon.control().await;
    let messages = vec![
        spec("m", 10, &bytes),
        DeployRequest {
            part: Some(Part::Chunk(bytes)),
        },
    ];
    let mut progress = control.deploy(tokio_stream::iter(messages)).await.unwrap().into_inner();
    while let Some(step) = progress.message().await.unwrap() {
        if step.stage == stage {
            return;
        }
    }
    panic!("the deploy never reached {stage}");
}

/// After the kill: the interrupted version 2 is Failed, version 1 serves.
fn assert_recovered(daemon: &Daemon, interrupted_at: &str) {
    let d = daemon.ctl_json(&["deployments", "--model", "m"]);
    let d = d["deployments"].as_array().unwrap();
    assert_eq!(
        (d[0]["version"].as_u64(), d[0]["state"].as_str()),
        (Some(1), Some("Active")),
        "{d:?}"
    );
    assert_eq!(
        (d[1]["version"].as_u64(), d[1]["state"].as_str()),
        (Some(2), Some("Failed")),
        "{d:?}"
    );
    let history = d[1]["history"].as_array().unwrap();
    assert_eq!(history[history.len() - 2]["state"], interrupted_at);
    assert_eq!(history.last().unwrap()["detail"], "interrupted");
    let events = daemon.ctl_json(&["events", "--kind", "interrupted"]);
    assert!(events["events"][0]["detail"].as_str().unwrap().contains(interrupted_at));
    assert_eq!(daemon.ctl_json(&["infer", "m", "--random"])["version"], "1");
    let tmp = daemon.state_dir().join("blobs/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_each_stage_leaves_the_previous_version_serving() {
    for stage in [
        "Uploaded",
        "Validating",
        "Quantizing",
        "Compiling",
        "Loading",
        "WarmingUp",
        "HealthChecking",
    ] {
        let daemon = serving_v1_then_restart_with(Some(&format!("stage-{stage}=pause")));
        deploy_v2_until(&daemon, stage).await;
        let dir = daemon.kill9();
        let daemon = Daemon::start_in(dir, &[]);
        assert_recovered(&daemon, stage);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_activation_keeps_what_the_journal_committed() {
    let daemon = serving_v1_then_restart_with(Some("activate=pause"));
    let seen = daemon.ctl_json(&["events"])["events"]
        .as_array()
        .unwrap()
        .first()
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    let d = &daemon;
    let socket = d.socket();
    // The deploy stream blocks at the pause; the journal's activate event says
    // the switch was committed.
    let deploying = tokio::spawn({
        let channel = daemon.channel().await;
        async move {
            let bytes = onnx::mlp(64, 1);
            let mut control = dsmil_proto::control::control_client::ControlClient::new(channel);
            let messages = vec![
                spec("m", 10, &bytes),
                DeployRequest {
                    part: Some(Part::Chunk(bytes)),
                },
            ];
            let _ = control.deploy(tokio_stream::iter(messages)).await;
        }
    });
    let after = seen.to_string();
    let out = ctl_with_socket(
        &socket,
        &[
            "--json",
            "events",
            "--kind",
            "activate",
            "--after",
            &after,
            "--wait-ms",
            "60000",
        ],
    );
    let activated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(activated["events"][0]["version"], 2);
    let dir = daemon.kill9();
    deploying.abort();

    let daemon = Daemon::start_in(dir, &[]);
    assert_eq!(daemon.ctl_json(&["infer", "m", "--random"])["version"], "2");
    let d = daemon.ctl_json(&["deployments", "--model", "m"]);
    assert_eq!(d["deployments"][0]["state"], "Retired");
    assert_eq!(d["deployments"][1]["state"], "Active");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_an_upload_records_nothing() {
    let daemon = serving_v1_then_restart_with(None);
    let bytes = onnx::mlp(64, 1);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(spec("m", 10, &bytes)).await.unwrap();
    tx.send(DeployRequest {
        part: Some(Part::Chunk(bytes[..bytes.len() / 2].to_vec())),
    })
    .await
    .unwrap();
    let mut control = daemon.control().await;
    // The stream stays open (tx alive): the upload cannot have finished.
    let upload = tokio::spawn(async move { control.deploy(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    let dir = daemon.kill9();
    let _ = upload.await;
    drop(tx);

    let daemon = Daemon::start_in(dir, &[]);
    let d = daemon.ctl_json(&["deployments", "--model", "m"]);
    assert_eq!(d["deployments"].as_array().unwrap().len(), 1, "only version 1: {d}");
    assert_eq!(daemon.ctl_json(&["infer", "m", "--random"])["version"], "1");
    assert_eq!(
        std::fs::read_dir(daemon.state_dir().join("blobs/tmp")).unwrap().count(),
        0
    );
}
