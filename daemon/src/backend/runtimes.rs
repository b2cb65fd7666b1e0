//! The runtimes this process has, and which compute targets the host offers.
//! A device's target that the host lacks falls back (config:
//! `hardware.fallback_target`), visibly: the fallback is recorded on the
//! deployment and listed in status.

use std::sync::Arc;

use super::{Backend, BackendError, OnnxRuntime, locate_onnxruntime};
use crate::config::Config;
use crate::topology::Target;

pub struct Runtimes {
    onnxruntime: Result<Arc<OnnxRuntime>, String>,
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
        Runtimes {
            onnxruntime,
            fallback: config.hardware.fallback_target,
        }
    }

    /// Whether the host has this target. NPU and GPU arrive with the OpenVINO
    /// backend; until then only the CPU is present.
    pub fn has_target(&self, target: Target) -> bool {
        match target {
            Target::Cpu => true,
            Target::Npu | Target::Gpu => false,
        }
    }

    /// The target a device asking for `wanted` actually gets.
    pub fn effective_target(&self, wanted: Target) -> Target {
        if self.has_target(wanted) { wanted } else { self.fallback }
    }

    /// The backend serving `target` (already resolved by `effective_target`).
    pub fn backend_for(&self, target: Target) -> Result<Arc<dyn Backend>, BackendError> {
        match target {
            Target::Cpu => match &self.onnxruntime {
                Ok(ort) => Ok(Arc::clone(ort) as Arc<dyn Backend>),
                Err(detail) => Err(BackendError::Unavailable {
                    target,
                    detail: detail.clone(),
                }),
            },
            Target::Npu | Target::Gpu => Err(BackendError::Unavailable {
                target,
                detail: "this host has no such device and no OpenVINO runtime".into(),
            }),
        }
    }

    pub fn status(&self) -> Vec<RuntimeStatus> {
        vec![RuntimeStatus {
            name: "onnxruntime",
            available: self.onnxruntime.is_ok(),
            detail: match &self.onnxruntime {
                Ok(ort) => ort.library().display().to_string(),
                Err(e) => e.clone(),
            },
        }]
    }
}
