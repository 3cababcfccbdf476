#!/bin/sh
# Checks a built Debian package without installing it: `packaging/check-deb.sh [DEB]` (default:
# target/debian/plugpos_<version>_<arch>.deb). Its files and their modes, the control fields, the
# conffile, the maintainer scripts (syntax, and shellcheck when installed) and the systemd unit
# (its directives, and `systemd-analyze verify` against the packaged binary when available).
# Prints one line per check; exits 1 naming the first that fails.
set -eu
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb=${1:-target/debian/plugpos_${version}_$(dpkg --print-architecture).deb}
if [ ! -f "$deb" ]; then
    echo "check-deb.sh: no package $deb: run packaging/build-deb.sh first" >&2
    exit 1
fi

fail() { echo "FAIL $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

contents=$(dpkg-deb --contents "$deb")
mode_of() { echo "$contents" | awk -v p="./$1" '$6 == p { print $1 " " $2 }'; }
expect() {
    found=$(mode_of "$1")
    [ "$found" = "$2" ] || fail "$1: expected '$2', found '${found:-nothing}'"
    ok "$1 $2"
}
expect usr/bin/plugpos "-rwxr-xr-x root/root"
expect lib/systemd/system/plugpos.service "-rw-r--r-- root/root"
expect etc/plugpos/plugpos.toml "-rw-r----- root/root"
expect usr/share/doc/plugpos/operations.md "-rw-r--r-- root/root"
expect usr/share/doc/plugpos/LICENSE-Droid.txt "-rw-r--r-- root/root"
extra=$(echo "$contents" | awk '{ print $6 }' | grep -v -e '/$' \
    -e '^./usr/bin/plugpos$' -e '^./lib/systemd/system/plugpos.service$' \
    -e '^./etc/plugpos/plugpos.toml$' -e '^./usr/share/doc/plugpos/' || true)
[ -z "$extra" ] || fail "unexpected files: $extra"
ok "no other files"

info=$(dpkg-deb --info "$deb")
field() { dpkg-deb --field "$deb" "$1"; }
[ "$(field Package)" = plugpos ] || fail "Package is not plugpos"
field Depends | grep -q '\bpostgresql\b' || fail "Depends lacks PostgreSQL's server package"
ok "control: $(field Package) $(field Version) $(field Architecture), Depends: $(field Depends)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb --control "$deb" "$work/control"
dpkg-deb --extract "$deb" "$work/root"
grep -qx /etc/plugpos/plugpos.toml "$work/control/conffiles" || fail "plugpos.toml is not a conffile"
ok "conffile /etc/plugpos/plugpos.toml"
for script in postinst prerm postrm; do
    [ -x "$work/control/$script" ] || fail "$script is missing or not executable"
    sh -n "$work/control/$script" || fail "$script: syntax error"
    if command -v shellcheck >/dev/null 2>&1; then
        shellcheck -s sh "$work/control/$script" || fail "$script: shellcheck"
    fi
    ok "$script"
done
echo "$info" | grep -q postinst || fail "no postinst in the control archive"

unit="$work/root/lib/systemd/system/plugpos.service"
for directive in "Type=simple" "User=plugpos" "Restart=on-failure" "NoNewPrivileges=yes" \
    "ProtectSystem=strict" "PrivateTmp=yes" "ReadWritePaths=/var/lib/plugpos /var/log/plugpos" \
    "ExecStart=/usr/bin/plugpos serve --config /etc/plugpos/plugpos.toml"; do
    grep -qx "$directive" "$unit" || fail "the unit lacks $directive"
done
ok "unit directives"
if command -v systemd-analyze >/dev/null 2>&1; then
    # Verified against the packaged binary (not one installed on this machine).
    sed "s#/usr/bin/plugpos#$work/root/usr/bin/plugpos#; s#/etc/plugpos/#$work/root/etc/plugpos/#" \
        "$unit" > "$work/plugpos.service"
    systemd-analyze verify "$work/plugpos.service" || fail "systemd-analyze verify"
    ok "systemd-analyze verify"
else
    echo "skip systemd-analyze (not installed)"
fi
"$work/root/usr/bin/plugpos" --version >/dev/null || fail "the packaged binary does not run"
"$work/root/usr/bin/plugpos" config check --config "$work/root/etc/plugpos/plugpos.toml" >/dev/null \
    || fail "the packaged configuration does not pass plugpos config check"
ok "binary runs, configuration checks"
echo "package OK: $deb"
