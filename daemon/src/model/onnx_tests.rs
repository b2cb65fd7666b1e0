use dsmil_proto::onnx::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TypeProto, ValueInfoProto, type_proto};
use prost::Message;

use super::*;

fn sample() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/model.onnx")).unwrap()
}

fn tensor_value(name: &str, elem: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: None,
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

#[test]
fn the_sample_model_is_described() {
    let info = inspect_onnx(&sample()).unwrap();
    assert_eq!(info.inputs, vec!["pixels"]);
    assert_eq!(info.outputs, vec!["probabilities", "label"]);
    assert_eq!(info.ir_version, 8);
    assert_eq!(info.opsets, vec![(String::new(), 17)]);
    // 64x64 + 64 + 64x10 + 10 weights and biases, plus the scale constant.
    assert_eq!(info.parameter_count, 64 * 64 + 64 + 64 * 10 + 10 + 1);
    assert_eq!(info.node_count, 8);
    assert!(info.operators.contains(&(String::new(), "MatMul".to_owned())));
}

#[test]
fn garbage_and_truncated_files_are_refused() {
    assert!(matches!(
        inspect_onnx(b"this is not a model"),
        Err(ModelError::NotOnnx(_))
    ));
    let bytes = sample();
    for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 7] {
        assert!(
            inspect_onnx(&bytes[..cut]).is_err(),
            "truncated at {cut} of {} was accepted",
            bytes.len()
        );
    }
}

#[test]
fn every_structural_problem_is_reported_with_its_node() {
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                name: Some("relu_1".into()),
                op_type: Some("Relu".into()),
                input: vec!["nowhere".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![ValueInfoProto {
                name: Some("x".into()),
                ..Default::default()
            }],
            output: vec![tensor_value("y", 1), tensor_value("z", 1)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let Err(ModelError::Invalid(problems)) = inspect_onnx(&model.encode_to_vec()) else {
        panic!("expected Invalid");
    };
    let all = problems.join("\n");
    assert!(all.contains("no opset_import"), "{all}");
    assert!(all.contains("graph input x: no type"), "{all}");
    assert!(
        all.contains("node relu_1 (Relu): input \"nowhere\" is produced by no node"),
        "{all}"
    );
    assert!(all.contains("graph output \"z\" is produced by no node"), "{all}");
    assert_eq!(problems.len(), 4, "{all}");
}

#[test]
fn unsupported_versions_are_named() {
    let mut model = ModelProto::decode(sample().as_slice()).unwrap();
    model.ir_version = Some(2);
    model.opset_import = vec![OperatorSetIdProto {
        domain: Some(String::new()),
        version: Some(99),
    }];
    let Err(ModelError::Invalid(problems)) = inspect_onnx(&model.encode_to_vec()) else {
        panic!("expected Invalid");
    };
    assert!(problems.iter().any(|p| p.contains("ir_version 2")));
    assert!(problems.iter().any(|p| p.contains("opset 99")));
}

/// Every committed ONNX fixture: decoding and re-encoding gives back the
/// same bytes, so nothing the daemon reads and writes (the INT8 rewrite
/// included) can lose a field.
#[test]
fn every_fixture_round_trips_byte_for_byte() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let path = entry.unwrap().path().join("model.onnx");
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            model.encode_to_vec(),
            bytes,
            "{} changed in a round trip",
            path.display()
        );
        checked.push(path);
    }
    assert!(
        checked.len() >= 2,
        "expected the digits and onnx-ir fixtures, found {checked:?}"
    );
}

#[test]
fn the_ir_fixture_keeps_every_part_of_the_ir() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/onnx-ir/model.onnx")).unwrap();
    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(model.metadata_props.len(), 2);
    assert_eq!(model.functions.len(), 1);
    assert_eq!(model.training_info.len(), 1);
    assert_eq!(graph.sparse_initializer.len(), 1);
    assert_eq!(graph.quantization_annotation.len(), 1);
    assert_eq!(graph.value_info.len(), 1);
    let ext = graph.initializer.iter().find(|t| t.name() == "ext").unwrap();
    assert_eq!(ext.external_data.len(), 3);
    let branch = graph.node.iter().find(|n| n.op_type() == "If").unwrap();
    assert_eq!(branch.attribute.iter().filter(|a| a.g.is_some()).count(), 2);
}
