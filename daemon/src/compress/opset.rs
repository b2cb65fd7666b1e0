//! Upgrading a model's default-domain opset (7–12) to 13, the first opset
//! whose QuantizeLinear/DequantizeLinear take a per-channel axis. Each
//! operator whose definition changed on the way is rewritten to keep its
//! meaning, not just relabelled: attributes that became inputs become
//! int64/float constants, Softmax-family ops keep their old "flatten from
//! `axis`" semantics, Upsample and Resize-10 become Resize-13 with the
//! coordinate rule they implied, Dropout (inference) becomes Identity, and
//! BatchNormalization loses attributes that no longer exist. Subgraphs
//! (If/Loop/Scan bodies) are upgraded with their node.
//!
//! What cannot be carried over is refused naming the node and the op. The
//! caller ([`super::upgrade_checked`]) runs the original and the upgraded
//! model on the deploy's data and refuses the upgrade if any output differs,
//! so a conversion this module gets wrong never reaches quantization.
//!
//! Pure: no I/O and no runtime.

use std::collections::HashMap;

use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, attribute_proto};

use super::graph::{default_opset, node, tensor};

/// The opset the quantizer writes.
pub const TARGET: i64 = 13;
/// The oldest opset this module converts (the validator's floor).
pub const OLDEST: i64 = 7;

/// Operators that left the standard (experimental in opset 1, removed
/// later) and have no opset-13 definition.
const REMOVED: &[&str] = &[
    "ATen",
    "Affine",
    "ConstantFill",
    "Crop",
    "DynamicSlice",
    "GRUUnit",
    "GivenTensorFill",
    "ImageScaler",
    "ParametricSoftplus",
    "Scale",
    "ScaledTanh",
];

/// A model upgraded to [`TARGET`], with what was rewritten.
#[derive(Debug, Clone)]
pub struct Upgraded {
    pub model: ModelProto,
    pub from: i64,
    /// One line per rewritten node: "Softmax_3 (Softmax): axis 1 kept by flattening".
    pub rewrites: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot upgrade opset {from} to {TARGET}: node {node} ({op}): {why}")]
pub struct UpgradeError {
    pub from: i64,
    pub node: String,
    pub op: String,
    pub why: String,
}

/// `model` at opset 13; None if it already is at 13 or later.
pub fn upgrade(model: &ModelProto) -> Result<Option<Upgraded>, UpgradeError> {
    let from = default_opset(model);
    if from >= TARGET {
        return Ok(None);
    }
    let mut upgraded = model.clone();
    let mut cx = Context {
        from,
        rewrites: Vec::new(),
        fresh: 0,
    };
    if let Some(graph) = upgraded.graph.as_mut() {
        cx.graph(graph)?;
    }
    for import in &mut upgraded.opset_import {
        if import.domain().is_empty() || import.domain() == "ai.onnx" {
            import.version = Some(TARGET);
        }
    }
    // Opset 13 needs IR 7 or later.
    if upgraded.ir_version() < 7 {
        upgraded.ir_version = Some(7);
    }
    Ok(Some(Upgraded {
        model: upgraded,
        from,
        rewrites: cx.rewrites,
    }))
}

struct Context {
    from: i64,
    rewrites: Vec<String>,
    /// Counter for names of added tensors and nodes.
    fresh: usize,
}

/// What a node becomes: itself (changed in place) or several nodes, and
/// constants to add to its graph.
struct Rewrite {
    nodes: Vec<NodeProto>,
    constants: Vec<TensorProto>,
    note: Option<String>,
}

impl Context {
    fn graph(&mut self, graph: &mut GraphProto) -> Result<(), UpgradeError> {
        let ranks = known_ranks(graph);
        let used = crate::compress::graph::names_read(graph);
        let nodes = std::mem::take(&mut graph.node);
        for mut n in nodes {
            for attribute in &mut n.attribute {
                if let Some(g) = attribute.g.as_mut() {
                    self.graph(g)?;
                }
                for g in &mut attribute.graphs {
                    self.graph(g)?;
                }
            }
            let label = format!("{} ({})", display_name(&n), n.op_type());
            let rewrite = if n.domain().is_empty() || n.domain() == "ai.onnx" {
                self.node(n, &ranks, &used)?
            } else {
                Rewrite {
                    nodes: vec![n],
                    constants: Vec::new(),
                    note: None,
                }
            };
            if let Some(note) = rewrite.note {
                self.rewrites.push(format!("{label}: {note}"));
            }
            graph.node.extend(rewrite.nodes);
            graph.initializer.extend(rewrite.constants);
        }
        Ok(())
    }

