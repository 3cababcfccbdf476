#!/bin/sh
# Builds the Debian package from this repository: `packaging/build-deb.sh [--no-build]`.
# Writes target/debian/plugpos_<version>_<arch>.deb and prints its path. Needs cargo and
# dpkg-deb; builds the release binary first unless --no-build (then it must exist).
set -eu
cd "$(dirname "$0")/.."

build=yes
for arg in "$@"; do
    case "$arg" in
    --no-build) build=no ;;
    *) echo "build-deb.sh: unknown option $arg (known: --no-build)" >&2; exit 2 ;;
    esac
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "build-deb.sh: no version in Cargo.toml" >&2; exit 1; }

if [ "$build" = yes ]; then
    PLUGPOS_BUILD_ID=$(git describe --always --dirty 2>/dev/null || echo unknown)
    export PLUGPOS_BUILD_ID
    cargo build --release --locked
fi
binary=target/release/plugpos
[ -x "$binary" ] || { echo "build-deb.sh: $binary is missing: build it or drop --no-build" >&2; exit 1; }

stage=target/debian/stage
rm -rf "$stage"
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/etc/plugpos" "$stage/usr/share/doc/plugpos"
install -m 0755 "$binary" "$stage/usr/bin/plugpos"
strip --strip-unneeded "$stage/usr/bin/plugpos" 2>/dev/null || true
install -m 0644 packaging/debian/plugpos.service "$stage/lib/systemd/system/plugpos.service"
install -m 0640 packaging/debian/plugpos.toml "$stage/etc/plugpos/plugpos.toml"
install -m 0644 README.md docs/operations.md "$stage/usr/share/doc/plugpos/"
install -m 0644 src/shared/fonts/LICENSE-DejaVu.txt src/shared/fonts/LICENSE-Droid.txt \
    "$stage/usr/share/doc/plugpos/"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done
install -m 0644 packaging/debian/conffiles "$stage/DEBIAN/conffiles"

size=$(du -sk "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: plugpos
Version: $version
Architecture: $arch
Maintainer: 3PlugPOS developers <dev@3plugpos.invalid>
Installed-Size: $size
Depends: postgresql, adduser, libc6
Recommends: zstd, age
Section: misc
Priority: optional
Description: offline-first point-of-sale server for a shop
 plugpos serves the cashiers' tills on the shop network over REST and WebSocket,
 with its own PostgreSQL cluster, a tamper-evident audit log, signed receipts and
 closings, and encrypted backups. The service runs as the plugpos user with its
 data in /var/lib/plugpos and its logs in /var/log/plugpos.
CONTROL

out="target/debian/plugpos_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
