//! Who may do what, on a real dsmild: callers under other uids (dsmilctl run
//! through `setpriv`) are allowed and denied as the `[access]` rules say, the
//! socket is 0660 with its configured group although dsmild starts under
//! umask 077, and every denial and change is an event naming its principal.
//!
//! Needs root (to start clients as other uids) and util-linux's setpriv;
//! skipped, with a line saying so, without them.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};

use common::{Daemon, SAMPLE_MODEL, ctl_binary};

/// The socket's group in these tests, and the principals' uids.
const SOCKET_GID: u32 = 4321;
const VIEWER: u32 = 1001; // "watch": viewer, clearance 5
const CLIENT: u32 = 1002; // "apps": client, clearance 5
const OPERATOR: u32 = 1003; // "ops": operator, clearance 7
const UNMAPPED: u32 = 1004;
const GROUP_MEMBER: u32 = 1005; // in gid 4322, which maps to "team": client, clearance 9
const TEAM_GID: u32 = 4322;

const PRINCIPALS: &str = r#"principals = [
  { name = "watch", users = [1001], role = "viewer", clearance = 5 },
  { name = "apps", users = [1002], role = "client", clearance = 5 },
  { name = "ops", users = [1003], role = "operator", clearance = 7 },
  { name = "team", groups = [4322], role = "client", clearance = 9 },
]"#;

unsafe extern "C" {
    /// libc's umask(2): std has no wrapper, and the dev-dependencies no libc
    /// crate. Process-wide, so every daemon this file starts inherits it.
    safe fn umask(mask: u32) -> u32;
}

fn can_run() -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !(root && setpriv) {
        eprintln!("skipped: needs root and setpriv (util-linux) to run clients as other uids");
    }
    root && setpriv
}

/// A daemon with the test principals, started under umask 077, its
/// directory open to the other uids (the socket's own mode is the test).
fn start() -> Daemon {
    umask(0o077);
    let (dir, config) = common::config_with(&[
        ("socket_group = \"dsmil\"", "socket_group = 4321"),
        ("principals = []", PRINCIPALS),
    ]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    // A model file every uid can read.
    let model = daemon.dir.path().join("model.onnx");
    std::fs::copy(SAMPLE_MODEL, &model).unwrap();
    std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o644)).unwrap();
    daemon
}

/// dsmilctl as `uid` (primary group `gid`, plus the socket's group so it
/// can connect).
fn ctl_as(daemon: &Daemon, uid: u32, gid: u32, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg(format!("--groups={SOCKET_GID}"))
        .arg(ctl_binary())
        .arg("--socket")
        .arg(daemon.socket())
        .args(args)
        .env_remove("DSMIL_ADDR")
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Asserts the call failed with `code` (as dsmilctl prints it) and a message
/// containing each of `words`.
fn refused(out: &Output, code: &str, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected {code}, it succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains(code), "expected {code}: {err}");
    for w in words {
        assert!(err.contains(w), "expected {w:?} in: {err}");
    }
}

fn model_path(daemon: &Daemon) -> String {
    daemon.dir.path().join("model.onnx").to_str().unwrap().to_owned()
}

