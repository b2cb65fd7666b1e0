//! OpenVINO through the `openvino` crate, linked at run time from the
//! official wheel's libraries (scripts/fetch-runtimes.sh). One `Core` per
//! process, shared by a backend per OpenVINO device (CPU, GPU, NPU), with
//! its model cache in the daemon's cache directory: a restart or a redeploy
//! of the same model on the same device loads the compiled blob instead of
//! compiling again.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use openvino::{CompiledModel, Core, DeviceType, ElementType, InferRequest, PropertyKey, RwPropertyKey, Shape};

use super::{Backend, BackendError, DataType, LoadOptions, LoadedModel, Signature, Tensor, TensorSpec, TensorView};

const LIB_NAME: &str = "libopenvino_c.so";

/// Finds libopenvino_c.so: the configured path (file or folder), else
/// $OPENVINO_LIB_DIR, the workspace's runtimes/openvino/ (a development
/// checkout), /usr/lib/dsmil/runtimes/openvino (dsmil-fetch-runtimes),
/// /usr/lib/dsmil/openvino.
pub fn locate_openvino(configured: Option<&Path>) -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    let as_file = |p: PathBuf| if p.is_dir() { p.join(LIB_NAME) } else { p };
    if let Some(path) = configured {
        candidates.push(as_file(path.to_owned()));
    } else {
        if let Some(dir) = std::env::var_os("OPENVINO_LIB_DIR") {
            candidates.push(as_file(PathBuf::from(dir)));
        }
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(4) {
                candidates.push(dir.join("runtimes/openvino").join(LIB_NAME));
            }
        }
        candidates.push(Path::new(super::INSTALLED_RUNTIMES).join("openvino").join(LIB_NAME));
        candidates.push(Path::new("/usr/lib/dsmil/openvino").join(LIB_NAME));
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "the OpenVINO library was not found (looked in: {}). {}, or point \
             runtimes.openvino_library or OPENVINO_LIB_DIR at the folder holding libopenvino_c.so",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            super::fetch_runtimes_hint()
        )
    })
}

/// A device OpenVINO reports, as status shows it.
#[derive(Debug, Clone)]
pub struct OpenVinoDevice {
    /// "CPU", "GPU", "GPU.1", "NPU".
    pub name: String,
    pub full_name: String,
    /// Read-only properties worth showing (capabilities, request ranges).
    pub properties: Vec<(String, String)>,
}

/// A compiled model shared by the infer requests of a deployment's workers.
type Shared = Arc<Mutex<CompiledModel>>;

/// The loaded library and its one `Core`.
pub struct OpenVino {
    core: Mutex<Core>,
    /// Compiled models by (model sha256, device, options): a deployment's
    /// workers each get an infer request on one compiled model, so the
    /// weights are held once. Weak: the last worker to go frees it.
    compiled: Mutex<HashMap<String, Weak<Mutex<CompiledModel>>>>,
    library: PathBuf,
    /// Where models the frontends read only from files are written for
    /// their read.
    staging: PathBuf,
    devices: Vec<OpenVinoDevice>,
    precision: String,
}

