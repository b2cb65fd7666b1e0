#!/usr/bin/env bash
# One command from a fresh clone to a serving daemon: fetches the runtimes,
# builds (release), starts dsmild in the background with its state in run/,
# and deploys the sample digits model on device 47 (the primary AI device).
# Then:  export DSMIL_SOCKET=$PWD/run/dsmild.sock PATH=$PWD/target/release:$PATH
#        dsmilctl infer digits --random
# Stop it with: kill $(cat run/dsmild.pid)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/fetch-runtimes.sh
cargo build --release --locked --bins

run="$root/run"
mkdir -p "$run"
if [ -f "$run/dsmild.pid" ] && kill -0 "$(cat "$run/dsmild.pid")" 2>/dev/null; then
    echo "dsmild is already running (pid $(cat "$run/dsmild.pid"))"
else
    # Start dsmild and wait for its sd_notify READY=1 (a Python one-liner
    # plays systemd's part), so the deploy below never races the startup.
    python3 - "$root/target/release/dsmild" "$run" <<'PY'
import os, socket, subprocess, sys
exe, run = sys.argv[1], sys.argv[2]
path = os.path.join(run, "notify.sock")
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(120)
log = open(os.path.join(run, "dsmild.log"), "ab")
p = subprocess.Popen(
    [exe, "--state-dir", os.path.join(run, "state"), "--cache-dir", os.path.join(run, "cache"),
     "--socket", os.path.join(run, "dsmild.sock"), "--tcp", "127.0.0.1:8001", "--metrics", "127.0.0.1:9464"],
    env={**os.environ, "NOTIFY_SOCKET": path}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    start_new_session=True)
open(os.path.join(run, "dsmild.pid"), "w").write(str(p.pid))
while True:
    try:
        msg = s.recv(4096).decode()
    except socket.timeout:
        sys.exit(f"dsmild did not become ready; see {run}/dsmild.log")
    if "READY=1" in msg:
        print(f"dsmild running (pid {p.pid}); log: {run}/dsmild.log")
        break
PY
fi

ctl=("$root/target/release/dsmilctl" --socket "$run/dsmild.sock")
if "${ctl[@]}" --json models | grep -q '"name": "digits"' && "${ctl[@]}" infer digits --random >/dev/null 2>&1; then
    echo "the sample model is already serving"
else
    "${ctl[@]}" deploy fixtures/digits/model.onnx --name digits --device 47
fi
cat <<MSG

dsmild is serving the sample model. Try:
  export DSMIL_SOCKET=$run/dsmild.sock PATH=$root/target/release:\$PATH
  dsmilctl infer digits --random
  dsmilctl status
Triton/KServe gRPC clients: 127.0.0.1:8001   Prometheus: http://127.0.0.1:9464/metrics
Stop: kill \$(cat $run/dsmild.pid)
MSG
