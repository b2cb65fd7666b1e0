//! Deployments served by OpenVINO's CPU plugin through dsmild: the same
//! answers as ONNX Runtime's, restored after a restart from the compiled
//! cache, and the choice of backend per deploy.

mod common;

use common::*;
use dsmil_proto::inference as pb;

fn stage_detail(deployment: &serde_json::Value, state: &str) -> String {
    deployment["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == state)
        .map(|h| h["detail"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Each row's probabilities and label from `dsmilctl infer`.
fn answers(daemon: &Daemon, model: &str) -> (Vec<f64>, Vec<i64>) {
    let out = daemon.ctl_json(&["infer", model, "--input", SAMPLE_TEST_SET]);
    let outputs = out["outputs"].as_array().unwrap();
    let by_name = |name: &str| outputs.iter().find(|o| o["name"] == name).unwrap()["data"].clone();
    let probabilities = by_name("probabilities")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let labels = by_name("label")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    (probabilities, labels)
}

#[test]
fn openvino_deployments_answer_like_onnxruntime_and_restore_from_the_cache() {
    let daemon = Daemon::start();
    // Nothing needs a runtime yet: neither is mapped, and status says so
    // without loading them.
    let maps = || std::fs::read_to_string(format!("/proc/{}/maps", daemon.pid())).unwrap();
    assert!(!maps().contains("libopenvino"), "OpenVINO loaded before use");
    assert!(!maps().contains("libonnxruntime"), "ONNX Runtime loaded before use");
    let status = daemon.ctl_json(&["status"]);
    assert!(
        status["runtimes"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("loads on first use"),
        "{status}"
    );
    // The devices' effective targets need OpenVINO's device list.
    daemon.ctl_json(&["devices"]);
    assert!(maps().contains("libopenvino"));
    let status = daemon.ctl_json(&["status"]);
    let openvino = status["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "openvino")
        .cloned()
        .unwrap();
    assert_eq!(openvino["available"], true, "{status}");
    assert!(openvino["detail"].as_str().unwrap().contains("CPU ("), "{openvino}");
    let cpu = &status["openvino_devices"][0];
    assert_eq!(cpu["name"], "CPU");
    assert!(
        cpu["properties"]["OPTIMIZATION_CAPABILITIES"]
            .as_str()
            .unwrap()
            .contains("FP32"),
        "{cpu}"
    );

    let int8 = ["--calib", SAMPLE_TEST_SET, "--val", SAMPLE_TEST_SET];
    let mut args = vec!["deploy", SAMPLE_MODEL, "--name", "digits-ort", "--device", "46"];
    args.extend(int8);
    let ort = daemon.ctl_json(&args);
    let mut ov_args = vec![
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "digits-ov",
        "--device",
        "47",
        "--backend",
        "openvino",
        "--infer-requests",
        "3",
    ];
    ov_args.extend(int8);
    let ov = daemon.ctl_json(&ov_args);
    assert_eq!(ov["infer_requests"], 3);
    assert_eq!(ort["backend"], "onnxruntime");
    assert_eq!(ov["backend"], "openvino");
    assert_eq!(ov["effective_target"], "cpu", "no GPU here: the fallback is visible");
    let compiling = stage_detail(&ov, "Compiling");
    assert!(
        compiling
            .contains("openvino CPU (performance hint LATENCY, inference precision f32) session, 3 infer requests"),
        "{compiling}"
    );
    assert_eq!(ov["sha256"], ort["sha256"], "the same INT8 model on both");
    // ONNX Runtime has no compiled-model cache to say it came from.
    let loading = stage_detail(&ort, "Loading");
    assert!(loading.starts_with("compiled in"), "{loading}");
    let npu = daemon.ctl_json(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "on-npu",
        "--device",
        "3",
        "--allow-fp32",
    ]);
    assert_eq!(
        (npu["target"].as_str(), npu["effective_target"].as_str()),
        (Some("npu"), Some("cpu"))
    );
    let warnings = daemon.ctl_json(&["status"])["warnings"].to_string();
    assert!(
        warnings.contains("on-npu v1 on device 3 wants npu (absent on this host); running on cpu"),
        "{warnings}"
    );

    let (p_ort, l_ort) = answers(&daemon, "digits-ort");
    let (p_ov, l_ov) = answers(&daemon, "digits-ov");
    let worst = p_ort.iter().zip(&p_ov).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 0.05, "probabilities differ by up to {worst}");
    let agree = l_ort.iter().zip(&l_ov).filter(|(a, b)| a == b).count();
    assert!(
        agree * 100 >= l_ort.len() * 98,
        "labels agree on {agree}/{}",
        l_ort.len()
    );

    let dir = daemon.stop();
    let blobs = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("cache/openvino"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "blob"))
            .count()
    };
    assert!(blobs(dir.path()) >= 1, "the compiled model is in the daemon's cache");
    let daemon = Daemon::start_in(dir, &[]);
    let restored = daemon.ctl_json(&["deployments", "--model", "digits-ov"]);
    assert_eq!(restored["deployments"][0]["backend"], "openvino");
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("deployment restored") && l.contains("digits-ov"))
        .unwrap_or_else(|| panic!("no restore line:\n{log}"));
    assert!(line.contains("from_cache=true"), "the restart read the cache: {line}");
    // The same model deployed again with the same settings: no compile.
    let again = daemon.ctl_json(&ov_args);
    let loading = stage_detail(&again, "Loading");
    assert!(
        loading.starts_with("loaded from OpenVINO's model cache in"),
        "{loading}"
    );
    let (p_again, _) = answers(&daemon, "digits-ov");
    assert_eq!(p_again, p_ov, "restored on OpenVINO, same answers");

    let bogus = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "x",
        "--allow-fp32",
        "--backend",
        "tensorrt",
    ]);
    assert!(!bogus.status.success());
    let err = String::from_utf8_lossy(&bogus.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("expected onnxruntime or openvino"),
        "{err}"
    );
}

