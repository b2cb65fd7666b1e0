//! ONNX Runtime through the `ort` crate, loaded at run time (`load-dynamic`)
//! from the official library: config, then `ORT_DYLIB_PATH`, then the
//! workspace's `runtimes/onnxruntime/` (scripts/fetch-runtimes.sh), then an
//! installed host's /usr/lib/dsmil/runtimes/ (dsmil-fetch-runtimes), then the
//! system's library folders.
//!
//! Answers are served from the runtime's own output buffers: each holds its
//! output value and the session, so it stays intact after later runs and an
//! undeploy. Only CPU memory is read this way (no other execution provider
//! is registered); an output that aliases a request's bytes is copied.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ort::environment::Environment;
use ort::logging::LogLevel;
use ort::memory::MemoryInfo;
use ort::session::Session;
use ort::session::SessionInputValue;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{
    DynTensor, DynTensorValueType, PrimitiveTensorElementType, Shape, TensorElementType, TensorRefMut, ValueType,
};

use super::{Backend, BackendError, DataType, LoadOptions, LoadedModel, Signature, Tensor, TensorSpec, TensorView};

const LIB_NAME: &str = "libonnxruntime.so";

/// Finds libonnxruntime.so; the error lists where it looked.
pub fn locate_onnxruntime(configured: Option<&Path>) -> Result<PathBuf, BackendError> {
    let mut candidates = Vec::new();
    if let Some(path) = configured {
        candidates.push(path.to_owned());
    } else {
        if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
            candidates.push(PathBuf::from(path));
        }
        // A development checkout: target/<profile>/dsmild -> <root>/runtimes/.
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(4) {
                candidates.push(dir.join("runtimes/onnxruntime").join(LIB_NAME));
            }
        }
        candidates.push(Path::new(super::INSTALLED_RUNTIMES).join("onnxruntime").join(LIB_NAME));
        for dir in ["/usr/lib/dsmil", "/usr/local/lib", "/usr/lib"] {
            candidates.push(Path::new(dir).join(LIB_NAME));
        }
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| BackendError::RuntimeMissing {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hint: super::fetch_runtimes_hint(),
        })
}

pub struct OnnxRuntime {
    environment: Environment,
    library: PathBuf,
    log_level: LogLevel,
}

/// ONNX Runtime's own severity: the most the log filter would show of the
/// `ort` target, which is warning unless the operator asks for more
/// (`RUST_LOG=ort=info`; see `logging`). Set in the runtime itself, so it
/// does not format thousands of lines (graph transformers, arena growth)
/// only for the filter to drop them.
fn runtime_log_level() -> LogLevel {
    if tracing::enabled!(target: "ort::logging", tracing::Level::TRACE) {
        LogLevel::Verbose
    } else if tracing::enabled!(target: "ort::logging", tracing::Level::INFO) {
        LogLevel::Info
    } else if tracing::enabled!(target: "ort::logging", tracing::Level::WARN) {
        LogLevel::Warning
    } else {
        LogLevel::Error
    }
}

impl OnnxRuntime {
    /// Loads the library. Only one ONNX Runtime library can be loaded per
    /// process, so the daemon makes one of these at startup.
    pub fn load(library: &Path) -> Result<OnnxRuntime, BackendError> {
        let load_err = |detail: String| BackendError::RuntimeLoad {
            path: library.display().to_string(),
            detail,
        };
        let environment = ort::init_from(library)
            .map_err(|e| load_err(e.to_string()))?
            .with_name("dsmild")
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let log_level = runtime_log_level();
        environment.set_log_level(log_level);
        Ok(OnnxRuntime {
            environment,
            library: library.to_owned(),
            log_level,
        })
    }

    pub fn library(&self) -> &Path {
        &self.library
    }
}

impl Backend for OnnxRuntime {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    /// ONNX Runtime implements every standard operator, and its contrib
    /// domain; other domains need custom-op libraries dsmild does not load.
    fn supports_operator(&self, domain: &str, _op: &str) -> bool {
        matches!(domain, "" | "ai.onnx" | "ai.onnx.ml" | "com.microsoft")
    }

