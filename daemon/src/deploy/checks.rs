//! What a healthy run looks like: the inputs a dry run or a health check
//! feeds a model (the deploy's own data when it brought some, else
//! synthetic tensors of the declared shapes), and the test its outputs must
//! pass. The Validating and HealthChecking stages and the periodic probes
//! all judge by these, so a model is held to one standard from its deploy
//! to its last probe.
//!
//! Pure: it builds tensors and inspects them, and never runs a model, reads
//! the journal or decides what happens to a deployment.

use crate::backend::{Signature, Tensor};
use crate::compress::Samples;

/// How many of the deploy's samples the dry run and the health check run:
/// enough to meet a value the model cannot take, few enough to stay quick.
const CHECK_SAMPLES: usize = 8;

/// The inputs a dry run or health check runs, each with what it is: the
/// first samples of the deploy's data when it brought some (a model that
/// answers NaN on real data must not pass on synthetic inputs), else one
/// synthetic input.
pub(super) fn check_inputs(
    signature: &Signature,
    data: Option<&Samples>,
    shapes: &[(String, Vec<i64>)],
) -> Vec<(String, Vec<Tensor>)> {
    match data {
        Some(samples) => (0..samples.len().min(CHECK_SAMPLES))
            .map(|i| (format!("the deploy's data, sample {i}"), samples.sample(i)))
            .collect(),
        None => vec![("synthetic inputs".to_owned(), synthetic_inputs(signature, shapes, &[]))],
    }
}

/// The shapes a deployment's synthetic runs use, checked against the
/// signature: the first sample's when the deploy brought data, else the
/// operator's `--input-shape`s. Only inputs with a dynamic dimension need
/// one; a named input the model lacks, or a shape its declaration does not
/// accept, is an error naming it.
pub(super) fn probe_shapes(
    signature: &Signature,
    data: Option<&Samples>,
    named: &[(String, Vec<i64>)],
) -> Result<Vec<(String, Vec<i64>)>, String> {
    if let Some(samples) = data {
        return Ok(samples.sample(0).into_iter().map(|t| (t.name, t.shape)).collect());
    }
    for (name, shape) in named {
        let Some(spec) = signature.inputs.iter().find(|s| s.name == *name) else {
            let names: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "--input-shape {name}: the model has no such input (it has {})",
                names.join(", ")
            ));
        };
        if !spec.accepts_shape(shape) {
            return Err(format!(
                "--input-shape {name}={}: the input is declared {}",
                shape.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
                crate::backend::format_shape(&spec.shape)
            ));
        }
    }
    Ok(named.to_vec())
}

/// Most elements of an integer or bool input whose values are recorded for
/// synthetic runs: a sample rate or a flag, not a token sequence.
const MAX_PROBE_VALUES: usize = 64;

/// The first sample's values of each small integer or bool input, for
/// synthetic runs to feed (`DeploymentRecord::probe_values`).
pub(super) fn probe_values(data: &Samples) -> Vec<(String, Vec<i64>)> {
    data.sample(0)
        .into_iter()
        .filter_map(|t| {
            let values = t.integers()?;
            (values.len() <= MAX_PROBE_VALUES).then_some((t.name, values))
        })
        .collect()
}

/// One synthetic tensor per input: of the shape recorded for it (from the
/// deploy's data or `--input-shape`), else with dynamic dimensions set to 1;
/// with the recorded values of a small integer input, else counted ones.
pub(super) fn synthetic_inputs(
    signature: &Signature,
    shapes: &[(String, Vec<i64>)],
    values: &[(String, Vec<i64>)],
) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape = shapes
                .iter()
                .find(|(name, _)| *name == spec.name)
                .map_or_else(|| spec.concrete_shape(1), |(_, shape)| shape.clone());
            let recorded = values.iter().find(|(name, _)| *name == spec.name);
            recorded
                .and_then(|(_, v)| Tensor::from_integers(spec, shape.clone(), v))
                .unwrap_or_else(|| Tensor::synthetic(spec, shape))
        })
        .collect()
}

/// A healthy run gives every declared output, of its type, with finite values.
pub(super) fn check_outputs(signature: &Signature, outputs: &[Tensor]) -> Result<(), String> {
    for spec in &signature.outputs {
        let Some(out) = outputs.iter().find(|o| o.name == spec.name) else {
            return Err(format!("output {} is missing", spec.name));
        };
        if out.dtype != spec.dtype {
            return Err(format!(
                "output {} is {}, declared {}",
                spec.name, out.dtype, spec.dtype
            ));
        }
        if !out.is_finite() {
            return Err(format!("output {} has NaN or infinite values", spec.name));
        }
    }
    Ok(())
}
