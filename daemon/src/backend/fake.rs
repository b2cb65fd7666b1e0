//! A backend with no runtime behind it, for tests: what the deploy stages,
//! the pool, admission and the supervisor need from a runtime, without
//! loading one. A fake model's outputs are a pure function of its signature
//! and its inputs; faults (a load that fails, runs that fail, panic, answer
//! NaN or take long) are switched from the test, and apply to models already
//! loaded as well, so a serving deployment can be made to go bad.
//!
//! The daemon never constructs one: it is public only for the integration
//! tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsmil_proto::onnx::tensor_proto::DataType as OnnxType;
use dsmil_proto::onnx::{ModelProto, ValueInfoProto, tensor_shape_proto, type_proto};
use prost::Message;

use super::{Backend, BackendError, DataType, LoadOptions, LoadedModel, Signature, Tensor, TensorSpec};

/// What goes wrong. The default: nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Every load fails with this message.
    pub load: Option<String>,
    /// Every run fails with this message.
    pub run: Option<String>,
    /// Every run panics (the pool must turn that into the request's error).
    pub panic: bool,
    /// Floating-point outputs are all NaN.
    pub nan: bool,
    /// Each run takes at least this long (a slow device, a stuck kernel).
    pub delay: Duration,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<Faults>,
    loads: AtomicUsize,
    runs: AtomicUsize,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Clones share their faults and counters: a test keeps one and hands the
/// other out as `Arc<dyn Backend>`.
#[derive(Clone, Default)]
pub struct FakeBackend {
    /// None: read from each model's ONNX graph.
    signature: Option<Signature>,
    shared: Arc<Shared>,
}

impl FakeBackend {
    /// Loads ONNX models, each with the signature its graph declares.
    pub fn new() -> FakeBackend {
        FakeBackend::default()
    }

    /// Loads any bytes as a model with `signature`.
    pub fn with_signature(signature: Signature) -> FakeBackend {
        FakeBackend {
            signature: Some(signature),
            shared: Arc::default(),
        }
    }

    /// Replaces the faults, for later loads and for the models already loaded.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Successful loads so far.
    pub fn loads(&self) -> usize {
        self.shared.loads.load(Ordering::SeqCst)
    }

    /// Runs attempted so far, failed ones included.
    pub fn runs(&self) -> usize {
        self.shared.runs.load(Ordering::SeqCst)
    }

    /// A loaded model, boxed as the pool takes it.
    pub fn model(&self, signature: Signature) -> Box<dyn LoadedModel> {
        Box::new(FakeModel {
            signature,
            shared: Arc::clone(&self.shared),
        })
    }
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn supports_operator(&self, domain: &str, _op: &str) -> bool {
        matches!(domain, "" | "ai.onnx" | "ai.onnx.ml")
    }

    fn load(&self, model: &[u8], _options: &LoadOptions) -> Result<Box<dyn LoadedModel>, BackendError> {
        if let Some(why) = self.shared.faults().load {
            return Err(BackendError::Load(why));
        }
        let signature = match &self.signature {
            Some(s) => s.clone(),
            None => onnx_signature(model)?,
        };
        self.shared.loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.model(signature))
    }
}

struct FakeModel {
    signature: Signature,
    shared: Arc<Shared>,
}

impl LoadedModel for FakeModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        self.shared.runs.fetch_add(1, Ordering::SeqCst);
        let faults = self.shared.faults();
        if !faults.delay.is_zero() {
            std::thread::sleep(faults.delay);
        }
        if faults.panic {
            panic!("the fake runtime panicked, as the test asked");
        }
        if let Some(why) = faults.run {
            return Err(BackendError::Run(why));
        }
        if inputs.len() != self.signature.inputs.len() {
            return Err(BackendError::Rejected(format!(
                "{} input(s) given, {} declared",
                inputs.len(),
                self.signature.inputs.len()
            )));
        }
        let mut outputs = answer(&self.signature, inputs);
        if faults.nan {
            outputs.iter_mut().for_each(poison);
        }
        Ok(outputs)
    }
}

