//! Drift: a baseline from the deploy's validation data, then an in-distribution
//! window (no alert) and a shifted one (an alert); accuracy drift from
//! reported outcomes against the validated accuracy.

mod common;

use common::*;
use ndarray::{Array2, Axis};

/// Writes `rows` of the sample test set as an .npz for `dsmilctl infer`.
fn rows_npz(dir: &std::path::Path, name: &str, rows: &[usize]) -> String {
    let (pixels, _) = test_set();
    let picked: Array2<f32> = pixels.select(Axis(0), rows);
    let path = dir.join(name);
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
    w.add_array("pixels", &picked).unwrap();
    w.finish().unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn shifted_inputs_raise_a_drift_alert_and_in_distribution_ones_do_not() {
    let (_config_dir, config) = config_with(&[
        ("drift_baseline_rows = 200", "drift_baseline_rows = 180"),
        ("drift_window_rows = 200", "drift_window_rows = 180"),
    ]);
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &config]);
    let int8 = ["--calib", SAMPLE_TEST_SET, "--val", SAMPLE_TEST_SET];
    let mut args = vec!["deploy", SAMPLE_MODEL, "--name", "digits", "--device", "47"];
    args.extend(int8);
    daemon.ctl_json(&args);

    let dir = tempfile::tempdir().unwrap();
    let (_, labels) = test_set();
    // The test set's second half: another sample of the baseline's distribution.
    let in_distribution = rows_npz(dir.path(), "same.npz", &(180..360).collect::<Vec<_>>());
    let zeros: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let shifted_rows: Vec<usize> = zeros.iter().cycle().take(180).copied().collect();
    let shifted = rows_npz(dir.path(), "zeros.npz", &shifted_rows);

    // The baseline is the deploy's validation data (the whole test set,
    // capped at drift_baseline_rows: its first half); no live rows yet.
    let before = daemon.ctl_json(&["drift", "digits"]);
    let m = &before["models"][0];
    assert_eq!(
        (m["baseline_rows"].as_u64(), m["live_rows"].as_u64()),
        (Some(180), Some(0)),
        "{before}"
    );
    assert_eq!(m["ready"], false);

    daemon.ctl_json(&["infer", "digits", "--input", &in_distribution]);
    let same = daemon.ctl_json(&["drift", "digits"]);
    let m = &same["models"][0];
    assert_eq!(m["ready"], true);
    assert_eq!(m["baseline_rows"], 180);
    assert_eq!(m["live_rows"], 180);
    assert!(m["score"].as_f64().unwrap() < 0.05, "in-distribution: {m}");
    assert_eq!(m["alert"], false);
    let events = daemon.ctl_json(&["events", "--kind", "drift_alert"]);
    assert_eq!(events["events"].as_array().expect("events listed").len(), 0, "{events}");

    daemon.ctl_json(&["infer", "digits", "--input", &shifted]);
    let drifted = daemon.ctl_json(&["drift", "digits"]);
    let m = &drifted["models"][0];
    assert!(m["psi"].as_f64().unwrap() > 0.5, "all zeros now: {m}");
    assert_eq!(m["alert"], true);
    assert_eq!(m["live_share"][0].as_f64().unwrap(), 1.0, "{m}");
    let alert = daemon.wait_event("digits", "drift_alert", 0);
    assert!(
        alert["detail"].as_str().unwrap().contains("output drift: PSI"),
        "{alert}"
    );
    let text = daemon.ctl(&["drift", "digits"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("ALERT"));

    // Metrics: the drift score per deployment.
    let status = daemon.ctl_json(&["status"]);
    let metrics = scrape(status["metrics_address"].as_str().unwrap());
    let line = metrics
        .lines()
        .find(|l| l.starts_with("dsmil_drift_score{") && l.contains(r#"model="digits""#))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 0.5, "{line}");
}

#[test]
fn reported_outcomes_below_the_validated_accuracy_raise_an_accuracy_drift_alert() {
    let daemon = Daemon::start();
    let mut args = vec!["deploy", SAMPLE_MODEL, "--name", "digits", "--device", "47"];
    args.extend(["--calib", SAMPLE_TEST_SET, "--val", SAMPLE_TEST_SET]);
    daemon.ctl_json(&args);
    for i in 0..30 {
        // Half right, half wrong: live accuracy 0.5 against ~0.98 validated.
        let actual = if i % 2 == 0 { "3" } else { "4" };
        daemon.ctl_json(&["feedback", "digits", "--predicted", "3", "--actual", actual]);
    }
    let drift = daemon.ctl_json(&["drift", "digits"]);
    let m = &drift["models"][0];
    assert_eq!(m["reported"], 30);
    assert_eq!(m["live_accuracy"], 0.5);
    assert!(m["accuracy_drop"].as_f64().unwrap() > 0.45, "{m}");
    let alert = daemon.wait_event("digits", "drift_alert", 0);
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains("accuracy drift: live 0.5000"),
        "{alert}"
    );
    let unknown = daemon.ctl(&["feedback", "nope", "--predicted", "1", "--actual", "1"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));
}

#[test]
fn the_shadow_check_compares_int8_answers_with_the_fp32_original() {
    let (_config_dir, config) = config_with(&[("shadow_fraction = 0.0", "shadow_fraction = 1.0")]);
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &config]);
    let mut args = vec!["deploy", SAMPLE_MODEL, "--name", "digits", "--device", "47"];
    args.extend(["--calib", SAMPLE_TEST_SET, "--val", SAMPLE_TEST_SET]);
    daemon.ctl_json(&args);
    daemon.ctl_json(&["infer", "digits", "--input", SAMPLE_TEST_SET]);
    // The check runs after the answer went out: poll its counter.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let m = loop {
        let drift = daemon.ctl_json(&["drift", "digits"]);
        let m = drift["models"][0].clone();
        if m["shadow_rows"] == 360 || std::time::Instant::now() > deadline {
            break m;
        }
    };
    assert_eq!(m["shadow_rows"], 360, "every row of the one request, checked: {m}");
    let agreed = m["shadow_agreed"].as_u64().unwrap();
    assert!((350..=360).contains(&agreed), "INT8 keeps FP32's choices: {agreed}/360");

    // Served as uploaded (FP32 on purpose): nothing to shadow.
    daemon.ctl_json(&["deploy", SAMPLE_MODEL, "--name", "fp", "--device", "46", "--allow-fp32"]);
    daemon.ctl_json(&["infer", "fp", "--random"]);
    assert_eq!(daemon.ctl_json(&["drift", "fp"])["models"][0]["shadow_rows"], 0);
}