impl OpenVino {
    /// Loads the library at `library`, creates the Core with its model cache
    /// in `cache_dir`, and lists the devices present.
    pub fn load(library: &Path, cache_dir: &Path, precision: &str) -> Result<OpenVino, String> {
        let fail = |detail: String| format!("loading OpenVINO from {}: {detail}", library.display());
        openvino_sys::library::load_from(library).map_err(fail)?;
        let mut core = Core::new().map_err(|e| fail(e.to_string()))?;
        std::fs::create_dir_all(cache_dir).map_err(|e| fail(format!("creating {}: {e}", cache_dir.display())))?;
        let devices = core
            .available_devices()
            .map_err(|e| fail(e.to_string()))?
            .iter()
            .map(|d| OpenVinoDevice {
                name: d.as_ref().to_owned(),
                full_name: core.get_property(d, &PropertyKey::DeviceFullName).unwrap_or_default(),
                properties: [
                    PropertyKey::DeviceCapabilities,
                    PropertyKey::OptimalNumberOfInferRequests,
                    PropertyKey::RangeForAsyncInferRequests,
                    PropertyKey::RangeForStreams,
                ]
                .into_iter()
                .filter_map(|key| Some((key.as_ref().to_owned(), core.get_property(d, &key).ok()?)))
                .collect(),
            })
            .collect::<Vec<_>>();
        for d in &devices {
            let device = DeviceType::from(d.name.as_str());
            core.set_property(&device, &RwPropertyKey::CacheDir, &cache_dir.to_string_lossy())
                .map_err(|e| fail(format!("setting the cache on {}: {e}", d.name)))?;
        }
        Ok(OpenVino {
            core: Mutex::new(core),
            compiled: Mutex::new(HashMap::new()),
            library: library.to_owned(),
            staging: cache_dir.join("staging"),
            devices,
            precision: precision.to_owned(),
        })
    }

    pub fn library(&self) -> &Path {
        &self.library
    }

    pub fn devices(&self) -> &[OpenVinoDevice] {
        &self.devices
    }

    pub fn has_device(&self, name: &str) -> bool {
        self.devices
            .iter()
            .any(|d| d.name == name || d.name.starts_with(&format!("{name}.")))
    }

    /// `model` in a file of its own under the staging directory, deleted
    /// when the handle drops (OpenVINO has read it by then; on Linux an
    /// open mapping of it would outlive the unlink anyway).
    fn stage(&self, model: &[u8], suffix: &str) -> Result<tempfile::NamedTempFile, String> {
        let fail = |e: std::io::Error| format!("staging the model in {}: {e}", self.staging.display());
        std::fs::create_dir_all(&self.staging).map_err(fail)?;
        let mut file = tempfile::Builder::new()
            .suffix(suffix)
            .tempfile_in(&self.staging)
            .map_err(fail)?;
        file.write_all(model).map_err(fail)?;
        file.flush().map_err(fail)?;
        Ok(file)
    }

    /// The inference precision hint every compile uses.
    pub fn precision(&self) -> &str {
        &self.precision
    }
}

/// OpenVINO on one device: the `Backend` the pipeline sees.
pub struct OpenVinoBackend {
    runtime: Arc<OpenVino>,
    device: &'static str,
}

impl OpenVinoBackend {
    pub fn new(runtime: Arc<OpenVino>, device: &'static str) -> OpenVinoBackend {
        OpenVinoBackend { runtime, device }
    }
}

