//! Bell–LaPadula for deployment: a layer's level is its number, and a model
//! may only be written into a layer at or above its classification (no
//! write-down). Kept in one function so that the caller's clearance (which
//! arrives with caller identity) is added in one place.

use super::{Layer, Topology, TopologyError};

/// Checks that a model classified at `classification` may be deployed into `layer`.
pub fn check_deploy_clearance(topology: &Topology, layer: &Layer, classification: u32) -> Result<(), TopologyError> {
    if topology.layer(classification).is_err() {
        return Err(TopologyError::UnknownLevel(classification));
    }
    if u32::from(layer.id) < classification {
        return Err(TopologyError::WriteDown {
            classification,
            layer: layer.id,
            name: layer.name.clone(),
        });
    }
    Ok(())
}
