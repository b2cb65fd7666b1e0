#!/usr/bin/env bash
# Dynamic batching on and off, driven by the native load generator
# (daemon/examples/loadgen.rs, perf_analyzer's concurrency mode) over TCP:
# a release dsmild with its defaults (host-sized instances and threads), one
# model at a time, FP32, deployed with --batching on / off, at the given
# concurrency levels. Models (bench/gen_mlp.py): `mlp` 64→256→256→10, the
# issue's MLP (compute-light: the transport dominates) and `wide` 2048 × 4 (64 MB of
# weights: each batch-1 run streams them all from memory, so a batch of N
# reads them once for N requests). Not a test: compare the rows of one run.
#
#   bench/batching.sh [SECONDS] [CONCURRENCY]      e.g. bench/batching.sh 5 1,32
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-5}
levels=${2:-1,32}
bash scripts/fetch-runtimes.sh >/dev/null
cargo build --release --locked --bins --example loadgen -q
work=$(mktemp -d)
trap 'kill $(cat "$work/run/dsmild.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
.venv/bin/python bench/gen_mlp.py "$work/mlp.onnx" 64,256,256,10
.venv/bin/python bench/gen_mlp.py "$work/wide.onnx" 2048 4
port=18431
# One row per model, batching and concurrency, and first the same client's
# empty RPC (ServerLive) at each concurrency: what the transport alone
# allows, which no batching of a model's compute can pass.
report='
import json, sys
model, batching = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    r = json.loads(line)
    assert r["errors"] == 0, r
    c, rate, p50, p99 = r["concurrency"], r["infer_per_s"], r["p50_ms"], r["p99_ms"]
    print(f"| {model} | {batching} | {c} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")
'
echo "| model | batching | c | infer/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
python3 scripts/start-dsmild.py target/release/dsmild "$work/run" --tcp "127.0.0.1:$port" \
    --anonymous-clearance 9 --metrics "" >/dev/null
target/release/examples/loadgen --url "http://127.0.0.1:$port" --rpc live \
    --concurrency "$levels" --seconds "$seconds" | python3 -c "$report" "(empty RPC)" "–"
kill "$(cat "$work/run/dsmild.pid")"
while kill -0 "$(cat "$work/run/dsmild.pid")" 2>/dev/null; do sleep 0.05; done
for spec in mlp:64 wide:2048; do
    model=${spec%%:*}
    width=${spec#*:}
    for batching in off on; do
        rm -rf "$work/run"
        python3 scripts/start-dsmild.py target/release/dsmild "$work/run" --tcp "127.0.0.1:$port" \
            --anonymous-clearance 9 --metrics "" >/dev/null
        DSMIL_SOCKET="$work/run/dsmild.sock" target/release/dsmilctl deploy "$work/$model.onnx" \
            --name "$model" --device 47 --allow-fp32 --batching "$batching" >/dev/null
        target/release/examples/loadgen --url "http://127.0.0.1:$port" --model "$model" \
            --input "x:1,$width" --concurrency "$levels" --seconds "$seconds" |
            python3 -c "$report" "$model" "$batching"
        kill "$(cat "$work/run/dsmild.pid")"
        while kill -0 "$(cat "$work/run/dsmild.pid")" 2>/dev/null; do sleep 0.05; done
    done
done
