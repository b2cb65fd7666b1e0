//! The read-only commands: each asks dsmild for one thing and prints it
//! through `output::print` (a table or lines, or the response as JSON).
//! Nothing here changes the daemon's state; the commands that do are in
//! `actions`, `deploy` and `quantize`.

pub mod deployments;
pub mod drift;
pub mod events;
pub mod models;
pub mod report;
pub mod status;
pub mod top;
pub mod topology;
