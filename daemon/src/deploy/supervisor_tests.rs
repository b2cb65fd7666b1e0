//! The supervisor's decisions, for every alarm kind under every setting of
//! its two switches, about the deployment that serves and about one that no
//! longer does.

use super::*;
use crate::deploy::admission::tests::record;

const SERVING: u64 = 7;

fn serving() -> DeploymentRecord {
    DeploymentRecord {
        id: SERVING,
        ..record("digits", 47, 7, 0, 0)
    }
}

fn probation(id: u64) -> Alarm {
    Alarm::ProbationFailed {
        model: "digits".into(),
        deployment_id: id,
        reason: "error rate 0.5".into(),
    }
}

fn probes(id: u64) -> Alarm {
    Alarm::ProbesFailing {
        model: "digits".into(),
        deployment_id: id,
        reason: "3 health probes failed in a row".into(),
    }
}

fn drifted(id: u64) -> Alarm {
    Alarm::Drifted {
        model: "digits".into(),
        deployment_id: id,
        reason: "output drift 0.4".into(),
    }
}

/// Every setting of the two switches.
fn policies() -> impl Iterator<Item = Policy> {
    [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .map(|(auto_rollback, drift_auto_rollback)| Policy {
            auto_rollback,
            drift_auto_rollback,
        })
}

#[test]
fn a_failed_probation_rolls_back_only_with_auto_rollback() {
    for policy in policies() {
        let action = plan(&probation(SERVING), Some(&serving()), policy);
        let expected = match policy.auto_rollback {
            true => Action::Rollback("probation failed: error rate 0.5".into()),
            false => Action::AlertOnly,
        };
        assert_eq!(action, expected, "{policy:?}");
    }
}

#[test]
fn failing_probes_reload_then_roll_back_only_with_auto_rollback() {
    for policy in policies() {
        let action = plan(&probes(SERVING), Some(&serving()), policy);
        let expected = Action::Reload {
            then_rollback: policy.auto_rollback,
        };
        assert_eq!(action, expected, "{policy:?}");
    }
}

#[test]
fn drift_rolls_back_only_with_drift_auto_rollback_whatever_auto_rollback_says() {
    for policy in policies() {
        let action = plan(&drifted(SERVING), Some(&serving()), policy);
        let expected = match policy.drift_auto_rollback {
            true => Action::Rollback("drift: output drift 0.4".into()),
            false => Action::Drop(Dropped::LeftToOperator),
        };
        assert_eq!(action, expected, "{policy:?}");
    }
}

#[test]
fn an_alarm_about_a_deployment_that_no_longer_serves_is_dropped() {
    let replaced = DeploymentRecord {
        id: SERVING + 1,
        ..serving()
    };
    for policy in policies() {
        for now in [None, Some(&replaced)] {
            for alarm in [probation(SERVING), probes(SERVING)] {
                let action = plan(&alarm, now, policy);
                assert_eq!(
                    action,
                    Action::Drop(Dropped::NotServing),
                    "{alarm:?} {policy:?} {now:?}"
                );
            }
            // The drift switch is read first: an alert left to the operator
            // stays silent whatever serves.
            let expected = match policy.drift_auto_rollback {
                true => Action::Drop(Dropped::NotServing),
                false => Action::Drop(Dropped::LeftToOperator),
            };
            assert_eq!(plan(&drifted(SERVING), now, policy), expected, "{policy:?} {now:?}");
        }
    }
}

#[test]
fn an_alert_becomes_a_drift_alarm_about_the_same_deployment() {
    let alarm = Alarm::from(Alert::Drifted {
        model: "digits".into(),
        deployment_id: SERVING,
        reason: "output drift 0.4".into(),
    });
    assert_eq!(alarm.parts(), ("digits", SERVING, "output drift 0.4", "drift"));
}
