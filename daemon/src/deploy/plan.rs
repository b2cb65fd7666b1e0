//! Planning a deploy: from a typed [`DeployRequest`] and its staged upload
//! to a journaled deployment and the [`Plan`] the stage runner carries out.
//! Checks the upload against what the spec declared, inspects the model,
//! decides what the Quantizing stage will do, estimates memory, places it
//! (placement, clearance, signature, runtime), commits the blob and journals
//! the deployment `Uploaded`; then hands over to [`Deployer::launch`].
//!
//! A refusal here records nothing but (for placement, clearance and the
//! signature) an audit event: it must never journal a deployment it then
//! abandons, nor load a model (the stages do).

use std::sync::Arc;

use super::pipeline::Progress;
use super::{DeployError, DeployRequest, DeployState, Deployer, admission, placement};
use dsmil_kinds::EventKind;

use crate::config::Config;
use crate::model::Format;
use crate::store::{DeploymentRecord, EventRecord, NewDeployment, StagedBlob};
use crate::topology::check_deploy_clearance;

/// An upload: the model and the attachments the spec declared.
pub struct Staged {
    pub model: StagedBlob,
    /// An IR's .bin.
    pub weights: Option<StagedBlob>,
    pub calibration: Option<StagedBlob>,
    pub validation: Option<StagedBlob>,
}

impl Staged {
    /// Checks each upload against the size and sha256 the spec declared.
    pub fn check(&self, spec: &DeployRequest) -> Result<(), DeployError> {
        check_upload(&self.model, spec.size_bytes, &spec.sha256)?;
        for (declared, blob, what) in [
            (&spec.weights, &self.weights, "weights"),
            (&spec.calibration, &self.calibration, "calibration"),
            (&spec.validation, &self.validation, "validation"),
        ] {
            if let Some((size, sha256)) = declared {
                check_upload(
                    blob.as_ref().ok_or(DeployError::MissingAttachment(what))?,
                    *size,
                    sha256,
                )?;
            }
        }
        Ok(())
    }
}

/// How a journaled deployment is launched, decided before its stages run:
/// the operation's configuration snapshot, the runtime that serves it, what
/// the Quantizing stage does, and the state and detail the deployment it
/// replaces ends with. Deploy, rollback and reload each make one and hand
/// it to the same runner ([`Deployer::launch`]).
pub(super) struct Plan {
    pub config: Arc<Config>,
    pub backend: Arc<dyn crate::backend::Backend>,
    pub quantize: Quantize,
    pub replaced: (DeployState, String),
}

/// What the Quantizing stage does with a model.
pub(super) enum Quantize {
    /// Rewrite to INT8 by `options.method` (static methods calibrate on the
    /// calibration data), gated on the validation data, else the calibration
    /// data; at least one of the two is there.
    Int8 {
        calibration: Option<StagedBlob>,
        validation: Option<StagedBlob>,
        /// Boxed: the options dwarf the other variants.
        options: Box<crate::compress::Options>,
        /// The operator accepts a result that stays mostly FP32.
        allow_fp32: bool,
        /// How errors name the calibration and validation files.
        labels: (String, String),
    },
    /// The upload is already INT8.
    AlreadyInt8,
    /// FP32 by operator override.
    AllowFp32,
    /// A rollback or reload: the blob is what this version served before.
    Served,
}

