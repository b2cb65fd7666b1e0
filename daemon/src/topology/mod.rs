//! Topology: the 104 logical devices, the 9 layers they sit in, each layer's
//! memory budget and default compute target, and the clearance rule.
//!
//! Pure logic over data from config: no I/O, no async, no clocks. Everything
//! here is a function of the config so that it can be tested exhaustively and
//! reused by placement, admission and the control API alike.

mod clearance;
mod ids;

use std::collections::BTreeMap;

pub use clearance::check_deploy_clearance;
pub use ids::{format_id_list, parse_id_list};

pub use dsmil_kinds::Target;

/// A layer as configured, before checking.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub id: u8,
    pub name: String,
    /// Device ids: "0-14" or "0-3,7,9-10".
    pub devices: String,
    pub reserved: bool,
    pub budget_bytes: Option<u64>,
    pub budget_gb: Option<f64>,
    pub target: Option<Target>,
    pub max_parameters: Option<u64>,
}

/// Per-device settings as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub id: u32,
    pub target: Option<Target>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub id: u8,
    pub name: String,
    pub devices: Vec<u32>,
    /// Reserved layers (the system's) host no models; budget and target are None.
    pub reserved: bool,
    pub budget_bytes: Option<u64>,
    pub budget_gb: Option<f64>,
    pub target: Option<Target>,
    pub max_parameters: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: u32,
    pub layer: u8,
    /// None only on reserved layers.
    pub target: Option<Target>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    layers: Vec<Layer>,
    devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopologyError {
    #[error("device {id} does not exist (devices are 0-{})", count - 1)]
    UnknownDevice { id: u32, count: u32 },
    #[error("device {id} is in layer {layer} ({name}), which is reserved for the system")]
    ReservedDevice { id: u32, layer: u8, name: String },
    #[error("layer {id} does not exist (layers are {known})")]
    UnknownLayer { id: u32, known: String },
    #[error("layer {id} ({name}) is reserved for the system and hosts no models")]
    ReservedLayer { id: u8, name: String },
    #[error(
        "write-down refused: a model classified at level {classification} cannot go into layer {layer} ({name}); \
         it needs a layer ≥ {classification}"
    )]
    WriteDown {
        classification: u32,
        layer: u8,
        name: String,
    },
    #[error("classification {0} is not a level (levels are the layer numbers)")]
    UnknownLevel(u32),
}

impl Topology {
    /// Checks the specs and builds the topology, or returns every problem found.
    pub fn new(device_count: u32, layers: Vec<LayerSpec>, devices: Vec<DeviceSpec>) -> Result<Topology, Vec<String>> {
        let mut problems = Vec::new();
        if device_count == 0 {
            problems.push("topology.device_count must be ≥ 1".to_owned());
        }
        let mut owner: Vec<Option<u8>> = vec![None; device_count as usize];
        let mut seen_layers = BTreeMap::new();
        let mut built = Vec::new();
        for spec in layers {
            let key = format!("layers[id={}]", spec.id);
            if seen_layers.insert(spec.id, ()).is_some() {
                problems.push(format!("{key}: layer id {} appears twice", spec.id));
            }
            if spec.name.trim().is_empty() {
                problems.push(format!("{key}.name must not be empty"));
            }
            let ids = match parse_id_list(&spec.devices) {
                Ok(ids) => ids,
                Err(e) => {
                    problems.push(format!("{key}.devices = {:?}: {e}", spec.devices));
                    Vec::new()
                }
            };
            let mut outside = Vec::new();
            let mut shared: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            for &id in &ids {
                match owner.get_mut(id as usize) {
                    None => outside.push(id),
                    Some(Some(other)) => shared.entry(*other).or_default().push(id),
                    Some(slot) => *slot = Some(spec.id),
                }
            }
            if !outside.is_empty() {
                problems.push(format!(
                    "{key}.devices: device(s) {} are outside 0-{}",
                    format_id_list(&outside),
                    device_count.saturating_sub(1)
                ));
            }
            for (other, ids) in shared {
                problems.push(format!(
                    "device(s) {} are in both layer {other} and layer {}",
                    format_id_list(&ids),
                    spec.id
                ));
            }
            if spec.reserved {
                if spec.budget_bytes.is_some() || spec.target.is_some() {
                    problems.push(format!("{key}: a reserved layer takes no memory_budget_gb or target"));
                }
            } else {
                match spec.budget_gb {
                    Some(gb) if gb > 0.0 => {}
                    Some(gb) => problems.push(format!("{key}.memory_budget_gb = {gb} must be > 0")),
                    None => problems.push(format!("{key}.memory_budget_gb is missing")),
                }
                if spec.target.is_none() {
                    problems.push(format!("{key}.target is missing (npu, gpu or cpu)"));
                }
                if spec.max_parameters == Some(0) {
                    problems.push(format!("{key}.max_parameters must be ≥ 1"));
                }
            }
            built.push(Layer {
                id: spec.id,
                name: spec.name,
                devices: ids,
                reserved: spec.reserved,
                budget_bytes: spec.budget_bytes,
                budget_gb: spec.budget_gb,
                target: spec.target,
                max_parameters: spec.max_parameters,
            });
        }
        let unowned: Vec<u32> = owner
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_none())
            .map(|(i, _)| i as u32)
            .collect();
        if !unowned.is_empty() {
            problems.push(format!(
                "device(s) {} are in no layer: every device 0-{} must be in exactly one",
                format_id_list(&unowned),
                device_count.saturating_sub(1)
            ));
        }
        built.sort_by_key(|l| l.id);

