//! The daemon driven in this process through `dsmild::run(config, source,
//! shutdown)`: deploy through the Control service, infer, stop through the
//! shutdown future, and start again on the same state.

mod common;

use common::inproc::InProcess;
use common::*;
use dsmil_proto::control::DeploySpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_serves_stops_cleanly_and_is_restored_on_the_next_start() {
    let daemon = InProcess::start().await;
    let model = std::fs::read(SAMPLE_MODEL).unwrap();
    let spec = DeploySpec {
        name: "digits".into(),
        device: Some(47),
        allow_fp32: true,
        ..Default::default()
    };
    let steps = daemon.deploy(&model, spec).await.unwrap();
    let stages: Vec<&str> = steps.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages.first(), Some(&"Uploaded"), "{stages:?}");
    assert!(stages.contains(&"HealthChecking"), "{stages:?}");
    let last = steps.last().unwrap();
    assert!(last.done, "{last:?}");
    let deployment = last
        .deployment
        .as_ref()
        .expect("the last message carries the deployment");
    assert_eq!(
        (
            deployment.model.as_str(),
            deployment.version,
            deployment.device,
            deployment.state.as_str()
        ),
        ("digits", 1, 47, "Active")
    );

    let answer = daemon
        .inference()
        .model_infer(digits_request(2, 0.5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.model_version, "1");
    assert_eq!(answer.outputs[0].shape, [2, 10]);

    let socket = daemon.socket();
    let (stopped, dir) = daemon.stop().await;
    stopped.unwrap();
    assert!(!socket.exists(), "a clean stop unlinks the socket");

    let again = InProcess::start_in(dir).await;
    let ready = again
        .inference()
        .model_ready(dsmil_proto::inference::ModelReadyRequest {
            name: "digits".into(),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready, "version 1 was restored from the journal");
    let (stopped, _) = again.stop().await;
    stopped.unwrap();
}
