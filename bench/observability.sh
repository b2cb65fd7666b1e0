#!/usr/bin/env bash
# Observability costs: the /metrics scrape with 20 deployments serving
# (median of 50 scrapes, and the page's size), and the CPU time drift
# tracking and the live latency window add to each request.
#
#   bench/observability.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
cargo build --release --locked --bins --example drift_cost -q
run=$(mktemp -d)
trap 'kill "$(cat "$run/dsmild.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$run"' EXIT
python3 scripts/start-dsmild.py target/release/dsmild "$run" --tcp "" --metrics 127.0.0.1:0 >/dev/null
ctl=(target/release/dsmilctl --socket "$run/dsmild.sock")
for i in $(seq 0 19); do
    "${ctl[@]}" deploy fixtures/digits/model.onnx --name "m$i" --device $((23 + i)) --allow-fp32 >/dev/null
    "${ctl[@]}" infer "m$i" --random >/dev/null
done
addr=$("${ctl[@]}" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics_address"])')
python3 - "$addr" <<'PY'
import statistics, sys, time, urllib.request
url = f"http://{sys.argv[1]}/metrics"
times, size = [], 0
for _ in range(50):
    t = time.perf_counter()
    body = urllib.request.urlopen(url).read()
    times.append((time.perf_counter() - t) * 1000)
    size = len(body)
series = sum(1 for l in body.decode().splitlines() if l and not l.startswith("#"))
print(f"| /metrics scrape, 20 deployments | {statistics.median(times):.2f} ms median of 50 | {size / 1024:.0f} KiB, {series} series |")
PY
target/release/examples/drift_cost 1000000 | python3 -c '
import json, sys
r = json.load(sys.stdin)
ns, us = r["per_request_ns"], r["report_us"]
print(f"| drift tracking + latency window, per request | {ns:.0f} ns (median of 5 x 1M) | drift report {us:.0f} us |")
'