impl Backend for OpenVinoBackend {
    fn name(&self) -> &'static str {
        "openvino"
    }

    fn describe(&self, options: &LoadOptions) -> String {
        format!(
            "openvino {} (performance hint {}, inference precision {})",
            self.device,
            hint(options),
            options.precision.as_deref().unwrap_or(&self.runtime.precision)
        )
    }

    /// OpenVINO's ONNX frontend covers the standard domain, and an IR's
    /// layers are OpenVINO's own; custom domains need extensions dsmild does
    /// not load.
    fn supports_operator(&self, domain: &str, _op: &str) -> bool {
        matches!(domain, "" | "ai.onnx" | "openvino")
    }

    fn load(&self, model: &[u8], options: &LoadOptions) -> Result<Box<dyn LoadedModel>, BackendError> {
        let load = |e: openvino::InferenceError| BackendError::Load(format!("OpenVINO {}: {e}", self.device));
        let key = format!(
            "{}/{}/{}/{}/{}",
            hex::encode(Sha256::digest(model)),
            self.device,
            hint(options),
            options.intra_op_threads,
            options.precision.as_deref().unwrap_or(&self.runtime.precision)
        );
        let mut compiled_models = self.runtime.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let shared = match compiled_models.get(&key).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let shared: Shared = Arc::new(Mutex::new(self.compile(model, options)?));
                compiled_models.retain(|_, w| w.strong_count() > 0);
                compiled_models.insert(key, Arc::downgrade(&shared));
                shared
            }
        };
        drop(compiled_models);
        let mut compiled = shared.lock().unwrap_or_else(|p| p.into_inner());
        let spec = |node: openvino::Node| -> Result<TensorSpec, BackendError> {
            let name = node.get_name().map_err(load)?;
            let ty = node.get_element_type().map_err(load)?;
            let dtype = from_ov(ty).ok_or_else(|| BackendError::UnsupportedTensor {
                name: name.clone(),
                detail: format!("element type {ty:?} is not served"),
            })?;
            let shape = node.get_partial_shape().map_err(load)?;
            let shape = shape
                .get_dimensions()
                .iter()
                .map(|d| if d.is_dynamic() { -1 } else { d.get_min() })
                .collect();
            Ok(TensorSpec { name, dtype, shape })
        };
        let inputs = (0..compiled.get_input_size().map_err(load)?)
            .map(|i| spec(compiled.get_input_by_index(i).map_err(load)?))
            .collect::<Result<_, _>>()?;
        let outputs = (0..compiled.get_output_size().map_err(load)?)
            .map(|i| spec(compiled.get_output_by_index(i).map_err(load)?))
            .collect::<Result<_, _>>()?;
        let request = compiled.create_infer_request().map_err(load)?;
        // ov::loaded_from_cache: the plugin imported the blob a previous
        // compile exported instead of compiling again.
        let cached = compiled
            .get_property(&PropertyKey::Other("LOADED_FROM_CACHE".into()))
            .is_ok_and(|v| v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true"));
        drop(compiled);
        Ok(Box::new(OvModel {
            request,
            signature: Signature { inputs, outputs },
            cached,
            _compiled: shared,
        }))
    }
}

impl OpenVinoBackend {
    /// Reads and compiles `model` for this device (from the model cache
    /// when it holds this model already).
    fn compile(&self, model: &[u8], options: &LoadOptions) -> Result<CompiledModel, BackendError> {
        let load = |e: openvino::InferenceError| BackendError::Load(format!("OpenVINO {}: {e}", self.device));
        let device = DeviceType::from(self.device);
        // The Core is shared; reads and compiles are serialised on it.
        let mut core = self.runtime.core.lock().unwrap_or_else(|p| p.into_inner());
        let read = match crate::model::unpack_ir(model) {
            Some((xml, bin)) => {
                let mut weights =
                    openvino::Tensor::new(ElementType::U8, &Shape::new(&[bin.len() as i64]).map_err(load)?)
                        .map_err(load)?;
                weights.get_raw_data_mut().map_err(load)?.copy_from_slice(bin);
                core.read_model_from_buffer(xml, Some(&weights)).map_err(load)?
            }
            // OpenVINO's TFLite frontend reads files only (from memory it
            // answers "unable to read the model"), so the flatbuffer is
            // staged in the cache directory for the read and removed after.
            None if crate::model::is_tflite(model) => {
                let staged = self.runtime.stage(model, ".tflite").map_err(BackendError::Load)?;
                core.read_model_from_file(&staged.path().to_string_lossy(), "")
                    .map_err(load)?
            }
            None => core.read_model_from_buffer(model, None).map_err(load)?,
        };
        let mut properties = vec![
            (RwPropertyKey::HintPerformanceMode, hint(options)),
            (
                RwPropertyKey::HintInferencePrecision,
                options.precision.as_deref().unwrap_or(&self.runtime.precision),
            ),
        ];
        let threads = options.intra_op_threads.to_string();
        if options.intra_op_threads > 0 && self.device == "CPU" {
            properties.push((RwPropertyKey::InferenceNumThreads, threads.as_str()));
        }
        core.set_properties(&device, properties).map_err(load)?;
        core.compile_model(&read, device).map_err(load)
    }
}

