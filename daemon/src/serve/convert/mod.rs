//! Conversions between the wire (KServe v2, dsmil.v1) and the daemon's
//! types, and request checking: `infer.rs` for inference, `control.rs` for
//! the Control API. Nothing here writes, decides or picks a gRPC code.

mod control;
mod infer;

pub use control::*;
pub use infer::*;

#[cfg(test)]
mod tests;
