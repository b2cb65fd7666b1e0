//! The INT8 quantizer on real ONNX Runtime: calibration, the QDQ rewrite
//! (per-channel axes checked numerically), BatchNormalization folding, the
//! accuracy gate, bad data, and `dsmild quantize`.

mod common;

use common::*;
use dsmil_proto::onnx::{GraphProto, ModelProto, NodeProto, attribute_proto};
use dsmild::backend::{Backend, LoadOptions, OnnxRuntime, Signature};
use dsmild::compress::{self, ActivationType, CompressError, Method, Options, Samples};
use ndarray::{ArrayD, Dimension, IxDyn};
use prost::Message;
use std::collections::HashMap;

/// ONNX Runtime, shared by this file's tests.
fn runtime() -> &'static OnnxRuntime {
    common::ort()
}

fn signature(model: &[u8]) -> Signature {
    runtime()
        .load(model, &LoadOptions::default())
        .unwrap()
        .signature()
        .clone()
}

fn options(method: Method) -> Options {
    Options {
        method,
        activations: ActivationType::U8Asymmetric,
        max_samples: 1000,
        fallback_evaluations: 16,
        state: Vec::new(),
        gate: dsmild::compress::gate::GateSpec {
            metric: None,
            thresholds: dsmild::compress::gate::Thresholds {
                retention: 0.95,
                position: 0.9,
                sequence: 0.9,
                cosine: 0.99,
                snr_db: 20.0,
                iou: 0.9,
            },
        },
    }
}

/// Writes an .npz of float arrays (and optional labels) into `dir`.
fn npz(
    dir: &std::path::Path,
    name: &str,
    arrays: &[(&str, ArrayD<f32>)],
    labels: Option<Vec<i64>>,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
    for (key, array) in arrays {
        w.add_array(*key, array).unwrap();
    }
    if let Some(l) = labels {
        w.add_array("labels", &ndarray::Array1::from(l)).unwrap();
    }
    w.finish().unwrap();
    path
}

/// Runs the dsmild binary (for `dsmild quantize`).
fn dsmild(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dsmild"))
        .args(args)
        .output()
        .unwrap()
}

fn sample_bytes() -> Vec<u8> {
    std::fs::read(SAMPLE_MODEL).unwrap()
}

#[test]
fn the_sample_keeps_99_percent_of_its_accuracy_and_shrinks() {
    let model = sample_bytes();
    let sig = signature(&model);
    let calibration = Samples::read(std::path::Path::new(SAMPLE_TEST_SET), &sig, 200).unwrap();
    let validation = Samples::read(std::path::Path::new(SAMPLE_TEST_SET), &sig, usize::MAX).unwrap();
    assert_eq!(
        (calibration.len(), validation.len()),
        (200, 360),
        "calibration_samples caps the samples"
    );
    for method in [Method::MinMax, Method::Percentile(99.999), Method::Entropy] {
        let q =
            compress::quantize_static(runtime(), &model, &calibration, Some(&validation), &options(method)).unwrap();
        let e = q.report.evaluation.as_ref().unwrap();
        assert_eq!(e.metric, "top-1 accuracy");
        assert!(
            e.retention >= 0.99,
            "{method:?}: retention {} (fp32 {}, int8 {})",
            e.retention,
            e.fp32,
            e.int8
        );
        assert!(q.report.size_after * 2 < q.report.size_before, "{:?}", q.report);
        assert_eq!(q.report.quantized_nodes, vec!["fc1", "fc2"]);
        let proto = ModelProto::decode(q.model.as_slice()).unwrap();
        let ops: Vec<&str> = proto.graph.as_ref().unwrap().node.iter().map(|n| n.op_type()).collect();
        assert!(
            ops.contains(&"QuantizeLinear") && ops.contains(&"DequantizeLinear"),
            "{ops:?}"
        );
    }
}

