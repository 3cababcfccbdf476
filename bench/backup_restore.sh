#!/usr/bin/env bash
# Backup and verified restore of a ~1 GB database against the plain tools, in the same run.
#
#   cargo build --release --bin plugpos
#   bench/backup_restore.sh [SCALE] [ROUNDS]   # pgbench scale (70: about 1 GB, the default), rounds (3)
#
# Baselines: `pg_dump -Fc | zstd` (backup) and `zstd -d | pg_restore` into a new database (restore).
# Ours:      `plugpos backup create --no-verify` (dump, compress, encrypt, fsync, manifest) and
#            `plugpos backup restore ID --yes` (checksum, decrypt, restore into a new database,
#            audit chain and row counts, switch, audit record: "verified and live", from the
#            command's timings; then the pre-restore backup of the previous database and its drop:
#            "the whole command").
# Prints each round and the medians with the ratios (ours / baseline). Run as root or as a user that can run PostgreSQL.
set -euo pipefail
SCALE="${1:-70}"
ROUNDS="${2:-3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/plugpos"
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin plugpos" >&2; exit 1; }
WORK="$(mktemp -d /tmp/plugpos-bench-backup.XXXXXX)"
chmod 755 "$WORK"
DATA="$WORK/data"
cleanup() { "$BIN" --data-dir "$DATA" db stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "correct horse battery" > "$WORK/pw"
"$BIN" --data-dir "$DATA" init --business-name "Bench Shop" --currency EUR --timezone Europe/Berlin \
  --admin-username admin --admin-password-file "$WORK/pw" >/dev/null
"$BIN" --data-dir "$DATA" db start >/dev/null
SOCK="$("$BIN" --data-dir "$DATA" db status | sed -n 's/.*socket in \(.*\)$/\1/p' | head -1)"
[ -n "$SOCK" ] || SOCK="$(dirname "$(find "$DATA" -name '.s.PGSQL.5432' | head -1)")"
URL="postgresql://postgres@localhost/plugpos?host=$SOCK"
echo "loading pgbench scale $SCALE into the business database..."
pgbench -q -i -s "$SCALE" "$URL" >/dev/null 2>&1
SIZE=$(psql "$URL" -Atc "SELECT pg_size_pretty(pg_database_size('plugpos'))")
echo "database size: $SIZE"

t() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
: > "$WORK/bd"; : > "$WORK/od"; : > "$WORK/br"; : > "$WORK/or"; : > "$WORK/ol"
psql "$URL&dbname=postgres" -qc "CREATE DATABASE bench_baseline TEMPLATE template0"
for round in $(seq "$ROUNDS"); do
  t bash -c "pg_dump -Fc '$URL' | zstd -q -f -o '$WORK/base.dump.zst'" >> "$WORK/bd"
  t bash -c "'$BIN' --data-dir '$DATA' backup create --no-verify > '$WORK/ours.out'" >> "$WORK/od"
  ID=$(awk '{print $2}' "$WORK/ours.out")
  # The backup must verify before it can be restored (the restore verifies it again itself).
  "$BIN" --data-dir "$DATA" backup verify "$ID" >/dev/null
  psql "$URL&dbname=postgres" -qc "DROP DATABASE bench_baseline" -c "CREATE DATABASE bench_baseline TEMPLATE template0"
  t bash -c "zstd -dc '$WORK/base.dump.zst' | pg_restore --no-owner --exit-on-error -d '$URL&dbname=bench_baseline'" >> "$WORK/br"
  t bash -c "'$BIN' --data-dir '$DATA' backup restore '$ID' --yes > '$WORK/restore.out'" >> "$WORK/or"
  sed -n 's/.*"to_live_ms":\([0-9]*\).*/\1/p' "$WORK/restore.out" | awk '{print $1/1000}' >> "$WORK/ol"
  echo "round $round: dump $(tail -1 "$WORK/bd") / $(tail -1 "$WORK/od") s, restore $(tail -1 "$WORK/br") / $(tail -1 "$WORK/or") s; $(grep timings "$WORK/restore.out")"
done
base_dump=$(median < "$WORK/bd"); ours_dump=$(median < "$WORK/od")
base_restore=$(median < "$WORK/br"); ours_restore=$(median < "$WORK/or"); ours_live=$(median < "$WORK/ol")
printf 'medians of %d rounds\n' "$ROUNDS"
printf 'backup:  pg_dump -Fc | zstd %6.1f s   plugpos %6.1f s   ratio %.2f (target <= 1.25)\n' \
  "$base_dump" "$ours_dump" "$(echo "$ours_dump / $base_dump" | bc -l)"
printf 'restore: zstd -d | pg_restore %6.1f s   plugpos, verified and live %6.1f s   ratio %.2f (target <= 1.5)\n' \
  "$base_restore" "$ours_live" "$(echo "$ours_live / $base_restore" | bc -l)"
printf '         the whole command (then the pre-restore backup and dropping the old database) %6.1f s   ratio %.2f\n' \
  "$ours_restore" "$(echo "$ours_restore / $base_restore" | bc -l)"
ls -l "$WORK/base.dump.zst" "$DATA"/backups/*.age | awk '{print $5, $9}' | tail -3
