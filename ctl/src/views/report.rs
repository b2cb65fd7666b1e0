//! `dsmilctl report`: a deployment's INT8 quantization report (size,
//! accuracy, latency, per-layer precision), also written as HTML with
//! `--html`. `quantize` prints its report the same way.

use std::path::Path;

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::{Table, bytes};

/// The report of `target`: MODEL (its active version) or MODEL:VERSION
/// (or MODEL@VERSION).
pub async fn run(c: &mut Clients, target: &str, html: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let (model, version) = super::deployments::model_version(target)?;
    let version = version.unwrap_or(0);
    let r = c
        .control
        .report(pb::ReportRequest { model, version })
        .await?
        .into_inner();
    print(&r, html, json)
}

/// A quantization report as a table (or JSON), and optionally as HTML.
pub fn print(r: &pb::QuantizationReport, html: Option<&Path>, json: bool) -> anyhow::Result<()> {
    if let Some(path) = html {
        std::fs::write(path, crate::html::render(r)).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    output::print(r, json, || tables(r))
}

fn tables(r: &pb::QuantizationReport) {
    let what = match r.version {
        0 => r.model.clone(),
        v => format!("{} version {v}", r.model),
    };
    println!(
        "{what}: INT8 by {} ({} activations), {} calibration samples",
        r.method, r.activations, r.calibration_samples
    );
    let mut t = Table::new(&["", "FP32", "INT8", ""]);
    t.row(vec![
        "size".into(),
        bytes(r.size_before),
        bytes(r.size_after),
        size_change(r.size_before, r.size_after),
    ]);
    t.row(vec![
        r.metric.clone(),
        format!("{:.4}", r.fp32),
        format!("{:.4}", r.int8),
        if r.threshold > 0.0 {
            format!(
                "{}{:.4} ≥ {} needed, over {} samples",
                if r.metric == "top-1 accuracy" { "retention " } else { "" },
                r.retention,
                r.threshold,
                r.validation_samples
            )
        } else {
            format!("retention {:.4} over {} samples", r.retention, r.validation_samples)
        },
    ]);
    t.row(vec![
        "latency p50".into(),
        format!("{:.3} ms", r.fp32_p50_ms),
        format!("{:.3} ms", r.int8_p50_ms),
        String::new(),
    ]);
    t.row(vec![
        "latency p95".into(),
        format!("{:.3} ms", r.fp32_p95_ms),
        format!("{:.3} ms", r.int8_p95_ms),
        String::new(),
    ]);
    t.print();
    if !r.judged_output.is_empty() {
        println!(
            "judged on output {:?} by {} ({})",
            r.judged_output, r.metric, r.metric_reason
        );
    }
    if r.upgraded_from_opset > 0 {
        println!(
            "upgraded from opset {} to 13 before quantizing ({} nodes rewritten, outputs checked unchanged)",
            r.upgraded_from_opset,
            r.opset_rewrites.len()
        );
    }
    println!("output cosine similarity (mean): {:.5}", r.mean_cosine);
    println!("MACs in INT8: {:.1}%", r.int8_mac_share * 100.0);
    if !r.fp32_subgraphs.is_empty() {
        println!("left in FP32 inside control flow: {}", r.fp32_subgraphs.join("; "));
    }
    if !r.fp32_fallback.is_empty() {
        println!(
            "kept in FP32 by the mixed-precision fallback: {} ({} evaluations)",
            r.fp32_fallback.join(", "),
            r.evaluations
        );
    }
    let mut layers = Table::new(&["LAYER", "OP", "PRECISION", "MACS"]);
    for l in &r.layers {
        layers.row(vec![
            l.node.clone(),
            l.op.clone(),
            l.precision.clone(),
            l.macs.to_string(),
        ]);
    }
    layers.print();
}

/// "3.98× smaller" or "1.06× larger": the ratio of the larger to the
/// smaller size, so it reads the way it is worded.
pub fn size_change(before: u64, after: u64) -> String {
    match (before, after) {
        (0, _) | (_, 0) => String::new(),
        (b, a) if a > b => format!("{:.2}× larger", a as f64 / b as f64),
        (b, a) if a < b => format!("{:.2}× smaller", b as f64 / a as f64),
        _ => "same size".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::size_change;

    #[test]
    fn size_change_is_worded_by_direction() {
        assert_eq!(size_change(400, 100), "4.00× smaller");
        assert_eq!(size_change(100, 106), "1.06× larger");
        assert_eq!(size_change(100, 100), "same size");
        assert_eq!(size_change(0, 100), "");
    }
}
