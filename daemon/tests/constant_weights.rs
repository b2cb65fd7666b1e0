//! Weights held in `Constant` nodes (as some exporters write every weight),
//! or reached from one through Identity or a Cast from float16, are weights:
//! validation counts them as parameters and the quantizer quantizes the
//! model exactly as it does the same model with initializers, on real ONNX
//! Runtime.

mod common;

use common::onnx::{attr_int, floats, model, node, node_with, value};
use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{AttributeProto, GraphProto, NodeProto, TensorProto, attribute_proto};
use dsmild::backend::{Backend, LoadOptions, OnnxRuntime};
use dsmild::compress::gate::{GateSpec, Thresholds};
use dsmild::compress::{self, ActivationType, Method, Options, Samples};
use rand::Rng;

/// ONNX Runtime, shared by this file's tests.
fn runtime() -> &'static OnnxRuntime {
    common::ort()
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u64 * 7 + seed * 13) % 17) as f32 - 8.0) / 32.0)
        .collect()
}

fn constant(output: &str, tensor: TensorProto) -> NodeProto {
    node_with(
        "Constant",
        &[],
        &[output],
        vec![AttributeProto {
            name: Some("value".into()),
            r#type: Some(attribute_proto::AttributeType::Tensor as i32),
            t: Some(tensor),
            ..Default::default()
        }],
    )
}

/// x [?, 16] → Gemm(w1, b1) → Relu → Gemm(w2, b2) → y [?, 5], the weights
/// as initializers or held in nodes.
fn classifier(in_nodes: bool) -> Vec<u8> {
    let (w1, b1, w2, b2) = (
        floats("w1", &[32, 16], &values(512, 1)),
        floats("b1", &[32], &values(32, 2)),
        floats("w2", &[5, 32], &values(160, 3)),
        floats("b2", &[5], &values(5, 4)),
    );
    let gemms = vec![
        node_with("Gemm", &["x", "w1", "b1"], &["h"], vec![attr_int("transB", 1)]),
        node("Relu", &["h"], &["r"]),
        node_with("Gemm", &["r", "w2", "b2"], &["y"], vec![attr_int("transB", 1)]),
    ];
    let (nodes, initializers) = if in_nodes {
        // w2 through an Identity; b2 stored as float16 behind a Cast.
        let b2_half = TensorProto {
            name: Some("b2_half".into()),
            dims: vec![5],
            data_type: Some(OnnxType::Float16 as i32),
            raw_data: Some(
                values(5, 4)
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            ..Default::default()
        };
        let mut nodes = vec![
            constant("w1", w1),
            constant("b1", b1),
            constant("w2_raw", floats("w2_raw", &[5, 32], &values(160, 3))),
            node("Identity", &["w2_raw"], &["w2"]),
            constant("b2_half", b2_half),
            node_with(
                "Cast",
                &["b2_half"],
                &["b2"],
                vec![attr_int("to", OnnxType::Float as i64)],
            ),
        ];
        nodes.extend(gemms);
        (nodes, vec![])
    } else {
        (gemms, vec![w1, b1, w2, b2])
    };
    model(
        GraphProto {
            name: Some("classifier".into()),
            node: nodes,
            input: vec![value("x", &[-1, 16])],
            output: vec![value("y", &[-1, 5])],
            initializer: initializers,
            ..Default::default()
        },
        &[("", 13)],
    )
}

#[test]
fn weights_in_constant_nodes_are_counted_and_quantized_like_initializers() {
    let (plain, held) = (classifier(false), classifier(true));
    let count = |b: &[u8]| {
        dsmild::model::inspect(dsmil_kinds::Format::Onnx, b)
            .unwrap()
            .parameter_count
    };
    assert_eq!(count(&plain), 512 + 32 + 160 + 5);
    // The node-held copy counts w2 once (its Identity is no weight) and b2
    // in float16: the same parameters.
    assert_eq!(count(&held), count(&plain));

    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let data = ndarray::Array2::from_shape_fn((48, 16), |_| rng.random_range(-1.0f32..1.0));
    let path = dir.path().join("calib.npz");
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
    w.add_array("x", &data).unwrap();
    w.finish().unwrap();
    let options = Options {
        method: Method::MinMax,
        activations: ActivationType::U8Asymmetric,
        max_samples: 48,
        fallback_evaluations: 4,
        state: Vec::new(),
        gate: GateSpec {
            metric: None,
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
    let quantize = |bytes: &[u8]| {
        let loaded = runtime().load(bytes, &LoadOptions::default()).unwrap();
        let samples = Samples::read(&path, loaded.signature(), 48).unwrap();
        compress::quantize(runtime(), bytes, Some(&samples), Some(&samples), &options).unwrap()
    };
    let (a, b) = (quantize(&plain), quantize(&held));
    assert_eq!(a.report.promoted_constants, 0);
    assert_eq!(
        b.report.promoted_constants, 6,
        "3 Constants of weights, the Identity, the Cast and the fp16 one"
    );
    assert_eq!(a.report.quantized_nodes, b.report.quantized_nodes);
    assert_eq!(b.report.quantized_nodes.len(), 2, "{:?}", b.report.quantized_nodes);
    assert!(b.report.int8_mac_share > 0.99, "{}", b.report.int8_mac_share);
    assert!(
        b.model.len() < held.len(),
        "INT8 weights make the file smaller: {} → {}",
        held.len(),
        b.model.len()
    );
}