struct OvModel {
    request: InferRequest,
    signature: Signature,
    /// Its compiled model came from OpenVINO's model cache.
    cached: bool,
    // Declared last: dropped after the request that belongs to it.
    _compiled: Shared,
}

impl LoadedModel for OvModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn compiled_from(&self) -> Option<&'static str> {
        self.cached.then_some("OpenVINO's model cache")
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        super::owned_outputs(self, inputs)
    }

    fn run_visit(&mut self, inputs: &[Tensor], visit: &mut dyn FnMut(&TensorView)) -> Result<(), BackendError> {
        let run = |e: openvino::InferenceError| BackendError::Run(format!("OpenVINO: {e}"));
        for input in inputs {
            // Checked before OpenVINO allocates the tensor.
            if Tensor::byte_len(input.dtype, &input.shape) != Some(input.data.len()) {
                return Err(BackendError::Rejected(format!(
                    "input {} carries {} bytes, which shape {} of {} does not take",
                    input.name,
                    input.data.len(),
                    super::format_shape(&input.shape),
                    input.dtype
                )));
            }
            let shape = Shape::new(&input.shape).map_err(run)?;
            let mut tensor = openvino::Tensor::new(to_ov(input.dtype), &shape).map_err(run)?;
            let buffer = tensor.get_raw_data_mut().map_err(run)?;
            if buffer.len() != input.data.len() {
                return Err(BackendError::Run(format!(
                    "input {} carries {} bytes, its shape needs {}",
                    input.name,
                    input.data.len(),
                    buffer.len()
                )));
            }
            buffer.copy_from_slice(&input.data);
            self.request.set_tensor(&input.name, &tensor).map_err(run)?;
        }
        self.request.infer().map_err(run)?;
        for spec in &self.signature.outputs {
            let tensor = self.request.get_tensor(&spec.name).map_err(run)?;
            let shape: Vec<i64> = tensor.get_shape().map_err(run)?.get_dimensions().to_vec();
            let ty = tensor.get_element_type().map_err(run)?;
            let dtype = from_ov(ty).ok_or_else(|| BackendError::UnsupportedTensor {
                name: spec.name.clone(),
                detail: format!("element type {ty:?} is not served"),
            })?;
            visit(&TensorView {
                name: &spec.name,
                dtype,
                shape: &shape,
                data: tensor.get_raw_data().map_err(run)?,
            });
        }
        Ok(())
    }
}

fn hint(options: &LoadOptions) -> &'static str {
    if options.throughput { "THROUGHPUT" } else { "LATENCY" }
}

fn from_ov(ty: ElementType) -> Option<DataType> {
    Some(match ty {
        ElementType::Boolean => DataType::Bool,
        ElementType::U8 => DataType::U8,
        ElementType::U16 => DataType::U16,
        ElementType::U32 => DataType::U32,
        ElementType::U64 => DataType::U64,
        ElementType::I8 => DataType::I8,
        ElementType::I16 => DataType::I16,
        ElementType::I32 => DataType::I32,
        ElementType::I64 => DataType::I64,
        ElementType::F16 => DataType::F16,
        ElementType::Bf16 => DataType::BF16,
        ElementType::F32 => DataType::F32,
        ElementType::F64 => DataType::F64,
        _ => return None,
    })
}

fn to_ov(dtype: DataType) -> ElementType {
    match dtype {
        DataType::Bool => ElementType::Boolean,
        DataType::U8 => ElementType::U8,
        DataType::U16 => ElementType::U16,
        DataType::U32 => ElementType::U32,
        DataType::U64 => ElementType::U64,
        DataType::I8 => ElementType::I8,
        DataType::I16 => ElementType::I16,
        DataType::I32 => ElementType::I32,
        DataType::I64 => ElementType::I64,
        DataType::F16 => ElementType::F16,
        DataType::BF16 => ElementType::Bf16,
        DataType::F32 => ElementType::F32,
        DataType::F64 => ElementType::F64,
    }
}
