//! `dsmilctl top` and the p99 alert, from the daemon's own figures: every
//! application request is slowed in its worker (the `infer-external`
//! failpoint sleeps 5 ms), so the live p99 passes a 2 ms threshold.

#![cfg(feature = "failpoints")]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_live_percentiles_and_a_slow_p99_raises_an_alert() {
    let (_config_dir, config) = config_with(&[
        (
            "metrics_collection_interval_seconds = 60",
            "metrics_collection_interval_seconds = 1",
        ),
        ("alert_on_latency_p99_ms = 2000", "alert_on_latency_p99_ms = 2"),
        // Probation judges the same p99; here only the alert is under test.
        ("auto_rollback_on_failure = true", "auto_rollback_on_failure = false"),
    ]);
    let daemon = Daemon::start_with_env(
        tempfile::tempdir().unwrap(),
        &["--config", &config],
        &[("FAILPOINTS", "infer-external=sleep(5)")],
    );
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let mut client = daemon.inference().await;
    for _ in 0..30 {
        client.model_infer(digits_request(1, 0.5)).await.unwrap();
    }

    let top = daemon.ctl_json(&["top"]);
    let d = &top["deployments"][0];
    assert_eq!(d["model"], "digits");
    assert_eq!(d["recent_requests"], 30);
    assert_eq!(d["successes"], 30);
    let (p50, p99) = (d["p50_ms"].as_f64().unwrap(), d["p99_ms"].as_f64().unwrap());
    assert!(p50 >= 5.0 && p99 >= p50, "the injected 5 ms: p50 {p50}, p99 {p99}");
    assert!(d["requests_per_second"].as_f64().unwrap() > 0.0);

    let alert = daemon.wait_event("digits", "latency_alert", 0);
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains("above alert_on_latency_p99_ms 2"),
        "{alert}"
    );
    let table = daemon.ctl(&["top", "--once"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("digits") && text.contains("p99"), "{text}");
}
