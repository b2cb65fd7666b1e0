//! Where a deployment goes: the device asked for, a free device in the layer
//! asked for, or (neither) the model's current device, else the first free
//! device in the lowest layer the classification allows.

use super::{DeployError, Registry};
use crate::topology::{Device, Topology};

pub struct Request<'a> {
    pub model: &'a str,
    pub device: Option<u32>,
    pub layer: Option<u32>,
    pub classification: Option<u32>,
}

pub fn choose<'t>(
    topology: &'t Topology,
    registry: &Registry,
    req: &Request<'_>,
) -> Result<&'t Device, DeployError> {
    let current = registry.get(req.model).map(|m| m.record.device);
    // A device is free for this model if nothing serves there, or this model does.
    let free = |d: &Device| {
        registry
            .on_device(d.id)
            .is_none_or(|m| m.record.model == req.model)
    };

    if let Some(id) = req.device {
        let device = topology.hosting_device(id)?;
        if let Some(layer) = req.layer {
            topology.hosting_layer(layer)?;
            if u32::from(device.layer) != layer {
                return Err(DeployError::DeviceNotInLayer {
                    device: id,
                    actual: device.layer,
                    requested: layer,
                });
            }
        }
        if let Some(other) = registry
            .on_device(id)
            .filter(|m| m.record.model != req.model)
        {
            return Err(DeployError::DeviceBusy {
                device: id,
                model: other.record.model.clone(),
            });
        }
        return Ok(device);
    }

    if let Some(layer_id) = req.layer {
        let layer = topology.hosting_layer(layer_id)?;
        let mut candidates = layer
            .devices
            .iter()
            .filter_map(|&id| topology.device(id).ok());
        // Stay put if the model already serves in this layer.
        if let Some(device) = current.and_then(|c| {
            layer
                .devices
                .contains(&c)
                .then(|| topology.device(c).ok())
                .flatten()
        }) {
            return Ok(device);
        }
        return candidates
            .find(|d| free(d))
            .ok_or_else(|| DeployError::NoFreeDevice {
                scope: format!("layer {} ({})", layer.id, layer.name),
            });
    }

    if let Some(device) = current.and_then(|c| topology.device(c).ok()) {
        return Ok(device);
    }
    let floor = req.classification.unwrap_or(0);
    topology
        .layers()
        .iter()
        .filter(|l| !l.reserved && u32::from(l.id) >= floor)
        .flat_map(|l| l.devices.iter().filter_map(|&id| topology.device(id).ok()))
        .find(|d| free(d))
        .ok_or_else(|| DeployError::NoFreeDevice {
            scope: format!("any layer at or above level {floor}"),
        })
}
