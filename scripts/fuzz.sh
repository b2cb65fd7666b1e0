#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/) and runs each for SECONDS_PER_TARGET
# seconds, one after another, after replaying its saved regressions.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# CI runs it briefly on every change (.ci/run); by hand, give it hours.
# The corpus each run grows is kept in fuzz/corpus/<target> (git-ignored),
# crashes in fuzz/artifacts/<target>. See docs/fuzzing.md.
#
# Environment: FUZZ_SANITIZER (address, default; or none: faster, but
# libFuzzer's per-allocation limit needs a sanitizer), FUZZ_JOBS (cargo
# build jobs: every core in CI, which has the machine to itself; else 1, as
# a developer's machine is shared), FUZZ_TARGET_DIR (where the
# instrumented build goes; default fuzz/target. CI keeps it outside its
# fresh clone, so that only what changed is rebuilt).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-20}
shift || true
sanitizer=${FUZZ_SANITIZER:-address}
# Options every build and run shares: the sanitizer, release mode, and
# where the instrumented build lives.
opts=(-O -s "$sanitizer")
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    mkdir -p "$FUZZ_TARGET_DIR"
    opts+=(--target-dir "$FUZZ_TARGET_DIR")
fi
if [ "${CI:-}" = true ]; then
    export CARGO_BUILD_JOBS=${FUZZ_JOBS:-$(nproc)}
else
    export CARGO_BUILD_JOBS=${FUZZ_JOBS:-1}
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module
# options); stable rustc takes them when told it may bootstrap.
export RUSTC_BOOTSTRAP=1
# The daemon is fuzzed with the dependency versions it ships with: start
# from the main lock file every time (cargo adds libfuzzer-sys to it), so
# fuzz/ never carries a second lock to keep in step.
cp ../Cargo.lock Cargo.lock

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
cargo fuzz build "${opts[@]}"
echo "fuzz: build took $(($(date +%s) - start)) s"

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    # Every crash once found stays fixed.
    if compgen -G "regressions/$target/*" >/dev/null; then
        if ! cargo fuzz run "${opts[@]}" "$target" regressions/"$target"/* -- -runs=1 >"artifacts/$target/regressions.log" 2>&1; then
            echo "fuzz: $target: replaying the saved regressions failed (artifacts/$target/regressions.log)"
            failed+=("$target")
            continue
        fi
    fi
    log="artifacts/$target/run.log"
    # The first corpus directory receives new inputs; the seeds only feed it.
    # -rss_limit_mb also caps any single allocation (with a sanitizer): a
    # hostile size that slips through is a crash, not a slow machine.
    if cargo fuzz run "${opts[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$target")
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz: $target: $status, ${runs:-?} runs in $seconds s (log $log)"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}; reproducers in fuzz/artifacts/<target>/" >&2
fi
# The closing line in the plain form CI reads.
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
