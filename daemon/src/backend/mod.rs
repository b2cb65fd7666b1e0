//! Backends: the inference runtimes behind one interface. A [`Backend`] turns
//! model bytes into a [`LoadedModel`]; a loaded model runs tensors.
//!
//! Only this module links a vendor runtime, and runtime calls never happen on
//! a tokio worker: loading runs on the deploy pipeline's blocking thread and
//! inference on the [`pool`]'s dedicated threads.

#[doc(hidden)]
pub mod fake;
mod onnxruntime;
mod openvino;
pub mod pool;
mod queue;
mod runtimes;
mod tensor;

pub use onnxruntime::{OnnxRuntime, locate_onnxruntime};
pub use openvino::{OpenVino, OpenVinoBackend, OpenVinoDevice, locate_openvino};
pub use pool::{Batching, Pool, PoolError, RunOutcome, split_rows};
pub use runtimes::{RuntimeStatus, Runtimes};
#[cfg(test)]
pub use tensor::f32_bytes;
pub use tensor::{
    DataType, RequestLimits, Signature, Tensor, TensorSpec, TensorView, argmax, f32s, format_shape, mean_f32,
};

use crate::topology::Target;

/// Where an installed host keeps the runtimes (`dsmil-fetch-runtimes`'s
/// default destination), searched after the configured paths.
pub const INSTALLED_RUNTIMES: &str = "/usr/lib/dsmil/runtimes";

/// How to get the native runtimes on the host this binary runs on: the
/// checkout's script when dsmild runs from a source tree (target/<profile>/),
/// the packaged command when one is installed beside it, else both names.
pub fn fetch_runtimes_hint() -> String {
    let exe = std::env::current_exe().ok();
    let checkout = exe.iter().flat_map(|e| e.ancestors().skip(1).take(4)).find_map(|dir| {
        let script = dir.join("scripts/fetch-runtimes.sh");
        script.is_file().then_some(script)
    });
    let packaged = exe
        .as_deref()
        .and_then(|e| e.parent())
        .map(|dir| dir.join("dsmil-fetch-runtimes"))
        .filter(|p| p.is_file());
    match (checkout, packaged) {
        (Some(script), _) => format!("Run {}", script.display()),
        (None, Some(command)) => format!(
            "Run {} as root (it installs them into {INSTALLED_RUNTIMES}) and restart dsmild",
            command.display()
        ),
        (None, None) => format!(
            "Install them with dsmil-fetch-runtimes (the dsmil package; into {INSTALLED_RUNTIMES}) \
             or scripts/fetch-runtimes.sh (a source checkout)"
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "the ONNX Runtime library was not found (looked in: {searched}). \
         {hint}, or point runtimes.onnxruntime_library or ORT_DYLIB_PATH at libonnxruntime.so"
    )]
    RuntimeMissing { searched: String, hint: String },
    #[error("loading the ONNX Runtime library {path}: {detail}")]
    RuntimeLoad { path: String, detail: String },
    #[error("no runtime is available for target {target}: {detail}")]
    Unavailable { target: Target, detail: String },
    #[error("the runtime could not load the model: {0}")]
    Load(String),
    #[error("input or output {name}: {detail}")]
    UnsupportedTensor { name: String, detail: String },
    #[error("inference failed: {0}")]
    Run(String),
    /// The runtime refused the request's inputs (a client error, not the
    /// model's: it never counts against a deployment's health).
    #[error("the runtime refused the inputs: {0}")]
    Rejected(String),
    #[error("the inference thread panicked: {0}")]
    Panicked(String),
}

/// A backend whose every load carries a deployment's serving options
/// (precision, hints), so that calibration and the accuracy gate run as
/// serving will.
pub struct Serving<'a> {
    pub backend: &'a dyn Backend,
    pub options: LoadOptions,
}

