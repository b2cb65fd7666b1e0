//! The security scan of an upload: what a model file may reference outside
//! itself, and whether its tensors are what they claim to be. A model is data
//! from outside; nothing in it may point the daemon at other files.

use dsmil_proto::onnx::tensor_proto::{DataLocation, DataType};
use dsmil_proto::onnx::{AttributeProto, GraphProto, ModelProto, TensorProto};

/// Problems found, each naming the tensor.
pub fn scan(model: &ModelProto) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(graph) = &model.graph {
        scan_graph(graph, &mut problems);
    }
    for function in &model.functions {
        for node in &function.node {
            scan_attributes(&node.attribute, &mut problems);
        }
    }
    problems
}

fn scan_graph(graph: &GraphProto, problems: &mut Vec<String>) {
    for tensor in &graph.initializer {
        scan_tensor(tensor, problems);
    }
    for sparse in &graph.sparse_initializer {
        for tensor in sparse.values.iter().chain(sparse.indices.iter()) {
            scan_tensor(tensor, problems);
        }
    }
    for node in &graph.node {
        scan_attributes(&node.attribute, problems);
    }
}

fn scan_attributes(attributes: &[AttributeProto], problems: &mut Vec<String>) {
    for attr in attributes {
        for tensor in attr.t.iter().chain(&attr.tensors) {
            scan_tensor(tensor, problems);
        }
        for graph in attr.g.iter().chain(&attr.graphs) {
            scan_graph(graph, problems);
        }
    }
}

fn scan_tensor(tensor: &TensorProto, problems: &mut Vec<String>) {
    let name = tensor.name();
    if tensor.data_location() == DataLocation::External || !tensor.external_data.is_empty() {
        let location = tensor
            .external_data
            .iter()
            .find(|e| e.key() == "location")
            .map(|e| e.value().to_owned())
            .unwrap_or_default();
        let path = std::path::Path::new(&location);
        if location.is_empty() {
            problems.push(format!("tensor {name}: external data without a location"));
        } else if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            problems.push(format!(
                "tensor {name}: external data location {location:?} escapes the upload (absolute paths and .. are refused)"
            ));
        } else {
            problems.push(format!(
                "tensor {name}: external data file {location:?} is not part of the upload; save the model with its weights inside (onnx.save(..., save_as_external_data=False))"
            ));
        }
        return;
    }
    // raw_data must hold exactly the elements the dims declare: a runtime
    // that trusts the dims would otherwise read past the buffer.
    if let Some(raw) = &tensor.raw_data {
        let width = match DataType::try_from(tensor.data_type()) {
            Ok(DataType::Bool | DataType::Int8 | DataType::Uint8) => Some(1),
            Ok(DataType::Int16 | DataType::Uint16 | DataType::Float16 | DataType::Bfloat16) => Some(2),
            Ok(DataType::Int32 | DataType::Uint32 | DataType::Float) => Some(4),
            Ok(DataType::Int64 | DataType::Uint64 | DataType::Double | DataType::Complex64) => Some(8),
            Ok(DataType::Complex128) => Some(16),
            _ => None,
        };
        let elements = tensor
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)));
        if let (Some(width), Some(elements)) = (width, elements)
            && elements.checked_mul(width) != Some(raw.len() as u64)
        {
            problems.push(format!(
                "tensor {name}: raw_data holds {} bytes, its dims {:?} need {}",
                raw.len(),
                tensor.dims,
                elements.saturating_mul(width)
            ));
        }
    }
}
