//! What an operator asks a deploy for: [`DeploySpec`] as an edge receives
//! it (the wire's or a manifest's strings), and [`DeployRequest`], the same
//! parsed and checked once, which is all the deployer accepts.
//!
//! Parsing lives here so that both edges (`serve::convert` and
//! `deploy::manifests`) refuse the same things with the same words. Nothing
//! here reads the configuration: defaults that come from it ("" method,
//! 0 workers, 0 max batch) stay `None` until a plan resolves them against
//! one config snapshot.

use dsmil_kinds::{ActivationType, BackendKind, Format, MethodName, PerformanceHint, Precision};

use super::DeployError;

/// A deploy as an edge received it: every option a string or a number
/// where "" and 0 mean "the daemon's default".
#[derive(Debug, Clone, Default)]
pub struct DeploySpec {
    pub name: String,
    pub device: Option<u32>,
    pub layer: Option<u32>,
    pub format: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub classification: Option<u32>,
    pub note: String,
    /// Declared attachments: (size, sha256).
    pub weights: Option<(u64, String)>,
    pub calibration: Option<(u64, String)>,
    pub validation: Option<(u64, String)>,
    pub method: String,
    pub activations: String,
    pub allow_fp32: bool,
    pub backend: String,
    pub performance_hint: String,
    pub workers: u32,
    pub precision: String,
    pub max_batch: u64,
    /// A detached signature (64 raw bytes); empty: unsigned.
    pub signature: Vec<u8>,
    pub gate_metric: String,
    /// "NAME=D0,D1,..." each.
    pub input_shapes: Vec<String>,
    /// The caller's names for the data files (display only).
    pub calibration_file: String,
    pub validation_file: String,
    /// Threads inside the runtime per instance; 0: the config's.
    pub intra_op_threads: u32,
    /// "on", "off" or "" (the config's).
    pub dynamic_batching: String,
    pub max_queue_delay_us: Option<u64>,
    pub preferred_batch_sizes: Vec<u64>,
    /// "INPUT=OUTPUT" each: recurrent state carried between calls.
    pub state: Vec<String>,
}

/// A deploy, parsed and checked: a valid name, known spellings, bounded
/// numbers. `None` means the configuration's default.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub name: String,
    pub device: Option<u32>,
    pub layer: Option<u32>,
    pub format: Format,
    pub size_bytes: u64,
    pub sha256: String,
    pub classification: Option<u32>,
    pub note: String,
    pub weights: Option<(u64, String)>,
    pub calibration: Option<(u64, String)>,
    pub validation: Option<(u64, String)>,
    pub method: Option<MethodName>,
    pub activations: Option<ActivationType>,
    /// The gate's metric; None: chosen per output.
    pub gate_metric: Option<dsmil_kinds::GateMetric>,
    /// Shapes for synthetic runs, per input (bounded: see `input_shape`).
    pub input_shapes: Vec<(String, Vec<i64>)>,
    /// Recurrent state links for calibration and the gate.
    pub state: Vec<crate::compress::StateLink>,
    /// How errors name the data files: "--calib data (calib.npz)".
    pub data_labels: (String, String),
    pub allow_fp32: bool,
    /// The runtime for a cpu device (npu and gpu are always OpenVINO's).
    pub backend: Option<BackendKind>,
    pub performance_hint: PerformanceHint,
    /// Workers (infer requests), 1..=64.
    pub workers: Option<u32>,
    pub precision: Precision,
    /// Largest batch of a batched model, 1..=MAX_BATCH_SIZE.
    pub max_batch: Option<u64>,
    /// A detached signature, checked once the layer is known
    /// (`deploy::signature`); `None`: unsigned.
    pub signature: Option<Vec<u8>>,
    /// Intra-op threads and dynamic batching, as asked (checked against
    /// the max batch once the plan knows it).
    pub serving: crate::store::ServingChoice,
}

use crate::config::MAX_INTRA_OP_THREADS;

/// Most workers (infer requests) one deployment may run.
pub const MAX_WORKERS: u32 = 64;

/// A model name: what inference clients address, metric labels and the
/// journal's keys carry. ASCII letters, digits, `.`, `_`, `-`; 1 to 64
/// characters, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), DeployError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(DeployError::InvalidName(name.to_owned()))
    }
}

/// "" is the default; anything else must be one of the kind's spellings.
fn optional<T: std::str::FromStr>(value: &str, err: impl FnOnce() -> DeployError) -> Result<Option<T>, DeployError> {
    match value {
        "" => Ok(None),
        value => value.parse().map(Some).map_err(|_| err()),
    }
}

