//! Live reconfiguration. A change to the config file (watched with
//! `notify`), SIGHUP and `dsmilctl reload` all come here. The file is read
//! and validated whole, then compared with what serves: a configuration
//! that would move a serving device to another layer, or out of service, is
//! refused; otherwise it is put in force for every operation that starts
//! from then on. A refusal is logged and journaled as an event, and the
//! running configuration stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, Override};
use crate::deploy::{Deployer, admission};
use crate::store::EventRecord;

/// Where the configuration comes from: the file given at startup (if any)
/// and the command-line overrides, which stay on top through reloads.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Vec<Override>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        config::load(self.file.as_deref(), &self.overrides)
    }

    /// The manifests folder: as configured, else models.d/ beside the file.
    pub fn manifests_dir(&self, config: &Config) -> Option<PathBuf> {
        config.deployment.manifests_dir.clone().or_else(|| {
            self.file
                .as_deref()
                .map(|f| f.parent().unwrap_or(Path::new(".")).join("models.d"))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the new configuration does not fit what serves:\n  - {}", .0.join("\n  - "))]
    Incompatible(Vec<String>),
}

/// What a reload changed, and what it could not apply live.
#[derive(Debug, Default)]
pub struct ReloadOutcome {
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
    /// Restart-only sections that differ from what the daemon started with
    /// (in force since an earlier reload or this one): pending until a restart.
    pub pending_restart: Vec<String>,
    /// When this reload found nothing new: the earlier reload (the file
    /// watcher's, SIGHUP's or another `dsmilctl reload`) that put the file
    /// in force, what it changed and when.
    pub in_force: Option<String>,
}

/// The last reload that changed something.
struct Applied {
    trigger: String,
    at: std::time::SystemTime,
    changes: Vec<String>,
}

impl Applied {
    fn describe(&self) -> String {
        let secs = self
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let ago = self.at.elapsed().map(|d| d.as_secs()).unwrap_or_default();
        format!(
            "in force since {:02}:{:02}:{:02} UTC ({ago} s ago), applied by {}: {}",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            self.trigger,
            self.changes.join("; ")
        )
    }
}

pub struct Reloader {
    source: ConfigSource,
    deployer: Arc<Deployer>,
    /// One reload at a time (a SIGHUP and a file event may coincide).
    serial: Mutex<()>,
    /// The configuration the daemon started with: what the restart-only
    /// sections (listeners, paths, ...) are bound to until a restart.
    started_with: Arc<Config>,
    applied: Mutex<Option<Applied>>,
}

impl Reloader {
    pub fn new(source: ConfigSource, deployer: Arc<Deployer>) -> Reloader {
        Reloader {
            source,
            started_with: deployer.config(),
            deployer,
            serial: Mutex::new(()),
            applied: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// Restart-only changes in force in the configuration but not in what
    /// was set up at startup (`dsmilctl status`, `dsmilctl reload`).
    pub fn pending_restart(&self) -> Vec<String> {
        restart_only(&self.started_with, &self.deployer.config())
    }

    /// Reconciles the manifests folder with what serves. Blocking.
    pub fn reconcile(&self) -> crate::deploy::Reconciled {
        match self.source.manifests_dir(&self.deployer.config()) {
            Some(dir) => self.deployer.reconcile_manifests(&dir),
            None => crate::deploy::Reconciled::default(),
        }
    }

    /// Re-reads the configuration and puts it in force, or refuses it.
    /// `trigger` says why, for the log and the event. Blocking.
    pub fn reload(&self, trigger: &str) -> Result<ReloadOutcome, ReloadError> {
        let _serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.source.load().map_err(ReloadError::from).and_then(|new| {
            let old = self.deployer.config();
            let outcome = compare(&old, &new, &self.deployer)?;
            let restart_only_now = restart_only(&old, &new);
            self.deployer.set_config(Arc::new(new));
            Ok((outcome, restart_only_now))
        });
        let result = result.map(|(mut outcome, restart_only_now)| {
            let r = self.reconcile();
            for (what, names) in [("deployed", &r.deployed), ("undeployed", &r.undeployed)] {
                if !names.is_empty() {
                    outcome.changes.push(format!("models.d: {what} {}", names.join(", ")));
                }
            }
            for (file, why) in &r.refused {
                outcome.warnings.push(format!("models.d: {file} refused: {why}"));
            }
            outcome.pending_restart = restart_only(&self.started_with, &self.deployer.config());
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            if outcome.changes.is_empty() && restart_only_now.is_empty() {
                outcome.in_force = applied.as_ref().map(Applied::describe);
            } else {
                let waiting = restart_only_now
                    .iter()
                    .map(|s| format!("[{s}] changed (waits for a restart)"));
                *applied = Some(Applied {
                    trigger: trigger.to_owned(),
                    at: std::time::SystemTime::now(),
                    changes: outcome.changes.iter().cloned().chain(waiting).collect(),
                });
            }
            outcome
        });
        match &result {
            Ok(outcome) => {
                let detail = match outcome.changes.is_empty() {
                    true => format!("{trigger}: no change"),
                    false => format!("{trigger}: {}", outcome.changes.join("; ")),
                };
                tracing::info!(trigger, changes = ?outcome.changes, warnings = ?outcome.warnings, "configuration reloaded");
                for w in &outcome.warnings {
                    tracing::warn!(trigger, "{w}");
                }
                self.deployer
                    .audit(EventRecord::of(dsmil_kinds::EventKind::ConfigReload, "", detail));
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "configuration refused; the running one stays");
                self.deployer.audit(EventRecord::of(
                    dsmil_kinds::EventKind::ConfigRefused,
                    "",
                    format!("{trigger}: {e}"),
                ));
            }
        }
        result
    }
}

/// What changes from `old` to `new`, refusing what cannot change under the
/// deployments serving now.
fn compare(old: &Config, new: &Config, deployer: &Deployer) -> Result<ReloadOutcome, ReloadError> {
    let mut outcome = ReloadOutcome::default();
    let mut problems = Vec::new();
    let registry = deployer.registry();
    for m in registry.all() {
        let r = &m.record;
        match new.topology.device(r.device) {
            Err(e) => problems.push(format!("{} v{} serves on device {}: {e}", r.model, r.version, r.device)),
            Ok(d) if d.layer != r.layer => problems.push(format!(
                "{} v{} serves on device {}, which would move from layer {} to layer {}: undeploy it first",
                r.model, r.version, r.device, r.layer, d.layer
            )),
            Ok(d) if d.target.is_none() => problems.push(format!(
                "{} v{} serves on device {}, which would become reserved: undeploy it first",
                r.model, r.version, r.device
            )),
            Ok(_) => {}
        }
    }
    if !problems.is_empty() {
        return Err(ReloadError::Incompatible(problems));
    }
    for layer in new.topology.layers() {
        let before = old.topology.layers().iter().find(|l| l.id == layer.id);
        let gb = |l: Option<&crate::topology::Layer>| l.and_then(|l| l.budget_gb);
        if gb(before) != layer.budget_gb {
            outcome.changes.push(format!(
                "layer {} budget {} → {} GB",
                layer.id,
                gb(before).map_or("none".into(), |g| g.to_string()),
                layer.budget_gb.map_or("none".into(), |g| g.to_string())
            ));
        }
        let (used, _) = admission::usage(registry, layer.id, "");
        if let Some(budget) = layer.budget_bytes.filter(|&b| used > b) {
            outcome.warnings.push(format!(
                "layer {} already uses {} over its new budget {}: new deploys there are refused until it fits",
                layer.id,
                admission::human(used),
                admission::human(budget)
            ));
        }
    }
    let retargeted = new
        .topology
        .devices()
        .iter()
        .filter(|d| old.topology.device(d.id).ok().map(|o| o.target) != Some(d.target))
        .count();
    if retargeted > 0 {
        outcome
            .changes
            .push(format!("{retargeted} device(s) change target (new deployments use it)"));
    }
    // Sections compared whole: their values apply to what starts next
    // (deploys, probes, probation, alerts).
    let live = [
        ("hardware", old.hardware != new.hardware),
        ("memory", old.memory != new.memory),
        ("quantization", old.quantization != new.quantization),
        ("deployment", old.deployment != new.deployment),
        ("monitoring", old.monitoring != new.monitoring),
    ];
    for (name, _) in live.iter().filter(|(_, changed)| *changed) {
        outcome.changes.push(format!("[{name}] changed"));
    }
    for name in restart_only(old, new) {
        outcome.warnings.push(format!(
            "[{name}] changed: it takes effect at the next restart (listeners, paths, runtimes, logging and \
             worker pools are set up at startup)"
        ));
    }
    Ok(outcome)
}

/// The sections bound at startup (they need a restart) that differ.
fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let fixed = [
        ("listeners", old.listeners != new.listeners),
        ("paths", old.paths != new.paths),
        ("runtimes", old.runtimes != new.runtimes),
        // The host's CPUs are read again on each load; a change of the
        // process's affinity alone is not a change of the file.
        (
            "serving",
            old.serving
                != crate::config::ServingConfig {
                    host_cpus: old.serving.host_cpus.clone(),
                    ..new.serving.clone()
                },
        ),
        ("logging", old.logging != new.logging),
    ];
    fixed
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| (*name).to_owned())
        .collect()
}

/// Reloads on SIGHUP and when the config file changes, until `token`.
pub async fn watch(reloader: Arc<Reloader>, token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGHUP; reload with `dsmilctl reload`");
            return;
        }
    };
    let (tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
    let (manifests_tx, mut manifests_changed) = tokio::sync::mpsc::channel::<()>(1);
    // Kept alive for the loop; None without a file or folder to watch.
    let _watcher = reloader.source().file.as_deref().and_then(|file| watch_file(file, tx));
    let manifests = reloader.source().manifests_dir(&reloader.deployer.config());
    let _manifests_watcher = manifests.as_deref().and_then(|dir| watch_dir(dir, manifests_tx));
    loop {
        let trigger = tokio::select! {
            _ = token.cancelled() => return,
            _ = hangup.recv() => "SIGHUP",
            Some(()) = changed.recv() => {
                settle(&mut changed).await;
                "the config file changed"
            }
            Some(()) = manifests_changed.recv() => {
                settle(&mut manifests_changed).await;
                let reloader = Arc::clone(&reloader);
                let _ = tokio::task::spawn_blocking(move || reloader.reconcile()).await;
                continue;
            }
        };
        let reloader = Arc::clone(&reloader);
        // The outcome is logged and journaled by `reload` itself.
        let _ = tokio::task::spawn_blocking(move || reloader.reload(trigger)).await;
    }
}

