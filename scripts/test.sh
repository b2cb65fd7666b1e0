#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (real dsmild processes on
# temporary dirs, real ONNX Runtime, real sled), then the Python tests with
# Triton's tritonclient against a real dsmild.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
# The integration tests drive the dsmilctl binary too: build every binary first.
cargo build --workspace --bins --locked --features dsmild/failpoints
# The .deb of those binaries (cargo-deb, dev profile: no second, release
# build), installed into an empty root and checked (packaging/check-deb.sh).
bash scripts/package.sh --dev --check
cargo test --workspace --locked --features dsmild/failpoints
.venv/bin/python -m pytest -q tests/python
