//! Named fault-injection points for the crash tests. Built with the
//! `failpoints` feature, `FAILPOINTS="stage-WarmingUp=pause"` (the `fail`
//! crate's syntax) makes the daemon stop or fail exactly there; without the
//! feature every point compiles to nothing.

/// Evaluates the point `name`; returns the argument of a `return(...)` action.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> Option<String> {
    fail::eval(name, |arg| arg.unwrap_or_default())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> Option<String> {
    None
}

/// Sets failpoints up from `FAILPOINTS`; keep the guard alive for the process.
pub fn setup() -> impl Drop {
    fail::FailScenario::setup()
}
