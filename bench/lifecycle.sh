#!/usr/bin/env bash
# Deploy time per stage for the sample model, and the restore time after a
# restart with 8 deployments, on a release dsmild.
#
#   bench/lifecycle.sh [DEPLOYS]     (default 5 deploys of the sample)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
deploys=${1:-5}
bash scripts/fetch-runtimes.sh >/dev/null
cargo build --release --locked --bins -q
run=$(mktemp -d)
trap 'kill "$(cat "$run/dsmild.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$run"' EXIT
python3 scripts/start-dsmild.py target/release/dsmild "$run" --tcp "" --metrics "" >/dev/null
ctl=(target/release/dsmilctl --socket "$run/dsmild.sock" --json)

for _ in $(seq "$deploys"); do
    "${ctl[@]}" deploy fixtures/digits/model.onnx --allow-fp32 --name digits --device 47 >/dev/null
done
"${ctl[@]}" deployments --model digits | python3 -c '
import json, statistics, sys
deployments = json.load(sys.stdin)["deployments"]
# elapsed_ms of a change is the time spent in the state before it.
spent = {}
for d in deployments:
    h = d["history"]
    for before, after in zip(h, h[1:]):
        if after["state"] in ("Retired", "RolledBack"):
            continue
        spent.setdefault(before["state"], []).append(after["elapsed_ms"])
print(f"deploy stages of the sample model, median over {len(deployments)} deploys (ms):")
total = 0
for stage in ["Uploaded", "Validating", "Quantizing", "Compiling", "Loading", "WarmingUp", "HealthChecking"]:
    m = statistics.median(spent[stage])
    total += m
    print(f"  {stage:<15} {m:>6.1f}")
print("  " + "total".ljust(15) + f" {total:>6.1f}")
'

for i in $(seq 1 7); do
    "${ctl[@]}" deploy fixtures/digits/model.onnx --allow-fp32 --name "m$i" --layer 7 >/dev/null 2>&1 \
        || "${ctl[@]}" deploy fixtures/digits/model.onnx --allow-fp32 --name "m$i" --layer 9 >/dev/null
done
echo "deployments serving: $("${ctl[@]}" status | python3 -c 'import json,sys; print(json.load(sys.stdin)["active_deployments"])')"
kill "$(cat "$run/dsmild.pid")"
while kill -0 "$(cat "$run/dsmild.pid")" 2>/dev/null; do :; done
for attempt in 1 2 3; do
    python3 scripts/start-dsmild.py target/release/dsmild "$run" --tcp "" --metrics "" | sed "s/^/restart $attempt: /"
    grep "restore finished" "$run/dsmild.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | sed "s/^.*restore finished/restart $attempt: restore finished/"
    kill "$(cat "$run/dsmild.pid")"
    while kill -0 "$(cat "$run/dsmild.pid")" 2>/dev/null; do :; done
done