impl Backend for Serving<'_> {
    fn name(&self) -> &'static str {
        self.backend.name()
    }

    fn supports_operator(&self, domain: &str, op: &str) -> bool {
        self.backend.supports_operator(domain, op)
    }

    fn describe(&self, _options: &LoadOptions) -> String {
        self.backend.describe(&self.options)
    }

    fn load(&self, model: &[u8], options: &LoadOptions) -> Result<Box<dyn LoadedModel>, BackendError> {
        let options = LoadOptions {
            inspect: options.inspect,
            ..self.options.clone()
        };
        self.backend.load(model, &options)
    }
}

/// `LoadedModel::run` for a backend whose native call is `run_visit`: each
/// output copied out of the runtime's buffer.
fn owned_outputs(model: &mut dyn LoadedModel, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
    let mut result = Vec::with_capacity(model.signature().outputs.len());
    model.run_visit(inputs, &mut |t| {
        result.push(Tensor {
            name: t.name.to_owned(),
            dtype: t.dtype,
            shape: t.shape.to_vec(),
            data: bytes::Bytes::copy_from_slice(t.data),
        })
    })?;
    Ok(result)
}

pub use dsmil_kinds::BackendKind;

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Threads inside the runtime; 0 lets it choose.
    pub intra_op_threads: usize,
    /// OpenVINO's THROUGHPUT performance hint instead of LATENCY.
    pub throughput: bool,
    /// OpenVINO's inference precision hint ("f32", "bf16", "f16"); None:
    /// the daemon's `runtimes.openvino_inference_precision`.
    pub precision: Option<String>,
    /// Loaded to read intermediate tensors (calibration): graph optimizations
    /// off, as fusions would drop the exposed tensors and layout changes
    /// would cost a copy back for each.
    pub inspect: bool,
    /// The CPUs this instance's runtime threads run on (`serving.cpu_pinning`;
    /// the worker thread pins itself to the first); empty: unpinned.
    pub cpus: Vec<usize>,
}

/// An inference runtime.
pub trait Backend: Send + Sync {
    /// A short name recorded on deployments and metrics: "onnxruntime".
    fn name(&self) -> &'static str;

    /// The runtime behind it, as deployments record it. Only OpenVINO's
    /// backends are named "openvino"; test doubles stand in for ONNX Runtime.
    fn kind(&self) -> BackendKind {
        self.name().parse().unwrap_or(BackendKind::OnnxRuntime)
    }

    /// What a load will compile for, as the deploy's history records it
    /// (device, hints, precision).
    fn describe(&self, _options: &LoadOptions) -> String {
        self.name().to_owned()
    }
    /// Whether this runtime implements an operator (the model's opset has
    /// already been checked against the ONNX standard).
    fn supports_operator(&self, domain: &str, op: &str) -> bool;
    /// Builds a runnable model. Blocking; may take seconds.
    fn load(&self, model: &[u8], options: &LoadOptions) -> Result<Box<dyn LoadedModel>, BackendError>;
}

/// A model ready to run. Each instance is driven by one thread at a time.
pub trait LoadedModel: Send {
    fn signature(&self) -> &Signature;
    /// Runs the model. Inputs have been checked against the signature.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError>;

    /// Runs the model and shows each output to `visit` in the runtime's own
    /// buffer, without copying it out: for calibration, which reads every
    /// intermediate tensor of every sample and keeps only statistics.
    fn run_visit(&mut self, inputs: &[Tensor], visit: &mut dyn FnMut(&TensorView)) -> Result<(), BackendError> {
        for t in self.run(inputs)? {
            visit(&TensorView {
                name: &t.name,
                dtype: t.dtype,
                shape: &t.shape,
                data: &t.data,
            });
        }
        Ok(())
    }

    /// Where the runtime got the compiled model, for the Compiling stage's
    /// detail and the restore log: e.g. "OpenVINO's model cache". None: it
    /// compiled it (or has no cache).
    fn compiled_from(&self) -> Option<&'static str> {
        None
    }
}
