//! Audit events (deploy, activate, undeploy, rollback, refusals, config
//! reloads, ...) go to the sled event log first; this task follows the log
//! and repeats each event to the tracing log (hence journald), with its
//! structured fields and the MESSAGE_ID of its kind. An event a caller
//! caused also carries PRINCIPAL, CALLER_UID, CALLER_PID, TRANSPORT and
//! PEER (empty for the daemon's own actions).

use dsmil_kinds::{EventKind, Severity};
use tokio_util::sync::CancellationToken;

use crate::store::{EventRecord, Journal};

fn count(e: &EventRecord) {
    use crate::monitor::metrics_names::{AUDIT_EVENTS, DEPLOYS, ROLLBACKS};
    metrics::counter!(AUDIT_EVENTS, "kind" => e.kind.as_str()).increment(1);
    match e.kind {
        EventKind::Deploy => metrics::counter!(DEPLOYS, "model" => e.model.clone()).increment(1),
        EventKind::Rollback => metrics::counter!(ROLLBACKS, "model" => e.model.clone()).increment(1),
        _ => {}
    }
}

fn emit(e: &EventRecord) {
    count(e);
    let device = e.device.map(|d| d.to_string()).unwrap_or_default();
    let layer = e.layer.map(|l| l.to_string()).unwrap_or_default();
    let caller_uid = e.caller_uid.map(|u| u.to_string()).unwrap_or_default();
    let caller_pid = e.caller_pid.map(|p| p.to_string()).unwrap_or_default();
    macro_rules! log {
        ($level:ident) => {
            tracing::$level!(
                target: "dsmil::audit",
                event = %e.kind,
                message_id = %e.kind.message_id(),
                model = %e.model,
                version = e.version,
                device = %device,
                layer = %layer,
                deployment = e.deployment_id,
                seq = e.seq,
                principal = %e.principal,
                caller_uid = %caller_uid,
                caller_pid = %caller_pid,
                transport = %e.transport,
                peer = %e.peer,
                "{}: {}", e.kind, e.detail
            )
        };
    }
    match e.kind.severity() {
        Severity::Warning => log!(warn),
        Severity::Info => log!(info),
    }
}

/// Follows the event log from its current end until `token`.
pub async fn run(journal: Journal, token: CancellationToken) {
    let mut appended = journal.subscribe_events();
    let mut last = *appended.borrow_and_update();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            changed = appended.changed() => if changed.is_err() { return },
        }
        let reader = journal.clone();
        let events = tokio::task::spawn_blocking(move || reader.events(last, None, 0)).await;
        match events {
            Ok(Ok(events)) => {
                for e in &events {
                    emit(e);
                    last = e.seq;
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "could not read the event log"),
            Err(e) => tracing::error!(error = %e, "the event log reader failed"),
        }
    }
}
