//! `dsmilctl deployments` (every deployment, or one model's, with its
//! state) and `dsmilctl show` (one deployment with its state history).

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::{Table, time_ms};

pub async fn list(c: &mut Clients, model: String, json: bool) -> anyhow::Result<()> {
    let r = c
        .control
        .list_deployments(pb::ListDeploymentsRequest { model })
        .await?
        .into_inner();
    output::print(&r, json, || table(&r))
}

fn table(r: &pb::ListDeploymentsResponse) {
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
}

pub async fn show(c: &mut Clients, id: u64, json: bool) -> anyhow::Result<()> {
    let d = c
        .control
        .get_deployment(pb::GetDeploymentRequest { id })
        .await?
        .into_inner();
    output::print(&d, json, || history(&d))
}

fn history(d: &pb::Deployment) {
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
}
