#!/usr/bin/env bash
# dsmil's INT8 quantizer against ONNX Runtime's quantize_static on real,
# trained third-party models shipped in PyPI wheels (issue 13): PP-OCRv4
# text detector and recogniser, PP-OCR orientation classifier, Silero VAD
# (two exports). Each judged by its task against its own FP32 output.
#
#   bench/real_models.sh [--quick] [bench/real_models.py options...]
#
# e.g. bench/real_models.sh --only ocr_rec --methods minmax
# Environment: DSMIL_BENCH_DIR keeps the data, the quantized models and
# results.json there (default: a temp dir, removed at the end);
# DSMIL_NO_BUILD=1 uses target/release/dsmild as it is.
# Prints a markdown table, then every refusal with its exact message.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=()
if [[ ${1:-} == --quick ]]; then
  quick=(--quick)
  shift
fi

models=$(bash scripts/fetch-models.sh)
.venv/bin/python -c 'import PIL' 2>/dev/null || .venv/bin/pip install -q -r scripts/requirements.txt

# One release build, only when the binary is missing or older than a source
# file, at low priority (it shares the cores with everything else).
dsmild=target/release/dsmild
if [[ -z ${DSMIL_NO_BUILD:-} ]] &&
  { [[ ! -x $dsmild ]] || [[ -n $(find daemon/src kinds/src proto -newer "$dsmild" -type f -print -quit) ]]; }; then
  echo "building dsmild (release)..." >&2
  nice -n 10 cargo build --release -p dsmild -q
fi

if [[ -n ${DSMIL_BENCH_DIR:-} ]]; then
  work=$DSMIL_BENCH_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
.venv/bin/python bench/real_data.py "$models" "$work/data" "${quick[@]}"
.venv/bin/python bench/real_models.py --models "$models" --data "$work/data" --dsmild "$dsmild" \
  --work "$work/quantized" --json "$work/results.json" "$@" 2> >(grep --line-buffered -v 'Removing initializer' >&2)
