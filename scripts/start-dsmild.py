"""Starts dsmild in the background and returns once it is ready.

Plays systemd's part: binds a datagram socket, passes it as NOTIFY_SOCKET,
and waits for the daemon's READY=1, so callers never race the startup.

    python3 scripts/start-dsmild.py EXE RUN_DIR [dsmild args...]

State goes to RUN_DIR/state, the socket to RUN_DIR/dsmild.sock, the pid to
RUN_DIR/dsmild.pid and the log to RUN_DIR/dsmild.log.
"""

import os
import socket
import subprocess
import sys
import time


def main() -> None:
    exe, run, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(run, exist_ok=True)
    path = os.path.join(run, "notify.sock")
    if os.path.exists(path):
        os.unlink(path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(path)
    notify.settimeout(120)
    log = open(os.path.join(run, "dsmild.log"), "ab")
    started = time.monotonic()
    proc = subprocess.Popen(
        [exe, "--state-dir", os.path.join(run, "state"), "--cache-dir", os.path.join(run, "cache"),
         "--socket", os.path.join(run, "dsmild.sock"), *extra],
        env={**os.environ, "NOTIFY_SOCKET": path},
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )
    with open(os.path.join(run, "dsmild.pid"), "w") as f:
        f.write(str(proc.pid))
    while True:
        try:
            message = notify.recv(4096).decode()
        except socket.timeout:
            sys.exit(f"dsmild did not become ready; see {run}/dsmild.log")
        if "READY=1" in message:
            elapsed = time.monotonic() - started
            print(f"dsmild running (pid {proc.pid}), ready in {elapsed * 1000:.0f} ms; log: {run}/dsmild.log")
            return
        if proc.poll() is not None:
            sys.exit(f"dsmild exited with {proc.returncode}; see {run}/dsmild.log")


if __name__ == "__main__":
    main()
