//! ONNX: decoding with the generated `onnx` protobuf types, the structural
//! checks a model must pass before a runtime loads it, and the walk over
//! every graph in a model (the main graph, each nested graph at any depth,
//! each model-local function's body) that the security scan and the
//! operator checks share, so neither can miss a place the other sees.

use std::collections::{BTreeSet, HashSet};

use dsmil_proto::onnx::tensor_proto::DataType;
use dsmil_proto::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto, tensor_shape_proto, type_proto,
};
use prost::Message;

use super::ModelError;

/// What a training framework's weights file looks like from its first
/// bytes, when an upload is one: PyTorch's zip archive (`torch.save`, with a
/// `data.pkl` entry) or a bare pickle, or a safetensors file (an 8-byte
/// header length, then a JSON header).
fn training_checkpoint(bytes: &[u8]) -> Option<&'static str> {
    let head = &bytes[..bytes.len().min(4096)];
    if head.starts_with(b"PK\x03\x04") && head.windows(8).any(|w| w == b"data.pkl") {
        return Some("a PyTorch checkpoint (torch.save zip archive)");
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Some("a Python pickle (a PyTorch .pt/.pth or similar)");
    }
    if head.len() > 9 && head[8..].starts_with(b"{\"") {
        let declared = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if declared > 0 && declared < bytes.len() as u64 {
            return Some("a safetensors weights file");
        }
    }
    None
}

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
    /// Sum of initializer and Constant-node tensor elements (sparse ones
    /// counted dense, as runtimes hold them), in every graph that runs.
    pub parameter_count: u64,
    /// Bytes of initializer data (the weights a runtime must hold).
    pub weight_bytes: u64,
    /// Bytes of one sample's inputs and outputs (dynamic dimensions = 1),
    /// where the shapes are declared.
    pub io_bytes: u64,
    /// Every operator a runtime would run: ONNX's are collected from the
    /// main graph, nested graphs at any depth and model-local functions'
    /// bodies (calls to those functions are not operators).
    pub operators: BTreeSet<OperatorRef>,
    /// Integer already by what the format says (an IR's FakeQuantize
    /// layers); ONNX models are judged by their operators.
    pub int8: bool,
}

