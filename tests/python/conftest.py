"""A real dsmild for the Python tests: started on a temp dir with the sample
model deployed through dsmilctl, reachable over TCP (gRPC) and HTTP (KServe v2
REST), each on a port the OS picks. Readiness comes from the
daemon's own sd_notify READY=1 on a socket this fixture binds; no sleeps."""

import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / os.environ.get("DSMIL_PROFILE", "debug")
SAMPLE = ROOT / "fixtures" / "digits"


def _binary(name: str) -> Path:
    path = TARGET / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --workspace --bins` (scripts/test.sh does)")
    return path


@contextlib.contextmanager
def running_daemon(tmp: Path, *args):
    """A dsmild on `tmp` with extra `args`, up once it says READY=1; yields
    a `ctl(*args)` that runs dsmilctl --json over its socket."""
    notify_path = tmp / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(120)
    sock = tmp / "dsmild.sock"
    log = open(tmp / "dsmild.log", "wb")
    proc = subprocess.Popen(
        [
            _binary("dsmild"),
            "--state-dir", tmp / "state",
            "--cache-dir", tmp / "cache",
            "--socket", sock,
            *args,
        ],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        while True:
            message = notify.recv(4096).decode()
            if "READY=1" in message:
                break

        def ctl(*args):
            out = subprocess.run(
                [_binary("dsmilctl"), "--socket", sock, "--json", *args],
                capture_output=True, check=True,
            )
            return json.loads(out.stdout)

        yield ctl
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        notify.close()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dsmild")
    args = ("--tcp", "127.0.0.1:0", "--anonymous-clearance", "9", "--http", "127.0.0.1:0", "--metrics", "")
    with running_daemon(tmp, *args) as ctl:
        # FP32 on purpose: the test compares with onnxruntime's FP32 outputs.
        # The whole 360-row test set goes in one request: above the default
        # max batch of 64, so this deployment takes more.
        ctl("deploy", SAMPLE / "model.onnx", "--allow-fp32", "--name", "digits", "--device", "47",
            "--max-batch", "512")
        status = ctl("status")
        yield {"tcp": status["tcp_address"], "http": status["http_address"], "ctl": ctl}
