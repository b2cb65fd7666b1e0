//! More ways to bring a model, through the real dsmilctl and dsmild: a
//! Hugging Face-style snapshot directory and a .tar.gz of one deploy; a
//! PyTorch checkpoint gets the export command, whether dsmilctl sees its
//! name or only dsmild sees its bytes.

mod common;

use common::{Daemon, SAMPLE_MODEL};

#[test]
fn snapshots_and_archives_deploy_and_checkpoints_are_told_how_to_export() {
    let daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("digits-snapshot");
    std::fs::create_dir_all(snap.join("onnx")).unwrap();
    std::fs::write(snap.join("config.json"), "{}").unwrap();
    std::fs::copy(SAMPLE_MODEL, snap.join("onnx/model.onnx")).unwrap();
    let deployed = daemon.ctl_json(&[
        "deploy",
        snap.to_str().unwrap(),
        "--name",
        "snap",
        "--layer",
        "3",
        "--allow-fp32",
    ]);
    assert_eq!(deployed["state"], "Active", "{deployed}");

    let archive = dir.path().join("digits-snapshot.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg("digits-snapshot")
        .status()
        .unwrap();
    assert!(tar.success());
    let deployed = daemon.ctl_json(&[
        "deploy",
        archive.to_str().unwrap(),
        "--name",
        "tarred",
        "--layer",
        "3",
        "--allow-fp32",
    ]);
    assert_eq!(deployed["state"], "Active", "{deployed}");
    assert_eq!(
        deployed["sha256"],
        daemon.ctl_json(&["show", "snap"])["sha256"],
        "the same model"
    );

    // A pickle, named .pt (dsmilctl knows by the name) and .onnx (dsmild
    // knows by the bytes).
    let pickle = [&[0x80u8, 0x04, 0x95][..], &[0; 64]].concat();
    for name in ["model.pt", "model.onnx"] {
        let path = dir.path().join(name);
        std::fs::write(&path, &pickle).unwrap();
        let out = daemon.ctl(&[
            "deploy",
            path.to_str().unwrap(),
            "--name",
            "torch",
            "--layer",
            "3",
            "--allow-fp32",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("torch.onnx.export"), "{name}: {err}");
    }
}

#[test]
fn bad_data_is_reported_by_the_name_the_user_gave_it() {
    let daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("my-calibration.npz");
    std::fs::write(&bad, b"this is not a zip archive").unwrap();
    let out = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--layer",
        "3",
        "--calib",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--calib data (my-calibration.npz): not an .npz file"),
        "{err}"
    );
    let state = daemon.state_dir();
    assert!(!err.contains(state.to_str().unwrap()), "no staged path: {err}");
}
