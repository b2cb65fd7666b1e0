//! The read-only commands: models, deployments, show, devices, layers,
//! status, events. Each prints a table, or the response as JSON.

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::table::{Table, bytes, time_ms};

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn models(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.list_models(pb::ListModelsRequest {}).await?.into_inner();
    if json {
        return print_json(&r);
    }
    let mut t = Table::new(&["MODEL", "ACTIVE", "DEVICE", "VERSIONS", "LATEST SHA256", "STATE"]);
    for m in &r.models {
        t.row(vec![
            m.name.clone(),
            if m.active_version == 0 {
                "-".into()
            } else {
                m.active_version.to_string()
            },
            m.device.map_or("-".into(), |d| d.to_string()),
            m.versions.len().to_string(),
            m.versions
                .last()
                .map_or(String::new(), |v| v.sha256[..12.min(v.sha256.len())].to_owned()),
            m.state.clone(),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn deployments(c: &mut Clients, model: String, json: bool) -> anyhow::Result<()> {
    let r = c
        .control
        .list_deployments(pb::ListDeploymentsRequest { model })
        .await?
        .into_inner();
    if json {
        return print_json(&r);
    }
    let mut t = Table::new(&[
        "ID", "MODEL", "VERSION", "DEVICE", "LAYER", "STATE", "BACKEND", "CREATED",
    ]);
    for d in &r.deployments {
        t.row(vec![
            d.id.to_string(),
            d.model.clone(),
            d.version.to_string(),
            d.device.to_string(),
            d.layer.to_string(),
            d.state.clone(),
            format!("{} ({})", d.backend, d.effective_target),
            time_ms(d.created_unix_ms),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn show(c: &mut Clients, id: u64, json: bool) -> anyhow::Result<()> {
    let d = c
        .control
        .get_deployment(pb::GetDeploymentRequest { id })
        .await?
        .into_inner();
    if json {
        return print_json(&d);
    }
    println!(
        "deployment {}: {} version {} on device {} (layer {})",
        d.id, d.model, d.version, d.device, d.layer
    );
    println!(
        "state {}, target {} → {} via {}, classification {}",
        d.state, d.target, d.effective_target, d.backend, d.classification
    );
    println!("sha256 {}", d.sha256);
    if d.max_batch > 0 {
        println!("max batch {} (batched models)", d.max_batch);
    }
    let mut t = Table::new(&["AT", "STATE", "AFTER", "DETAIL"]);
    for h in &d.history {
        t.row(vec![
            time_ms(h.at_unix_ms),
            h.state.clone(),
            format!("{} ms", h.elapsed_ms),
            h.detail.clone(),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn devices(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.list_devices(pb::ListDevicesRequest {}).await?.into_inner();
    if json {
        return print_json(&r);
    }
    let mut t = Table::new(&[
        "DEVICE", "LAYER", "TARGET", "ROLE", "MODEL", "VERSION", "STATE", "MEMORY",
    ]);
    for d in &r.devices {
        let target = if d.reserved {
            "reserved".to_owned()
        } else if d.target != d.effective_target {
            format!("{} → {}", d.target, d.effective_target)
        } else {
            d.target.clone()
        };
        t.row(vec![
            d.id.to_string(),
            format!("{} {}", d.layer, d.layer_name),
            target,
            d.role.clone(),
            d.model.clone(),
            if d.version == 0 {
                String::new()
            } else {
                d.version.to_string()
            },
            d.state.clone(),
            if d.model.is_empty() {
                String::new()
            } else {
                format!("{} (est. {})", bytes(d.measured_bytes), bytes(d.estimated_bytes))
            },
        ]);
    }
    t.print();
    Ok(())
}

pub async fn layers(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.list_layers(pb::ListLayersRequest {}).await?.into_inner();
    if json {
        return print_json(&r);
    }
    let mut t = Table::new(&[
        "LAYER",
        "NAME",
        "DEVICES",
        "TARGET",
        "BUDGET",
        "DEPLOYMENTS",
        "ESTIMATED",
        "MEASURED",
    ]);
    for l in &r.layers {
        t.row(vec![
            l.id.to_string(),
            l.name.clone(),
            l.devices.clone(),
            if l.reserved {
                "reserved".into()
            } else {
                l.default_target.clone()
            },
            if l.reserved {
                "-".into()
            } else {
                format!("{} GB", l.budget_gb)
            },
            l.active_deployments.to_string(),
            bytes(l.estimated_bytes),
            bytes(l.measured_bytes),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn status(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let s = c.control.status(pb::StatusRequest {}).await?.into_inner();
    if json {
        return print_json(&s);
    }
    println!(
        "dsmild {}: {}, up {} s",
        s.version,
        if s.ready { "ready" } else { "NOT READY" },
        s.uptime_seconds
    );
    println!("deployments serving: {}", s.active_deployments);
    println!("memory (RSS): {}", bytes(s.rss_bytes));
    println!("unix socket: {}", s.unix_socket);
    println!(
        "gRPC TCP: {}",
        if s.tcp_address.is_empty() {
            "off"
        } else {
            &s.tcp_address
        }
    );
    println!(
        "metrics: {}",
        if s.metrics_address.is_empty() {
            "off".to_owned()
        } else {
            format!("http://{}/metrics", s.metrics_address)
        }
    );
    println!("state: {}", s.state_dir);
    for r in &s.runtimes {
        println!(
            "runtime {}: {} ({})",
            r.name,
            if r.available { "available" } else { "UNAVAILABLE" },
            r.detail
        );
    }
    for d in &s.openvino_devices {
        println!("openvino device {}: {}", d.name, d.full_name);
        let mut properties: Vec<_> = d.properties.iter().collect();
        properties.sort();
        for (key, value) in properties {
            println!("    {key}: {value}");
        }
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
    Ok(())
}

pub struct EventQuery {
    pub model: String,
    pub after: u64,
    pub limit: u32,
    pub kind: String,
    pub wait_ms: u32,
}

pub async fn events(c: &mut Clients, q: EventQuery, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut after = q.after;
    let mut header = !json;
    loop {
        let request = pb::EventsRequest {
            after,
            model: q.model.clone(),
            limit: q.limit,
            wait_ms: if follow { 60_000 } else { q.wait_ms },
            kind: q.kind.clone(),
        };
        let r = c.control.events(request).await?.into_inner();
        if let Some(last) = r.events.last() {
            after = last.seq;
        }
        if json && !follow {
            return print_json(&r);
        }
        for e in &r.events {
            if json {
                println!("{}", serde_json::to_string(e)?);
                continue;
            }
            if header {
                println!(
                    "{:<5} {:<20} {:<14} {:<12} {:<7} {:<6} DETAIL",
                    "SEQ", "AT", "KIND", "MODEL", "VERSION", "DEVICE"
                );
                header = false;
            }
            println!(
                "{:<5} {:<20} {:<14} {:<12} {:<7} {:<6} {}",
                e.seq,
                time_ms(e.at_unix_ms),
                e.kind,
                e.model,
                if e.version == 0 {
                    String::new()
                } else {
                    e.version.to_string()
                },
                e.device.map_or(String::new(), |d| d.to_string()),
                e.detail
            );
        }
        if !follow {
            return Ok(());
        }
    }
}

pub async fn undeploy(c: &mut Clients, model: String, json: bool) -> anyhow::Result<()> {
    let r = c.control.undeploy(pb::UndeployRequest { model }).await?.into_inner();
    if json {
        return print_json(&r);
    }
    for d in &r.retired {
        println!(
            "retired {} version {} from device {} (deployment {})",
            d.model, d.version, d.device, d.id
        );
    }
    Ok(())
}

pub async fn rollback(
    c: &mut Clients,
    target: pb::rollback_request::Target,
    reason: String,
    json: bool,
) -> anyhow::Result<()> {
    let request = pb::RollbackRequest {
        target: Some(target),
        reason,
    };
    let r = c.control.rollback(request).await?.into_inner();
    if json {
        return print_json(&r);
    }
    for d in &r.restored {
        println!(
            "{} is back on version {} (device {}, deployment {})",
            d.model, d.version, d.device, d.id
        );
    }
    Ok(())
}

pub async fn report(c: &mut Clients, target: &str, html: Option<&std::path::Path>, json: bool) -> anyhow::Result<()> {
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
    print_report(&r, html, json)
}

/// A quantization report as a table (or JSON), and optionally as HTML.
pub fn print_report(r: &pb::QuantizationReport, html: Option<&std::path::Path>, json: bool) -> anyhow::Result<()> {
    if let Some(path) = html {
        std::fs::write(path, crate::html::render(r)).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    if json {
        return print_json(r);
    }
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
    Ok(())
}

pub async fn reload(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.reload(pb::ReloadRequest {}).await?.into_inner();
    if json {
        return print_json(&r);
    }
    if r.changes.is_empty() {
        println!("reloaded: no change");
    }
    for change in &r.changes {
        println!("changed: {change}");
    }
    for warning in &r.warnings {
        println!("warning: {warning}");
    }
    Ok(())
}

pub async fn top(c: &mut Clients, every: u64, once: bool, json: bool) -> anyhow::Result<()> {
    loop {
        let r = c.control.top(pb::TopRequest {}).await?.into_inner();
        if json {
            return print_json(&r);
        }
        if !once {
            // Clear the screen and go home, as top(1) does.
            print!("\x1b[2J\x1b[H");
        }
        println!(
            "dsmild: RSS {}; latency and rate over the last {} s",
            bytes(r.rss_bytes),
            r.span_seconds
        );
        let mut t = Table::new(&[
            "MODEL", "VER", "DEVICE", "LAYER", "BACKEND", "P50", "P95", "P99", "REQ/S", "OK", "FAILED", "MEMORY",
            "ALERT",
        ]);
        for d in &r.deployments {
            t.row(vec![
                d.model.clone(),
                d.version.to_string(),
                d.device.to_string(),
                d.layer.to_string(),
                d.backend.clone(),
                format!("{:.3} ms", d.p50_ms),
                format!("{:.3} ms", d.p95_ms),
                format!("{:.3} ms", d.p99_ms),
                format!("{:.1}", d.requests_per_second),
                d.successes.to_string(),
                d.failures.to_string(),
                bytes(if d.measured_bytes > 0 {
                    d.measured_bytes
                } else {
                    d.estimated_bytes
                }),
                if d.latency_alert { "p99".into() } else { String::new() },
            ]);
        }
        t.print();
        if once {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(every.max(1))).await;
    }
}

pub async fn drift(c: &mut Clients, model: String, json: bool) -> anyhow::Result<()> {
    let r = c.control.drift(pb::DriftRequest { model }).await?.into_inner();
    if json {
        return print_json(&r);
    }
    for m in &r.models {
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
    Ok(())
}

pub async fn feedback(c: &mut Clients, model: String, predicted: i64, actual: i64, json: bool) -> anyhow::Result<()> {
    let r = c
        .control
        .report_outcome(pb::ReportOutcomeRequest {
            model,
            predicted,
            actual,
        })
        .await?
        .into_inner();
    if json {
        return print_json(&r);
    }
    println!("{} outcomes reported; live accuracy {:.4}", r.reported, r.live_accuracy);
    Ok(())
}
