//! ONNX Runtime against OpenVINO's CPU plugin on one model, in this
//! process: OpenVINO's compile time with an empty model cache (cold) and
//! with the cache filled (warm, as after a restart or a redeploy), and the
//! one-sample latency of both runtimes. Run it through bench/openvino.sh.
//!
//!     backends MODEL.onnx [ROUNDS]
//!
//! Prints one JSON line: medians in ms.

use std::time::Instant;

use dsmild::backend::{
    Backend, LoadOptions, OnnxRuntime, OpenVino, OpenVinoBackend, Tensor, locate_onnxruntime, locate_openvino,
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: backends MODEL.onnx [ROUNDS]");
    };
    let rounds: usize = rest.first().map_or(Ok(5), |s| s.parse())?;
    let bytes = std::fs::read(file)?;
    let cache = tempfile::tempdir()?;
    let openvino = std::sync::Arc::new(
        OpenVino::load(&locate_openvino(None).map_err(anyhow::Error::msg)?, cache.path(), "f32")
            .map_err(anyhow::Error::msg)?,
    );
    let ov = OpenVinoBackend::new(openvino, "CPU");
    let options = LoadOptions::default();

    // Each compile drops its model first, so nothing is shared in memory:
    // a warm compile reads the blob the cold one wrote.
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for entry in std::fs::read_dir(cache.path())? {
            std::fs::remove_file(entry?.path())?;
        }
        let started = Instant::now();
        drop(ov.load(&bytes, &options)?);
        cold.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        drop(ov.load(&bytes, &options)?);
        warm.push(started.elapsed().as_secs_f64() * 1e3);
    }

    let ort = OnnxRuntime::load(&locate_onnxruntime(None)?)?;
    let mut models = [ort.load(&bytes, &options)?, ov.load(&bytes, &options)?];
    let inputs: Vec<Tensor> = models[0]
        .signature()
        .inputs
        .iter()
        .map(|spec| Tensor::synthetic(spec, spec.concrete_shape(1)))
        .collect();
    let runs = 200 / rounds.max(1) + 1;
    let mut p50 = [Vec::new(), Vec::new()];
    for model in &mut models {
        for _ in 0..20 {
            model.run(&inputs)?;
        }
    }
    // The runtimes take turns, round by round, so drift falls on both.
    for _ in 0..rounds {
        for (model, medians) in models.iter_mut().zip(&mut p50) {
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let started = Instant::now();
                model.run(&inputs)?;
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            medians.push(median(times));
        }
    }
    let [ort_p50, ov_p50] = p50.map(median);
    println!(
        "{{\"model\":{file:?},\"openvino_cold_compile_ms\":{:.1},\"openvino_warm_compile_ms\":{:.1},\
         \"onnxruntime_p50_ms\":{ort_p50:.4},\"openvino_p50_ms\":{ov_p50:.4}}}",
        median(cold),
        median(warm)
    );
    Ok(())
}
