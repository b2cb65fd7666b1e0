//! Operator support: every operator a runtime would run must be a standard
//! ONNX operator available at the model's opset, or come from a domain the
//! operator allowed (`deployment.allowed_operator_domains`). Runtimes add
//! their own limits through [`crate::backend::Backend::supports_operator`].
//! Both checks read [`ModelInfo::operators`], which holds the operators of
//! the same bodies the security scan walks: the main graph, every nested
//! graph (If branches, Loop and Scan bodies) at any depth and every
//! model-local function's body. A call to a model-local function is not an
//! operator of its own (the runtime inlines the body, which is checked).
//! Training graphs are scanned for data but never run, so their operators
//! are not checked.

use std::collections::BTreeMap;

use super::ModelInfo;
use super::onnx_ops::STANDARD_OPS;

fn opset_of(info: &ModelInfo, domain: &str) -> Option<i64> {
    info.opsets
        .iter()
        .find(|(d, _)| d == domain || (domain.is_empty() && d == "ai.onnx"))
        .map(|(_, v)| *v)
}

fn is_standard_domain(domain: &str) -> bool {
    matches!(domain, "" | "ai.onnx" | "ai.onnx.ml")
}

/// Problems with the model's operators, one per domain or operator.
pub fn check_operators(info: &ModelInfo, allowed_domains: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut foreign: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (domain, op) in &info.operators {
        if is_standard_domain(domain) {
            let canonical = if domain == "ai.onnx" { "" } else { domain.as_str() };
            let opset = opset_of(info, canonical);
            match STANDARD_OPS.iter().find(|(d, name, _)| *d == canonical && name == op) {
                None => problems.push(format!(
                    "operator {op} is not an ONNX operator of domain {:?}",
                    if canonical.is_empty() { "ai.onnx" } else { canonical }
                )),
                Some((_, _, since)) if opset.is_some_and(|v| v < *since) => problems.push(format!(
                    "operator {op} needs opset ≥ {since}; the model imports opset {}",
                    opset.unwrap_or(0)
                )),
                Some(_) => {}
            }
        } else if !allowed_domains.iter().any(|d| d == domain) {
            foreign.entry(domain).or_default().push(op);
        }
    }
    for (domain, ops) in foreign {
        problems.push(format!(
            "custom operator domain {domain:?} (operators {}) is not allowed; add it to deployment.allowed_operator_domains if you trust it",
            ops.join(", ")
        ));
    }
    problems
}