    fn load(&self, model: &[u8], options: &LoadOptions) -> Result<Box<dyn LoadedModel>, BackendError> {
        let load = |e: ort::Error| BackendError::Load(e.to_string());
        let mut builder = Session::builder(&self.environment)
            .map_err(load)?
            .with_log_level(self.log_level)
            .map_err(|e| BackendError::Load(e.to_string()))?
            .with_optimization_level(match options.inspect {
                true => GraphOptimizationLevel::Disable,
                false => GraphOptimizationLevel::Level3,
            })
            .map_err(|e| BackendError::Load(e.to_string()))?;
        if options.intra_op_threads > 0 {
            builder = builder
                .with_intra_threads(options.intra_op_threads)
                .map_err(|e| BackendError::Load(e.to_string()))?;
        }
        // Pinned: the calling (worker) thread takes the first CPU; each of
        // the pool's other threads one of the rest, as ONNX Runtime's
        // 1-based processor list ("2;3;4").
        if options.intra_op_threads > 1 && options.cpus.len() >= options.intra_op_threads {
            let affinities = options.cpus[1..options.intra_op_threads]
                .iter()
                .map(|c| (c + 1).to_string())
                .collect::<Vec<_>>()
                .join(";");
            builder = builder
                .with_config_entry("session.intra_op_thread_affinities", affinities)
                .map_err(|e| BackendError::Load(e.to_string()))?;
        }
        let session = builder.commit_from_memory(model).map_err(load)?;
        let signature = Signature {
            inputs: session
                .inputs()
                .iter()
                .map(|o| spec(o.name(), o.dtype()))
                .collect::<Result<_, _>>()?,
            outputs: session
                .outputs()
                .iter()
                .map(|o| spec(o.name(), o.dtype()))
                .collect::<Result<_, _>>()?,
        };
        let cpu = MemoryInfo::new(
            ort::memory::AllocationDevice::CPU,
            0,
            ort::memory::AllocatorType::Device,
            ort::memory::MemoryType::Default,
        )
        .map_err(load)?;
        Ok(Box::new(OrtModel {
            session: Arc::new(Mutex::new(session)),
            signature,
            cpu,
        }))
    }
}

fn spec(name: &str, value: &ValueType) -> Result<TensorSpec, BackendError> {
    let unsupported = |detail: String| BackendError::UnsupportedTensor {
        name: name.to_owned(),
        detail,
    };
    match value {
        ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
            name: name.to_owned(),
            dtype: from_ort(*ty).ok_or_else(|| unsupported(format!("element type {ty:?} is not served")))?,
            shape: shape.iter().copied().collect(),
        }),
        other => Err(unsupported(format!("{other:?} is not a tensor"))),
    }
}

fn from_ort(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Bfloat16 => DataType::BF16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        _ => return None,
    })
}

fn to_ort(ty: DataType) -> TensorElementType {
    match ty {
        DataType::Bool => TensorElementType::Bool,
        DataType::U8 => TensorElementType::Uint8,
        DataType::U16 => TensorElementType::Uint16,
        DataType::U32 => TensorElementType::Uint32,
        DataType::U64 => TensorElementType::Uint64,
        DataType::I8 => TensorElementType::Int8,
        DataType::I16 => TensorElementType::Int16,
        DataType::I32 => TensorElementType::Int32,
        DataType::I64 => TensorElementType::Int64,
        DataType::F16 => TensorElementType::Float16,
        DataType::BF16 => TensorElementType::Bfloat16,
        DataType::F32 => TensorElementType::Float32,
        DataType::F64 => TensorElementType::Float64,
    }
}

struct OrtModel {
    /// Shared with every answer still served from the runtime's memory
    /// ([`RuntimeBytes`]): an undeploy while an answer is being sent frees
    /// the session after the answer, not under it. Only this model's worker
    /// runs it, so the lock is never contended.
    session: Arc<Mutex<Session>>,
    signature: Signature,
    /// Describes host memory, for inputs ONNX Runtime reads in place.
    cpu: MemoryInfo<'static>,
}

