//! The daemon in this test process: `dsmild::run` on a temporary state dir
//! and socket, stopped through its shutdown future, not a signal. Faster than
//! a process and its errors come back typed; crashes, systemd and journald
//! stay with the process harness.
//!
//! `run` makes the state dir the working directory and installs process-wide
//! state, so one in-process daemon runs at a time (a lock held from `start`
//! to `stop`), and `stop` puts the working directory back.
//!
//! Synchronisation: the socket's creation (inotify, through `notify`), then
//! grpc.health.v1 Watch until the server is SERVING; never a sleep.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dsmil_proto::control::control_client::ControlClient;
use dsmil_proto::control::deploy_request::Part;
use dsmil_proto::control::{DeployProgress, DeployRequest, DeploySpec};
use dsmil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use dsmild::DaemonError;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// How long the daemon may take to bind, restore and start serving.
const STARTUP: Duration = Duration::from_secs(120);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct InProcess {
    pub dir: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    daemon: Option<JoinHandle<Result<(), DaemonError>>>,
    channel: Channel,
    /// Where the test process was before `run` moved it.
    cwd: PathBuf,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl InProcess {
    pub async fn start() -> InProcess {
        InProcess::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Starts the daemon on `dir` (reusing its state, for restarts) and
    /// returns once it reports SERVING.
    pub async fn start_in(dir: TempDir) -> InProcess {
        let serial = ONE_AT_A_TIME.lock().await;
        let cwd = std::env::current_dir().unwrap();
        let socket = dir.path().join("dsmild.sock");
        let path = |p: PathBuf| toml::Value::String(p.to_str().unwrap().to_owned());
        let overrides: Vec<dsmild::config::Override> = vec![
            ("paths.state_dir", path(dir.path().join("state"))),
            ("paths.cache_dir", path(dir.path().join("cache"))),
            ("listeners.unix_socket", path(socket.clone())),
            // Off: a port is another test's, and the metrics recorder is
            // process-wide.
            ("listeners.tcp", toml::Value::String(String::new())),
            ("listeners.metrics", toml::Value::String(String::new())),
        ];
        let config = dsmild::config::load(None, &overrides).unwrap();
        let source = dsmild::ConfigSource { file: None, overrides };

        let (watcher, mut created) = watch_for(&socket);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let mut daemon = tokio::spawn(dsmild::run(config, source, async move {
            let _ = stop.await;
        }));
        if !socket.exists() {
            tokio::select! {
                _ = created.recv() => {}
                ended = &mut daemon => panic!("dsmild stopped before binding its socket: {ended:?}"),
                _ = tokio::time::sleep(STARTUP) => panic!("dsmild never bound {}", socket.display()),
            }
        }
        drop(watcher);
        let channel = connect(&socket).await;
        let mut running = InProcess {
            dir,
            shutdown: Some(shutdown),
            daemon: Some(daemon),
            channel,
            cwd,
            _serial: serial,
        };
        running.wait_serving().await;
        running
    }

    async fn wait_serving(&mut self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        let mut watch = health.watch(request).await.unwrap().into_inner();
        let serving = async {
            while let Some(status) = watch.message().await.unwrap() {
                if status.status == ServingStatus::Serving as i32 {
                    return;
                }
            }
            panic!("the health watch ended before SERVING");
        };
        tokio::time::timeout(STARTUP, serving)
            .await
            .expect("dsmild never reported SERVING");
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("dsmild.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn control(&self) -> ControlClient<Channel> {
        ControlClient::new(self.channel.clone())
    }

    pub fn inference(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// Deploys model bytes through the Control service as dsmilctl does
    /// (the spec, then 1 MiB chunks); every progress message, the last one
    /// carrying the deployment.
    pub async fn deploy(&self, bytes: &[u8], spec: DeploySpec) -> Result<Vec<DeployProgress>, tonic::Status> {
        let spec = DeploySpec {
            size_bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            ..spec
        };
        let mut messages = vec![DeployRequest {
            part: Some(Part::Spec(spec)),
        }];
        messages.extend(bytes.chunks(1 << 20).map(|c| DeployRequest {
            part: Some(Part::Chunk(c.to_vec())),
        }));
        let mut progress = self.control().deploy(tokio_stream::iter(messages)).await?.into_inner();
        let mut steps = Vec::new();
        while let Some(step) = progress.message().await? {
            steps.push(step);
        }
        Ok(steps)
    }

    /// Stops the daemon as a shutdown request would, and returns what `run`
    /// returned with the state for a restart.
    pub async fn stop(mut self) -> (Result<(), DaemonError>, TempDir) {
        let _ = self.shutdown.take().expect("running").send(());
        let result = self.daemon.take().expect("running").await.expect("run did not panic");
        std::env::set_current_dir(&self.cwd).unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (result, dir)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // A test that failed before `stop`: end the daemon's tasks and leave
        // the temp dir that is about to be removed.
        if let Some(daemon) = self.daemon.take() {
            daemon.abort();
            let _ = std::env::set_current_dir(&self.cwd);
        }
    }
}

/// A channel that fires when `path` is created. Set up before the daemon
/// starts, so the creation cannot be missed.
fn watch_for(path: &Path) -> (notify::RecommendedWatcher, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use notify::{RecursiveMode, Watcher};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let wanted = path.to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // The daemon renames the listening socket into place, so any event
        // naming the path (a create or the rename's target) will do.
        if event.is_ok_and(|e| e.paths.contains(&wanted)) && wanted.exists() {
            let _ = tx.send(());
        }
    })
    .unwrap();
    watcher
        .watch(path.parent().unwrap(), RecursiveMode::NonRecursive)
        .unwrap();
    (watcher, rx)
}

/// Connects to the socket `run` has bound (it listens from the same call).
async fn connect(socket: &Path) -> Channel {
    super::unix_channel(socket).await
}