/// Decodes `bytes` as an ONNX model and checks its structure.
pub fn inspect_onnx(bytes: &[u8]) -> Result<ModelInfo, ModelError> {
    if let Some(what) = training_checkpoint(bytes) {
        return Err(ModelError::TrainingCheckpoint(what));
    }
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
    let mut io_bytes = 0u64;
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
                    // Sized for one sample (dynamic dimensions = 1): the
                    // admission estimate and the synthetic dry-run inputs
                    // come from these dims, so absurd ones stop here.
                    let dims: Vec<i64> = t.shape.as_ref().map_or_else(Vec::new, |s| {
                        s.dim
                            .iter()
                            .map(|d| match d.value {
                                Some(tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => v,
                                _ => 1,
                            })
                            .collect()
                    });
                    match bytes_of(&dims, elem_width(elem)) {
                        Some(bytes) if bytes <= MAX_TENSOR_BYTES => io_bytes = io_bytes.saturating_add(bytes),
                        _ => problems.push(format!(
                            "graph {kind} {name}: dims {dims:?} describe more than {MAX_TENSOR} per sample"
                        )),
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
    // business; a dangling edge is a broken file). Nested graphs may also
    // read their outer scopes, so only the main graph is checked.
    let mut produced: HashSet<&str> = graph.input.iter().map(|i| i.name()).collect();
    produced.extend(initializers.iter().copied());
    for node in &graph.node {
        produced.extend(node.output.iter().map(String::as_str));
    }
    for (index, node) in graph.node.iter().enumerate() {
        let label = node_label(index, node.name(), node.op_type());
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

    let bodies = bodies(&model);
    // A node calling a model-local function is no operator of its own: the
    // runtime inlines the function, whose body is walked like any graph.
    let functions: HashSet<(&str, &str, &str)> = model
        .functions
        .iter()
        .map(|f| (f.domain(), f.name(), f.overload()))
        .collect();
    let mut operators = BTreeSet::new();
    for body in bodies.iter().filter(|b| b.runs) {
        for (index, node) in body.nodes.iter().enumerate() {
            if node.op_type().is_empty() {
                let label = node_label(index, node.name(), node.op_type());
                problems.push(format!("{}{label}: no op_type", body.place));
            }
            if !functions.contains(&(node.domain(), node.op_type(), node.overload())) {
                operators.insert((node.domain().to_owned(), node.op_type().to_owned()));
            }
        }
    }

    problems.extend(super::security::scan(&bodies));
    if !problems.is_empty() {
        return Err(ModelError::Invalid(problems));
    }
    // The scan bounded every tensor's size; the sums still saturate rather
    // than trust that.
    let (mut parameter_count, mut weight_bytes) = (0u64, 0u64);
    for body in bodies.iter().filter(|b| b.runs) {
        for tensor in body.initializers {
            parameter_count = parameter_count.saturating_add(elements(&tensor.dims).unwrap_or(u64::MAX));
            weight_bytes = weight_bytes.saturating_add(tensor_bytes(tensor));
        }
        // Weights some exporters hold in Constant nodes instead of
        // initializers are weights all the same.
        for node in body
            .nodes
            .iter()
            .filter(|n| n.op_type() == "Constant" && n.domain().is_empty())
        {
            for tensor in node
                .attribute
                .iter()
                .filter(|a| a.name() == "value")
                .filter_map(|a| a.t.as_ref())
            {
                parameter_count = parameter_count.saturating_add(elements(&tensor.dims).unwrap_or(u64::MAX));
                weight_bytes = weight_bytes.saturating_add(tensor_bytes(tensor));
            }
        }
        // Runtimes densify sparse initializers when they load them.
        for sparse in body.sparse_initializers {
            let dense = elements(&sparse.dims).unwrap_or(u64::MAX);
            let width = elem_width(sparse.values.as_ref().map_or(0, |v| v.data_type()));
            parameter_count = parameter_count.saturating_add(dense);
            weight_bytes = weight_bytes.saturating_add(dense.saturating_mul(width));
        }
    }
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

/// Largest tensor any dims may describe (1 TiB): beyond every host this
/// daemon runs on, and far enough below `u64::MAX` that sums of sizes stay
/// meaningful.
pub(super) const MAX_TENSOR_BYTES: u64 = 1 << 40;
/// [`MAX_TENSOR_BYTES`] in words, for problems.
pub(super) const MAX_TENSOR: &str = "1 TiB";

/// Elements of a tensor of `dims`; `None` for a negative dimension or a
/// count that overflows.
pub(super) fn elements(dims: &[i64]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
}

/// Bytes of a tensor of `dims` and `width`-byte elements, checked like
/// [`elements`].
pub(super) fn bytes_of(dims: &[i64], width: u64) -> Option<u64> {
    elements(dims)?.checked_mul(width)
}

/// Bytes of a tensor's data, whichever field holds it.
fn tensor_bytes(t: &TensorProto) -> u64 {
    if let Some(raw) = &t.raw_data {
        return raw.len() as u64;
    }
    bytes_of(&t.dims, elem_width(t.data_type())).unwrap_or(u64::MAX)
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

/// A graph or a model-local function's body, and where it sits.
pub(super) struct Body<'a> {
    /// Prefix naming where the body sits, for problems: empty for the main
    /// graph, else e.g. "node cond (If) › then_branch (graph then) › ".
    pub place: String,
    pub initializers: &'a [TensorProto],
    pub sparse_initializers: &'a [SparseTensorProto],
    pub nodes: &'a [NodeProto],
    /// A function's attribute defaults (graphs have none).
    pub defaults: &'a [AttributeProto],
    /// Whether a runtime executes it: training graphs are only carried, but
    /// their data is scanned all the same.
    pub runs: bool,
}

impl<'a> Body<'a> {
    fn graph(graph: &'a GraphProto, place: String, runs: bool) -> Body<'a> {
        Body {
            place,
            initializers: &graph.initializer,
            sparse_initializers: &graph.sparse_initializer,
            nodes: &graph.node,
            defaults: &[],
            runs,
        }
    }
}

/// Every body of `model`: the main graph, model-local functions, training
/// graphs, and every graph held by an attribute (If branches, Loop and Scan
/// bodies) of any of them, at any depth. A worklist, not recursion: the
/// depth is the uploader's choice.
pub(super) fn bodies(model: &ModelProto) -> Vec<Body<'_>> {
    let mut found = Vec::new();
    if let Some(graph) = &model.graph {
        found.push(Body::graph(graph, String::new(), true));
    }
    for function in &model.functions {
        let overload = match function.overload() {
            "" => String::new(),
            o => format!(" (overload {o})"),
        };
        found.push(Body {
            place: format!("function {}.{}{overload} › ", function.domain(), function.name()),
            initializers: &[],
            sparse_initializers: &[],
            nodes: &function.node,
            defaults: &function.attribute_proto,
            runs: true,
        });
    }
    for (index, training) in model.training_info.iter().enumerate() {
        for (part, graph) in [
            ("initialization", &training.initialization),
            ("algorithm", &training.algorithm),
        ] {
            if let Some(graph) = graph {
                found.push(Body::graph(graph, format!("training_info #{index} {part} › "), false));
            }
        }
    }
    let mut next = 0;
    while let Some(body) = found.get(next) {
        let (nodes, defaults, runs) = (body.nodes, body.defaults, body.runs);
        let place = body.place.clone();
        let holders = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (Some((i, n)), n.attribute.as_slice()))
            .chain(std::iter::once((None, defaults)));
        let mut nested = Vec::new();
        for (node, attributes) in holders {
            for attribute in attributes {
                for graph in attribute.g.iter().chain(&attribute.graphs) {
                    let holder = match node {
                        Some((i, n)) => node_label(i, n.name(), n.op_type()),
                        None => "attribute defaults".to_owned(),
                    };
                    let at = format!("{place}{holder} › {} (graph {}) › ", attribute.name(), graph.name());
                    nested.push(Body::graph(graph, at, runs));
                }
            }
        }
        found.extend(nested);
        next += 1;
    }
    found
}

pub(super) fn node_label(index: usize, name: &str, op: &str) -> String {
    if name.is_empty() {
        format!("node #{index} ({op})")
    } else {
        format!("node {name} ({op})")
    }
}

#[cfg(test)]
#[path = "onnx_tests.rs"]
mod tests;
