#!/bin/sh
# Builds and signs an update package for `plugpos upgrade`:
#   packaging/build-plugpkg.sh --key FILE [--min-from VERSION] [--no-build]
# Writes target/plugpkg/plugpos-<version>-<arch>.plugpkg and prints its path. The key is an
# ed25519 signing key from `plugpos package keygen -o FILE`: the release key for published
# packages (its public half is packaging/release-key.pub, compiled into plugpos), or your own,
# whose public half the shops add to `upgrade.trusted_keys`.
set -eu
cd "$(dirname "$0")/.."

key=
min_from=0.1.0
build=yes
while [ $# -gt 0 ]; do
    case "$1" in
    --key) key=${2:?--key needs a file}; shift 2 ;;
    --min-from) min_from=${2:?--min-from needs a version}; shift 2 ;;
    --no-build) build=no; shift ;;
    *) echo "build-plugpkg.sh: unknown option $1 (known: --key FILE, --min-from VERSION, --no-build)" >&2; exit 2 ;;
    esac
done
[ -n "$key" ] || { echo "build-plugpkg.sh: --key FILE is required (make one with: plugpos package keygen -o FILE)" >&2; exit 2; }
[ -r "$key" ] || { echo "build-plugpkg.sh: cannot read the signing key $key" >&2; exit 1; }

if [ "$build" = yes ]; then
    PLUGPOS_BUILD_ID=$(git describe --always --dirty 2>/dev/null || echo unknown)
    export PLUGPOS_BUILD_ID
    cargo build --release --locked
fi
binary=target/release/plugpos
[ -x "$binary" ] || { echo "build-plugpkg.sh: $binary is missing: build it or drop --no-build" >&2; exit 1; }

"$binary" package build --binary "$binary" --key "$key" --min-from "$min_from" -o target/plugpkg
