#!/usr/bin/env bash
# Makes Triton's load generator, perf_analyzer, runnable on this host for the
# serving benchmark (bench/transport.sh), and prints the command to run it.
#
# PyPI's perf-analyzer 2.58-2.60 ships only manylinux_2_38 wheels: its binary
# needs GLIBC_2.38 and GLIBCXX_3.4.32. On an older glibc (Debian 12 has 2.36)
# pip resolves `perf-analyzer` to a 0.1.0 placeholder without a binary. So
# this script:
#   1. downloads the 2.60.0 wheel for manylinux_2_38 explicitly (pip download
#      --platform) and unpacks its binary;
#   2. if the host's glibc is older than 2.38, downloads Debian 13's libc6,
#      libstdc++6 and libgcc-s1 packages (apt-get download from a private
#      sources list; nothing is installed on the system) and unpacks them
#      beside it;
#   3. writes DEST/perf_analyzer, a wrapper that runs the binary under that
#      glibc's own loader (ld-linux-x86-64.so.2 --library-path ...), with the
#      host's libraries (libssl, libz) after Debian 13's.
# Only the load generator runs on the borrowed glibc; the servers it measures
# run as they always do.
#
#   bench/fetch-perf-analyzer.sh [DEST]     (default: .cache/perf_analyzer, git-ignored)
# Idempotent; prints DEST/perf_analyzer.
set -euo pipefail

PA_VERSION=2.60.0
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.cache/perf_analyzer}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
wrapper=$dest/perf_analyzer
if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
    echo "$wrapper"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_38_x86_64 \
    --python-version 3.11 -d "$work" "perf-analyzer==$PA_VERSION" >&2
python3 -m zipfile -e "$work"/perf_analyzer-"$PA_VERSION"-*.whl "$work/wheel"
install -m 755 "$work/wheel/perf_analyzer/bin/perf_analyzer" "$dest/perf_analyzer.bin"

glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
if [ "$(printf '%s\n2.38\n' "$glibc" | sort -V | head -1)" = 2.38 ]; then
    # glibc >= 2.38: the binary runs as it is (given a new enough libstdc++).
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$dest/perf_analyzer.bin" >"$wrapper"
else
    echo "glibc $glibc < 2.38: borrowing Debian 13's libc6, libstdc++6 and libgcc-s1 for perf_analyzer" >&2
    apt_dir=$work/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=-
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
              -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq >&2
    (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download -qq libc6 libstdc++6 libgcc-s1 >&2)
    rm -rf "$dest/sysroot"
    for deb in "$apt_dir"/debs/*.deb; do
        dpkg-deb -x "$deb" "$dest/sysroot"
    done
    lib=$dest/sysroot/usr/lib/x86_64-linux-gnu
    printf '#!/bin/sh\nexec "%s" --library-path "%s:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "%s" "$@"\n' \
        "$lib/ld-linux-x86-64.so.2" "$lib" "$dest/perf_analyzer.bin" >"$wrapper"
fi
chmod 755 "$wrapper"
"$wrapper" --version >&2
echo "$wrapper"
