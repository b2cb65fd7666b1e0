//! models.d: manifests reconciled with what serves. A new one deploys, a
//! changed one makes a new version, a removed one undeploys, a broken one
//! is refused alone; a restart redeploys nothing that did not change.

mod common;

use common::*;

fn write_manifest(dir: &std::path::Path, file: &str, name: &str, note: &str) {
    std::fs::write(
        dir.join(file),
        format!(
            "name = \"{name}\"\nmodel = \"{SAMPLE_MODEL}\"\ndevice = 47\ncalibration = \"{SAMPLE_TEST_SET}\"\nnote = \"{note}\"\n"
        ),
    )
    .unwrap();
}

fn versions(daemon: &Daemon, model: &str) -> usize {
    let models = daemon.ctl_json(&["models"]);
    models["models"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == model)
        .map_or(0, |m| m["versions"].as_array().unwrap().len())
}

#[test]
fn manifests_deploy_update_undeploy_and_broken_ones_are_refused_alone() {
    let (config_dir, config) = config_with(&[]);
    let models_d = config_dir.path().join("models.d");
    std::fs::create_dir_all(&models_d).unwrap();
    write_manifest(&models_d, "digits.toml", "digits", "first");

    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(state, &["--config", &config]);
    let activated = daemon.wait_event("digits", "activate", 0);
    assert_eq!(activated["version"], 1);
    let shown = daemon.ctl_json(&["deployments", "--model", "digits"]);
    assert_eq!(shown["deployments"][0]["state"], "Active");
    assert!(
        shown["deployments"][0]["history"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("calibrating"),
        "quantized from the manifest's calibration data: {shown}"
    );

    // A broken manifest beside it: refused, named, and nothing else moves.
    std::fs::write(models_d.join("broken.toml"), "name = \"x\"\nmodel = 42\n").unwrap();
    let refused = daemon.wait_event("", "manifest_refused", 0);
    assert!(refused["detail"].as_str().unwrap().contains("broken.toml"), "{refused}");

    // A change: version 2.
    write_manifest(&models_d, "digits.toml", "digits", "second");
    let second = daemon.wait_event("digits", "activate", activated["seq"].as_u64().unwrap());
    assert_eq!(second["version"], 2);
    assert_eq!(versions(&daemon, "digits"), 2);

    // A restart with the same manifests redeploys nothing.
    let state = daemon.stop();
    let daemon = Daemon::start_in(state, &["--config", &config]);
    let out = daemon.ctl_json(&["reload"]);
    assert!(
        !out["changes"].to_string().contains("models.d: deployed"),
        "unchanged manifests: {out}"
    );
    assert_eq!(versions(&daemon, "digits"), 2);

    // Removed: undeployed.
    std::fs::remove_file(models_d.join("digits.toml")).unwrap();
    let undeployed = daemon.wait_event("digits", "undeploy", second["seq"].as_u64().unwrap());
    assert_eq!(undeployed["model"], "digits");
    assert!(daemon.ctl_json(&["deployments", "--model", "digits"])["deployments"][1]["state"] == "Retired");
}
