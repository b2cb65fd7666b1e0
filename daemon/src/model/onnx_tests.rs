use dsmil_proto::onnx::tensor_proto::{DataLocation, DataType};
use dsmil_proto::onnx::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, SparseTensorProto,
    StringStringEntryProto, TensorProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
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

// --- Hostile models: every place ONNX can hold data or code -----------------

const FLOAT: i32 = DataType::Float as i32;

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A float tensor whose data is in the file `location`, outside the model.
fn external(name: &str, location: &str) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![4],
        data_type: Some(FLOAT),
        data_location: Some(DataLocation::External as i32),
        external_data: vec![StringStringEntryProto {
            key: Some("location".into()),
            value: Some(location.into()),
        }],
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64]) -> TensorProto {
    let count: i64 = dims.iter().product();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        raw_data: Some(vec![0; count as usize * 4]),
        ..Default::default()
    }
}

fn attribute(name: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn graph_attribute(name: &str, graph: GraphProto) -> AttributeProto {
    AttributeProto {
        g: Some(graph),
        ..attribute(name)
    }
}

/// x -> `nodes` -> y, with `extra` for the rest of the model.
fn hostile(nodes: Vec<NodeProto>, extra: impl FnOnce(&mut ModelProto)) -> ModelProto {
    let mut model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("main".into()),
            node: nodes,
            input: vec![tensor_value("x", FLOAT)],
            output: vec![tensor_value("y", FLOAT)],
            ..Default::default()
        }),
        ..Default::default()
    };
    extra(&mut model);
    model
}