#[test]
fn the_gate_refuses_a_quantization_that_destroys_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let model = sample_bytes();
    let sig = signature(&model);
    // Calibrating on blank images squeezes every range to almost nothing.
    let blank = npz(
        dir.path(),
        "blank.npz",
        &[("pixels", ArrayD::zeros(IxDyn(&[20, 64])))],
        None,
    );
    let calibration = Samples::read(&blank, &sig, 1000).unwrap();
    let validation = Samples::read(std::path::Path::new(SAMPLE_TEST_SET), &sig, usize::MAX).unwrap();
    let err = compress::quantize_static(
        runtime(),
        &model,
        &calibration,
        Some(&validation),
        &options(Method::MinMax),
    )
    .err()
    .expect("the gate must refuse");
    let CompressError::GateFailed { retention, min, .. } = &err else {
        panic!("{err}")
    };
    assert!(*retention < *min, "{err}");
    assert!(
        err.to_string()
            .contains("INT8 accuracy gate failed on output \"probabilities\": top-1 accuracy"),
        "{err}"
    );
}

#[test]
fn bad_calibration_data_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sig = signature(&sample_bytes());
    let wrong_name = npz(dir.path(), "a.npz", &[("image", ArrayD::zeros(IxDyn(&[4, 64])))], None);
    let err = Samples::read(&wrong_name, &sig, 10).err().unwrap().to_string();
    assert!(
        err.contains("no array named \"pixels\"") && err.contains("image"),
        "{err}"
    );
    let wrong_shape = npz(dir.path(), "b.npz", &[("pixels", ArrayD::zeros(IxDyn(&[4, 63])))], None);
    let err = Samples::read(&wrong_shape, &sig, 10).err().unwrap().to_string();
    assert!(err.contains("has shape [4, 63]; the input is [?,64]"), "{err}");
    let mut nan = ArrayD::<f32>::zeros(IxDyn(&[4, 64]));
    nan[[2, 5]] = f32::NAN;
    let with_nan = npz(dir.path(), "c.npz", &[("pixels", nan)], None);
    let err = Samples::read(&with_nan, &sig, 10).err().unwrap().to_string();
    assert!(err.contains("NaN or Inf (element 133)"), "{err}");
    let not_npz = dir.path().join("d.npz");
    std::fs::write(&not_npz, b"nope").unwrap();
    assert!(
        Samples::read(&not_npz, &sig, 10)
            .err()
            .unwrap()
            .to_string()
            .contains("not an .npz file")
    );
}

/// (weight name, op, attributes) → the model x[?,4] -> op -> y.
fn one_op(op: &str, weight_dims: &[i64], attrs: &[(&str, i64)], x_dims: &[i64], y_dims: &[i64]) -> Vec<u8> {
    let mut n = onnx::node(op, &["x", "w"], &["y"]);
    n.attribute = attrs
        .iter()
        .map(|(k, v)| dsmil_proto::onnx::AttributeProto {
            name: Some((*k).into()),
            r#type: Some(attribute_proto::AttributeType::Int as i32),
            i: Some(*v),
            ..Default::default()
        })
        .collect();
    // Channels of very different magnitude, so a per-tensor scale would show.
    let mut w = onnx::weights("w", weight_dims, 1);
    let values: Vec<f32> = compress::qdq::float_values(&w)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1 + i % 3) as f32 * 10f32.powi((i % 2) as i32))
        .collect();
    w.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
    onnx::model(
        GraphProto {
            name: Some(op.into()),
            node: vec![n],
            initializer: vec![w],
            input: vec![onnx::value("x", x_dims)],
            output: vec![onnx::value("y", y_dims)],
            ..Default::default()
        },
        &[("", 17)],
    )
}

/// Checks the weight's DequantizeLinear axis and that every dequantized
/// value is within half a step of the original.
fn check_per_channel(original: &[u8], quantized: &[u8], expected_axis: i64) {
    let before = ModelProto::decode(original).unwrap();
    let after = ModelProto::decode(quantized).unwrap();
    let w = &before.graph.as_ref().unwrap().initializer[0];
    let values = compress::qdq::float_values(w).unwrap();
    let g = after.graph.as_ref().unwrap();
    let dq: &NodeProto = g
        .node
        .iter()
        .find(|n| n.op_type() == "DequantizeLinear" && n.input[0].starts_with("w_"))
        .unwrap();
    assert_eq!(dq.attribute[0].i, Some(expected_axis), "axis of {}", dq.name());
    let init: HashMap<&str, _> = g.initializer.iter().map(|t| (t.name(), t)).collect();
    let q: Vec<i8> = init[dq.input[0].as_str()]
        .raw_data
        .as_ref()
        .unwrap()
        .iter()
        .map(|&b| b as i8)
        .collect();
    let scales = compress::qdq::float_values(init[dq.input[1].as_str()]).unwrap();
    let dims: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
    let axis = expected_axis as usize;
    assert_eq!(scales.len(), dims[axis], "one scale per channel");
    let inner: usize = dims[axis + 1..].iter().product();
    for (i, (&qi, &wi)) in q.iter().zip(&values).enumerate() {
        let s = scales[(i / inner) % dims[axis]];
        assert!(
            (f32::from(qi) * s - wi).abs() <= s / 2.0 + 1e-6,
            "element {i}: {} vs {wi}",
            f32::from(qi) * s
        );
    }
}

