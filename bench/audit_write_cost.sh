#!/bin/sh
# What the audit design costs a writer (docs/audit-chain.md). In one scratch managed cluster and one
# run, pgbench drives the shared raw-SQL sale (../shared/bench) three ways at 8 and 32 clients:
#   plain    the sale without any audit record (the ceiling),
#   naive    the sale plus an audit row under a hash-chain head lock (shared/bench/raw_sale.pgbench),
#   plugpos  the sale plus plugpos's two audit inserts (record + pending marker), no head lock;
# then times `plugpos audit verify`, which chains the backlog the plugpos runs left (the chainer's
# throughput) and verifies it.
# Usage: bench/audit_write_cost.sh [seconds per run] (default 15); build first: cargo build --release
set -eu
SECS=${1:-15}
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}
BIN=${PLUGPOS_BIN:-$HERE/../target/release/plugpos}
DIR=$(mktemp -d /tmp/plugpos-bench-write-XXXXXX)
chmod 755 "$DIR"
trap '"$BIN" db stop --data-dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
export PLUGPOS_LOG__STDOUT=false
"$BIN" db start --data-dir "$DIR" >/dev/null
"$BIN" migrate --data-dir "$DIR" >/dev/null
AS=""; if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; fi
cp "$SHARED/raw_sale_schema.sql" "$SHARED/raw_sale.pgbench" "$HERE/sql/"*.pgbench "$DIR/" && chmod 644 "$DIR"/*.sql "$DIR"/*.pgbench
$AS psql -X -q -h "$DIR/run" -U postgres -d plugpos -f "$DIR/raw_sale_schema.sql" >/dev/null 2>&1
bench() { $AS pgbench -n -h "$DIR/run" -U postgres -f "$DIR/$1" -c "$2" -j 2 -T "$SECS" plugpos 2>/dev/null | grep -E "^tps" | sed 's/ (without initial connection time)//'; }
for clients in 8 32; do
  echo "clients $clients: plain    $(bench sale_plain.pgbench $clients)"
  echo "clients $clients: naive    $(bench raw_sale.pgbench $clients)"
  echo "clients $clients: plugpos  $(bench sale_plugpos_audit.pgbench $clients)"
done
pending=$($AS psql -X -q -t -h "$DIR/run" -U postgres -d plugpos -c "SELECT count(*) FROM audit_pending" | tr -d ' ')
t0=$(date +%s.%N); "$BIN" audit verify --data-dir "$DIR" >/dev/null; t1=$(date +%s.%N)
echo "chained and verified $pending pending records in $(echo "$t1 - $t0" | bc) s"
