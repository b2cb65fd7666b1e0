//! A failed deploy keeps its reason: the message the client saw is on the
//! deployment's Failed state change (`dsmilctl show`), on its `fail` event
//! (`dsmilctl events --kind fail`) and in journald, for a deploy from
//! `dsmilctl` and for one from a `models.d` manifest, which has no client to
//! tell.

mod common;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::*;

/// Blank images: calibrating on them squeezes every range to almost
/// nothing, and the accuracy gate refuses the INT8 model.
fn blank_calibration(dir: &Path) -> String {
    let path = dir.join("blank.npz");
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
    w.add_array("pixels", &ndarray::Array2::<f32>::zeros((20, 64))).unwrap();
    w.finish().unwrap();
    path.to_str().unwrap().to_owned()
}

/// The one deployment of `model`: its id, and the detail of its Failed
/// state change as `dsmilctl show ID --json` gives it.
fn failed_detail(daemon: &Daemon, model: &str) -> (u64, String) {
    let listed = daemon.ctl_json(&["deployments", "--model", model]);
    let id = listed["deployments"][0]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("a deployment of {model}: {listed}"));
    let shown = daemon.ctl_json(&["show", &id.to_string()]);
    assert_eq!(shown["state"], "Failed", "{shown}");
    let failed = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == "Failed")
        .unwrap_or_else(|| panic!("no Failed state change: {shown}"));
    (id, failed["detail"].as_str().unwrap().to_owned())
}

/// The `fail` event of deployment `id`, from `dsmilctl events --kind fail`.
fn fail_event(daemon: &Daemon, id: u64) -> serde_json::Value {
    let events = daemon.ctl_json(&["events", "--kind", "fail"]);
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["deployment_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no fail event for deployment {id}: {events}"))
}

/// Entries of a fake journal socket, decoded (the native protocol's
/// `KEY=value` lines; the audit messages here have no newline).
fn fake_journal(path: &Path) -> Receiver<HashMap<String, String>> {
    let socket = UnixDatagram::bind(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = socket.recv(&mut buf) {
            let fields = String::from_utf8_lossy(&buf[..n])
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            if tx.send(fields).is_err() {
                return;
            }
        }
    });
    rx
}

fn journal_entry(entries: &Receiver<HashMap<String, String>>, event: &str) -> HashMap<String, String> {
    while let Ok(fields) = entries.recv_timeout(Duration::from_secs(60)) {
        if fields.get("EVENT").is_some_and(|e| e == event) {
            return fields;
        }
    }
    panic!("no {event} entry in the journal");
}

#[test]
fn a_refused_quantization_keeps_its_reason_in_show_events_and_journald() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("journal.socket");
    let journal = fake_journal(&socket);
    let (_config_dir, config) = config_with(&[
        ("format = \"auto\"", "format = \"journal\""),
        (
            "journal_socket = \"/run/systemd/journal/socket\"",
            &format!("journal_socket = \"{}\"", socket.display()),
        ),
    ]);
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &config]);
    let blank = blank_calibration(dir.path());
    let out = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--device",
        "47",
        "--calib",
        &blank,
        "--val",
        SAMPLE_TEST_SET,
    ]);
    assert!(!out.status.success());
    let seen = String::from_utf8_lossy(&out.stderr);
    assert!(seen.contains("INT8 accuracy gate failed"), "{seen}");

    let (id, detail) = failed_detail(&daemon, "digits");
    assert!(
        detail.contains("INT8 accuracy gate failed") && detail.contains("is below") && detail.contains("--method"),
        "the Failed state change keeps the whole reason, not only the stage: {detail:?}"
    );
    assert!(
        seen.contains(&detail),
        "what is recorded is what the client saw:\n{detail}\n{seen}"
    );

    let event = fail_event(&daemon, id);
    assert_eq!(event["detail"], detail, "{event}");
    assert_eq!(event["model"], "digits");

    let entry = journal_entry(&journal, "fail");
    assert_eq!(entry["MODEL"], "digits");
    assert!(entry["MESSAGE"].contains(&detail), "journald: {entry:?}");
}

#[test]
fn a_manifest_deploy_that_fails_keeps_its_reason() {
    let (config_dir, config) = config_with(&[]);
    let models_d = config_dir.path().join("models.d");
    std::fs::create_dir_all(&models_d).unwrap();
    let blank = blank_calibration(config_dir.path());
    std::fs::write(
        models_d.join("digits.toml"),
        format!("name = \"digits\"\nmodel = \"{SAMPLE_MODEL}\"\ndevice = 47\ncalibration = \"{blank}\"\nvalidation = \"{SAMPLE_TEST_SET}\"\n"),
    )
    .unwrap();
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &config]);

    let refused = daemon.wait_event("", "manifest_refused", 0);
    let why = refused["detail"].as_str().unwrap();
    assert!(
        why.contains("digits.toml") && why.contains("INT8 accuracy gate failed") && why.contains("is below"),
        "the manifest's refusal says why: {refused}"
    );
    let (id, detail) = failed_detail(&daemon, "digits");
    assert!(
        detail.contains("INT8 accuracy gate failed") && detail.contains("is below"),
        "{detail:?}"
    );
    assert!(why.contains(&detail), "one reason, told the same way:\n{why}\n{detail}");
    assert_eq!(fail_event(&daemon, id)["detail"], detail);
}

#[test]
fn a_model_that_answers_nan_keeps_its_reason() {
    // Finite on synthetic inputs, NaN on real pixels (above 0.5): refused
    // when validated on the deploy's data, before quantizing.
    let daemon = Daemon::start();
    let err = daemon
        .try_deploy(
            &common::onnx::nan_above(0.5),
            &["--name", "nan", "--device", "47", "--calib", SAMPLE_TEST_SET],
        )
        .expect_err("a model answering NaN is refused");
    let (id, detail) = failed_detail(&daemon, "nan");
    assert!(
        detail.contains("sample 0") && detail.contains("NaN or infinite"),
        "which sample, which output, what: {detail:?}"
    );
    assert!(
        err.contains(&detail),
        "what is recorded is what the client saw:\n{detail}\n{err}"
    );
    assert_eq!(fail_event(&daemon, id)["detail"], detail);
}
