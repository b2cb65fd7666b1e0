//! For the OpenVINO CPU plugin (always) and each accelerator (NPU, GPU; as
//! DSMIL_HW asks): deploy the sample FP32 and INT8 through dsmild, compare
//! with ONNX Runtime on the CPU, record the latency. Prints one line per
//! check: ok, SKIPPED (and why), or FAILED (and why).

use dsmil_hwtests::{Daemon, SAMPLE_MODEL, SAMPLE_TEST_SET, max_diff, requested};

/// Each check and where the default topology puts it: a layer-2 device is
/// npu, a layer-7 device gpu; the CPU plugin runs by --backend openvino on
/// a device whose accelerator is absent (the fallback is the CPU).
const CHECKS: [(&str, &str, &str); 3] = [
    ("cpu", "OpenVINO CPU plugin", "45"),
    ("npu", "NPU", "0"),
    ("gpu", "GPU", "48"),
];

fn main() {
    let requested = requested();
    let mut failed = 0;
    for (name, what, device) in CHECKS {
        if name != "cpu" && !requested.iter().any(|r| r == name) {
            println!("hardware {name}: SKIPPED: the {what} tests need DSMIL_HW={name} on a host with one");
            continue;
        }
        match check(name, device) {
            Ok(line) => println!("hardware {name}: ok: {line}"),
            Err(e) => {
                failed += 1;
                println!("hardware {name}: FAILED: {e:#}");
            }
        }
    }
    if let Some(unknown) = requested.iter().find(|r| !CHECKS.iter().any(|(n, _, _)| n == *r)) {
        failed += 1;
        println!("hardware: FAILED: DSMIL_HW names {unknown:?}; known: npu, gpu");
    }
    std::process::exit(i32::from(failed > 0));
}

fn check(name: &str, device: &str) -> anyhow::Result<String> {
    let daemon = Daemon::start()?;
    // OpenVINO loads on first use; listing the devices is one.
    daemon.ctl(&["devices"])?;
    let status = daemon.ctl(&["status"])?;
    let wanted = name.to_uppercase();
    let present = status["openvino_devices"].as_array().is_some_and(|d| {
        d.iter()
            .any(|d| d["name"].as_str().is_some_and(|n| n.starts_with(&wanted)))
    });
    if !present {
        anyhow::bail!(
            "OpenVINO reports no {wanted} device on this host (runtimes: {})",
            status["runtimes"]
        );
    }
    let int8 = ["--calib", SAMPLE_TEST_SET, "--val", SAMPLE_TEST_SET];
    let mut report = Vec::new();
    for (precision, extra) in [("fp32", &["--allow-fp32"][..]), ("int8", &int8[..])] {
        let reference = format!("ref-{precision}");
        let mut args = vec![
            "deploy",
            SAMPLE_MODEL,
            "--name",
            &reference,
            "--device",
            "46",
            "--backend",
            "onnxruntime",
        ];
        args.extend(extra);
        daemon.ctl(&args)?;
        let model = format!("{name}-{precision}");
        let mut args = vec![
            "deploy",
            SAMPLE_MODEL,
            "--name",
            &model,
            "--device",
            device,
            "--backend",
            "openvino",
        ];
        args.extend(extra);
        let deployed = daemon.ctl(&args)?;
        if deployed["effective_target"] != name || deployed["backend"] != "openvino" {
            anyhow::bail!(
                "{model} runs on {} with {} instead of {name} with openvino",
                deployed["effective_target"],
                deployed["backend"]
            );
        }
        let diff = max_diff(&daemon.probabilities(&model)?, &daemon.probabilities(&reference)?);
        // Integer kernels round differently from ONNX Runtime's, and
        // accelerators may compute in f16: looser bounds for both.
        let bound = match (name, precision) {
            ("cpu", "fp32") => 1e-3,
            (_, "fp32") => 2e-2,
            _ => 5e-2,
        };
        if diff > bound {
            anyhow::bail!("{model}: probabilities differ from ONNX Runtime's by {diff} (bound {bound})");
        }
        let p50 = daemon.p50_ms(&model, 200)?;
        let p50_ref = daemon.p50_ms(&reference, 200)?;
        report.push(format!(
            "{precision} max diff {diff:.2e}, p50 {p50:.3} ms (ONNX Runtime CPU {p50_ref:.3} ms)"
        ));
        // Frees both devices for the next precision.
        daemon.ctl(&["undeploy", &reference])?;
        daemon.ctl(&["undeploy", &model])?;
    }
    Ok(report.join("; "))
}