fn calibrate_and_rewrite(model: &[u8], x_dims: &[usize]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut shape = vec![8];
    shape.extend_from_slice(&x_dims[1..]);
    let data = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
        (ix.slice().iter().sum::<usize>() % 7) as f32 / 3.0 - 1.0
    });
    let path = npz(dir.path(), "c.npz", &[("x", data)], None);
    let calibration = Samples::read(&path, &signature(model), 1000).unwrap();
    let q = compress::quantize_static(
        runtime(),
        model,
        &calibration,
        Some(&calibration),
        &Options {
            gate: dsmild::compress::gate::GateSpec {
                metric: None,
                thresholds: dsmild::compress::gate::Thresholds {
                    retention: 0.0,
                    position: 0.9,
                    sequence: 0.9,
                    cosine: 0.99,
                    snr_db: 20.0,
                    iou: 0.9,
                },
            },
            ..options(Method::MinMax)
        },
    )
    .unwrap();
    assert!(
        q.report.evaluation.unwrap().mean_cosine > 0.99,
        "INT8 outputs stay close to FP32"
    );
    q.model
}

#[test]
fn weights_are_quantized_per_output_channel_on_the_right_axis() {
    let matmul = one_op("MatMul", &[4, 6], &[], &[-1, 4], &[-1, 6]);
    check_per_channel(&matmul, &calibrate_and_rewrite(&matmul, &[1, 4]), 1);
    let gemm = one_op("Gemm", &[6, 4], &[("transB", 1)], &[-1, 4], &[-1, 6]);
    check_per_channel(&gemm, &calibrate_and_rewrite(&gemm, &[1, 4]), 0);
    let gemm_plain = one_op("Gemm", &[4, 6], &[], &[-1, 4], &[-1, 6]);
    check_per_channel(&gemm_plain, &calibrate_and_rewrite(&gemm_plain, &[1, 4]), 1);
    let conv = one_op("Conv", &[3, 2, 3, 3], &[], &[-1, 2, 5, 5], &[-1, 3, 3, 3]);
    check_per_channel(&conv, &calibrate_and_rewrite(&conv, &[1, 2, 5, 5]), 0);
}

#[test]
fn batch_normalization_is_folded_into_the_conv() {
    let conv = onnx::node("Conv", &["x", "w"], &["c"]);
    let bn = onnx::node("BatchNormalization", &["c", "gamma", "beta", "mean", "var"], &["y"]);
    let floats = |name: &str, v: &[f32]| dsmil_proto::onnx::TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(1),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    };
    let model = onnx::model(
        GraphProto {
            name: Some("conv_bn".into()),
            node: vec![conv, bn],
            initializer: vec![
                onnx::weights("w", &[3, 2, 3, 3], 2),
                floats("gamma", &[1.5, 0.5, 2.0]),
                floats("beta", &[0.1, -0.2, 0.3]),
                floats("mean", &[0.05, 0.0, -0.1]),
                floats("var", &[1.0, 4.0, 0.25]),
            ],
            input: vec![onnx::value("x", &[-1, 2, 5, 5])],
            output: vec![onnx::value("y", &[-1, 3, 3, 3])],
            ..Default::default()
        },
        &[("", 17)],
    );
    let quantized = calibrate_and_rewrite(&model, &[1, 2, 5, 5]);
    let proto = ModelProto::decode(quantized.as_slice()).unwrap();
    let ops: Vec<&str> = proto.graph.as_ref().unwrap().node.iter().map(|n| n.op_type()).collect();
    assert!(!ops.contains(&"BatchNormalization"), "{ops:?}");
    let conv = proto
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .find(|n| n.op_type() == "Conv")
        .unwrap();
    assert_eq!(conv.input.len(), 3, "the folded Conv has a bias");
    assert!(
        conv.input[2].ends_with("_dequantized"),
        "and the bias is int32 behind a DequantizeLinear: {:?}",
        conv.input
    );
}

