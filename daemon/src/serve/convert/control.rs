//! dsmil.v1.Control: requests into the deployer's types (a deploy's spec
//! parsed once, into a `DeployRequest`), and answers built from its records
//! and serving entries.

use std::sync::atomic::Ordering;
use std::time::Duration;

use dsmil_proto::control as pb;
use sha2::Digest;

use crate::backend::Runtimes;
use crate::compress::Quantized;
use crate::deploy::{ActiveModel, DeployError, DeployRequest, DeploySpec, Deployer, Progress, RollbackTarget};
use crate::monitor::DriftReport;
use crate::monitor::drift::Assessment;
use crate::serve::control::ServerInfo;
use crate::serve::error::ControlError;
use crate::store::{DeploymentRecord, EventRecord, StateChange, VersionRecord};
use crate::topology::{Device, Layer};

/// What a prune removed (or, for a dry run, would remove).
pub fn pruned(pruned: crate::store::Pruned, dry_run: bool) -> pb::PruneResponse {
    pb::PruneResponse {
        dry_run,
        versions: pruned
            .versions
            .into_iter()
            .map(|v| pb::PrunedVersion {
                model: v.model,
                version: v.version,
                deployments: v.deployments,
            })
            .collect(),
        blobs: pruned
            .blobs
            .into_iter()
            .map(|b| pb::PrunedBlob {
                sha256: b.sha256,
                size_bytes: b.size_bytes,
            })
            .collect(),
        notes: pruned.notes,
    }
}

pub fn deployment(record: &DeploymentRecord) -> pb::Deployment {
    pb::Deployment {
        id: record.id,
        model: record.model.clone(),
        version: record.version,
        device: record.device,
        layer: u32::from(record.layer),
        state: record.state.to_string(),
        target: record.target.to_string(),
        effective_target: record.effective_target.to_string(),
        backend: record.backend.to_string(),
        performance_hint: record.performance_hint.to_string(),
        infer_requests: record.workers,
        precision: record.precision.to_string(),
        max_batch: record.max_batch,
        sha256: record.sha256.clone(),
        history: record.history.iter().map(state_change).collect(),
        created_unix_ms: record.created_ms,
        classification: record.classification,
        estimated_bytes: record.estimated_bytes,
        measured_bytes: record.measured_bytes,
    }
}

fn state_change(change: &StateChange) -> pb::StateChange {
    pb::StateChange {
        state: change.state.to_string(),
        at_unix_ms: change.at_ms,
        elapsed_ms: change.elapsed_ms,
        detail: change.detail.clone(),
    }
}

pub fn event(e: &EventRecord) -> pb::Event {
    pb::Event {
        seq: e.seq,
        at_unix_ms: e.at_ms,
        kind: e.kind.to_string(),
        model: e.model.clone(),
        version: e.version,
        device: e.device,
        layer: e.layer.map(u32::from),
        deployment_id: e.deployment_id,
        detail: e.detail.clone(),
        principal: e.principal.clone(),
        caller_uid: e.caller_uid,
        caller_pid: e.caller_pid,
        transport: e.transport.clone(),
        peer: e.peer.clone(),
    }
}

pub fn report(model: &str, version: u32, r: crate::compress::Report) -> pb::QuantizationReport {
    let e = r.evaluation.unwrap_or(crate::compress::Evaluation {
        metric: String::new(),
        fp32: 0.0,
        int8: 0.0,
        retention: 0.0,
        mean_cosine: 0.0,
        samples: 0,
        fp32_p50_ms: 0.0,
        fp32_p95_ms: 0.0,
        int8_p50_ms: 0.0,
        int8_p95_ms: 0.0,
        threshold: 0.0,
        output: String::new(),
        reason: String::new(),
    });
    pb::QuantizationReport {
        model: model.to_owned(),
        version,
        method: r.method,
        activations: r.activations,
        calibration_samples: r.calibration_samples as u32,
        size_before: r.size_before as u64,
        size_after: r.size_after as u64,
        metric: e.metric,
        fp32: e.fp32,
        int8: e.int8,
        retention: e.retention,
        mean_cosine: e.mean_cosine,
        validation_samples: e.samples as u32,
        fp32_p50_ms: e.fp32_p50_ms,
        fp32_p95_ms: e.fp32_p95_ms,
        int8_p50_ms: e.int8_p50_ms,
        int8_p95_ms: e.int8_p95_ms,
        layers: r
            .layers
            .into_iter()
            .map(|l| pb::LayerPrecision {
                node: l.node,
                op: l.op,
                precision: l.precision,
                macs: l.macs,
            })
            .collect(),
        quantized_nodes: r.quantized_nodes,
        int8_mac_share: r.int8_mac_share,
        fp32_fallback: r.fp32_fallback,
        evaluations: r.evaluations as u32,
        threshold: e.threshold,
        judged_output: e.output,
        metric_reason: e.reason,
        upgraded_from_opset: r.upgraded_from_opset.unwrap_or(0),
        opset_rewrites: r.opset_rewrites,
        fp32_subgraphs: r.fp32_subgraphs,
    }
}

// ---- dsmil.v1.Control: requests into the deployer's types, answers out ----

