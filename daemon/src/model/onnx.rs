//! ONNX: decoding with the generated `onnx` protobuf types and the structural
//! checks a model must pass before a runtime loads it.

use std::collections::{BTreeSet, HashSet};

use dsmil_proto::onnx::tensor_proto::DataType;
use dsmil_proto::onnx::{ModelProto, tensor_shape_proto, type_proto};
use prost::Message;

use super::ModelError;

/// IR versions this daemon accepts (ONNX 1.3 through current).
const IR_VERSIONS: std::ops::RangeInclusive<i64> = 3..=13;
/// Default-domain opsets accepted.
const DEFAULT_OPSETS: std::ops::RangeInclusive<i64> = 7..=23;

/// An operator as (domain, op_type); the default domain is "".
pub type OperatorRef = (String, String);

#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub format: super::Format,
    pub ir_version: i64,
    /// (domain, version); "" is the default ONNX domain.
    pub opsets: Vec<(String, i64)>,
    pub producer: String,
    pub graph_name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub node_count: usize,
    /// Sum of initializer elements.
    pub parameter_count: u64,
    /// Bytes of initializer data (the weights a runtime must hold).
    pub weight_bytes: u64,
    /// Bytes of one sample's inputs and outputs (dynamic dimensions = 1),
    /// where the shapes are declared.
    pub io_bytes: u64,
    pub operators: BTreeSet<OperatorRef>,
    /// Integer already by what the format says (an IR's FakeQuantize
    /// layers); ONNX models are judged by their operators.
    pub int8: bool,
}

/// Decodes `bytes` as an ONNX model and checks its structure.
pub fn inspect_onnx(bytes: &[u8]) -> Result<ModelInfo, ModelError> {
    let model = ModelProto::decode(bytes).map_err(|e| ModelError::NotOnnx(e.to_string()))?;
    let mut problems = Vec::new();

    let ir_version = model.ir_version.unwrap_or(0);
    if !IR_VERSIONS.contains(&ir_version) {
        problems.push(format!(
            "ir_version {ir_version} is outside the supported {}..={}",
            IR_VERSIONS.start(),
            IR_VERSIONS.end()
        ));
    }
    let opsets: Vec<(String, i64)> = model
        .opset_import
        .iter()
        .map(|o| (o.domain().to_owned(), o.version()))
        .collect();
    match opsets.iter().find(|(d, _)| d.is_empty() || d == "ai.onnx") {
        Some((_, v)) if !DEFAULT_OPSETS.contains(v) => problems.push(format!(
            "default-domain opset {v} is outside the supported {}..={}",
            DEFAULT_OPSETS.start(),
            DEFAULT_OPSETS.end()
        )),
        Some(_) => {}
        None if opsets.is_empty() => problems.push("no opset_import: the model names no operator set".into()),
        None => {}
    }

    let Some(graph) = model.graph.as_ref() else {
        problems.push("no graph".into());
        return Err(ModelError::Invalid(problems));
    };

    let initializers: HashSet<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name())
        .chain(
            graph
                .sparse_initializer
                .iter()
                .filter_map(|s| s.values.as_ref().map(|v| v.name())),
        )
        .collect();
    // Since IR 4, initializers need not be graph inputs; those that are, are
    // constants with a default, not inputs a client must send.
    let inputs: Vec<&_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name()))
        .collect();
    if graph.output.is_empty() {
        problems.push("the graph has no outputs".into());
    }
    for (kind, values) in [("input", &inputs), ("output", &graph.output.iter().collect())] {
        for value in values.iter() {
            let name = value.name();
            if name.is_empty() {
                problems.push(format!("a graph {kind} has no name"));
                continue;
            }
            match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(type_proto::Value::TensorType(t)) => {
                    let elem = t.elem_type.unwrap_or(0);
                    if elem == 0 || DataType::try_from(elem).is_err() {
                        problems.push(format!("graph {kind} {name}: element type {elem} is not a tensor type"));
                    }
                }
                Some(_) => problems.push(format!(
                    "graph {kind} {name}: only tensor {kind}s are served (not sequences, maps or optionals)"
                )),
                None => problems.push(format!("graph {kind} {name}: no type")),
            }
        }
    }

    // Every node input must be produced by something: a graph input, an
    // initializer or a node output (topological order is the runtime's
    // business; a dangling edge is a broken file).
    let mut produced: HashSet<&str> = graph.input.iter().map(|i| i.name()).collect();
    produced.extend(initializers.iter().copied());
    for node in &graph.node {
        produced.extend(node.output.iter().map(String::as_str));
    }
    let mut operators = BTreeSet::new();
    for (index, node) in graph.node.iter().enumerate() {
        let label = node_label(index, node.name(), node.op_type());
        if node.op_type().is_empty() {
            problems.push(format!("{label}: no op_type"));
        }
        operators.insert((node.domain().to_owned(), node.op_type().to_owned()));
        for input in &node.input {
            if !input.is_empty() && !produced.contains(input.as_str()) {
                problems.push(format!(
                    "{label}: input {input:?} is produced by no node, input or initializer"
                ));
            }
        }
    }
    for output in &graph.output {
        if !output.name().is_empty() && !produced.contains(output.name()) {
            problems.push(format!(
                "graph output {:?} is produced by no node or input",
                output.name()
            ));
        }
    }

    problems.extend(super::security::scan(&model));
    if !problems.is_empty() {
        return Err(ModelError::Invalid(problems));
    }
    let parameter_count = graph
        .initializer
        .iter()
        .map(|t| t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>())
        .sum();
    let weight_bytes = graph.initializer.iter().map(tensor_bytes).sum();
    let io_bytes = inputs
        .iter()
        .copied()
        .chain(&graph.output)
        .filter_map(|v| match v.r#type.as_ref()?.value.as_ref()? {
            type_proto::Value::TensorType(t) => {
                let dims = t.shape.as_ref()?.dim.iter().map(|d| match d.value {
                    Some(tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => v as u64,
                    _ => 1,
                });
                Some(dims.product::<u64>() * elem_width(t.elem_type.unwrap_or(0)))
            }
            _ => None,
        })
        .sum();
    Ok(ModelInfo {
        ir_version,
        weight_bytes,
        io_bytes,
        opsets,
        producer: model.producer_name().to_owned(),
        graph_name: graph.name().to_owned(),
        inputs: inputs.iter().map(|i| i.name().to_owned()).collect(),
        outputs: graph.output.iter().map(|o| o.name().to_owned()).collect(),
        node_count: graph.node.len(),
        parameter_count,
        operators,
        int8: false,
        format: super::Format::Onnx,
    })
}

