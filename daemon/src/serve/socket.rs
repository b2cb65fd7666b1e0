//! Owning the Unix socket: a lock file beside it says who owns the path. The
//! socket file is removed only by the process holding the lock (a stale one
//! from a crash, before binding; ours, on a clean exit), so two daemons can
//! never steal each other's socket.
//!
//! The socket is made mode 0660 and given the configured group
//! (`access.socket_group`) right after binding, whatever the umask: who may
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
    let listener = UnixListener::bind(socket).map_err(io("binding", socket))?;
    let guard = SocketGuard {
        socket: socket.to_owned(),
        _lock: lock,
    };
    // Nothing is accepted before `serve` starts, and every call is
    // authorised by its peer's credentials, so the moment between bind and
    // chmod grants nothing.
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
    std::os::unix::fs::chown(socket, None, gid).map_err(io("setting the group of", socket))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(io("setting the mode of", socket))?;
    Ok((listener, guard))
}
