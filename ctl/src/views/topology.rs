//! `dsmilctl devices` and `dsmilctl layers`: the configured topology with
//! what each device serves and each layer's budget against its use.

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::{Table, bytes};

/// The devices, only `layer`'s when given (refused if the caller sees no
/// device in it).
pub async fn devices(c: &mut Clients, layer: Option<u32>, json: bool) -> anyhow::Result<()> {
    let mut r = c.control.list_devices(pb::ListDevicesRequest {}).await?.into_inner();
    if let Some(layer) = layer {
        let mut layers: Vec<u32> = r.devices.iter().map(|d| d.layer).collect();
        r.devices.retain(|d| d.layer == layer);
        if r.devices.is_empty() {
            layers.sort_unstable();
            layers.dedup();
            let layers: Vec<String> = layers.iter().map(u32::to_string).collect();
            anyhow::bail!(
                "no devices in layer {layer} (layers with devices: {})",
                layers.join(", ")
            );
        }
    }
    output::print(&r, json, || devices_table(&r))
}

fn devices_table(r: &pb::ListDevicesResponse) {
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
}

pub async fn layers(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let r = c.control.list_layers(pb::ListLayersRequest {}).await?.into_inner();
    output::print(&r, json, || layers_table(&r))
}

fn layers_table(r: &pb::ListLayersResponse) {
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
}
