//! The systemd watchdog: `WATCHDOG=1` every half period, but only while the
//! daemon can still answer. A ping comes from a tokio task, so a wedged
//! async runtime stops it by itself; and before each ping the inference path
//! is checked: a worker stuck in one run for a whole watchdog period means
//! the runtime (ONNX Runtime, OpenVINO, a driver) has wedged, and the pings
//! stop so that systemd restarts the daemon. The same loop keeps `STATUS=`
//! saying what is served.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Notifier;
use crate::deploy::Registry;

/// How often STATUS= is refreshed without a watchdog.
const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// With `period` None (no `WatchdogSec=`), only keeps `STATUS=` current.
pub async fn run(registry: Arc<Registry>, notifier: Notifier, period: Option<Duration>, token: CancellationToken) {
    let watchdog = period.is_some();
    let period = period.unwrap_or(STATUS_PERIOD * 2);
    let mut tick = tokio::time::interval(period / 2);
    let mut last_status = String::new();
    let mut wedged_reported = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let serving = registry.all();
        let wedged = serving.iter().find_map(|m| {
            m.pool
                .longest_run()
                .filter(|running| *running >= period)
                .map(|running| (m.pool.label().to_owned(), running))
        });
        if let Some((label, running)) = wedged.filter(|_| watchdog) {
            if !wedged_reported {
                tracing::error!(
                    deployment = %label,
                    running_ms = running.as_millis() as u64,
                    "an inference has run for a whole watchdog period: the runtime is wedged; \
                     watchdog pings stop so that systemd restarts dsmild"
                );
                notifier.send(&format!(
                    "STATUS=inference wedged in {label} ({} ms); watchdog pings stopped",
                    running.as_millis()
                ));
                wedged_reported = true;
            }
            continue;
        }
        let status = status_line(&serving);
        let ping = if watchdog { "WATCHDOG=1\n" } else { "" };
        if status != last_status {
            notifier.send(&format!("{ping}STATUS={status}"));
            last_status = status;
        } else if watchdog {
            notifier.send("WATCHDOG=1");
        }
    }
}

/// What the daemon serves, in one line for `systemctl status`.
fn status_line(serving: &[Arc<crate::deploy::ActiveModel>]) -> String {
    if serving.is_empty() {
        return "serving no models".into();
    }
    let models: Vec<String> = serving
        .iter()
        .map(|m| format!("{} v{} on {}", m.record.model, m.record.version, m.record.device))
        .collect();
    format!("serving {}: {}", serving.len(), models.join(", "))
}
