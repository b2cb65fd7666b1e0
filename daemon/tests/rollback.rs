//! Rollback by model, device and layer, through the same stages as a deploy.

mod common;

use common::*;

fn serving(daemon: &Daemon, model: &str) -> String {
    daemon.ctl_json(&["infer", model, "--random"])["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn rollback_by_model_restores_the_previous_version_through_the_pipeline() {
    let daemon = Daemon::start();
    daemon.deploy(&onnx::mlp(8, 1), &["--name", "m", "--device", "10"]);
    daemon.deploy(&onnx::mlp(8, 2), &["--name", "m", "--device", "10"]);
    assert_eq!(serving(&daemon, "m"), "2");

    let r = daemon.ctl_json(&["rollback", "--model", "m", "--reason", "bad answers"]);
    assert_eq!(r["restored"][0]["version"], 1);
    assert_eq!(serving(&daemon, "m"), "1");

    let d = daemon.ctl_json(&["deployments", "--model", "m"]);
    let states: Vec<(u64, &str)> = d["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["version"].as_u64().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![(1, "Retired"), (2, "RolledBack"), (1, "Active")]);
    let restored = &d["deployments"][2];
    let stages: Vec<&str> = restored["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert!(
        stages.contains(&"WarmingUp") && stages.contains(&"HealthChecking"),
        "{stages:?}"
    );
    let rolled = &d["deployments"][1]["history"].as_array().unwrap().last().unwrap()["detail"];
    assert_eq!(rolled, "rolled back to version 1: bad answers");

    let events = daemon.ctl_json(&["events", "--kind", "rollback"]);
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    assert!(
        events["events"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("from version 2: bad answers")
    );

    // Nothing earlier than version 1.
    let out = daemon.ctl(&["rollback", "--model", "m"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FailedPrecondition") && err.contains("no earlier version"),
        "{err}"
    );
    // A rollback creates no version: the next deploy is version 3.
    assert_eq!(daemon.deploy(&onnx::mlp(8, 3), &["--name", "m"])["version"], 3);
}

#[test]
fn rollback_by_device_and_by_layer_touch_only_what_they_name() {
    let daemon = Daemon::start();
    for (name, device) in [("a", "15"), ("b", "16"), ("c", "23")] {
        daemon.deploy(&onnx::mlp(8, 1), &["--name", name, "--device", device]);
        daemon.deploy(&onnx::mlp(8, 2), &["--name", name, "--device", device]);
    }
    daemon.ctl_json(&["rollback", "--device", "16"]);
    assert_eq!(
        (serving(&daemon, "a"), serving(&daemon, "b"), serving(&daemon, "c")),
        ("2".into(), "1".into(), "2".into())
    );

    daemon.deploy(&onnx::mlp(8, 3), &["--name", "b", "--device", "16"]);
    let r = daemon.ctl_json(&["rollback", "--layer", "3"]);
    let mut back: Vec<(String, u64)> = r["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["model"].as_str().unwrap().to_owned(), d["version"].as_u64().unwrap()))
        .collect();
    back.sort();
    // b: 3 -> 2 (version 2 was active before 1 came back, so it is the previous one below 3).
    assert_eq!(back, vec![("a".into(), 1), ("b".into(), 2)]);
    assert_eq!(serving(&daemon, "c"), "2", "layer 4 is untouched");

    let out = daemon.ctl(&["rollback", "--device", "40"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model serves on device 40"));
}

#[test]
fn events_wait_for_the_next_one() {
    let daemon = Daemon::start();
    let after = 0.to_string();
    // Nothing yet: a short wait returns empty.
    let none = daemon.ctl_json(&["events", "--after", &after, "--wait-ms", "50"]);
    assert_eq!(none["events"].as_array().expect("events listed").len(), 0, "{none}");
    // A waiting call returns as soon as a deploy journals its first event.
    let socket = daemon.socket();
    let waiter = std::thread::spawn(move || {
        let out = ctl_with_socket(
            &socket,
            &["--json", "events", "--kind", "activate", "--wait-ms", "60000"],
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    });
    daemon.deploy(&onnx::mlp(8, 1), &["--name", "w"]);
    let got = waiter.join().unwrap();
    assert_eq!(got["events"][0]["kind"], "activate");
    assert_eq!(got["events"][0]["model"], "w");
}
