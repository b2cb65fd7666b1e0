//! dsmilctl as an operator uses it, against a real dsmild: the event log
//! newest first (--limit, --since, --follow from now, unknown kinds
//! refused), deployments named by id or MODEL[:VERSION], the list filters,
//! `report`'s explanations, `top` into a pipe, `infer` refusing a lossy
//! float64 file, the completions and man pages made from its flags, and a
//! peer that hangs up getting an error message, not a silent SIGPIPE.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// Parses a failing dsmilctl's stderr; panics if it succeeded.
fn refused(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.ctl(args);
    assert!(
        !out.status.success(),
        "dsmilctl {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn seqs(listed: &serde_json::Value) -> Vec<u64> {
    listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// A dsmilctl that keeps running (--follow, top), its stdout read line by
/// line on a thread; killed when dropped.
struct Running {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(daemon: &Daemon, args: &[&str]) -> Running {
        let mut child = Command::new(ctl_binary())
            .arg("--socket")
            .arg(daemon.socket())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from dsmilctl within 60 s")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_are_newest_first_filtered_and_followed_from_now() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    daemon.deploy_sample(&["--name", "other", "--device", "48"]);
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);

    let all = daemon.ctl_json(&["events"]);
    let all_seqs = seqs(&all);
    assert!(all_seqs.len() >= 6, "{all}");
    assert!(all_seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {all_seqs:?}");

    // --limit N: the newest N, not the oldest.
    let two = daemon.ctl_json(&["events", "--limit", "2"]);
    assert_eq!(seqs(&two), all_seqs[..2].to_vec());
    let digits = daemon.ctl_json(&["events", "--model", "digits", "--kind", "activate", "--limit", "1"]);
    assert_eq!(digits["events"][0]["version"], 2, "{digits}");

    // --after stays a forward cursor (oldest first), as scripts page with it.
    let after = daemon.ctl_json(&["events", "--after", "1", "--limit", "2"]);
    assert_eq!(seqs(&after), vec![2, 3]);

    // --since: a duration or an RFC 3339 time.
    assert_eq!(seqs(&daemon.ctl_json(&["events", "--since", "1h"])), all_seqs);
    assert!(seqs(&daemon.ctl_json(&["events", "--since", "0s"])).is_empty());
    let epoch = daemon.ctl_json(&["events", "--since", "1970-01-01T01:00:00+01:00"]);
    assert_eq!(seqs(&epoch), all_seqs);
    let bad = refused(&daemon, &["events", "--since", "yesterday"]);
    assert!(bad.contains("RFC 3339"), "{bad}");

    // An unknown kind is refused with the kinds, by dsmilctl and by dsmild.
    let bad = refused(&daemon, &["events", "--kind", "bogus"]);
    assert!(bad.contains("activate") && bad.contains("drift_alert"), "{bad}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime
        .block_on(async {
            daemon
                .control()
                .await
                .events(dsmil_proto::control::EventsRequest {
                    kind: "bogus".into(),
                    ..Default::default()
                })
                .await
        })
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("rollback"), "{}", status.message());

    // --follow from now: with --limit 1 the newest event first (no replay
    // of the rest), then only what happens next, each line shaped as an
    // element of the list.
    let follow = Running::spawn(&daemon, &["--json", "events", "--follow", "--limit", "1"]);
    let newest: serde_json::Value = serde_json::from_str(&follow.next_line()).unwrap();
    assert_eq!(newest, all["events"][0]);
    daemon.ctl_json(&["undeploy", "other"]);
    let next: serde_json::Value = serde_json::from_str(&follow.next_line()).unwrap();
    assert!(next["seq"].as_u64().unwrap() > all_seqs[0], "{next}");
    assert_eq!(next["model"], "other", "{next}");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&next), keys(&newest));
}

#[test]
fn deployments_are_named_by_id_or_model_and_lists_filter() {
    let daemon = Daemon::start();
    let v1 = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let v2 = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let (id1, id2) = (v1["id"].as_u64().unwrap(), v2["id"].as_u64().unwrap());

    // models shows the serving deployment's id; show takes it, the name,
    // or NAME:VERSION.
    let models = daemon.ctl_json(&["models"]);
    assert_eq!(models["models"][0]["active_deployment"], id2, "{models}");
    assert!(String::from_utf8_lossy(&daemon.ctl(&["models"]).stdout).contains("DEPLOYMENT"));
    assert_eq!(daemon.ctl_json(&["show", &id1.to_string()])["id"], id1);
    assert_eq!(daemon.ctl_json(&["show", "digits"])["id"], id2);
    assert_eq!(daemon.ctl_json(&["show", "digits:1"])["id"], id1);
    assert_eq!(daemon.ctl_json(&["show", "digits@2"])["id"], id2);
    let missing = refused(&daemon, &["show", "digits:7"]);
    assert!(missing.contains("deployed versions: 1, 2"), "{missing}");
    let missing = refused(&daemon, &["show", "nosuch"]);
    assert!(missing.contains("no deployments"), "{missing}");

    // rollback takes the model's name as its argument too.
    daemon.ctl_json(&["rollback", "digits"]);
    assert_eq!(daemon.ctl_json(&["show", "digits"])["version"], 1);

    // deployments --state, any case; an unknown state lists the states.
    let rolled = daemon.ctl_json(&["deployments", "--state", "rolledback"]);
    let rolled = rolled["deployments"].as_array().unwrap();
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0]["id"], id2);
    let bad = refused(&daemon, &["deployments", "--state", "Sleeping"]);
    assert!(bad.contains("HealthChecking") && bad.contains("Retired"), "{bad}");

    // devices --layer: that layer's devices only.
    let layer = v1["layer"].as_u64().unwrap();
    let devices = daemon.ctl_json(&["devices", "--layer", &layer.to_string()]);
    let devices = devices["devices"].as_array().unwrap();
    assert!(!devices.is_empty() && devices.len() < 104);
    assert!(devices.iter().all(|d| d["layer"] == layer));
    assert!(devices.iter().any(|d| d["id"] == 47));
    let bad = refused(&daemon, &["devices", "--layer", "99"]);
    assert!(bad.contains("no devices in layer 99"), "{bad}");
}

