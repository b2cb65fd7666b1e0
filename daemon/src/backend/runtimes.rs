//! The runtimes this process has, and which compute targets the host offers.
//! A device's target that the host lacks falls back (config:
//! `hardware.fallback_target`), visibly: the fallback is recorded on the
//! deployment and listed in status.
//!
//! A runtime is found at startup (its library located, so a missing one is
//! reported at once) but loaded the first time something needs it: a
//! deployment it serves, the quantizer, or a question about the accelerators
//! (`dsmilctl devices`, a deploy on an NPU or GPU device). Mapping ONNX
//! Runtime and OpenVINO costs about 30 MB of resident memory that an idle
//! daemon, or one serving on only one of them, never uses.
//! `runtimes.load_at_startup` loads both at once instead. Loading blocks
//! (hundreds of milliseconds for OpenVINO's plugins): never ask from a tokio
//! worker.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::{
    Backend, BackendError, BackendKind, OnnxRuntime, OpenVino, OpenVinoBackend, locate_onnxruntime, locate_openvino,
};
use crate::config::Config;
use crate::topology::Target;

pub struct Runtimes {
    onnxruntime: Lazy<OnnxRuntime>,
    /// Optional: without it the host has no NPU or GPU target.
    openvino: Lazy<OpenVino>,
    fallback: Target,
}

type Loader<R> = Box<dyn Fn() -> Result<R, String> + Send + Sync>;

/// A runtime located at startup and loaded once, on first use.
struct Lazy<R> {
    /// Where the library is, or why it could not be found.
    located: Result<PathBuf, String>,
    load: Loader<R>,
    loaded: OnceLock<Result<Arc<R>, String>>,
}

impl<R> Lazy<R> {
    fn new(located: Result<PathBuf, String>, load: Loader<R>) -> Lazy<R> {
        Lazy {
            located,
            load,
            loaded: OnceLock::new(),
        }
    }

    /// The runtime, loading it now if nothing has yet. Blocking.
    fn get(&self) -> &Result<Arc<R>, String> {
        self.loaded.get_or_init(|| match &self.located {
            Ok(_) => (self.load)().map(Arc::new),
            Err(e) => Err(e.clone()),
        })
    }

    /// The runtime if it is loaded; never loads.
    fn if_loaded(&self) -> Option<&Arc<R>> {
        self.loaded.get().and_then(|r| r.as_ref().ok())
    }
}

/// A runtime as status reports it.
#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

impl Runtimes {
    /// Locates both runtimes (loading them only with
    /// `runtimes.load_at_startup`); a missing one is logged with the
    /// instructions to get it, not fatal.
    pub fn load(config: &Config) -> Runtimes {
        let onnxruntime = locate_onnxruntime(config.runtimes.onnxruntime_library.as_deref()).map_err(|e| e.to_string());
        if let Err(e) = &onnxruntime {
            tracing::error!(error = %e, "ONNX Runtime is unavailable; deployments will be refused");
        }
        let openvino = locate_openvino(config.runtimes.openvino_library.as_deref());
        if let Err(e) = &openvino {
            tracing::warn!(error = %e, "OpenVINO is unavailable; NPU and GPU devices fall back");
        }
        let ort_path = onnxruntime.clone().unwrap_or_default();
        let ov_path = openvino.clone().unwrap_or_default();
        let cache = config.paths.cache_dir.join("openvino");
        let precision = config.runtimes.openvino_inference_precision.clone();
        let runtimes = Runtimes {
            onnxruntime: Lazy::new(
                onnxruntime,
                Box::new(move || {
                    let ort = OnnxRuntime::load(&ort_path).map_err(|e| e.to_string());
                    match &ort {
                        Ok(_) => tracing::info!(library = %ort_path.display(), "ONNX Runtime loaded"),
                        Err(e) => tracing::error!(error = %e, "ONNX Runtime failed to load"),
                    }
                    ort
                }),
            ),
            openvino: Lazy::new(
                openvino,
                Box::new(move || {
                    let ov = OpenVino::load(&ov_path, &cache, &precision);
                    match &ov {
                        Ok(ov) => {
                            let devices: Vec<&str> = ov.devices().iter().map(|d| d.name.as_str()).collect();
                            tracing::info!(library = %ov.library().display(), devices = ?devices, "OpenVINO loaded");
                        }
                        Err(e) => tracing::warn!(error = %e, "OpenVINO failed to load; NPU and GPU devices fall back"),
                    }
                    ov
                }),
            ),
            fallback: config.hardware.fallback_target,
        };
        if config.runtimes.load_at_startup {
            runtimes.load_all();
        }
        runtimes
    }

    /// Loads every runtime not loaded yet (blocking), so that the
    /// accelerators are known: `dsmilctl devices` asks this first.
    pub fn load_all(&self) {
        let _ = self.onnxruntime.get();
        let _ = self.openvino.get();
    }

    /// Whether the host has this target: the CPU always; NPU and GPU when
    /// OpenVINO loads and reports the device (loading it if needed).
    pub fn has_target(&self, target: Target) -> bool {
        match target {
            Target::Cpu => true,
            Target::Npu | Target::Gpu => self
                .openvino
                .get()
                .as_ref()
                .is_ok_and(|ov| ov.has_device(openvino_device(target))),
        }
    }

    /// OpenVINO on `target`'s device (CPU included), for deployments that
    /// ask for it and for the CPU-plugin checks.
    pub fn openvino_for(&self, target: Target) -> Result<Arc<dyn Backend>, BackendError> {
        match self.openvino.get() {
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

    /// OpenVINO if it is loaded (never loads it).
    pub fn openvino(&self) -> Option<&OpenVino> {
        self.openvino.if_loaded().map(|ov| &**ov)
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
            Target::Cpu => match self.onnxruntime.get() {
                Ok(ort) => Ok(Arc::clone(ort) as Arc<dyn Backend>),
                Err(detail) => self.openvino_for(Target::Cpu).map_err(|_| BackendError::Unavailable {
                    target,
                    detail: detail.clone(),
                }),
            },
            Target::Npu | Target::Gpu => self.openvino_for(target),
        }
    }

    /// Each runtime as it stands, without loading any: one not needed yet
    /// is reported with its library and "loads on first use".
    pub fn status(&self) -> Vec<RuntimeStatus> {
        let ort = lazy_status(&self.onnxruntime, |ort| ort.library().display().to_string());
        let ov = lazy_status(&self.openvino, |ov| {
            format!(
                "{}; devices: {}",
                ov.library().display(),
                ov.devices()
                    .iter()
                    .map(|d| format!("{} ({})", d.name, d.full_name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        vec![
            RuntimeStatus {
                name: "onnxruntime",
                available: ort.0,
                detail: ort.1,
            },
            RuntimeStatus {
                name: "openvino",
                available: ov.0,
                detail: ov.1,
            },
        ]
    }
}

fn lazy_status<R>(lazy: &Lazy<R>, describe: impl Fn(&R) -> String) -> (bool, String) {
    match (lazy.loaded.get(), &lazy.located) {
        (Some(Ok(runtime)), _) => (true, describe(runtime)),
        (Some(Err(e)), _) | (None, Err(e)) => (false, e.clone()),
        (None, Ok(path)) => (true, format!("{} (not loaded: loads on first use)", path.display())),
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
