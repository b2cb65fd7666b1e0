#!/usr/bin/env bash
# Checks a dsmil .deb for real (scripts/package.sh --check runs this):
#   - its metadata, file list, modes and conffiles (dpkg-deb -I / -c);
#   - its maintainer scripts parse;
#   - installed into an empty root with dpkg (--root, scripts run with
#     DPKG_ROOT): sysusers.d made the dsmil user and group, the unit is
#     enabled, /etc/dsmil/dsmil.toml is a conffile; then purged;
#   - the unit passes `systemd-analyze verify` (ExecStart pointed at the
#     installed binary) and its Documentation= file is installed;
#   - the installed dsmild and dsmilctl run: --version, check-config of the
#     packaged config, dsmilctl's completions and man page are there, and a
#     short start on temporary paths whose status
#     names the installed dsmil-fetch-runtimes when a runtime is missing.
# Needs root (dpkg --root, systemd-sysusers --root).
set -euo pipefail

deb=${1:?usage: check-deb.sh PATH.deb}
[ "$(id -u)" = 0 ] || { echo "check-deb.sh needs root (dpkg --root, systemd-sysusers --root)" >&2; exit 1; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
work=$(mktemp -d /tmp/dsmil-deb-check.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "package check FAILED: $*" >&2
    exit 1
}
has() { # file pattern what
    grep -qE -- "$2" "$1" || fail "$3 (no match for /$2/ in $(basename "$1"))"
}

echo "== metadata and contents of $(basename "$deb")"
[ "$(dpkg-deb -f "$deb" Package)" = dsmil ] || fail "the package is not named dsmil"
[[ $(dpkg-deb -f "$deb" Depends) == *systemd* ]] || fail "no dependency providing systemd-sysusers"
# dpkg-deb -c prints numeric owners as 0/0; compare as root/root.
dpkg-deb -c "$deb" | sed 's| 0/0 | root/root |' >"$work/contents"
for entry in \
    '-rwxr-xr-x root/root .* \./usr/bin/dsmild$' \
    '-rwxr-xr-x root/root .* \./usr/bin/dsmilctl$' \
    '-rwxr-xr-x root/root .* \./usr/bin/dsmil-fetch-runtimes$' \
    '-rw-r--r-- root/root .* \./usr/lib/systemd/system/dsmild\.service$' \
    '-rw-r--r-- root/root .* \./usr/lib/sysusers\.d/dsmil\.conf$' \
    '-rw-r--r-- root/root .* \./usr/lib/tmpfiles\.d/dsmild\.conf$' \
    '-rw-r--r-- root/root .* \./etc/dsmil/dsmil\.toml$' \
    '-rw-r--r-- root/root .* \./usr/share/doc/dsmil/README\.md$' \
    '-rw-r--r-- root/root .* \./usr/share/doc/dsmil/copyright$' \
    '-rw-r--r-- root/root .* \./usr/share/bash-completion/completions/dsmilctl$' \
    '-rw-r--r-- root/root .* \./usr/share/zsh/vendor-completions/_dsmilctl$' \
    '-rw-r--r-- root/root .* \./usr/share/fish/vendor_completions.d/dsmilctl\.fish$' \
    '-rw-r--r-- root/root .* \./usr/share/man/man1/dsmilctl\.1\.gz$'; do
    grep -qE -- "$entry" "$work/contents" || fail "missing or wrong mode: $entry"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$work"
[ "$(cat "$work/conffiles")" = /etc/dsmil/dsmil.toml ] || fail "conffiles is not exactly /etc/dsmil/dsmil.toml: $(cat "$work/conffiles")"
for script in postinst prerm postrm; do
    [ -x "$work/$script" ] || fail "$script is missing or not executable"
    sh -n "$work/$script" || fail "$script does not parse"
done
has "$work/postinst" 'systemd-sysusers .*dsmil\.conf' "postinst does not run sysusers"
has "$work/postinst" 'systemd-tmpfiles --create dsmild\.conf' "postinst does not run tmpfiles"
has "$work/postinst" 'deb-systemd-helper enable dsmild\.service' "postinst does not enable the unit"
if grep -q '^#DEBHELPER#' "$work/postinst"; then fail "postinst still has the #DEBHELPER# token"; fi

echo "== installed into an empty root (dpkg --root)"
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
# Dependencies are the host's business here (the root has no libc).
dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null -i "$deb" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; fail "dpkg -i into $root"; }
has "$work/install.log" "Run 'dsmil-fetch-runtimes' as root" "postinst did not say how to get the runtimes"
has "$root/etc/passwd" '^dsmil:x:[0-9]+:[0-9]+:.*:/var/lib/dsmild:' "sysusers.d did not create the dsmil user"
has "$root/etc/group" '^dsmil:x:[0-9]+:' "sysusers.d did not create the dsmil group"
[ -L "$root/etc/systemd/system/multi-user.target.wants/dsmild.service" ] || fail "the unit was not enabled"
dpkg-query --root="$root" -s dsmil >"$work/status" 2>&1 || fail "dpkg does not list dsmil as installed"
has "$work/status" '^Status: install ok installed' "dsmil is not installed and configured"
has "$work/status" '^ /etc/dsmil/dsmil\.toml [0-9a-f]{32}' "dpkg does not record the conffile"

