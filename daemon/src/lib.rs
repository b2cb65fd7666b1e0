//! dsmild: the dsmil edge inference daemon, as a library. `main.rs` only
//! parses arguments and calls [`run`]; everything else is here, one module
//! per stage of a model's life (see ARCHITECTURE.md at the repository root).

pub mod access;
pub mod backend;
pub mod compress;
pub mod config;
mod daemon;
pub mod deploy;
pub mod failpoint;
pub mod logging;
pub mod model;
pub mod monitor;
pub mod reload;
pub mod serve;
pub mod store;
pub mod systemd;
pub mod topology;

pub use daemon::{DaemonError, run};
pub use reload::ConfigSource;