        let mut overrides = BTreeMap::new();
        for spec in devices {
            if spec.id >= device_count {
                problems.push(format!(
                    "devices.{}: device {} is outside 0-{}",
                    spec.id,
                    spec.id,
                    device_count.saturating_sub(1)
                ));
                continue;
            }
            overrides.insert(spec.id, spec);
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let devices = (0..device_count)
            .map(|id| {
                let layer_id = owner[id as usize].expect("every device is owned");
                let layer = built.iter().find(|l| l.id == layer_id).expect("owner exists");
                let spec = overrides.get(&id);
                Device {
                    id,
                    layer: layer_id,
                    target: if layer.reserved {
                        None
                    } else {
                        spec.and_then(|s| s.target).or(layer.target)
                    },
                    role: spec.and_then(|s| s.role.clone()),
                }
            })
            .collect();
        Ok(Topology { layers: built, devices })
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn device(&self, id: u32) -> Result<&Device, TopologyError> {
        self.devices.get(id as usize).ok_or(TopologyError::UnknownDevice {
            id,
            count: self.devices.len() as u32,
        })
    }

    pub fn layer(&self, id: u32) -> Result<&Layer, TopologyError> {
        self.layers
            .iter()
            .find(|l| u32::from(l.id) == id)
            .ok_or_else(|| TopologyError::UnknownLayer {
                id,
                known: self
                    .layers
                    .iter()
                    .map(|l| l.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn layer_of(&self, device: &Device) -> &Layer {
        self.layers
            .iter()
            .find(|l| l.id == device.layer)
            .expect("every device's layer exists (checked in new)")
    }

    /// The device, if it may host a model (it exists and its layer is not reserved).
    pub fn hosting_device(&self, id: u32) -> Result<&Device, TopologyError> {
        let device = self.device(id)?;
        let layer = self.layer_of(device);
        if layer.reserved {
            return Err(TopologyError::ReservedDevice {
                id,
                layer: layer.id,
                name: layer.name.clone(),
            });
        }
        Ok(device)
    }

    /// The layer, if it may host models.
    pub fn hosting_layer(&self, id: u32) -> Result<&Layer, TopologyError> {
        let layer = self.layer(id)?;
        if layer.reserved {
            return Err(TopologyError::ReservedLayer {
                id: layer.id,
                name: layer.name.clone(),
            });
        }
        Ok(layer)
    }

    /// The device with the given role (e.g. "primary_ai"), if any.
    pub fn device_with_role(&self, role: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.role.as_deref() == Some(role))
    }
}

#[cfg(test)]
mod tests;
