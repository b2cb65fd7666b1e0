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
}

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
            allow_fp32: self.allow_fp32,
            backend,
            performance_hint,
            workers: (self.workers > 0).then_some(self.workers),
            precision,
            max_batch: (self.max_batch > 0).then_some(self.max_batch),
            signature: (!self.signature.is_empty()).then_some(self.signature),
        })
    }
}

#[cfg(test)]
mod tests {
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
