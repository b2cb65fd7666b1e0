#!/usr/bin/env bash
# Serving and transport benchmark (issue 14): KServe v2 gRPC ModelInfer
# latency and throughput of dsmild, Triton and MLServer serving the same ONNX
# files with the same ONNX Runtime settings, in one run, against in-process
# ONNX Runtime (the ceiling); dsmild over TCP and its Unix socket. Not a
# test: compare medians and ratios from one run. See bench/transport.py for
# the models, the servers' settings and what each column is.
#
#   bench/transport.sh [RUNS] [REQUESTS] [-- more bench/transport.py args]
#   bench/transport.sh serving [RUNS]      (the issue-14 comparison, below)
#
# Environment:
#   TRITON_PYTHON    a python with nvidia-pytriton and onnxruntime: Triton rows
#   MLSERVER_PYTHON  a python with mlserver and onnxruntime: MLServer rows
#   PERF_ANALYZER=1  drive the servers with Triton's perf_analyzer, made
#                    runnable here by bench/fetch-perf-analyzer.sh (run by
#                    this script); PERF_ANALYZER=PATH uses that binary
#   LOADGEN=1        drive the servers with the native closed-loop generator
#                    (daemon/examples/loadgen.rs, built here) instead of
#                    tritonclient; LOADGEN=PATH uses that binary; with
#                    PERF_ANALYZER too, it only measures the empty-RPC floors
#   NO_BUILD=1       use target/release as it is (no cargo build)
#
# The venvs (once; a few minutes, ~1 GB each):
#   python3 -m venv /tmp/tritonvenv
#   /tmp/tritonvenv/bin/pip install nvidia-pytriton onnxruntime
#   python3 -m venv /tmp/mlservervenv
#   /tmp/mlservervenv/bin/pip install mlserver onnxruntime uvloop==0.21.0
# (MLServer 1.7.1's inference workers die at start with uvloop 0.23, which
# pip picks otherwise: "There is no current event loop in thread 'MainThread'".)
#
# perf_analyzer: PyPI's perf-analyzer 2.58-2.60 ships only manylinux_2_38
# wheels (the binary needs GLIBC_2.38 and GLIBCXX_3.4.32), so on glibc 2.36
# (Debian 12) pip resolves to a 0.1.0 placeholder with no binary.
# bench/fetch-perf-analyzer.sh downloads the real wheel and, on such a host,
# runs its binary under Debian 13's glibc and libstdc++ (unpacked beside it,
# nothing installed). Without PERF_ANALYZER the load is tritonclient's gRPC
# client from Python or, with LOADGEN, the native generator. To run
# perf_analyzer by hand against the servers this script starts (their ports
# are in the run's temp dir, dsmild's in `dsmilctl status`):
#   $(bench/fetch-perf-analyzer.sh) -i grpc -u 127.0.0.1:PORT -m mlp -b 1 \
#       --shape x:64 --concurrency-range 1:64:4 --measurement-interval 3000
# (--shape without the batch dimension where the model's ModelConfig has
# max_batch_size > 0, as dsmild's mlp and the servers' NAME_batched do.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
preset=
if [ "${1:-}" = "serving" ]; then
    preset=serving
    shift
fi
runs=5
requests=200
if [ $# -gt 0 ] && [ "$1" != -- ]; then runs=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != -- ]; then requests=$1; shift; fi
[ "${1:-}" = "--" ] && shift

bash scripts/fetch-runtimes.sh >/dev/null
if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --locked --bins -q
    if [ "${LOADGEN:-}" = 1 ]; then
        cargo build --release --locked -p dsmild --example loadgen -q
    fi
fi
args=(--runs "$runs" --requests "$requests")
[ -n "${TRITON_PYTHON:-}" ] && args+=(--triton-python "$TRITON_PYTHON")
[ -n "${MLSERVER_PYTHON:-}" ] && args+=(--mlserver-python "$MLSERVER_PYTHON")
case "${PERF_ANALYZER:-}" in
    "") ;;
    1) args+=(--perf-analyzer "$(bash bench/fetch-perf-analyzer.sh)") ;;
    *) args+=(--perf-analyzer "$PERF_ANALYZER") ;;
esac
case "${LOADGEN:-}" in
    "") ;;
    1) args+=(--loadgen target/release/examples/loadgen) ;;
    *) args+=(--loadgen "$LOADGEN") ;;
esac
if [ "$preset" = serving ]; then
    # Three models, c = 1, 4, 16, 64 (and 32 on the MLP for the batching
    # comparison), dsmild with dynamic batching on and off, Triton and
    # MLServer with their batchers on and off, 2 instances per model on every
    # server (dsmild's default on a 2-CPU host), over TCP.
    args+=(--models mlp,convnet,ocr_cls --concurrency 1,4,16,64 --model-concurrency mlp=1,4,16,32,64
           --transports tcp --compare-batching --instances 2 --queue-delay-us 0 --max-batch 64)
fi
exec .venv/bin/python bench/transport.py "${args[@]}" "$@"
