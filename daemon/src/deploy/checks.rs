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
pub(super) fn check_inputs(signature: &Signature, data: Option<&Samples>) -> Vec<(String, Vec<Tensor>)> {
    match data {
        Some(samples) => (0..samples.len().min(CHECK_SAMPLES))
            .map(|i| (format!("the deploy's data, sample {i}"), samples.sample(i)))
            .collect(),
        None => vec![("synthetic inputs".to_owned(), synthetic_inputs(signature))],
    }
}

/// One synthetic tensor per input, dynamic dimensions set to 1.
pub(super) fn synthetic_inputs(signature: &Signature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| Tensor::synthetic(spec, spec.concrete_shape(1)))
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