echo "== the unit"
unit="$root/usr/lib/systemd/system/dsmild.service"
doc=$(sed -n 's|^Documentation=file://||p' "$unit")
[ -n "$doc" ] && [ -f "$root$doc" ] || fail "Documentation= names $doc, which the package does not install"
exec_start=$(sed -n 's|^ExecStart=\([^ ]*\).*|\1|p' "$unit")
[ -x "$root$exec_start" ] || fail "ExecStart= names $exec_start, which the package does not install"
mkdir -p "$work/units"
sed "s|^ExecStart=$exec_start|ExecStart=$root$exec_start|" "$unit" >"$work/units/dsmild.service"
# --man=no: the host need not have man pages for the units it refers to.
if ! systemd-analyze verify --man=no "$work/units/dsmild.service" >"$work/verify.log" 2>&1 ||
    grep -v -e '^$' "$work/verify.log" | grep -q .; then
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify"
fi

echo "== the installed binaries"
[[ $("$root/usr/bin/dsmild" --version) == "dsmild "* ]] || fail "dsmild --version"
[[ $("$root/usr/bin/dsmilctl" --version) == "dsmilctl "* ]] || fail "dsmilctl --version"
"$root/usr/bin/dsmild" check-config "$root/etc/dsmil/dsmil.toml" || fail "check-config of the packaged config"
bash -n "$root/usr/share/bash-completion/completions/dsmilctl" || fail "the bash completion does not parse"
has "$root/usr/share/bash-completion/completions/dsmilctl" 'complete .*dsmilctl' "the bash completion registers nothing"
zcat "$root/usr/share/man/man1/dsmilctl.1.gz" >"$work/dsmilctl.1"
has "$work/dsmilctl.1" '^\.TH dsmilctl' "dsmilctl.1 is not a man page"
"$root/usr/bin/dsmil-fetch-runtimes" --help >"$work/fetch-help"
has "$work/fetch-help" 'default: /usr/lib/dsmil/runtimes' "dsmil-fetch-runtimes does not default to /usr/lib/dsmil/runtimes"
# The production config serves no network listener.
has "$root/etc/dsmil/dsmil.toml" '^tcp = ""$' "the packaged config turns on a TCP listener"
has "$root/etc/dsmil/dsmil.toml" '^http = ""$' "the packaged config turns on an HTTP listener"

# A short start on temporary paths (the packaged config otherwise).
run="$work/run"
mkdir -p "$run"
# start-dsmild.py plays systemd's part and returns at READY=1 (or fails).
python3 "$(dirname "$0")/../scripts/start-dsmild.py" "$root/usr/bin/dsmild" "$run" \
    --config "$root/etc/dsmil/dsmil.toml" --metrics "" >/dev/null ||
    { cat "$run/dsmild.log" >&2; fail "the installed dsmild did not start"; }
pid=$(cat "$run/dsmild.pid")
"$root/usr/bin/dsmilctl" --socket "$run/dsmild.sock" --json status >"$run/status.json" ||
    { cat "$run/dsmild.log" >&2; fail "the installed dsmild did not answer status"; }
python3 - "$run/status.json" "$root/usr/bin/dsmil-fetch-runtimes" <<'PY' || fail "runtime status"
import json, sys
status, command = json.load(open(sys.argv[1])), sys.argv[2]
for rt in status["runtimes"]:
    if not rt["available"]:
        # An installed host names the installed command, not the checkout's script.
        assert command in rt["detail"], rt
        assert "scripts/fetch-runtimes.sh" not in rt["detail"], rt
        print(f"{rt['name']}: missing, says: {rt['detail']}")
    else:
        print(f"{rt['name']}: {rt['detail']}")
PY
kill "$pid"
# Not this shell's child: wait for the process itself to end.
tail --pid="$pid" -f /dev/null
pid=

echo "== purged"
dpkg --root="$root" --force-script-chrootless --log=/dev/null --purge dsmil >"$work/purge.log" 2>&1 ||
    { cat "$work/purge.log" >&2; fail "dpkg --purge"; }
[ ! -e "$root/usr/bin/dsmild" ] && [ ! -e "$root/etc/dsmil/dsmil.toml" ] || fail "purge left files behind"

if command -v lintian >/dev/null; then
    echo "== lintian (advisory)"
    lintian --tag-display-limit 0 "$deb" || true
fi
echo "package check: ok"