#[test]
fn dsmild_quantize_writes_the_model_and_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int8.onnx");
    let out_path = out.to_str().unwrap();
    let run = dsmild(&[
        "quantize",
        SAMPLE_MODEL,
        "--calib",
        SAMPLE_TEST_SET,
        "--val",
        SAMPLE_TEST_SET,
        "--method",
        "entropy",
        "-o",
        out_path,
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["method"], "entropy");
    assert!(report["evaluation"]["retention"].as_f64().unwrap() >= 0.99);
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written.len() as u64, report["size_after"].as_u64().unwrap());
    // And the daemon serves it.
    let daemon = Daemon::start();
    let deployed = daemon.ctl_json(&["deploy", out.to_str().unwrap(), "--name", "digits8", "--device", "47"]);
    assert_eq!(deployed["state"], "Active");

    let bad_out = dir.path().join("x.onnx");
    let bad = dsmild(&[
        "quantize",
        SAMPLE_MODEL,
        "--calib",
        SAMPLE_MODEL,
        "-o",
        bad_out.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not an .npz file"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

fn stage_detail(deployment: &serde_json::Value, state: &str) -> String {
    deployment["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == state)
        .map(|h| h["detail"].as_str().expect("a stage's detail").to_owned())
        .unwrap_or_else(|| panic!("no {state} stage in {deployment}"))
}

#[test]
fn the_daemon_serves_int8_and_refuses_fp32_without_calibration() {
    let daemon = Daemon::start();
    let out = daemon.ctl(&["deploy", SAMPLE_MODEL, "--name", "digits", "--device", "47"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("--calib") && err.contains("--allow-fp32"),
        "{err}"
    );
    let deployments = daemon.ctl_json(&["deployments"]);
    assert_eq!(
        deployments["deployments"].as_array().expect("deployments listed").len(),
        0,
        "{deployments}"
    );

    let int8 = ["--calib", SAMPLE_TEST_SET, "--val", SAMPLE_TEST_SET];
    let mut args = vec![
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--device",
        "47",
        "--method",
        "percentile",
    ];
    args.extend(int8);
    let v1 = daemon.ctl_json(&args);
    let detail = stage_detail(&v1, "Compiling");
    assert!(
        detail.contains("INT8 (percentile(99.999), 360 samples): top-1 accuracy") && detail.contains("retention"),
        "{detail}"
    );
    let models = daemon.ctl_json(&["models"]);
    let uploaded = models["models"][0]["versions"][0]["sha256"].as_str().unwrap();
    assert_ne!(
        v1["sha256"].as_str().unwrap(),
        uploaded,
        "the deployment serves its own INT8 blob"
    );

    let served = daemon.ctl_json(&["infer", "digits", "--input", SAMPLE_TEST_SET]);
    let predicted: Vec<i64> = served["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let (_, labels) = test_set();
    let correct = predicted.iter().zip(labels.iter()).filter(|(a, b)| a == b).count();
    assert!(
        correct as f64 / labels.len() as f64 >= 0.95,
        "INT8 accuracy through dsmild: {correct}/{}",
        labels.len()
    );

    // A rollback serves version 1's INT8 blob again, without quantizing.
    let mut args = vec!["deploy", SAMPLE_MODEL, "--name", "digits", "--device", "47"];
    args.extend(int8);
    daemon.ctl_json(&args);
    let back = daemon.ctl_json(&["rollback", "--model", "digits"]);
    let restored = &back["restored"][0];
    assert_eq!(restored["sha256"], v1["sha256"]);
    let shown = daemon.ctl_json(&["show", &restored["id"].to_string()]);
    assert_eq!(
        stage_detail(&shown, "Quantizing"),
        "the version's served model, quantized when it was first deployed"
    );

    daemon.ctl_json(&["deploy", SAMPLE_MODEL, "--name", "fp", "--device", "46", "--allow-fp32"]);
    let audit = daemon.ctl_json(&["events", "--kind", "allow_fp32"]);
    assert_eq!(audit["events"][0]["model"], "fp");

    // The quantization report of version 1, stored with the version.
    let report = daemon.ctl_json(&["report", "digits@1"]);
    assert_eq!(report["method"], "percentile(99.999)");
    assert_eq!(report["metric"], "top-1 accuracy");
    assert!(report["retention"].as_f64().unwrap() >= 0.99, "{report}");
    assert_eq!(report["validation_samples"], 360);
    assert!(report["size_after"].as_u64().unwrap() * 2 < report["size_before"].as_u64().unwrap());
    assert!(report["fp32_p50_ms"].as_f64().unwrap() > 0.0 && report["int8_p50_ms"].as_f64().unwrap() > 0.0);
    let layers: Vec<(&str, &str)> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["node"].as_str().unwrap(), l["precision"].as_str().unwrap()))
        .collect();
    assert_eq!(layers, vec![("fc1", "int8"), ("fc2", "int8")]);
    assert_eq!(report["int8_mac_share"], 1.0, "full INT8: every MAC");
    assert_eq!(
        report["layers"][0]["macs"],
        64 * 64,
        "fc1: 64x64 weights, one row per sample"
    );
    let page = daemon.dir.path().join("report.html");
    let written = daemon.ctl(&["report", "digits@1", "--html", page.to_str().unwrap()]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let page = std::fs::read_to_string(page).unwrap();
    assert!(
        page.starts_with("<!doctype html>") && page.contains("<svg") && page.contains("retention"),
        "{page}"
    );
    assert!(
        page.contains("<td>fc1</td>") && !page.contains("<script"),
        "self-contained, no scripts"
    );
    let table = daemon.ctl(&["report", "digits"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("retention"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
    let none = daemon.ctl(&["report", "fp"]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("--allow-fp32"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}

#[test]
fn a_failed_gate_fails_the_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let blank = npz(
        dir.path(),
        "blank.npz",
        &[("pixels", ArrayD::zeros(IxDyn(&[20, 64])))],
        None,
    );
    let daemon = Daemon::start();
    let out = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--device",
        "47",
        "--calib",
        blank.to_str().unwrap(),
        "--val",
        SAMPLE_TEST_SET,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FailedPrecondition") && err.contains("INT8 accuracy gate failed"),
        "{err}"
    );
    let d = daemon.ctl_json(&["deployments"]);
    assert_eq!(d["deployments"][0]["state"], "Failed");
    let history = d["deployments"][0]["history"].as_array().unwrap();
    assert_eq!(history[history.len() - 2]["state"], "Quantizing");
}

#[test]
fn the_fallback_keeps_the_one_sensitive_layer_in_fp32() {
    // x[?,8] -> MatMul(w1) -> Relu -> MatMul(w2) -> y. Row 7 of w1 is zero,
    // so feature 7 never reaches the output; but calibration sees it at
    // 1000, which makes x's per-tensor scale crush every other feature.
    let mut w1 = onnx::weights("w1", &[8, 8], 3);
    let mut v = compress::qdq::float_values(&w1).unwrap();
    v[56..64].iter_mut().for_each(|x| *x = 0.0);
    w1.raw_data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    let mut fc1 = onnx::node("MatMul", &["x", "w1"], &["h"]);
    fc1.name = Some("fc1".into());
    let mut fc2 = onnx::node("MatMul", &["r", "w2"], &["y"]);
    fc2.name = Some("fc2".into());
    let model = onnx::model(
        GraphProto {
            name: Some("sensitive".into()),
            node: vec![fc1, onnx::node("Relu", &["h"], &["r"]), fc2],
            initializer: vec![w1, onnx::weights("w2", &[8, 8], 4)],
            input: vec![onnx::value("x", &[-1, 8])],
            output: vec![onnx::value("y", &[-1, 8])],
            ..Default::default()
        },
        &[("", 17)],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut calib = ArrayD::from_shape_fn(IxDyn(&[33, 8]), |ix| ((ix[0] * 7 + ix[1] * 3) % 11) as f32 / 11.0);
    calib[[32, 7]] = 1000.0;
    let val = ArrayD::from_shape_fn(IxDyn(&[64, 8]), |ix| ((ix[0] * 5 + ix[1] * 7) % 13) as f32 / 13.0);
    let sig = signature(&model);
    let calibration = Samples::read(&npz(dir.path(), "c.npz", &[("x", calib)], None), &sig, 1000).unwrap();
    let validation = Samples::read(&npz(dir.path(), "v.npz", &[("x", val)], None), &sig, 1000).unwrap();

    // Full INT8 alone fails the gate...
    let strict = Options {
        fallback_evaluations: 1,
        state: Vec::new(),
        ..options(Method::MinMax)
    };
    let err = compress::quantize_static(runtime(), &model, &calibration, Some(&validation), &strict)
        .err()
        .unwrap();
    assert!(matches!(err, CompressError::GateFailed { .. }), "{err}");
    // ...the fallback finds that keeping fc1 (only) in FP32 passes.
    let q = compress::quantize_static(
        runtime(),
        &model,
        &calibration,
        Some(&validation),
        &options(Method::MinMax),
    )
    .unwrap();
    let r = &q.report;
    assert_eq!(r.fp32_fallback, vec!["fc1"]);
    let precision: Vec<(&str, &str)> = r
        .layers
        .iter()
        .map(|l| (l.node.as_str(), l.precision.as_str()))
        .collect();
    assert_eq!(precision, vec![("fc1", "fp32"), ("fc2", "int8")]);
    assert_eq!(
        r.layers.iter().map(|l| l.macs).collect::<Vec<_>>(),
        vec![64, 64],
        "8x8 weights, one row per sample"
    );
    assert!((r.int8_mac_share - 0.5).abs() < 1e-9, "{}", r.int8_mac_share);
    assert!(r.evaluation.as_ref().unwrap().retention >= 0.95);
    assert!(r.evaluations <= 16);
}

#[test]
fn dynamic_mode_quantizes_matmul_weights_and_activations_at_run_time() {
    let model = onnx::mlp(64, 3);
    let dir = tempfile::tempdir().unwrap();
    let val = ArrayD::from_shape_fn(IxDyn(&[32, 64]), |ix| {
        ((ix[0] * 13 + ix[1] * 7) % 17) as f32 / 17.0 - 0.5
    });
    let val_path = npz(dir.path(), "v.npz", &[("x", val)], None);
    let validation = Samples::read(&val_path, &signature(&model), 1000).unwrap();
    let q = compress::quantize_dynamic(runtime(), &model, Some(&validation), &options(Method::Dynamic).gate).unwrap();
    let proto = ModelProto::decode(q.model.as_slice()).unwrap();
    let ops: Vec<&str> = proto.graph.as_ref().unwrap().node.iter().map(|n| n.op_type()).collect();
    assert!(
        ops.contains(&"DynamicQuantizeLinear") && ops.contains(&"MatMulInteger"),
        "{ops:?}"
    );
    assert!(
        !ops.contains(&"MatMul"),
        "every constant-weight MatMul is rewritten: {ops:?}"
    );
    assert_eq!(q.report.quantized_nodes.len(), 3);
    let e = q.report.evaluation.as_ref().unwrap();
    assert!(e.mean_cosine > 0.99 && e.retention >= 0.95, "{e:?}");
    assert!(
        q.report.size_after * 3 < q.report.size_before,
        "{} vs {}",
        q.report.size_after,
        q.report.size_before
    );

    // Offline, no calibration data needed.
    let input = dir.path().join("mlp.onnx");
    std::fs::write(&input, &model).unwrap();
    let out = dir.path().join("mlp.dyn.onnx");
    let (input, val, out) = (
        input.to_str().unwrap(),
        val_path.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let run = dsmild(&["quantize", input, "--method", "dynamic", "--val", val, "-o", out]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["method"], "dynamic");
    let missing_out = dir.path().join("x.onnx");
    let missing = dsmild(&["quantize", input, "-o", missing_out.to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("needs calibration data"));
}

#[test]
fn a_deploy_can_quantize_dynamically_gated_on_validation_data() {
    let daemon = Daemon::start();
    let dynamic = [
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits",
        "--device",
        "47",
        "--method",
        "dynamic",
    ];
    let refused = daemon.ctl(&dynamic);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("dynamic quantization needs data for the accuracy gate"),
        "{err}"
    );

    let mut args = dynamic.to_vec();
    args.extend(["--val", SAMPLE_TEST_SET]);
    let deployed = daemon.ctl_json(&args);
    assert_eq!(deployed["state"], "Active");
    assert!(
        stage_detail(&deployed, "Quantizing").starts_with("dynamic quantization (activations at run time) to INT8"),
        "{deployed}"
    );
    let report = daemon.ctl_json(&["report", "digits"]);
    assert_eq!(report["method"], "dynamic");
    assert_eq!(report["calibration_samples"], 0);
    assert_eq!(report["metric"], "top-1 accuracy");
    assert!(report["retention"].as_f64().unwrap() >= 0.99, "{report}");

    let served = daemon.ctl_json(&["infer", "digits", "--input", SAMPLE_TEST_SET]);
    let (_, labels) = test_set();
    let correct = served["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(labels.iter())
        .filter(|(p, l)| p.as_i64() == Some(**l))
        .count();
    assert!(
        correct as f64 / labels.len() as f64 >= 0.95,
        "{correct}/{}",
        labels.len()
    );

    let bogus = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "x",
        "--method",
        "bogus",
        "--val",
        SAMPLE_TEST_SET,
    ]);
    assert!(!bogus.status.success());
    let err = String::from_utf8_lossy(&bogus.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("method \"bogus\""),
        "{err}"
    );
}

#[test]
fn dsmilctl_quantize_runs_the_quantizer_on_the_daemon_and_stores_nothing() {
    let daemon = Daemon::start();
    let out = daemon.dir.path().join("digits.int8.onnx");
    let out_path = out.to_str().unwrap();
    let page = daemon.dir.path().join("q.html");
    let report = daemon.ctl_json(&[
        "quantize",
        SAMPLE_MODEL,
        "--calib",
        SAMPLE_TEST_SET,
        "--val",
        SAMPLE_TEST_SET,
        "--method",
        "entropy",
        "-o",
        out_path,
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(report["model"], "model", "named after the file");
    assert_eq!(report["method"], "entropy");
    assert!(report["retention"].as_f64().unwrap() >= 0.99, "{report}");
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written.len() as u64, report["size_after"].as_u64().unwrap());
    let proto = ModelProto::decode(written.as_slice()).unwrap();
    assert!(
        proto
            .graph
            .unwrap()
            .node
            .iter()
            .any(|n| n.op_type() == "QuantizeLinear"),
        "a QDQ model"
    );
    assert!(std::fs::read_to_string(&page).unwrap().contains("retention"));
    let models = daemon.ctl_json(&["models"]);
    assert_eq!(
        models["models"].as_array().expect("models listed").len(),
        0,
        "quantizing records no model: {models}"
    );
    // The written model deploys as already INT8.
    let deployed = daemon.ctl_json(&["deploy", out_path, "--name", "digits8", "--device", "47"]);
    assert!(
        stage_detail(&deployed, "Quantizing").starts_with("already INT8"),
        "{deployed}"
    );

    let missing = daemon.ctl(&["quantize", SAMPLE_MODEL, "--method", "minmax", "-o", out_path]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("needs calibration data"),
        "{err}"
    );
    let broken = daemon.ctl(&["quantize", SAMPLE_TEST_SET, "--method", "dynamic", "-o", out_path]);
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("InvalidArgument"));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        written,
        "a failed quantize leaves the old output"
    );
}

#[test]
fn bias_adds_and_relus_fold_into_the_integer_kernels() {
    // The sample: Mul, MatMul + Add (bias), Relu, MatMul + Add, Softmax, ArgMax.
    let model = sample_bytes();
    let sig = signature(&model);
    let calibration = Samples::read(std::path::Path::new(SAMPLE_TEST_SET), &sig, 100).unwrap();
    let quantize = |activations| {
        let options = Options {
            activations,
            ..options(Method::MinMax)
        };
        let q = compress::quantize_static(runtime(), &model, &calibration, Some(&calibration), &options).unwrap();
        let proto = ModelProto::decode(q.model.as_slice()).unwrap();
        let graph = proto.graph.unwrap();
        let float_ops: Vec<(String, String)> = graph
            .node
            .iter()
            .filter(|n| !n.op_type().ends_with("QuantizeLinear"))
            .map(|n| (n.op_type().to_owned(), n.name().to_owned()))
            .collect();
        let quantized_outputs: Vec<String> = graph
            .node
            .iter()
            .filter(|n| n.op_type() == "QuantizeLinear")
            .map(|n| n.input[0].clone())
            .collect();
        (q.report, float_ops, quantized_outputs)
    };

    let (report, ops, quantized) = quantize(ActivationType::U8Asymmetric);
    let gemms: Vec<&str> = ops
        .iter()
        .filter(|(op, _)| op == "Gemm")
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(
        gemms,
        vec!["fc1", "fc2"],
        "MatMul + bias Add became Gemm, named as the MatMul: {ops:?}"
    );
    assert!(
        !ops.iter().any(|(op, _)| op == "Relu" || op == "Add" || op == "MatMul"),
        "the Relu is absorbed by the uint8 quantization of fc1's output: {ops:?}"
    );
    assert!(
        !quantized.iter().any(|t| t == "probabilities" || t == "label"),
        "graph outputs stay float: {quantized:?}"
    );
    assert_eq!(report.quantized_nodes, vec!["fc1", "fc2"]);
    assert!(report.evaluation.unwrap().retention >= 0.99);

    // Symmetric int8 activations can hold negatives: the Relu must stay.
    let (_, ops, _) = quantize(ActivationType::I8Symmetric);
    assert!(ops.iter().any(|(op, _)| op == "Relu"), "{ops:?}");
}

#[test]
fn dsmild_quantize_writes_nothing_when_the_result_is_fp32_in_practice() {
    // No weight op in the main graph: "INT8" would be FP32 under another
    // name, which a deploy refuses and the offline quantizer now says too.
    let graph = GraphProto {
        node: vec![common::onnx::node("Relu", &["x"], &["y"])],
        input: vec![common::onnx::value("x", &[-1, 4])],
        output: vec![common::onnx::value("y", &[-1, 4])],
        name: Some("relu".into()),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("relu.onnx");
    std::fs::write(&model, common::onnx::model(graph, &[("", 13)])).unwrap();
    let x = ndarray::Array2::from_shape_fn((8, 4), |(i, j)| (i * 4 + j) as f32 / 10.0).into_dyn();
    let calib = npz(dir.path(), "calib.npz", &[("x", x)], None);
    let out = dir.path().join("int8.onnx");
    let args = |extra: &[&'static str]| {
        let mut a = vec!["quantize", model.to_str().unwrap(), "--calib", calib.to_str().unwrap()];
        a.extend(["-o", out.to_str().unwrap()]);
        a.extend(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let refused = dsmild(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("0.0% of its multiply-accumulates in INT8") && stderr.contains("--allow-fp32"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
    let written = dsmild(&args(&["--allow-fp32"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    assert!(out.exists());
}

/// Gated on its own calibration data, the gate takes FP32's answers from
/// the calibration runs instead of running FP32 again: the verdict must be
/// the one the same data gives when read as separate validation samples
/// (FP32 run fresh), figure for figure.
#[test]
fn the_gate_on_calibration_data_reuses_its_answers_and_judges_the_same() {
    let model = sample_bytes();
    let sig = signature(&model);
    let path = std::path::Path::new(SAMPLE_TEST_SET);
    let calibration = Samples::read(path, &sig, 200).unwrap();
    let same_file = Samples::read(path, &sig, 200).unwrap();
    let reused = compress::quantize_static(
        runtime(),
        &model,
        &calibration,
        Some(&calibration),
        &options(Method::MinMax),
    )
    .unwrap()
    .report;
    let fresh = compress::quantize_static(
        runtime(),
        &model,
        &calibration,
        Some(&same_file),
        &options(Method::MinMax),
    )
    .unwrap()
    .report;
    let (a, b) = (reused.evaluation.unwrap(), fresh.evaluation.unwrap());
    assert_eq!((a.metric.as_str(), a.samples), (b.metric.as_str(), b.samples));
    assert!(
        (a.int8 - b.int8).abs() < 1e-9 && (a.fp32 - b.fp32).abs() < 1e-9,
        "{a:?} vs {b:?}"
    );
    assert!((a.mean_cosine - b.mean_cosine).abs() < 1e-4, "{a:?} vs {b:?}");
    assert!(
        a.fp32_p50_ms > 0.0 && a.int8_p50_ms > 0.0,
        "latencies still measured: {a:?}"
    );
}
