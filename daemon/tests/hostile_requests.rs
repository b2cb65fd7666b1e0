//! Requests a careless or hostile client sends: shapes whose sizes overflow,
//! headers that lie about the data, batches past the limit, messages past
//! the size limit, invented model names; and a model that only fails on
//! real data. Each gets its exact code from a real dsmild, which keeps
//! serving (and keeps its new version) afterwards.

mod common;

use common::*;
use dsmil_proto::inference as pb;
use tonic::Code;

fn typed_fp32(model: &str, shape: Vec<i64>, values: Vec<f32>) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape,
            contents: Some(pb::InferTensorContents {
                fp32_contents: values,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn infer_err(daemon: &Daemon, request: pb::ModelInferRequest) -> tonic::Status {
    daemon
        .inference()
        .await
        .model_infer(request)
        .await
        .expect_err("the request is refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn lying_shapes_are_invalid_argument_and_never_fail_a_new_version() {
    // A short probation that a single server failure would fail: if a
    // client's request counted, the version would be rolled back.
    let (dir, config) = config_with(&[("probation_requests = 100", "probation_requests = 3")]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let v2 = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(v2["version"], 2);

    // 2^40 rows of typed values, none sent: refused before anything of that
    // size is allocated (it aborted the process).
    let status = infer_err(&daemon, typed_fp32("digits", vec![1 << 40, 64], vec![])).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // 2^58 x 64 x 4 bytes overflows: the element count wrapped to 0 and the
    // runtime failed with INTERNAL, which counted against probation.
    let status = infer_err(&daemon, typed_fp32("digits", vec![1 << 58, 64], vec![])).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut raw = digits_request(1, 0.0);
    raw.inputs[0].shape = vec![1 << 58, 64];
    let status = infer_err(&daemon, raw).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // Raw bytes that disagree with the header.
    let mut raw = digits_request(3, 0.0);
    raw.inputs[0].shape = vec![4, 64];
    let status = infer_err(&daemon, raw).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("768 bytes of data"), "{status:?}");

    // More requests than the probation's three, all answered by version 2.
    for _ in 0..4 {
        daemon.still_serves("digits").await;
    }
    let events = daemon.ctl_json(&["events", "--model", "digits"]);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(!kinds.contains(&"rollback"), "{kinds:?}\n{}", daemon.log());
    let shown = daemon.ctl_json(&["show", &v2["id"].to_string()]);
    assert_eq!(shown["version"], 2, "{shown}");
    assert_eq!(shown["state"], "Active", "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_past_the_deployments_max_is_refused_and_model_config_says_the_max() {
    let daemon = Daemon::start();
    let digits = daemon.deploy_sample(&["--name", "digits", "--device", "47", "--max-batch", "8"]);
    daemon.deploy_sample(&["--name", "other", "--device", "46"]);

    assert_eq!(common::model_config(&daemon, "digits").await.max_batch_size, 8);
    // The config's default for a deploy that set none.
    assert_eq!(common::model_config(&daemon, "other").await.max_batch_size, 64);
    let shown = daemon.ctl_json(&["show", &digits["id"].to_string()]);
    assert_eq!(shown["max_batch"], 8, "{shown}");

    let mut request = digits_request(8, 0.25);
    assert_eq!(
        daemon
            .inference()
            .await
            .model_infer(request.clone())
            .await
            .unwrap()
            .into_inner()
            .outputs[0]
            .shape,
        vec![8, 10]
    );
    request = digits_request(9, 0.25);
    let status = infer_err(&daemon, request).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("a batch of 9 rows; this deployment takes at most 8"),
        "{status:?}"
    );
    // A batch of 500,000 rows to the default deployment: refused by its
    // header, whatever the message carries.
    let mut huge = digits_request(1, 0.0);
    huge.model_name = "other".into();
    huge.inputs[0].shape = vec![500_000, 64];
    let status = infer_err(&daemon, huge).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    daemon.still_serves("digits").await;

    // A deploy asking for an absurd max batch is refused before anything.
    let out = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--allow-fp32",
        "--name",
        "third",
        "--max-batch",
        "10000000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("InvalidArgument") && err.contains("max batch 10000000"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_the_limit_is_resource_exhausted_naming_the_limit() {
    let (dir, config) = config_with(&[("max_request_bytes = 67_108_864", "max_request_bytes = 65_536")]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);

    // 64 rows: 16 KiB, under the limit.
    daemon.still_serves("digits").await;
    // 300 rows: 76,800 bytes of tensor, over the 65,536-byte message limit.
    let status = infer_err(&daemon, digits_request(300, 1.0)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("65536 bytes (serving.max_request_bytes)"),
        "{status:?}"
    );
    // Typed int64-style expansion cannot slip past it either: the decoded
    // size counts, checked before decoding.
    daemon.still_serves("digits").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invented_model_names_never_become_metric_labels() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let status = daemon.ctl_json(&["status"]);
    let metrics = status["metrics_address"].as_str().unwrap().to_owned();

    for i in 0..50 {
        let mut request = digits_request(1, 0.0);
        request.model_name = format!("invented-{i}-{}", "x".repeat(200));
        let err = infer_err(&daemon, request).await;
        assert_eq!(err.code(), Code::NotFound);
    }
    daemon.still_serves("digits").await;
    let text = scrape(&metrics);
    assert!(!text.contains("invented-"), "a client's name became a label");
    // The refusals are still counted, without a name.
    let not_found: f64 = text
        .lines()
        .filter(|l| l.starts_with("dsmil_inference_requests_total{") && l.contains("code=\"NOT_FOUND\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(not_found, 50.0, "{text}");

    // Undeploying removes the model's series.
    assert!(text.contains("model=\"digits\""));
    daemon.ctl_json(&["undeploy", "digits"]);
    let text = scrape(&metrics);
    assert!(
        !text
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("model=\"digits\"")),
        "series of an undeployed model remain:\n{text}"
    );
}

#[test]
fn a_model_answering_nan_on_the_deploys_data_fails_the_deploy() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let model = common::onnx::nan_above(1.6);
    // On synthetic inputs alone it looks healthy: that is what --allow-fp32
    // (no data) can check, and it passes.
    daemon.deploy(&model, &["--name", "blind", "--device", "46"]);
    // With the deploy's data (the sample's pixels go up to 16), the dry run
    // meets the NaN before anything is quantized or served.
    let err = daemon
        .try_deploy(
            &model,
            &["--name", "seen", "--device", "45", "--calib", SAMPLE_TEST_SET],
        )
        .unwrap_err();
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(
        err.contains("on the deploy's data, sample 0") && err.contains("NaN"),
        "{err}"
    );
    let models = daemon.ctl_json(&["models"]);
    let seen = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "seen")
        .expect("the failed deploy is on record");
    assert_eq!(seen["state"], "not serving", "{models}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(daemon.still_serves("digits"));
}
