//! The daemon's life: bind, open, restore, serve, drain, flush. One
//! cancellation token fans shutdown out to every task, and `run` returns only
//! after all of them have stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Runtimes;
use crate::config::Config;
use crate::deploy::{DeployError, Deployer, Registry};
use crate::monitor::{MetricsEndpoint, install_recorder};
use crate::reload::{ConfigSource, Reloader};
use crate::serve::socket::{SocketError, bind_unix};
use crate::serve::{ControlService, Gate, InferenceService, ServerInfo, Services};
use crate::store::{Journal, StoreError};
use crate::systemd::Notifier;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// How often the journal's files are checked between writes (each write
/// checks them too): how long a removed journal can go unreported while
/// nothing is deployed.
const JOURNAL_CHECK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("binding {what} listener {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the store under {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("making {path} absolute (dsmild works inside its state directory)")]
    Absolute {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("making the state directory {path} the working directory")]
    WorkingDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("restoring deployments")]
    Restore(#[source] DeployError),
    #[error("serving gRPC")]
    Serve(#[source] tonic::transport::Error),
    #[error("a startup task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

async fn bind_tcp(what: &'static str, addr: Option<SocketAddr>) -> Result<Option<TcpListener>, DaemonError> {
    match addr {
        None => Ok(None),
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| DaemonError::Bind { what, addr, source }),
    }
}

/// Makes the paths given at startup (the config file, the path flags, and
/// every path in `config`) absolute against the directory dsmild started in:
/// `run` moves into the state directory, where a relative path would name
/// something else. Relative paths written in the config file itself are
/// resolved again, against the state directory, when a reload reads it.
fn anchor_paths(config: &mut Config, source: &mut ConfigSource) -> Result<(), DaemonError> {
    fn anchor(path: &mut PathBuf) -> Result<(), DaemonError> {
        if path.is_relative() && !path.as_os_str().is_empty() {
            *path = std::path::absolute(&*path).map_err(|source| DaemonError::Absolute {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
    for path in [
        &mut config.paths.state_dir,
        &mut config.paths.cache_dir,
        &mut config.paths.runtime_dir,
        &mut config.listeners.unix_socket,
    ] {
        anchor(path)?;
    }
    for path in [
        &mut config.deployment.manifests_dir,
        &mut config.runtimes.onnxruntime_library,
        &mut config.runtimes.openvino_library,
        &mut source.file,
    ]
    .into_iter()
    .flatten()
    {
        anchor(path)?;
    }
    for (key, value) in &mut source.overrides {
        if let ("paths.state_dir" | "paths.cache_dir" | "listeners.unix_socket", toml::Value::String(text)) =
            (*key, &mut *value)
        {
            let mut path = PathBuf::from(&*text);
            anchor(&mut path)?;
            *text = path.to_string_lossy().into_owned();
        }
    }
    Ok(())
}

/// Runs the daemon until `shutdown` completes (or a listener fails).
pub async fn run(
    mut config: Config,
    mut source: ConfigSource,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    anchor_paths(&mut config, &mut source)?;
    let notifier = Notifier::from_env();
    notifier.send("STATUS=starting");
    let token = CancellationToken::new();
    let tasks = TaskTracker::new();
    let trigger = token.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = shutdown => trigger.cancel(),
            _ = trigger.cancelled() => {}
        }
    });

    // Listeners first: a second daemon, or a port in use, fails fast, before
    // any state is touched.
    let (unix, socket_guard) = bind_unix(&config.listeners.unix_socket, &config.access.socket_group)?;
    let tcp = bind_tcp("gRPC", config.listeners.tcp).await?;
    let metrics = bind_tcp("metrics", config.listeners.metrics).await?;
    let http = bind_tcp("HTTP", config.listeners.http).await?;
    let info = ServerInfo {
        unix_socket: config.listeners.unix_socket.display().to_string(),
        tcp_address: tcp
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        metrics_address: metrics
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        http_address: http
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        state_dir: config.paths.state_dir.display().to_string(),
    };
    if let Some(listener) = metrics {
        match install_recorder() {
            Ok(handle) => {
                MetricsEndpoint::serve(listener, handle, token.clone(), &tasks)
                    .await
                    .map_err(|source| DaemonError::Bind {
                        what: "metrics",
                        addr: config.listeners.metrics.expect("listener implies address"),
                        source,
                    })?;
            }
            Err(e) => tracing::warn!(error = %e, "metrics recorder not installed; /metrics is off"),
        }
    }

    let state_dir = config.paths.state_dir.clone();
    let config = Arc::new(config);
    let opened = {
        let config = Arc::clone(&config);
        tokio::task::spawn_blocking(move || {
            let store_err = |source| DaemonError::Store {
                path: config.paths.state_dir.clone(),
                source,
            };
            let (journal, blobs) = crate::store::open(&config.paths.state_dir).map_err(store_err)?;
            let runtimes = Runtimes::load(&config);
            Ok::<_, DaemonError>((journal, blobs, runtimes))
        })
        .await??
    };
    let (journal, blobs, runtimes) = opened;
    // Before any model is loaded: a runtime resolves a relative path in a
    // model (external data) against the working directory, which is `/`
    // under systemd (`etc/passwd` then means /etc/passwd). The security scan
    // refuses external data; should anything slip past it, a relative path
    // now reaches only the daemon's own files, never the host's.
    std::env::set_current_dir(&state_dir).map_err(|source| DaemonError::WorkingDir {
        path: state_dir.clone(),
        source,
    })?;
    let (alarms, alarm_queue) = tokio::sync::mpsc::unbounded_channel();
    let registry = Arc::new(Registry::new(alarms));
    let deployer = Arc::new(Deployer::new(
        Arc::clone(&config),
        journal.clone(),
        blobs,
        Arc::new(runtimes),
        Arc::clone(&registry),
    ));

    let health = tonic_health::server::HealthReporter::new();
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health.clone()),
    );
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let reloader = Arc::new(Reloader::new(source, Arc::clone(&deployer)));
    tasks.spawn(watch_journal(journal.clone(), Arc::clone(&registry), token.clone()));
    // The sampler reports drift alerts to the supervisor, which decides.
    let (alerts, alert_queue) = tokio::sync::mpsc::unbounded_channel();
    let sampler = crate::monitor::sampler::Sampler::new(deployer.monitoring_sources(), alerts);
    tasks.spawn(crate::monitor::sampler::run(sampler, token.clone()));
    tasks.spawn(crate::logging::audit_to_log(journal.clone(), token.clone()));
    tasks.spawn(crate::reload::watch(Arc::clone(&reloader), token.clone()));
    // One gate for both services: one denial rate limit and one set of
    // per-principal shares.
    let gate = Gate::new(Arc::clone(&deployer));
    let services = Services {
        inference: InferenceService::new(Arc::clone(&registry), gate.clone()),
        control: ControlService::new(Arc::clone(&deployer), Arc::clone(&reloader), info, health.clone(), gate),
        health: health_service,
        max_request_bytes: config.serving.max_request_bytes,
        tls: config.listeners.tls.clone(),
    };
    let server = tokio::spawn(crate::serve::serve(services, unix, tcp, http, token.clone(), DRAIN));
    tasks.spawn(crate::deploy::supervisor::supervise(
        Arc::clone(&deployer),
        alarm_queue,
        alert_queue,
        token.clone(),
    ));
    tasks.spawn(crate::serve::health::sync(
        Arc::clone(&registry),
        health.clone(),
        token.clone(),
    ));
    tracing::info!(socket = %config.listeners.unix_socket.display(), state = %state_dir.display(), "listening; restoring deployments");

    notifier.send("STATUS=restoring deployments");
    let restoring = tokio::task::spawn_blocking({
        let deployer = Arc::clone(&deployer);
        move || {
            // Here, on a blocking thread and before READY, so the hint is
            // in the log by the time anyone can call.
            crate::monitor::host::log_idle_polling();
            deployer.restore()
        }
    });
    let report = tokio::select! {
        report = restoring => Some(report?.map_err(DaemonError::Restore)?),
        _ = token.cancelled() => None,
    };
    if let Some(report) = report {
        let serving = registry.all().len();
        tracing::info!(
            restored = report.restored.len(),
            interrupted = report.interrupted.len(),
            failed = report.failed.len(),
            elapsed_ms = report.elapsed_ms,
            "restore finished"
        );
        let mut readiness = registry.watch_ready();
        let status = if *readiness.borrow_and_update() {
            health
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
            format!("serving {serving} deployment(s)")
        } else if report.failed.is_empty() {
            let why = registry.not_ready_reason().unwrap_or_default();
            format!("serving {serving} deployment(s); NOT READY: {why}")
        } else {
            format!(
                "serving {serving} deployment(s); NOT READY: {} failed to restore",
                report.failed.len()
            )
        };
        notifier.send(&format!("READY=1\nSTATUS={status}"));
        tasks.spawn(follow_readiness(
            readiness,
            Arc::clone(&registry),
            health.clone(),
            notifier.clone(),
            token.clone(),
        ));
        tasks.spawn(crate::deploy::probes::run(Arc::clone(&deployer), token.clone()));
        // Manifests apply over what was restored.
        let manifests = Arc::clone(&reloader);
        tasks.spawn_blocking(move || manifests.reconcile());
        if notifier.is_enabled() {
            let period = notifier.watchdog_period();
            if let Some(p) = period {
                tracing::info!(period_ms = p.as_millis() as u64, "systemd watchdog on");
            }
            tasks.spawn(crate::systemd::watchdog::run(
                Arc::clone(&registry),
                notifier.clone(),
                period,
                token.clone(),
            ));
        }
    }

    let served = server.await?;
    notifier.send("STOPPING=1\nSTATUS=stopping");
    token.cancel();
    tasks.close();
    tasks.wait().await;
    if let Err(e) = tokio::task::spawn_blocking(move || journal.flush()).await? {
        tracing::error!(error = %e, "final journal flush failed");
    }
    drop(socket_guard);
    tracing::info!("stopped");
    served.map_err(DaemonError::Serve)
}

