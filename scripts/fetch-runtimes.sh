#!/usr/bin/env bash
# Fetches the native inference runtimes dsmild loads at run time, from the
# official Python wheels on PyPI (pip download, pinned versions, nothing else is
# downloaded), and extracts their shared libraries into DEST:
#
#   DEST/onnxruntime/libonnxruntime.so   ONNX Runtime (CPU)
#   DEST/openvino/libopenvino_c.so       OpenVINO: C API, CPU/GPU/NPU
#                                        plugins, ONNX/IR/TFLite frontends
#
# DEST is runtimes/ (git-ignored) when this runs from a source checkout, and
# /usr/lib/dsmil/runtimes when it is the packaged `dsmil-fetch-runtimes` (run
# it as root, then `systemctl restart dsmild`); `--dest DIR` (or --prefix DIR)
# picks another.
#
# dsmild finds them through config (runtimes.onnxruntime_library,
# runtimes.openvino_library), the ORT_DYLIB_PATH / OPENVINO_LIB_DIR
# environment variables, the checkout's runtimes/, or /usr/lib/dsmil/runtimes.
# Idempotent: a runtime already in place is kept.
set -euo pipefail

ORT_VERSION=1.31.1
OV_VERSION=2026.4.1

here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/../Cargo.toml" ] && [ -d "$here/../daemon" ]; then
    dest="$(cd "$here/.." && pwd)/runtimes"   # a source checkout
else
    dest=/usr/lib/dsmil/runtimes              # installed (dsmil-fetch-runtimes)
fi
while [ $# -gt 0 ]; do
    case "$1" in
        --dest | --prefix)
            [ $# -ge 2 ] || { echo "$1 needs a directory" >&2; exit 2; }
            dest=$2
            shift 2
            ;;
        --dest=* | --prefix=*) dest=${1#*=}; shift ;;
        -h | --help)
            echo "usage: $(basename "$0") [--dest DIR]   (default: $dest)"
            echo "Fetches ONNX Runtime $ORT_VERSION and OpenVINO $OV_VERSION into DIR."
            exit 0
            ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
# The daemon's own user reads what root installs here.
umask 022
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

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

# OpenVINO's wheel ships its libraries under versioned names only
# (libopenvino_c.so.2530); the bindings look for the plain names.
ov_dir="$dest/openvino"
if [ -f "$ov_dir/VERSION" ] && [ "$(cat "$ov_dir/VERSION")" = "$OV_VERSION" ]; then
    echo "openvino $OV_VERSION: already in $ov_dir"
else
    echo "openvino $OV_VERSION: fetching the official wheel"
    wheel=$(fetch_wheel openvino "$OV_VERSION")
    rm -rf "$ov_dir"
    mkdir -p "$ov_dir"
    python3 - "$wheel" "$ov_dir" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("openvino/libs/") and not name.endswith("/"):
            (out / name.rsplit("/", 1)[-1]).write_bytes(z.read(name))
PY
    rm -rf "$(dirname "$wheel")"
    echo "$OV_VERSION" > "$ov_dir/VERSION"
fi
for lib in "$ov_dir"/lib*.so.*; do
    plain="${lib%%.so.*}.so"
    [ -e "$plain" ] || ln -s "$(basename "$lib")" "$plain"
done
echo "openvino library: $ov_dir/libopenvino_c.so"
