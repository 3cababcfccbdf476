#!/bin/sh
# Installs plugpos on Debian or Ubuntu, idempotently: run it again and it changes nothing and says
# so. Every step says what it did; a failure stops with one line naming the step and the remedy.
#
#   installer/install.sh [--deb FILE] [--bind ADDRESS] [--dry-run]
#       [--business-name NAME --currency EUR --timezone Europe/Paris
#        --admin-username NAME --admin-password-file FILE]
#
# --deb        the package to install (default: target/debian/plugpos_<version>_<arch>.deb,
#              built by packaging/build-deb.sh)
# --bind       the address to serve the tills on (http.bind); the port is opened in an active
#              firewall (ufw or nftables) only when it is not a loopback address
# --dry-run    print each step without doing it
# With the business and admin options, first-run setup runs non-interactively (plugpos init);
# without them the installer prints where the desktop client's setup wizard finds the token.
set -eu
cd "$(dirname "$0")/.."

dry=no
deb=
bind=
business=
currency=
timezone=
admin=
password_file=
while [ $# -gt 0 ]; do
    case "$1" in
    --dry-run) dry=yes; shift ;;
    --deb) deb=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --business-name) business=$2; shift 2 ;;
    --currency) currency=$2; shift 2 ;;
    --timezone) timezone=$2; shift 2 ;;
    --admin-username) admin=$2; shift 2 ;;
    --admin-password-file) password_file=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

CONFIG=/etc/plugpos/plugpos.toml
DATA=/var/lib/plugpos
PORT=8470
changed=0

# Steps' own output may be silenced; what the installer says always reaches the terminal (fd 3).
exec 3>&1
say() { echo "install: $*" >&3; }
fail() { echo "install: FAILED at $1: $2" >&2; exit 1; }
# Runs a change, or says what it would run.
act() {
    changed=$((changed + 1))
    if [ "$dry" = yes ]; then
        say "would run: $*"
    else
        "$@"
    fi
}

# 1. The system.
[ -r /etc/os-release ] || fail "system check" "no /etc/os-release: this installer is for Debian and Ubuntu"
# shellcheck disable=SC1091
. /etc/os-release
case "${ID:-} ${ID_LIKE:-}" in
*debian* | *ubuntu*) ;;
*) fail "system check" "${PRETTY_NAME:-this system} is not Debian or Ubuntu: install the binary by hand (docs/operations.md)" ;;
esac
arch=$(dpkg --print-architecture)
case "$arch" in
amd64 | arm64) ;;
*) fail "system check" "architecture $arch is not supported (amd64, arm64)" ;;
esac
say "system: ${PRETTY_NAME:-$ID} on $arch"
if [ "$dry" = no ] && [ "$(id -u)" -ne 0 ]; then
    fail "system check" "run as root (sudo installer/install.sh), or try --dry-run"
fi

# 2. PostgreSQL's server package (the managed cluster runs its programs).
if dpkg -s postgresql >/dev/null 2>&1; then
    say "PostgreSQL: installed already ($(dpkg-query -W -f='${Version}' postgresql))"
else
    say "PostgreSQL: installing the server package"
    act sh -c 'apt-get install -y postgresql >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y postgresql >/dev/null; }' \
        || fail "PostgreSQL" "apt-get could not install postgresql: check the package sources, then run again"
fi

# 3. The package.
if [ -z "$deb" ]; then
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml 2>/dev/null | head -n 1)
    deb="target/debian/plugpos_${version}_${arch}.deb"
fi
[ -f "$deb" ] || fail "package" "$deb not found: build it with packaging/build-deb.sh or pass --deb FILE"
wanted=$(dpkg-deb --field "$deb" Version)
installed=$(dpkg-query -W -f='${Status} ${Version}' plugpos 2>/dev/null || true)
if [ "$installed" = "install ok installed $wanted" ]; then
    say "plugpos: version $wanted installed already"
else
    say "plugpos: installing $wanted from $deb"
    act dpkg -i "$deb" >/dev/null || fail "package" "dpkg -i $deb failed: see its messages above"
fi