/// Checks the journal's files every `JOURNAL_CHECK` (the stats on a blocking
/// thread) and marks the server not ready, for good, once they are gone.
async fn watch_journal(journal: Journal, registry: Arc<Registry>, token: CancellationToken) {
    let mut tick = tokio::time::interval(JOURNAL_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let journal = journal.clone();
        let checked =
            match tokio::task::spawn_blocking(move || journal.verify().map_err(|e| (journal.is_lost(), e))).await {
                Ok(checked) => checked,
                Err(e) => {
                    tracing::error!(error = %e, "the journal check did not run");
                    continue;
                }
            };
        match checked {
            Ok(()) => {}
            Err((true, e)) => {
                registry.store_lost(error_chain(&e));
                return;
            }
            // Not a verdict on the journal (say, EACCES on a stat): retried.
            Err((false, e)) => tracing::warn!(error = %error_chain(&e), "could not check the journal's files"),
        }
    }
}

/// After startup, keeps grpc.health's server status and systemd's STATUS=
/// in step with strict readiness: a failed restore healed by a deploy makes
/// the server ready, a lost journal makes it not ready.
async fn follow_readiness(
    mut readiness: tokio::sync::watch::Receiver<bool>,
    registry: Arc<Registry>,
    health: tonic_health::server::HealthReporter,
    notifier: Notifier,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = readiness.changed() => if changed.is_err() { return },
            _ = token.cancelled() => return,
        }
        let ready = *readiness.borrow_and_update();
        let serving = registry.all().len();
        let (health_status, status) = match registry.not_ready_reason() {
            None if ready => (
                tonic_health::ServingStatus::Serving,
                format!("serving {serving} deployment(s); ready"),
            ),
            why => (
                tonic_health::ServingStatus::NotServing,
                format!(
                    "serving {serving} deployment(s); NOT READY: {}",
                    why.unwrap_or_else(|| "changing".into())
                ),
            ),
        };
        health.set_service_status("", health_status).await;
        notifier.send(&format!("STATUS={status}"));
    }
}

/// An error and its causes, ": "-separated (the journal's reason is a cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
