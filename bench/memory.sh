#!/usr/bin/env bash
# Memory estimate (before loading) vs measured footprint (RSS delta around
# load and warmup) for three model sizes, on a release dsmild.
#
#   bench/memory.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
cargo build --release --locked --bins -q
run=$(mktemp -d)
trap 'kill "$(cat "$run/dsmild.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$run"' EXIT
python3 scripts/start-dsmild.py target/release/dsmild "$run" --tcp "" --metrics "" >/dev/null
ctl=(target/release/dsmilctl --socket "$run/dsmild.sock" --json)
printf '| model | weights | estimated | measured | error |\n|---|---|---|---|---|\n'
for spec in "small 256 2" "medium 1024 4" "large 2048 8"; do
    set -- $spec
    .venv/bin/python bench/gen_mlp.py "$run/$1.onnx" "$2" "$3"
    "${ctl[@]}" deploy "$run/$1.onnx" --allow-fp32 --name "$1" --layer 7 | python3 -c '
import json, sys
d = json.load(sys.stdin)
name, width, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mib = lambda b: f"{b / 2**20:.1f} MiB"
w = width * width * layers * 4
e, m = d["estimated_bytes"], d["measured_bytes"]
print(f"| {name} ({layers} x {width}x{width} MatMul) | {mib(w)} | {mib(e)} | {mib(m)} | {100 * (e - m) / m:+.0f}% |")
' "$1" "$2" "$3"
done
