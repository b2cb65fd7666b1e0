//! The security scan of an upload: what a model file may reference outside
//! itself, and whether its tensors are what they claim to be. A model is data
//! from outside; nothing in it may point the daemon at other files.
//!
//! Every tensor a runtime could read is scanned, wherever it sits: the
//! initializers and sparse initializers of every body [`super::onnx::bodies`]
//! yields (the main graph, each nested If/Loop/Scan graph at any depth,
//! model-local functions, training graphs), and each tensor, tensor list,
//! sparse tensor and sparse tensor list held by an attribute of any node in
//! them (`Constant`'s value and sparse_value among them) or by a function's
//! attribute defaults. External data is refused everywhere: an upload is one
//! file, so no external location can resolve inside it, and a relative one
//! would be resolved by the runtime against a directory the uploader does
//! not control. Each problem names the tensor and, outside the main graph's
//! initializers, the node, attribute and graph it sits in.

use dsmil_proto::onnx::tensor_proto::{DataLocation, DataType};
use dsmil_proto::onnx::{AttributeProto, SparseTensorProto, TensorProto};

use super::onnx::{Body, MAX_TENSOR, MAX_TENSOR_BYTES, bytes_of, node_label};

/// Problems found in `bodies`, each naming where the tensor sits.
pub fn scan(bodies: &[Body<'_>]) -> Vec<String> {
    let mut problems = Vec::new();
    for body in bodies {
        let place = body.place.as_str();
        for tensor in body.initializers {
            scan_tensor(place, &label(tensor, None, ""), tensor, &mut problems);
        }
        for sparse in body.sparse_initializers {
            scan_sparse(place, None, sparse, &mut problems);
        }
        for (index, node) in body.nodes.iter().enumerate() {
            let holder = || format!("{place}{} › ", node_label(index, node.name(), node.op_type()));
            scan_attributes(holder, &node.attribute, &mut problems);
        }
        scan_attributes(|| format!("{place}attribute defaults › "), body.defaults, &mut problems);
    }
    problems
}

/// The tensors attributes hold; the graphs they hold are bodies of their own.
/// `holder` names the node (or defaults) holding them, built only for an
/// attribute that holds a tensor.
fn scan_attributes(holder: impl Fn() -> String, attributes: &[AttributeProto], problems: &mut Vec<String>) {
    let holds_tensors = |a: &AttributeProto| {
        a.t.is_some() || !a.tensors.is_empty() || a.sparse_tensor.is_some() || !a.sparse_tensors.is_empty()
    };
    for attribute in attributes.iter().filter(|a| holds_tensors(a)) {
        let place = format!("{}{} › ", holder(), attribute.name());
        if let Some(tensor) = &attribute.t {
            scan_tensor(&place, &label(tensor, None, ""), tensor, problems);
        }
        for (index, tensor) in attribute.tensors.iter().enumerate() {
            scan_tensor(&place, &label(tensor, Some(index), ""), tensor, problems);
        }
        if let Some(sparse) = &attribute.sparse_tensor {
            scan_sparse(&place, None, sparse, problems);
        }
        for (index, sparse) in attribute.sparse_tensors.iter().enumerate() {
            scan_sparse(&place, Some(index), sparse, problems);
        }
    }
}

/// "tensor w", "tensor #2" for an unnamed one in a list, plus `role`.
fn label(tensor: &TensorProto, index: Option<usize>, role: &str) -> String {
    match (tensor.name(), index) {
        ("", Some(index)) => format!("tensor #{index}{role}"),
        ("", None) => format!("unnamed tensor{role}"),
        (name, _) => format!("tensor {name}{role}"),
    }
}

fn scan_sparse(place: &str, index: Option<usize>, sparse: &SparseTensorProto, problems: &mut Vec<String>) {
    if let Some(values) = &sparse.values {
        scan_tensor(place, &label(values, index, " (sparse values)"), values, problems);
    }
    if let Some(indices) = &sparse.indices {
        scan_tensor(place, &label(indices, index, " (sparse indices)"), indices, problems);
    }
    // Runtimes densify sparse tensors when they load them: the dense shape
    // is an allocation a few bytes of upload can ask for.
    let width = width(sparse.values.as_ref().map_or(0, |v| v.data_type())).unwrap_or(1);
    if bytes_of(&sparse.dims, width).is_none_or(|b| b > MAX_TENSOR_BYTES) {
        let values = sparse
            .values
            .as_ref()
            .map_or_else(|| "tensor".to_owned(), |v| label(v, index, ""));
        problems.push(format!(
            "{place}sparse {values}: dense dims {:?} are negative or describe more than {MAX_TENSOR}",
            sparse.dims
        ));
    }
}

fn width(data_type: i32) -> Option<u64> {
    match DataType::try_from(data_type) {
        Ok(DataType::Bool | DataType::Int8 | DataType::Uint8) => Some(1),
        Ok(DataType::Int16 | DataType::Uint16 | DataType::Float16 | DataType::Bfloat16) => Some(2),
        Ok(DataType::Int32 | DataType::Uint32 | DataType::Float) => Some(4),
        Ok(DataType::Int64 | DataType::Uint64 | DataType::Double | DataType::Complex64) => Some(8),
        Ok(DataType::Complex128) => Some(16),
        _ => None,
    }
}

fn scan_tensor(place: &str, label: &str, tensor: &TensorProto, problems: &mut Vec<String>) {
    if tensor.data_location() == DataLocation::External || !tensor.external_data.is_empty() {
        let location = tensor
            .external_data
            .iter()
            .find(|e| e.key() == "location")
            .map(|e| e.value().to_owned())
            .unwrap_or_default();
        let path = std::path::Path::new(&location);
        if location.is_empty() {
            problems.push(format!("{place}{label}: external data without a location"));
        } else if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            problems.push(format!(
                "{place}{label}: external data location {location:?} escapes the upload (absolute paths and .. are refused)"
            ));
        } else {
            problems.push(format!(
                "{place}{label}: external data file {location:?} is not part of the upload; save the model with its weights inside (onnx.save(..., save_as_external_data=False))"
            ));
        }
        return;
    }
    // Sizes come from the uploader: checked before anyone allocates by them.
    let known_width = width(tensor.data_type());
    let Some(bytes) = bytes_of(&tensor.dims, known_width.unwrap_or(1)).filter(|&b| b <= MAX_TENSOR_BYTES) else {
        problems.push(format!(
            "{place}{label}: dims {:?} are negative or describe more than {MAX_TENSOR}",
            tensor.dims
        ));
        return;
    };
    // raw_data must hold exactly the elements the dims declare: a runtime
    // that trusts the dims would otherwise read past the buffer.
    if let (Some(raw), Some(_)) = (&tensor.raw_data, known_width)
        && bytes != raw.len() as u64
    {
        problems.push(format!(
            "{place}{label}: raw_data holds {} bytes, its dims {:?} need {bytes}",
            raw.len(),
            tensor.dims,
        ));
    }
}
