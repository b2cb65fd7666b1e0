//! The mixed-precision fallback on real ONNX Runtime finds the few layers
//! that break the gate by a one-pass sensitivity ranking, on deep models:
//! a 200-layer model with one layer whose input INT8 cannot represent, and
//! a model with two such layers, are rescued in a handful of evaluations,
//! with exactly those layers returned to FP32.

mod common;

use common::onnx::{attr_int, floats, model, node, node_with, value};
use dsmil_proto::onnx::GraphProto;
use dsmild::backend::{Backend, LoadOptions, OnnxRuntime};
use dsmild::compress::gate::{GateSpec, Thresholds};
use dsmild::compress::{self, ActivationType, Method, Options, Samples};
use rand::{Rng, SeedableRng};

const WIDTH: usize = 16;

/// ONNX Runtime, shared by this file's tests.
fn runtime() -> &'static OnnxRuntime {
    common::ort()
}

/// x [?, 16] → `layers` MatMuls (near-identity) → MatMul [16, 10] →
/// Softmax. Each layer in `outliers` makes its output channel 0 a thousand
/// times larger and the next layer reads it a thousand times smaller, so
/// the model computes the same function but the activation between them
/// has a range INT8 cannot share with its other 15 channels. Returns the model
/// and the names of the layers that read those activations.
fn deep(layers: usize, outliers: &[usize]) -> (Vec<u8>, Vec<String>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut sensitive = Vec::new();
    let mut previous = "x".to_owned();
    for i in 0..layers {
        let mut w: Vec<f32> = (0..WIDTH * WIDTH)
            .map(|k| {
                if k / WIDTH == k % WIDTH {
                    1.0
                } else {
                    rng.random_range(-0.02f32..0.02)
                }
            })
            .collect();
        // x @ W: column j makes output channel j, row i reads input i.
        if outliers.contains(&i) {
            (0..WIDTH).for_each(|r| w[r * WIDTH] *= 1000.0);
        }
        if i > 0 && outliers.contains(&(i - 1)) {
            w[..WIDTH].iter_mut().for_each(|v| *v /= 1000.0);
            sensitive.push(format!("MatMul_h{i}"));
        }
        let out = format!("h{i}");
        inits.push(floats(&format!("w{i}"), &[WIDTH as i64, WIDTH as i64], &w));
        nodes.push(node("MatMul", &[&previous, &format!("w{i}")], &[&out]));
        previous = out;
    }
    let head: Vec<f32> = (0..WIDTH * 10).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    inits.push(floats("head", &[WIDTH as i64, 10], &head));
    nodes.push(node("MatMul", &[&previous, "head"], &["logits"]));
    nodes.push(node_with("Softmax", &["logits"], &["y"], vec![attr_int("axis", -1)]));
    let bytes = model(
        GraphProto {
            name: Some("deep".into()),
            node: nodes,
            input: vec![value("x", &[-1, WIDTH as i64])],
            output: vec![value("y", &[-1, 10])],
            initializer: inits,
            ..Default::default()
        },
        &[("", 13)],
    );
    (bytes, sensitive)
}

fn quantize(bytes: &[u8]) -> Result<compress::Quantized, compress::CompressError> {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let data = ndarray::Array2::from_shape_fn((64, WIDTH), |_| rng.random_range(-1.0f32..1.0));
    let path = dir.path().join("data.npz");
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
    w.add_array("x", &data).unwrap();
    w.finish().unwrap();
    let loaded = runtime().load(bytes, &LoadOptions::default()).unwrap();
    let samples = Samples::read(&path, loaded.signature(), 64).unwrap();
    let options = Options {
        method: Method::MinMax,
        activations: ActivationType::U8Asymmetric,
        max_samples: 64,
        fallback_evaluations: 16,
        state: Vec::new(),
        gate: GateSpec {
            metric: None,
            // 200 INT8 layers in a row lose ~6% agreement by rounding
            // alone: the gate here asks 90%.
            thresholds: Thresholds {
                retention: 0.9,
                position: 0.9,
                sequence: 0.9,
                cosine: 0.99,
                snr_db: 20.0,
                iou: 0.9,
            },
        },
    };
    compress::quantize(runtime(), bytes, Some(&samples), Some(&samples), &options)
}

#[test]
fn a_200_layer_model_with_one_bad_layer_is_rescued_in_a_few_evaluations() {
    let (clean, _) = deep(200, &[]);
    let q = quantize(&clean).expect("without outliers, full INT8 passes");
    assert!(q.report.fp32_fallback.is_empty(), "{:?}", q.report.fp32_fallback);

    let (bytes, sensitive) = deep(200, &[120]);
    let q = quantize(&bytes).expect("the fallback rescues it");
    let r = &q.report;
    assert_eq!(
        r.fp32_fallback, sensitive,
        "exactly the layer reading the outlier activation"
    );
    assert!(r.evaluations <= 3, "{} evaluations", r.evaluations);
    assert!(r.evaluation.as_ref().unwrap().passes());
    assert!(r.int8_mac_share > 0.99, "{}", r.int8_mac_share);
}

#[test]
fn two_sensitive_layers_are_both_found() {
    let (bytes, sensitive) = deep(40, &[10, 25]);
    let q = quantize(&bytes).expect("the fallback rescues it");
    let mut kept = q.report.fp32_fallback.clone();
    kept.sort();
    let mut want = sensitive.clone();
    want.sort();
    assert_eq!(kept, want);
    assert!(q.report.evaluations <= 4, "{} evaluations", q.report.evaluations);
}
