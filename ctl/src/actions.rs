//! The commands that change what dsmild does, other than uploading a model
//! (`deploy`, `quantize`): undeploy, rollback, reload of its configuration,
//! prune (old versions and their files), and feedback (a reported outcome,
//! counted towards accuracy drift). Each
//! sends one request and prints what the daemon says it did, never a
//! result of its own.

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;

pub async fn undeploy(c: &mut Clients, model: String, json: bool) -> anyhow::Result<()> {
    let r = c.control.undeploy(pb::UndeployRequest { model }).await?.into_inner();
    output::print(&r, json, || {
        for d in &r.retired {
            println!(
                "retired {} version {} from device {} (deployment {})",
                d.model, d.version, d.device, d.id
            );
        }
    })
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
    output::print(&r, json, || {
        for d in &r.restored {
            println!(
                "{} is back on version {} (device {}, deployment {})",
                d.model, d.version, d.device, d.id
            );
        }
    })
}

pub async fn reload(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.reload(pb::ReloadRequest {}).await?.into_inner();
    output::print(&r, json, || {
        if r.changes.is_empty() {
            match r.in_force.as_str() {
                "" => println!("reloaded: no change"),
                // The file watcher (or SIGHUP) got there first.
                earlier => println!("reloaded: nothing new; the file is already {earlier}"),
            }
        }
        for change in &r.changes {
            println!("changed: {change}");
        }
        for warning in &r.warnings {
            println!("warning: {warning}");
        }
        for section in &r.pending_restart {
            println!("pending restart: [{section}] differs from what dsmild started with; restart dsmild to apply it");
        }
    })
}

pub async fn prune(c: &mut Clients, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let r = c.control.prune(pb::PruneRequest { dry_run }).await?.into_inner();
    output::print(&r, json, || {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        for v in &r.versions {
            let ids: Vec<String> = v.deployments.iter().map(u64::to_string).collect();
            println!(
                "{verb} {} version {} (deployments {})",
                v.model,
                v.version,
                if ids.is_empty() { "none".into() } else { ids.join(", ") }
            );
        }
        for b in &r.blobs {
            println!("{verb} blob {} ({})", b.sha256, crate::table::bytes(b.size_bytes));
        }
        if r.versions.is_empty() && r.blobs.is_empty() {
            println!("nothing to prune");
        }
        for note in &r.notes {
            println!("note: {note}");
        }
    })
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
    output::print(&r, json, || {
        println!("{} outcomes reported; live accuracy {:.4}", r.reported, r.live_accuracy);
    })
}
