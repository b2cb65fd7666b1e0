//! This process's memory, cheaply: /proc/self/statm, read on demand. Used for
//! the measured footprint of a load (a delta around it) and for status.
//! Also the standard process figures Prometheus clients export (CPU time,
//! memory, descriptors, start time), read from /proc/self when `/metrics`
//! is scraped ([`Figures::read`]); never sampled in the background.

/// Resident set size in bytes (0 if /proc is unavailable).
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    resident * page_size()
}

/// This process as Prometheus client libraries describe it: each figure as
/// of the read, or None where /proc did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// User and system CPU time since the process started.
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open files (None when unlimited or unknown).
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl Figures {
    /// Reads /proc/self/stat, /proc/self/fd, /proc/self/limits and the boot
    /// time from /proc/stat: a handful of small reads of kernel memory.
    pub fn read() -> Figures {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let boot = std::fs::read_to_string("/proc/stat").ok();
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        let mut figures = stat
            .as_deref()
            .map(|s| Figures::from_stat(s, clock_ticks(), page_size(), boot.as_deref().and_then(boot_time)))
            .unwrap_or_default();
        figures.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64);
        figures.max_fds = limits.as_deref().and_then(max_open_files);
        figures
    }

    /// The figures in /proc/self/stat (see proc_pid_stat(5)): the fields
    /// after the command name, which is in parentheses and may hold spaces.
    fn from_stat(stat: &str, ticks: u64, page: u64, boot_time: Option<u64>) -> Figures {
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return Figures::default();
        };
        // rest[0] is field 3 (state); field n is rest[n - 3].
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let ticks = ticks.max(1) as f64;
        let cpu_seconds = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) as f64 / ticks),
            _ => None,
        };
        Figures {
            cpu_seconds,
            resident_bytes: field(24).map(|pages| pages * page),
            virtual_bytes: field(23),
            start_time_seconds: boot_time
                .zip(field(22))
                .map(|(boot, started)| boot as f64 + started as f64 / ticks),
            open_fds: None,
            max_fds: None,
        }
    }
}

/// The `btime` line of /proc/stat: the boot time, seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of the "Max open files" line of /proc/self/limits.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions; _SC_CLK_TCK is always valid.
    let ticks = unsafe { sysconf(SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always valid.
    let size = unsafe { sysconf(SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// Returns freed heap memory to the system, so that RSS reflects what is in
/// use: glibc keeps freed blocks otherwise, and a delta around a load after
/// an unload would come out too small.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe {
        malloc_trim(0);
    }
}

/// Makes the allocator give large blocks back to the system when freed.
///
/// glibc raises its mmap threshold each time a large block is freed, after
/// which freed model weights stay in its heap and are reused by the next
/// load: a second instance of a model would then seem to cost nothing, and
/// an undeploy to free nothing. A fixed threshold turns that off, so RSS
/// tracks what deployments really hold. Call once, at startup.
pub fn configure_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a glibc tunable; called before any threads
    // of ours allocate large blocks.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

const SC_CLK_TCK: i32 = 2;
const SC_PAGESIZE: i32 = 30;
#[cfg(target_env = "gnu")]
const M_MMAP_THRESHOLD: i32 = -3;
/// Blocks from 4 MiB up are mapped individually (glibc's default starts at
/// 128 KiB and grows to 32 MiB). Below, a request's tensors and messages (an
/// image is 0.6 MB in and out, several buffers each) come from the heap and
/// are reused call after call: mapped one by one they cost a fresh mmap, a
/// page fault and a zeroed page per 4 KiB on every request, about a tenth of
/// a conv net's serving time. What is freed below the threshold is still
/// handed back by `release_free_memory` before each measurement.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD_BYTES: i32 = 4 << 20;
#[cfg(target_env = "gnu")]
const M_TRIM_THRESHOLD: i32 = -1;
/// The free space at the top of the heap glibc keeps instead of shrinking
/// the heap on every free (128 KiB by default, once the mmap threshold is
/// fixed): a request's freed buffers would otherwise be returned and
/// faulted in again on the next request. `release_free_memory` still
/// returns it all before a measurement.
#[cfg(target_env = "gnu")]
const TRIM_THRESHOLD_BYTES: i32 = 64 << 20;

unsafe extern "C" {
    fn sysconf(name: i32) -> i64;
    #[cfg(target_env = "gnu")]
    fn malloc_trim(pad: usize) -> i32;
    #[cfg(target_env = "gnu")]
    fn mallopt(param: i32, value: i32) -> i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as a thread may set.
        let stat = "42 (infer (x) 1) S 1 42 42 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 9 0 \
                    1000 123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0";
        let f = Figures::from_stat(stat, 100, 4096, Some(1_700_000_000));
        assert_eq!(f.cpu_seconds, Some(4.0));
        assert_eq!(f.virtual_bytes, Some(123_456_789));
        assert_eq!(f.resident_bytes, Some(300 * 4096));
        assert_eq!(f.start_time_seconds, Some(1_700_000_010.0));
    }

    #[test]
    fn limits_and_boot_time_are_read_from_their_lines() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63444                63444                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("Max open files unlimited unlimited files\n"), None);
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1796379396\nprocesses 9\n"),
            Some(1_796_379_396)
        );
    }

    #[test]
    fn this_process_reads_as_alive() {
        let f = Figures::read();
        assert!(f.resident_bytes.unwrap() > 0);
        assert!(f.virtual_bytes.unwrap() >= f.resident_bytes.unwrap());
        assert!(f.open_fds.unwrap() >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = f.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 3600.0, "{started} vs {now}");
    }
}
