//! What the daemon does on its own after activation: probation, health
//! probes, reloads and rollbacks. Waits are on the event log's long poll.
#![cfg(feature = "failpoints")]

mod common;

use common::*;

fn states(daemon: &Daemon, model: &str) -> Vec<(u64, String)> {
    let d = daemon.ctl_json(&["deployments", "--model", model]);
    d["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["version"].as_u64().unwrap(), d["state"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn a_version_too_slow_in_probation_is_rolled_back() {
    let (dir, config) = config_with(&[
        ("alert_on_latency_p99_ms = 2000", "alert_on_latency_p99_ms = 1"),
        ("probation_requests = 100", "probation_requests = 10"),
    ]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy(&onnx::mlp(8, 1), &["--name", "m", "--device", "20"]);
    // 4 x 2048x2048 MatMul: milliseconds per request, over the 1 ms p99.
    daemon.deploy(&onnx::mlp(2048, 4), &["--name", "m", "--device", "20"]);
    for _ in 0..10 {
        daemon.ctl_json(&["infer", "m", "--random"]);
    }
    let rollback = daemon.wait_event("m", "rollback", 0);
    assert!(
        rollback["detail"]
            .as_str()
            .unwrap()
            .contains("probation failed: p99 latency"),
        "{rollback}"
    );
    let alert = daemon.wait_event("m", "alert", 0);
    assert!(
        alert["detail"].as_str().unwrap().starts_with("probation: p99 latency"),
        "{alert}"
    );
    // The rollback event opens the rollback; its activation closes it.
    let activated = daemon.wait_event("m", "activate", rollback["seq"].as_u64().unwrap());
    assert_eq!(activated["version"], 1);
    assert_eq!(daemon.ctl_json(&["infer", "m", "--random"])["version"], "1");
    assert_eq!(states(&daemon, "m")[1], (2, "RolledBack".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_health_and_model_ready_follow_the_probes() {
    use dsmil_proto::inference::ModelReadyRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    // Every probe fails, and never often enough to trigger a reload.
    let (dir, config) = config_with(&[
        (
            "health_probe_interval_seconds = 30.0",
            "health_probe_interval_seconds = 0.1",
        ),
        ("health_probe_failures = 3", "health_probe_failures = 1000000"),
    ]);
    let daemon = Daemon::start_with_env(dir, &["--config", &config], &[("FAILPOINTS", "probe=return")]);
    daemon.deploy(&onnx::mlp(8, 1), &["--name", "m", "--device", "20"]);
    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest { service: "m".into() })
        .await
        .unwrap()
        .into_inner();
    // Serving at first (if the first probe has not run yet), then not.
    loop {
        let status = tokio::time::timeout(std::time::Duration::from_secs(60), watch.message())
            .await
            .unwrap_or_else(|_| panic!("no NOT_SERVING within a minute; log:\n{}", daemon.log()))
            .unwrap()
            .expect("the watch stream stays open");
        if status.status == ServingStatus::NotServing as i32 {
            break;
        }
        assert_eq!(status.status, ServingStatus::Serving as i32);
    }
    let mut inference = daemon.inference().await;
    let ready = inference
        .model_ready(ModelReadyRequest {
            name: "m".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready, "ModelReady reports the failing probes");
    // Still deployed and answering: a probe failure alone does not unload.
    assert_eq!(daemon.ctl_json(&["infer", "m", "--random"])["version"], "1");
}

#[test]
fn failing_health_probes_reload_the_version() {
    let (dir, config) = config_with(&[
        (
            "health_probe_interval_seconds = 30.0",
            "health_probe_interval_seconds = 0.1",
        ),
        ("health_probe_failures = 3", "health_probe_failures = 3"),
    ]);
    // The first three probes fail, then the model is healthy again.
    let daemon = Daemon::start_with_env(dir, &["--config", &config], &[("FAILPOINTS", "probe=3*return")]);
    daemon.deploy(&onnx::mlp(8, 1), &["--name", "m", "--device", "20"]);
    let reload = daemon.wait_event("m", "reload", 0);
    assert!(
        reload["detail"]
            .as_str()
            .unwrap()
            .contains("3 health probes failed in a row"),
        "{reload}"
    );
    let activated = daemon.wait_event("m", "activate", reload["seq"].as_u64().unwrap());
    assert_eq!(activated["version"], 1);
    assert_eq!(
        states(&daemon, "m"),
        vec![(1, "Retired".to_owned()), (1, "Active".to_owned())]
    );
    let ready = daemon.ctl_json(&["infer", "m", "--random"]);
    assert_eq!(ready["version"], "1");
}

#[test]
fn a_reload_that_fails_rolls_back_to_the_previous_version() {
    let (dir, config) = config_with(&[(
        "health_probe_interval_seconds = 30.0",
        "health_probe_interval_seconds = 0.1",
    )]);
    // Versions 1 and 2 first, with no fault injected...
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy(&onnx::mlp(8, 1), &["--name", "m", "--device", "20"]);
    daemon.deploy(&onnx::mlp(8, 2), &["--name", "m", "--device", "20"]);
    let dir = daemon.stop();
    // ...then a restart in which version 2 (restored without going through
    // the stages) fails three probes, and the reload's warmup (this
    // process's first) fails; the rollback's warmup passes.
    let failpoints = "probe=3*return;stage-WarmingUp=1*return(reload)->off";
    let daemon = Daemon::start_with_env(dir, &["--config", &config], &[("FAILPOINTS", failpoints)]);
    let rollback = daemon.wait_event("m", "rollback", 0);
    assert!(
        rollback["detail"]
            .as_str()
            .unwrap()
            .contains("reload after failed health probes failed"),
        "{rollback}"
    );
    let activated = daemon.wait_event("m", "activate", rollback["seq"].as_u64().unwrap());
    assert_eq!(activated["version"], 1);
    let s = states(&daemon, "m");
    assert_eq!(
        s,
        vec![
            (1, "Retired".into()),
            (2, "RolledBack".into()),
            (2, "Failed".into()),
            (1, "Active".into())
        ]
    );
}
