//! Opset 7–12 models upgraded to 13, checked on real ONNX Runtime: for each
//! operator whose definition changed on the way, a model built at the old
//! opset and its upgrade are run on the same random inputs and must agree;
//! an opset-11 classifier then quantizes end to end through
//! `compress::quantize`, which upgrades it first and says so in the report.

mod common;

use common::onnx::{
    attr_float as float, attr_floats as floats, attr_int as int, attr_ints as ints, attr_string as string,
    floats as const_f32, int64s, node_with as op, output, value,
};
use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};
use dsmild::backend::{Backend, DataType, LoadOptions, OnnxRuntime, Tensor};
use dsmild::compress::opset;
use prost::Message;
use rand::Rng;

/// ONNX Runtime, shared by this file's tests.
fn runtime() -> &'static OnnxRuntime {
    common::ort()
}

struct Case {
    what: &'static str,
    opset: i64,
    input: Vec<i64>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    outputs: Vec<ValueInfoProto>,
}

fn model(case: &Case) -> ModelProto {
    ModelProto {
        ir_version: Some(if case.opset < 9 { 3 } else { 6 }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(case.opset),
        }],
        graph: Some(GraphProto {
            name: Some(case.what.into()),
            node: case.nodes.clone(),
            input: vec![value("x", &case.input)],
            output: case.outputs.clone(),
            initializer: case.initializers.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An int64 initializer of `dims` (common's `int64s` is 1-D).
fn int64s_shaped(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        ..int64s(name, values)
    }
}

fn f32_out(name: &str) -> ValueInfoProto {
    output(name, OnnxType::Float)
}

fn cases() -> Vec<Case> {
    let case = |what, opset, input: &[i64], nodes, initializers, outputs| Case {
        what,
        opset,
        input: input.to_vec(),
        nodes,
        initializers,
        outputs,
    };
    let y = || vec![f32_out("y")];
    vec![
        case(
            "Softmax axis 1 of rank 3 (flattened)",
            11,
            &[2, 3, 4],
            vec![op("Softmax", &["x"], &["y"], vec![int("axis", 1)])],
            vec![],
            y(),
        ),
        case(
            "LogSoftmax default axis of rank 2",
            9,
            &[2, 5],
            vec![op("LogSoftmax", &["x"], &["y"], vec![])],
            vec![],
            y(),
        ),
        case(
            "Hardmax axis 1 of rank 3",
            12,
            &[2, 3, 4],
            vec![op("Hardmax", &["x"], &["y"], vec![int("axis", 1)])],
            vec![],
            y(),
        ),
        case(
            "Split with split attribute",
            12,
            &[2, 3, 4],
            vec![op(
                "Split",
                &["x"],
                &["a", "b"],
                vec![int("axis", 1), ints("split", &[1, 2])],
            )],
            vec![],
            vec![f32_out("a"), f32_out("b")],
        ),
        case(
            "Squeeze axes",
            11,
            &[1, 3, 4],
            vec![op("Squeeze", &["x"], &["y"], vec![ints("axes", &[0])])],
            vec![],
            y(),
        ),
        case(
            "Unsqueeze axes",
            9,
            &[3, 4],
            vec![op("Unsqueeze", &["x"], &["y"], vec![ints("axes", &[0, 3])])],
            vec![],
            y(),
        ),
        case(
            "ReduceSum axes",
            12,
            &[2, 3, 4],
            vec![op(
                "ReduceSum",
                &["x"],
                &["y"],
                vec![ints("axes", &[1]), int("keepdims", 0)],
            )],
            vec![],
            y(),
        ),
        case(
            "Clip min/max attributes",
            9,
            &[2, 8],
            vec![op("Clip", &["x"], &["y"], vec![float("min", -0.2), float("max", 0.3)])],
            vec![],
            y(),
        ),
        case(
            "Pad constant with value",
            9,
            &[1, 2, 3, 3],
            vec![op(
                "Pad",
                &["x"],
                &["y"],
                vec![ints("pads", &[0, 0, 1, 2, 0, 0, 1, 0]), float("value", 0.5)],
            )],
            vec![],
            y(),
        ),
        case(
            "Pad reflect",
            10,
            &[1, 2, 4, 4],
            vec![op(
                "Pad",
                &["x"],
                &["y"],
                vec![ints("pads", &[0, 0, 1, 1, 0, 0, 1, 1]), string("mode", "reflect")],
            )],
            vec![],
            y(),
        ),
        case(
            "Slice attributes",
            9,
            &[2, 3, 6],
            vec![op(
                "Slice",
                &["x"],
                &["y"],
                vec![ints("starts", &[1, 0]), ints("ends", &[3, 2]), ints("axes", &[2, 0])],
            )],
            vec![],
            y(),
        ),
        case(
            "TopK k attribute",
            9,
            &[2, 7],
            vec![op("TopK", &["x"], &["v", "i"], vec![int("k", 3)])],
            vec![],
            vec![f32_out("v"), output("i", OnnxType::Int64)],
        ),
        case(
            "Upsample-7 nearest (scales attribute)",
            7,
            &[1, 2, 3, 3],
            vec![op(
                "Upsample",
                &["x"],
                &["y"],
                vec![floats("scales", &[1.0, 1.0, 2.0, 3.0])],
            )],
            vec![],
            y(),
        ),
        case(
            "Upsample-9 nearest (scales input)",
            9,
            &[1, 2, 3, 3],
            vec![op("Upsample", &["x", "s"], &["y"], vec![string("mode", "nearest")])],
            vec![const_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0])],
            y(),
        ),
        case(
            "Upsample-9 linear",
            9,
            &[1, 2, 3, 3],
            vec![op("Upsample", &["x", "s"], &["y"], vec![string("mode", "linear")])],
            vec![const_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0])],
            y(),
        ),
        case(
            "Resize-10 nearest",
            10,
            &[1, 2, 3, 3],
            vec![op("Resize", &["x", "s"], &["y"], vec![string("mode", "nearest")])],
            vec![const_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0])],
            y(),
        ),
        case(
            "Dropout with ratio attribute and an unused mask",
            10,
            &[2, 5],
            vec![op("Dropout", &["x"], &["y", "mask"], vec![float("ratio", 0.3)])],
            vec![],
            y(),
        ),
        case(
            "BatchNormalization-7 with spatial",
            7,
            &[1, 2, 3, 3],
            vec![op(
                "BatchNormalization",
                &["x", "g", "b", "m", "v"],
                &["y"],
                vec![int("spatial", 1), float("epsilon", 1e-3)],
            )],
            vec![
                const_f32("g", &[2], &[0.5, 2.0]),
                const_f32("b", &[2], &[0.1, -0.3]),
                const_f32("m", &[2], &[0.2, -0.1]),
                const_f32("v", &[2], &[1.5, 0.25]),
            ],
            y(),
        ),
        case(
            "Scatter (renamed ScatterElements)",
            9,
            &[2, 4],
            vec![op("Scatter", &["x", "idx", "upd"], &["y"], vec![int("axis", 1)])],
            vec![
                int64s_shaped("idx", &[2, 1], &[3, 0]),
                const_f32("upd", &[2, 1], &[9.0, -9.0]),
            ],
            y(),
        ),
    ]
}

