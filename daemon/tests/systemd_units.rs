//! The shipped systemd unit: `systemd-analyze verify` accepts it and
//! `systemd-analyze security` rates its exposure low (Debian's systemd
//! package provides the tool; scripts/setup.sh installs it).

use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/dsmild.service");

/// The unit as installed, but starting the binary this build made (verify
/// checks that ExecStart exists).
fn unit_in(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(UNIT).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/dsmild "));
    let text = text.replace(
        "ExecStart=/usr/bin/dsmild ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_dsmild")),
    );
    let path = dir.join("dsmild.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is needed for this test: apt-get install systemd (scripts/setup.sh does)")
}

#[test]
fn the_unit_verifies_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_in(dir.path());
    let out = analyze(&["verify", unit.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("dsmild.service"),
        "no warnings about the unit: {stderr}"
    );
}

#[test]
fn the_unit_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_in(dir.path());
    let out = analyze(&["security", "--offline=yes", unit.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    assert!(score <= 2.0, "exposure {score} (0 best, 10 worst): {line}\n{text}");
    for directive in [
        "WatchdogSec=",
        "Type=notify",
        "DevicePolicy=closed",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(
            std::fs::read_to_string(UNIT).unwrap().contains(directive),
            "{directive}"
        );
    }
}
