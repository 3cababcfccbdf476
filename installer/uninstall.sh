#!/bin/sh
# Removes plugpos: stops the service and removes the package, keeping the shop's data
# (/var/lib/plugpos: database, keys, backups) and logs unless --purge-data, which deletes them
# only once the business name is typed back (as a restore asks).
#
#   installer/uninstall.sh [--purge-data] [--dry-run]
set -eu

purge=no
dry=no
for arg in "$@"; do
    case "$arg" in
    --purge-data) purge=yes ;;
    --dry-run) dry=yes ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

DATA=/var/lib/plugpos
CONFIG=/etc/plugpos/plugpos.toml
say() { echo "uninstall: $*"; }
fail() { echo "uninstall: FAILED at $1: $2" >&2; exit 1; }
act() {
    if [ "$dry" = yes ]; then say "would run: $*"; else "$@"; fi
}

if [ "$dry" = no ] && [ "$(id -u)" -ne 0 ]; then
    fail "start" "run as root, or try --dry-run"
fi

# 1. The server must be stopped.
if [ -d /run/systemd/system ] && systemctl is-active --quiet plugpos.service; then
    say "service: stopping plugpos.service"
    act systemctl stop plugpos.service || fail "service" "systemctl stop plugpos failed"
elif [ -f "$DATA/plugpos.pid" ] && kill -0 "$(cat "$DATA/plugpos.pid")" 2>/dev/null; then
    fail "server" "plugpos serve runs (pid $(cat "$DATA/plugpos.pid")): stop it first (kill $(cat "$DATA/plugpos.pid"))"
else
    say "service: not running"
fi

# 2. Deleting the data needs the business name typed back.
if [ "$purge" = yes ] && [ -d "$DATA/pg" ]; then
    started=no
    if ! runuser -u plugpos -- plugpos db status --config "$CONFIG" 2>/dev/null | grep -q '^running'; then
        runuser -u plugpos -- plugpos db start --config "$CONFIG" >/dev/null \
            || fail "purge" "cannot start the database to read the business name"
        started=yes
    fi
    name=$(runuser -u plugpos -- psql -h "$DATA/run" -U postgres -d plugpos -tAc 'SELECT name FROM business' 2>/dev/null || true)
    if [ "$started" = yes ]; then
        runuser -u plugpos -- plugpos db stop --config "$CONFIG" >/dev/null || true
    fi
    if [ -n "$name" ]; then
        say "this deletes every sale, closing, key and backup of \"$name\" on this machine."
        printf 'uninstall: type the business name to confirm: '
        read -r typed || typed=
        [ "$typed" = "$name" ] || fail "purge" "the name typed is not \"$name\": nothing was deleted"
    else
        say "no business is set up in $DATA: nothing of a shop's to confirm"
    fi
fi

# 3. The package (its prerm stops and disables the service).
if dpkg -s plugpos >/dev/null 2>&1; then
    if [ "$purge" = yes ]; then
        say "package: purging plugpos (the program, its configuration and its user)"
        act dpkg -P plugpos >/dev/null || fail "package" "dpkg -P plugpos failed"
    else
        say "package: removing plugpos (the configuration in /etc/plugpos stays)"
        act dpkg -r plugpos >/dev/null || fail "package" "dpkg -r plugpos failed"
    fi
else
    say "package: not installed"
fi

# 4. The data.
if [ "$purge" = yes ]; then
    say "data: deleting $DATA and /var/log/plugpos"
    act rm -rf "$DATA" /var/log/plugpos
else
    say "data: kept in $DATA (database, keys, backups) and /var/log/plugpos; --purge-data deletes them"
fi
