//! This process's memory, cheaply: /proc/self/statm, read on demand. Used for
//! the measured footprint of a load (a delta around it) and for status.

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
    }
}

const SC_PAGESIZE: i32 = 30;
#[cfg(target_env = "gnu")]
const M_MMAP_THRESHOLD: i32 = -3;
/// Blocks from 256 KiB up are mapped individually (glibc's default starts at
/// 128 KiB and grows to 32 MiB).
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD_BYTES: i32 = 256 << 10;

unsafe extern "C" {
    fn sysconf(name: i32) -> i64;
    #[cfg(target_env = "gnu")]
    fn malloc_trim(pad: usize) -> i32;
    #[cfg(target_env = "gnu")]
    fn mallopt(param: i32, value: i32) -> i32;
}