impl DeploySpec {
    /// Parses and checks every field; the first problem is the error.
    pub fn parse(self) -> Result<DeployRequest, DeployError> {
        validate_name(&self.name)?;
        let format = match self.format.as_str() {
            "" => Format::Onnx,
            name => name
                .parse()
                .map_err(|_| crate::model::ModelError::UnsupportedFormat(name.to_owned()))?,
        };
        let invalid = |e: dsmil_kinds::Unknown| DeployError::InvalidOption(e.to_string());
        let method = match self.method.as_str() {
            "" => None,
            name => Some(name.parse::<MethodName>().map_err(invalid)?),
        };
        let activations = match self.activations.as_str() {
            "" => None,
            name => Some(name.parse::<ActivationType>().map_err(invalid)?),
        };
        let gate_metric = match self.gate_metric.as_str() {
            "" => None,
            name => Some(name.parse::<dsmil_kinds::GateMetric>().map_err(invalid)?),
        };
        if self.input_shapes.len() > MAX_SHAPED_INPUTS {
            return Err(DeployError::InvalidOption(format!(
                "{} --input-shape values; at most {MAX_SHAPED_INPUTS}",
                self.input_shapes.len()
            )));
        }
        let input_shapes = self
            .input_shapes
            .iter()
            .map(|s| input_shape(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DeployError::InvalidOption)?;
        if self.state.len() > crate::compress::data::MAX_STATE_LINKS {
            return Err(DeployError::InvalidOption(format!(
                "{} --state links; at most {}",
                self.state.len(),
                crate::compress::data::MAX_STATE_LINKS
            )));
        }
        let state = self
            .state
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<_>, _>>()
            .map_err(DeployError::InvalidOption)?;
        let backend = optional(&self.backend, || DeployError::UnknownBackend(self.backend.clone()))?;
        let performance_hint = optional(&self.performance_hint, || {
            DeployError::UnknownHint(self.performance_hint.clone())
        })?
        .unwrap_or_default();
        let precision = optional(&self.precision, || {
            DeployError::UnknownPrecision(self.precision.clone())
        })?
        .unwrap_or_default();
        if self.workers > MAX_WORKERS {
            return Err(DeployError::TooManyWorkers(self.workers));
        }
        if self.max_batch > crate::config::MAX_BATCH_SIZE {
            return Err(DeployError::MaxBatch(self.max_batch));
        }
        let serving = self.serving_choice()?;
        Ok(DeployRequest {
            name: self.name,
            device: self.device,
            layer: self.layer,
            format,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            classification: self.classification,
            note: self.note,
            weights: self.weights,
            calibration: self.calibration,
            validation: self.validation,
            method,
            activations,
            gate_metric,
            input_shapes,
            state,
            data_labels: (
                data_label("--calib", &self.calibration_file),
                data_label("--val", &self.validation_file),
            ),
            allow_fp32: self.allow_fp32,
            backend,
            performance_hint,
            workers: (self.workers > 0).then_some(self.workers),
            precision,
            max_batch: (self.max_batch > 0).then_some(self.max_batch),
            signature: (!self.signature.is_empty()).then_some(self.signature),
            serving,
        })
    }

    /// The serving options, bounded; preferred sizes are checked against
    /// the max batch here when the deploy sets one, else by the plan.
    fn serving_choice(&self) -> Result<crate::store::ServingChoice, DeployError> {
        let invalid = DeployError::InvalidOption;
        if self.intra_op_threads > MAX_INTRA_OP_THREADS {
            return Err(invalid(format!(
                "intra-op threads {}: at most {MAX_INTRA_OP_THREADS} (0 = serving.intra_op_threads)",
                self.intra_op_threads
            )));
        }
        let dynamic_batching = match self.dynamic_batching.as_str() {
            "" => None,
            "on" => Some(true),
            "off" => Some(false),
            other => return Err(invalid(format!("batching {other:?}: expected on or off"))),
        };
        if let Some(delay) = self
            .max_queue_delay_us
            .filter(|&d| d > crate::config::MAX_QUEUE_DELAY_US)
        {
            return Err(invalid(format!(
                "max queue delay {delay} µs: at most {} (1 s)",
                crate::config::MAX_QUEUE_DELAY_US
            )));
        }
        let max = match self.max_batch {
            0 => crate::config::MAX_BATCH_SIZE,
            n => n,
        };
        crate::config::check_preferred_batch_sizes(&self.preferred_batch_sizes, max)
            .map_err(|e| invalid(format!("preferred batch sizes: {e}")))?;
        Ok(crate::store::ServingChoice {
            intra_op_threads: (self.intra_op_threads > 0).then_some(self.intra_op_threads),
            dynamic_batching,
            max_queue_delay_us: self.max_queue_delay_us,
            preferred_batch_sizes: self.preferred_batch_sizes.clone(),
        })
    }
}

/// "--calib data (calib.npz)": the flag and the caller's own file name, at
/// most 200 characters of it (it is the caller's text).
fn data_label(flag: &str, name: &str) -> String {
    match name.chars().filter(|c| !c.is_control()).take(200).collect::<String>() {
        name if name.is_empty() => format!("{flag} data"),
        name => format!("{flag} data ({name})"),
    }
}

/// Inputs a deploy may give shapes for.
const MAX_SHAPED_INPUTS: usize = 64;
/// Elements one synthetic input may have: what a probe allocates.
const MAX_SYNTHETIC_ELEMENTS: i64 = 1 << 24;

/// "NAME=D0,D1,...": a rank up to 8 of positive dimensions whose product is
/// at most MAX_SYNTHETIC_ELEMENTS, checked before anything is allocated.
fn input_shape(text: &str) -> Result<(String, Vec<i64>), String> {
    let bad = |why: &str| format!("--input-shape {text:?}: {why} (expected NAME=D0,D1,..., e.g. images=1,3,320,320)");
    let (name, dims) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
    if name.is_empty() {
        return Err(bad("no input name"));
    }
    let dims: Vec<i64> = match dims {
        "" => Vec::new(),
        dims => dims
            .split(',')
            .map(|d| d.trim().parse::<i64>().ok().filter(|d| *d > 0))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("dimensions must be positive integers"))?,
    };
    if dims.len() > 8 {
        return Err(bad("more than 8 dimensions"));
    }
    let elements = dims.iter().try_fold(1i64, |acc, d| acc.checked_mul(*d));
    if elements.is_none_or(|n| n > MAX_SYNTHETIC_ELEMENTS) {
        return Err(bad(&format!("more than {MAX_SYNTHETIC_ELEMENTS} elements")));
    }
    Ok((name.to_owned(), dims))
}

