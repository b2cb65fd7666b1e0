//! Triton's RPCs beyond KServe v2 that need no model repository: the
//! repository index (what is deployed, as Triton lists it), read-only log
//! settings, and [`Unsupported`], the reason an RPC dsmild does not serve
//! gives, naming what to use instead. Pure: no I/O, no tonic statuses (they
//! are made in `status`), no access checks (the handlers in `inference` ask
//! the gate first).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use dsmil_proto::inference as pb;
use tracing::level_filters::LevelFilter;

use crate::deploy::ActiveModel;

pub const READY: &str = "READY";
pub const UNAVAILABLE: &str = "UNAVAILABLE";

/// Why dsmild answers a Triton RPC with an error rather than a result.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error(
        "dsmild has no model repository to load {model:?} from: models are deployed by upload, with \
         `dsmilctl deploy MODEL.onnx --name NAME` (or a manifest in models.d)"
    )]
    RepositoryLoad { model: String },
    #[error(
        "dsmild has no model repository to unload {model:?} from: take a model out of service with \
         `dsmilctl undeploy NAME`"
    )]
    RepositoryUnload { model: String },
    #[error(
        "log settings are read-only over gRPC (asked to change {keys}): set `level` in the [logging] \
         section of dsmil.toml (or RUST_LOG) and restart dsmild"
    )]
    LogSettingsUpdate { keys: String },
    #[error("dsmild does not serve {rpc}: {instead}")]
    Rpc { rpc: &'static str, instead: &'static str },
}

pub const SHARED_MEMORY_INSTEAD: &str =
    "send tensors in the request itself (raw_input_contents); dsmild maps no client shared memory";
pub const TRACE_INSTEAD: &str =
    "dsmild has no request tracing; use ModelStatistics and the Prometheus metrics (the [metrics] listener)";

/// A deployment as Triton's repository index lists it: its serving version,
/// READY while it passes its health probes, UNAVAILABLE with the reason
/// otherwise.
pub fn index_entry(model: &ActiveModel) -> pb::repository_index_response::ModelIndex {
    let healthy = model.healthy.load(Ordering::Acquire);
    let (state, reason) = if healthy {
        (READY, String::new())
    } else {
        let failures = model.probe_failures.load(Ordering::Acquire);
        (UNAVAILABLE, format!("failing its health probes ({failures} in a row)"))
    };
    pb::repository_index_response::ModelIndex {
        name: model.record.model.clone(),
        version: model.record.version.to_string(),
        state: state.to_owned(),
        reason,
    }
}

/// The log settings in force, in Triton's keys: what the installed tracing
/// filter lets through at its most verbose (a per-target filter such as
/// "info,dsmild=debug" counts as debug). Logs go to stderr or journald,
/// never a file dsmild opens, so log_file is empty.
pub fn log_settings() -> HashMap<String, pb::log_settings_response::SettingValue> {
    use pb::log_settings_response::SettingValue;
    use pb::log_settings_response::setting_value::ParameterChoice;
    let level = LevelFilter::current();
    let flag = |at: LevelFilter| SettingValue {
        parameter_choice: Some(ParameterChoice::BoolParam(level >= at)),
    };
    let verbose = if level >= LevelFilter::TRACE {
        2
    } else if level >= LevelFilter::DEBUG {
        1
    } else {
        0
    };
    HashMap::from([
        ("log_error".to_owned(), flag(LevelFilter::ERROR)),
        ("log_warning".to_owned(), flag(LevelFilter::WARN)),
        ("log_info".to_owned(), flag(LevelFilter::INFO)),
        (
            "log_verbose_level".to_owned(),
            SettingValue {
                parameter_choice: Some(ParameterChoice::Uint32Param(verbose)),
            },
        ),
        (
            "log_file".to_owned(),
            SettingValue {
                parameter_choice: Some(ParameterChoice::StringParam(String::new())),
            },
        ),
    ])
}

/// The keys an update asked to change, sorted, for the refusal's message.
pub fn update_keys(request: &pb::LogSettingsRequest) -> String {
    let mut keys: Vec<&str> = request.settings.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_what_to_use_instead() {
        let load = Unsupported::RepositoryLoad { model: "m".into() }.to_string();
        assert!(load.contains("dsmilctl deploy"), "{load}");
        let unload = Unsupported::RepositoryUnload { model: "m".into() }.to_string();
        assert!(unload.contains("dsmilctl undeploy"), "{unload}");
        let log = Unsupported::LogSettingsUpdate {
            keys: "log_info".into(),
        }
        .to_string();
        assert!(log.contains("[logging]") && log.contains("log_info"), "{log}");
    }

    #[test]
    fn log_settings_use_tritons_keys() {
        let settings = log_settings();
        for key in ["log_error", "log_warning", "log_info", "log_verbose_level", "log_file"] {
            assert!(settings.contains_key(key), "{key}");
        }
    }
}
