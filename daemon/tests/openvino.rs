//! OpenVINO's CPU plugin against ONNX Runtime on the same FP32 and INT8
//! (QDQ) models, and OpenVINO's compiled-model cache. Real libraries, both
//! from scripts/fetch-runtimes.sh.

mod common;

use std::sync::{Arc, OnceLock};

use common::*;
use dsmild::backend::{
    Backend, DataType, LoadOptions, OnnxRuntime, OpenVino, OpenVinoBackend, Tensor, locate_onnxruntime, locate_openvino,
};
use dsmild::compress::{self, ActivationType, Method, Options, Samples};

fn onnxruntime() -> &'static OnnxRuntime {
    static RUNTIME: OnceLock<OnnxRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| OnnxRuntime::load(&locate_onnxruntime(None).unwrap()).unwrap())
}

fn openvino(cache: &std::path::Path) -> Arc<OpenVino> {
    Arc::new(OpenVino::load(&locate_openvino(None).unwrap(), cache, "f32").unwrap())
}

fn floats(t: &Tensor) -> Vec<f32> {
    assert_eq!(t.dtype, DataType::F32);
    t.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Each sample's probabilities from `backend`.
fn probabilities(backend: &dyn Backend, model: &[u8], samples: &Samples) -> Vec<Vec<f32>> {
    let mut loaded = backend.load(model, &LoadOptions::default()).unwrap();
    (0..samples.len())
        .map(|i| {
            let out = loaded.run(&samples.sample(i)).unwrap();
            floats(out.iter().find(|t| t.name == "probabilities").unwrap())
        })
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap()
}

#[test]
fn fp32_and_int8_agree_between_onnxruntime_and_the_openvino_cpu_plugin() {
    let cache = tempfile::tempdir().unwrap();
    let ov = openvino(cache.path());
    assert!(ov.has_device("CPU"), "{:?}", ov.devices());
    assert!(!ov.devices()[0].full_name.is_empty(), "devices carry their full names");
    let cpu = OpenVinoBackend::new(Arc::clone(&ov), "CPU");

    let fp32 = std::fs::read(SAMPLE_MODEL).unwrap();
    let ort = onnxruntime();
    let signature = ort.load(&fp32, &LoadOptions::default()).unwrap().signature().clone();
    let ov_signature = cpu.load(&fp32, &LoadOptions::default()).unwrap().signature().clone();
    assert_eq!(ov_signature.inputs, signature.inputs, "same input signature");
    let samples = Samples::read(std::path::Path::new(SAMPLE_TEST_SET), &signature, usize::MAX).unwrap();

    let fp32_ort = probabilities(ort, &fp32, &samples);
    let fp32_ov = probabilities(&cpu, &fp32, &samples);
    assert!(
        max_diff(&fp32_ort, &fp32_ov) < 1e-4,
        "FP32: {}",
        max_diff(&fp32_ort, &fp32_ov)
    );

    let options = Options {
        method: Method::MinMax,
        activations: ActivationType::U8Asymmetric,
        max_samples: 1000,
        gate: dsmild::compress::gate::GateSpec {
            metric: None,
            thresholds: dsmild::compress::gate::Thresholds {
                retention: 0.99,
                position: 0.9,
                sequence: 0.9,
                cosine: 0.99,
                snr_db: 20.0,
                iou: 0.9,
            },
        },
        fallback_evaluations: 1,
        state: Vec::new(),
    };
    let int8 = compress::quantize_static(ort, &fp32, &samples, Some(&samples), &options)
        .unwrap()
        .model;
    let int8_ort = probabilities(ort, &int8, &samples);
    let int8_ov = probabilities(&cpu, &int8, &samples);
    assert!(
        max_diff(&int8_ov, &fp32_ov) < 0.1,
        "OpenVINO INT8 vs FP32: {}",
        max_diff(&int8_ov, &fp32_ov)
    );
    assert!(
        max_diff(&int8_ov, &int8_ort) < 0.05,
        "INT8 on both: {}",
        max_diff(&int8_ov, &int8_ort)
    );
    let agree = int8_ov
        .iter()
        .zip(&fp32_ov)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    assert!(
        agree * 100 >= samples.len() * 98,
        "top-1 agreement {agree}/{}",
        samples.len()
    );
}

#[test]
fn compiled_models_are_cached_and_a_corrupt_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let ov = openvino(cache.path());
    let cpu = OpenVinoBackend::new(Arc::clone(&ov), "CPU");
    let model = std::fs::read(SAMPLE_MODEL).unwrap();
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "blob"))
            .collect()
    };
    let signature = cpu.load(&model, &LoadOptions::default()).unwrap().signature().clone();
    let written = entries();
    assert_eq!(written.len(), 1, "one compiled blob for one model on one device");

    let samples = Samples::read(std::path::Path::new(SAMPLE_TEST_SET), &signature, 20).unwrap();
    let expected = probabilities(&cpu, &model, &samples);
    assert_eq!(entries(), written, "the second compile reused the entry");

    std::fs::write(&written[0], b"not a compiled model").unwrap();
    let after = probabilities(&cpu, &model, &samples);
    assert_eq!(after, expected, "a corrupt entry is recompiled, not served");
}