#[cfg(test)]
mod tests {
    #[test]
    fn input_shapes_are_parsed_and_bounded_before_anything_is_allocated() {
        assert_eq!(
            super::input_shape("images=1,3,320,320"),
            Ok(("images".to_owned(), vec![1, 3, 320, 320]))
        );
        assert_eq!(super::input_shape("sr="), Ok(("sr".to_owned(), vec![])));
        for (bad, why) in [
            ("images", "no '='"),
            ("=1,2", "no input name"),
            ("x=1,0", "positive integers"),
            ("x=1,-3", "positive integers"),
            ("x=a", "positive integers"),
            ("x=1,1,1,1,1,1,1,1,1", "more than 8"),
            ("x=100000,100000,100000", "elements"),
            ("x=9223372036854775807,2", "elements"),
        ] {
            let err = super::input_shape(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    use super::*;

    fn spec() -> DeploySpec {
        DeploySpec {
            name: "digits".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_stay_unresolved_and_spellings_become_kinds() {
        let r = spec().parse().unwrap();
        assert_eq!(r.format, Format::Onnx);
        assert_eq!((r.method, r.activations, r.backend), (None, None, None));
        assert_eq!((r.workers, r.max_batch), (None, None));
        assert_eq!(r.performance_hint, PerformanceHint::Latency);
        assert_eq!(r.precision, Precision::Default);
        let r = DeploySpec {
            format: "tflite".into(),
            method: "entropy".into(),
            activations: "int8".into(),
            backend: "openvino".into(),
            performance_hint: "throughput".into(),
            precision: "bf16".into(),
            workers: 3,
            max_batch: 8,
            ..spec()
        }
        .parse()
        .unwrap();
        assert_eq!(r.format, Format::Tflite);
        assert_eq!(r.method, Some(MethodName::Entropy));
        assert_eq!(r.activations, Some(ActivationType::I8Symmetric));
        assert_eq!(r.backend, Some(BackendKind::OpenVino));
        assert_eq!(r.performance_hint, PerformanceHint::Throughput);
        assert_eq!(r.precision, Precision::Bf16);
        assert_eq!((r.workers, r.max_batch), (Some(3), Some(8)));
    }

    #[test]
    fn each_bad_field_is_refused_with_its_own_error() {
        let refused = |s: DeploySpec| s.parse().unwrap_err().to_string();
        assert!(
            refused(DeploySpec {
                name: "../x".into(),
                ..spec()
            })
            .contains("../x")
        );
        assert!(
            refused(DeploySpec {
                format: "pt".into(),
                ..spec()
            })
            .contains("\"pt\"")
        );
        assert!(
            refused(DeploySpec {
                method: "kl".into(),
                ..spec()
            })
            .contains("expected minmax")
        );
        assert!(
            refused(DeploySpec {
                activations: "u4".into(),
                ..spec()
            })
            .contains("expected uint8 or int8")
        );
        assert!(
            refused(DeploySpec {
                backend: "cuda".into(),
                ..spec()
            })
            .contains("expected onnxruntime or openvino")
        );
        assert!(
            refused(DeploySpec {
                performance_hint: "fast".into(),
                ..spec()
            })
            .contains("latency or throughput")
        );
        assert!(
            refused(DeploySpec {
                precision: "f8".into(),
                ..spec()
            })
            .contains("expected f32, bf16 or f16")
        );
        assert!(refused(DeploySpec { workers: 65, ..spec() }).contains("at most 64"));
        assert!(
            refused(DeploySpec {
                max_batch: u64::MAX,
                ..spec()
            })
            .contains("max batch")
        );
    }
}
