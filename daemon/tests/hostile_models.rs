//! Hostile models: an upload may reference data or code from any place the
//! ONNX format allows (sparse tensors, nested graphs, model-local functions).
//! Each is refused with INVALID_ARGUMENT and a message naming where it sits,
//! and the daemon and the models it serves carry on.

mod common;

use common::*;

/// Deploys `bytes` through dsmilctl, which must fail: its stderr.
fn refused(daemon: &Daemon, bytes: &[u8], name: &str) -> String {
    let err = daemon
        .try_deploy(bytes, &["--name", name, "--device", "10"])
        .expect_err("the hostile model was deployed");
    // dsmilctl prints the gRPC status as "dsmilctl: <code>: <message>".
    assert!(err.starts_with("dsmilctl: InvalidArgument: "), "{err}");
    err
}

/// The defect: a Constant's sparse_value was never scanned, and ONNX Runtime
/// resolved its relative external-data path against `/`, serving the file.
#[tokio::test(flavor = "multi_thread")]
async fn a_sparse_constant_reading_a_host_file_is_refused() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    // The second line of defence: relative paths resolve in the state dir.
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", daemon.pid())).unwrap();
    assert_eq!(cwd, daemon.state_dir().canonicalize().unwrap());

    let err = refused(&daemon, &onnx::sparse_external_constant("etc/passwd"), "leak");
    assert!(
        err.contains(
            "node Constant_c (Constant) › sparse_value › tensor leaked (sparse values): external data file \
             \"etc/passwd\" is not part of the upload"
        ),
        "{err}"
    );
    let err = refused(&daemon, &onnx::sparse_external_constant("../../etc/shadow"), "leak");
    assert!(
        err.contains("external data location \"../../etc/shadow\" escapes the upload"),
        "{err}"
    );

    // Refused at inspection: nothing about it was recorded.
    let models = daemon.ctl_json(&["models"]);
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["digits"], "{models}");
    daemon.still_serves("digits").await;
}

/// The defect: the operator-domain allow-list only looked at the main graph,
/// so a refused domain deployed from inside an If branch.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_domain_inside_if_branches_is_refused() {
    let model = onnx::contrib_op_in_if_branches();

    // With the default allow-list the model deploys and serves: it is sound,
    // and only the domain decides below.
    let trusting = Daemon::start();
    trusting.deploy(&model, &["--name", "branchy", "--device", "10"]);
    let served = trusting.ctl_json(&["infer", "branchy", "--random"]);
    assert_eq!(served["version"], "1", "{served}");
    drop(trusting);

    let (dir, config) = config_with(&[(
        "allowed_operator_domains = [\"com.microsoft\"]",
        "allowed_operator_domains = []",
    )]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);

    let err = refused(&daemon, &model, "branchy");
    assert!(
        err.contains(
            "custom operator domain \"com.microsoft\" (operators Gelu) is not allowed; add it to \
             deployment.allowed_operator_domains if you trust it"
        ),
        "{err}"
    );
    // Refused while validating: recorded as failed, never serving.
    assert_eq!(daemon.deployment_states(Some("branchy")), [(1, "Failed".to_owned())]);
    let out = daemon.ctl(&["infer", "branchy", "--random"]);
    assert!(!out.status.success(), "the refused model answered");
    daemon.still_serves("digits").await;
}