/// `input` as a tensor over its own bytes, without a copy, when they are
/// aligned for its element type and the type is a common one; None: the
/// caller copies it into a tensor of ONNX Runtime's. Tensors dsmild builds
/// (warmup, probes, calibration, a batch) are aligned; a gRPC request's raw
/// bytes are a slice of the received message and often are not.
fn borrow<'a>(input: &'a Tensor, cpu: &MemoryInfo) -> ort::Result<Option<SessionInputValue<'a>>> {
    fn view<'a, T: PrimitiveTensorElementType + std::fmt::Debug + 'static>(
        input: &'a Tensor,
        cpu: &MemoryInfo,
    ) -> ort::Result<Option<SessionInputValue<'a>>> {
        let ptr = input.data.as_ptr();
        if input.data.is_empty() || !ptr.cast::<T>().is_aligned() {
            return Ok(None);
        }
        let shape = Shape::new(input.shape.iter().copied());
        // SAFETY: the bytes are exactly the shape's size of this element
        // type (checked by the caller) and aligned for it (checked above),
        // and they outlive the returned value, which borrows `input` for the
        // run; an output the runtime makes an alias of them is copied before
        // the run's answer leaves (`run`). ONNX Runtime only reads a run's
        // inputs (OrtRun takes them as const), so handing it a mutable
        // pointer to shared bytes is sound.
        let tensor = unsafe { TensorRefMut::<T>::from_raw(cpu.clone(), ptr.cast_mut().cast(), shape)? };
        Ok(Some(tensor.into()))
    }
    match input.dtype {
        DataType::F32 => view::<f32>(input, cpu),
        DataType::F64 => view::<f64>(input, cpu),
        DataType::I64 => view::<i64>(input, cpu),
        DataType::I32 => view::<i32>(input, cpu),
        DataType::U8 => view::<u8>(input, cpu),
        DataType::I8 => view::<i8>(input, cpu),
        _ => Ok(None),
    }
}

impl LoadedModel for OrtModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The outputs in ONNX Runtime's own buffers, each kept alive by the
    /// `Bytes` that shares it: an answer is encoded straight from the
    /// runtime's memory, with no copy on the way. An output the runtime
    /// answered with an input's own memory (a graph output that is an input,
    /// an Identity or Reshape it runs as an alias) is copied instead: those
    /// bytes are the request's, lent for the run only.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let outputs = self.run_outputs(inputs)?;
        Ok(outputs
            .into_iter()
            .map(|out| {
                let data = if out.len == 0 {
                    bytes::Bytes::new()
                } else {
                    let owned = RuntimeBytes {
                        value: out.value,
                        len: out.len,
                        _session: Arc::clone(&self.session),
                    };
                    if inputs.iter().any(|input| overlaps(owned.as_ref(), &input.data)) {
                        bytes::Bytes::copy_from_slice(owned.as_ref())
                    } else {
                        bytes::Bytes::from_owner(owned)
                    }
                };
                Tensor {
                    name: out.name,
                    dtype: out.dtype,
                    shape: out.shape,
                    data,
                }
            })
            .collect())
    }

    fn run_visit(&mut self, inputs: &[Tensor], visit: &mut dyn FnMut(&TensorView)) -> Result<(), BackendError> {
        for out in self.run_outputs(inputs)? {
            let data: &[u8] = if out.len == 0 {
                &[]
            } else {
                // SAFETY: as in `RuntimeBytes::as_ref`: ONNX Runtime owns a
                // contiguous buffer of `len` bytes for this tensor, alive
                // while `out.value` is.
                unsafe { std::slice::from_raw_parts(out.value.data_ptr().cast::<u8>(), out.len) }
            };
            visit(&TensorView {
                name: &out.name,
                dtype: out.dtype,
                shape: &out.shape,
                data,
            });
        }
        Ok(())
    }
}

/// Whether two byte ranges share any address.
fn overlaps(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (a.as_ptr_range(), b.as_ptr_range());
    a.start < b.end && b.start < a.end
}

