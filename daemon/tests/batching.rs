//! Dynamic batching as configured, on a real dsmild: a batched model (the
//! sample: every input and output starts with the batch) reports Triton's
//! dynamic_batching in ModelConfig with the configured queue delay, and its
//! real instance count; `dynamic_batching = false` turns it off. The
//! batching itself (gathering, splitting by rows, the per-request fallback)
//! is tested deterministically on gated fake workers in
//! daemon/src/backend/pool_tests.rs.

mod common;

use common::{Daemon, config_with};
use dsmil_proto::inference as pb;

async fn model_config(daemon: &Daemon, name: &str) -> pb::ModelConfig {
    daemon
        .inference()
        .await
        .model_config(pb::ModelConfigRequest {
            name: name.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn model_config_reports_the_batching_and_instances_in_force() {
    let (dir, config) = config_with(&[("max_queue_delay_us = 0", "max_queue_delay_us = 250")]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47", "--infer-requests", "2"]);
    let c = model_config(&daemon, "digits").await;
    assert_eq!(c.dynamic_batching.map(|b| b.max_queue_delay_microseconds), Some(250));
    assert_eq!(c.instance_group[0].count, 2);
    // Requests of any size still come back whole and in order.
    let answer = daemon
        .inference()
        .await
        .model_infer(common::digits_request(3, 0.25))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outputs[0].shape, [3, 10]);

    let (dir, config) = config_with(&[("dynamic_batching = true", "dynamic_batching = false")]);
    let off = Daemon::start_in(dir, &["--config", &config]);
    off.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(model_config(&off, "digits").await.dynamic_batching, None);
}
