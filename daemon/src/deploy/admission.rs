//! Memory admission. A layer's budget is a ceiling on the memory of the
//! deployments serving in it, and `memory.available_gb` a ceiling on all of
//! them together. A deployment is charged its measured footprint once loaded,
//! its estimate before that; the deployment it replaces is not counted, since
//! it is unloaded once the new version is active.
//!
//! Admission and placement see what serves only through [`Occupancy`]: the
//! registry in the daemon, a plain list in tests, so that neither needs a
//! loaded model to be exercised.

use std::borrow::Cow;
use std::sync::Arc;

use super::{DeployError, Registry};
use crate::config::Config;
use crate::model::ModelInfo;
use crate::topology::Layer;

/// A serving deployment, as far as memory and placement are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    pub model: String,
    pub device: u32,
    pub layer: u8,
    /// What admission charges it (`ActiveModel::footprint`).
    pub bytes: u64,
}

/// What serves now, read-only.
pub trait Occupancy {
    /// One consistent snapshot, in model-name order.
    fn occupants(&self) -> Cow<'_, [Occupant]>;
}

impl Occupancy for [Occupant] {
    fn occupants(&self) -> Cow<'_, [Occupant]> {
        Cow::Borrowed(self)
    }
}

impl Occupancy for Registry {
    fn occupants(&self) -> Cow<'_, [Occupant]> {
        self.all()
            .iter()
            .map(|m| Occupant {
                model: m.record.model.clone(),
                device: m.record.device,
                layer: m.record.layer,
                bytes: m.footprint(),
            })
            .collect()
    }
}

// The deployer holds its registry in an Arc; callers pass `&self.registry`.
impl<T: Occupancy + ?Sized> Occupancy for Arc<T> {
    fn occupants(&self) -> Cow<'_, [Occupant]> {
        (**self).occupants()
    }
}

/// Runtime bookkeeping per loaded instance beyond the weights (session,
/// allocator arenas, thread-local buffers).
const INSTANCE_OVERHEAD: u64 = 1 << 20;
/// A loaded, warm ONNX Runtime 1.31 instance holds about 0.9x its weight
/// bytes (measured on x86-64 for 0.5, 16 and 128 MiB of weights: see
/// docs/benchmarks.md); counting them once keeps the estimate on the safe side.
const WEIGHT_FACTOR: u64 = 1;
/// Intermediate activations, as a multiple of one sample's input and output
/// bytes, at the deployment's max batch (what ModelConfig advertises).
const ACTIVATION_FACTOR: u64 = 4;

/// The memory a deployment is expected to need once loaded and warm.
/// Saturating: the figures come from an upload's declared shapes.
pub fn estimate(info: &ModelInfo, instances: usize, max_batch: u64) -> u64 {
    let per_instance = info
        .weight_bytes
        .saturating_mul(WEIGHT_FACTOR)
        .saturating_add(
            info.io_bytes
                .saturating_mul(ACTIVATION_FACTOR)
                .saturating_mul(max_batch),
        )
        .saturating_add(INSTANCE_OVERHEAD);
    per_instance.saturating_mul(instances as u64)
}

/// Bytes charged to a layer and to the host, not counting `model` (the name
/// being deployed: its current version is about to be replaced).
pub fn usage(serving: &(impl Occupancy + ?Sized), layer: u8, model: &str) -> (u64, u64) {
    let mut in_layer = 0;
    let mut total = 0;
    for o in serving.occupants().iter().filter(|o| o.model != model) {
        total += o.bytes;
        if o.layer == layer {
            in_layer += o.bytes;
        }
    }
    (in_layer, total)
}

/// Refuses `need` bytes in `layer` if the layer's budget or the host's
/// available memory would be exceeded. `when` says which figure `need` is
/// ("estimated" before loading, "measured" after).
pub fn admit(
    config: &Config,
    serving: &(impl Occupancy + ?Sized),
    layer: &Layer,
    model: &str,
    need: u64,
    when: &'static str,
) -> Result<(), DeployError> {
    let (in_layer, total) = usage(serving, layer.id, model);
    // Saturating: an estimate that saturated must be refused, not wrap.
    if let Some(budget) = layer.budget_bytes
        && in_layer.saturating_add(need) > budget
    {
        return Err(DeployError::OverBudget {
            scope: format!("layer {} ({})", layer.id, layer.name),
            when,
            need,
            used: in_layer,
            limit: budget,
        });
    }
    let available = config.memory.available_bytes;
    if total.saturating_add(need) > available {
        return Err(DeployError::OverBudget {
            scope: "the host (memory.available_gb)".into(),
            when,
            need,
            used: total,
            limit: available,
        });
    }
    Ok(())
}

/// Bytes for people: "1.25 GiB", "312.0 MiB", "800 KiB".
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

// Its helpers build registry entries on fake pools; placement's tests use them.
#[cfg(test)]
#[path = "admission_tests.rs"]
pub(crate) mod tests;
