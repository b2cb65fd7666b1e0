//! /metrics by value and by promtool; dsmilctl's views and infer.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use dsmil_proto::inference as pb;
use dsmil_proto::inference::model_infer_request::InferInputTensor;

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_code_and_pass_promtool() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let mut client = daemon.inference().await;
    let request = |rows: i64, values: usize| pb::ModelInferRequest {
        model_name: "digits".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![rows, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![f32_bytes(&vec![2.0; values])],
        ..Default::default()
    };
    for _ in 0..7 {
        client.model_infer(request(1, 64)).await.unwrap();
    }
    for _ in 0..2 {
        client.model_infer(request(1, 10)).await.unwrap_err();
    }

    let status = daemon.ctl_json(&["status"]);
    let text = scrape(status["metrics_address"].as_str().unwrap());
    let labels = r#"model="digits",version="1",device="47",layer="7",backend="onnxruntime""#;
    assert_eq!(
        sample(
            &text,
            &format!(r#"dsmil_inference_requests_total{{{labels},code="OK"}}"#)
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"dsmil_inference_requests_total{{{labels},code="INVALID_ARGUMENT"}}"#)
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("dsmil_inference_request_duration_seconds_count{{{labels}}}")
        ),
        Some(9.0)
    );
    assert_eq!(sample(&text, "dsmil_models_loaded"), Some(1.0));
    for stage in ["queue", "compute"] {
        assert_eq!(
            sample(
                &text,
                &format!("dsmil_inference_{stage}_duration_seconds_count{{{labels}}}")
            ),
            Some(7.0),
            "{stage}: the successful requests"
        );
    }
    assert_eq!(
        sample(&text, &format!("dsmil_inference_in_flight_requests{{{labels}}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"dsmil_layer_memory_budget_bytes{layer="7"}"#),
        Some(40.0 * (1u64 << 30) as f64)
    );
    assert!(sample(&text, "dsmil_host_memory_total_bytes").unwrap() > 1e9, "{text}");
    assert!(sample(&text, "dsmil_process_resident_memory_bytes").unwrap() > 1e6);
    assert_eq!(sample(&text, r#"dsmil_deploys_total{model="digits"}"#), Some(1.0));

    // Every metric the shipped Grafana dashboard queries is exported.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/dsmil-dashboard.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("dsmil_") {
                    queried.insert(
                        word.trim_end_matches("_bucket")
                            .trim_end_matches("_sum")
                            .trim_end_matches("_count")
                            .to_owned(),
                    );
                }
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|m| !text.contains(&format!("# TYPE {m} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics dsmild does not export: {missing:?}"
    );
    assert!(
        text.contains("# TYPE dsmil_inference_request_duration_seconds histogram"),
        "{text}"
    );

    // promtool (Debian package `prometheus`; scripts/test.sh installs it).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed for this test: apt-get install prometheus (scripts/test.sh does)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dsmilctl_shows_devices_layers_status_and_infers() {
    let daemon = Daemon::start();
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(
        deployed["effective_target"], "cpu",
        "no GPU here: the configured fallback applies"
    );
    assert_eq!(deployed["target"], "gpu");

    let devices = daemon.ctl_json(&["devices"]);
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 104);
    assert_eq!(devices[47]["role"], "primary_ai");
    assert_eq!(devices[47]["model"], "digits");
    assert_eq!(devices[47]["state"], "Active");
    assert_eq!(devices[70]["reserved"], true);
    assert_eq!(
        devices
            .iter()
            .filter(|d| d.get("model").is_some_and(|m| m != ""))
            .count(),
        1
    );

    let layers = daemon.ctl_json(&["layers"]);
    let l7 = &layers["layers"][6];
    assert_eq!((l7["id"].as_u64(), l7["budget_gb"].as_f64()), (Some(7), Some(40.0)));
    assert_eq!(l7["active_deployments"], 1);
    assert_eq!(
        l7["estimated_bytes"], deployed["estimated_bytes"],
        "the layer charges the deployment's estimate"
    );
    let shown = daemon.ctl_json(&["show", &deployed["id"].to_string()]);
    assert!(shown["measured_bytes"].as_u64().unwrap() > 0, "{shown}");
    assert_eq!(l7["measured_bytes"], shown["measured_bytes"]);
    assert_eq!(devices[47]["measured_bytes"], shown["measured_bytes"]);

    let status = daemon.ctl_json(&["status"]);
    assert_eq!(status["ready"], true);
    assert_eq!(status["active_deployments"], 1);
    assert!(status["rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(
        status["warnings"][0].as_str().unwrap().contains("wants gpu"),
        "{status}"
    );

    let random = daemon.ctl_json(&["infer", "digits", "--random", "--batch", "3"]);
    assert_eq!(random["outputs"][0]["shape"], serde_json::json!([3, 10]));
    let probabilities: Vec<f64> = random["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for row in probabilities.chunks(10) {
        assert!(
            (row.iter().sum::<f64>() - 1.0).abs() < 1e-4,
            "softmax rows sum to 1: {row:?}"
        );
    }

    // An .npz keyed by input name (the test set's extra keys are ignored).
    let from_file = daemon.ctl_json(&["infer", "digits", "--input", SAMPLE_TEST_SET]);
    let (_, labels) = test_set();
    let predicted: Vec<i64> = from_file["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(predicted.len(), labels.len());
    let correct = predicted.iter().zip(labels.iter()).filter(|(a, b)| a == b).count();
    assert!(correct as f64 / labels.len() as f64 >= 0.95);

    let human = daemon.ctl(&["infer", "digits", "--random"]);
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("label INT64 [1]"));
    let missing = daemon.ctl(&["infer", "nope", "--random"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
}
