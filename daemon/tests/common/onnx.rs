//! Small ONNX models built in tests, with the generated ONNX types: sizes,
//! operators and failures chosen per test, nothing downloaded.

use dsmil_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto, tensor_shape_proto, type_proto,
};
use prost::Message;

const FLOAT: i32 = tensor_proto::DataType::Float as i32;

/// A float tensor value with a dynamic first dimension and fixed others.
pub fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = |d: i64| tensor_shape_proto::Dimension {
        value: Some(if d < 0 {
            tensor_shape_proto::dimension::Value::DimParam("batch".into())
        } else {
            tensor_shape_proto::dimension::Value::DimValue(d)
        }),
        denotation: None,
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| dim(d)).collect(),
                }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

pub fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: Some(format!("{op}_{}", outputs[0])),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A float initializer with deterministic small values, different per
/// `seed` (ONNX Runtime shares byte-identical initializers, which would hide
/// a model's real footprint).
pub fn weights(name: &str, dims: &[i64], seed: i64) -> TensorProto {
    let count: i64 = dims.iter().product();
    let raw: Vec<u8> = (0..count)
        .flat_map(|i| ((((i * 7 + seed * 13) % 17) as f32 - 8.0) / 64.0).to_le_bytes())
        .collect();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        raw_data: Some(raw),
        ..Default::default()
    }
}

pub fn model(graph: GraphProto, opsets: &[(&str, i64)]) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("dsmil-tests".into()),
        opset_import: opsets
            .iter()
            .map(|(d, v)| OperatorSetIdProto {
                domain: Some(d.to_string()),
                version: Some(*v),
            })
            .collect(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// x [?, width] -> MatMul(width x width) -> Relu, `layers` times -> y.
/// Parameters: layers * width * width.
pub fn mlp(width: i64, layers: usize) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut prev = "x".to_owned();
    for i in 0..layers {
        let (w, mm, act) = (
            format!("w{i}"),
            format!("mm{i}"),
            if i + 1 == layers {
                "y".to_owned()
            } else {
                format!("h{i}")
            },
        );
        inits.push(weights(&w, &[width, width], i as i64));
        nodes.push(node("MatMul", &[&prev, &w], &[&mm]));
        nodes.push(node("Relu", &[&mm], &[&act]));
        prev = act;
    }
    model(
        GraphProto {
            name: Some("mlp".into()),
            node: nodes,
            initializer: inits,
            input: vec![value("x", &[-1, width])],
            output: vec![value("y", &[-1, width])],
            ..Default::default()
        },
        &[("", 17)],
    )
}

/// y = Log(x - x): valid, loads, runs, and answers -inf for every input.
pub fn non_finite() -> Vec<u8> {
    model(
        GraphProto {
            name: Some("log_zero".into()),
            node: vec![node("Sub", &["x", "x"], &["zero"]), node("Log", &["zero"], &["y"])],
            input: vec![value("x", &[-1, 4])],
            output: vec![value("y", &[-1, 4])],
            ..Default::default()
        },
        &[("", 17)],
    )
}

/// A node from a domain nobody allowed.
pub fn custom_domain() -> Vec<u8> {
    let mut op = node("Frobnicate", &["x"], &["y"]);
    op.domain = Some("com.example.secret".into());
    model(
        GraphProto {
            name: Some("custom".into()),
            node: vec![op, node("NotAnOnnxOp", &["x"], &["z"])],
            input: vec![value("x", &[-1, 4])],
            output: vec![value("y", &[-1, 4]), value("z", &[-1, 4])],
            ..Default::default()
        },
        &[("", 17), ("com.example.secret", 1)],
    )
}

/// An initializer whose bytes live in a file outside the model.
pub fn external_data(location: &str) -> Vec<u8> {
    let mut w = weights("w", &[4, 4], 0);
    w.raw_data = None;
    w.data_location = Some(tensor_proto::DataLocation::External as i32);
    w.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some(location.into()),
    }];
    model(
        GraphProto {
            name: Some("external".into()),
            node: vec![node("MatMul", &["x", "w"], &["y"])],
            initializer: vec![w],
            input: vec![value("x", &[-1, 4])],
            output: vec![value("y", &[-1, 4])],
            ..Default::default()
        },
        &[("", 17)],
    )
}