const SAMPLE_IR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/ir/model.xml");

#[test]
fn an_openvino_ir_deploys_with_its_weights_onto_openvino_only() {
    let daemon = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    // The .xml alone: the .bin is not beside it.
    let lonely = dir.path().join("model.xml");
    std::fs::copy(SAMPLE_IR, &lonely).unwrap();
    let out = daemon.ctl(&[
        "deploy",
        lonely.to_str().unwrap(),
        "--name",
        "ir",
        "--allow-fp32",
        "--backend",
        "openvino",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("the .bin is missing"),
        "{err}"
    );

    let on_ort = daemon.ctl(&["deploy", SAMPLE_IR, "--name", "ir", "--allow-fp32", "--device", "46"]);
    assert!(!on_ort.status.success());
    let err = String::from_utf8_lossy(&on_ort.stderr);
    assert!(
        err.contains("FailedPrecondition")
            && err.contains("runs only on OpenVINO")
            && err.contains("--backend openvino"),
        "{err}"
    );
    let fp32 = daemon.ctl(&["deploy", SAMPLE_IR, "--name", "ir", "--backend", "openvino"]);
    assert!(!fp32.status.success());
    let err = String::from_utf8_lossy(&fp32.stderr);
    assert!(
        err.contains("quantizes ONNX models only") && err.contains("--allow-fp32"),
        "{err}"
    );
    assert!(
        daemon.ctl_json(&["deployments"])["deployments"]
            .as_array()
            .is_none_or(|d| d.is_empty()),
        "refusals record nothing"
    );

    let ir = daemon.ctl_json(&[
        "deploy",
        SAMPLE_IR,
        "--name",
        "ir",
        "--allow-fp32",
        "--backend",
        "openvino",
        "--device",
        "47",
    ]);
    assert_eq!(ir["state"], "Active");
    assert_eq!(ir["backend"], "openvino");
    assert!(stage_detail(&ir, "Validating").starts_with("OpenVINO IR,"), "{ir}");
    let onnx = daemon.ctl_json(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "onnx",
        "--allow-fp32",
        "--device",
        "46",
    ]);
    assert_eq!(onnx["backend"], "onnxruntime");
    let (p_ir, l_ir) = answers(&daemon, "ir");
    let (p_onnx, l_onnx) = answers(&daemon, "onnx");
    let worst = p_ir.iter().zip(&p_onnx).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-4, "the IR answers like its ONNX original: {worst}");
    assert_eq!(l_ir, l_onnx);
    let models = daemon.ctl_json(&["models"]);
    let ir_model = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "ir")
        .unwrap()
        .clone();
    assert_eq!(ir_model["versions"][0]["format"], "ir");

    // A per-deployment precision hint, recorded and used.
    let bf16 = daemon.ctl_json(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "bf16",
        "--allow-fp32",
        "--backend",
        "openvino",
        "--device",
        "45",
        "--precision",
        "bf16",
    ]);
    assert_eq!(bf16["precision"], "bf16");
    assert!(
        stage_detail(&bf16, "Compiling").contains("inference precision bf16"),
        "{bf16}"
    );
    let (p_bf16, _) = answers(&daemon, "bf16");
    let worst = p_bf16
        .iter()
        .zip(&p_onnx)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 0.1,
        "bf16 (or f32 where the CPU has no bf16) stays close: {worst}"
    );
    let bad = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "x",
        "--allow-fp32",
        "--precision",
        "int4",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected f32, bf16 or f16"));

    let fake = dir.path().join("fake.tflite");
    std::fs::write(&fake, b"this is no flatbuffer").unwrap();
    let out = daemon.ctl(&[
        "deploy",
        fake.to_str().unwrap(),
        "--name",
        "t",
        "--allow-fp32",
        "--backend",
        "openvino",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("not a TensorFlow Lite model"),
        "{err}"
    );
}

