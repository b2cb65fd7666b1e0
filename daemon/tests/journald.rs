//! Logging to journald: dsmild started with a fake journal socket sends
//! native-protocol datagrams; decoded, the audit events carry their
//! structured fields and the stable MESSAGE_ID of their kind.

mod common;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::*;

/// One datagram's fields (the journal's native protocol).
fn decode(mut data: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !data.is_empty() {
        let line_end = data
            .iter()
            .position(|&b| b == b'\n')
            .expect("every field ends in a newline");
        let line = &data[..line_end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let (key, value) = (&line[..eq], &line[eq + 1..]);
            fields.insert(
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            );
            data = &data[line_end + 1..];
        } else {
            // KEY\n, a little-endian u64 length, the value, \n.
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &data[line_end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

/// Drains the fake journal from the start, as journald would (the daemon's
/// sends wait for room), and hands the decoded entries over.
fn drain(journal: UnixDatagram) -> Receiver<HashMap<String, String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = journal.recv(&mut buf) {
            if n > 0 && tx.send(decode(&buf[..n])).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the first entry that satisfies `wanted`.
fn receive(
    entries: &Receiver<HashMap<String, String>>,
    wanted: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let mut seen = Vec::new();
    while let Ok(fields) = entries.recv_timeout(Duration::from_secs(30)) {
        if wanted(&fields) {
            return fields;
        }
        seen.push(fields.get("MESSAGE").cloned().unwrap_or_default());
    }
    panic!("no such journal entry; saw: {seen:#?}");
}

#[test]
fn audit_events_reach_the_journal_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("journal.socket");
    let journal = drain(UnixDatagram::bind(&socket_path).unwrap());
    let socket = socket_path.to_str().unwrap();
    let (_config_dir, config) = config_with(&[
        ("format = \"auto\"", "format = \"journal\""),
        (
            "journal_socket = \"/run/systemd/journal/socket\"",
            &format!("journal_socket = \"{socket}\""),
        ),
    ]);
    let daemon = Daemon::start_in(tempfile::tempdir().unwrap(), &["--config", &config]);
    let started = receive(&journal, |f| f.get("MESSAGE").is_some_and(|m| m == "dsmild starting"));
    assert_eq!(started["SYSLOG_IDENTIFIER"], "dsmild");
    assert_eq!(started["PRIORITY"], "6");

    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let activate = receive(&journal, |f| f.get("EVENT").is_some_and(|e| e == "activate"));
    assert_eq!(activate["MODEL"], "digits");
    assert_eq!(activate["VERSION"], "1");
    assert_eq!(activate["DEVICE"], "47");
    assert_eq!(activate["LAYER"], "7");
    assert_eq!(activate["MESSAGE_ID"], dsmil_kinds::EventKind::Activate.message_id());
    assert_eq!(activate["MESSAGE_ID"].len(), 32, "a 128-bit id in hex");
    assert!(activate["MESSAGE"].starts_with("activate: "), "{activate:?}");

    // A write-down: classification 9 into layer 7, refused and audited.
    let refused = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "x",
        "--allow-fp32",
        "--device",
        "46",
        "--classification",
        "9",
    ]);
    assert!(!refused.status.success());
    let refuse = receive(&journal, |f| f.get("EVENT").is_some_and(|e| e == "refuse"));
    assert_eq!(refuse["PRIORITY"], "4", "refusals are warnings");
    assert_ne!(refuse["MESSAGE_ID"], activate["MESSAGE_ID"], "one id per kind");
}
