"""dsmild's transport settings as a client sees them (issue 14: a 600 KB
request stalled ~40 ms on Nagle's algorithm): the HTTP/2 SETTINGS and
connection window it advertises on TCP and on the Unix socket, TCP_NODELAY
on its end of an accepted TCP connection (read from the daemon's own socket
through pidfd_getfd), and a tensor larger than HTTP/2's default windows
coming back byte-exact over both. No timing: each check is a value.

The expected values are daemon/src/serve/transport.rs's."""

import ctypes
import errno
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / os.environ.get("DSMIL_PROFILE", "debug")

STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 16 << 20
MAX_FRAME = 256 << 10

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, WINDOW_UPDATE = 0x4, 0x8
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x4, 0x5
DEFAULT_WINDOW = 65_535  # RFC 9113: every window starts here
# 3 MiB of FP32: more than hyper's default 1 MiB windows, many frames.
ECHO_SHAPE = [1, 3, 512, 512]


def _echo_model(path: Path) -> None:
    """y = Identity(x): what comes back is exactly what was sent."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "echo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ECHO_SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ECHO_SHAPE)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.fixture(scope="module")
def dsmild(tmp_path_factory):
    exe = TARGET / "dsmild"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: run `cargo build --workspace --bins` (scripts/test.sh does)")
    tmp = tmp_path_factory.mktemp("transport")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify.sock"))
    notify.settimeout(120)
    sock = tmp / "dsmild.sock"
    log = open(tmp / "dsmild.log", "wb")
    proc = subprocess.Popen(
        [exe, "--state-dir", tmp / "state", "--cache-dir", tmp / "cache", "--socket", sock,
         "--tcp", "127.0.0.1:0", "--http", "", "--metrics", "", "--anonymous-clearance", "9"],
        env={**os.environ, "NOTIFY_SOCKET": str(tmp / "notify.sock")},
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        while "READY=1" not in notify.recv(4096).decode():
            pass
        _echo_model(tmp / "echo.onnx")
        subprocess.run([TARGET / "dsmilctl", "--socket", sock, "deploy", tmp / "echo.onnx", "--allow-fp32",
                        "--name", "echo", "--device", "47"], check=True, capture_output=True)
        yield {"pid": proc.pid, "socket": str(sock), "tcp": _listening_port(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        notify.close()


def _socket_inodes(pid: int) -> dict:
    """The daemon's socket inodes, each with its fd number."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found[int(target[8:-1])] = int(fd)
    return found


def _tcp_table() -> list:
    """(local port, remote port, state, inode) of each IPv4 TCP socket."""
    rows = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            rows.append((int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16),
                         int(fields[3], 16), int(fields[9])))
    return rows


def _listening_port(pid: int) -> int:
    mine = _socket_inodes(pid)
    listening = [local for local, _, state, inode in _tcp_table() if state == 0x0A and inode in mine]
    assert len(listening) == 1, f"dsmild should listen on exactly one TCP port here, not {listening}"
    return listening[0]


def _frames(conn: socket.socket, until) -> list:
    """HTTP/2 frames (type, flags, stream, payload) read until `until(frames)`."""
    conn.settimeout(10)
    buffer, frames = b"", []
    deadline = time.monotonic() + 10
    while not until(frames):
        assert time.monotonic() < deadline, f"no such frames from dsmild; got {frames}"
        chunk = conn.recv(65536)
        assert chunk, f"dsmild closed the connection; got {frames}"
        buffer += chunk
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, flags = buffer[3], buffer[4]
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFF_FFFF
            frames.append((kind, flags, stream, buffer[9:9 + length]))
            buffer = buffer[9 + length:]
    return frames


def _advertised(conn: socket.socket) -> tuple:
    """The server's SETTINGS (as a dict) and its connection receive window."""
    conn.sendall(PREFACE + struct.pack(">I", 0)[1:] + bytes([SETTINGS, 0]) + struct.pack(">I", 0))

    def settings(frames):
        return [f for f in frames if f[0] == SETTINGS and not f[1] & 0x1]

    def connection_updates(frames):
        return [f for f in frames if f[0] == WINDOW_UPDATE and f[2] == 0]

    frames = _frames(conn, lambda fs: settings(fs) and connection_updates(fs))
    payload = settings(frames)[0][3]
    values = {
        int.from_bytes(payload[i:i + 2], "big"): int.from_bytes(payload[i + 2:i + 6], "big")
        for i in range(0, len(payload), 6)
    }
    window = DEFAULT_WINDOW + sum(int.from_bytes(f[3], "big") & 0x7FFF_FFFF for f in connection_updates(frames))
    return values, window


def _check(values: dict, window: int) -> None:
    assert values.get(SETTINGS_INITIAL_WINDOW_SIZE) == STREAM_WINDOW, values
    assert values.get(SETTINGS_MAX_FRAME_SIZE) == MAX_FRAME, values
    assert window == CONNECTION_WINDOW


def test_tcp_listener_advertises_the_configured_windows_and_frame_size(dsmild):
    with socket.create_connection(("127.0.0.1", dsmild["tcp"])) as conn:
        _check(*_advertised(conn))


def test_unix_socket_advertises_the_configured_windows_and_frame_size(dsmild):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(dsmild["socket"])
        _check(*_advertised(conn))


def _pidfd_getfd(pid: int, fd: int) -> int:
    """A duplicate of another process's fd (Linux 5.6+; ptrace access)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd, the same on x86-64 and arm64
        if dup < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                pytest.skip(f"pidfd_getfd is not available here: {os.strerror(code)}")
            raise OSError(code, os.strerror(code))
        return dup
    finally:
        os.close(pidfd)


def test_accepted_tcp_connections_have_nodelay(dsmild):
    with socket.create_connection(("127.0.0.1", dsmild["tcp"])) as conn:
        # Once dsmild has sent its SETTINGS it has accepted the connection
        # and set the socket's options.
        _advertised(conn)
        client_port = conn.getsockname()[1]
        inodes = _socket_inodes(dsmild["pid"])
        ours = [inode for local, remote, _, inode in _tcp_table()
                if local == dsmild["tcp"] and remote == client_port and inode in inodes]
        assert len(ours) == 1, "dsmild's end of this connection is one socket"
        dup = _pidfd_getfd(dsmild["pid"], inodes[ours[0]])
        server_end = socket.socket(fileno=dup)
        try:
            assert server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, \
                "dsmild's end of an accepted TCP connection must have TCP_NODELAY (Nagle stalls gRPC ~40 ms)"
        finally:
            server_end.close()


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_a_large_tensor_comes_back_byte_exact(dsmild, transport):
    if transport == "tcp":
        url, args = f"127.0.0.1:{dsmild['tcp']}", []
    else:
        # gRPC C-core would send the socket's path as :authority, which
        # HTTP/2 servers refuse: name a host instead.
        url, args = f"unix://{dsmild['socket']}", [("grpc.default_authority", "localhost")]
    args += [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    client = grpcclient.InferenceServerClient(url, channel_args=args)
    x = np.random.default_rng(14).standard_normal(ECHO_SHAPE).astype(np.float32)
    # Special values too: the bytes must survive, not just the numbers.
    x.flat[:4] = [np.nan, np.inf, -0.0, np.float32(1e-45)]
    tensor = grpcclient.InferInput("x", ECHO_SHAPE, "FP32")
    tensor.set_data_from_numpy(x)
    for _ in range(2):  # a fresh connection, then one with windows already used
        y = client.infer("echo", [tensor]).as_numpy("y")
        assert y.shape == tuple(ECHO_SHAPE)
        assert y.tobytes() == x.tobytes()
    client.close()
