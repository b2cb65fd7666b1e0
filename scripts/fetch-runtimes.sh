#!/usr/bin/env bash
# Fetches the native inference runtimes dsmild loads at run time, from the
# official Python wheels on PyPI (pip download, pinned versions, nothing else is
# downloaded), and extracts their shared libraries into runtimes/ (git-ignored):
#
#   runtimes/onnxruntime/libonnxruntime.so   ONNX Runtime (CPU)
#
# dsmild finds them through config (runtimes.onnxruntime_library), the
# ORT_DYLIB_PATH environment variable, or this folder. Idempotent: a runtime
# already in place is kept.
set -euo pipefail

ORT_VERSION=1.31.1

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/runtimes"
mkdir -p "$dest"

fetch_wheel() { # name version -> path of the downloaded wheel
    local name=$1 version=$2 tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$tmp" "$name==$version" >&2
    ls "$tmp"/*.whl
}

ort_dir="$dest/onnxruntime"
if [ -f "$ort_dir/libonnxruntime.so.$ORT_VERSION" ]; then
    echo "onnxruntime $ORT_VERSION: already in $ort_dir"
else
    echo "onnxruntime $ORT_VERSION: fetching the official wheel"
    wheel=$(fetch_wheel onnxruntime "$ORT_VERSION")
    mkdir -p "$ort_dir"
    python3 - "$wheel" "$ort_dir" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            (out / base).write_bytes(z.read(name))
PY
    rm -rf "$(dirname "$wheel")"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$ort_dir/libonnxruntime.so"
echo "onnxruntime library: $ort_dir/libonnxruntime.so"