/// The upload's spec, parsed and checked into what the deployer takes
/// (attachments as (size, sha256)).
pub fn deploy_request(spec: pb::DeploySpec) -> Result<DeployRequest, DeployError> {
    let attachment = |a: Option<pb::Attachment>| a.map(|a| (a.size_bytes, a.sha256));
    DeploySpec {
        name: spec.name,
        device: spec.device,
        layer: spec.layer,
        format: spec.format,
        size_bytes: spec.size_bytes,
        sha256: spec.sha256,
        classification: spec.classification,
        note: spec.note,
        weights: attachment(spec.weights),
        calibration: attachment(spec.calibration),
        validation: attachment(spec.validation),
        method: spec.method,
        activations: spec.activations,
        gate_metric: spec.gate_metric,
        input_shapes: spec.input_shapes,
        state: spec.state,
        calibration_file: spec.calibration_file,
        validation_file: spec.validation_file,
        allow_fp32: spec.allow_fp32,
        backend: spec.backend,
        performance_hint: spec.performance_hint,
        workers: spec.infer_requests,
        precision: spec.precision,
        max_batch: spec.max_batch,
        signature: spec.signature,
        intra_op_threads: spec.intra_op_threads,
        dynamic_batching: spec.dynamic_batching,
        max_queue_delay_us: spec.max_queue_delay_us,
        preferred_batch_sizes: spec.preferred_batch_sizes,
    }
    .parse()
}

/// A pipeline stage reached, as the Deploy stream reports it.
pub fn progress(p: Progress) -> pb::DeployProgress {
    pb::DeployProgress {
        deployment_id: p.deployment_id,
        stage: p.stage.to_string(),
        detail: p.detail,
        elapsed_ms: p.elapsed.as_millis() as u64,
        done: false,
        deployment: None,
    }
}

/// The Deploy stream's last message: the deployment now serving.
pub fn deployed(record: &DeploymentRecord) -> pb::DeployProgress {
    pb::DeployProgress {
        deployment_id: record.id,
        stage: record.state.to_string(),
        detail: format!(
            "{} version {} serving on device {}",
            record.model, record.version, record.device
        ),
        elapsed_ms: 0,
        done: true,
        deployment: Some(deployment(record)),
    }
}

/// What to roll back and why ("requested by operator" when unsaid).
pub fn rollback_target(req: pb::RollbackRequest) -> Result<(RollbackTarget, String), ControlError> {
    let target = match req.target {
        Some(pb::rollback_request::Target::Model(m)) => RollbackTarget::Model(m),
        Some(pb::rollback_request::Target::Device(d)) => RollbackTarget::Device(d),
        Some(pb::rollback_request::Target::Layer(l)) => RollbackTarget::Layer(l),
        None => return Err(ControlError::NoRollbackTarget),
    };
    let reason = if req.reason.is_empty() {
        "requested by operator".to_owned()
    } else {
        req.reason
    };
    Ok((target, reason))
}

/// A model, its versions and what of it serves now.
pub fn model(name: &str, versions: Vec<VersionRecord>, serving: Option<&DeploymentRecord>) -> pb::Model {
    pb::Model {
        name: name.to_owned(),
        versions: versions
            .into_iter()
            .map(|v| pb::ModelVersion {
                version: v.version,
                sha256: v.sha256,
                size_bytes: v.size_bytes,
                classification: v.classification,
                created_unix_ms: v.created_ms,
                format: v.format.to_string(),
                note: v.note,
                signed_by: v.signed_by.as_ref().map(|s| s.key.clone()).unwrap_or_default(),
                signed_by_fingerprint: v.signed_by.map(|s| s.fingerprint).unwrap_or_default(),
            })
            .collect(),
        active_version: serving.map_or(0, |a| a.version),
        active_deployment: serving.map_or(0, |a| a.id),
        device: serving.map(|a| a.device),
        state: if serving.is_some() {
            "serving".into()
        } else {
            "not serving".into()
        },
    }
}

/// A device of the topology, with the target it really gets on this host
/// and the deployment serving on it.
pub fn device(d: &Device, layer: &Layer, runtimes: &Runtimes, serving: Option<&DeploymentRecord>) -> pb::Device {
    pb::Device {
        id: d.id,
        layer: u32::from(d.layer),
        layer_name: layer.name.clone(),
        target: d.target.map(|t| t.to_string()).unwrap_or_default(),
        effective_target: d
            .target
            .map(|t| runtimes.effective_target(t).to_string())
            .unwrap_or_default(),
        role: d.role.clone().unwrap_or_default(),
        reserved: layer.reserved,
        model: serving.map(|r| r.model.clone()).unwrap_or_default(),
        version: serving.map_or(0, |r| r.version),
        state: serving.map_or_else(String::new, |r| r.state.to_string()),
        deployment_id: serving.map_or(0, |r| r.id),
        estimated_bytes: serving.map_or(0, |r| r.estimated_bytes),
        measured_bytes: serving.map_or(0, |r| r.measured_bytes),
    }
}

