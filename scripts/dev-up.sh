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
    # Waits for dsmild's sd_notify READY=1, so the deploy below never races
    # the startup. The script exits then, leaving NOTIFY_SOCKET with no
    # reader: dsmild says so once in its log ("could not notify systemd;
    # further failures are not logged ..."), not at every status update.
    # For development: TCP and HTTP open to anonymous inference at every
    # layer. The shipped config serves neither (README, Security).
    python3 scripts/start-dsmild.py "$root/target/release/dsmild" "$run" \
        --tcp 127.0.0.1:8001 --http 127.0.0.1:8000 --metrics 127.0.0.1:9464 \
        --anonymous-clearance 9
fi

ctl=("$root/target/release/dsmilctl" --socket "$run/dsmild.sock")
if "${ctl[@]}" --json models | grep -q '"name": "digits"' && "${ctl[@]}" infer digits --random >/dev/null 2>&1; then
    echo "the sample model is already serving"
else
    # INT8, as dsmil serves every model: calibrated and gated on the
    # sample's held-out set.
    "${ctl[@]}" deploy fixtures/digits/model.onnx --name digits --device 47 \
        --calib fixtures/digits/test.npz --val fixtures/digits/test.npz
fi
cat <<MSG

dsmild is serving the sample model. Try:
  export DSMIL_SOCKET=$run/dsmild.sock PATH=$root/target/release:\$PATH
  dsmilctl infer digits --random
  dsmilctl status
Triton/KServe gRPC clients: 127.0.0.1:8001   KServe v2 REST: http://127.0.0.1:8000/v2
Prometheus: http://127.0.0.1:9464/metrics
Stop: kill \$(cat $run/dsmild.pid)
MSG
