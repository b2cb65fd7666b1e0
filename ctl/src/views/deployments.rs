//! `dsmilctl deployments` (every deployment, or one model's or one
//! state's) and `dsmilctl show` (one deployment with its state history,
//! named by id, MODEL or MODEL:VERSION).

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::{Table, time_ms};

/// The deployments, of `model` when not empty, in `state` (any case) when
/// given.
pub async fn list(c: &mut Clients, model: String, state: Option<String>, json: bool) -> anyhow::Result<()> {
    let mut r = c
        .control
        .list_deployments(pb::ListDeploymentsRequest { model })
        .await?
        .into_inner();
    if let Some(state) = state {
        r.deployments.retain(|d| d.state.eq_ignore_ascii_case(&state));
    }
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

/// MODEL, MODEL:VERSION or MODEL@VERSION: the name and the version, if given.
pub fn model_version(target: &str) -> anyhow::Result<(String, Option<u32>)> {
    match target.rsplit_once([':', '@']) {
        Some((model, version)) => {
            let version = version
                .parse()
                .map_err(|_| anyhow::anyhow!("{version:?} in {target:?} is not a version number"))?;
            Ok((model.to_owned(), Some(version)))
        }
        None => Ok((target.to_owned(), None)),
    }
}

/// `target`'s deployment id: a number is one; MODEL is its serving
/// deployment, else its newest; MODEL:VERSION that version's newest.
async fn resolve(c: &mut Clients, target: &str) -> anyhow::Result<u64> {
    if let Ok(id) = target.parse() {
        return Ok(id);
    }
    let (model, version) = model_version(target)?;
    let all = c
        .control
        .list_deployments(pb::ListDeploymentsRequest { model: model.clone() })
        .await?
        .into_inner()
        .deployments;
    if all.is_empty() {
        anyhow::bail!("model {model:?} has no deployments (`dsmilctl models` lists the models)");
    }
    let newest = |d: &&pb::Deployment| d.id;
    let found = match version {
        Some(v) => all.iter().filter(|d| d.version == v).max_by_key(newest),
        None => all
            .iter()
            .filter(|d| d.state == "Active")
            .max_by_key(newest)
            .or_else(|| all.iter().max_by_key(newest)),
    };
    match found {
        Some(d) => Ok(d.id),
        None => {
            let mut versions: Vec<u32> = all.iter().map(|d| d.version).collect();
            versions.sort_unstable();
            versions.dedup();
            let versions: Vec<String> = versions.iter().map(u32::to_string).collect();
            anyhow::bail!(
                "model {model:?} has no deployment of version {} (deployed versions: {})",
                version.unwrap_or_default(),
                versions.join(", ")
            )
        }
    }
}

pub async fn show(c: &mut Clients, target: &str, json: bool) -> anyhow::Result<()> {
    let id = resolve(c, target).await?;
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
    if d.state == "Failed" && !d.history.iter().any(|h| h.state == "Active") {
        println!(
            "a failed attempt: version {} never served (its number stays taken: events and reports name it)",
            d.version
        );
    }
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