    fn refuse(&self, n: &NodeProto, why: impl Into<String>) -> UpgradeError {
        UpgradeError {
            from: self.from,
            node: display_name(n),
            op: n.op_type().to_owned(),
            why: why.into(),
        }
    }

    fn name(&mut self, n: &NodeProto, what: &str) -> String {
        self.fresh += 1;
        format!("{}__opset13_{what}_{}", display_name(n), self.fresh)
    }

    /// An int64 constant made from attribute `attr` of `n`, if present.
    fn ints_input(&mut self, n: &mut NodeProto, attr: &str, out: &mut Vec<TensorProto>) -> Option<String> {
        let values = take_attribute(n, attr)?.ints;
        let name = self.name(n, attr);
        out.push(int64s(&name, &values));
        Some(name)
    }

    fn node(
        &mut self,
        mut n: NodeProto,
        ranks: &HashMap<String, usize>,
        used: &std::collections::HashSet<String>,
    ) -> Result<Rewrite, UpgradeError> {
        let op = n.op_type().to_owned();
        let mut constants = Vec::new();
        let changed = |since: i64| self.from < since;
        let note: Option<String> = match op.as_str() {
            _ if REMOVED.contains(&op.as_str()) => {
                return Err(self.refuse(&n, "the operator was removed from the standard; re-export the model"));
            }
            "Softmax" | "LogSoftmax" | "Hardmax" if changed(13) => {
                return self.softmax(n, ranks);
            }
            "Split" if changed(13) => self.ints_input(&mut n, "split", &mut constants).map(|c| {
                ensure_input(&mut n, 1, c);
                "split became an input".to_owned()
            }),
            "Squeeze" | "Unsqueeze" | "ReduceSum" if changed(13) => {
                self.ints_input(&mut n, "axes", &mut constants).map(|c| {
                    ensure_input(&mut n, 1, c);
                    "axes became an input".to_owned()
                })
            }
            "Clip" if changed(11) => {
                let min = take_attribute(&mut n, "min").and_then(|a| a.f);
                let max = take_attribute(&mut n, "max").and_then(|a| a.f);
                for (slot, value) in [(1, min), (2, max)] {
                    if let Some(v) = value {
                        let c = self.name(&n, if slot == 1 { "min" } else { "max" });
                        constants.push(scalar_f32(&c, v));
                        ensure_input(&mut n, slot, c);
                    }
                }
                Some("min/max became inputs".to_owned())
            }
            "Pad" if changed(11) => {
                let pads = take_attribute(&mut n, "pads").or_else(|| take_attribute(&mut n, "paddings"));
                let Some(pads) = pads else {
                    return Err(self.refuse(&n, "no pads attribute"));
                };
                let c = self.name(&n, "pads");
                constants.push(int64s(&c, &pads.ints));
                ensure_input(&mut n, 1, c);
                if let Some(v) = take_attribute(&mut n, "value").and_then(|a| a.f) {
                    let c = self.name(&n, "value");
                    constants.push(scalar_f32(&c, v));
                    ensure_input(&mut n, 2, c);
                }
                Some("pads/value became inputs".to_owned())
            }
            "Slice" if changed(10) => {
                let starts = self.ints_input(&mut n, "starts", &mut constants);
                let ends = self.ints_input(&mut n, "ends", &mut constants);
                let (Some(starts), Some(ends)) = (starts, ends) else {
                    return Err(self.refuse(&n, "Slice without starts and ends"));
                };
                ensure_input(&mut n, 1, starts);
                ensure_input(&mut n, 2, ends);
                if let Some(axes) = self.ints_input(&mut n, "axes", &mut constants) {
                    ensure_input(&mut n, 3, axes);
                }
                Some("starts/ends/axes became inputs".to_owned())
            }
            "TopK" if changed(10) => {
                let Some(k) = take_attribute(&mut n, "k").and_then(|a| a.i) else {
                    return Err(self.refuse(&n, "TopK without k"));
                };
                let c = self.name(&n, "k");
                constants.push(int64s(&c, &[k]));
                ensure_input(&mut n, 1, c);
                Some("k became an input".to_owned())
            }
            "Upsample" => return self.upsample(n),
            "Resize" if changed(11) => return self.upsample(n),
            "Scatter" => {
                n.op_type = Some("ScatterElements".into());
                Some("renamed ScatterElements (same definition)".to_owned())
            }
            "Dropout" => {
                if n.output.get(1).is_some_and(|mask| used.contains(mask)) {
                    return Err(self.refuse(&n, "its mask output is used; inference has no dropout mask"));
                }
                let identity = node(
                    "Identity",
                    &display_name(&n),
                    vec![n.input[0].clone()],
                    vec![n.output[0].clone()],
                    None,
                );
                return Ok(Rewrite {
                    nodes: vec![identity],
                    constants,
                    note: Some("Identity at inference".to_owned()),
                });
            }
            "BatchNormalization" if changed(9) => {
                if let Some(spatial) = take_attribute(&mut n, "spatial").and_then(|a| a.i)
                    && spatial != 1
                {
                    return Err(self.refuse(&n, "spatial = 0 (per-element statistics) has no opset-9 form"));
                }
                take_attribute(&mut n, "is_test");
                take_attribute(&mut n, "consumed_inputs");
                Some("spatial attribute dropped".to_owned())
            }
            _ => None,
        };
        Ok(Rewrite {
            nodes: vec![n],
            constants,
            note,
        })
    }