/// A layer of the topology and the deployments serving in it.
pub fn layer(l: &Layer, serving: &[&DeploymentRecord]) -> pb::Layer {
    pb::Layer {
        id: u32::from(l.id),
        name: l.name.clone(),
        devices: crate::topology::format_id_list(&l.devices),
        budget_gb: l.budget_gb.unwrap_or(0.0),
        budget_bytes: l.budget_bytes.unwrap_or(0),
        default_target: l.target.map(|t| t.to_string()).unwrap_or_default(),
        reserved: l.reserved,
        active_deployments: serving.len() as u32,
        estimated_bytes: serving.iter().map(|r| r.estimated_bytes).sum(),
        measured_bytes: serving.iter().map(|r| r.measured_bytes).sum(),
    }
}

/// `dsmilctl status`: the server, its runtimes and what is wrong with it.
pub fn status(info: &ServerInfo, uptime: Duration, deployer: &Deployer) -> pb::StatusResponse {
    let runtimes = deployer.runtimes();
    pb::StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: deployer.registry().is_ready(),
        uptime_seconds: uptime.as_secs(),
        active_deployments: deployer.registry().all().len() as u32,
        runtimes: runtimes
            .status()
            .into_iter()
            .map(|r| pb::Runtime {
                name: r.name.to_owned(),
                available: r.available,
                detail: r.detail,
            })
            .collect(),
        unix_socket: info.unix_socket.clone(),
        tcp_address: info.tcp_address.clone(),
        metrics_address: info.metrics_address.clone(),
        http_address: info.http_address.clone(),
        warnings: deployer.warnings(),
        rss_bytes: crate::monitor::process::rss_bytes(),
        openvino_devices: runtimes
            .openvino()
            .map(|ov| ov.devices())
            .unwrap_or_default()
            .iter()
            .map(|d| pb::AcceleratorDevice {
                name: d.name.clone(),
                full_name: d.full_name.clone(),
                properties: d.properties.iter().cloned().collect(),
            })
            .collect(),
        state_dir: info.state_dir.clone(),
        // The reloader's to fill (`serve::control`).
        pending_restart: Vec::new(),
    }
}

/// One deployment's load over the last `span`, for `dsmilctl top`.
pub fn deployment_load(m: &ActiveModel, span: Duration) -> pb::DeploymentLoad {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let live = m.recent.summary(span);
    let stats = m.stats.snapshot();
    pb::DeploymentLoad {
        model: m.record.model.clone(),
        version: m.record.version,
        device: m.record.device,
        layer: u32::from(m.record.layer),
        backend: m.record.backend.to_string(),
        p50_ms: ms(live.p50),
        p95_ms: ms(live.p95),
        p99_ms: ms(live.p99),
        requests_per_second: live.per_second,
        recent_requests: live.samples as u64,
        successes: stats.success_count,
        failures: stats.fail_count,
        measured_bytes: m.record.measured_bytes,
        estimated_bytes: m.record.estimated_bytes,
        latency_alert: m.latency_alert.load(Ordering::Relaxed),
    }
}

/// One deployment's drift, as `dsmilctl drift` shows it: `alert` is the
/// judgement now, which the sampler's alert follows.
pub fn model_drift(m: &ActiveModel, drift: Assessment, threshold: f64) -> pb::ModelDrift {
    let (shadow_rows, shadow_agreed) = m.shadow.as_ref().map_or((0, 0), |s| s.agreement());
    let alert = drift.over();
    let (r, accuracy_drop) = (drift.report, drift.accuracy_drop);
    pb::ModelDrift {
        model: m.record.model.clone(),
        version: m.record.version,
        classifier: r.classifier,
        baseline_rows: r.baseline_rows as u64,
        live_rows: r.live_rows as u64,
        score: r.score(),
        bins: r.bins,
        baseline_share: r.baseline_share,
        live_share: r.live_share,
        psi: r.psi,
        baseline_confidence: r.baseline_confidence,
        live_confidence: r.live_confidence,
        confidence_change: r.confidence_change,
        reported: r.reported,
        live_accuracy: r.live_accuracy,
        accuracy_drop,
        alert,
        ready: r.ready,
        threshold,
        shadow_rows,
        shadow_agreed,
    }
}

/// The outcomes reported so far, after one more.
pub fn outcome(r: &DriftReport) -> pb::ReportOutcomeResponse {
    pb::ReportOutcomeResponse {
        reported: r.reported,
        live_accuracy: r.live_accuracy.unwrap_or_default(),
    }
}

/// The Quantize stream: the result (size, sha256, report), then the INT8
/// model in 1 MiB chunks.
pub fn quantized(model: &str, quantized: Quantized) -> Vec<pb::QuantizeResponse> {
    use pb::quantize_response::Part;
    let result = pb::QuantizeResult {
        size_bytes: quantized.model.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(&quantized.model)),
        report: Some(report(model, 0, quantized.report)),
    };
    let mut parts = vec![pb::QuantizeResponse {
        part: Some(Part::Result(result)),
    }];
    parts.extend(quantized.model.chunks(1 << 20).map(|c| pb::QuantizeResponse {
        part: Some(Part::Chunk(c.to_vec())),
    }));
    parts
}
