//! A version switch under continuous load: no request fails, and each
//! client sees the old version, then only the new one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_requests_fail_during_a_version_switch() {
    const CLIENTS: usize = 4;
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let switched = Arc::new(AtomicBool::new(false));
    // The switch starts only once every client has been answered once, so
    // that each one has something to say about the old version.
    let answered = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = daemon.inference().await;
        let switched = Arc::clone(&switched);
        let answered = Arc::clone(&answered);
        clients.push(tokio::spawn(async move {
            let request = digits_request(1, 4.0);
            let (mut versions, mut failures, mut after_switch) = (Vec::new(), Vec::new(), 0);
            // Bounded: at most 20,000 requests per client.
            for i in 0..20_000 {
                // Read before sending: such a request must find version 2.
                let sent_after_switch = switched.load(Ordering::Acquire);
                match client.model_infer(request.clone()).await {
                    Ok(r) => versions.push((r.into_inner().model_version, sent_after_switch)),
                    Err(status) => failures.push(status.to_string()),
                }
                if i == 0 {
                    answered.wait().await;
                }
                if sent_after_switch {
                    after_switch += 1;
                    if after_switch >= 50 {
                        break;
                    }
                }
            }
            (versions, failures)
        }));
    }
    answered.wait().await;
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
            versions.first().map(|(v, _)| v.as_str()),
            Some("1"),
            "the client starts on the old version"
        );
        assert_eq!(
            versions.last().map(|(v, _)| v.as_str()),
            Some("2"),
            "the client ends on the new version"
        );
        let first_new = versions.iter().position(|(v, _)| v == "2").unwrap();
        assert!(
            versions[..first_new].iter().all(|(v, _)| v == "1"),
            "only version 1 before the first answer from version 2"
        );
        assert!(
            versions[first_new..].iter().all(|(v, _)| v == "2"),
            "once on version 2, never back to 1"
        );
        let sent_after = versions.iter().filter(|(_, after)| *after).count();
        assert!(sent_after >= 50, "only {sent_after} requests after the switch");
        assert!(
            versions.iter().filter(|(_, after)| *after).all(|(v, _)| v == "2"),
            "every request sent after the deploy returned is on version 2"
        );
        total += versions.len();
    }
    assert!(total >= 200, "only {total} requests were made");
}
