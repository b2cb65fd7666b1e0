//! Hostile calibration and validation data: a 500-byte .npz whose .npy
//! header declares a (10^12, 64) array used to make dsmild allocate the
//! declared size and abort. It is refused with INVALID_ARGUMENT naming the
//! array and the sizes, and the daemon carries on deploying and serving.

mod common;

use std::io::Write;

use common::*;

/// An uncompressed .npz holding one array `name` whose header declares
/// `shape` but which carries only 64 float32 values.
fn lying_npz(path: &std::path::Path, name: &str, shape: &str) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend([0u8; 256]);

    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(format!("{name}.npy"), options).unwrap();
    zip.write_all(&npy).unwrap();
    zip.finish().unwrap();
}

/// Deploys the sample with `args`, which must fail: dsmilctl's stderr.
fn refused(daemon: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["deploy", SAMPLE_MODEL, "--name", "digits", "--device", "47"];
    all.extend_from_slice(args);
    let out = daemon.ctl(&all);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the hostile data was accepted");
    // dsmilctl prints the gRPC status as "dsmilctl: <code>: <message>".
    assert!(
        err.starts_with("dsmilctl: InvalidArgument: "),
        "{err}\n{}",
        daemon.log()
    );
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn an_npz_declaring_a_huge_array_is_refused_and_the_daemon_carries_on() {
    let daemon = Daemon::start();
    let calib = daemon.dir.path().join("lying-calib.npz");
    lying_npz(&calib, "pixels", "(1000000000000, 64)");
    assert!(std::fs::metadata(&calib).unwrap().len() < 600);
    let val = daemon.dir.path().join("lying-val.npz");
    lying_npz(&val, "pixels", "(100000000, 64)");

    let err = refused(&daemon, &["--calib", calib.to_str().unwrap()]);
    assert!(
        err.contains("array \"pixels\"")
            && err.contains("[1000000000000, 64]")
            && err.contains("256000000000000 bytes")
            && err.contains("holds 256 bytes"),
        "{err}"
    );
    let err = refused(&daemon, &["--calib", SAMPLE_TEST_SET, "--val", val.to_str().unwrap()]);
    assert!(
        err.contains("array \"pixels\"")
            && err.contains("[100000000, 64]")
            && err.contains("25600000000 bytes")
            && err.contains("holds 256 bytes"),
        "{err}"
    );

    // The same process, alive (not a zombie awaiting its reaper), and a
    // real deploy and inference work.
    assert!(alive(daemon.pid()), "dsmild died:\n{}", daemon.log());
    let deployed = daemon.ctl_json(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--device",
        "47",
        "--calib",
        SAMPLE_TEST_SET,
        "--val",
        SAMPLE_TEST_SET,
    ]);
    assert_eq!(deployed["state"], "Active");
    let answer = daemon
        .inference()
        .await
        .model_infer(digits_request(2, 0.5))
        .await
        .expect("the sample answers")
        .into_inner();
    assert_eq!(answer.outputs[0].shape, vec![2, 10]);
    let log = daemon.log();
    assert!(!log.contains("memory allocation") && !log.contains("panicked"), "{log}");
}

/// Whether `pid` runs: its /proc entry exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}
