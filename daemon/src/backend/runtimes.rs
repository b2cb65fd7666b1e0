//! The runtimes this process has, and which compute targets the host offers.
//! A device's target that the host lacks falls back (config:
//! `hardware.fallback_target`), visibly: the fallback is recorded on the
//! deployment and listed in status.

use std::sync::Arc;

use super::{
    Backend, BackendError, BackendKind, OnnxRuntime, OpenVino, OpenVinoBackend, locate_onnxruntime, locate_openvino,
};
use crate::config::Config;
use crate::topology::Target;

pub struct Runtimes {
    onnxruntime: Result<Arc<OnnxRuntime>, String>,
    /// Optional: without it the host has no NPU or GPU target.
    openvino: Result<Arc<OpenVino>, String>,
    fallback: Target,
}

/// A runtime as status reports it.
#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

impl Runtimes {
    /// Loads what can be loaded; a missing runtime is remembered with the
    /// instructions to get it, not fatal.
    pub fn load(config: &Config) -> Runtimes {
        let onnxruntime = locate_onnxruntime(config.runtimes.onnxruntime_library.as_deref())
            .and_then(|path| OnnxRuntime::load(&path))
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Err(e) = &onnxruntime {
            tracing::error!(error = %e, "ONNX Runtime is unavailable; deployments will be refused");
        }
        let openvino = locate_openvino(config.runtimes.openvino_library.as_deref()).and_then(|path| {
            let cache = config.paths.cache_dir.join("openvino");
            OpenVino::load(&path, &cache, &config.runtimes.openvino_inference_precision)
        });
        match &openvino {
            Ok(ov) => {
                let devices: Vec<&str> = ov.devices().iter().map(|d| d.name.as_str()).collect();
                tracing::info!(library = %ov.library().display(), devices = ?devices, "OpenVINO loaded");
            }
            Err(e) => tracing::warn!(error = %e, "OpenVINO is unavailable; NPU and GPU devices fall back"),
        }
        Runtimes {
            onnxruntime,
            openvino: openvino.map(Arc::new),
            fallback: config.hardware.fallback_target,
        }
    }

    /// Whether the host has this target: the CPU always; NPU and GPU when
    /// OpenVINO is loaded and reports the device.
    pub fn has_target(&self, target: Target) -> bool {
        match target {
            Target::Cpu => true,
            Target::Npu | Target::Gpu => self
                .openvino
                .as_ref()
                .is_ok_and(|ov| ov.has_device(openvino_device(target))),
        }
    }

    /// OpenVINO on `target`'s device (CPU included), for deployments that
    /// ask for it and for the CPU-plugin checks.
    pub fn openvino_for(&self, target: Target) -> Result<Arc<dyn Backend>, BackendError> {
        match &self.openvino {
            Ok(ov) if ov.has_device(openvino_device(target)) => {
                Ok(Arc::new(OpenVinoBackend::new(Arc::clone(ov), openvino_device(target))))
            }
            Ok(_) => Err(BackendError::Unavailable {
                target,
                detail: format!("OpenVINO reports no {} device", openvino_device(target)),
            }),
            Err(detail) => Err(BackendError::Unavailable {
                target,
                detail: detail.clone(),
            }),
        }
    }

    pub fn openvino(&self) -> Option<&OpenVino> {
        self.openvino.as_ref().ok().map(|ov| &**ov)
    }

    /// The target a device asking for `wanted` actually gets.
    pub fn effective_target(&self, wanted: Target) -> Target {
        if self.has_target(wanted) { wanted } else { self.fallback }
    }

    /// The backend of `kind` serving `target` (already resolved by
    /// `effective_target`); NPU and GPU are OpenVINO's whatever `kind` says.
    pub fn backend(&self, target: Target, kind: BackendKind) -> Result<Arc<dyn Backend>, BackendError> {
        match (target, kind) {
            (Target::Cpu, BackendKind::OnnxRuntime) => self.backend_for(target),
            _ => self.openvino_for(target),
        }
    }

    /// The default backend serving `target`: ONNX Runtime on the CPU, or
    /// OpenVINO's CPU plugin on a host that has only OpenVINO (the
    /// deployment records which one serves it).
    pub fn backend_for(&self, target: Target) -> Result<Arc<dyn Backend>, BackendError> {
        match target {
            Target::Cpu => match &self.onnxruntime {
                Ok(ort) => Ok(Arc::clone(ort) as Arc<dyn Backend>),
                Err(detail) => self.openvino_for(Target::Cpu).map_err(|_| BackendError::Unavailable {
                    target,
                    detail: detail.clone(),
                }),
            },
            Target::Npu | Target::Gpu => self.openvino_for(target),
        }
    }

    pub fn status(&self) -> Vec<RuntimeStatus> {
        vec![
            RuntimeStatus {
                name: "onnxruntime",
                available: self.onnxruntime.is_ok(),
                detail: match &self.onnxruntime {
                    Ok(ort) => ort.library().display().to_string(),
                    Err(e) => e.clone(),
                },
            },
            RuntimeStatus {
                name: "openvino",
                available: self.openvino.is_ok(),
                detail: match &self.openvino {
                    Ok(ov) => format!(
                        "{}; devices: {}",
                        ov.library().display(),
                        ov.devices()
                            .iter()
                            .map(|d| format!("{} ({})", d.name, d.full_name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Err(e) => e.clone(),
                },
            },
        ]
    }
}

/// OpenVINO's device name for a target.
fn openvino_device(target: Target) -> &'static str {
    match target {
        Target::Cpu => "CPU",
        Target::Gpu => "GPU",
        Target::Npu => "NPU",
    }
}
