#!/bin/sh
# Installs the built package into this machine and tries it, then removes it: a smoke test, as
# root, not part of `cargo test` (it changes the machine: a system user, /usr/bin/plugpos,
# /etc/plugpos). `packaging/smoke-install.sh [DEB]`. Refuses to run where plugpos is installed or
# /var/lib/plugpos exists (it would be a real shop's).
#
# It checks: `dpkg -i` succeeds; the user, directories and modes; the server starts as the
# plugpos user from the packaged configuration (with systemd when it runs here, else by hand as
# the unit would) and answers /health/ready; `dpkg -r` keeps the data; `dpkg -P` says what it
# leaves and leaves it. Then it deletes what the test created.
set -eu
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "smoke-install.sh: run as root (it installs a package)" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb=${1:-target/debian/plugpos_${version}_$(dpkg --print-architecture).deb}
if [ ! -f "$deb" ]; then
    echo "smoke-install.sh: no package $deb: run packaging/build-deb.sh first" >&2
    exit 1
fi
if dpkg -s plugpos >/dev/null 2>&1 || [ -e /var/lib/plugpos ]; then
    echo "smoke-install.sh: plugpos is installed here or /var/lib/plugpos exists: not touching a real install" >&2
    exit 1
fi

fail() { echo "FAIL $*" >&2; exit 1; }
ok() { echo "ok   $*"; }
cleanup() {
    if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; sleep 3; fi
    dpkg -P plugpos >/dev/null 2>&1 || true
    rm -rf /var/lib/plugpos /var/log/plugpos
}
trap cleanup EXIT

dpkg -i "$deb" >/dev/null || fail "dpkg -i"
ok "dpkg -i $deb"
getent passwd plugpos >/dev/null || fail "no plugpos user"
[ "$(stat -c '%U:%G %a' /var/lib/plugpos)" = "plugpos:plugpos 700" ] || fail "/var/lib/plugpos: $(stat -c '%U:%G %a' /var/lib/plugpos)"
[ "$(stat -c '%U:%G %a' /var/log/plugpos)" = "plugpos:adm 2750" ] || fail "/var/log/plugpos: $(stat -c '%U:%G %a' /var/log/plugpos)"
[ "$(readlink /var/lib/plugpos/logs)" = /var/log/plugpos ] || fail "the logs link"
[ "$(stat -c '%U:%G %a' /etc/plugpos/plugpos.toml)" = "root:plugpos 640" ] || fail "plugpos.toml: $(stat -c '%U:%G %a' /etc/plugpos/plugpos.toml)"
ok "user plugpos, /var/lib/plugpos 0700, /var/log/plugpos 2750 (adm), plugpos.toml 0640 root:plugpos"

ready() {
    i=0
    while [ $i -lt 60 ]; do
        if wget -q -O /dev/null http://127.0.0.1:8470/health/ready 2>/dev/null \
            || curl -sf -o /dev/null http://127.0.0.1:8470/health/ready 2>/dev/null; then
            return 0
        fi
        i=$((i + 1)); sleep 1
    done
    return 1
}
if [ -d /run/systemd/system ]; then
    systemctl is-enabled --quiet plugpos.service || fail "the service is not enabled"
    ready || fail "the service did not become ready (journalctl -u plugpos)"
    ok "systemd started plugpos.service and it is ready"
else
    echo "note systemd does not run here: starting the server as the unit would"
    runuser -u plugpos -- /usr/bin/plugpos serve --config /etc/plugpos/plugpos.toml >/dev/null 2>&1 &
    server=$!
    ready || fail "the server did not become ready (see /var/log/plugpos)"
    ok "plugpos serve as the plugpos user is ready"
    kill "$server"; wait "$server" 2>/dev/null || true; server=
fi
[ -f /var/lib/plugpos/setup-token ] || fail "no setup token in /var/lib/plugpos"
logged=no
for file in /var/log/plugpos/*; do [ -f "$file" ] && logged=yes; done
[ "$logged" = yes ] || fail "no log file in /var/log/plugpos"
ok "setup token in the data directory, logs in /var/log/plugpos"

dpkg -r plugpos >/dev/null || fail "dpkg -r"
[ -d /var/lib/plugpos/pg ] || fail "dpkg -r removed the database"
[ -f /etc/plugpos/plugpos.toml ] || fail "dpkg -r removed the conffile"
ok "dpkg -r keeps the data and the configuration"
said=$(dpkg -P plugpos 2>&1) || fail "dpkg -P"
echo "$said" | grep -q "Left in place: /var/lib/plugpos" || fail "dpkg -P did not say what it leaves"
[ -d /var/lib/plugpos/pg ] || fail "dpkg -P removed the database"
[ ! -e /etc/plugpos ] || fail "dpkg -P left /etc/plugpos"
getent passwd plugpos >/dev/null && fail "dpkg -P left the plugpos user"
ok "dpkg -P removes the configuration and the user, keeps the data and says so"
echo "smoke install OK"