/// What a healthy fake model answers to `inputs`: every declared output,
/// its leading dimension the first input's when the signature is batched
/// and its other dynamic dimensions 1; element `i` is `(i + s) % 7`, as
/// quarters for floating-point types, where `s` is the inputs' byte sum
/// modulo 7 (so equal inputs give equal outputs and most different ones do
/// not).
pub fn answer(signature: &Signature, inputs: &[Tensor]) -> Vec<Tensor> {
    let batch = match signature.is_batched() {
        true => inputs.first().and_then(|t| t.shape.first()).copied().unwrap_or(1),
        false => 1,
    };
    let seed = inputs
        .iter()
        .flat_map(|t| &t.data)
        .fold(0usize, |sum, &b| (sum + usize::from(b)) % 7);
    signature
        .outputs
        .iter()
        .map(|spec| {
            let shape: Vec<i64> = spec
                .shape
                .iter()
                .enumerate()
                .map(|(axis, &d)| match (d < 0, axis) {
                    (false, _) => d,
                    (true, 0) => batch,
                    (true, _) => 1,
                })
                .collect();
            let count = Tensor::element_count(&shape).unwrap_or(0);
            let mut data = Vec::with_capacity(count * spec.dtype.byte_size());
            for i in 0..count {
                encode(spec.dtype, ((i + seed) % 7) as f64, &mut data);
            }
            Tensor {
                name: spec.name.clone(),
                dtype: spec.dtype,
                shape,
                data: data.into(),
            }
        })
        .collect()
}

/// Floating-point values are quarters of `step`; integers are `step`.
fn encode(dtype: DataType, step: f64, out: &mut Vec<u8>) {
    let v = step * 0.25;
    let n = step as u64;
    match dtype {
        DataType::Bool => out.push((n % 2) as u8),
        DataType::U8 | DataType::I8 => out.push(n as u8),
        DataType::U16 | DataType::I16 => out.extend_from_slice(&(n as u16).to_le_bytes()),
        DataType::U32 | DataType::I32 => out.extend_from_slice(&(n as u32).to_le_bytes()),
        DataType::U64 | DataType::I64 => out.extend_from_slice(&n.to_le_bytes()),
        DataType::F16 => out.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
        DataType::BF16 => out.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
        DataType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        DataType::F64 => out.extend_from_slice(&v.to_le_bytes()),
    }
}

/// NaN in every element of a floating-point tensor; other types have none.
fn poison(tensor: &mut Tensor) {
    let nan: Vec<u8> = match tensor.dtype {
        DataType::F16 => half::f16::NAN.to_le_bytes().to_vec(),
        DataType::BF16 => half::bf16::NAN.to_le_bytes().to_vec(),
        DataType::F32 => f32::NAN.to_le_bytes().to_vec(),
        DataType::F64 => f64::NAN.to_le_bytes().to_vec(),
        _ => return,
    };
    let mut data = tensor.data.to_vec();
    for element in data.chunks_exact_mut(nan.len()) {
        element.copy_from_slice(&nan);
    }
    tensor.data = data.into();
}

/// The signature an ONNX graph declares: its inputs that are not
/// initializers, and its outputs; an unnamed dimension is dynamic (-1).
fn onnx_signature(bytes: &[u8]) -> Result<Signature, BackendError> {
    let model = ModelProto::decode(bytes).map_err(|e| BackendError::Load(format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| BackendError::Load("the model has no graph".into()))?;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name()))
        .map(spec)
        .collect::<Result<_, _>>()?;
    let outputs = graph.output.iter().map(spec).collect::<Result<_, _>>()?;
    Ok(Signature { inputs, outputs })
}

