//! `dsmilctl drift`: per deployment, output drift (baseline against the
//! live window), the FP32 shadow check and accuracy on reported outcomes.

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::Table;

pub async fn run(c: &mut Clients, model: String, json: bool) -> anyhow::Result<()> {
    let r = c.control.drift(pb::DriftRequest { model }).await?.into_inner();
    output::print(&r, json, || r.models.iter().for_each(model_drift))
}

fn model_drift(m: &pb::ModelDrift) {
    println!(
        "{} v{}: drift score {:.4} (PSI {:.4}, mean confidence {:.4} → {:.4}, {:+.2}%), threshold {:.4}{}{}",
        m.model,
        m.version,
        m.score,
        m.psi,
        m.baseline_confidence,
        m.live_confidence,
        m.confidence_change * 100.0,
        m.threshold,
        if m.alert { " — ALERT" } else { "" },
        if m.ready { "" } else { " (not enough rows yet)" }
    );
    println!("  baseline {} rows, live window {} rows", m.baseline_rows, m.live_rows);
    if m.shadow_rows > 0 {
        println!(
            "  shadow check: INT8 top-1 agrees with FP32 on {}/{} rows ({:.2}%)",
            m.shadow_agreed,
            m.shadow_rows,
            100.0 * m.shadow_agreed as f64 / m.shadow_rows as f64
        );
    }
    if let (Some(acc), true) = (m.live_accuracy, m.reported > 0) {
        let drop = m
            .accuracy_drop
            .map(|d| format!(", {:.2}% below validated", d * 100.0))
            .unwrap_or_default();
        println!("  live accuracy {acc:.4} over {} reported outcomes{drop}", m.reported);
    }
    let mut t = Table::new(&["BIN", "BASELINE", "LIVE"]);
    for (i, bin) in m.bins.iter().enumerate() {
        t.row(vec![
            bin.clone(),
            format!("{:.1}%", m.baseline_share.get(i).copied().unwrap_or_default() * 100.0),
            format!("{:.1}%", m.live_share.get(i).copied().unwrap_or_default() * 100.0),
        ]);
    }
    t.print();
}
