//! `dsmilctl report`: a deployment's INT8 quantization report (size,
//! accuracy, latency, per-layer precision), also written as HTML with
//! `--html`. `quantize` prints its report the same way.

use std::path::Path;

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::{Table, bytes};

/// The report of `target`: MODEL (its active version) or MODEL@VERSION.
pub async fn run(c: &mut Clients, target: &str, html: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let (model, version) = match target.split_once('@') {
        Some((m, v)) => (
            m.to_owned(),
            v.parse()
                .map_err(|_| anyhow::anyhow!("{v:?} is not a version number"))?,
        ),
        None => (target.to_owned(), 0),
    };
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
    let ratio = if r.size_after > 0 {
        r.size_before as f64 / r.size_after as f64
    } else {
        0.0
    };
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
        format!("{ratio:.2}x smaller"),
    ]);
    t.row(vec![
        r.metric.clone(),
        format!("{:.4}", r.fp32),
        format!("{:.4}", r.int8),
        format!("retention {:.4} over {} samples", r.retention, r.validation_samples),
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
    println!("output cosine similarity (mean): {:.5}", r.mean_cosine);
    println!("MACs in INT8: {:.1}%", r.int8_mac_share * 100.0);
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