    /// Softmax-family before 13 flattened the input to 2-D at `axis`
    /// (default 1) and normalised each row; at 13 it normalises one axis
    /// (default -1). Where the input's rank is known and `axis` is its last
    /// axis the two agree; otherwise the old meaning is spelled out:
    /// Flatten, normalise the last axis, Reshape back.
    fn softmax(&mut self, mut n: NodeProto, ranks: &HashMap<String, usize>) -> Result<Rewrite, UpgradeError> {
        let axis = take_attribute(&mut n, "axis").and_then(|a| a.i).unwrap_or(1);
        // Input and output have the same rank; either may be declared.
        let rank = n
            .input
            .first()
            .and_then(|i| ranks.get(i))
            .or_else(|| n.output.first().and_then(|o| ranks.get(o)))
            .copied();
        if let Some(rank) = rank {
            let last = rank as i64 - 1;
            if axis == last || axis == -1 {
                n.attribute.push(int_attr("axis", last));
                return Ok(Rewrite {
                    nodes: vec![n],
                    constants: Vec::new(),
                    note: Some(format!("axis {axis} is the last of rank {rank}")),
                });
            }
        }
        let x = n.input[0].clone();
        let y = n.output[0].clone();
        let (shape, flat, normalised) = (self.name(&n, "shape"), self.name(&n, "flat"), self.name(&n, "norm"));
        let base = display_name(&n);
        let shape_node = node(
            "Shape",
            &format!("{base}__shape"),
            vec![x.clone()],
            vec![shape.clone()],
            None,
        );
        let flatten = node(
            "Flatten",
            &format!("{base}__flatten"),
            vec![x],
            vec![flat.clone()],
            Some(axis),
        );
        let mut op = n.clone();
        op.input = vec![flat];
        op.output = vec![normalised.clone()];
        op.attribute.push(int_attr("axis", -1));
        let reshape = node(
            "Reshape",
            &format!("{base}__reshape"),
            vec![normalised, shape],
            vec![y],
            None,
        );
        Ok(Rewrite {
            nodes: vec![shape_node, flatten, op, reshape],
            constants: Vec::new(),
            note: Some(format!(
                "axis {axis}: flattened, normalised, reshaped (the pre-13 meaning)"
            )),
        })
    }

