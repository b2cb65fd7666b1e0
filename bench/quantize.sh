#!/usr/bin/env bash
# dsmil's INT8 quantizer against ONNX Runtime's (quantize_static, QDQ,
# per-channel) on the same FP32 models, calibration data and method; every
# result measured in ONNX Runtime on this machine.
#
#   bench/quantize.sh [METHOD] [MODEL...]     (METHOD: minmax, entropy, percentile)
#
# Models: the digits sample, and (bench/gen_models.py) ResNet-50 and
# MobileNetV2 topologies and a BERT-style encoder. Prints a markdown table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
method=${1:-minmax}
shift || true
bash scripts/setup.sh >/dev/null
cargo build --release --locked --bins -q
work=${DSMIL_BENCH_DIR:-$(mktemp -d)}
.venv/bin/python bench/gen_models.py "$work" >/dev/null
mkdir -p "$work/digits"
cp fixtures/digits/model.onnx "$work/digits/model.onnx"
.venv/bin/python - "$work/digits" <<'PY'
import sys, numpy as np
d = np.load("fixtures/digits/test.npz")
np.savez(f"{sys.argv[1]}/calib.npz", pixels=d["pixels"][:180])
np.savez(f"{sys.argv[1]}/val.npz", pixels=d["pixels"][180:], labels=d["labels"][180:])
PY
.venv/bin/python bench/compare_quantizers.py "$work" target/release/dsmild "$method" "${@:-digits resnet50 mobilenetv2 bert}"
