//! Small builders for the graph rewrites (static QDQ and dynamic): tensors,
//! nodes, and a quantized constant behind its DequantizeLinear.

use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, attribute_proto};

/// The model's default-domain (ai.onnx) opset; 0 if it imports none.
pub fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map_or(0, |o| o.version())
}

pub fn tensor(name: &str, dims: Vec<i64>, dtype: OnnxType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims,
        data_type: Some(dtype as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

pub fn floats(name: &str, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    tensor(
        name,
        dims,
        OnnxType::Float,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// A node; `axis`, when given, becomes its `axis` attribute.
pub fn node(op: &str, name: &str, inputs: Vec<String>, outputs: Vec<String>, axis: Option<i64>) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs,
        output: outputs,
        attribute: axis.map(|a| int_attribute("axis", a)).into_iter().collect(),
        ..Default::default()
    }
}

/// A Cast to float.
pub fn cast_to_float(name: &str, input: String, output: String) -> NodeProto {
    let mut cast = node("Cast", name, vec![input], vec![output], None);
    cast.attribute.push(int_attribute("to", OnnxType::Float as i64));
    cast
}

/// An integer constant (`raw`, of `dtype`, with `dims`) quantized per channel
/// along `axis` with `scales` and zero points of 0: its three initializers go
/// into `inits`; returns its DequantizeLinear node and that node's output.
pub fn dequantized_constant(
    base: &str,
    dims: Vec<i64>,
    dtype: OnnxType,
    raw: Vec<u8>,
    scales: &[f32],
    axis: i64,
    inits: &mut Vec<TensorProto>,
) -> (NodeProto, String) {
    let width = if dtype == OnnxType::Int32 { 4 } else { 1 };
    let channels = vec![scales.len() as i64];
    let names = [
        format!("{base}_quantized"),
        format!("{base}_scale"),
        format!("{base}_zero_point"),
    ];
    inits.push(tensor(&names[0], dims, dtype, raw));
    inits.push(floats(&names[1], channels.clone(), scales));
    inits.push(tensor(&names[2], channels, dtype, vec![0; scales.len() * width]));
    let output = format!("{base}_dequantized");
    let dq = node(
        "DequantizeLinear",
        &format!("{base}_DequantizeLinear"),
        names.to_vec(),
        vec![output.clone()],
        Some(axis),
    );
    (dq, output)
}

/// Moves the tensors of the main graph's `Constant` nodes into initializers,
/// and folds an `Identity` or a `Cast` to float of an initializer into one,
/// so that weights an exporter held in nodes are found by the quantizer
/// like any other. Returns how many nodes became initializers. Graph
/// outputs are never folded away (they must stay produced by a node).
/// Every name `graph` reads: its nodes' inputs, those of every subgraph at
/// any depth (an If or Loop body reads the outer scope by name), and the
/// graph's outputs. What a rewrite may drop is what is not in here.
pub fn names_read(graph: &GraphProto) -> std::collections::HashSet<String> {
    fn walk(graph: &GraphProto, read: &mut std::collections::HashSet<String>) {
        read.extend(graph.output.iter().map(|o| o.name().to_owned()));
        for n in &graph.node {
            read.extend(n.input.iter().cloned());
            for a in &n.attribute {
                for g in a.g.iter().chain(&a.graphs) {
                    walk(g, read);
                }
            }
        }
    }
    let mut read = std::collections::HashSet::new();
    walk(graph, &mut read);
    read
}

/// The main graph's control-flow nodes whose bodies hold nodes, each as
/// "NAME (If): N nodes, M weight ops": the QDQ rewrite quantizes the main
/// graph only, so what runs in these bodies stays FP32, and the report
/// says so.
pub fn fp32_subgraphs(graph: &GraphProto) -> Vec<String> {
    fn count(graph: &GraphProto) -> (usize, usize) {
        graph.node.iter().fold((0, 0), |(nodes, weights), n| {
            let inner = n
                .attribute
                .iter()
                .flat_map(|a| a.g.iter().chain(&a.graphs))
                .map(count)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let weight = usize::from(super::qdq::WEIGHT_OPS.contains(&n.op_type()));
            (nodes + 1 + inner.0, weights + weight + inner.1)
        })
    }
    graph
        .node
        .iter()
        .filter_map(|n| {
            let (nodes, weights) = n
                .attribute
                .iter()
                .flat_map(|a| a.g.iter().chain(&a.graphs))
                .map(count)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            (nodes > 0).then(|| format!("{} ({}): {nodes} nodes, {weights} weight ops", n.name(), n.op_type()))
        })
        .collect()
}

pub fn promote_constants(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let outputs: std::collections::HashSet<String> = graph.output.iter().map(|o| o.name().to_owned()).collect();
    let mut promoted = 0;
    let nodes = std::mem::take(&mut graph.node);
    for n in nodes {
        let out = n.output.first().cloned().unwrap_or_default();
        let folded = if outputs.contains(&out) || !(n.domain().is_empty() || n.domain() == "ai.onnx") {
            None
        } else {
            match n.op_type() {
                "Constant" => n
                    .attribute
                    .iter()
                    .find(|a| a.name() == "value")
                    .and_then(|a| a.t.clone()),
                "Identity" => graph.initializer.iter().find(|t| t.name() == n.input[0]).cloned(),
                "Cast" if cast_target(&n) == Some(OnnxType::Float as i64) => graph
                    .initializer
                    .iter()
                    .find(|t| t.name() == n.input[0])
                    .and_then(as_float),
                _ => None,
            }
        };
        match folded {
            Some(mut tensor) => {
                tensor.name = Some(out);
                graph.initializer.push(tensor);
                promoted += 1;
            }
            None => graph.node.push(n),
        }
    }
    // A folded Identity or Cast leaves its source unread: drop it rather
    // than ship the weight twice.
    if promoted > 0 {
        // What any node reads (subgraphs included), the graph's outputs, and
        // inputs an initializer gives a default to.
        let mut read = names_read(graph);
        read.extend(graph.input.iter().map(|i| i.name().to_owned()));
        graph.initializer.retain(|t| read.contains(t.name()));
    }
    promoted
}

fn cast_target(n: &NodeProto) -> Option<i64> {
    n.attribute.iter().find(|a| a.name() == "to").and_then(|a| a.i)
}

/// A float or float16 tensor as float32 (raw data only; other encodings
/// and types are left to the runtime).
fn as_float(t: &TensorProto) -> Option<TensorProto> {
    let raw = t.raw_data.as_ref()?;
    let values: Vec<u8> = match OnnxType::try_from(t.data_type()).ok()? {
        OnnxType::Float => raw.clone(),
        OnnxType::Float16 => raw
            .chunks_exact(2)
            .flat_map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes())
            .collect(),
        _ => return None,
    };
    Some(tensor(t.name(), t.dims.clone(), OnnxType::Float, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_inside_nested_subgraphs_count() {
        // An If whose branch holds another If whose branch reads `w`, a
        // weight of the outer graph (as an exported RNN's decoder does).
        let reads = |input: &str| NodeProto {
            op_type: Some("Identity".into()),
            input: vec![input.into()],
            output: vec![format!("{input}_copy")],
            ..Default::default()
        };
        let branch = |nodes: Vec<NodeProto>| AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(attribute_proto::AttributeType::Graph as i32),
            g: Some(GraphProto {
                node: nodes,
                ..Default::default()
            }),
            ..Default::default()
        };
        let inner_if = NodeProto {
            op_type: Some("If".into()),
            input: vec!["c".into()],
            attribute: vec![branch(vec![reads("w")])],
            ..Default::default()
        };
        let outer_if = NodeProto {
            op_type: Some("If".into()),
            input: vec!["c".into()],
            attribute: vec![branch(vec![inner_if])],
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![reads("x"), outer_if],
            ..Default::default()
        };
        let read = names_read(&graph);
        assert!(
            read.contains("w") && read.contains("x") && read.contains("c"),
            "{read:?}"
        );

        // The report names the outer If and counts what its bodies hold.
        let mut graph = graph;
        graph.node[1].name = Some("decoder_if".into());
        if let Some(g) = graph.node[1].attribute[0].g.as_mut() {
            g.node.push(NodeProto {
                op_type: Some("MatMul".into()),
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                ..Default::default()
            });
        }
        assert_eq!(fp32_subgraphs(&graph), ["decoder_if (If): 3 nodes, 1 weight ops"]);
    }
}
