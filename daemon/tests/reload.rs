//! Hot reload: a change to the config file is validated and applied live;
//! an invalid one is refused, journaled, and the running configuration
//! stays; SIGHUP and `dsmilctl reload` do the same.

mod common;

use common::*;

fn layer_budget(daemon: &Daemon, id: u64) -> f64 {
    let layers = daemon.ctl_json(&["layers"]);
    let layer = layers["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap()
        .clone();
    layer["budget_bytes"].as_f64().unwrap() / (1u64 << 30) as f64
}

#[test]
fn config_changes_apply_live_and_bad_ones_are_refused() {
    let (config_dir, path) = config_with(&[]);
    let original = std::fs::read_to_string(&path).unwrap();
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &path]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(layer_budget(&daemon, 7), 40.0);

    // The file changes: the watcher reloads it.
    let smaller = original.replacen("memory_budget_gb = 40", "memory_budget_gb = 20", 1);
    assert_ne!(smaller, original, "the defaults give layer 7 40 GB");
    std::fs::write(&path, &smaller).unwrap();
    let event = daemon.wait_event("", "config_reload", 0);
    assert!(
        event["detail"]
            .as_str()
            .unwrap()
            .contains("the config file changed: layer 7 budget 40 → 20 GB"),
        "{event}"
    );
    assert_eq!(layer_budget(&daemon, 7), 20.0);

    // A broken file: refused, and the running configuration stays.
    std::fs::write(&path, smaller.replace("[memory]", "[memory]\nbogus_key = 1")).unwrap();
    let refused = daemon.wait_event("", "config_refused", event["seq"].as_u64().unwrap());
    assert!(refused["detail"].as_str().unwrap().contains("bogus_key"), "{refused}");
    assert_eq!(layer_budget(&daemon, 7), 20.0);
    let out = daemon.ctl(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InvalidArgument") && err.contains("bogus_key"), "{err}");

    // Moving a serving device to another layer is refused.
    let moved = smaller
        .replacen("devices = \"43-50\"", "devices = \"43-46,48-50\"", 1)
        .replacen("devices = \"37-42\"", "devices = \"37-42,47\"", 1);
    assert_ne!(moved, smaller);
    std::fs::write(&path, &moved).unwrap();
    let out = daemon.ctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FailedPrecondition") && err.contains("device 47, which would move from layer 7 to layer 6"),
        "{err}"
    );

    // SIGHUP, back to the original.
    std::fs::write(&path, &original).unwrap();
    let after = daemon.ctl_json(&["events"])["events"]
        .as_array()
        .unwrap()
        .first()
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The watcher sees the write too: wait for the reload SIGHUP made.
    let mut reloaded = daemon.wait_event("", "config_reload", after);
    while !reloaded["detail"].as_str().unwrap().starts_with("SIGHUP: ") {
        let seq = reloaded["seq"].as_u64().unwrap();
        reloaded = daemon.wait_event("", "config_reload", seq);
    }
    assert_eq!(layer_budget(&daemon, 7), 40.0);
    assert!(daemon.log().contains("configuration reloaded"), "logged too");
    let served = daemon.ctl_json(&["infer", "digits", "--random"]);
    assert!(served["outputs"].is_array(), "still serving after reloads");
    drop(config_dir);
}