/// One output of a run, still in ONNX Runtime's memory (or, for an output
/// that aliases an input, in that input's).
struct RuntimeOutput {
    name: String,
    dtype: DataType,
    shape: Vec<i64>,
    /// The byte length of its elements, checked against its shape.
    len: usize,
    value: DynTensor,
}

/// An output's bytes, owned by ONNX Runtime's value: the `Bytes` of a
/// served answer releases the value when the answer has been sent.
struct RuntimeBytes {
    // Dropped in this order: the value, then (perhaps) the session.
    value: DynTensor,
    len: usize,
    /// Keeps the session, and whatever of its memory the value may point
    /// into, alive as long as the answer.
    _session: Arc<Mutex<Session>>,
}

impl AsRef<[u8]> for RuntimeBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` is the byte length of the tensor's elements
        // (Tensor::byte_len of its type and shape, non-zero), which ONNX
        // Runtime holds in one contiguous buffer for as long as the value
        // lives; the value is owned here and never written again.
        unsafe { std::slice::from_raw_parts(self.value.data_ptr().cast::<u8>(), self.len) }
    }
}

impl OrtModel {
    /// Runs the model; the outputs in the signature's order.
    fn run_outputs(&mut self, inputs: &[Tensor]) -> Result<Vec<RuntimeOutput>, BackendError> {
        let run_err = |e: ort::Error| BackendError::Run(e.to_string());
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut values: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for input in inputs {
            // Checked before the runtime allocates the tensor: callers check
            // requests, but this is the last line before native memory.
            let expected = Tensor::byte_len(input.dtype, &input.shape);
            let Some(expected) = expected.filter(|&e| e == input.data.len()) else {
                return Err(BackendError::Rejected(format!(
                    "input {} carries {} bytes, its shape {} of {} needs {}",
                    input.name,
                    input.data.len(),
                    super::format_shape(&input.shape),
                    input.dtype,
                    expected.map_or("more than the address space".to_owned(), |e| e.to_string())
                )));
            };
            if let Some(borrowed) = borrow(input, &self.cpu).map_err(run_err)? {
                values.push((input.name.clone(), borrowed));
                continue;
            }
            let mut value =
                DynTensor::new(session.allocator(), to_ort(input.dtype), input.shape.clone()).map_err(run_err)?;
            if expected > 0 {
                // SAFETY: the tensor was allocated for exactly `expected` bytes
                // of this element type and shape (checked above), and the
                // source slice has that length.
                unsafe {
                    std::ptr::copy_nonoverlapping(input.data.as_ptr(), value.data_ptr_mut().cast::<u8>(), expected);
                }
            }
            values.push((input.name.clone(), value.into()));
        }
        // ONNX Runtime says InvalidArgument when the inputs, not the model,
        // are at fault (a dimension the graph cannot take, say).
        let mut outputs = session.run(values).map_err(|e| match e.code() {
            ort::error::ErrorCode::InvalidArgument => BackendError::Rejected(e.to_string()),
            _ => run_err(e),
        })?;
        let mut results = Vec::with_capacity(self.signature.outputs.len());
        for spec in &self.signature.outputs {
            let value = outputs
                .remove(&spec.name)
                .ok_or_else(|| BackendError::Run(format!("output {} is missing", spec.name)))?
                .downcast::<DynTensorValueType>()
                .map_err(|e| BackendError::UnsupportedTensor {
                    name: spec.name.clone(),
                    detail: e.to_string(),
                })?;
            let shape: Vec<i64> = value.shape().iter().copied().collect();
            let dtype = from_ort(*value.data_type()).ok_or_else(|| BackendError::UnsupportedTensor {
                name: spec.name.clone(),
                detail: format!("element type {:?} is not served", value.data_type()),
            })?;
            let len = Tensor::byte_len(dtype, &shape).unwrap_or(0);
            results.push(RuntimeOutput {
                name: spec.name.clone(),
                dtype,
                shape,
                len,
                value,
            });
        }
        Ok(results)
    }
}