    /// Upsample (7: scales attribute; 9: scales input) and Resize-10 become
    /// Resize-13 with an empty roi. Their index mapping is Resize's
    /// "asymmetric" (x_in = x_out / scale), and nearest picks floor.
    fn upsample(&mut self, mut n: NodeProto) -> Result<Rewrite, UpgradeError> {
        let mut constants = Vec::new();
        let scales = match take_attribute(&mut n, "scales") {
            Some(a) if !a.floats.is_empty() => {
                let c = self.name(&n, "scales");
                constants.push(floats_tensor(&c, &a.floats));
                c
            }
            _ => match n.input.get(1) {
                Some(s) if !s.is_empty() => s.clone(),
                _ => return Err(self.refuse(&n, "no scales")),
            },
        };
        let mode = take_attribute(&mut n, "mode")
            .and_then(|a| a.s)
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_else(|| "nearest".to_owned());
        let mode = match mode.as_str() {
            "nearest" => "nearest",
            "linear" | "bilinear" => "linear",
            other => return Err(self.refuse(&n, format!("mode {other:?}"))),
        };
        let was = n.op_type().to_owned();
        n.op_type = Some("Resize".into());
        n.input = vec![n.input[0].clone(), String::new(), scales];
        n.attribute.retain(|a| a.name() != "mode");
        n.attribute.push(string_attr("mode", mode));
        n.attribute
            .push(string_attr("coordinate_transformation_mode", "asymmetric"));
        if mode == "nearest" {
            n.attribute.push(string_attr("nearest_mode", "floor"));
        }
        Ok(Rewrite {
            nodes: vec![n],
            constants,
            note: Some(format!("{was} became Resize ({mode}, asymmetric)")),
        })
    }
}

fn display_name(n: &NodeProto) -> String {
    match n.name() {
        "" => n.output.first().map_or_else(|| "?".to_owned(), |o| format!("<{o}>")),
        name => name.to_owned(),
    }
}

/// The ranks of tensors the graph declares (inputs, outputs, value_info).
fn known_ranks(graph: &GraphProto) -> HashMap<String, usize> {
    use dsmil_proto::onnx::type_proto::Value;
    graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
        .filter_map(|v| {
            let Some(Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
                return None;
            };
            Some((v.name().to_owned(), t.shape.as_ref()?.dim.len()))
        })
        .chain(graph.initializer.iter().map(|t| (t.name().to_owned(), t.dims.len())))
        .collect()
}

fn take_attribute(n: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let i = n.attribute.iter().position(|a| a.name() == name)?;
    Some(n.attribute.remove(i))
}

/// Puts `name` at input `slot`, padding skipped optional inputs with "".
fn ensure_input(n: &mut NodeProto, slot: usize, name: String) {
    while n.input.len() <= slot {
        n.input.push(String::new());
    }
    n.input[slot] = name;
}

fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn string_attr(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn int64s(name: &str, values: &[i64]) -> TensorProto {
    tensor(
        name,
        vec![values.len() as i64],
        OnnxType::Int64,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn floats_tensor(name: &str, values: &[f32]) -> TensorProto {
    tensor(
        name,
        vec![values.len() as i64],
        OnnxType::Float,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn scalar_f32(name: &str, value: f32) -> TensorProto {
    tensor(name, vec![], OnnxType::Float, value.to_le_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsmil_proto::onnx::OperatorSetIdProto;

    fn model(opset: i64, nodes: Vec<NodeProto>) -> ModelProto {
        ModelProto {
            ir_version: Some(6),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(GraphProto {
                node: nodes,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_ints(mut n: NodeProto, name: &str, values: &[i64]) -> NodeProto {
        n.attribute.push(AttributeProto {
            name: Some(name.into()),
            r#type: Some(attribute_proto::AttributeType::Ints as i32),
            ints: values.to_vec(),
            ..Default::default()
        });
        n
    }

    #[test]
    fn attributes_that_became_inputs_become_constants() {
        let squeeze = with_ints(
            node("Squeeze", "sq", vec!["x".into()], vec!["y".into()], None),
            "axes",
            &[0],
        );
        let up = upgrade(&model(11, vec![squeeze])).unwrap().unwrap();
        assert_eq!(up.from, 11);
        assert_eq!(default_opset(&up.model), 13);
        assert_eq!(up.model.ir_version(), 7);
        let g = up.model.graph.as_ref().unwrap();
        assert!(g.node[0].attribute.is_empty());
        assert_eq!(g.node[0].input[1], g.initializer[0].name());
        assert_eq!(g.initializer[0].raw_data(), 0i64.to_le_bytes());
        assert_eq!(up.rewrites, ["sq (Squeeze): axes became an input"]);
    }

    #[test]
    fn a_model_at_13_is_left_alone_and_removed_ops_are_refused_by_name() {
        assert!(upgrade(&model(13, vec![])).unwrap().is_none());
        let err = upgrade(&model(
            9,
            vec![node("ImageScaler", "scale0", vec!["x".into()], vec!["y".into()], None)],
        ))
        .unwrap_err();
        assert_eq!((err.node.as_str(), err.op.as_str()), ("scale0", "ImageScaler"));
        assert!(err.to_string().contains("opset 9 to 13"), "{err}");
        let dropout = || node("Dropout", "d", vec!["x".into()], vec!["y".into(), "mask".into()], None);
        let unused = upgrade(&model(11, vec![dropout()])).unwrap().unwrap();
        assert_eq!(unused.model.graph.unwrap().node[0].op_type(), "Identity");
        let reads_mask = node("Not", "n", vec!["mask".into()], vec!["z".into()], None);
        let err = upgrade(&model(11, vec![dropout(), reads_mask])).unwrap_err();
        assert!(err.why.contains("mask"), "{err}");
    }

    #[test]
    fn softmax_keeps_its_pre_13_meaning() {
        let sm = node("Softmax", "sm", vec!["x".into()], vec!["y".into()], Some(1));
        let up = upgrade(&model(11, vec![sm])).unwrap().unwrap();
        let ops: Vec<&str> = up
            .model
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type())
            .collect();
        assert_eq!(
            ops,
            ["Shape", "Flatten", "Softmax", "Reshape"],
            "rank unknown: spelled out"
        );
    }
}