#[test]
fn with_auto_rollback_a_drift_alert_rolls_back_to_the_previous_version() {
    let (_config_dir, config) = config_with(&[
        ("drift_baseline_rows = 200", "drift_baseline_rows = 180"),
        ("drift_window_rows = 200", "drift_window_rows = 180"),
        ("drift_auto_rollback = false", "drift_auto_rollback = true"),
    ]);
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &config]);
    let mut args = vec!["deploy", SAMPLE_MODEL, "--name", "digits", "--device", "47"];
    args.extend(["--calib", SAMPLE_TEST_SET, "--val", SAMPLE_TEST_SET]);
    daemon.ctl_json(&args);
    let v2 = daemon.ctl_json(&args);
    assert_eq!(v2["version"], 2);

    let dir = tempfile::tempdir().unwrap();
    let (_, labels) = test_set();
    let zeros: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let shifted_rows: Vec<usize> = zeros.iter().cycle().take(180).copied().collect();
    let shifted = rows_npz(dir.path(), "zeros.npz", &shifted_rows);
    daemon.ctl_json(&["infer", "digits", "--input", &shifted]);
    daemon.ctl_json(&["drift", "digits"]);
    let rollback = daemon.wait_event("digits", "rollback", 0);
    assert!(
        rollback["detail"].as_str().unwrap().contains("drift: output drift"),
        "{rollback}"
    );
    let restored = daemon.wait_event("digits", "activate", rollback["seq"].as_u64().unwrap());
    assert_eq!(restored["version"], 1, "version 1 serves again");
}
