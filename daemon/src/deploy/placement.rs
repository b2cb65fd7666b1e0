//! Where a deployment goes. `--device N`: that device, if it is free for this
//! model and its layer has room. `--layer L`: the model's current device if
//! it already serves in L, else the free device with the lowest id in L, if
//! the layer has room. Neither: the model's current device if its layer has
//! room, else the lowest layer at or above the classification with a free
//! device and room. Room is memory admission (`admission::admit`) with the
//! deployment's estimate; a refusal says, per layer, why.
//!
//! What serves is read once, as one [`Occupancy`] snapshot, so every check
//! of a placement sees the same deployments.

use super::DeployError;
use super::admission::{Occupancy, Occupant, admit};
use crate::config::Config;
use crate::topology::{Device, Layer};

pub struct Request<'a> {
    pub model: &'a str,
    pub device: Option<u32>,
    pub layer: Option<u32>,
    pub classification: Option<u32>,
    /// Estimated bytes once loaded.
    pub need: u64,
}

pub fn choose<'c>(
    config: &'c Config,
    serving: &(impl Occupancy + ?Sized),
    req: &Request<'_>,
) -> Result<&'c Device, DeployError> {
    let topology = &config.topology;
    let serving = serving.occupants();
    let serving: &[Occupant] = &serving;
    let on_device = |id: u32| serving.iter().find(|o| o.device == id);
    let current = serving.iter().find(|o| o.model == req.model).map(|o| o.device);
    // A device is free for this model if nothing serves there, or this model does.
    let free = |d: &Device| on_device(d.id).is_none_or(|o| o.model == req.model);
    let room = |layer: &Layer| admit(config, serving, layer, req.model, req.need, "estimated");
    let first_free = |layer: &Layer| {
        layer
            .devices
            .iter()
            .filter_map(|&id| topology.device(id).ok())
            .find(|d| free(d))
    };

    if let Some(id) = req.device {
        let device = topology.hosting_device(id)?;
        let layer = topology.layer_of(device);
        if let Some(wanted) = req.layer {
            topology.hosting_layer(wanted)?;
            if u32::from(device.layer) != wanted {
                return Err(DeployError::DeviceNotInLayer {
                    device: id,
                    actual: device.layer,
                    requested: wanted,
                });
            }
        }
        if let Some(other) = on_device(id).filter(|o| o.model != req.model) {
            return Err(DeployError::DeviceBusy {
                device: id,
                model: other.model.clone(),
            });
        }
        room(layer)?;
        return Ok(device);
    }

    if let Some(layer_id) = req.layer {
        let layer = topology.hosting_layer(layer_id)?;
        room(layer)?;
        let stay = current
            .filter(|c| layer.devices.contains(c))
            .and_then(|c| topology.device(c).ok());
        return stay
            .or_else(|| first_free(layer))
            .ok_or_else(|| DeployError::NoFreeDevice {
                scope: format!("layer {} ({})", layer.id, layer.name),
            });
    }

    if let Some(device) = current.and_then(|c| topology.device(c).ok()) {
        room(topology.layer_of(device))?;
        return Ok(device);
    }
    let floor = req.classification.unwrap_or(0);
    let mut reasons = Vec::new();
    for layer in topology
        .layers()
        .iter()
        .filter(|l| !l.reserved && u32::from(l.id) >= floor)
    {
        match (first_free(layer), room(layer)) {
            (Some(device), Ok(())) => return Ok(device),
            (None, _) => reasons.push(format!("layer {}: no free device", layer.id)),
            (Some(_), Err(e)) => reasons.push(e.to_string()),
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("no layer at or above level {floor} hosts models"));
    }
    Err(DeployError::NoPlacement { reasons })
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
