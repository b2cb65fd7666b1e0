//! Validation before anything serves: operators, the security scan, the
//! parameter limit and the dry run. A refused version never disturbs the one
//! already serving.

mod common;

use common::*;

/// Deploys `bytes` through dsmilctl; returns (success, stderr).
fn deploy(daemon: &Daemon, bytes: &[u8], args: &[&str]) -> (bool, String) {
    match daemon.try_deploy(bytes, args) {
        Ok(_) => (true, String::new()),
        Err(e) => (false, e),
    }
}

#[test]
fn a_model_with_non_finite_outputs_fails_its_dry_run_and_v1_keeps_serving() {
    let daemon = Daemon::start();
    let (ok, err) = deploy(&daemon, &onnx::mlp(4, 2), &["--name", "m", "--device", "10"]);
    assert!(ok, "{err}");
    let (ok, err) = deploy(&daemon, &onnx::non_finite(), &["--name", "m", "--device", "10"]);
    assert!(!ok);
    assert!(
        err.contains("InvalidArgument") && err.contains("dry run") && err.contains("NaN or infinite"),
        "{err}"
    );

    let deployments = daemon.ctl_json(&["deployments", "--model", "m"]);
    let d = deployments["deployments"].as_array().unwrap();
    assert_eq!(
        (d[0]["version"].as_u64(), d[0]["state"].as_str()),
        (Some(1), Some("Active"))
    );
    assert_eq!(
        (d[1]["version"].as_u64(), d[1]["state"].as_str()),
        (Some(2), Some("Failed"))
    );
    let last = d[1]["history"].as_array().unwrap().last().unwrap().clone();
    assert!(last["detail"].as_str().unwrap().contains("dry run"), "{last}");
    let failed_in = &d[1]["history"].as_array().unwrap()[1];
    assert_eq!(
        failed_in["state"], "Validating",
        "the failure happened during validation"
    );

    let served = daemon.ctl_json(&["infer", "m", "--random"]);
    assert_eq!(served["version"], "1");
    let events = daemon.ctl_json(&["events", "--model", "m"]);
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "fail" && e["version"] == 2)
    );
}

#[test]
fn unknown_operators_and_custom_domains_are_listed() {
    let daemon = Daemon::start();
    let (ok, err) = deploy(&daemon, &onnx::custom_domain(), &["--name", "c", "--device", "10"]);
    assert!(!ok);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(err.contains("operator NotAnOnnxOp is not an ONNX operator"), "{err}");
    assert!(
        err.contains("custom operator domain \"com.example.secret\" (operators Frobnicate) is not allowed"),
        "{err}"
    );
    assert!(
        err.contains("onnxruntime does not implement operator Frobnicate"),
        "{err}"
    );
}

#[test]
fn external_data_is_refused_whether_it_escapes_or_is_just_absent() {
    let daemon = Daemon::start();
    let (ok, err) = deploy(
        &daemon,
        &onnx::external_data("../../etc/shadow"),
        &["--name", "e", "--device", "10"],
    );
    assert!(!ok);
    assert!(
        err.contains("tensor w: external data location \"../../etc/shadow\" escapes the upload"),
        "{err}"
    );
    let (ok, err) = deploy(
        &daemon,
        &onnx::external_data("/etc/shadow"),
        &["--name", "e", "--device", "10"],
    );
    assert!(!ok);
    assert!(err.contains("escapes the upload"), "{err}");
    let (ok, err) = deploy(
        &daemon,
        &onnx::external_data("weights.bin"),
        &["--name", "e", "--device", "10"],
    );
    assert!(!ok);
    assert!(err.contains("\"weights.bin\" is not part of the upload"), "{err}");
    // Refused at inspection: nothing was recorded.
    let deployments = daemon.ctl_json(&["deployments"]);
    assert_eq!(
        deployments["deployments"].as_array().expect("deployments listed").len(),
        0,
        "{deployments}"
    );
}

#[test]
fn the_layer_parameter_limit_comes_from_config() {
    let (dir, config) = config_with(&[("max_parameters = 2_000_000_000", "max_parameters = 1000")]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    // 2 x 32 x 32 = 2048 parameters: too many for layer 2, fine for layer 3.
    let (ok, err) = deploy(&daemon, &onnx::mlp(32, 2), &["--name", "p", "--device", "0"]);
    assert!(!ok);
    assert!(
        err.contains("model has 2048 parameters; layer 2 (TRAINING) accepts at most 1000"),
        "{err}"
    );
    let (ok, err) = deploy(&daemon, &onnx::mlp(32, 2), &["--name", "p", "--device", "15"]);
    assert!(ok, "{err}");
}
