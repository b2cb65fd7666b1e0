//! Dynamic batching as configured, on a real dsmild: a batched model (the
//! sample: every input and output starts with the batch) reports Triton's
//! dynamic_batching in ModelConfig with the configured queue delay, and its
//! real instance count; batching is off by default; a deploy's
//! own instances, threads and batching (`dsmilctl deploy --batching
//! --max-queue-delay-us --preferred-batch-sizes --intra-op-threads`) win
//! over the config, survive a restart and are bounded. The
//! batching itself (gathering, splitting by rows, the per-request fallback)
//! is tested deterministically on gated fake workers in
//! daemon/src/backend/pool_tests.rs.

mod common;

use common::{Daemon, config_with};
use dsmil_proto::inference as pb;

#[tokio::test(flavor = "multi_thread")]
async fn model_config_reports_the_batching_and_instances_in_force() {
    let (dir, config) = config_with(&[
        ("dynamic_batching = false", "dynamic_batching = true"),
        ("max_queue_delay_us = 0", "max_queue_delay_us = 250"),
    ]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47", "--infer-requests", "2"]);
    let c = common::model_config(&daemon, "digits").await;
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

    // Off by default.
    let off = Daemon::start();
    off.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(common::model_config(&off, "digits").await.dynamic_batching, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploys_own_serving_settings_win_are_recorded_and_are_checked() {
    // Batching on in the config, so that a deploy's "off" has something to
    // turn off; the delay and sizes are the deploy's own.
    let (dir, config) = config_with(&[("dynamic_batching = false", "dynamic_batching = true")]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    let serving = [
        "--infer-requests",
        "3",
        "--intra-op-threads",
        "1",
        "--max-queue-delay-us",
        "400",
        "--preferred-batch-sizes",
        "4,8",
        "--max-batch",
        "8",
    ];
    let mut args = vec!["--name", "digits", "--device", "47"];
    args.extend(serving);
    daemon.deploy_sample(&args);
    daemon.deploy_sample(&["--name", "unbatched", "--device", "48", "--batching", "off"]);

    let check = |c: pb::ModelConfig| {
        let b = c.dynamic_batching.expect("batching stays on");
        assert_eq!(
            (b.max_queue_delay_microseconds, b.preferred_batch_size),
            (400, vec![4, 8])
        );
        assert_eq!((c.instance_group[0].count, c.max_batch_size), (3, 8));
    };
    check(common::model_config(&daemon, "digits").await);
    assert_eq!(common::model_config(&daemon, "unbatched").await.dynamic_batching, None);

    // Refused before anything is uploaded, in the operator's words.
    for (flags, says) in [
        (
            &["--preferred-batch-sizes", "16", "--max-batch", "8"][..],
            "not in 1..=8",
        ),
        (&["--preferred-batch-sizes", "0"][..], "not in 1..="),
        (&["--max-queue-delay-us", "5000000"][..], "at most 1000000"),
        (&["--intra-op-threads", "1000"][..], "at most 256"),
    ] {
        let mut args = vec!["--name", "refused", "--device", "49"];
        args.extend(flags);
        let refused = daemon.try_deploy(&std::fs::read(common::SAMPLE_MODEL).unwrap(), &args);
        let err = refused.expect_err("refused");
        assert!(
            err.contains("InvalidArgument") && err.contains(says),
            "{flags:?}: {err}"
        );
    }

    // Recorded on the deployment: a restart serves the same way.
    let daemon = Daemon::start_in(daemon.stop(), &["--config", &config]);
    check(common::model_config(&daemon, "digits").await);
    assert_eq!(common::model_config(&daemon, "unbatched").await.dynamic_batching, None);
}
