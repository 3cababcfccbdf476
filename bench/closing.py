#!/usr/bin/env python3
"""A day's Z closing over 50,000 sales (issue 30): POST /api/v1/closings against the SQL aggregate alone.

In one scratch managed cluster, --rounds times, each round on a branch of its own (a closing is final, so
every round closes a fresh branch's day):
  load      --sales sales (cash and card, two tax rates, some discounted) into one register's open session,
            with returns (--returns) and voids (--voids) mixed in, written by SQL (as the migrations' role:
            loading is not what is measured), then the session closed through the API;
  closing   POST /api/v1/closings {"kind": "day", "branch_id"} through plugpos: the lock, the checks, every
            figure from the documents, the grand totals, the chain, the signature, the audit record;
  baseline  the same period's aggregates as plain SQL (sales totals; payments and taxes unnested; returns and
            voids by kind), in one psql session, timed by psql.
Prints each round and the medians (closing seconds, baseline seconds, ratio). Target: the closing under 2 s.

Usage: bench/closing.py [--sales 50000] [--returns 2000] [--voids 500] [--rounds 3]
Build first: cargo build --release --bin plugpos
"""
import argparse, os, shutil, signal, statistics, subprocess, tempfile, time, urllib.request, json, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sale_throughput import call, free_port, start_server  # noqa: E402

LOAD = """
BEGIN;
-- {sales} sales of the session, dated in today's first minutes (UTC is the business timezone).
INSERT INTO sales (id, register_id, cash_session_id, cashier_id, receipt_year, receipt_seq, receipt_number, status,
    currency, prices_include_tax, net, tax, total, cash_rounding, change_due, created_at, location_id,
    payment_methods, payment_amounts, tax_rates, tax_nets, tax_amounts, tax_grosses, discount_total)
SELECT gen_random_uuid(), '{register}', '{session}', '{cashier}', extract(year FROM now())::int, i,
       '{code}-' || i, 'completed', 'EUR', true, t.net19 + t.net7, t.tax19 + t.tax7, t.gross19 + t.gross7, 0,
       CASE WHEN i % 2 = 0 THEN 0.50 ELSE 0 END,
       date_trunc('day', now()) + i * interval '1 ms', '{location}',
       CASE WHEN i % 2 = 0 THEN ARRAY['cash'] ELSE ARRAY['card'] END,
       CASE WHEN i % 2 = 0 THEN ARRAY[t.gross19 + t.gross7 + 0.50] ELSE ARRAY[t.gross19 + t.gross7] END,
       ARRAY[0.07, 0.19]::numeric[], ARRAY[t.net7, t.net19], ARRAY[t.tax7, t.tax19], ARRAY[t.gross7, t.gross19],
       CASE WHEN i % 10 = 0 THEN 1.00 ELSE 0 END
  FROM generate_series(1, {sales}) AS i,
       LATERAL (SELECT (i % 50) + 2.38 AS gross19, 1.07 AS gross7) g,
       LATERAL (SELECT g.gross19, g.gross7, round(g.gross19 * 0.19 / 1.19, 2) AS tax19, round(g.gross7 * 0.07 / 1.07, 2) AS tax7,
                       g.gross19 - round(g.gross19 * 0.19 / 1.19, 2) AS net19, g.gross7 - round(g.gross7 * 0.07 / 1.07, 2) AS net7) t;
INSERT INTO receipt_counters (register_id, year, last_number) VALUES ('{register}', extract(year FROM now())::int, {sales});
-- Returns of the 7 % line of some sales, and voids of others.
INSERT INTO returns (id, kind, register_id, cash_session_id, cashier_id, original_sale_id, number_year, number_seq, number,
    currency, prices_include_tax, net, tax, total, refund_methods, refund_amounts, tax_rates, tax_nets, tax_amounts,
    tax_grosses, reason_code, location_id, created_at)
SELECT gen_random_uuid(), CASE WHEN n <= {returns} THEN 'return' ELSE 'void' END, '{register}', '{session}', '{cashier}', s.id,
       extract(year FROM now())::int, n, '{code}-R' || n, 'EUR', true,
       CASE WHEN n <= {returns} THEN -1.00 ELSE -s.net END, CASE WHEN n <= {returns} THEN -0.07 ELSE -s.tax END,
       CASE WHEN n <= {returns} THEN -1.07 ELSE -s.total END,
       s.payment_methods, CASE WHEN n <= {returns} THEN ARRAY[1.07] ELSE ARRAY[s.total] END,
       CASE WHEN n <= {returns} THEN ARRAY[0.07] ELSE s.tax_rates END,
       CASE WHEN n <= {returns} THEN ARRAY[-1.00] ELSE ARRAY[-s.tax_nets[1], -s.tax_nets[2]] END,
       CASE WHEN n <= {returns} THEN ARRAY[-0.07] ELSE ARRAY[-s.tax_amounts[1], -s.tax_amounts[2]] END,
       CASE WHEN n <= {returns} THEN ARRAY[-1.07] ELSE ARRAY[-s.tax_grosses[1], -s.tax_grosses[2]] END,
       'other', '{location}', s.created_at + interval '1 second'
  FROM (SELECT id, net, tax, total, payment_methods, tax_rates, tax_nets, tax_amounts, tax_grosses, created_at,
               row_number() OVER (ORDER BY receipt_seq) AS n
          FROM sales WHERE register_id = '{register}' AND receipt_seq % 7 = 3) s
 WHERE n <= {returns} + {voids};
COMMIT;
ANALYZE sales; ANALYZE returns;
"""

