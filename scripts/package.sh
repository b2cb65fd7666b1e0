#!/usr/bin/env bash
# Builds the dsmil .deb with cargo-deb ([package.metadata.deb] in
# daemon/Cargo.toml) and prints its path on the last line.
#
#   scripts/package.sh            release build of dsmild and dsmilctl, then the .deb
#   scripts/package.sh --check    also check the package (packaging/check-deb.sh)
#   scripts/package.sh --dev      package the dev-profile binaries that
#                                 scripts/test.sh builds (no release build;
#                                 for CI's package check, not for shipping)
#
# The .deb lands in target/debian/. Install it with
#   sudo apt install ./target/debian/dsmil_*.deb
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CARGO_DEB_VERSION=3.8.0
check=no
dev=no
for arg in "$@"; do
    case "$arg" in
        --check) check=yes ;;
        --dev) dev=yes ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb $CARGO_DEB_VERSION (crates.io)" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

# Build first (cargo deb --no-build below): dsmilctl then generates its shell
# completions and man pages, which the package installs.
if [ "$dev" = yes ]; then
    # The same command (and features) as scripts/test.sh, so after it this
    # builds nothing. cargo-deb strips the binaries; it warns that dev
    # builds are not for releases, which this one is not.
    cargo build --workspace --bins --locked --features dsmild/failpoints
    profile_dir=debug
    args=(--no-build --profile dev --fast)
else
    cargo build --release --locked -p dsmild -p dsmilctl
    profile_dir=release
    args=(--no-build)
fi
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ctl="$target_dir/$profile_dir/dsmilctl"
# The generated assets ([package.metadata.deb] names them here).
gen="$root/packaging/generated"
rm -rf "$gen"
mkdir -p "$gen/completions" "$gen/man"
"$ctl" completions bash >"$gen/completions/dsmilctl"
"$ctl" completions zsh >"$gen/completions/_dsmilctl"
"$ctl" completions fish >"$gen/completions/dsmilctl.fish"
"$ctl" man --out "$gen/man" >/dev/null

# cargo-deb prints the .deb's path last on stdout; its progress goes to stderr.
deb=$(cargo deb -p dsmild --locked "${args[@]}" | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb did not report a package (got: $deb)" >&2; exit 1; }

if [ "$check" = yes ]; then
    bash packaging/check-deb.sh "$deb"
fi
echo "$deb"
