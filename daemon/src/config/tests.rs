use std::io::Write;

use super::*;
use crate::topology::Target;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn problems(err: ConfigError) -> Vec<String> {
    match err {
        ConfigError::Invalid { problems, .. } => problems,
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn the_shipped_defaults_are_the_design_table() {
    let c = load(None, &[]).unwrap();
    let t = &c.topology;
    assert_eq!(t.devices().len(), 104);
    assert_eq!(t.layers().len(), 9);
    // (id, name, devices, budget GB, target), as in DESIGN.md §2.
    type Row = (u8, &'static str, &'static str, Option<f64>, Option<Target>);
    let expected: [Row; 9] = [
        (1, "SYSTEM", "67-103", None, None),
        (2, "TRAINING", "0-14", Some(4.0), Some(Target::Npu)),
        (3, "SECRET", "15-22", Some(6.0), Some(Target::Npu)),
        (4, "TOP_SECRET", "23-30", Some(8.0), Some(Target::Npu)),
        (5, "COSMIC", "31-36", Some(10.0), Some(Target::Gpu)),
        (6, "ATOMAL", "37-42", Some(12.0), Some(Target::Gpu)),
        (7, "EXTENDED", "43-50", Some(40.0), Some(Target::Gpu)),
        (8, "ENHANCED_SEC", "51-58", Some(8.0), Some(Target::Npu)),
        (9, "EXECUTIVE", "59-66", Some(12.0), Some(Target::Gpu)),
    ];
    for (layer, (id, name, devices, budget, target)) in t.layers().iter().zip(expected) {
        assert_eq!(layer.id, id);
        assert_eq!(layer.name, name);
        assert_eq!(crate::topology::format_id_list(&layer.devices), devices);
        assert_eq!(layer.budget_gb, budget);
        assert_eq!(layer.target, target);
        assert_eq!(layer.reserved, id == 1);
    }
    let primary = t.device_with_role("primary_ai").unwrap();
    assert_eq!((primary.id, primary.layer, primary.target), (47, 7, Some(Target::Gpu)));
    assert_eq!(c.memory.total_bytes, 64 << 30);
    assert_eq!(c.memory.available_bytes, 62 << 30);
    assert_eq!(c.quantization.min_accuracy_retention, 0.95);
    assert_eq!(c.quantization.calibration_samples, 1000);
    assert_eq!(c.deployment.warmup_iterations, 10);
    assert_eq!(c.deployment.health_check_timeout.as_secs(), 30);
    assert!(c.deployment.auto_rollback_on_failure);
    assert_eq!(c.monitoring.metrics_collection_interval.as_secs(), 60);
    assert_eq!(c.monitoring.drift_detection_threshold_percent, 5.0);
    assert_eq!(c.monitoring.alert_on_latency_p99_ms, 2000);
    assert_eq!(c.listeners.tcp, None, "no TCP unless asked (issue 12)");
    assert_eq!(c.listeners.metrics.unwrap().to_string(), "127.0.0.1:9464");
    assert_eq!(c.hardware.fallback_target, Target::Cpu);
}

#[test]
fn a_file_overrides_only_what_it_names_and_flags_override_the_file() {
    let f = file("[deployment]\nwarmup_iterations = 3\n[listeners]\ntcp = \"127.0.0.1:9000\"\nmetrics = \"\"\n");
    let c = load(
        Some(f.path()),
        &[
            ("paths.state_dir", toml::Value::String("/tmp/x".into())),
            ("listeners.tcp", toml::Value::String("127.0.0.1:9001".into())),
        ],
    )
    .unwrap();
    assert_eq!(c.deployment.warmup_iterations, 3);
    assert_eq!(
        c.deployment.health_check_timeout.as_secs(),
        30,
        "sibling keys keep their defaults"
    );
    assert!(c.listeners.metrics.is_none(), "\"\" turns the listener off");
    assert_eq!(
        c.listeners.tcp.unwrap().to_string(),
        "127.0.0.1:9001",
        "the flag wins over the file"
    );
    assert_eq!(c.paths.state_dir, std::path::PathBuf::from("/tmp/x"));
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let f = file("[deployment]\nwarmup_iteration = 3\n");
    let err = load(Some(f.path()), &[]).unwrap_err().to_string();
    assert!(err.contains("warmup_iteration"), "{err}");
}

#[test]
fn a_bad_topology_reports_every_problem_with_its_device_ids() {
    let f = file(
        r#"
[[layers]]
id = 1
name = "SYSTEM"
devices = "59-103"
reserved = true

[[layers]]
id = 2
name = "A"
devices = "0-30,59"
memory_budget_gb = 0
target = "npu"
"#,
    );
    let p = problems(load(Some(f.path()), &[]).unwrap_err());
    let all = p.join("\n");
    assert!(all.contains("device(s) 59 are in both layer 1 and layer 2"), "{all}");
    assert!(all.contains("device(s) 31-58 are in no layer"), "{all}");
    assert!(all.contains("layers[id=2].memory_budget_gb = 0 must be > 0"), "{all}");
    assert_eq!(p.len(), 3, "{all}");
}

#[test]
fn bad_values_are_each_named() {
    let f = file(
        "[memory]\navailable_gb = 70\n[listeners]\ntcp = \"localhost\"\n[hardware]\nfallback_target = \"tpu\"\n[devices.200]\nrole = \"x\"\n",
    );
    let all = problems(load(Some(f.path()), &[]).unwrap_err()).join("\n");
    for needle in [
        "memory.available_gb = 70",
        "listeners.tcp = \"localhost\"",
        "hardware.fallback_target = \"tpu\"",
        "devices.200",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn syntax_errors_name_the_file() {
    let f = file("[deployment\n");
    let err = load(Some(f.path()), &[]).unwrap_err().to_string();
    assert!(err.starts_with(&f.path().display().to_string()), "{err}");
}

// A public key (RFC 8032's first test vector), as a .pub file and inline.
const TEST_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";

#[test]
fn signing_keys_resolve_inline_and_from_a_file_and_default_to_off() {
    let defaults = load(None, &[]).unwrap();
    assert!(defaults.signing.trusted_keys.is_empty() && defaults.signing.required_layers.is_empty());
    let pem = file(TEST_PUB_PEM);
    let f = file(&format!(
        "[signing]\nrequired_layers = [3, 7]\ntrusted_keys = [\n  {{ name = \"release\", public_key = \
         \"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\" }},\n  {{ name = \"ci\", path = {:?} }},\n]\n",
        pem.path().display().to_string()
    ));
    let c = load(Some(f.path()), &[]).unwrap();
    let names: Vec<&str> = c.signing.trusted_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["release", "ci"]);
    assert_eq!(c.signing.trusted_keys[0].key, c.signing.trusted_keys[1].key);
    assert_eq!(
        hex::encode(c.signing.trusted_keys[0].key.as_bytes()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    assert_eq!(c.signing.required_layers.iter().copied().collect::<Vec<_>>(), [3, 7]);
}

#[test]
fn bad_signing_settings_are_each_named() {
    let f = file(
        "[signing]\nrequired_layers = [12]\ntrusted_keys = [\n  { name = \"broken\", public_key = \"not a key\" },\n  \
         { name = \"both\", public_key = \"x\", path = \"/k.pub\" },\n  { name = \"relative\", path = \"k.pub\" },\n  \
         { name = \"missing\", path = \"/nonexistent/dsmil/k.pub\" },\n  { name = \"bad name!\", public_key = \
         \"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\" },\n]\n",
    );
    let all = problems(load(Some(f.path()), &[]).unwrap_err()).join("\n");
    for needle in [
        "name = \"broken\"): not an ed25519 public key",
        "name = \"both\"): give exactly one of public_key and path",
        "name = \"relative\"): path = \"k.pub\" must be absolute",
        "name = \"missing\"): cannot read path",
        "name = \"bad name!\"): a key's name is 1-64 characters",
        "signing.required_layers: layer 12 is not one of [[layers]]",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    let f = file("[signing]\nrequired_layers = [3]\n");
    let all = problems(load(Some(f.path()), &[]).unwrap_err()).join("\n");
    assert!(all.contains("signing.trusted_keys is empty"), "{all}");
    let f = file("[signing]\nrequire = [3]\n");
    let err = load(Some(f.path()), &[]).unwrap_err().to_string();
    assert!(err.contains("require"), "{err}");
}