#[test]
fn report_explains_missing_and_failed_versions() {
    let daemon = Daemon::start();
    daemon.deploy(&common::onnx::mlp(4, 2), &["--name", "m", "--device", "10"]);
    assert!(
        daemon
            .try_deploy(&common::onnx::non_finite(), &["--name", "m", "--device", "10"])
            .is_err()
    );

    let fp32 = refused(&daemon, &["report", "m:1"]);
    assert!(fp32.contains("NotFound") && fp32.contains("--allow-fp32"), "{fp32}");
    let failed = refused(&daemon, &["report", "m:2"]);
    assert!(
        failed.contains("version 2 has no quantization report: its deploy failed at Validating")
            && failed.contains("dry run"),
        "{failed}"
    );
    let missing = refused(&daemon, &["report", "m:9"]);
    assert!(missing.contains("has no version 9 (its versions: 1, 2)"), "{missing}");
    let unknown = refused(&daemon, &["report", "nosuch"]);
    assert!(unknown.contains("has no versions"), "{unknown}");
}

#[test]
fn top_into_a_pipe_writes_no_screen_codes() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let mut top = Command::new(ctl_binary())
        .arg("--socket")
        .arg(daemon.socket())
        .args(["top", "--every", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = top.stdout.take().unwrap();
    // Two samples, then stop it.
    let (send, got) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while text.matches("dsmild: RSS").count() < 2 {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        let _ = send.send(text);
    });
    let text = got.recv_timeout(Duration::from_secs(60)).expect("two samples");
    let _ = top.kill();
    let _ = top.wait();
    assert_eq!(text.matches("dsmild: RSS").count(), 2, "{text}");
    assert!(!text.contains('\x1b'), "escape codes in a pipe: {text:?}");
    assert!(text.contains("digits"), "{text}");
}

/// A version 1.0 .npy file of little-endian float64 values.
fn npy_f64(shape: &[usize], values: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    // Magic (6) + version (2) + length (2) + header + '\n', a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

#[test]
fn infer_refuses_float64_values_that_float32_would_change() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let dir = tempfile::tempdir().unwrap();

    let lossy = dir.path().join("lossy.npy");
    std::fs::write(&lossy, npy_f64(&[1, 64], &[0.1; 64])).unwrap();
    let err = refused(&daemon, &["infer", "digits", "--input", lossy.to_str().unwrap()]);
    assert!(
        err.contains("float64") && err.contains("FP32") && err.contains("astype(np.float32)"),
        "{err}"
    );

    // Values float32 holds exactly are sent: nothing the model sees changes.
    let exact = dir.path().join("exact.npy");
    std::fs::write(&exact, npy_f64(&[1, 64], &[0.5; 64])).unwrap();
    let answer = daemon.ctl_json(&["infer", "digits", "--input", exact.to_str().unwrap()]);
    assert_eq!(answer["outputs"][0]["shape"], serde_json::json!([1, 10]), "{answer}");
}

