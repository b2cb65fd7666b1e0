#!/usr/bin/env bash
# CPU time per ModelInfer call, by kind of thread: a release dsmild serving
# one FP32 model (2 instances × 1 intra-op thread, as in the serving
# benchmark), driven over TCP by the native load generator; the threads'
# utime + stime are read from /proc/PID/task/*/stat before and after the
# run, the load generator's from /usr/bin/time. Where the machine's time
# goes per call (docs/benchmarks.md, "Copies" and "Batching where it pays").
# Not a test.
#
#   bench/cpu_per_call.sh MODEL.onnx INPUT:D0,D1,... [CONCURRENCY] [SECONDS] [-- dsmilctl deploy args]
#   e.g. bench/cpu_per_call.sh conv.onnx image:1,3,224,224 1 4
#        bench/cpu_per_call.sh mlp.onnx x:1,64 32 4 -- --batching on
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
model=$1 input=$2
shift 2
concurrency=1 seconds=4
if [ $# -gt 0 ] && [ "$1" != -- ]; then concurrency=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != -- ]; then seconds=$1; shift; fi
[ "${1:-}" = -- ] && shift

bash scripts/fetch-runtimes.sh >/dev/null
cargo build --release --locked --bins --example loadgen -q
work=$(mktemp -d)
trap 'kill $(cat "$work/run/dsmild.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/run"
printf '[serving]\nintra_op_threads = 1\nworkers_per_deployment = 2\n' >"$work/run/dsmil.toml"
python3 scripts/start-dsmild.py target/release/dsmild "$work/run" --config "$work/run/dsmil.toml" \
    --tcp 127.0.0.1:0 --http "" --metrics "" --anonymous-clearance 9 >/dev/null
ctl() { target/release/dsmilctl --socket "$work/run/dsmild.sock" "$@"; }
ctl deploy "$model" --name bench --device 47 --allow-fp32 "$@" >/dev/null
port=$(ctl --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["tcp_address"].rsplit(":",1)[1])')
pid=$(cat "$work/run/dsmild.pid")
load=(target/release/examples/loadgen --url "http://127.0.0.1:$port" --model bench --input "$input"
      --concurrency "$concurrency")
# Each thread's name (workers are infer-<model>-<i>) and its CPU ticks.
snapshot() {
    for task in /proc/"$pid"/task/*; do
        echo "$(basename "$task") $(tr ' ' _ <"$task/comm") $(awk '{print $14 + $15}' "$task/stat")"
    done | sort
}
"${load[@]}" --seconds 1 --warmup 5 >/dev/null
snapshot >"$work/before"
/usr/bin/time -o "$work/time" -f "%U %S" "${load[@]}" --seconds "$seconds" --warmup 0 >"$work/out"
snapshot >"$work/after"
python3 - "$work" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
from pathlib import Path
work, tck = Path(sys.argv[1]), int(sys.argv[2])
run = json.loads((work / "out").read_text().strip().splitlines()[-1])
calls = run["requests"]
assert calls > 0 and run["errors"] == 0, run
def ticks(name):
    return {t: (c, int(v)) for t, c, v in (l.split() for l in (work / name).read_text().splitlines())}
before, after = ticks("before"), ticks("after")
kinds = {}
for task, (comm, v) in after.items():
    kind = "inference threads" if comm.startswith("infer-") else comm
    kinds[kind] = kinds.get(kind, 0) + v - before.get(task, (comm, 0))[1]
user, system = map(float, (work / "time").read_text().split())
print(f"c={run['concurrency']}: {calls} calls, {run['infer_per_s']:,.0f} infer/s, p50 {run['p50_ms']:.3f} ms")
for kind, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
    if v:
        print(f"  {kind:<20} {v / tck / calls * 1e6:8.1f} µs CPU per call")
print(f"  {'load generator':<20} {(user + system) / calls * 1e6:8.1f} µs CPU per call")
EOF