const SAMPLE_TFLITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/model.tflite");

/// fixtures/digits/gen_tflite.py writes the sample as a TFLite flatbuffer;
/// OpenVINO's TFLite frontend reads it, and it serves like the ONNX original.
#[tokio::test(flavor = "multi_thread")]
async fn a_tflite_model_deploys_onto_openvino_and_answers_like_its_onnx_original() {
    let daemon = Daemon::start();
    let on_ort = daemon.ctl(&[
        "deploy",
        SAMPLE_TFLITE,
        "--name",
        "lite",
        "--allow-fp32",
        "--device",
        "46",
    ]);
    let err = String::from_utf8_lossy(&on_ort.stderr);
    assert!(
        err.contains("FailedPrecondition") && err.contains("--backend openvino"),
        "{err}"
    );
    let lite = daemon.ctl_json(&[
        "deploy",
        SAMPLE_TFLITE,
        "--name",
        "lite",
        "--allow-fp32",
        "--backend",
        "openvino",
        "--device",
        "47",
    ]);
    assert_eq!(lite["state"], "Active", "{lite}");
    assert_eq!(lite["backend"], "openvino");
    assert!(
        stage_detail(&lite, "Validating").starts_with("TensorFlow Lite,"),
        "{lite}"
    );
    daemon.ctl_json(&[
        "deploy",
        SAMPLE_MODEL,
        "--name",
        "onnx",
        "--allow-fp32",
        "--device",
        "46",
    ]);

    // The signature comes from the compiled model: TFLite's dynamic batch
    // (shape_signature -1) and its int64 ArgMax output included.
    let meta = daemon
        .inference()
        .await
        .model_metadata(pb::ModelMetadataRequest {
            name: "lite".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let signature = |tensors: &[pb::model_metadata_response::TensorMetadata]| {
        tensors
            .iter()
            .map(|t| (t.name.clone(), t.datatype.clone(), t.shape.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        signature(&meta.inputs),
        vec![("pixels".to_owned(), "FP32".to_owned(), vec![-1, 64])]
    );
    assert_eq!(
        signature(&meta.outputs),
        vec![
            ("probabilities".to_owned(), "FP32".to_owned(), vec![-1, 10]),
            ("label".to_owned(), "INT64".to_owned(), vec![-1]),
        ]
    );

    let (p_lite, l_lite) = answers(&daemon, "lite");
    let (p_onnx, l_onnx) = answers(&daemon, "onnx");
    assert_eq!(p_lite.len(), p_onnx.len());
    let worst = p_lite
        .iter()
        .zip(&p_onnx)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "the TFLite model answers like its ONNX original: {worst}");
    assert_eq!(l_lite, l_onnx);
    let (_, labels) = test_set();
    let correct = l_lite.iter().zip(labels.iter()).filter(|(a, b)| a == b).count();
    assert!(
        correct as f64 / labels.len() as f64 > 0.95,
        "{correct} of {}",
        labels.len()
    );
}
