#!/usr/bin/env bash
# The identity check's cost per inference request (issue 12): identify the
# caller and authorise it, for a Unix-socket peer with 1/16/128 principals
# configured and for a TLS client certificate. Prints a markdown table of
# medians; docs/benchmarks.md keeps the last results.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked -p dsmild --bench identity 2>/dev/null