fn problems(model: &ModelProto) -> String {
    match inspect_onnx(&model.encode_to_vec()) {
        Err(ModelError::Invalid(problems)) => problems.join("\n"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// A Loop whose body reads an initializer from a file.
#[test]
fn external_data_inside_a_loop_body_is_refused_and_located() {
    let body = GraphProto {
        name: Some("step".into()),
        node: vec![node("acc", "Add", &["x", "w"], &["out"])],
        initializer: vec![external("w", "weights.bin")],
        ..Default::default()
    };
    let mut looped = node("repeat", "Loop", &["", "", "x"], &["y"]);
    looped.attribute = vec![graph_attribute("body", body)];
    let all = problems(&hostile(vec![looped], |_| {}));
    assert!(
        all.contains(
            "node repeat (Loop) › body (graph step) › tensor w: external data file \"weights.bin\" is not part of the upload"
        ),
        "{all}"
    );
}

/// A Constant inside a model-local function, its value from a file, and a
/// function whose attribute default holds another.
#[test]
fn external_data_inside_a_local_function_is_refused_and_located() {
    let mut constant = node("", "Constant", &[], &["c"]);
    constant.attribute = vec![AttributeProto {
        t: Some(external("secret", "/etc/shadow")),
        ..attribute("value")
    }];
    let mut call = node("call", "Leak", &["x"], &["y"]);
    call.domain = Some("local".into());
    let all = problems(&hostile(vec![call], |m| {
        m.functions.push(FunctionProto {
            name: Some("Leak".into()),
            domain: Some("local".into()),
            input: vec!["X".into()],
            output: vec!["Y".into()],
            node: vec![constant, node("add", "Add", &["X", "c"], &["Y"])],
            attribute_proto: vec![AttributeProto {
                t: Some(external("fallback", "etc/passwd")),
                ..attribute("default_value")
            }],
            ..Default::default()
        });
    }));
    assert!(
        all.contains("function local.Leak › node #0 (Constant) › value › tensor secret: external data location \"/etc/shadow\" escapes the upload"),
        "{all}"
    );
    assert!(
        all.contains("function local.Leak › attribute defaults › default_value › tensor fallback: external data file \"etc/passwd\""),
        "{all}"
    );
}

#[test]
fn external_data_in_a_sparse_initializer_is_refused() {
    let mut indices = floats("idx", &[1]);
    indices.data_type = Some(DataType::Int64 as i32);
    indices.raw_data = Some(0i64.to_le_bytes().to_vec());
    let all = problems(&hostile(vec![node("add", "Add", &["x", "s"], &["y"])], |m| {
        m.graph.as_mut().unwrap().sparse_initializer.push(SparseTensorProto {
            values: Some(external("s", "etc/passwd")),
            indices: Some(indices),
            dims: vec![4],
        });
    }));
    assert!(
        all.contains("tensor s (sparse values): external data file \"etc/passwd\" is not part of the upload"),
        "{all}"
    );
}

/// Constant's sparse_value (the defect: it was never looked at), and the
/// plural `tensors` and `sparse_tensors` attributes of any node.
#[test]
fn external_data_in_tensor_and_sparse_attributes_is_refused() {
    let mut constant = node("leak", "Constant", &[], &["c"]);
    constant.attribute = vec![AttributeProto {
        sparse_tensor: Some(SparseTensorProto {
            values: Some(external("v", "etc/passwd")),
            indices: None,
            dims: vec![4],
        }),
        ..attribute("sparse_value")
    }];
    let mut custom = node("many", "Frob", &["c"], &["y"]);
    custom.attribute = vec![
        AttributeProto {
            tensors: vec![floats("fine", &[2]), external("", "../x.bin")],
            ..attribute("tables")
        },
        AttributeProto {
            sparse_tensors: vec![SparseTensorProto {
                values: Some(floats("vals", &[1])),
                indices: Some(external("where", "idx.bin")),
                dims: vec![4],
            }],
            ..attribute("sparse_tables")
        },
    ];
    let all = problems(&hostile(vec![constant, custom], |_| {}));
    assert!(
        all.contains(
            "node leak (Constant) › sparse_value › tensor v (sparse values): external data file \"etc/passwd\""
        ),
        "{all}"
    );
    assert!(
        all.contains("node many (Frob) › tables › tensor #1: external data location \"../x.bin\" escapes"),
        "{all}"
    );
    assert!(
        all.contains(
            "node many (Frob) › sparse_tables › tensor where (sparse indices): external data file \"idx.bin\""
        ),
        "{all}"
    );
    assert!(!all.contains("fine"), "{all}");
    assert_eq!(all.lines().count(), 3, "{all}");
}

/// A tensor in an If branch nested in a Loop body nested in an If branch.
#[test]
fn external_data_at_any_depth_is_refused() {
    let mut constant = node("deep", "Constant", &[], &["out"]);
    constant.attribute = vec![AttributeProto {
        t: Some(external("t", "etc/hostname")),
        ..attribute("value")
    }];
    let inner = GraphProto {
        name: Some("inner".into()),
        node: vec![constant],
        ..Default::default()
    };
    let mut inner_if = node("pick", "If", &["cond"], &["out"]);
    inner_if.attribute = vec![graph_attribute("then_branch", inner)];
    let body = GraphProto {
        name: Some("body".into()),
        node: vec![inner_if],
        ..Default::default()
    };
    let mut looped = node("repeat", "Loop", &["", "", "x"], &["out"]);
    looped.attribute = vec![graph_attribute("body", body)];
    let outer = GraphProto {
        name: Some("outer".into()),
        node: vec![looped],
        ..Default::default()
    };
    let mut branch = node("branch", "If", &["x"], &["y"]);
    branch.attribute = vec![AttributeProto {
        graphs: vec![outer],
        ..attribute("branches")
    }];
    let all = problems(&hostile(vec![branch], |_| {}));
    assert!(
        all.contains(
            "node branch (If) › branches (graph outer) › node repeat (Loop) › body (graph body) › node pick (If) › \
             then_branch (graph inner) › node deep (Constant) › value › tensor t: external data file \"etc/hostname\""
        ),
        "{all}"
    );
}

/// Dims from the uploader are checked before anything is sized by them.
#[test]
fn absurd_dims_are_refused_by_name() {
    let mut huge = floats("huge", &[1]);
    huge.dims = vec![i64::MAX, i64::MAX];
    let mut negative = floats("negative", &[1]);
    negative.dims = vec![-4, -1];
    let mut model = hostile(vec![node("add", "Add", &["x", "huge"], &["y"])], |m| {
        let graph = m.graph.as_mut().unwrap();
        graph.initializer = vec![huge, negative];
        graph.sparse_initializer.push(SparseTensorProto {
            values: Some(floats("dense", &[1])),
            indices: None,
            dims: vec![1 << 30, 1 << 30],
        });
    });
    let graph = model.graph.as_mut().unwrap();
    let wide = |d: i64| tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
        denotation: None,
    };
    let Some(type_proto::Value::TensorType(t)) = graph.input[0].r#type.as_mut().unwrap().value.as_mut() else {
        unreachable!()
    };
    t.shape = Some(dsmil_proto::onnx::TensorShapeProto {
        dim: vec![wide(1 << 40), wide(1 << 40)],
    });
    let all = problems(&model);
    assert!(
        all.contains(&format!(
            "tensor huge: dims {:?} are negative or describe more than 1 TiB",
            [i64::MAX, i64::MAX]
        )),
        "{all}"
    );
    assert!(all.contains("tensor negative: dims [-4, -1] are negative"), "{all}");
    assert!(
        all.contains(
            "sparse tensor dense: dense dims [1073741824, 1073741824] are negative or describe more than 1 TiB"
        ),
        "{all}"
    );
    assert!(
        all.contains("graph input x: dims [1099511627776, 1099511627776] describe more than 1 TiB per sample"),
        "{all}"
    );
}

/// Operators come from every graph a runtime runs, and a call to a
/// model-local function is judged by the function's body.
#[test]
fn operators_are_collected_from_nested_graphs_and_local_functions() {
    let mut gelu = node("gelu", "Gelu", &["x"], &["g"]);
    gelu.domain = Some("com.microsoft".into());
    let mut deep_if = node("inner", "If", &["c"], &["g"]);
    deep_if.attribute = vec![graph_attribute(
        "then_branch",
        GraphProto {
            name: Some("deeper".into()),
            node: vec![gelu],
            ..Default::default()
        },
    )];
    let mut branch = node("branch", "If", &["x"], &["y"]);
    branch.attribute = vec![
        graph_attribute(
            "then_branch",
            GraphProto {
                name: Some("then".into()),
                node: vec![deep_if],
                ..Default::default()
            },
        ),
        graph_attribute(
            "else_branch",
            GraphProto {
                name: Some("else".into()),
                node: vec![node("neg", "Neg", &["x"], &["e"])],
                ..Default::default()
            },
        ),
    ];
    let mut call = node("call", "Twice", &["x"], &["t"]);
    call.domain = Some("local".into());
    let mut fused = node("fused", "FusedMatMul", &["X", "X"], &["Y"]);
    fused.domain = Some("com.microsoft".into());
    let model = hostile(vec![branch, call], |m| {
        m.opset_import.push(OperatorSetIdProto {
            domain: Some("local".into()),
            version: Some(1),
        });
        m.functions.push(FunctionProto {
            name: Some("Twice".into()),
            domain: Some("local".into()),
            input: vec!["X".into()],
            output: vec!["Y".into()],
            node: vec![fused],
            ..Default::default()
        });
        // Training graphs are carried, never run.
        m.training_info.push(dsmil_proto::onnx::TrainingInfoProto {
            algorithm: Some(GraphProto {
                name: Some("step".into()),
                node: vec![node("grad", "SoftmaxGrad", &["x"], &["d"])],
                ..Default::default()
            }),
            ..Default::default()
        });
    });
    let info = inspect_onnx(&model.encode_to_vec()).unwrap();
    let ops: Vec<(&str, &str)> = info.operators.iter().map(|(d, o)| (d.as_str(), o.as_str())).collect();
    assert_eq!(
        ops,
        vec![
            ("", "If"),
            ("", "Neg"),
            ("com.microsoft", "FusedMatMul"),
            ("com.microsoft", "Gelu"),
        ]
    );

    let problems = crate::model::check_operators(&info, &[]).join("\n");
    assert_eq!(
        problems,
        "custom operator domain \"com.microsoft\" (operators FusedMatMul, Gelu) is not allowed; add it to \
         deployment.allowed_operator_domains if you trust it"
    );
    assert!(crate::model::check_operators(&info, &["com.microsoft".to_owned()]).is_empty());
}

/// The IR fixture holds every place the walk visits (If branches, a local
/// function and its call, a tensor attribute, a sparse initializer, a
/// training graph); its one external tensor is its only problem.
#[test]
fn the_ir_fixture_is_refused_only_for_its_external_tensor() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/onnx-ir/model.onnx")).unwrap();
    let Err(ModelError::Invalid(problems)) = inspect_onnx(&bytes) else {
        panic!("expected Invalid");
    };
    assert_eq!(
        problems,
        [
            "tensor ext: external data file \"weights.bin\" is not part of the upload; save the model with its weights \
          inside (onnx.save(..., save_as_external_data=False))"
        ]
    );
}

#[test]
fn a_training_checkpoint_is_told_how_to_export() {
    // torch.save writes a zip whose entries include ".../data.pkl".
    let torch = [&b"PK\x03\x04"[..], &[0; 26], b"archive/data.pkl", &[0; 64]].concat();
    let pickle = [&[0x80, 0x04, 0x95][..], &[0; 32]].concat();
    let header = b"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    let safetensors = [&(header.len() as u64).to_le_bytes()[..], header, &[0; 4]].concat();
    for (bytes, what) in [
        (torch, "PyTorch checkpoint"),
        (pickle, "pickle"),
        (safetensors, "safetensors"),
    ] {
        let err = inspect_onnx(&bytes).unwrap_err().to_string();
        assert!(err.contains(what) && err.contains("torch.onnx.export"), "{err}");
    }
    // An ONNX file is not mistaken for one.
    assert!(inspect_onnx(&sample()).is_ok());
}
