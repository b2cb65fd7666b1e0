//! `compare`: what a new configuration changes, and what it may not change
//! under the deployments serving now (registry entries on fake pools).

use super::*;
use crate::backend::Runtimes;
use crate::deploy::admission::tests::{record, registry};
use crate::store::{BlobStore, DeploymentRecord, Journal};

const GIB: u64 = 1 << 30;

/// The shipped defaults with each `(from, to)` replaced once.
fn config_with(replacements: &[(&str, &str)]) -> Config {
    let mut text = config::DEFAULT_TOML.to_owned();
    for (from, to) in replacements {
        assert!(text.contains(from), "{from:?} is not in the defaults");
        text = text.replacen(from, to, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsmil.toml");
    std::fs::write(&path, text).unwrap();
    config::load(Some(&path), &[]).unwrap()
}

struct Fixture {
    deployer: Deployer,
    _dir: tempfile::TempDir,
}

/// A deployer over a fresh store, serving `records`. The runtimes point at
/// a library that is not there: comparing configurations loads none.
fn serving(old: &Config, records: impl IntoIterator<Item = DeploymentRecord>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = old.clone();
    let missing = dir.path().join("no-runtime.so");
    config.runtimes.onnxruntime_library = Some(missing.clone());
    config.runtimes.openvino_library = Some(missing);
    let deployer = Deployer::new(
        Arc::new(config.clone()),
        Journal::open(&dir.path().join("journal")).unwrap(),
        BlobStore::open(&dir.path().join("blobs")).unwrap(),
        Arc::new(Runtimes::load(&config)),
        registry(records),
    );
    Fixture { deployer, _dir: dir }
}

fn incompatible(result: Result<ReloadOutcome, ReloadError>) -> Vec<String> {
    match result {
        Err(ReloadError::Incompatible(problems)) => problems,
        Err(other) => panic!("expected Incompatible, got {other}"),
        Ok(outcome) => panic!("expected a refusal, got {outcome:?}"),
    }
}

#[test]
fn the_same_configuration_changes_nothing() {
    let old = config::load(None, &[]).unwrap();
    let f = serving(&old, [record("a", 47, 7, GIB, 0)]);
    let outcome = compare(&old, &old.clone(), &f.deployer).unwrap();
    assert_eq!(outcome.changes, Vec::<String>::new());
    assert_eq!(outcome.warnings, Vec::<String>::new());
}

#[test]
fn a_serving_device_may_not_change_layer_or_disappear() {
    // Device 103 hosts in layer 9 here, so that a smaller device count can remove it.
    let old = config_with(&[
        ("devices = \"59-66\"", "devices = \"59-66,103\""),
        ("\"67-103\"", "\"67-102\""),
    ]);
    let new = config_with(&[
        ("device_count = 104", "device_count = 103"),
        ("\"67-103\"", "\"66-102\""),
        ("\"59-66\"", "\"43,59-65\""),
        ("\"43-50\"", "\"44-50\""),
    ]);
    let f = serving(
        &old,
        [
            record("moved", 43, 7, GIB, 0),
            record("to-system", 66, 9, GIB, 0),
            record("gone", 103, 9, GIB, 0),
            record("stays", 47, 7, GIB, 0),
        ],
    );
    let problems = incompatible(compare(&old, &new, &f.deployer));
    assert_eq!(problems.len(), 3, "one per model that cannot stay: {problems:?}");
    let about = |model: &str| {
        problems
            .iter()
            .find(|p| p.starts_with(&format!("{model} v1 serves on device")))
            .unwrap_or_else(|| panic!("nothing about {model}: {problems:?}"))
            .clone()
    };
    assert!(
        about("moved").ends_with("which would move from layer 7 to layer 9: undeploy it first"),
        "{problems:?}"
    );
    assert!(
        about("to-system").ends_with("which would move from layer 9 to layer 1: undeploy it first"),
        "{problems:?}"
    );
    assert!(about("gone").contains("device 103 does not exist"), "{problems:?}");
}

#[test]
fn a_serving_layer_may_not_become_reserved() {
    let old = config::load(None, &[]).unwrap();
    let new = config_with(&[(
        "name = \"EXECUTIVE\"\ndevices = \"59-66\"\nmemory_budget_gb = 12\ntarget = \"gpu\"\n",
        "name = \"EXECUTIVE\"\ndevices = \"59-66\"\nreserved = true\n",
    )]);
    assert!(new.topology.layer(9).unwrap().reserved);
    let f = serving(&old, [record("a", 60, 9, GIB, 0)]);
    let problems = incompatible(compare(&old, &new, &f.deployer));
    assert_eq!(
        problems,
        ["a v1 serves on device 60, which would become reserved: undeploy it first"]
    );
}

#[test]
fn moving_devices_nothing_serves_on_is_allowed() {
    let old = config::load(None, &[]).unwrap();
    let new = config_with(&[("\"43-50\"", "\"44-50\""), ("\"59-66\"", "\"43,59-66\"")]);
    let f = serving(&old, [record("a", 47, 7, GIB, 0)]);
    let outcome = compare(&old, &new, &f.deployer).unwrap();
    assert_eq!(outcome.warnings, Vec::<String>::new());
    // Device 43 now takes layer 9's target: the same (gpu), so no retarget.
    assert_eq!(outcome.changes, Vec::<String>::new());
}

#[test]
fn budget_changes_are_listed_and_a_layer_left_over_its_new_budget_is_a_warning() {
    let old = config::load(None, &[]).unwrap();
    let new = config_with(&[
        ("memory_budget_gb = 4\n", "memory_budget_gb = 5\n"),
        ("memory_budget_gb = 40\n", "memory_budget_gb = 1\n"),
    ]);
    let f = serving(&old, [record("a", 47, 7, 0, 2 * GIB)]);
    let outcome = compare(&old, &new, &f.deployer).unwrap();
    assert_eq!(outcome.changes, ["layer 2 budget 4 → 5 GB", "layer 7 budget 40 → 1 GB"]);
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(
        outcome.warnings[0].starts_with("layer 7 already uses 2.00 GiB over its new budget 1.00 GiB"),
        "{:?}",
        outcome.warnings
    );
}

#[test]
fn retargeted_devices_are_counted() {
    let old = config::load(None, &[]).unwrap();
    let new = config_with(&[(
        "[devices.47]\n",
        "[devices.47]\ntarget = \"cpu\"\n[devices.48]\ntarget = \"npu\"\n",
    )]);
    let f = serving(&old, []);
    let outcome = compare(&old, &new, &f.deployer).unwrap();
    assert_eq!(outcome.changes, ["2 device(s) change target (new deployments use it)"]);
}

#[test]
fn live_sections_change_now_and_startup_sections_warn_of_a_restart() {
    let old = config::load(None, &[]).unwrap();
    let mut new = old.clone();
    new.memory.available_bytes -= GIB;
    new.monitoring.alert_on_latency_p99_ms += 1;
    new.serving.queue_capacity += 1;
    new.runtimes.openvino_inference_precision = "f16".into();
    let f = serving(&old, []);
    let outcome = compare(&old, &new, &f.deployer).unwrap();
    assert_eq!(outcome.changes, ["[memory] changed", "[monitoring] changed"]);
    assert_eq!(outcome.warnings.len(), 2, "{:?}", outcome.warnings);
    assert!(outcome.warnings[0].starts_with("[runtimes] changed: it takes effect at the next restart"));
    assert!(outcome.warnings[1].starts_with("[serving] changed: it takes effect at the next restart"));
}
