#!/usr/bin/env bash
# ONNX Runtime against OpenVINO's CPU plugin: one-sample p50 latency, and
# OpenVINO's compile time without (cold) and with (warm) its model cache,
# on the digits sample (FP32 and INT8) and the ResNet-50-topology model
# in INT8 (bench/gen_models.py, quantized by dsmild).
#
#   bench/openvino.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rounds=${1:-5}
bash scripts/setup.sh >/dev/null
cargo build --release --locked --bins --example backends -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python bench/gen_models.py "$work" resnet50 >/dev/null
printf '[quantization]\nmin_accuracy_retention = 0.01\n' > "$work/lax.toml"
quantize() { # model calib out
    RUST_LOG=warn target/release/dsmild --config "$work/lax.toml" quantize "$1" --calib "$2" -o "$3" >/dev/null
}
quantize fixtures/digits/model.onnx fixtures/digits/test.npz "$work/digits.int8.onnx"
quantize "$work/resnet50/model.onnx" "$work/resnet50/calib.npz" "$work/resnet50.int8.onnx"
printf '| model | ONNX Runtime p50 | OpenVINO CPU p50 | OpenVINO compile, cold | warm (cached) |\n|---|---|---|---|---|\n'
for spec in "digits FP32:fixtures/digits/model.onnx" "digits INT8:$work/digits.int8.onnx" \
    "ResNet-50 INT8:$work/resnet50.int8.onnx"; do
    name=${spec%%:*}
    RUST_LOG=warn target/release/examples/backends "${spec#*:}" "$rounds" | python3 -c '
import json, sys
r = json.load(sys.stdin)
ort, ov = r["onnxruntime_p50_ms"], r["openvino_p50_ms"]
cold, warm = r["openvino_cold_compile_ms"], r["openvino_warm_compile_ms"]
print(f"| {sys.argv[1]} | {ort:.4f} ms | {ov:.4f} ms | {cold:.1f} ms | {warm:.1f} ms |")
' "$name"
done
