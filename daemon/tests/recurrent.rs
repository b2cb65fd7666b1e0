//! A recurrent model's state is carried by the model itself during
//! calibration and the gate (`--state IN=OUT`): a streaming caller feeds
//! each call's state output back in, so the ranges INT8 must cover are the
//! ones the state reaches along a stream, not the zeros of a first call.
//! Through `dsmild quantize` and a real dsmild's deploy.

mod common;

use common::onnx::{model, node, value, weights};
use common::{Daemon, ctl_binary};
use dsmil_proto::onnx::{GraphProto, ModelProto};
use prost::Message;
use rand::{Rng, SeedableRng};

/// x [1, 4], h [1, 8] → h_out = Tanh(x·Wx + h·Wh), y = h_out·Wy.
fn rnn() -> Vec<u8> {
    model(
        GraphProto {
            name: Some("rnn".into()),
            node: vec![
                node("MatMul", &["x", "wx"], &["a"]),
                node("MatMul", &["h", "wh"], &["b"]),
                node("Add", &["a", "b"], &["s"]),
                node("Tanh", &["s"], &["h_out"]),
                node("MatMul", &["h_out", "wy"], &["y"]),
            ],
            input: vec![value("x", &[1, 4]), value("h", &[1, 8])],
            output: vec![value("y", &[1, 3]), value("h_out", &[1, 8])],
            initializer: vec![
                weights("wx", &[4, 8], 1),
                weights("wh", &[8, 8], 2),
                weights("wy", &[8, 3], 3),
            ],
            ..Default::default()
        },
        &[("", 13)],
    )
}

struct Files {
    _dir: tempfile::TempDir,
    model: std::path::PathBuf,
    /// x only: the state starts at zeros and is carried.
    stream: std::path::PathBuf,
    /// x and an all-zero h for every sample: what calibrating without
    /// carrying the state sees.
    zeros: std::path::PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let x = ndarray::Array3::from_shape_fn((64, 1, 4), |_| rng.random_range(-4.0f32..4.0));
    let write = |name: &str, h: Option<ndarray::Array3<f32>>| {
        let path = dir.path().join(name);
        let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
        w.add_array("x", &x).unwrap();
        if let Some(h) = h {
            w.add_array("h", &h).unwrap();
        }
        w.finish().unwrap();
        path
    };
    let stream = write("stream.npz", None);
    let zeros = write("zeros.npz", Some(ndarray::Array3::zeros((64, 1, 8))));
    let model = dir.path().join("rnn.onnx");
    std::fs::write(&model, rnn()).unwrap();
    Files {
        model,
        stream,
        zeros,
        _dir: dir,
    }
}

/// The scale `dsmild quantize` gave the activation `name`.
fn scale_of(model: &std::path::Path, name: &str) -> f32 {
    let m = ModelProto::decode(std::fs::read(model).unwrap().as_slice()).unwrap();
    let t = m
        .graph
        .unwrap()
        .initializer
        .into_iter()
        .find(|t| t.name() == format!("{name}_scale"))
        .unwrap_or_else(|| panic!("{name} is not quantized"));
    match t.raw_data {
        Some(raw) => f32::from_le_bytes(raw[..4].try_into().unwrap()),
        None => t.float_data[0],
    }
}

fn quantize(f: &Files, data: &std::path::Path, extra: &[&str], out: &str) -> std::process::Output {
    let out = f.model.with_file_name(out);
    std::process::Command::new(env!("CARGO_BIN_EXE_dsmild"))
        .arg("quantize")
        .arg(&f.model)
        .arg("--calib")
        .arg(data)
        .args(["--gate-metric", "cosine", "-o"])
        .arg(&out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_state_is_carried_through_calibration_and_the_gate() {
    let f = files();
    // Without a link, data that leaves the state out is refused, naming it.
    let out = quantize(&f, &f.stream, &[], "plain.onnx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no array named \"h\""), "{err}");

    // Carried: h reaches tanh's range along the stream, so its scale is
    // (max - min) / 255 with both inside [-1, 1] and the range not empty.
    let out = quantize(&f, &f.stream, &["--state", "h=h_out"], "carried.onnx");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let carried = scale_of(&f.model.with_file_name("carried.onnx"), "h");
    assert!(
        carried > 0.1 / 255.0 && carried <= 2.0 / 255.0 + 1e-6,
        "h scale {carried}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["evaluation"]["samples"], 64, "{report}");

    // What calibrating each call from zeros would give: an empty range.
    let out = quantize(&f, &f.zeros, &[], "zeros.onnx");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        scale_of(&f.model.with_file_name("zeros.onnx"), "h"),
        1.0,
        "h was only ever 0"
    );

    // A link to something the model does not have is refused by name.
    let out = quantize(&f, &f.stream, &["--state", "h=hidden"], "bad.onnx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no output \"hidden\"") && err.contains("y, h_out"),
        "{err}"
    );
}

#[test]
fn a_deploy_carries_the_state_it_is_told_to() {
    let f = files();
    let daemon = Daemon::start();
    let deploy = |extra: &[&str]| {
        std::process::Command::new(ctl_binary())
            .arg("--socket")
            .arg(daemon.socket())
            .args(["--json", "deploy"])
            .arg(&f.model)
            .args(["--name", "rnn", "--layer", "3", "--gate-metric", "cosine", "--calib"])
            .arg(&f.stream)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = deploy(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no array named \"h\"") && err.contains("stream.npz"),
        "{err}"
    );
    let out = deploy(&["--state", "h=h_out"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(deployed["state"], "Active", "{deployed}");
    let quantized = deployed["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == "Compiling")
        .expect("compiled");
    assert!(
        quantized["detail"]
            .as_str()
            .unwrap()
            .starts_with("INT8 (minmax, 64 samples)"),
        "{quantized}"
    );
    let out = deploy(&["--state", "h"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected INPUT=OUTPUT"), "{err}");
}
