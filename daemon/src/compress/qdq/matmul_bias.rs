//! MatMul + Add(bias) into one Gemm, run before quantizing, so the bias is
//! added as int32 inside the integer kernel. Only a MatMul the mixed-precision
//! fallback keeps quantized, whose product only the Add reads and the graph
//! does not return, is fused; the float result is the same.

use std::collections::{HashMap, HashSet};

use dsmil_proto::onnx::GraphProto;
use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;

/// Makes MatMul(A, W) + B one Gemm(A, W, B) where A is a matrix (rank 2 in
/// calibration), W a constant matrix and B a constant row of biases. The
/// bias then becomes int32 inside the integer kernel instead of a separate
/// Add on a requantized product: one rounding step fewer, and faster. The
/// Gemm keeps the MatMul's name, so reports and mixed precision still name
/// the layer as the model does.
pub(super) fn fuse_matmul_bias(
    graph: &mut GraphProto,
    shapes: &HashMap<String, Vec<i64>>,
    keep_float: &HashSet<String>,
) -> usize {
    let mut fused = 0;
    let mut i = 0;
    while i < graph.node.len() {
        let m = &graph.node[i];
        let init = |name: &str| graph.initializer.iter().find(|t| t.name() == name);
        let matrix_input = m
            .input
            .first()
            .and_then(|a| shapes.get(a))
            .is_some_and(|s| s.len() == 2);
        let columns = m
            .input
            .get(1)
            .and_then(|w| init(w))
            .filter(|w| w.dims.len() == 2 && w.data_type() == OnnxType::Float as i32)
            .map(|w| w.dims[1]);
        let eligible =
            m.op_type() == "MatMul" && m.domain().is_empty() && matrix_input && !keep_float.contains(m.name());
        let (Some(columns), true) = (columns, eligible) else {
            i += 1;
            continue;
        };
        let y = m.output[0].clone();
        let consumers: Vec<usize> = (0..graph.node.len())
            .filter(|&j| graph.node[j].input.contains(&y))
            .collect();
        let add = match consumers.as_slice() {
            [j] if graph.node[*j].op_type() == "Add" && graph.node[*j].domain().is_empty() => *j,
            _ => {
                i += 1;
                continue;
            }
        };
        let bias = graph.node[add].input.iter().find(|b| **b != y).cloned();
        let bias_ok = bias.as_deref().and_then(init).is_some_and(|b| {
            let elements: i64 = b.dims.iter().product();
            b.data_type() == OnnxType::Float as i32 && elements == columns && b.dims.last() == Some(&columns)
        });
        if !bias_ok || graph.output.iter().any(|o| o.name() == y) {
            i += 1;
            continue;
        }
        let out = graph.node[add].output[0].clone();
        let gemm = &mut graph.node[i];
        gemm.op_type = Some("Gemm".into());
        gemm.input.push(bias.expect("checked"));
        gemm.output[0] = out;
        graph.node.remove(add);
        fused += 1;
        i += 1;
    }
    fused
}
