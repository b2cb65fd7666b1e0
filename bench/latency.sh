#!/usr/bin/env bash
# ModelInfer latency of the sample model over dsmild's Unix socket vs ONNX
# Runtime in-process, and dsmild's resident memory idle. Not a test: figures
# vary by machine; compare medians and ratios.
#
#   bench/latency.sh [RUNS] [ITERATIONS]      (defaults: 5 runs of 2000 calls)
#
# Starts a release dsmild on a temporary dir, reads its RSS with no model,
# deploys fixtures/digits on device 47, reads the RSS again, runs
# examples/infer_latency RUNS times, and prints the medians of the p50s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-5}
iterations=${2:-2000}

bash scripts/fetch-runtimes.sh >/dev/null
cargo build --release --locked --bins --examples -q
run=$(mktemp -d)
trap 'kill "$(cat "$run/dsmild.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$run"' EXIT
python3 scripts/start-dsmild.py target/release/dsmild "$run" --tcp "" --metrics "" >/dev/null
pid=$(cat "$run/dsmild.pid")
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
rss_empty=$(rss)
target/release/dsmilctl --socket "$run/dsmild.sock" deploy fixtures/digits/model.onnx --allow-fp32 --name digits --device 47 >/dev/null
rss_loaded=$(rss)

results=()
for _ in $(seq "$runs"); do
    results+=("$(target/release/examples/infer_latency "$run/dsmild.sock" digits fixtures/digits/model.onnx "$iterations")")
done
printf '%s\n' "${results[@]}" | python3 bench/summarize.py
echo "dsmild RSS: ${rss_empty} KiB with no model, ${rss_loaded} KiB idle with the sample deployed"
