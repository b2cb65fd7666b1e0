//! The deployment state machine. Every transition a deployment makes goes
//! through [`DeployState::can_move_to`], one exhaustive match without a
//! catch-all arm, so that a new state forces a decision at every edge.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DeployState {
    Uploaded,
    Validating,
    Quantizing,
    Compiling,
    Loading,
    WarmingUp,
    HealthChecking,
    Active,
    Failed,
    RolledBack,
    Retired,
}

impl DeployState {
    /// The pipeline's stages in order, from upload to activation.
    pub const PIPELINE: [DeployState; 8] = [
        DeployState::Uploaded,
        DeployState::Validating,
        DeployState::Quantizing,
        DeployState::Compiling,
        DeployState::Loading,
        DeployState::WarmingUp,
        DeployState::HealthChecking,
        DeployState::Active,
    ];

    /// True for the states a deployment never leaves.
    pub fn is_terminal(self) -> bool {
        match self {
            DeployState::Failed | DeployState::RolledBack | DeployState::Retired => true,
            DeployState::Uploaded
            | DeployState::Validating
            | DeployState::Quantizing
            | DeployState::Compiling
            | DeployState::Loading
            | DeployState::WarmingUp
            | DeployState::HealthChecking
            | DeployState::Active => false,
        }
    }

    /// True while the pipeline is working on it (a restart interrupts these).
    pub fn is_in_progress(self) -> bool {
        !self.is_terminal() && self != DeployState::Active
    }

    pub fn can_move_to(self, to: DeployState) -> bool {
        use DeployState::*;
        match self {
            Uploaded => matches!(to, Validating | Failed),
            Validating => matches!(to, Quantizing | Failed),
            Quantizing => matches!(to, Compiling | Failed),
            Compiling => matches!(to, Loading | Failed),
            Loading => matches!(to, WarmingUp | Failed),
            WarmingUp => matches!(to, HealthChecking | Failed),
            HealthChecking => matches!(to, Active | Failed),
            Active => matches!(to, Retired | RolledBack | Failed),
            Failed | RolledBack | Retired => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Uploaded => "Uploaded",
            DeployState::Validating => "Validating",
            DeployState::Quantizing => "Quantizing",
            DeployState::Compiling => "Compiling",
            DeployState::Loading => "Loading",
            DeployState::WarmingUp => "WarmingUp",
            DeployState::HealthChecking => "HealthChecking",
            DeployState::Active => "Active",
            DeployState::Failed => "Failed",
            DeployState::RolledBack => "RolledBack",
            DeployState::Retired => "Retired",
        }
    }
}

impl fmt::Display for DeployState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::DeployState::{self, *};

    const ALL: [DeployState; 11] = [
        Uploaded,
        Validating,
        Quantizing,
        Compiling,
        Loading,
        WarmingUp,
        HealthChecking,
        Active,
        Failed,
        RolledBack,
        Retired,
    ];

    #[test]
    fn the_pipeline_is_a_chain_of_valid_moves() {
        for pair in DeployState::PIPELINE.windows(2) {
            assert!(pair[0].can_move_to(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn terminal_states_go_nowhere_and_stages_cannot_be_skipped() {
        for from in ALL {
            for to in ALL {
                if from.is_terminal() {
                    assert!(!from.can_move_to(to), "{from} -> {to}");
                }
            }
        }
        assert!(!Uploaded.can_move_to(Active));
        assert!(!Validating.can_move_to(Loading));
        assert!(!Active.can_move_to(Validating));
    }

    #[test]
    fn every_non_terminal_state_can_fail() {
        for from in ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(from.can_move_to(Failed), "{from}");
        }
    }
}