fn random_input(dims: &[i64]) -> Tensor {
    let count: i64 = dims.iter().product();
    let mut rng = rand::rng();
    let values: Vec<f32> = (0..count).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor {
        name: "x".into(),
        dtype: DataType::F32,
        shape: dims.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn run(model: &ModelProto, input: &Tensor) -> Vec<Tensor> {
    let mut loaded = runtime()
        .load(&model.encode_to_vec(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", model.graph.as_ref().unwrap().name()));
    loaded.run(std::slice::from_ref(input)).unwrap()
}

#[test]
fn every_changed_operator_computes_the_same_after_the_upgrade() {
    for case in cases() {
        let original = model(&case);
        let upgraded = opset::upgrade(&original)
            .unwrap_or_else(|e| panic!("{}: {e}", case.what))
            .expect("older than 13");
        assert_eq!(upgraded.from, case.opset);
        assert!(
            !upgraded.rewrites.is_empty(),
            "{}: the changed operator was not rewritten",
            case.what
        );
        for _ in 0..3 {
            let input = random_input(&case.input);
            let want = run(&original, &input);
            let got = run(&upgraded.model, &input);
            assert_eq!(want.len(), got.len(), "{}", case.what);
            for (w, g) in want.iter().zip(&got) {
                assert_eq!((w.dtype, &w.shape), (g.dtype, &g.shape), "{}: {}", case.what, w.name);
                if w.dtype == DataType::F32 {
                    let (a, b) = (dsmild::backend::f32s(&w.data), dsmild::backend::f32s(&g.data));
                    let worst = a.zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(worst <= 1e-5, "{}: {} differs by {worst}", case.what, w.name);
                } else {
                    assert_eq!(w.data, g.data, "{}: {}", case.what, w.name);
                }
            }
        }
    }
}

#[test]
fn an_opset_11_classifier_is_upgraded_checked_and_quantized() {
    // Gemm → Relu → Gemm → Softmax(axis 1): the shape of most exported
    // classifiers at opset 11.
    let mut rng = rand::rng();
    let mut weights = |name: &str, dims: &[i64]| {
        let n: i64 = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect();
        const_f32(name, dims, &values)
    };
    let case = Case {
        what: "classifier",
        opset: 11,
        input: vec![-1, 16],
        nodes: vec![
            op("Gemm", &["x", "w1", "b1"], &["h"], vec![int("transB", 1)]),
            op("Relu", &["h"], &["r"], vec![]),
            op("Gemm", &["r", "w2", "b2"], &["logits"], vec![int("transB", 1)]),
            op("Softmax", &["logits"], &["y"], vec![int("axis", 1)]),
        ],
        initializers: vec![
            weights("w1", &[32, 16]),
            weights("b1", &[32]),
            weights("w2", &[5, 32]),
            weights("b2", &[5]),
        ],
        outputs: vec![value("y", &[-1, 5])],
    };
    let bytes = model(&case).encode_to_vec();
    let dir = tempfile::tempdir().unwrap();
    let data: ndarray::Array2<f32> = ndarray::Array2::from_shape_fn((64, 16), |_| rng.random_range(-1.0f32..1.0));
    let path = dir.path().join("calib.npz");
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
    w.add_array("x", &data).unwrap();
    w.finish().unwrap();
    let loaded = runtime().load(&bytes, &LoadOptions::default()).unwrap();
    let samples = dsmild::compress::Samples::read(&path, loaded.signature(), 64).unwrap();
    let options = dsmild::compress::Options {
        method: dsmild::compress::Method::MinMax,
        activations: dsmild::compress::ActivationType::U8Asymmetric,
        max_samples: 64,
        fallback_evaluations: 16,
        state: Vec::new(),
        gate: dsmild::compress::gate::GateSpec {
            metric: None,
            thresholds: dsmild::compress::gate::Thresholds {
                retention: 0.5,
                position: 0.9,
                sequence: 0.9,
                cosine: 0.99,
                snr_db: 20.0,
                iou: 0.9,
            },
        },
    };
    let q = dsmild::compress::quantize(runtime(), &bytes, Some(&samples), Some(&samples), &options).unwrap();
    assert_eq!(q.report.upgraded_from_opset, Some(11));
    assert!(
        q.report.opset_rewrites.iter().any(|r| r.contains("Softmax")),
        "{:?}",
        q.report.opset_rewrites
    );
    assert!(q.report.quantized_nodes.len() >= 2, "{:?}", q.report.quantized_nodes);
    let served = ModelProto::decode(q.model.as_slice()).unwrap();
    assert_eq!(
        served
            .opset_import
            .iter()
            .find(|o| o.domain().is_empty())
            .unwrap()
            .version(),
        13
    );
}