/// Bytes of a tensor's data, whichever field holds it.
fn tensor_bytes(t: &dsmil_proto::onnx::TensorProto) -> u64 {
    if let Some(raw) = &t.raw_data {
        return raw.len() as u64;
    }
    let elements: u64 = t.dims.iter().map(|&d| d.max(0) as u64).product();
    elements * elem_width(t.data_type())
}

/// Bytes per element of an ONNX element type (1 for sub-byte and unknown types).
pub(super) fn elem_width(elem: i32) -> u64 {
    match DataType::try_from(elem) {
        Ok(DataType::Int16 | DataType::Uint16 | DataType::Float16 | DataType::Bfloat16) => 2,
        Ok(DataType::Int32 | DataType::Uint32 | DataType::Float) => 4,
        Ok(DataType::Int64 | DataType::Uint64 | DataType::Double | DataType::Complex64) => 8,
        Ok(DataType::Complex128) => 16,
        _ => 1,
    }
}

impl ModelInfo {
    /// Whether the model already runs in integer arithmetic (QDQ, QLinear*,
    /// integer MatMul/Conv): such a model passes the Quantizing stage as is.
    pub fn is_quantized(&self) -> bool {
        self.int8
            || self.operators.iter().any(|(domain, op)| {
                (domain.is_empty() || domain == "ai.onnx" || domain == "com.microsoft")
                    && (matches!(
                        op.as_str(),
                        "QuantizeLinear"
                            | "DequantizeLinear"
                            | "MatMulInteger"
                            | "ConvInteger"
                            | "DynamicQuantizeLinear"
                    ) || op.starts_with("QLinear"))
            })
    }
}

fn node_label(index: usize, name: &str, op: &str) -> String {
    if name.is_empty() {
        format!("node #{index} ({op})")
    } else {
        format!("node {name} ({op})")
    }
}

#[cfg(test)]
#[path = "onnx_tests.rs"]
mod tests;
