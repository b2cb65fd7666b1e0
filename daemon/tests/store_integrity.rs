//! The store under damage: a blob whose bytes went bad, a journal removed or
//! replaced while the daemon runs. Each case ends with a restart, to show
//! what a restart would have lost.

mod common;

use common::*;
use dsmil_proto::inference as pb;
use tonic_health::pb::health_check_response::ServingStatus;

async fn serving_version(daemon: &Daemon) -> String {
    let mut client = daemon.inference().await;
    client
        .model_infer(digits_request(1, 3.0))
        .await
        .unwrap()
        .into_inner()
        .model_version
}

async fn server_ready(daemon: &Daemon) -> bool {
    let mut client = daemon.inference().await;
    client
        .server_ready(pb::ServerReadyRequest {})
        .await
        .unwrap()
        .into_inner()
        .ready
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_blob_is_reported_as_a_blob_and_healed_by_deploying_the_model_again() {
    let daemon = Daemon::start();
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let sha = deployed["sha256"].as_str().unwrap().to_owned();
    let dir = daemon.stop();
    let blob = dir.path().join("state/blobs/sha256").join(&sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();

    let mut daemon = Daemon::spawn(dir, &[], &[]);
    let ready = daemon.wait_for("READY=1");
    assert!(ready.contains("NOT READY: 1 failed to restore"), "{ready}");
    let failed = daemon.wait_event("digits", "restore_failed", 0);
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.starts_with("blob "), "{detail}");
    assert!(detail.contains(&blob.display().to_string()), "{detail}");
    assert!(!detail.contains("journal"), "{detail}");

    // The same file again: the bad bytes are replaced, version 2 serves and
    // the server is ready, since everything active in the journal serves.
    let redeployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(redeployed["version"], 2);
    assert_eq!(redeployed["sha256"], sha.as_str());
    assert_eq!(
        std::fs::read(&blob).unwrap(),
        std::fs::read(SAMPLE_MODEL).unwrap(),
        "the blob holds the upload's bytes again"
    );
    assert_eq!(serving_version(&daemon).await, "2");
    assert!(server_ready(&daemon).await);
    let status = daemon.ctl_json(&["status"]);
    assert_eq!(status["ready"], true, "{status}");
    daemon.wait_for("; ready");
    assert_eq!(daemon.health_check("").await, ServingStatus::Serving as i32);

    // A restart restores version 2 and retires the deployment that failed
    // to restore, which version 2 superseded: ready, nothing fails again.
    let dir = daemon.stop();
    let daemon = Daemon::start_in(dir, &[]);
    let ready = daemon.notices.iter().find(|n| n.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=serving 1 deployment(s)"), "{ready}");
    assert!(!ready.contains("NOT READY"), "{ready}");
    assert_eq!(serving_version(&daemon).await, "2");
    assert!(server_ready(&daemon).await);
    assert_eq!(daemon.health_check("").await, ServingStatus::Serving as i32);
    assert_eq!(
        daemon.deployment_states(None),
        [(1, "Retired".to_owned()), (2, "Active".to_owned())]
    );
    let retired = daemon.wait_event("digits", "retire", 0);
    assert!(retired["detail"].as_str().unwrap().contains("superseded"), "{retired}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_removed_while_running_acknowledges_nothing_more_and_a_restart_refuses_to_forget() {
    let mut daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let journal = daemon.state_dir().join("journal");
    std::fs::remove_dir_all(&journal).unwrap();

    // The deploy's journal write fails its check: not acknowledged.
    let err = daemon
        .try_deploy(
            &std::fs::read(SAMPLE_MODEL).unwrap(),
            &["--name", "digits", "--device", "47"],
        )
        .expect_err("a deploy the journal cannot record must fail");
    assert!(err.contains(&journal.display().to_string()), "{err}");
    assert!(err.contains("its directory was removed"), "{err}");
    let undeploy = daemon.ctl(&["undeploy", "digits"]);
    assert!(!undeploy.status.success(), "an undeploy is refused too");
    assert!(
        String::from_utf8_lossy(&undeploy.stderr).contains("its directory was removed"),
        "{}",
        String::from_utf8_lossy(&undeploy.stderr)
    );

    // Not ready, and says why; what was loaded keeps serving.
    let status = daemon.wait_for("NOT READY: journal");
    assert!(status.contains(&journal.display().to_string()), "{status}");
    assert!(!server_ready(&daemon).await);
    assert_eq!(daemon.health_check("").await, ServingStatus::NotServing as i32);
    assert_eq!(serving_version(&daemon).await, "1");

    // A restart does not start afresh on an empty journal as if nothing
    // had been deployed: it refuses, and says what was lost.
    let dir = daemon.stop();
    let mut daemon = Daemon::spawn(dir, &[], &[]);
    let exit = daemon.wait_exit();
    assert!(!exit.success(), "dsmild started without its journal");
    let log = daemon.log();
    assert!(log.contains("the journal was lost"), "{log}");
    assert!(log.contains(&journal.display().to_string()), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_replaced_while_running_is_noticed_without_a_write_and_loses_nothing() {
    let mut daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let journal = daemon.state_dir().join("journal");
    let moved = daemon.state_dir().join("journal.moved");
    std::fs::rename(&journal, &moved).unwrap();
    std::fs::create_dir(&journal).unwrap();

    // The periodic check notices with no write to trigger it.
    let status = daemon.wait_for("NOT READY: journal");
    assert!(status.contains("its directory was replaced"), "{status}");
    assert!(!server_ready(&daemon).await);
    let undeploy = daemon.ctl(&["undeploy", "digits"]);
    assert!(
        !undeploy.status.success(),
        "an undeploy the journal cannot record must fail"
    );
    assert_eq!(serving_version(&daemon).await, "1");

    // The journal put back: the deployment the refused undeploy would have
    // retired is restored.
    let dir = daemon.stop();
    let state = dir.path().join("state");
    std::fs::remove_dir(state.join("journal")).unwrap();
    std::fs::rename(state.join("journal.moved"), state.join("journal")).unwrap();
    let daemon = Daemon::start_in(dir, &[]);
    assert!(server_ready(&daemon).await);
    assert_eq!(serving_version(&daemon).await, "1");
}
