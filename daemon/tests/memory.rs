//! Memory budgets: admission on the estimate before loading and on the
//! measured footprint after, placement by room, and memory given back.

mod common;

use common::*;

/// dsmild's default config with layer 2's budget (4 GB) replaced.
fn with_layer2_budget(gb: &str) -> (tempfile::TempDir, String) {
    config_with(&[("memory_budget_gb = 4\n", &format!("memory_budget_gb = {gb}\n"))])
}

#[test]
fn a_deploy_over_budget_is_refused_with_the_layer_need_use_and_budget() {
    // 0.01 GB = 10.2 MiB for layer 2.
    let (dir, config) = with_layer2_budget("0.01");
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    let first = daemon
        .try_deploy(&onnx::mlp(256, 2), &["--name", "small", "--device", "0"])
        .unwrap();
    let used = first["measured_bytes"].as_u64().unwrap();

    // 2 x 1024 x 1024 floats = 8 MiB of weights: with what is in use, too much.
    let err = daemon
        .try_deploy(&onnx::mlp(1024, 2), &["--name", "big", "--device", "1"])
        .unwrap_err();
    assert!(err.contains("ResourceExhausted"), "{err}");
    assert!(
        err.contains("layer 2 (TRAINING) cannot take this deployment: it needs "),
        "{err}"
    );
    assert!(err.contains("(estimated)"), "{err}");
    assert!(err.contains("of 10.2 MiB is in use"), "{err}");
    let in_use = if used >= 1 << 20 {
        format!("{:.1} MiB", used as f64 / (1 << 20) as f64)
    } else {
        format!("{} KiB", used.div_ceil(1024))
    };
    assert!(
        err.contains(&format!(", {in_use} of")),
        "use should be the first model's measured {in_use}: {err}"
    );
    let need: f64 = err
        .split("it needs ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(need >= 8.0, "the need covers at least the 8 MiB of weights: {err}");

    // Refused before anything was recorded, and audited.
    let deployments = daemon.ctl_json(&["deployments", "--model", "big"]);
    assert_eq!(
        deployments["deployments"].as_array().expect("deployments listed").len(),
        0,
        "{deployments}"
    );
    let events = daemon.ctl_json(&["events", "--model", "big"]);
    assert_eq!(events["events"][0]["kind"], "refuse");
    // It fits a layer with room.
    daemon
        .try_deploy(&onnx::mlp(1024, 2), &["--name", "big", "--layer", "3"])
        .unwrap();
}

#[test]
fn without_a_device_or_layer_the_lowest_allowed_layer_with_room_is_chosen() {
    let (dir, config) = with_layer2_budget("0.01");
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    let a = daemon.try_deploy(&onnx::mlp(64, 1), &["--name", "a"]).unwrap();
    assert_eq!((a["layer"].as_u64(), a["device"].as_u64()), (Some(2), Some(0)));
    let b = daemon.try_deploy(&onnx::mlp(64, 1), &["--name", "b"]).unwrap();
    assert_eq!(
        (b["layer"].as_u64(), b["device"].as_u64()),
        (Some(2), Some(1)),
        "next free device"
    );
    // Too big for layer 2's budget: layer 3.
    let c = daemon.try_deploy(&onnx::mlp(1024, 2), &["--name", "c"]).unwrap();
    assert_eq!((c["layer"].as_u64(), c["device"].as_u64()), (Some(3), Some(15)));
    // The classification sets the floor.
    let d = daemon
        .try_deploy(&onnx::mlp(64, 1), &["--name", "d", "--classification", "5"])
        .unwrap();
    assert_eq!(
        (d["layer"].as_u64(), d["device"].as_u64(), d["classification"].as_u64()),
        (Some(5), Some(31), Some(5))
    );
    // A new version stays where the model is.
    let a2 = daemon.try_deploy(&onnx::mlp(64, 1), &["--name", "a"]).unwrap();
    assert_eq!((a2["version"].as_u64(), a2["device"].as_u64()), (Some(2), Some(0)));
    // --layer picks a free device in that layer.
    let e = daemon
        .try_deploy(&onnx::mlp(64, 1), &["--name", "e", "--layer", "3"])
        .unwrap();
    assert_eq!(e["device"], 16);
    let layers = daemon.ctl_json(&["layers"]);
    assert_eq!(layers["layers"][1]["active_deployments"], 2);
    assert_eq!(layers["layers"][2]["active_deployments"], 2);
}

#[test]
fn a_model_larger_once_loaded_than_estimated_is_unloaded_and_the_previous_version_keeps_serving() {
    // 0.03 GB = 30.7 MiB; the model's activation is 64 MiB once it runs.
    let (dir, config) = with_layer2_budget("0.03");
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon
        .try_deploy(&onnx::mlp(16, 1), &["--name", "m", "--device", "3"])
        .unwrap();
    let err = daemon
        .try_deploy(&onnx::big_activation(4096), &["--name", "m", "--device", "3"])
        .unwrap_err();
    assert!(err.contains("ResourceExhausted"), "{err}");
    assert!(
        err.contains("layer 2 (TRAINING) cannot take this deployment") && err.contains("(measured after loading)"),
        "{err}"
    );
    let deployments = daemon.ctl_json(&["deployments", "--model", "m"]);
    let d = deployments["deployments"].as_array().unwrap();
    assert_eq!(d[0]["state"], "Active");
    assert_eq!(d[1]["state"], "Failed");
    assert!(d[1]["measured_bytes"].as_u64().unwrap() > 30 << 20, "{}", d[1]);
    assert_eq!(daemon.ctl_json(&["infer", "m", "--random"])["version"], "1");
}

#[test]
fn undeploy_gives_the_memory_back() {
    let daemon = Daemon::start();
    let before = daemon.ctl_json(&["status"])["rss_bytes"].as_u64().unwrap();
    // 4 x 2048 x 2048 floats: 64 MiB of weights.
    let deployed = daemon
        .try_deploy(&onnx::mlp(2048, 4), &["--name", "big", "--layer", "7"])
        .unwrap();
    let measured = deployed["measured_bytes"].as_u64().unwrap();
    assert!(measured > 48 << 20, "measured {measured}");
    let loaded = daemon.ctl_json(&["status"])["rss_bytes"].as_u64().unwrap();
    assert!(loaded > before + (48 << 20), "before {before}, loaded {loaded}");
    daemon.ctl_json(&["undeploy", "big"]);
    let after = daemon.ctl_json(&["status"])["rss_bytes"].as_u64().unwrap();
    assert!(
        after + measured / 2 < loaded,
        "undeploy freed too little: loaded {loaded}, after {after}, measured {measured}"
    );
    let layers = daemon.ctl_json(&["layers"]);
    let extended = &layers["layers"][6];
    assert_eq!(extended["id"], 7, "{layers}");
    assert_eq!(
        extended["measured_bytes"].as_u64().expect("measured_bytes present"),
        0,
        "{extended}"
    );
}