/// An int64 initializer.
pub fn int64s(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![values.len() as i64],
        data_type: Some(tensor_proto::DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// Tiny inputs, outputs and weights, but a `side` x `side` float activation
/// on every run: its estimate is small, its measured footprint is not.
pub fn big_activation(side: i64) -> Vec<u8> {
    model(
        GraphProto {
            name: Some("expand".into()),
            node: vec![
                node("Expand", &["x", "shape"], &["big"]),
                node("ReduceSum", &["big"], &["y"]),
            ],
            initializer: vec![int64s("shape", &[side, side])],
            input: vec![value("x", &[1, 1])],
            output: vec![value("y", &[1, 1])],
            ..Default::default()
        },
        &[("", 17)],
    )
}

/// y = x + c, where `c` is a Constant whose sparse_value reads its values
/// from `location`, a file outside the model.
pub fn sparse_external_constant(location: &str) -> Vec<u8> {
    use dsmil_proto::onnx::{AttributeProto, SparseTensorProto};
    let mut values = weights("leaked", &[4], 0);
    values.raw_data = None;
    values.data_location = Some(tensor_proto::DataLocation::External as i32);
    values.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some(location.into()),
    }];
    let mut constant = node("Constant", &[], &["c"]);
    constant.attribute = vec![AttributeProto {
        name: Some("sparse_value".into()),
        r#type: Some(dsmil_proto::onnx::attribute_proto::AttributeType::SparseTensor as i32),
        sparse_tensor: Some(SparseTensorProto {
            values: Some(values),
            indices: Some(int64s("leaked_at", &[0, 1, 2, 3])),
            dims: vec![4],
        }),
        ..Default::default()
    }];
    model(
        GraphProto {
            name: Some("sparse_leak".into()),
            node: vec![constant, node("Add", &["x", "c"], &["y"])],
            input: vec![value("x", &[-1, 4])],
            output: vec![value("y", &[-1, 4])],
            ..Default::default()
        },
        &[("", 17)],
    )
}

/// y = If(sum(x) > 0) then Gelu(x) else Gelu(x), Gelu being ONNX Runtime's
/// contrib operator (domain com.microsoft), used only inside the branches.
pub fn contrib_op_in_if_branches() -> Vec<u8> {
    use dsmil_proto::onnx::AttributeProto;
    let branch = |name: &str| {
        let mut gelu = node("Gelu", &["x"], &[name]);
        gelu.domain = Some("com.microsoft".into());
        AttributeProto {
            name: Some(format!("{name}_branch")),
            r#type: Some(dsmil_proto::onnx::attribute_proto::AttributeType::Graph as i32),
            g: Some(GraphProto {
                name: Some(name.into()),
                node: vec![gelu],
                output: vec![value(name, &[-1, 4])],
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let mut sum = node("ReduceSum", &["x"], &["sum"]);
    sum.attribute = vec![AttributeProto {
        name: Some("keepdims".into()),
        r#type: Some(dsmil_proto::onnx::attribute_proto::AttributeType::Int as i32),
        i: Some(0),
        ..Default::default()
    }];
    let mut choose = node("If", &["positive"], &["y"]);
    choose.attribute = vec![branch("then"), branch("else")];
    model(
        GraphProto {
            name: Some("contrib_in_branches".into()),
            node: vec![sum, node("Greater", &["sum", "zero"], &["positive"]), choose],
            initializer: vec![weights("zero", &[], 0)],
            input: vec![value("x", &[-1, 4])],
            output: vec![value("y", &[-1, 4])],
            ..Default::default()
        },
        &[("", 17), ("com.microsoft", 1)],
    )
}

/// y = Sqrt(limit - pixels) on [?, 64]: finite for the synthetic inputs a
/// dry run makes up (values up to 1.5), NaN for real pixels above `limit`.
pub fn nan_above(limit: f32) -> Vec<u8> {
    let bound = TensorProto {
        name: Some("limit".into()),
        dims: vec![],
        data_type: Some(FLOAT),
        raw_data: Some(limit.to_le_bytes().to_vec()),
        ..Default::default()
    };
    model(
        GraphProto {
            name: Some("nan_above".into()),
            node: vec![
                node("Sub", &["limit", "pixels"], &["room"]),
                node("Sqrt", &["room"], &["y"]),
            ],
            initializer: vec![bound],
            input: vec![value("pixels", &[-1, 64])],
            output: vec![value("y", &[-1, 64])],
            ..Default::default()
        },
        &[("", 17)],
    )
}

/// `node` with attributes.
pub fn node_with(op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        attribute: attributes,
        ..node(op, inputs, outputs)
    }
}

fn attribute(name: &str, kind: attribute_proto::AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        i: Some(value),
        ..attribute(name, attribute_proto::AttributeType::Int)
    }
}

pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: values.to_vec(),
        ..attribute(name, attribute_proto::AttributeType::Ints)
    }
}

pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        f: Some(value),
        ..attribute(name, attribute_proto::AttributeType::Float)
    }
}

pub fn attr_floats(name: &str, values: &[f32]) -> AttributeProto {
    AttributeProto {
        floats: values.to_vec(),
        ..attribute(name, attribute_proto::AttributeType::Floats)
    }
}

pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        s: Some(value.as_bytes().to_vec()),
        ..attribute(name, attribute_proto::AttributeType::String)
    }
}

/// A float initializer with the given values.
pub fn floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An output whose shape the runtime infers.
pub fn output(name: &str, dtype: tensor_proto::DataType) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype as i32),
                shape: None,
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}
