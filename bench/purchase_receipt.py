#!/usr/bin/env python3
"""Receiving a 500-line purchase order (issue 33): POST /api/v1/purchase-orders/{id}/receipts against plain SQL.

In one scratch managed cluster, --rounds times:
  load      --lines tracked products (once, by SQL as the migrations' role: loading is not what is measured)
            with some stock and a cost price, and a supplier;
  order     a purchase order of every product, created and marked ordered through the API;
  receive   POST .../receipts with every line through plugpos: per line the stock on hand, the cost by the
            moving average, the level and its movement, the cost price; the receipt, the supplier's prices, the
            order's state, the audit record, the commit;
  baseline  the same writes as plain SQL in one psql session (levels, movements, cost prices; rolled back),
            timed by psql.
Prints each round and the medians (receipt seconds, baseline seconds, ratio). Target: the receipt under 1 s.

Usage: bench/purchase_receipt.py [--lines 500] [--rounds 3]
Build first: cargo build --release --bin plugpos
"""
import argparse, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sale_throughput import call, free_port, start_server  # noqa: E402

PRODUCTS = """
INSERT INTO products (id, sku, name, search_text, price, cost_price, tax_class_id, track_stock)
SELECT gen_random_uuid(), 'P' || i, 'Bench product ' || i, 'bench product ' || i, 2.50, 1.10, '{tax}', true
  FROM generate_series(1, {lines}) AS i;
INSERT INTO stock_levels (product_id, location_id, quantity) SELECT id, '{location}', 10 FROM products WHERE sku LIKE 'P%';
INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, created_at)
SELECT gen_random_uuid(), id, '{location}', 10, 10, 'received', now() FROM products WHERE sku LIKE 'P%';
ANALYZE products; ANALYZE stock_levels;
"""

BASELINE = """
\\timing on
BEGIN;
WITH lines AS (SELECT product_id, quantity, unit_cost FROM purchase_order_lines WHERE order_id = '{order}'),
     levels AS (UPDATE stock_levels s SET quantity = s.quantity + l.quantity, version = s.version + 1
                  FROM lines l WHERE s.product_id = l.product_id AND s.location_id = '{location}'
                RETURNING s.product_id, s.quantity),
     moves AS (INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, document_id, created_at)
               SELECT gen_random_uuid(), l.product_id, '{location}', l.quantity, v.quantity, 'received', gen_random_uuid(), now()
                 FROM lines l JOIN levels v USING (product_id))
UPDATE products p SET cost_price = round((10 * p.cost_price + l.quantity * l.unit_cost) / (10 + l.quantity), 4),
       version = p.version + 1 FROM lines l WHERE p.id = l.product_id;
ROLLBACK;
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-po-", dir="/tmp"); os.chmod(root, 0o777)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    proc = start_server(args.binary, data, port)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    sock = os.path.join(data, "run")

    def psql(sql, name, *extra):
        path = os.path.join(root, name)
        open(path, "w").write(sql); os.chmod(path, 0o644)
        return subprocess.run(as_pg + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *extra, "-h", sock, "-U", "postgres",
                              "-d", "plugpos", "-f", path], check=True, capture_output=True, text=True).stdout
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
        location = call(base + "/api/v1/locations", token=admin)["items"][0]["id"]
        psql(PRODUCTS.format(tax=tax, lines=args.lines, location=location), "products.sql")
        ids = psql("SELECT id FROM products WHERE sku LIKE 'P%' ORDER BY sku;", "ids.sql", "-At").split()
        supplier = call(base + "/api/v1/suppliers", "POST", {"name": "Bench supplier"}, admin)["id"]
        rows = []
        for r in range(args.rounds):
            lines = [{"product_id": p, "quantity": "12", "unit_cost": "1.5000"} for p in ids]
            order = call(base + "/api/v1/purchase-orders", "POST", {"supplier_id": supplier, "location_id": location, "lines": lines}, admin)
            order = call(base + f"/api/v1/purchase-orders/{order['id']}/order", "POST", {"version": order["version"]}, admin)
            out = psql(BASELINE.format(order=order["id"], location=location), f"base{r}.sql")
            base_s = sum(float(m) for m in re.findall(r"Time: ([0-9.]+) ms", out)) / 1000
            started = time.monotonic()
            receipt = call(base + f"/api/v1/purchase-orders/{order['id']}/receipts", "POST",
                           {"lines": [{"line_no": l["line_no"], "quantity": "12"} for l in order["lines"]]}, admin)
            took = time.monotonic() - started
            rows.append((took, base_s))
            print(f"round {r + 1}: {len(receipt['lines'])} lines received, order {receipt['order']['status']}; "
                  f"receipt {took:.3f} s, SQL alone {base_s:.3f} s, ratio {took / base_s:.1f}", flush=True)
        took = statistics.median(r[0] for r in rows); base_s = statistics.median(r[1] for r in rows)
        ratio = statistics.median(r[0] / r[1] for r in rows)
        print(f"medians: receipt {took:.3f} s (target under 1 s), SQL alone {base_s:.3f} s, ratio {ratio:.1f}")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
