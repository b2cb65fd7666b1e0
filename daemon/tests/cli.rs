//! The binaries' own command lines: check-config, default-config, a missing
//! runtime, and dsmilctl over TCP.

mod common;

use std::process::Command;

use common::*;

fn dsmild(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsmild")).args(args).output().unwrap()
}

#[test]
fn check_config_accepts_the_defaults_and_lists_every_problem() {
    let default = dsmild(&["default-config"]);
    assert!(default.status.success());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &default.stdout).unwrap();
    let out = dsmild(&["check-config", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("104 devices in 9 layers"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[serving]\nqueue_capacity = 0\n[devices.47]\ntarget = \"tpu\"\n").unwrap();
    let out = dsmild(&["check-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serving.queue_capacity must be ≥ 1"), "{stderr}");
    assert!(stderr.contains("devices.47.target = \"tpu\""), "{stderr}");
    assert!(
        !stderr.contains("backtrace"),
        "the chain is printed once, without a backtrace: {stderr}"
    );
}

#[test]
fn a_missing_runtime_is_reported_with_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dsmil.toml");
    std::fs::write(
        &config,
        "[runtimes]\nonnxruntime_library = \"/nonexistent/libonnxruntime.so\"\n\
         openvino_library = \"/nonexistent/openvino\"\n",
    )
    .unwrap();
    let daemon = Daemon::start_in(dir, &["--config", config.to_str().unwrap()]);
    let status = daemon.ctl_json(&["status"]);
    let ort = &status["runtimes"][0];
    assert_eq!(ort["available"], false);
    assert!(
        ort["detail"].as_str().unwrap().contains("scripts/fetch-runtimes.sh"),
        "{ort}"
    );

    let out = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--allow-fp32",
        "--name",
        "digits",
        "--device",
        "47",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FailedPrecondition") && stderr.contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );
    let ov = &status["runtimes"][1];
    assert_eq!(ov["available"], false);
    assert!(ov["detail"].as_str().unwrap().contains("OPENVINO_LIB_DIR"), "{ov}");
}

#[test]
fn a_host_with_only_openvino_serves_cpu_devices_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dsmil.toml");
    std::fs::write(
        &config,
        "[runtimes]\nonnxruntime_library = \"/nonexistent/libonnxruntime.so\"\n",
    )
    .unwrap();
    let daemon = Daemon::start_in(dir, &["--config", config.to_str().unwrap()]);
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(deployed["backend"], "openvino", "visibly on OpenVINO: {deployed}");
    let out = daemon.ctl_json(&["infer", "digits", "--random"]);
    assert!(out["outputs"].is_array());
}

#[test]
fn dsmilctl_reaches_the_daemon_over_tcp() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let tcp = daemon.ctl_json(&["status"])["tcp_address"].as_str().unwrap().to_owned();
    let out = Command::new(ctl_binary())
        .args(["--addr", &tcp, "--json", "infer", "digits", "--random"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["model"], "digits");
}
