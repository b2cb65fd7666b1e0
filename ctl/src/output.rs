//! How every command prints its answer: with `--json`, the value as pretty
//! JSON (what scripts and the tests parse, so its shape is the daemon's
//! message, unchanged); otherwise its form for people. Never fetches,
//! never changes what it is given.

/// Prints `value` as pretty JSON when `json`, else runs `human`.
pub fn print<T: serde::Serialize>(value: &T, json: bool, human: impl FnOnce()) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        human();
    }
    Ok(())
}