fn names(listed: &serde_json::Value) -> Vec<String> {
    listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_socket_is_0660_with_its_group_under_umask_077() {
    if !can_run() {
        return;
    }
    let daemon = start();
    let meta = std::fs::metadata(daemon.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "mode {:o}", meta.mode());
    assert_eq!(meta.gid(), SOCKET_GID);
    // A member of the group who is no principal connects, and is told who
    // it is and why it is refused.
    let out = ctl_as(&daemon, UNMAPPED, UNMAPPED, &["status"]);
    refused(&out, "Unauthenticated", &["uid 1004", "not a known principal"]);
}

#[test]
fn a_missing_socket_group_falls_back_to_the_daemons_and_says_so() {
    if !can_run() {
        return;
    }
    umask(0o077);
    let (dir, config) = common::config_with(&[("socket_group = \"dsmil\"", "socket_group = \"no-such-group-here\"")]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    let meta = std::fs::metadata(daemon.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert!(
        daemon.log().contains("the socket keeps the daemon's own group"),
        "{}",
        daemon.log()
    );
}

#[test]
fn roles_and_clearances_allow_and_deny_every_call() {
    if !can_run() {
        return;
    }
    let daemon = start();
    let model = model_path(&daemon);
    // Root is admin at 9: a layer-5 and a layer-7 model.
    daemon.deploy_sample(&["--name", "five", "--layer", "5"]);
    daemon.deploy_sample(&["--name", "seven", "--layer", "7"]);
    let deploy_args = |name: &'static str, layer: &'static str| {
        vec![
            "--json",
            "deploy",
            model.as_str(),
            "--allow-fp32",
            "--name",
            name,
            "--layer",
            layer,
        ]
    };

    // Viewer at 5: lists what layer 5 covers, never layer 7; changes nothing.
    let listed = ok(&ctl_as(&daemon, VIEWER, VIEWER, &["--json", "models"]), "viewer models");
    assert_eq!(names(&listed), vec!["five"]);
    let deployments = ok(
        &ctl_as(&daemon, VIEWER, VIEWER, &["--json", "deployments"]),
        "viewer deployments",
    );
    assert!(
        deployments["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["model"] == "five")
    );
    let layers = ok(&ctl_as(&daemon, VIEWER, VIEWER, &["--json", "layers"]), "viewer layers");
    assert!(
        layers["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["id"].as_u64().unwrap() <= 5)
    );
    for args in [&["status"][..], &["devices"], &["top"], &["drift"], &["events"]] {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        ok(&ctl_as(&daemon, VIEWER, VIEWER, &all), &format!("viewer {args:?}"));
    }
    let out = ctl_as(&daemon, VIEWER, VIEWER, &deploy_args("v", "3"));
    refused(
        &out,
        "PermissionDenied",
        &["\"watch\"", "viewer", "needs operator and clearance 3"],
    );
    refused(
        &ctl_as(&daemon, VIEWER, VIEWER, &["undeploy", "five"]),
        "PermissionDenied",
        &["\"watch\"", "needs operator"],
    );
    refused(
        &ctl_as(&daemon, VIEWER, VIEWER, &["infer", "five", "--random"]),
        "PermissionDenied",
        &["\"watch\"", "needs client and clearance 5"],
    );

    refused(
        &ctl_as(&daemon, VIEWER, VIEWER, &["report", "seven"]),
        "PermissionDenied",
        &["\"watch\"", "the report of \"seven\" in layer 7"],
    );
    refused(
        &ctl_as(&daemon, VIEWER, VIEWER, &["drift", "seven"]),
        "PermissionDenied",
        &["\"watch\"", "layer 7"],
    );
    refused(
        &ctl_as(
            &daemon,
            VIEWER,
            VIEWER,
            &["feedback", "five", "--predicted", "1", "--actual", "1"],
        ),
        "PermissionDenied",
        &["\"watch\"", "needs operator and clearance 5"],
    );
    refused(
        &ctl_as(&daemon, VIEWER, VIEWER, &["reload"]),
        "PermissionDenied",
        &["\"watch\"", "needs admin"],
    );

    // Client at 5: infers on layer 5, not on layer 7; deploys nothing.
    ok(
        &ctl_as(&daemon, CLIENT, CLIENT, &["--json", "infer", "five", "--random"]),
        "client infer five",
    );
    refused(
        &ctl_as(&daemon, CLIENT, CLIENT, &["infer", "seven", "--random"]),
        "PermissionDenied",
        // dsmilctl reads the model's metadata first: the same clearance.
        &["\"apps\"", "clearance 5", "\"seven\" in layer 7", "and clearance 7"],
    );
    refused(
        &ctl_as(&daemon, CLIENT, CLIENT, &deploy_args("c", "3")),
        "PermissionDenied",
        &["\"apps\"", "needs operator"],
    );

    // A client by group, at 9.
    ok(
        &ctl_as(
            &daemon,
            GROUP_MEMBER,
            TEAM_GID,
            &["--json", "infer", "seven", "--random"],
        ),
        "group member infer seven",
    );

    // Operator at 7: deploys into 7, not 9; rolls back layer 7 but not 9;
    // cannot reload the configuration.
    ok(
        &ctl_as(&daemon, OPERATOR, OPERATOR, &deploy_args("opsmodel", "7")),
        "operator deploy layer 7",
    );
    refused(
        &ctl_as(&daemon, OPERATOR, OPERATOR, &deploy_args("topsecret", "9")),
        "PermissionDenied",
        &["\"ops\"", "clearance 7", "needs operator and clearance 9"],
    );
    refused(
        &ctl_as(&daemon, OPERATOR, OPERATOR, &["rollback", "--layer", "9"]),
        "PermissionDenied",
        &["\"ops\"", "layer 9"],
    );
    refused(
        &ctl_as(&daemon, OPERATOR, OPERATOR, &["reload"]),
        "PermissionDenied",
        &["\"ops\"", "needs admin"],
    );
    ok(
        &ctl_as(
            &daemon,
            OPERATOR,
            OPERATOR,
            &["--json", "feedback", "seven", "--predicted", "1", "--actual", "1"],
        ),
        "operator feedback layer 7",
    );
    ok(
        &ctl_as(&daemon, OPERATOR, OPERATOR, &["--json", "undeploy", "opsmodel"]),
        "operator undeploy layer 7",
    );

    // Unmapped: UNAUTHENTICATED for everything.
    for args in [
        &["status"][..],
        &["models"],
        &["deployments"],
        &["devices"],
        &["layers"],
        &["events"],
        &["top"],
        &["drift"],
        &["reload"],
        &["undeploy", "five"],
        &["rollback", "--layer", "5"],
        &["infer", "five", "--random"],
    ] {
        refused(
            &ctl_as(&daemon, UNMAPPED, UNMAPPED, args),
            "Unauthenticated",
            &["uid 1004"],
        );
    }
    refused(
        &ctl_as(&daemon, UNMAPPED, UNMAPPED, &deploy_args("u", "3")),
        "Unauthenticated",
        &["uid 1004"],
    );

    // TCP: inference as the anonymous client (the harness sets clearance 9), the
    // Control API not at all.
    let tcp = daemon.ctl_json(&["status"])["tcp_address"].as_str().unwrap().to_owned();
    let out = Command::new(ctl_binary())
        .args(["--addr", &tcp, "--json", "infer", "seven", "--random"])
        .output()
        .unwrap();
    ok(&out, "anonymous TCP infer");
    let out = Command::new(ctl_binary())
        .args(["--addr", &tcp, "models"])
        .output()
        .unwrap();
    refused(
        &out,
        "Unauthenticated",
        &["tcp 127.0.0.1:", "TCP with a client certificate"],
    );

    // The audit: each change and each denial, with its principal.
    let events = daemon.ctl_json(&["events", "--limit", "1000"]);
    let events = events["events"].as_array().unwrap();
    let has = |kind: &str, principal: &str, detail: &str| {
        events
            .iter()
            .any(|e| e["kind"] == kind && e["principal"] == principal && e["detail"].as_str().unwrap().contains(detail))
    };
    assert!(has("deploy", "root", ""), "{events:#?}");
    let by_ops = events
        .iter()
        .find(|e| e["kind"] == "deploy" && e["model"] == "opsmodel")
        .unwrap();
    assert_eq!(by_ops["principal"], "ops");
    assert_eq!(by_ops["caller_uid"].as_u64(), Some(u64::from(OPERATOR)));
    assert_eq!(by_ops["transport"], "unix");
    assert!(has("activate", "ops", ""), "{events:#?}");
    assert!(has("undeploy", "ops", ""), "{events:#?}");
    assert!(has("denied", "watch", "needs operator"), "{events:#?}");
    assert!(has("denied", "apps", "clearance 7"), "{events:#?}");
    assert!(has("denied", "ops", "needs admin"), "{events:#?}");
    assert!(has("denied", "unknown", "uid 1004"), "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "denied" && e["transport"] == "tcp" && e["principal"] == "anonymous"),
        "{events:#?}"
    );
    // The table shows who.
    let table = daemon.ctl(&["events", "--kind", "denied"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("BY") && table.contains("watch (uid 1001 pid "),
        "{table}"
    );
    // A viewer at 5 does not see the denials about layer 7.
    let seen = ok(
        &ctl_as(&daemon, VIEWER, VIEWER, &["--json", "events", "--limit", "1000"]),
        "viewer events",
    );
    assert!(
        seen["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["layer"].as_u64().is_none_or(|l| l <= 5) && e["model"] != "seven"),
        "{seen:#?}"
    );

    // Principals change with a reload: the viewer cleared to 7 sees layer 7
    // ("seven", and the retired "opsmodel").
    let config = daemon.dir.path().join("dsmil.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let raised = text.replacen(
        r#"role = "viewer", clearance = 5"#,
        r#"role = "viewer", clearance = 7"#,
        1,
    );
    assert_ne!(text, raised);
    std::fs::write(&config, raised).unwrap();
    daemon.ctl_json(&["reload"]);
    let listed = ok(
        &ctl_as(&daemon, VIEWER, VIEWER, &["--json", "models"]),
        "viewer models after reload",
    );
    assert_eq!(names(&listed), vec!["five", "opsmodel", "seven"]);
}

/// One journal datagram's fields (the native protocol: KEY=VALUE lines, or
/// KEY, a little-endian length and the value).
fn journal_fields(mut data: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while let Some(end) = data.iter().position(|&b| b == b'\n') {
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            fields.insert(text(&line[..eq]), text(&line[eq + 1..]));
            data = &data[end + 1..];
        } else {
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8_lossy(&rest[8..8 + len]).into_owned();
            fields.insert(String::from_utf8_lossy(line).into_owned(), value);
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

#[test]
fn journald_carries_the_principal_uid_and_transport() {
    if !can_run() {
        return;
    }
    umask(0o077);
    let journal_dir = tempfile::tempdir().unwrap();
    let journal_path = journal_dir.path().join("journal.socket");
    let journal = std::os::unix::net::UnixDatagram::bind(&journal_path).unwrap();
    let (tx, entries) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = journal.recv(&mut buf) {
            if n > 0 && tx.send(journal_fields(&buf[..n])).is_err() {
                return;
            }
        }
    });
    let journal_setting = format!("journal_socket = \"{}\"", journal_path.display());
    let (dir, config) = common::config_with(&[
        ("format = \"auto\"", "format = \"journal\""),
        ("journal_socket = \"/run/systemd/journal/socket\"", &journal_setting),
        ("socket_group = \"dsmil\"", "socket_group = 4321"),
        ("principals = []", PRINCIPALS),
    ]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    daemon.deploy_sample(&["--name", "five", "--layer", "5"]);
    refused(
        &ctl_as(&daemon, VIEWER, VIEWER, &["undeploy", "five"]),
        "PermissionDenied",
        &["\"watch\""],
    );
    let mut seen = Vec::new();
    let mut wanted = |event: &str| loop {
        let fields = entries
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {event} entry; saw {seen:#?}"));
        if fields.get("EVENT").is_some_and(|e| e == event) {
            return fields;
        }
        seen.push(fields.get("MESSAGE").cloned().unwrap_or_default());
    };
    let activate = wanted("activate");
    assert_eq!(activate["PRINCIPAL"], "root");
    assert_eq!(activate["CALLER_UID"], "0");
    assert_eq!(activate["TRANSPORT"], "unix");
    let denied = wanted("denied");
    assert_eq!(denied["PRINCIPAL"], "watch");
    assert_eq!(denied["CALLER_UID"], VIEWER.to_string());
    assert!(!denied["CALLER_PID"].is_empty());
    assert_eq!(denied["TRANSPORT"], "unix");
    assert_eq!(denied["PRIORITY"], "4", "denials are warnings");
    assert_eq!(denied["MESSAGE_ID"], dsmil_kinds::EventKind::Denied.message_id());
}
