//! What the host's own settings mean for serving latency, read once at
//! startup and said in the log, so an operator who compares small-request
//! latency with another machine knows where to look. It only reads sysfs
//! and never changes a host setting: that is the operator's call (README,
//! "Tuning the host").

use std::path::Path;

const IDLE_DRIVER: &str = "/sys/devices/system/cpu/cpuidle/current_driver";
const HALT_POLL_NS: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";

/// A virtual machine whose idle vCPUs halt at once (the haltpoll idle
/// driver with polling off) wakes them through the hypervisor: tens of
/// microseconds, twice per call (docs/benchmarks.md, "Small requests on a
/// virtual machine"). None when the host is anything else or polls.
pub fn idle_polling_hint(driver: &str, poll_ns: &str) -> Option<String> {
    if driver.trim() != "haltpoll" || poll_ns.trim() != "0" {
        return None;
    }
    Some(format!(
        "idle vCPUs halt without polling ({HALT_POLL_NS} = 0): small requests wait for wake-ups; \
         see the README's \"Tuning the host\""
    ))
}

/// Logs the hint, if any. Blocking (sysfs reads): call off the tokio workers.
pub fn log_idle_polling() {
    let read = |path: &str| std::fs::read_to_string(Path::new(path)).ok();
    if let (Some(driver), Some(poll_ns)) = (read(IDLE_DRIVER), read(HALT_POLL_NS))
        && let Some(hint) = idle_polling_hint(&driver, &poll_ns)
    {
        tracing::info!(guest_halt_poll_ns = 0, "{hint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_guest_that_halts_without_polling_gets_the_hint() {
        let hint = idle_polling_hint("haltpoll\n", "0\n").expect("a hint");
        assert!(hint.contains("guest_halt_poll_ns = 0"), "{hint}");
        assert!(hint.contains("Tuning the host"), "{hint}");
        assert_eq!(idle_polling_hint("haltpoll\n", "200000\n"), None, "already polls");
        assert_eq!(idle_polling_hint("intel_idle\n", "0\n"), None, "bare metal");
        assert_eq!(idle_polling_hint("acpi_idle", ""), None);
    }
}
