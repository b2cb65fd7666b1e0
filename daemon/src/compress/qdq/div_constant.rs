//! Division by a constant becomes multiplication by its reciprocal. ONNX
//! Runtime has an integer Mul but no integer Div, so a quantized `x / 6`
//! (the decomposed HardSwish of many mobile detectors) is an island of
//! float between a DequantizeLinear and a QuantizeLinear, where `x * (1/6)`
//! runs on the integers. The node keeps its name and its output, so the
//! calibrated ranges and the mixed-precision fallback's names still apply;
//! the results differ by float rounding only.

use std::collections::HashMap;

use dsmil_proto::onnx::GraphProto;

use super::read::float_values;
use crate::compress::graph::floats;

/// Rewrites each `Div(x, c)` whose divisor is a float initializer with
/// finite, non-zero values (and finite reciprocals) into `Mul(x, 1/c)`.
/// Returns how many.
pub(super) fn divisions_to_products(graph: &mut GraphProto) -> usize {
    let mut reciprocals: HashMap<String, String> = HashMap::new();
    let mut added = Vec::new();
    let mut rewritten = 0;
    for n in graph.node.iter_mut() {
        if n.op_type() != "Div" || !n.domain().is_empty() || n.input.len() != 2 {
            continue;
        }
        let divisor = n.input[1].clone();
        let name = match reciprocals.get(&divisor) {
            Some(name) => name.clone(),
            None => {
                let Some(t) = graph.initializer.iter().find(|t| t.name() == divisor) else {
                    continue;
                };
                let Some(values) = float_values(t) else { continue };
                let inverted: Vec<f32> = values.iter().map(|v| 1.0 / v).collect();
                if values.iter().any(|v| !v.is_finite() || *v == 0.0) || inverted.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                let name = format!("{divisor}_reciprocal");
                added.push(floats(&name, t.dims.clone(), &inverted));
                reciprocals.insert(divisor.clone(), name.clone());
                name
            }
        };
        n.op_type = Some("Mul".into());
        n.input[1] = name;
        rewritten += 1;
    }
    graph.initializer.extend(added);
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::graph::node;

    #[test]
    fn division_by_a_constant_becomes_a_product_and_nothing_else_does() {
        let mut graph = GraphProto {
            node: vec![
                node("Div", "by_six", vec!["x".into(), "six".into()], vec!["y".into()], None),
                node("Div", "again", vec!["y".into(), "six".into()], vec!["z".into()], None),
                node("Div", "by_input", vec!["z".into(), "w".into()], vec!["v".into()], None),
                node(
                    "Div",
                    "by_zero",
                    vec!["v".into(), "zero".into()],
                    vec!["u".into()],
                    None,
                ),
            ],
            initializer: vec![floats("six", vec![], &[6.0]), floats("zero", vec![1], &[0.0])],
            ..Default::default()
        };
        assert_eq!(divisions_to_products(&mut graph), 2);
        let ops: Vec<(&str, &str, &str)> = graph
            .node
            .iter()
            .map(|n| (n.name(), n.op_type(), n.input[1].as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("by_six", "Mul", "six_reciprocal"),
                ("again", "Mul", "six_reciprocal"),
                ("by_input", "Div", "w"),
                ("by_zero", "Div", "zero"),
            ]
        );
        let reciprocal = graph.initializer.iter().find(|t| t.name() == "six_reciprocal").unwrap();
        assert_eq!(float_values(reciprocal).unwrap(), [1.0 / 6.0]);
        assert_eq!(graph.initializer.len(), 3, "one reciprocal for both");
    }
}
