//! How a deployment runs: the runtime, the compute target, OpenVINO's
//! precision and performance hint, and how a model is quantized.

use crate::spelled;

/// The runtimes dsmild serves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    OnnxRuntime,
    OpenVino,
}

spelled!(BackendKind, "backend", "onnxruntime or openvino", {
    OnnxRuntime => "onnxruntime",
    OpenVino => "openvino",
});

/// Where a device's models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Npu,
    Gpu,
    Cpu,
}

spelled!(Target, "target", "npu, gpu or cpu", {
    Npu => "npu",
    Gpu => "gpu",
    Cpu => "cpu",
});

/// OpenVINO's inference precision hint for a deployment. `Default` defers
/// to the daemon's `runtimes.openvino_inference_precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Default,
    F32,
    Bf16,
    F16,
}

spelled!(Precision, "inference precision", "f32, bf16 or f16", {
    Default => "",
    F32 => "f32",
    Bf16 => "bf16",
    F16 => "f16",
});

impl Precision {
    /// The hint to compile with, when the deployment sets one.
    pub fn hint(self) -> Option<&'static str> {
        (self != Precision::Default).then(|| self.as_str())
    }
}

/// OpenVINO's performance hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PerformanceHint {
    #[default]
    Latency,
    Throughput,
}

spelled!(PerformanceHint, "performance hint", "latency or throughput", {
    Latency => "latency",
    Throughput => "throughput",
});

/// How activation ranges are chosen: from calibration samples (static QDQ),
/// or by the runtime for each input (dynamic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    MinMax,
    /// Keep this percentage of magnitudes, e.g. 99.999.
    Percentile(f64),
    Entropy,
    /// Weight-only int8 MatMul; activations quantized at run time.
    Dynamic,
}

/// A method as a request names it; the percentile kept comes from the
/// configuration when the method is resolved ([`Method::from_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodName {
    MinMax,
    Percentile,
    Entropy,
    Dynamic,
}

spelled!(MethodName, "method", "minmax, percentile, entropy or dynamic", {
    MinMax => "minmax",
    Percentile => "percentile",
    Entropy => "entropy",
    Dynamic => "dynamic",
});

impl Method {
    /// `percentile` is what "percentile" keeps (the config's value).
    pub fn from_name(name: MethodName, percentile: f64) -> Method {
        match name {
            MethodName::MinMax => Method::MinMax,
            MethodName::Percentile => Method::Percentile(percentile),
            MethodName::Entropy => Method::Entropy,
            MethodName::Dynamic => Method::Dynamic,
        }
    }

    pub fn parse(name: &str, percentile: f64) -> Result<Method, crate::Unknown> {
        Ok(Method::from_name(name.parse()?, percentile))
    }

    pub fn name(self) -> String {
        match self {
            Method::MinMax => "minmax".into(),
            Method::Percentile(p) => format!("percentile({p})"),
            Method::Entropy => "entropy".into(),
            Method::Dynamic => "dynamic".into(),
        }
    }

    /// Whether the method needs calibration samples.
    pub fn is_static(self) -> bool {
        self != Method::Dynamic
    }
}

/// How activations are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationType {
    /// uint8, zero point chosen so that the range (widened to hold 0) maps
    /// onto 0..=255.
    U8Asymmetric,
    /// int8, zero point 0, range ±max|x| onto -127..=127.
    I8Symmetric,
}

spelled!(ActivationType, "activations", "uint8 or int8", {
    U8Asymmetric => "uint8",
    I8Symmetric => "int8",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_unknowns_say_what_is_expected() {
        for b in BackendKind::ALL {
            assert_eq!(b.as_str().parse::<BackendKind>(), Ok(*b));
        }
        for p in Precision::ALL {
            assert_eq!(p.as_str().parse::<Precision>(), Ok(*p));
        }
        let err = "cuda".parse::<BackendKind>().unwrap_err();
        assert_eq!(err.to_string(), "backend \"cuda\": expected onnxruntime or openvino");
        assert_eq!(Precision::Default.hint(), None);
        assert_eq!(Precision::Bf16.hint(), Some("bf16"));
        assert!(Method::parse("entropy", 99.9).unwrap().is_static());
        assert!(!Method::parse("dynamic", 99.9).unwrap().is_static());
        assert_eq!(
            Method::parse("kl", 99.9).unwrap_err().to_string(),
            "method \"kl\": expected minmax, percentile, entropy or dynamic"
        );
    }
}

/// What the accuracy gate measures, FP32 against INT8. Chosen per output by
/// its kind unless the operator names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateMetric {
    /// Top-1 accuracy against labels (retention = int8 / fp32).
    Accuracy,
    /// Top-1 agreement of a classifier's rows.
    Agreement,
    /// Argmax agreement at every position of a sequence (CTC, tokens).
    Position,
    /// Whole sequences decoded greedily as CTC (repeats merged, blanks
    /// dropped) that equal FP32's: what an OCR line or a transcript is.
    Sequence,
    /// Cosine similarity of each sample's whole output (maps, boxes,
    /// embeddings, audio).
    Cosine,
    /// Signal-to-quantization-noise ratio in dB over all samples.
    Snr,
    /// IoU of the masks thresholded at 0.5 (probability maps).
    Iou,
}

spelled!(GateMetric, "gate metric", "accuracy, agreement, position, sequence, cosine, snr or iou", {
    Accuracy => "accuracy",
    Agreement => "agreement",
    Position => "position",
    Sequence => "sequence",
    Cosine => "cosine",
    Snr => "snr",
    Iou => "iou",
});

/// Each gate metric's pass mark (dsmild's `[quantization]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateThresholds {
    /// Accuracy retention (int8 / fp32) and classifier agreement.
    pub retention: f64,
    pub position: f64,
    /// Share of decoded sequences identical to FP32's.
    pub sequence: f64,
    pub cosine: f64,
    pub snr_db: f64,
    pub iou: f64,
}

impl GateThresholds {
    pub fn of(&self, metric: GateMetric) -> f64 {
        match metric {
            GateMetric::Accuracy | GateMetric::Agreement => self.retention,
            GateMetric::Position => self.position,
            GateMetric::Sequence => self.sequence,
            GateMetric::Cosine => self.cosine,
            GateMetric::Snr => self.snr_db,
            GateMetric::Iou => self.iou,
        }
    }
}
