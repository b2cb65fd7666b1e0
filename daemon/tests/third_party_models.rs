//! Models dsmil did not build: the ONNX model-zoo topologies the pinned
//! `onnx` wheel ships for its own backend tests (SqueezeNet, ShuffleNet,
//! ResNet-50, Inception v1, DenseNet-121 exported by other tools, weights
//! made constant to stay small), found in the `.venv` scripts/setup.sh
//! installs. Each passes validation and the security scan, serves, and
//! refuses a request that lies about its shape without harm.

mod common;

use std::path::PathBuf;

use common::*;
use dsmil_proto::inference as pb;

/// The onnx package's "light" models, from the project's .venv.
fn light_models() -> PathBuf {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", "import onnx, os; print(os.path.dirname(onnx.__file__))"])
        .output()
        .expect("the .venv scripts/setup.sh makes");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("backend/test/data/light");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn model_zoo_exports_deploy_serve_and_refuse_lying_shapes() {
    let daemon = Daemon::start();
    let dir = light_models();
    for (i, name) in ["squeezenet", "shufflenet", "resnet50", "inception_v1", "densenet121"]
        .iter()
        .enumerate()
    {
        let file = dir.join(format!("light_{name}.onnx"));
        let device = (43 + i).to_string();
        let deployed = daemon.ctl_json(&[
            "deploy",
            file.to_str().unwrap(),
            "--name",
            name,
            "--allow-fp32",
            "--device",
            &device,
        ]);
        assert_eq!(deployed["state"], "Active", "{deployed}");

        let meta = daemon
            .inference()
            .await
            .model_metadata(pb::ModelMetadataRequest {
                name: name.to_string(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let input = &meta.inputs[0];
        assert_eq!(input.datatype, "FP32", "{name}");
        let shape: Vec<i64> = input.shape.iter().map(|&d| d.max(1)).collect();
        let count: i64 = shape.iter().product();
        let request = |shape: Vec<i64>, count: i64| pb::ModelInferRequest {
            model_name: name.to_string(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: input.name.clone(),
                datatype: "FP32".into(),
                shape,
                ..Default::default()
            }],
            raw_input_contents: vec![f32_bytes(&vec![0.5; count as usize]).into()],
            ..Default::default()
        };
        let answer = daemon
            .inference()
            .await
            .model_infer(request(shape.clone(), count))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", daemon.log()))
            .into_inner();
        let out: i64 = answer.outputs[0].shape.iter().product();
        assert_eq!(out, 1000, "{name}: 1000 ImageNet classes");
        let values = f32_values(&answer.raw_output_contents[0]);
        assert!(values.iter().all(|v| v.is_finite()), "{name}");

        // The header claims one more row than the bytes hold.
        let mut lying = shape.clone();
        lying[0] += 1;
        let status = daemon
            .inference()
            .await
            .model_infer(request(lying, count))
            .await
            .expect_err("a lying shape is refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{name}: {status:?}");
    }
    // Every model still serves after the refusals.
    let models = daemon.ctl_json(&["models"]);
    let serving = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "serving")
        .count();
    assert_eq!(serving, 5, "{models}");
}

/// The zoo's exports are opset 9 with Dropout and a Softmax over axis 1 and
/// a fixed batch of 1: upgraded to opset 13, the upgrade computes what the
/// original does on real inputs (whole images stacked on a new axis, as a
/// fixed-batch model's data is given), on real ONNX Runtime.
#[test]
fn model_zoo_exports_at_opset_9_upgrade_to_13_unchanged() {
    use dsmild::backend::{Backend, LoadOptions, OnnxRuntime, locate_onnxruntime};
    let runtime = OnnxRuntime::load(&locate_onnxruntime(None).unwrap()).unwrap();
    let dir = light_models();
    let data_dir = tempfile::tempdir().unwrap();
    let images = ndarray::Array5::from_shape_fn((2, 1, 3, 224, 224), |(n, _, c, y, x)| {
        ((n * 7 + c * 3 + y + x) % 255) as f32 / 255.0
    });
    let path = data_dir.path().join("images.npz");
    for name in ["bvlc_alexnet", "zfnet512", "resnet50"] {
        let bytes = std::fs::read(dir.join(format!("light_{name}.onnx"))).unwrap();
        let loaded = runtime.load(&bytes, &LoadOptions::default()).unwrap();
        let input = loaded.signature().inputs[0].name.clone();
        let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
        w.add_array(input.as_str(), &images).unwrap();
        w.finish().unwrap();
        let samples = dsmild::compress::Samples::read(&path, loaded.signature(), 2).unwrap();
        assert_eq!(samples.len(), 2, "{name}: two images for a batch-1 input");
        let (upgraded, report) = dsmild::compress::upgrade_checked(&runtime, &bytes, Some(&samples))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .expect("opset 9 is upgraded");
        assert_eq!(report.from, 9, "{name}");
        assert!(
            report.rewrites.iter().any(|r| r.contains("(Softmax)")),
            "{name}: {:?}",
            report.rewrites
        );
        runtime
            .load(&upgraded, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: the upgrade does not load: {e}"));
    }
}
