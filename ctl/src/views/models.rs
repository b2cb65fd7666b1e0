//! `dsmilctl models`: each model with its active version and the id of the
//! deployment serving it (for `dsmilctl show`), device, number
//! of versions and the latest one's sha256 and signer (`--json` has every
//! version's, with the signing key's fingerprint).

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::Table;

pub async fn run(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.list_models(pb::ListModelsRequest {}).await?.into_inner();
    output::print(&r, json, || table(&r))
}

fn table(r: &pb::ListModelsResponse) {
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
            m.versions.len().to_string(),
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