fn spec(value: &ValueInfoProto) -> Result<TensorSpec, BackendError> {
    let unsupported = |detail: String| BackendError::UnsupportedTensor {
        name: value.name().to_owned(),
        detail,
    };
    let Some(type_proto::Value::TensorType(t)) = value.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(unsupported("not a tensor".into()));
    };
    let elem = t.elem_type.unwrap_or(0);
    let dtype = match OnnxType::try_from(elem) {
        Ok(OnnxType::Bool) => DataType::Bool,
        Ok(OnnxType::Uint8) => DataType::U8,
        Ok(OnnxType::Uint16) => DataType::U16,
        Ok(OnnxType::Uint32) => DataType::U32,
        Ok(OnnxType::Uint64) => DataType::U64,
        Ok(OnnxType::Int8) => DataType::I8,
        Ok(OnnxType::Int16) => DataType::I16,
        Ok(OnnxType::Int32) => DataType::I32,
        Ok(OnnxType::Int64) => DataType::I64,
        Ok(OnnxType::Float16) => DataType::F16,
        Ok(OnnxType::Bfloat16) => DataType::BF16,
        Ok(OnnxType::Float) => DataType::F32,
        Ok(OnnxType::Double) => DataType::F64,
        _ => return Err(unsupported(format!("element type {elem} is not served"))),
    };
    let shape = t.shape.as_ref().map_or_else(Vec::new, |s| {
        s.dim
            .iter()
            .map(|d| match d.value {
                Some(tensor_shape_proto::dimension::Value::DimValue(v)) if v >= 0 => v,
                _ => -1,
            })
            .collect()
    });
    Ok(TensorSpec {
        name: value.name().to_owned(),
        dtype,
        shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Pool, PoolError, f32s};

    const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/model.onnx");

    fn batched() -> Signature {
        let spec = |name: &str, dtype, shape: &[i64]| TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        };
        Signature {
            inputs: vec![spec("x", DataType::F32, &[-1, 4])],
            outputs: vec![spec("y", DataType::F32, &[-1, 3]), spec("label", DataType::I64, &[-1])],
        }
    }

    fn input(rows: i64, value: f32) -> Tensor {
        Tensor {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![rows, 4],
            data: (0..rows * 4).flat_map(|_| value.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn the_signature_comes_from_the_onnx_graph() {
        let bytes = std::fs::read(SAMPLE).unwrap();
        let model = FakeBackend::new().load(&bytes, &LoadOptions::default()).unwrap();
        let sig = model.signature();
        let names = |specs: &[TensorSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&sig.inputs), ["pixels"]);
        assert_eq!(sig.inputs[0].dtype, DataType::F32);
        assert_eq!(sig.inputs[0].shape, [-1, 64]);
        assert_eq!(names(&sig.outputs), ["probabilities", "label"]);
        assert!(sig.is_batched());
        assert!(matches!(
            FakeBackend::new().load(b"not onnx", &LoadOptions::default()),
            Err(BackendError::Load(_))
        ));
    }

    #[test]
    fn outputs_follow_the_batch_and_depend_only_on_the_inputs() {
        let backend = FakeBackend::with_signature(batched());
        let mut model = backend.load(b"", &LoadOptions::default()).unwrap();
        let first = model.run(&[input(3, 1.0)]).unwrap();
        assert_eq!(first[0].shape, [3, 3]);
        assert_eq!(first[1].shape, [3]);
        assert_eq!(first[1].dtype, DataType::I64);
        assert!(first.iter().all(Tensor::is_finite));
        assert_eq!(model.run(&[input(3, 1.0)]).unwrap(), first);
        assert_ne!(model.run(&[input(3, 2.0)]).unwrap()[0].data, first[0].data);
        assert_eq!(answer(&batched(), &[input(3, 1.0)]), first);
        assert_eq!((backend.loads(), backend.runs()), (1, 3));
        assert!(matches!(model.run(&[]), Err(BackendError::Rejected(_))));
    }

    #[test]
    fn faults_apply_to_loaded_models_until_cleared() {
        let backend = FakeBackend::with_signature(batched());
        let mut model = backend.load(b"", &LoadOptions::default()).unwrap();

        backend.set_faults(Faults {
            nan: true,
            ..Faults::default()
        });
        let outputs = model.run(&[input(1, 1.0)]).unwrap();
        assert!(f32s(&outputs[0].data).all(f32::is_nan));
        assert!(!outputs[0].is_finite());
        assert!(outputs[1].is_finite(), "integers have no NaN");

        backend.set_faults(Faults {
            run: Some("device lost".into()),
            ..Faults::default()
        });
        assert!(matches!(model.run(&[input(1, 1.0)]), Err(BackendError::Run(m)) if m == "device lost"));

        backend.set_faults(Faults {
            load: Some("no memory".into()),
            ..Faults::default()
        });
        assert!(matches!(
            backend.load(b"", &LoadOptions::default()),
            Err(BackendError::Load(m)) if m == "no memory"
        ));
        assert_eq!(backend.loads(), 1, "a failed load is not counted");

        backend.set_faults(Faults::default());
        assert!(model.run(&[input(1, 1.0)]).unwrap()[0].is_finite());
    }

    #[test]
    fn a_slow_run_takes_at_least_its_delay() {
        let backend = FakeBackend::with_signature(batched());
        let mut model = backend.load(b"", &LoadOptions::default()).unwrap();
        let delay = Duration::from_millis(30);
        backend.set_faults(Faults {
            delay,
            ..Faults::default()
        });
        let started = std::time::Instant::now();
        model.run(&[input(1, 1.0)]).unwrap();
        assert!(started.elapsed() >= delay);
    }

    #[test]
    fn a_panicking_run_becomes_that_requests_error_in_the_pool() {
        let backend = FakeBackend::with_signature(batched());
        let pool = Pool::start("fake-test", vec![backend.model(batched())], 4, None, &[]).unwrap();
        backend.set_faults(Faults {
            panic: true,
            ..Faults::default()
        });
        let err = pool
            .run_blocking(vec![input(1, 1.0)], Duration::from_secs(30))
            .unwrap_err();
        assert!(matches!(err, PoolError::Backend(BackendError::Panicked(_))), "{err}");
        backend.set_faults(Faults::default());
        let ok = pool.run_blocking(vec![input(2, 1.0)], Duration::from_secs(30)).unwrap();
        assert_eq!(ok.outputs, answer(&batched(), &[input(2, 1.0)]), "the worker lives on");
        pool.close_and_join();
    }
}
