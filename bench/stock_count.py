#!/usr/bin/env python3
"""Posting a stock count of 20,000 lines (issue 33): POST /api/v1/stock/counts/{id}/post against plain SQL.

In one scratch managed cluster, --rounds times, each round on a location of its own:
  load      --lines tracked products (once, by SQL as the migrations' role: loading is not what is measured)
            with a level at the round's location;
  count     a count of the location opened and its lines entered through the API, 1,000 per request (every
            product counted, most of them off by one);
  post      POST .../post through plugpos: the lock, the checks, one statement writing every level and
            movement, the audit record, the commit;
  baseline  the same work as plain SQL in one psql session (the levels updated by the differences and the
            movements inserted, on a scratch copy of the lines), timed by psql.
Prints each round and the medians (post seconds, baseline seconds, ratio). Target: the post under 3 s.

Usage: bench/stock_count.py [--lines 20000] [--rounds 3]
Build first: cargo build --release --bin plugpos
"""
import argparse, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sale_throughput import call, free_port, start_server  # noqa: E402

PRODUCTS = """
INSERT INTO products (id, sku, name, search_text, price, cost_price, tax_class_id, track_stock)
SELECT gen_random_uuid(), 'B' || i, 'Bench product ' || i, 'bench product ' || i, 2.50, 1.10, '{tax}', true
  FROM generate_series(1, {lines}) AS i;
ANALYZE products;
"""

LEVELS = """
INSERT INTO stock_levels (product_id, location_id, quantity) SELECT id, '{location}', 10 FROM products WHERE sku LIKE 'B%';
INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, created_at)
SELECT gen_random_uuid(), id, '{location}', 10, 10, 'received', now() FROM products WHERE sku LIKE 'B%';
ANALYZE stock_levels;
"""

BASELINE = """
\\timing on
BEGIN;
CREATE TEMP TABLE lines AS SELECT product_id, counted, book FROM stock_count_lines WHERE count_id = '{count}';
WITH diff AS (SELECT product_id, counted - book AS delta FROM lines WHERE counted <> book),
     levels AS (UPDATE stock_levels s SET quantity = s.quantity + d.delta, version = s.version + 1
                  FROM diff d WHERE s.product_id = d.product_id AND s.location_id = '{location}'
                RETURNING s.product_id, s.quantity)
INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, document_id, created_at)
SELECT gen_random_uuid(), d.product_id, '{location}', d.delta, l.quantity, 'count', '{count}', now()
  FROM diff d JOIN levels l USING (product_id);
ROLLBACK;
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-count-", dir="/tmp"); os.chmod(root, 0o777)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    proc = start_server(args.binary, data, port)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    sock = os.path.join(data, "run")

    def psql(sql, name):
        path = os.path.join(root, name)
        open(path, "w").write(sql); os.chmod(path, 0o644)
        return subprocess.run(as_pg + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", sock, "-U", "postgres", "-d",
                              "plugpos", "-f", path], check=True, capture_output=True, text=True).stdout
    try:
        for _ in range(300):
            try:
                call(base + "/health/ready"); break
            except Exception: time.sleep(0.1)
        setup_token = open(os.path.join(data, "setup-token")).read().strip()
        call(base + "/api/v1/setup", "POST", {"setup_token": setup_token,
             "business": {"name": "Bench", "currency": "EUR", "timezone": "UTC"},
             "admin": {"username": "admin", "password": "bench password 1"}})
        admin = call(base + "/api/v1/auth/login", "POST", {"username": "admin", "password": "bench password 1"})["access_token"]
        tax = call(base + "/api/v1/tax-classes", "POST", {"name": "Standard", "rate": "0.19"}, admin)["id"]
        psql(PRODUCTS.format(tax=tax, lines=args.lines), "products.sql")
        ids = subprocess.run(as_pg + ["psql", "-X", "-At", "-h", sock, "-U", "postgres", "-d", "plugpos", "-c",
                             "SELECT id FROM products WHERE sku LIKE 'B%' ORDER BY sku"],
                             check=True, capture_output=True, text=True).stdout.split()
        branch = call(base + "/api/v1/branches", token=admin)["items"][0]["id"]
        rows = []
        for r in range(args.rounds):
            location = call(base + "/api/v1/locations", "POST", {"name": f"Store {r + 1}", "branch_id": branch}, admin)["id"]
            psql(LEVELS.format(location=location), f"levels{r}.sql")
            count = call(base + "/api/v1/stock/counts", "POST", {"location_id": location, "scope": "all"}, admin)
            started = time.monotonic()
            for i in range(0, len(ids), 1000):
                batch = [{"product_id": p, "quantity": str(9 if (i + j) % 10 else 10)} for j, p in enumerate(ids[i:i + 1000])]
                entered = call(base + f"/api/v1/stock/counts/{count['id']}/lines", "POST", {"lines": batch}, admin)
            entering = time.monotonic() - started
            out = psql(BASELINE.format(count=count["id"], location=location), f"base{r}.sql")
            base_s = sum(float(m) for m in re.findall(r"Time: ([0-9.]+) ms", out)) / 1000
            started = time.monotonic()
            posted = call(base + f"/api/v1/stock/counts/{count['id']}/post", "POST", {"version": entered["version"]}, admin)
            took = time.monotonic() - started
            rows.append((took, base_s))
            print(f"round {r + 1}: {posted['lines']} lines entered in {entering:.1f} s ({len(ids) // 1000} requests); "
                  f"post {took:.3f} s, SQL alone {base_s:.3f} s, ratio {took / base_s:.2f}", flush=True)
        took = statistics.median(r[0] for r in rows); base_s = statistics.median(r[1] for r in rows)
        ratio = statistics.median(r[0] / r[1] for r in rows)
        print(f"medians: post {took:.3f} s (target under 3 s), SQL alone {base_s:.3f} s, ratio {ratio:.2f}")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