#[test]
fn completions_and_man_pages_are_generated_from_the_flags() {
    let ctl = |args: &[&str]| {
        let out = Command::new(ctl_binary()).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = ctl(&["completions", "bash"]);
    assert!(
        bash.contains("complete -F _dsmilctl") && bash.contains("--follow"),
        "{bash}"
    );
    let zsh = ctl(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef dsmilctl") && zsh.contains("--since"), "{zsh}");
    let fish = ctl(&["completions", "fish"]);
    assert!(
        fish.contains("complete -c dsmilctl") && fish.contains("RolledBack"),
        "{fish}"
    );

    let page = ctl(&["man"]);
    assert!(page.contains(".TH dsmilctl 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let written = ctl(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(written.lines().count() > 20, "{written}");
    let events = std::fs::read_to_string(dir.path().join("dsmilctl-events.1")).unwrap();
    assert!(events.contains(".TH dsmilctl-events 1"), "{events}");
    assert!(events.contains("newest first"), "{events}");
    // Rendered by man(1) where it is installed.
    if let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("dsmilctl-events.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("--follow"), "{text}");
    }
}

#[test]
fn prune_removes_what_nothing_serves_or_rolls_back_to() {
    let daemon = Daemon::start();
    let args = ["--name", "m", "--device", "10"];
    let v1 = daemon.deploy(&common::onnx::mlp(4, 1), &args);
    let v2 = daemon.deploy(&common::onnx::mlp(5, 1), &args);
    let v3 = daemon.deploy(&common::onnx::mlp(6, 1), &args);
    assert!(daemon.try_deploy(&common::onnx::non_finite(), &args).is_err());
    let blob = |d: &serde_json::Value| {
        daemon
            .state_dir()
            .join("blobs/sha256")
            .join(d["sha256"].as_str().unwrap())
    };
    let versions = |listed: &serde_json::Value| -> Vec<(String, u64)> {
        listed["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["model"].as_str().unwrap().to_owned(), v["version"].as_u64().unwrap()))
            .collect()
    };
    let m = |v: u64| ("m".to_owned(), v);

    // Blobs younger than the grace period stay, and the dry run says so.
    let dry = daemon.ctl_json(&["prune", "--dry-run"]);
    assert_eq!(versions(&dry), vec![m(1), m(4)], "{dry}");
    assert!(dry["blobs"].as_array().unwrap().is_empty(), "{dry}");
    assert!(dry["notes"].to_string().contains("min ago"), "{dry}");

    // Aged, the blobs of v1 and of the failed v4 would go; the serving v3's
    // and the rollback target v2's stay.
    let listed = daemon.ctl_json(&["deployments", "--model", "m", "--state", "Failed"]);
    let v4 = listed["deployments"][0].clone();
    assert_eq!(v4["version"], 4, "{listed}");
    let touched = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .args(
            std::fs::read_dir(daemon.state_dir().join("blobs/sha256"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .status()
        .unwrap();
    assert!(touched.success());
    let dry = daemon.ctl_json(&["prune", "--dry-run"]);
    let doomed: Vec<&str> = dry["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["sha256"].as_str().unwrap())
        .collect();
    assert!(doomed.contains(&v1["sha256"].as_str().unwrap()), "{dry}");
    assert!(doomed.contains(&v4["sha256"].as_str().unwrap()), "{dry}");
    assert!(!doomed.contains(&v2["sha256"].as_str().unwrap()), "{dry}");
    assert!(!doomed.contains(&v3["sha256"].as_str().unwrap()), "{dry}");
    assert!(blob(&v1).exists(), "a dry run removes nothing");
    assert_eq!(daemon.deployment_states(Some("m")).len(), 4);

    let done = daemon.ctl_json(&["prune"]);
    assert_eq!(versions(&done), vec![m(1), m(4)], "{done}");
    assert!(!blob(&v1).exists() && !blob(&v4).exists());
    assert!(blob(&v2).exists() && blob(&v3).exists());
    assert_eq!(
        daemon.deployment_states(Some("m")),
        [(2, "Retired".to_owned()), (3, "Active".to_owned())]
    );
    let human = String::from_utf8_lossy(&daemon.ctl(&["prune"]).stdout).into_owned();
    assert!(human.contains("nothing to prune"), "{human}");

    // The rollback target still works, and version numbers are not reused.
    daemon.ctl_json(&["rollback", "m"]);
    assert_eq!(daemon.ctl_json(&["show", "m"])["version"], 2);
    let v5 = daemon.deploy(&common::onnx::mlp(7, 1), &args);
    assert_eq!(v5["version"], 5);
}

/// dsmilctl gives SIGPIPE its default action (so `dsmilctl ... | head`
/// stops quietly); a write to a socket the peer has closed (a daemon that
/// died, a TLS handshake refused) must fail with a message, not kill it
/// with signal 13. h2 and rustls write TCP with writev, which raised it.
#[test]
fn a_peer_that_hangs_up_gets_an_error_message_not_a_silent_sigpipe() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let socket = dir.path().join("hangs-up.sock");
    let unix = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Each connection is closed at once with what the client sent unread,
    // so the kernel answers the client's next segment with a reset.
    std::thread::spawn(move || {
        for conn in tcp.incoming() {
            drop(conn);
        }
    });
    std::thread::spawn(move || {
        for conn in unix.incoming() {
            drop(conn);
        }
    });
    let socket = socket.to_str().unwrap();
    for round in 0..20 {
        for (how, args) in [
            ("tcp", ["--addr", addr.as_str(), "status"]),
            ("unix", ["--socket", socket, "status"]),
        ] {
            let out = Command::new(ctl_binary())
                .args(args)
                .env_remove("DSMIL_SOCKET")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.signal(),
                None,
                "{how}, round {round}: killed by a signal; stderr: {err}"
            );
            assert_eq!(out.status.code(), Some(1), "{how}, round {round}: {err}");
            assert!(
                err.starts_with("dsmilctl: "),
                "{how}, round {round}: says what happened: {err:?}"
            );
        }
    }
}
