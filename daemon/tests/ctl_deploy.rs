//! dsmilctl's side of a deploy, with the real binaries: the progress lines
//! (each stage with its own duration, no escape codes into a pipe), Ctrl-C
//! before and after the upload, a daemon that dies mid-upload, undeploy of
//! a models.d model, and reload's pending restart-only changes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// `dsmilctl deploy FILE --name NAME --allow-fp32` started, not waited for.
fn spawn_deploy(daemon: &Daemon, file: &str, name: &str) -> Child {
    Command::new(ctl_binary())
        .arg("--socket")
        .arg(daemon.socket())
        .args(["deploy", file, "--name", name, "--allow-fp32", "--device", "47"])
        .env_remove("DSMIL_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until `check` holds, re-checking on each change inotify reports
/// in `dir` (never on a timer); panics after 60 s without one.
fn until_in(dir: &std::path::Path, what: &str, mut check: impl FnMut() -> bool) {
    use notify::{RecursiveMode, Watcher};
    std::fs::create_dir_all(dir).unwrap();
    let (tx, changes) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .unwrap();
    watcher.watch(dir, RecursiveMode::NonRecursive).unwrap();
    // Checked after the watch is set, so no change can slip between.
    while !check() {
        changes
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }
}

/// A file large enough that its upload takes a while (its bytes are not a
/// model: nothing gets past the upload anyway).
fn big_upload(daemon: &Daemon) -> String {
    let path = daemon.dir.path().join("big.onnx");
    std::fs::write(&path, vec![7u8; 384 << 20]).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Where the daemon stages uploads.
fn staging(daemon: &Daemon) -> std::path::PathBuf {
    daemon.state_dir().join("blobs").join("tmp")
}

/// The daemon's staged (partial) uploads.
fn staged_uploads(daemon: &Daemon) -> usize {
    std::fs::read_dir(staging(daemon)).map_or(0, |d| d.count())
}

/// The "(N ms)" at the end of the line that starts with `stage`.
fn stage_ms(stdout: &str, stage: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(stage))
        .unwrap_or_else(|| panic!("no {stage} line in:\n{stdout}"));
    let inner = line.rsplit_once('(').unwrap().1;
    inner
        .trim_end_matches(" ms)")
        .parse()
        .unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn each_progress_line_shows_its_own_stage_time_and_no_escape_codes_into_a_pipe() {
    let daemon = Daemon::start_with_env(
        tempfile::tempdir().unwrap(),
        &[],
        &[("FAILPOINTS", "stage-Validating=sleep(1500)")],
    );
    let out = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--allow-fp32",
        "--device",
        "47",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains('\x1b'), "escape codes into a pipe:\n{stdout:?}");
    // The 1.5 s is spent in Validating, and its line says so; the next
    // stage's line has its own, short time.
    assert!(stage_ms(&stdout, "Validating") >= 1500, "{stdout}");
    assert!(stage_ms(&stdout, "Quantizing") < 1500, "{stdout}");
    assert!(stage_ms(&stdout, "Uploaded") < 1500, "{stdout}");
    assert!(stdout.contains("deployed digits version 1"), "{stdout}");

    // --json: one JSON document, nothing else.
    let json = daemon.ctl_json(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "other",
        "--allow-fp32",
        "--device",
        "46",
    ]);
    assert_eq!(json["state"], "Active", "{json}");
}

#[test]
fn ctrl_c_after_the_upload_says_the_deploy_continues_and_it_does() {
    let daemon = Daemon::start_with_env(
        tempfile::tempdir().unwrap(),
        &[],
        &[("FAILPOINTS", "stage-Validating=sleep(3000)")],
    );
    let child = spawn_deploy(&daemon, SAMPLE_MODEL, "digits");
    // The upload is complete once the deployment is journaled (its
    // `deploy` event); the failpoint holds it in Validating meanwhile.
    daemon.wait_event("digits", "deploy", 0);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let status = out.status;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "{stderr}");
    let id = daemon.ctl_json(&["deployments", "--model", "digits"])["deployments"][0]["id"]
        .as_u64()
        .unwrap();
    for needle in [
        format!("deployment {id} of digits continues on dsmild"),
        format!("dsmilctl show {id}"),
        "dsmilctl events --model digits --follow".to_owned(),
        "dsmilctl undeploy digits".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in:\n{stderr}");
    }
    // The stage in progress ended its line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(interrupted after"), "{stdout}");
    // And the deploy went on without the client.
    daemon.wait_event("digits", "activate", 0);
    assert_eq!(daemon.deployment_states(Some("digits")), vec![(1, "Active".to_owned())]);
}

