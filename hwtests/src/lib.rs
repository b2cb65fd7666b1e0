//! Hardware tests: the sample model, FP32 and INT8, deployed through a real
//! dsmild onto each OpenVINO device, its outputs checked against the CPU's
//! (ONNX Runtime) and its latency recorded. `tests/hardware.rs` runs them.
//!
//! Opt-in but strict: `DSMIL_HW=npu,gpu` names the accelerators this host
//! must have; a named one that is missing fails. Unnamed ones are skipped
//! with a line saying so. The OpenVINO CPU plugin is checked always.
//!
//! The binaries come from `DSMIL_BIN_DIR`, else the workspace's
//! `target/debug` (scripts/test.sh builds them first).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const SAMPLE_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/model.onnx");
pub const SAMPLE_TEST_SET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/test.npz");

/// The accelerators `DSMIL_HW` asks for ("npu", "gpu").
pub fn requested() -> Vec<String> {
    std::env::var("DSMIL_HW")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("DSMIL_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --workspace --bins` first, or set DSMIL_BIN_DIR",
            path.display()
        );
    }
    Ok(path)
}

/// A dsmild on a temporary directory, ready (READY=1) when returned.
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start() -> anyhow::Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(Duration::from_millis(250)))?;
        let log = std::fs::File::create(dir.path().join("dsmild.log"))?;
        let child = Command::new(bin("dsmild")?)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--socket")
            .arg(dir.path().join("dsmild.sock"))
            .args(["--tcp", "127.0.0.1:0", "--anonymous-clearance", "9", "--metrics", ""])
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("DSMIL_CONFIG")
            .stderr(log)
            .spawn()?;
        let mut daemon = Daemon { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) if String::from_utf8_lossy(&buf[..n]).contains("READY=1") => return Ok(daemon),
                Ok(_) => {}
                Err(_) if daemon.child.try_wait()?.is_some() || Instant::now() > deadline => {
                    bail!("dsmild did not become ready; its log:\n{}", daemon.log());
                }
                Err(_) => {}
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dsmild.log")).unwrap_or_default()
    }

    /// `dsmilctl --json ARGS`, parsed; an error carries dsmilctl's message.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = Command::new(bin("dsmilctl")?)
            .arg("--socket")
            .arg(self.dir.path().join("dsmild.sock"))
            .arg("--json")
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("dsmilctl {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        serde_json::from_slice(&out.stdout).context("dsmilctl printed no JSON")
    }

    /// Each row's probabilities from the sample test set, through `model`.
    pub fn probabilities(&self, model: &str) -> anyhow::Result<Vec<f64>> {
        let out = self.ctl(&["infer", model, "--input", SAMPLE_TEST_SET])?;
        let data = out["outputs"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["name"] == "probabilities"))
            .and_then(|o| o["data"].as_array())
            .context("no probabilities in the answer")?;
        data.iter()
            .map(|v| v.as_f64().context("a probability that is not a number"))
            .collect()
    }

    /// One-row ModelInfer latency over gRPC (TCP), median of `n` calls, ms.
    pub fn p50_ms(&self, model: &str, n: usize) -> anyhow::Result<f64> {
        use dsmil_proto::inference as pb;
        let status = self.ctl(&["status"])?;
        let address = format!("http://{}", status["tcp_address"].as_str().unwrap_or_default());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let mut client = pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(address).await?;
            let request = pb::ModelInferRequest {
                model_name: model.into(),
                inputs: vec![pb::model_infer_request::InferInputTensor {
                    name: "pixels".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, 64],
                    ..Default::default()
                }],
                raw_input_contents: vec![vec![0u8; 64 * 4].into()],
                ..Default::default()
            };
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                client.model_infer(request.clone()).await?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            Ok(times[n / 2])
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The largest difference between two outputs.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
