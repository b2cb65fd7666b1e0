//! The Validating stage: before anything is quantized or served, the model
//! must fit its layer's parameter limit, use only operators the standard set
//! and its runtime implement, and survive a dry run on a throwaway instance
//! (the deploy's own data when it brought some, read here once for the
//! stages after, else synthetic inputs).
//!
//! Judges only: it never keeps an instance, stores a blob or journals
//! anything but its own stage transition.

use super::checks::{check_inputs, check_outputs};
use super::pipeline::StageRunner;
use super::plan::Quantize;
use super::{DeployError, DeployState};

use crate::backend::{Backend, LoadOptions};
use crate::compress::Samples;
use crate::model::{Format, ModelError, ModelInfo, check_operators};
use crate::topology::Layer;

/// The deploy's data, read once at Validating: the calibration samples and
/// the validation samples, either of which may be absent.
pub(super) type Data = (Option<Samples>, Option<Samples>);

impl StageRunner<'_, '_> {
    /// Validating: the layer's parameter limit, the operators, then a dry
    /// run. Returns the deploy's data, which the gate, the health check and
    /// the drift baseline use too.
    pub(super) fn validate(
        &mut self,
        bytes: &[u8],
        info: &ModelInfo,
        layer: &Layer,
        backend: &dyn Backend,
        options: &LoadOptions,
        plan: &Quantize,
    ) -> Result<Data, DeployError> {
        self.enter(DeployState::Validating, describe(info))?;
        if let Some(limit) = layer.max_parameters.filter(|&l| info.parameter_count > l) {
            return Err(DeployError::TooManyParameters {
                parameters: info.parameter_count,
                layer: layer.id,
                name: layer.name.clone(),
                limit,
            });
        }
        // The ONNX operator checks; other formats' layers are OpenVINO's own.
        let mut problems = match info.format == Format::Onnx {
            true => check_operators(info, &self.config.deployment.allowed_operator_domains),
            false => Vec::new(),
        };
        problems.extend(
            info.operators
                .iter()
                .filter(|(domain, op)| !backend.supports_operator(domain, op))
                .map(|(domain, op)| {
                    format!(
                        "{} does not implement operator {op} of domain {domain:?}",
                        backend.name()
                    )
                }),
        );
        if !problems.is_empty() {
            return Err(ModelError::Invalid(problems).into());
        }
        // The compatibility test: a throwaway instance runs the deploy's
        // own data when it brought some (read once, here), else synthetic
        // inputs of the declared shapes (dynamic dimensions = 1).
        let mut probe = backend
            .load(bytes, options)
            .map_err(|e| DeployError::DryRun(e.to_string()))?;
        let signature = probe.signature().clone();
        let (calibration, validation) = match plan {
            Quantize::Int8 {
                calibration,
                validation,
                options,
                labels,
                ..
            } => {
                // Named as the caller knows them, not by the staged path.
                let read = |blob: &crate::store::StagedBlob, label: &str, limit: usize| {
                    let file = std::fs::File::open(blob.path()).map_err(|e| crate::compress::CompressError::Data {
                        path: label.to_owned(),
                        detail: e.to_string(),
                    })?;
                    Samples::from_reader_with_state(
                        std::io::BufReader::new(file),
                        label,
                        &signature,
                        limit,
                        &options.state,
                    )
                };
                (
                    calibration
                        .as_ref()
                        .map(|c| read(c, &labels.0, options.max_samples))
                        .transpose()?,
                    validation
                        .as_ref()
                        .map(|v| read(v, &labels.1, usize::MAX))
                        .transpose()?,
                )
            }
            _ => (None, None),
        };
        let data = validation.as_ref().or(calibration.as_ref());
        let shapes =
            super::checks::probe_shapes(&signature, data, &self.probe_shapes).map_err(DeployError::InvalidOption)?;
        let values = data.map_or_else(Vec::new, super::checks::probe_values);
        if shapes != self.probe_shapes || values != self.probe_values {
            self.deployer.journal.set_probe_inputs(self.id, &shapes, &values)?;
            self.probe_shapes = shapes;
            self.probe_values = values;
        }
        for (what, inputs) in check_inputs(&signature, data, &self.probe_shapes) {
            let outputs = probe
                .run(&inputs)
                .map_err(|e| DeployError::DryRun(format!("on {what}: {e}")))?;
            check_outputs(&signature, &outputs).map_err(|e| DeployError::DryRun(format!("on {what}: {e}")))?;
        }
        Ok((calibration, validation))
    }
}

/// The Validating stage's detail: what was uploaded, as the runtime sees it.
fn describe(info: &ModelInfo) -> String {
    if info.format == Format::Onnx {
        format!(
            "ONNX IR {}, opsets {}, {} nodes, {} operators, {} parameters",
            info.ir_version,
            info.opsets
                .iter()
                .map(|(d, v)| format!("{}:{v}", if d.is_empty() { "ai.onnx" } else { d }))
                .collect::<Vec<_>>()
                .join(","),
            info.node_count,
            info.operators.len(),
            info.parameter_count
        )
    } else {
        format!(
            "{}, {} layers, {} operator types, {} bytes of weights",
            info.producer,
            info.node_count,
            info.operators.len(),
            info.weight_bytes
        )
    }
}