#[test]
fn ctrl_c_during_the_upload_deploys_nothing() {
    let daemon = Daemon::start();
    let file = big_upload(&daemon);
    let child = spawn_deploy(&daemon, &file, "big");
    until_in(&staging(&daemon), "the upload to start", || staged_uploads(&daemon) > 0);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let status = out.status;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted during the upload: nothing was deployed"),
        "{stderr}"
    );
    // dsmild dropped the partial upload and journaled nothing.
    until_in(&staging(&daemon), "the partial upload to be removed", || {
        staged_uploads(&daemon) == 0
    });
    assert!(daemon.deployment_states(Some("big")).is_empty());
    assert!(
        daemon.ctl_json(&["models"])["models"]
            .as_array()
            .is_none_or(|m| m.is_empty())
    );
}

#[test]
fn a_daemon_dying_mid_upload_is_reported_not_a_silent_sigpipe() {
    let daemon = Daemon::start();
    let file = big_upload(&daemon);
    let child = spawn_deploy(&daemon, &file, "big");
    until_in(&staging(&daemon), "the upload to start", || staged_uploads(&daemon) > 0);
    let _dir = daemon.kill9();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "killed by a signal or wrong code: {:?}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(
            "dsmild closed the connection during the upload (did it stop or restart? see journalctl -u dsmild)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("h2 protocol error"), "{stderr}");
}

#[test]
fn undeploy_of_a_manifest_model_is_refused_naming_the_manifest() {
    let (config_dir, config) = config_with(&[]);
    let models_d = config_dir.path().join("models.d");
    std::fs::create_dir_all(&models_d).unwrap();
    let manifest = models_d.join("digits.toml");
    std::fs::write(
        &manifest,
        format!("name = \"digits\"\nmodel = \"{SAMPLE_MODEL}\"\ndevice = 47\nallow_fp32 = true\n"),
    )
    .unwrap();
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &config]);
    daemon.wait_event("digits", "activate", 0);

    let out = daemon.ctl(&["undeploy", "digits"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");
    assert!(stderr.contains(&manifest.display().to_string()), "{stderr}");
    assert!(stderr.contains("Remove the manifest instead"), "{stderr}");
    assert_eq!(daemon.deployment_states(Some("digits")), vec![(1, "Active".to_owned())]);

    // A model no manifest names undeploys as before.
    daemon.deploy_sample(&["--name", "manual", "--device", "46"]);
    let out = daemon.ctl(&["undeploy", "manual"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn reload_shows_what_the_watcher_applied_and_pending_restart_changes_stay_in_status() {
    let (_config_dir, path) = config_with(&[]);
    let original = std::fs::read_to_string(&path).unwrap();
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &path]);
    assert!(
        daemon.ctl_json(&["status"])["pending_restart"]
            .as_array()
            .is_none_or(|p| p.is_empty())
    );

    // A restart-only change and a live one; the watcher applies the file.
    let changed = original
        .replacen("queue_capacity = 256", "queue_capacity = 128", 1)
        .replacen("memory_budget_gb = 40", "memory_budget_gb = 20", 1);
    std::fs::write(&path, &changed).unwrap();
    let applied = daemon.wait_event("", "config_reload", 0)["seq"].as_u64().unwrap();

    let out = daemon.ctl(&["reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("no change"), "{stdout}");
    assert!(stdout.contains("already in force since"), "{stdout}");
    assert!(stdout.contains("the config file changed"), "{stdout}");
    assert!(stdout.contains("layer 7 budget 40 → 20 GB"), "{stdout}");
    assert!(stdout.contains("pending restart: [serving]"), "{stdout}");

    let status = daemon.ctl_json(&["status"]);
    assert_eq!(status["pending_restart"], serde_json::json!(["serving"]), "{status}");
    let out = daemon.ctl(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending restart: [serving]"));

    // Put back: nothing waits for a restart any more.
    // The watcher may reload more than once per write (one event each):
    // wait, event by event, for the one that applies the original.
    std::fs::write(&path, &original).unwrap();
    let mut after = applied;
    loop {
        after = daemon.wait_event("", "config_reload", after)["seq"].as_u64().unwrap();
        let pending = daemon.ctl_json(&["status"])["pending_restart"].clone();
        if pending.as_array().is_none_or(|p| p.is_empty()) {
            break;
        }
    }
}

#[test]
fn a_failed_attempt_keeps_its_version_number_and_is_shown_as_failed() {
    let daemon = Daemon::start_with_env(
        tempfile::tempdir().unwrap(),
        &[],
        &[("FAILPOINTS", "stage-Validating=1*return(boom)")],
    );
    let failed = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--allow-fp32",
        "--device",
        "47",
    ]);
    assert!(!failed.status.success());
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(stdout.contains("(failed after"), "{stdout}");
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    // Numbers are never reused: the failed attempt stays version 1.
    assert_eq!(deployed["version"], 2, "{deployed}");

    let out = daemon.ctl(&["models"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("2 (1 failed: v1)"), "{table}");
    let first = daemon.ctl_json(&["deployments", "--model", "digits"])["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["version"] == 1)
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let out = daemon.ctl(&["show", &first.to_string()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("a failed attempt: version 1 never served"), "{shown}");
}
