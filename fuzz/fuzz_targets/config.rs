//! An operator's dsmil.toml through `config::check_file` (what
//! `dsmild check-config` and startup run): TOML parsing, layering over the
//! defaults, every value's checks and the topology's.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The parser reads a file (there is no public from-text entry point), so
/// each input is written to one file, on tmpfs where there is one.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("dsmil-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    // Non-UTF-8 stops at the read; not worth an iteration.
    if std::str::from_utf8(data).is_err() {
        return;
    }
    std::fs::write(path(), data).expect("the scratch file is writable");
    match dsmild::config::check_file(path()) {
        Ok(config) => {
            let _ = config.topology.devices().len();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
