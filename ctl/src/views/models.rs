//! `dsmilctl models`: each model with its active version and the id of the
//! deployment serving it (for `dsmilctl show`), device, number
//! of versions and the latest one's sha256 and signer (`--json` has every
//! version's, with the signing key's fingerprint). Versions whose deploy
//! failed and never served are marked as failed attempts: dsmild never
//! reuses a version number (see `Journal::create_deployment`).

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::Table;

pub async fn run(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.list_models(pb::ListModelsRequest {}).await?.into_inner();
    let deployments = if json {
        Vec::new()
    } else {
        c.control
            .list_deployments(pb::ListDeploymentsRequest::default())
            .await?
            .into_inner()
            .deployments
    };
    output::print(&r, json, || table(&r, &deployments))
}

/// The versions of `model` that were only failed attempts: every deployment
/// of them ended Failed and none ever went Active.
fn failed_attempts(model: &str, deployments: &[pb::Deployment]) -> Vec<u32> {
    let mut failed: Vec<u32> = deployments
        .iter()
        .filter(|d| d.model == model && d.state == "Failed")
        .map(|d| d.version)
        .collect();
    failed.sort_unstable();
    failed.dedup();
    failed.retain(|&v| {
        deployments
            .iter()
            .filter(|d| d.model == model && d.version == v)
            .all(|d| d.state == "Failed" && !d.history.iter().any(|h| h.state == "Active"))
    });
    failed
}

fn versions_cell(m: &pb::Model, deployments: &[pb::Deployment]) -> String {
    let failed = failed_attempts(&m.name, deployments);
    if failed.is_empty() {
        return m.versions.len().to_string();
    }
    let listed: Vec<String> = failed.iter().map(|v| format!("v{v}")).collect();
    format!("{} ({} failed: {})", m.versions.len(), failed.len(), listed.join(","))
}

fn table(r: &pb::ListModelsResponse, deployments: &[pb::Deployment]) {
    let mut t = Table::new(&[
        "MODEL",
        "ACTIVE",
        "DEPLOYMENT",
        "DEVICE",
        "VERSIONS",
        "LATEST SHA256",
        "SIGNED BY",
        "STATE",
    ]);
    for m in &r.models {
        t.row(vec![
            m.name.clone(),
            if m.active_version == 0 {
                "-".into()
            } else {
                m.active_version.to_string()
            },
            if m.active_deployment == 0 {
                "-".into()
            } else {
                m.active_deployment.to_string()
            },
            m.device.map_or("-".into(), |d| d.to_string()),
            versions_cell(m, deployments),
            m.versions
                .last()
                .map_or(String::new(), |v| v.sha256[..12.min(v.sha256.len())].to_owned()),
            m.versions
                .last()
                .filter(|v| !v.signed_by.is_empty())
                .map_or("-".into(), |v| v.signed_by.clone()),
            m.state.clone(),
        ]);
    }
    t.print();
}