/// How long a burst of file events has to settle before one reload.
const SETTLE: Duration = Duration::from_millis(200);

/// Editors write in several steps (truncate, write, rename) and each fires
/// an event: a debounce, not a synchronisation. Waits out the burst and
/// drops the events it made, so the caller acts once on the final file.
async fn settle(events: &mut tokio::sync::mpsc::Receiver<()>) {
    tokio::time::sleep(SETTLE).await;
    while events.try_recv().is_ok() {}
}

/// Watches a manifests folder (created if missing, so that it can be
/// watched) and signals `tx` on any change in it.
fn watch_dir(dir: &Path, tx: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "no manifests folder");
        return None;
    }
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = notify::recommended_watcher(handler).ok()?;
    watcher.watch(dir, RecursiveMode::NonRecursive).ok()?;
    tracing::info!(dir = %dir.display(), "watching the manifests folder");
    Some(watcher)
}

/// Watches the config file's folder (editors replace the file by renaming a
/// new one over it) and signals `tx` when the file is touched.
fn watch_file(file: &Path, tx: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file.file_name()?.to_owned();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()));
        if ours && !event.kind.is_access() {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or `dsmilctl reload`");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config folder; reload with SIGHUP");
        return None;
    }
    tracing::info!(file = %file.display(), "watching the config file");
    Some(watcher)
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
