//! Rollback: a model (or every model on a device, or in a layer) goes back
//! to its previous version, the highest version below the serving one that
//! was ever active. The old blob goes through the same stages, warmup and
//! health check as a deploy; only when it is healthy does it replace the
//! serving version, which ends `RolledBack`. Each rollback is an event with
//! its reason.

use super::{DeployError, DeployState, Deployer, Progress, admission};
use crate::store::{DeploymentRecord, Existing, NewDeployment};

/// What to roll back.
#[derive(Debug, Clone)]
pub enum RollbackTarget {
    Model(String),
    Device(u32),
    Layer(u32),
}

impl Deployer {
    pub fn rollback(
        &self,
        target: &RollbackTarget,
        reason: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<DeploymentRecord>, DeployError> {
        let config = self.config();
        let _serial = self.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
        let models: Vec<String> = match target {
            RollbackTarget::Model(name) => {
                self.registry
                    .get(name)
                    .ok_or_else(|| DeployError::NotDeployed(name.clone()))?;
                vec![name.clone()]
            }
            RollbackTarget::Device(id) => {
                config.topology.hosting_device(*id)?;
                let m = self.registry.on_device(*id).ok_or(DeployError::NothingOnDevice(*id))?;
                vec![m.record.model.clone()]
            }
            RollbackTarget::Layer(id) => {
                let layer = config.topology.hosting_layer(*id)?;
                let here: Vec<String> = self
                    .registry
                    .all()
                    .iter()
                    .filter(|m| m.record.layer == layer.id)
                    .map(|m| m.record.model.clone())
                    .collect();
                if here.is_empty() {
                    return Err(DeployError::NothingInLayer(layer.id));
                }
                here
            }
        };
        let mut restored = Vec::new();
        for model in models {
            restored.push(self.rollback_model(&model, reason, progress)?);
        }
        Ok(restored)
    }

    fn rollback_model(
        &self,
        model: &str,
        reason: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DeploymentRecord, DeployError> {
        let current = self
            .registry
            .get(model)
            .ok_or_else(|| DeployError::NotDeployed(model.to_owned()))?;
        let serving = current.record.version;
        let previous = self
            .journal
            .deployments()?
            .into_iter()
            .filter(|d| {
                d.model == model && d.version < serving && d.history.iter().any(|c| c.state == DeployState::Active)
            })
            .max_by_key(|d| d.version)
            .ok_or_else(|| DeployError::NoEarlierVersion {
                model: model.to_owned(),
                serving,
            })?;
        let restored = format!("rolled back to version {}: {reason}", previous.version);
        tracing::warn!(model, from = serving, to = previous.version, reason, "rolling back");
        self.relaunch(
            &previous,
            dsmil_kinds::EventKind::Rollback,
            &format!("from version {serving}: {reason}"),
            (DeployState::RolledBack, restored),
            progress,
        )
    }

    /// Deploys again the version that `from` served, from the blob it served
    /// (its quantized model), on the model's current device, through every
    /// stage; the serving deployment ends in `replaced`. Called with
    /// `deploy_lock` held.
    pub(super) fn relaunch(
        &self,
        from: &DeploymentRecord,
        kind: dsmil_kinds::EventKind,
        reason: &str,
        replaced: (DeployState, String),
        progress: &mut dyn FnMut(Progress),
    ) -> Result<DeploymentRecord, DeployError> {
        let config = self.config();
        let model = from.model.as_str();
        let current = self
            .registry
            .get(model)
            .ok_or_else(|| DeployError::NotDeployed(model.to_owned()))?;
        let version = self
            .journal
            .version(model, from.version)?
            .ok_or_else(|| DeployError::NoEarlierVersion {
                model: model.to_owned(),
                serving: current.record.version,
            })?;
        let bytes = self.blobs.read(&from.sha256)?;
        let info = crate::model::inspect(version.format, &bytes)?;
        // The version comes back with the limits it was deployed with, and
        // the workers of what serves now.
        let max_batch = super::launch::Launch::of(from, &config).limits.max_batch;
        let workers = super::launch::Launch::of(&current.record, &config).workers;
        let estimate = admission::estimate(&info, workers, max_batch);
        let layer = config.topology.layer(u32::from(current.record.layer))?;
        // A reload runs what serves now again; a rollback brings back an
        // older version, which must meet the layer's signing rule of today.
        if kind == dsmil_kinds::EventKind::Rollback {
            let signing = &config.signing;
            let placed = super::signature::Placed {
                layer: layer.id,
                layer_name: &layer.name,
                required: signing.required_layers.contains(&layer.id),
            };
            let trusted = signing.trusted_keys.iter().map(|k| (k.name.as_str(), &k.key));
            let checked =
                super::signature::check_existing(model, version.version, version.signed_by.as_ref(), trusted, placed);
            if let Err(e) = checked {
                self.audit(crate::store::EventRecord {
                    device: Some(current.record.device),
                    layer: Some(layer.id),
                    ..crate::store::EventRecord::of(dsmil_kinds::EventKind::Refuse, model, e.to_string())
                });
                return Err(e.into());
            }
        }
        admission::admit(&config, &self.registry, layer, model, estimate, "estimated")?;
        let device = config.topology.device(current.record.device)?;
        // The restored version runs where the current one does.
        let super::launch::Runtime {
            wanted,
            effective,
            backend,
        } = self.runtime_for(&config, device, layer, Some(current.record.backend))?;
        let (_, record) = self.journal.create_deployment(NewDeployment {
            model: model.to_owned(),
            probe_shapes: from.probe_shapes.clone(),
            probe_values: from.probe_values.clone(),
            // Threads go with the worker count (the current deployment's);
            // batching with the max batch (the restored version's).
            serving: crate::store::ServingChoice {
                intra_op_threads: current.record.serving.intra_op_threads,
                ..from.serving.clone()
            },
            sha256: from.sha256.clone(),
            size_bytes: bytes.len() as u64,
            format: version.format,
            classification: version.classification,
            note: version.note.clone(),
            device: device.id,
            layer: layer.id,
            target: wanted,
            effective_target: effective,
            backend: backend.kind(),
            performance_hint: current.record.performance_hint,
            workers: current.record.workers,
            precision: current.record.precision,
            max_batch,
            estimated_bytes: estimate,
            signed_by: None,
            existing: Some(Existing {
                version: version.version,
                kind,
                reason: reason.to_owned(),
            }),
        })?;
        let plan = super::plan::Plan {
            config,
            backend,
            quantize: super::plan::Quantize::Served,
            replaced,
        };
        self.launch(record, &bytes, &info, plan, progress)
    }
}