impl Deployer {
    /// Deploys a staged upload. Refusals before the journal entry (bad bytes,
    /// bad placement) record nothing but an audit event where it matters; a
    /// failure in a later stage ends the deployment Failed, and whatever
    /// served before keeps serving.
    pub fn deploy(
        &self,
        spec: DeployRequest,
        staged: Staged,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DeploymentRecord, DeployError> {
        // One configuration for the whole deploy: a reload meanwhile applies
        // to the next one.
        let config = self.config();
        staged.check(&spec)?;
        let format = spec.format;
        // An IR is its .xml and .bin, stored packed as one blob.
        let bytes = match (format, &staged.weights) {
            (Format::Ir, Some(weights)) => crate::model::pack_ir(&staged.model.read()?, &weights.read()?),
            (Format::Ir, None) => return Err(DeployError::IrWithoutWeights),
            _ => staged.model.read()?,
        };
        let info = crate::model::inspect(format, &bytes)?;
        let options = crate::compress::Options {
            state: spec.state.clone(),
            ..crate::compress::Options::resolve(&config.quantization, spec.method, spec.activations, spec.gate_metric)
        };
        let method = options.method;
        // Static methods calibrate on the calibration data; dynamic needs
        // only data for the gate (either file).
        let has_data = match method.is_static() {
            true => staged.calibration.is_some(),
            false => staged.calibration.is_some() || staged.validation.is_some(),
        };
        let plan = if info.is_quantized() {
            Quantize::AlreadyInt8
        } else if format.needs_openvino() && !spec.allow_fp32 {
            // The quantizer rewrites ONNX graphs only.
            return Err(DeployError::CannotQuantize(format));
        } else if has_data {
            Quantize::Int8 {
                calibration: staged.calibration,
                validation: staged.validation,
                options: Box::new(options),
                allow_fp32: spec.allow_fp32,
                labels: spec.data_labels.clone(),
            }
        } else if spec.allow_fp32 {
            Quantize::AllowFp32
        } else {
            return Err(match method.is_static() {
                true => DeployError::NeedsCalibration(spec.name.clone()),
                false => DeployError::NeedsValidation(spec.name.clone()),
            });
        };
        let workers = spec
            .workers
            .map_or(config.serving.workers_per_deployment, |n| n as usize);
        let max_batch = spec.max_batch.unwrap_or(config.serving.max_batch_size);
        crate::config::check_preferred_batch_sizes(&spec.serving.preferred_batch_sizes, max_batch)
            .map_err(|e| DeployError::InvalidOption(format!("preferred batch sizes: {e}")))?;
        let estimate = admission::estimate(&info, workers, max_batch);

        // One deploy at a time: placement and activation read and change the
        // registry, and must not interleave with another deploy's.
        let _serial = self.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
        let topology = &config.topology;
        let request = placement::Request {
            model: &spec.name,
            device: spec.device,
            layer: spec.layer,
            classification: spec.classification,
            need: estimate,
        };
        let device = match placement::choose(&config, &self.registry, &request) {
            Ok(device) => device,
            Err(e) => {
                // Policy refusals are audited; malformed requests are not.
                if matches!(e, DeployError::OverBudget { .. } | DeployError::NoPlacement { .. }) {
                    self.audit(EventRecord {
                        device: spec.device,
                        layer: spec.layer.and_then(|l| u8::try_from(l).ok()),
                        ..EventRecord::of(EventKind::Refuse, &spec.name, e.to_string())
                    });
                }
                return Err(e);
            }
        };
        let layer = topology.layer_of(device);
        let classification = spec.classification.unwrap_or(u32::from(layer.id));
        if let Err(e) = check_deploy_clearance(topology, layer, classification) {
            self.audit(EventRecord {
                device: Some(device.id),
                layer: Some(layer.id),
                ..EventRecord::of(EventKind::Refuse, &spec.name, e.to_string())
            });
            return Err(e.into());
        }
        // Signed models: the layer is known now. A refusal is audited.
        let signing = &config.signing;
        let signed_by = match super::signature::check(
            spec.signature.as_deref(),
            &staged.model.sha256,
            staged.weights.as_ref().map(|w| w.sha256.as_str()),
            signing.trusted_keys.iter().map(|k| (k.name.as_str(), &k.key)),
            super::signature::Placed {
                layer: layer.id,
                layer_name: &layer.name,
                required: signing.required_layers.contains(&layer.id),
            },
        ) {
            Ok(signed_by) => signed_by,
            Err(e) => {
                self.audit(EventRecord {
                    device: Some(device.id),
                    layer: Some(layer.id),
                    ..EventRecord::of(EventKind::Refuse, &spec.name, e.to_string())
                });
                return Err(e.into());
            }
        };
        let super::launch::Runtime {
            wanted,
            effective,
            backend,
        } = self.runtime_for(&config, device, layer, spec.backend)?;
        if format.needs_openvino() && backend.name() != "openvino" {
            return Err(DeployError::NeedsOpenVino {
                format,
                backend: backend.name(),
            });
        }

        let sha256 = match format {
            Format::Ir => self.blobs.put(&bytes)?,
            _ => {
                let sha256 = staged.model.sha256.clone();
                staged.model.commit(&self.blobs)?;
                sha256
            }
        };
        let record = self.journal.create_deployment(NewDeployment {
            model: spec.name.clone(),
            sha256,
            size_bytes: spec.size_bytes,
            format,
            classification,
            note: spec.note.clone(),
            device: device.id,
            layer: layer.id,
            target: wanted,
            effective_target: effective,
            backend: backend.kind(),
            performance_hint: spec.performance_hint,
            workers: workers as u32,
            precision: spec.precision,
            max_batch,
            estimated_bytes: estimate,
            probe_shapes: spec.input_shapes.clone(),
            probe_values: Vec::new(),
            serving: spec.serving.clone(),
            signed_by,
            existing: None,
        })?;
        let replaced = (
            DeployState::Retired,
            format!("replaced by version {}", record.1.version),
        );
        self.launch(
            record.1,
            &bytes,
            &info,
            Plan {
                config,
                backend,
                quantize: plan,
                replaced,
            },
            progress,
        )
    }
}

impl Quantize {
    /// What the stage will do, as its progress detail says it.
    pub(super) fn describe(&self) -> String {
        match self {
            Quantize::Int8 {
                options, validation, ..
            } => format!(
                "{} to INT8, gated on {} data ({})",
                match options.method {
                    crate::compress::Method::Dynamic => "dynamic quantization (activations at run time)".to_owned(),
                    m => format!("calibrating ({}) and rewriting", m.name()),
                },
                if validation.is_some() {
                    "validation"
                } else {
                    "the calibration"
                },
                match options.gate.metric {
                    Some(m) => format!("{m} ≥ {}", options.gate.thresholds.of(m)),
                    None => "each output by the metric that fits its kind, thresholds in [quantization]".to_owned(),
                }
            ),
            Quantize::AlreadyInt8 => "already INT8 (QDQ or integer operators): passes through".into(),
            Quantize::AllowFp32 => "FP32 kept by operator override (--allow-fp32)".into(),
            Quantize::Served => "the version's served model, quantized when it was first deployed".into(),
        }
    }
}

/// Checks an upload against its declared size and sha256.
fn check_upload(blob: &StagedBlob, size: u64, sha256: &str) -> Result<(), DeployError> {
    if blob.size != size {
        return Err(DeployError::SizeMismatch {
            declared: size,
            received: blob.size,
        });
    }
    if !blob.sha256.eq_ignore_ascii_case(sha256) {
        return Err(DeployError::ChecksumMismatch {
            declared: sha256.to_owned(),
            actual: blob.sha256.clone(),
        });
    }
    Ok(())
}
