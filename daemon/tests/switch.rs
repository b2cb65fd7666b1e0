//! A version switch under continuous load: no request fails, and each
//! client sees the old version, then only the new one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_requests_fail_during_a_version_switch() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let switched = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = daemon.inference().await;
        let switched = Arc::clone(&switched);
        clients.push(tokio::spawn(async move {
            let request = digits_request(1, 4.0);
            let (mut versions, mut failures, mut after_switch) = (Vec::new(), Vec::new(), 0);
            // Bounded: at most 20,000 requests per client.
            for _ in 0..20_000 {
                match client.model_infer(request.clone()).await {
                    Ok(r) => versions.push(r.into_inner().model_version),
                    Err(status) => failures.push(status.to_string()),
                }
                if switched.load(Ordering::Acquire) {
                    after_switch += 1;
                    if after_switch >= 50 {
                        break;
                    }
                }
            }
            (versions, failures)
        }));
    }
    // Switch while the clients run.
    let socket = daemon.socket();
    let deployed = tokio::task::spawn_blocking(move || {
        ctl_with_socket(
            &socket,
            &[
                "--json",
                "deploy",
                SAMPLE_MODEL,
                "--allow-fp32",
                "--name",
                "digits",
                "--device",
                "47",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    switched.store(true, Ordering::Release);

    let mut total = 0;
    for client in clients {
        let (versions, failures) = client.await.unwrap();
        assert!(failures.is_empty(), "requests failed during the switch: {failures:?}");
        assert_eq!(
            versions.last().map(String::as_str),
            Some("2"),
            "the client ends on the new version"
        );
        let first_new = versions.iter().position(|v| v == "2").unwrap();
        assert!(
            versions[first_new..].iter().all(|v| v == "2"),
            "once on version 2, never back to 1"
        );
        total += versions.len();
    }
    assert!(total >= 200, "only {total} requests were made");
}