# 4. The address to serve on.
current_bind=$(sed -n 's/^bind = "\(.*\)"$/\1/p' "$CONFIG" 2>/dev/null | head -n 1)
current_bind=${current_bind:-127.0.0.1}
if [ -n "$bind" ] && [ "$bind" != "$current_bind" ]; then
    say "address: $current_bind -> $bind ($CONFIG)"
    act sed -i "s/^bind = \".*\"$/bind = \"$bind\"/" "$CONFIG" || fail "address" "cannot edit $CONFIG"
    restart=yes
else
    bind=$current_bind
    say "address: $bind, unchanged"
    restart=no
fi

# 5. The firewall: only for an address the tills reach.
case "$bind" in
127.* | localhost | ::1) say "firewall: not needed ($bind is this machine only)" ;;
*)
    if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q '^Status: active'; then
        if ufw status | grep -q "^$PORT/tcp .*ALLOW"; then
            say "firewall (ufw): port $PORT open already"
        else
            say "firewall (ufw): opening port $PORT"
            act ufw allow "$PORT/tcp" >/dev/null || fail "firewall" "ufw allow $PORT/tcp failed"
        fi
    elif command -v nft >/dev/null 2>&1 && nft list table inet filter >/dev/null 2>&1; then
        if nft list chain inet filter input 2>/dev/null | grep -q 'comment "plugpos"'; then
            say "firewall (nftables): port $PORT open already"
        else
            say "firewall (nftables): opening port $PORT in inet filter input (add it to /etc/nftables.conf to keep it)"
            act nft add rule inet filter input tcp dport "$PORT" accept comment '"plugpos"' \
                || fail "firewall" "nft add rule failed"
        fi
    else
        say "firewall: none active (ufw, nftables inet filter); nothing to open"
    fi
    ;;
esac

# 6. The service.
if [ -d /run/systemd/system ]; then
    if systemctl is-active --quiet plugpos.service; then
        if [ "$restart" = yes ]; then
            say "service: restarting for the new address"
            act systemctl restart plugpos.service || fail "service" "systemctl restart plugpos failed: journalctl -u plugpos"
        else
            say "service: running already"
        fi
    else
        say "service: enabling and starting plugpos.service"
        act systemctl enable --now plugpos.service >/dev/null || fail "service" "systemctl enable --now plugpos failed: journalctl -u plugpos"
    fi
    if [ "$dry" = no ]; then
        i=0
        until wget -q -O /dev/null "http://127.0.0.1:$PORT/health/ready" 2>/dev/null \
            || curl -sf -o /dev/null "http://127.0.0.1:$PORT/health/ready" 2>/dev/null; do
            i=$((i + 1))
            [ $i -lt 90 ] || fail "readiness" "not ready after 90 s: curl http://127.0.0.1:$PORT/health/ready and journalctl -u plugpos"
            sleep 1
        done
        say "service: ready on http://$bind:$PORT"
    fi
else
    say "service: systemd does not run here (a container?); start the server with"
    say "    runuser -u plugpos -- plugpos serve --config $CONFIG"
fi

# 7. First-run setup.
if [ "$dry" = no ] && [ ! -f "$DATA/setup-token" ] && [ -d "$DATA/pg" ]; then
    say "setup: done already"
elif [ -n "$business" ]; then
    if [ -z "$currency" ] || [ -z "$timezone" ] || [ -z "$admin" ] || [ -z "$password_file" ]; then
        fail "setup" "--business-name needs --currency, --timezone, --admin-username and --admin-password-file"
    fi
    [ -r "$password_file" ] || [ "$dry" = yes ] || fail "setup" "cannot read $password_file"
    say "setup: creating \"$business\" with the admin $admin"
    act runuser -u plugpos -- plugpos init --config "$CONFIG" --business-name "$business" \
        --currency "$currency" --timezone "$timezone" --admin-username "$admin" \
        --admin-password-stdin <"${password_file:-/dev/null}" \
        || fail "setup" "plugpos init failed: see its message above"
else
    say "setup: not done yet. Open the desktop client's setup wizard on http://$bind:$PORT with the token"
    say "    in $DATA/setup-token (root can read it), or run this installer again with --business-name ..."
fi

if [ "$dry" = yes ]; then
    say "dry run: $changed step(s) would change something; nothing was changed"
elif [ "$changed" -eq 0 ]; then
    say "nothing to do: plugpos is installed and set up as asked"
else
    say "done: $changed step(s) changed"
fi
