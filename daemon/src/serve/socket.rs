//! Owning the Unix socket: a lock file beside it says who owns the path. The
//! socket file is removed only by the process holding the lock (a stale one
//! from a crash, before binding; ours, on a clean exit), so two daemons can
//! never steal each other's socket.
//!
//! The socket is made mode 0660 and given the configured group
//! (`access.socket_group`) before it appears at its path, whatever the umask: who may
//! connect is the group's business, what a caller may do is `access`'s (by
//! its peer credentials, on every call).

use std::fs::File;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another dsmild owns {socket} (lock {lock} is held); stop it or use another socket path")]
    InUse { socket: PathBuf, lock: PathBuf },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Holds the lock while alive; unlinks the socket when dropped.
#[derive(Debug)]
pub struct SocketGuard {
    socket: PathBuf,
    _lock: File,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The socket's mode: owner and group read and write, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

pub fn bind_unix(socket: &Path, group: &str) -> Result<(UnixListener, SocketGuard), SocketError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| SocketError::Io { action, path, source }
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let mut lock_path = socket.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("opening", &lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(SocketError::InUse {
                socket: socket.to_owned(),
                lock: lock_path,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path)(e)),
    }
    // We hold the lock: whatever is at the path is a leftover.
    match std::fs::remove_file(socket) {
        Ok(()) => tracing::info!(socket = %socket.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing stale", socket)(e)),
    }
    // Bound, listening and given its mode under a temporary name, then
    // renamed into place: the path appears only once a connect can succeed
    // and only with its final mode (bind and listen are two system calls, and
    // a watcher of the directory would otherwise race the second).
    let staging = staging_path(socket);
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).map_err(io("binding", &staging))?;
    let gid = match crate::config::group_id(group) {
        Some(gid) => Some(gid),
        None => {
            tracing::warn!(
                socket = %socket.display(),
                group,
                "the socket's group does not exist (access.socket_group; systemd-sysusers creates \"dsmil\"): \
                 the socket keeps the daemon's own group"
            );
            None
        }
    };
    let placed = (|| {
        std::os::unix::fs::chown(&staging, None, gid).map_err(io("setting the group of", &staging))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(io("setting the mode of", &staging))?;
        std::fs::rename(&staging, socket).map_err(io("moving into place", socket))
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    let guard = SocketGuard {
        socket: socket.to_owned(),
        _lock: lock,
    };
    Ok((listener, guard))
}

/// A short name beside the socket (a Unix socket path is limited to 107
/// bytes, so the final name plus a suffix might not fit).
fn staging_path(socket: &Path) -> PathBuf {
    let name = format!(".dsmild-{}.sock", std::process::id());
    match socket.parent() {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}
