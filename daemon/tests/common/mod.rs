//! Test harness: a real dsmild process on a temporary state dir and socket.
//!
//! Synchronisation is the daemon's own systemd protocol: the harness binds a
//! datagram socket, passes it as NOTIFY_SOCKET, and waits for READY=1 (or
//! STOPPING=1), never for a fixed time.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod onnx;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dsmil_proto::control::control_client::ControlClient;
use dsmil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};

pub const SAMPLE_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/model.onnx");
pub const SAMPLE_TEST_SET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/test.npz");

/// How long a daemon may take to become ready or to stop: generous, since a
/// loaded CI machine is slow; a healthy run takes well under a second.
const STARTUP: Duration = Duration::from_secs(120);

pub struct Daemon {
    child: Option<Child>,
    pub dir: TempDir,
    notify: UnixDatagram,
    /// Every notify message received so far.
    pub notices: Vec<String>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_in(tempfile::tempdir().unwrap(), &[])
    }

    /// Starts dsmild on `dir` (reusing its state, for restart tests) with
    /// extra command-line arguments, and waits for READY=1.
    pub fn start_in(dir: TempDir, args: &[&str]) -> Daemon {
        let mut daemon = Daemon::spawn(dir, args, &[]);
        daemon.wait_for("READY=1");
        daemon
    }

    /// Like `start_in`, with extra environment variables (e.g. FAILPOINTS).
    pub fn start_with_env(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::spawn(dir, args, env);
        daemon.wait_for("READY=1");
        daemon
    }

    /// Starts dsmild without waiting; `env` adds environment variables.
    pub fn spawn(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let notify_path = dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_read_timeout(Some(STARTUP)).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("dsmild.log"))
            .unwrap();
        let state = dir.path().join("state");
        let socket = dir.path().join("dsmild.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsmild"));
        cmd.arg("--state-dir")
            .arg(&state)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--socket")
            .arg(&socket)
            .args(["--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            // TCP callers without a certificate are refused by default;
            // the tests of TCP serving want them served, unless they say.
            .args(if args.contains(&"--anonymous-clearance") {
                &[][..]
            } else {
                &["--anonymous-clearance", "9"][..]
            })
            .args(args)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .env_remove("DSMIL_CONFIG")
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("dsmild starts");
        Daemon {
            child: Some(child),
            dir,
            notify,
            notices: Vec::new(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("dsmild.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dsmild.log")).unwrap_or_default()
    }

    /// Waits until a notify message contains `needle`; returns that message.
    /// Fails at once if the daemon exits first.
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(seen) = self.notices.iter().find(|n| n.contains(needle)) {
            return seen.clone();
        }
        // Block on the socket in slices, so that a daemon that died is
        // noticed within one slice rather than at the deadline.
        self.notify.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
        let deadline = std::time::Instant::now() + STARTUP;
        let mut buf = vec![0u8; 4096];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.notices.push(message.clone());
                    if message.contains(needle) {
                        return message;
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if exited.is_some() || std::time::Instant::now() >= deadline {
                        panic!(
                            "dsmild never sent {needle:?}; exit status {exited:?}; notices {:?}; log:\n{}",
                            self.notices,
                            self.log()
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("reading dsmild's notifications: {e}"),
            }
        }
    }

    /// The daemon's exit status, waiting for it to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.as_mut().expect("running").wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// kill -9: no chance to flush or clean up. Returns the state for a restart.
    /// Every notice that arrives within `window` (for checking that one
    /// does not come: the watchdog's silence).
    pub fn notices_within(&mut self, window: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + window;
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            self.notify
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.notices.push(message.clone());
                seen.push(message);
            }
        }
        seen
    }

    pub fn kill9(mut self) -> TempDir {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
        self.take_dir()
    }

    /// SIGTERM and wait: the clean path. Returns the state for a restart.
    pub fn stop(mut self) -> TempDir {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_for("STOPPING=1");
        let exit = self.wait_exit();
        assert!(exit.success(), "dsmild exited with {exit}; log:\n{}", self.log());
        self.child = None;
        self.take_dir()
    }

    fn take_dir(mut self) -> TempDir {
        self.child = None;
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub async fn channel(&self) -> Channel {
        unix_channel(&self.socket()).await
    }

    /// grpc.health.v1 Check of `service` ("" for the whole server).
    pub async fn health_check(&self, service: &str) -> i32 {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel().await);
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        health.check(request).await.unwrap().into_inner().status
    }

    pub async fn inference(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel().await).max_decoding_message_size(64 << 20)
    }

    pub async fn control(&self) -> ControlClient<Channel> {
        ControlClient::new(self.channel().await)
    }

    /// Deploys model bytes through dsmilctl; the deployment as JSON, or the
    /// error dsmilctl printed.
    pub fn try_deploy(&self, bytes: &[u8], args: &[&str]) -> Result<serde_json::Value, String> {
        let file = self.dir.path().join(format!("upload-{}.onnx", rand::random::<u32>()));
        std::fs::write(&file, bytes).unwrap();
        let mut all = vec!["--json", "deploy", file.to_str().unwrap()];
        all.extend_from_slice(args);
        // Test models are FP32; serving them as such is the explicit override.
        if !args.contains(&"--calib") && !args.contains(&"--allow-fp32") {
            all.push("--allow-fp32");
        }
        let out = self.ctl(&all);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Deploys model bytes; panics if the deploy fails.
    pub fn deploy(&self, bytes: &[u8], args: &[&str]) -> serde_json::Value {
        self.try_deploy(bytes, args)
            .unwrap_or_else(|e| panic!("deploy {args:?} failed: {e}\n{}", self.log()))
    }

    /// Deploys the FP32 sample model as it is (`--allow-fp32`) with `args`
    /// (name, placement); the deployment as JSON.
    pub fn deploy_sample(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["deploy", SAMPLE_MODEL, "--allow-fp32"];
        all.extend_from_slice(args);
        self.ctl_json(&all)
    }

    /// Waits (the event log's long poll) for the first event of `kind` about
    /// `model` after sequence number `after`.
    pub fn wait_event(&self, model: &str, kind: &str, after: u64) -> serde_json::Value {
        let after = after.to_string();
        let got = self.ctl_json(&[
            "events",
            "--model",
            model,
            "--kind",
            kind,
            "--after",
            &after,
            "--wait-ms",
            "60000",
        ]);
        let event = got["events"][0].clone();
        assert!(
            !event.is_null(),
            "no {kind} event for {model} after {after}:\n{}",
            self.log()
        );
        event
    }

    /// Asserts that `model` (the sample, under that name) still answers a
    /// two-row request, and that the server is SERVING.
    pub async fn still_serves(&self, model: &str) {
        let mut request = digits_request(2, 0.5);
        request.model_name = model.into();
        let answer = self
            .inference()
            .await
            .model_infer(request)
            .await
            .unwrap_or_else(|e| panic!("{model} no longer answers: {e}\n{}", self.log()))
            .into_inner();
        assert_eq!(answer.outputs[0].shape, vec![2, 10]);
        assert_eq!(
            self.health_check("").await,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    /// (version, state) of each deployment `dsmilctl deployments` lists,
    /// for `model` when given.
    pub fn deployment_states(&self, model: Option<&str>) -> Vec<(u64, String)> {
        let mut args = vec!["deployments"];
        if let Some(model) = model {
            args.extend(["--model", model]);
        }
        let listed = self.ctl_json(&args);
        listed["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["version"].as_u64().unwrap(), d["state"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// Runs dsmilctl against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_with_socket(&self.socket(), args)
    }

    /// Runs dsmilctl and parses its --json output; panics on failure.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "dsmilctl {args:?} failed: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).expect("dsmilctl --json prints JSON")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// dsmild's default config with each `(from, to)` text replaced once, as a
/// file in a fresh directory (to start a daemon in): (dir, path).
pub fn config_with(replacements: &[(&str, &str)]) -> (TempDir, String) {
    let defaults = Command::new(env!("CARGO_BIN_EXE_dsmild"))
        .arg("default-config")
        .output()
        .unwrap();
    let mut text = String::from_utf8(defaults.stdout).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{from:?} is not in the defaults");
        text = text.replacen(from, to, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsmil.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

/// A raw ModelInfer request for the sample model: `rows` rows of `value`.
pub fn digits_request(rows: i64, value: f32) -> dsmil_proto::inference::ModelInferRequest {
    dsmil_proto::inference::ModelInferRequest {
        model_name: "digits".into(),
        inputs: vec![dsmil_proto::inference::model_infer_request::InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![rows, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![f32_bytes(&vec![value; rows as usize * 64]).into()],
        ..Default::default()
    }
}

/// A gRPC channel over dsmild's Unix socket at `socket`.
pub async fn unix_channel(socket: &Path) -> Channel {
    let path = socket.to_owned();
    Endpoint::from_static("http://dsmild.test")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect to dsmild's socket")
}

/// dsmilctl sits beside dsmild in the target directory (scripts/test.sh
/// builds every binary before the tests run).
pub fn ctl_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_dsmild")).with_file_name("dsmilctl");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

pub fn ctl_with_socket(socket: &Path, args: &[&str]) -> Output {
    Command::new(ctl_binary())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("DSMIL_ADDR")
        .output()
        .unwrap()
}

/// The sample's held-out set: pixels [N,64] f32, labels [N] i64.
pub fn test_set() -> (ndarray::Array2<f32>, ndarray::Array1<i64>) {
    use ndarray_npy::NpzReader;
    let mut npz = NpzReader::new(std::fs::File::open(SAMPLE_TEST_SET).unwrap()).unwrap();
    (npz.by_name("pixels").unwrap(), npz.by_name("labels").unwrap())
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn i64_values(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// GET /metrics from dsmild's metrics listener: the text exposition.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

pub mod inproc;

/// The real ONNX Runtime (from the runtimes scripts/setup.sh fetches),
/// loaded once per test binary.
pub fn ort() -> &'static dsmild::backend::OnnxRuntime {
    use dsmild::backend::{OnnxRuntime, locate_onnxruntime};
    static RUNTIME: std::sync::OnceLock<OnnxRuntime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| OnnxRuntime::load(&locate_onnxruntime(None).unwrap()).unwrap())
}

/// The model's Triton ModelConfig, as a client reads it.
pub async fn model_config(daemon: &Daemon, name: &str) -> dsmil_proto::inference::ModelConfig {
    daemon
        .inference()
        .await
        .model_config(dsmil_proto::inference::ModelConfigRequest {
            name: name.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap()
}