BASELINE = """
\\timing on
SELECT count(*), sum(net), sum(tax), sum(total), sum(discount_total), sum(change_due) FROM sales
 WHERE register_id = ANY('{{{register}}}') AND created_at >= '{start}' AND created_at < '{end}';
SELECT p.method, count(*), sum(p.amount) FROM sales s, unnest(s.payment_methods, s.payment_amounts) AS p(method, amount)
 WHERE s.register_id = ANY('{{{register}}}') AND s.created_at >= '{start}' AND s.created_at < '{end}' GROUP BY 1;
SELECT t.rate, sum(t.net), sum(t.tax), sum(t.gross) FROM sales s, unnest(s.tax_rates, s.tax_nets, s.tax_amounts, s.tax_grosses) AS t(rate, net, tax, gross)
 WHERE s.register_id = ANY('{{{register}}}') AND s.created_at >= '{start}' AND s.created_at < '{end}' GROUP BY 1;
SELECT kind, count(*), sum(net), sum(tax), sum(total) FROM returns
 WHERE register_id = ANY('{{{register}}}') AND created_at >= '{start}' AND created_at < '{end}' GROUP BY kind;
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sales", type=int, default=50000)
    ap.add_argument("--returns", type=int, default=2000)
    ap.add_argument("--voids", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-closing-", dir="/tmp"); os.chmod(root, 0o777)
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
        me = call(base + "/api/v1/auth/me", token=admin)
        rows = []
        for r in range(args.rounds):
            branch = call(base + "/api/v1/branches", "POST", {"name": f"Branch {r + 1}"}, admin)["id"]
            location = call(base + "/api/v1/locations", "POST", {"name": f"Floor {r + 1}", "branch_id": branch}, admin)["id"]
            register = call(base + "/api/v1/registers", "POST", {"name": f"Till {r + 1}", "location_id": location}, admin)
            session = call(base + "/api/v1/cash-sessions", "POST", {"register_id": register["id"], "opening_float": "0.00"}, admin)["id"]
            started = time.monotonic()
            psql(LOAD.format(sales=args.sales, returns=args.returns, voids=args.voids, register=register["id"],
                             session=session, cashier=me["id"], location=location, code=register["code"]), f"load{r}.sql")
            loaded = time.monotonic() - started
            closed = call(base + f"/api/v1/cash-sessions/{session}/close", "POST",
                          {"counted_cash": "0.00", "variance_reason": "bench"}, admin)
            started = time.monotonic()
            closing = call(base + "/api/v1/closings", "POST", {"kind": "day", "branch_id": branch}, admin)
            took = time.monotonic() - started
            totals = closing["report"]["figures"]["totals"]
            out = psql(BASELINE.format(register=register["id"], start=closing["period_start"], end=closing["period_end"]), f"base{r}.sql")
            base_ms = sum(float(m) for m in re.findall(r"Time: ([0-9.]+) ms", out))
            rows.append((took, base_ms / 1000))
            print(f"round {r + 1}: loaded {totals['sales']['count']} sales, {totals['returns']['count']} returns, "
                  f"{totals['voids']['count']} voids in {loaded:.1f} s; closing {took:.3f} s, SQL aggregate {base_ms / 1000:.3f} s, "
                  f"ratio {took / (base_ms / 1000):.2f}; net {totals['net']['total']}, expected cash {closed['expected_cash']}", flush=True)
        took = statistics.median(r[0] for r in rows); base_s = statistics.median(r[1] for r in rows)
        ratio = statistics.median(r[0] / r[1] for r in rows)
        print(f"medians: closing {took:.3f} s (target under 2 s), SQL aggregate alone {base_s:.3f} s, ratio {ratio:.2f}")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
