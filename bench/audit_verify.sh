#!/bin/sh
# Audit verification throughput (SPEC target: at least 300,000 records/s).
#
# Builds a managed cluster in a scratch data directory, inserts N audit records with SQL, lets
# `plugpos audit verify` chain them (timed: the chainer's throughput), then times verification
# runs of the chained log, and as a baseline in the same run, PostgreSQL reading the same rows
# (`psql` summing their lengths), so the ratio shows what the hashing costs on top of the read.
#
# Usage: bench/audit_verify.sh [N] (default 1000000); build first: cargo build --release
set -eu
N=${1:-1000000}
BIN=${PLUGPOS_BIN:-target/release/plugpos}
DIR=$(mktemp -d /tmp/plugpos-bench-audit-XXXXXX)
chmod 755 "$DIR"
trap '"$BIN" db stop --data-dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
export PLUGPOS_LOG__STDOUT=false
"$BIN" db start --data-dir "$DIR" >/dev/null
"$BIN" migrate --data-dir "$DIR" >/dev/null
PSQL="psql -X -q -h $DIR/run -U postgres -d plugpos -v ON_ERROR_STOP=1"
if [ "$(id -u)" = 0 ]; then PSQL="runuser -u postgres -- $PSQL"; fi

$PSQL -c "INSERT INTO audit_records (id, at, actor_username, actor_role, module, entity, entity_id, action, before_json, after_json, request_id)
  SELECT gen_random_uuid(), timestamp '2026-01-01' + i * interval '1 millisecond', 'cashier' || (i % 20), 'cashier',
         'operations.sales', 'sale', i::text, 'sale.complete', NULL,
         '{\"lines\":3,\"total\":\"' || (i % 1000) || '.50\"}', 'req-' || i
  FROM generate_series(1, $N) AS i;
  INSERT INTO audit_pending SELECT id FROM audit_records;"

now() { date +%s.%N; }
t0=$(now); "$BIN" audit verify --data-dir "$DIR" >/dev/null; t1=$(now)
echo "chaining + first verify of $N records: $(echo "$t1 - $t0" | bc) s"

for run in 1 2 3; do
  t0=$(now)
  $PSQL -t -c "SELECT sum(length(r.id::text) + length(coalesce(r.after_json, '')) + length(c.hash)) FROM audit_chain c JOIN audit_records r ON r.id = c.record_id" >/dev/null
  t1=$(now)
  "$BIN" audit verify --data-dir "$DIR" > "$DIR/report.json"
  t2=$(now)
  base=$(echo "$t1 - $t0" | bc); ver=$(echo "$t2 - $t1" | bc)
  echo "run $run: baseline read $base s, verify $ver s, $(echo "$N / $ver" | bc) records/s, ratio $(echo "scale=2; $ver / $base" | bc)"
done
grep -q '"ok": true' "$DIR/report.json" && echo "report ok, verified $(grep -o '"verified": [0-9]*' "$DIR/report.json")"
