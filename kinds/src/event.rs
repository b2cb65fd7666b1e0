//! Audit event kinds: what the journal's event log records, each with its
//! severity and the MESSAGE_ID journald carries for it.

use sha2::{Digest, Sha256};

use crate::spelled;

/// How loud an event is in the log: operators alert on warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A deploy was recorded (a new version).
    Deploy,
    /// A version started serving.
    Activate,
    /// A version stopped serving because another replaced it.
    Retire,
    Undeploy,
    Rollback,
    /// An existing version deployed again after failed health probes.
    Reload,
    /// A request refused by policy before anything was recorded.
    Refuse,
    /// A deployment ended Failed.
    Fail,
    /// An FP32 model served as such by operator override.
    AllowFp32,
    /// A deployment a restart caught mid-pipeline.
    Interrupted,
    RestoreFailed,
    /// The supervisor could not act, or acted, on an alarm.
    Alert,
    LatencyAlert,
    LatencyRecovered,
    DriftAlert,
    DriftRecovered,
    ConfigReload,
    ConfigRefused,
    ManifestRefused,
    /// A call refused by access control (who may do what).
    Denied,
}

spelled!(EventKind, "event kind", "an event kind dsmild records", {
    Deploy => "deploy",
    Activate => "activate",
    Retire => "retire",
    Undeploy => "undeploy",
    Rollback => "rollback",
    Reload => "reload",
    Refuse => "refuse",
    Fail => "fail",
    AllowFp32 => "allow_fp32",
    Interrupted => "interrupted",
    RestoreFailed => "restore_failed",
    Alert => "alert",
    LatencyAlert => "latency_alert",
    LatencyRecovered => "latency_recovered",
    DriftAlert => "drift_alert",
    DriftRecovered => "drift_recovered",
    ConfigReload => "config_reload",
    ConfigRefused => "config_refused",
    ManifestRefused => "manifest_refused",
    Denied => "denied",
});

impl EventKind {
    /// Refusals, failures, rollbacks and alerts are warnings.
    pub fn severity(self) -> Severity {
        use EventKind::*;
        match self {
            Refuse | Fail | Rollback | RestoreFailed | Alert | LatencyAlert | DriftAlert | ConfigRefused
            | ManifestRefused | Denied => Severity::Warning,
            Deploy | Activate | Retire | Undeploy | Reload | AllowFp32 | Interrupted | LatencyRecovered
            | DriftRecovered | ConfigReload => Severity::Info,
        }
    }

    /// A stable 128-bit id (32 hex digits, journald's MESSAGE_ID form),
    /// derived from the spelling so it never changes between releases.
    pub fn message_id(self) -> String {
        hex::encode(&Sha256::digest(format!("dsmil event {}", self.as_str()))[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_message_ids_are_distinct_and_stable() {
        let mut ids = std::collections::HashSet::new();
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            assert_eq!(kind.message_id().len(), 32);
            assert!(ids.insert(kind.message_id()), "{kind}");
        }
        // The id journald queries use: fixed by the spelling.
        assert_eq!(
            EventKind::Rollback.message_id(),
            hex::encode(&Sha256::digest(b"dsmil event rollback")[..16])
        );
        assert_eq!(EventKind::RestoreFailed.severity(), Severity::Warning);
        assert_eq!(EventKind::Activate.severity(), Severity::Info);
    }
}
