#!/usr/bin/env python3
"""Reports over a year of a busy shop (SPEC section 9: any report under 1 s; the dashboard under 100 ms).

Starts `plugpos serve` on a scratch data directory, sets it up through the API (4 registers, each with
a cashier and an open cash session), then generates by SQL, as the database superuser, a year of sales
ending today: --lines sale lines (default 10,000,000) in sales of 9 lines (about 3,000 sales a day),
over 5,000 products in 20 categories (popularity skewed: a few products sell most), a fifth of the
sales naming one of 10,000 customers. The rows are written with triggers off (session_replication_role
= replica: a bench shortcut; every CHECK still holds) and then queued for the report rollups, which the
server builds as it would from live sales (the time it takes is printed).

Then, after a restart of the server (its PostgreSQL restarts with it: shared buffers empty), each report
runs for the last whole month and for the last 365 days: once cold (the first request after the
restart) and --runs times warm; p50/p95 of the warm runs. In the same run, the same aggregation as plain
SQL over the raw lines (EXPLAIN ANALYZE's execution time, the median of 3) is the baseline for four
report families. Last, the dashboard: a sale through the API, then GET /api/v1/dashboard (which
computes the KPIs that sale changed), --runs times.

Usage: bench/reports.py [--lines 10000000] [--runs 5] [--binary target/release/plugpos] [--keep DIR]
Build first: cargo build --release --bin plugpos
"""
import argparse, datetime, json, os, re, shutil, signal, socket, statistics, subprocess, tempfile, time, urllib.request
from zoneinfo import ZoneInfo

LINES_PER_SALE = 9
PRODUCTS = 5000
CATEGORIES = 20
CUSTOMERS = 10000
REGISTERS = 4
TZ = "Europe/Berlin"

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def call(url, method="GET", body=None, token=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None: req.add_header("content-type", "application/json")
    if token: req.add_header("authorization", "Bearer " + token)
    for k, v in (headers or {}).items(): req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")

def timed_get(url, token):
    req = urllib.request.Request(url); req.add_header("authorization", "Bearer " + token)
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        body = r.read()
        assert r.status == 200, (url, r.status)
    return (time.perf_counter() - t) * 1000, body

def pct(values, p):
    values = sorted(values); return values[min(len(values) - 1, int(len(values) * p))]

class Server:
    def __init__(self, binary, data, port):
        self.binary, self.data, self.port, self.proc = binary, data, port, None
        self.base = f"http://127.0.0.1:{port}"
    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGPOS_")}; env["PLUGPOS_LOG__STDOUT"] = "false"
        self.proc = subprocess.Popen([self.binary, "serve", "--data-dir", self.data, "--port", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                call(self.base + "/health/ready"); return
            except Exception: time.sleep(0.1)
        raise SystemExit("the server did not become ready")
    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM); self.proc.wait(timeout=120); self.proc = None
    def psql(self, sql, capture=False):
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", os.path.join(self.data, "run"), "-U", "postgres", "-d", "plugpos", "-At", "-c", sql]
        if os.geteuid() == 0: cmd = ["runuser", "-u", "postgres", "--"] + cmd
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"psql failed: {out.stderr.strip()}")
        return out.stdout

def set_up(server):
    token = open(os.path.join(server.data, "setup-token")).read().strip()
    call(server.base + "/api/v1/setup", "POST", {"setup_token": token,
         "business": {"name": "Bench", "currency": "EUR", "timezone": TZ},
         "admin": {"username": "admin", "password": "bench password 1"}})
    admin = call(server.base + "/api/v1/auth/login", "POST", {"username": "admin", "password": "bench password 1"})["access_token"]
    tax = call(server.base + "/api/v1/tax-classes", "POST", {"name": "Standard", "rate": "0.19"}, admin)["id"]
    first = call(server.base + "/api/v1/registers", token=admin)["items"]
    location = first[0]["location_id"]
    registers = [first[0]["id"]] + [call(server.base + "/api/v1/registers", "POST",
                 {"name": f"Register {i}", "location_id": location}, admin)["id"] for i in range(2, REGISTERS + 1)]
    cashiers = []
    for i, register in enumerate(registers, 1):
        name = f"cashier{i}"
        call(server.base + "/api/v1/users", "POST", {"username": name, "password": "first password 1", "roles": ["cashier"]}, admin)
        t = call(server.base + "/api/v1/auth/login", "POST", {"username": name, "password": "first password 1"})["access_token"]
        call(server.base + "/api/v1/auth/password", "POST", {"current_password": "first password 1", "new_password": "cashier password 1"}, t)
        t = call(server.base + "/api/v1/auth/login", "POST", {"username": name, "password": "cashier password 1"})["access_token"]
        call(server.base + "/api/v1/cash-sessions", "POST", {"register_id": register, "opening_float": "100.00"}, t)
        cashiers.append(name)
    return tax, location

def generate(server, tax, location, lines, today):
    sales = lines // LINES_PER_SALE
    first_day = today - datetime.timedelta(days=364)
    server.psql(f"""
        INSERT INTO categories (id, name) SELECT gen_random_uuid(), 'Category ' || i FROM generate_series(1, {CATEGORIES}) i;
        INSERT INTO products (id, sku, name, search_text, price, cost_price, tax_class_id, category_id, track_stock)
        SELECT gen_random_uuid(), 'B' || i, 'Bench product ' || i, 'bench product ' || i || ' b' || i,
               (1 + i % 50) + 0.99, round((1 + i % 50) * 0.6, 2), '{tax}',
               (SELECT id FROM categories ORDER BY name OFFSET i % {CATEGORIES} LIMIT 1), false
          FROM generate_series(1, {PRODUCTS}) i;
        INSERT INTO customers (id, name, search_text, created_at, updated_at)
        SELECT gen_random_uuid(), 'Customer ' || i, 'customer ' || i, now(), now() FROM generate_series(1, {CUSTOMERS}) i;
        CREATE TABLE bench_products AS SELECT row_number() OVER (ORDER BY sku) AS n, id, sku, name, price, cost_price FROM products WHERE sku LIKE 'B%';
        CREATE UNIQUE INDEX ON bench_products (n);
        CREATE TABLE bench_customers AS SELECT row_number() OVER (ORDER BY id) AS n, id FROM customers;
        CREATE UNIQUE INDEX ON bench_customers (n);
        CREATE TABLE bench_registers AS SELECT row_number() OVER (ORDER BY r.id) - 1 AS n, r.id, s.id AS session_id, s.opened_by AS cashier_id
          FROM registers r JOIN cash_sessions s ON s.register_id = r.id AND s.status = 'open';
    """)
    per_day = sales / 365.0
    t = time.time()
    months = sorted({(first_day + datetime.timedelta(days=d)).replace(day=1) for d in range(365)})
    done = 0
    for m in months:
        # The sales of the days of month m within the year: sale i is on day floor(i / per_day).
        days = [d for d in range(365) if (first_day + datetime.timedelta(days=d)).replace(day=1) == m]
        a, b = int(days[0] * per_day), int((days[-1] + 1) * per_day) - 1
        server.psql(f"""
            SET session_replication_role = replica;
            WITH s AS (
                SELECT i, gen_random_uuid() AS id, r.id AS register_id, r.session_id, r.cashier_id,
                       (timestamp '{first_day}' + (floor(i / {per_day}) * interval '1 day') + interval '8 hours'
                          + ((i - floor(i / {per_day}) * {per_day}) / {per_day}) * interval '12 hours') AT TIME ZONE '{TZ}' AS created_at,
                       CASE WHEN i % 5 = 0 THEN (SELECT id FROM bench_customers WHERE n = 1 + (i::bigint * 7919) % {CUSTOMERS}) END AS customer_id
                  FROM generate_series({a}, {b}) i JOIN bench_registers r ON r.n = i % {REGISTERS}),
            l AS (
                SELECT s.id AS sale_id, j AS line_no, p.id AS product_id, p.sku, p.name, 1 + (s.i + j) % 3 AS quantity,
                       p.price, p.cost_price
                  FROM s, generate_series(1, {LINES_PER_SALE}) j,
                       LATERAL (SELECT 1 + floor({PRODUCTS} * power(((s.i::bigint * {LINES_PER_SALE} + j) * 2654435761 % 4294967296) / 4294967296.0, 2))::bigint AS n) k
                  JOIN bench_products p ON p.n = k.n),
            totals AS (SELECT sale_id, sum(quantity * price) AS total FROM l GROUP BY sale_id),
            sales_in AS (
                INSERT INTO sales (id, register_id, cash_session_id, cashier_id, receipt_year, receipt_seq, receipt_number, status,
                    currency, prices_include_tax, net, tax, total, cash_rounding, change_due, created_at, location_id,
                    payment_methods, payment_amounts, tax_rates, tax_nets, tax_amounts, tax_grosses, discount_total, customer_id)
                SELECT s.id, s.register_id, s.session_id, s.cashier_id, extract(year FROM s.created_at)::int, s.i + 1, 'B-' || (s.i + 1),
                       'completed', 'EUR', true, round(t.total / 1.19, 2), t.total - round(t.total / 1.19, 2), t.total, 0, 0,
                       s.created_at, '{location}', ARRAY['card'], ARRAY[t.total], ARRAY[0.19], ARRAY[round(t.total / 1.19, 2)],
                       ARRAY[t.total - round(t.total / 1.19, 2)], ARRAY[t.total], 0, s.customer_id
                  FROM s JOIN totals t ON t.sale_id = s.id)
            INSERT INTO sale_lines (sale_id, line_no, product_id, sku, name, quantity, catalog_price, unit_price, discount, total,
                                    tax_class_id, tax_rate, unit_cost)
            SELECT sale_id, line_no, product_id, sku, name, quantity, price, price, 0, quantity * price, '{tax}', 0.19, cost_price FROM l;
        """)
        done += b - a + 1
        print(f"  {m:%Y-%m}: {done:,} sales, {done * LINES_PER_SALE:,} lines ({time.time() - t:.0f} s)", flush=True)
    server.psql("DROP TABLE bench_products, bench_customers, bench_registers")
    return sales

def roll_up(server):
    """Has the server build the rollups from every sale (as after an upgrade: no state row) and
    waits until it has; answers the seconds it took."""
    server.psql("VACUUM ANALYZE sales")
    server.psql("VACUUM ANALYZE sale_lines")
    t = time.time()
    server.psql("DELETE FROM report_rollup_state")
    while True:
        time.sleep(2)
        state = int(server.psql("SELECT count(*) FROM report_rollup_state").strip())
        left = int(server.psql("SELECT count(*) FROM report_queue").strip())
        if state == 1 and left == 0: break
    built = time.time() - t
    for table in ["report_sales_hourly", "report_products_daily", "report_products_monthly", "report_customers_daily",
                  "report_taxes_daily", "report_payments_daily"]:
        server.psql(f"VACUUM ANALYZE {table}")
    return built

BASELINES = {
    "per day": "SELECT ((s.created_at AT TIME ZONE '{tz}'))::date, count(DISTINCT s.id), sum(l.quantity), sum(l.total) "
               "FROM sales s JOIN sale_lines l ON l.sale_id = s.id WHERE s.created_at >= '{start}' AND s.created_at < '{end}' GROUP BY 1",
    "per product": "SELECT l.product_id, sum(l.quantity), sum(l.total) FROM sales s JOIN sale_lines l ON l.sale_id = s.id "
                   "WHERE s.created_at >= '{start}' AND s.created_at < '{end}' GROUP BY 1 ORDER BY 3 DESC LIMIT 20",
    "per tax rate": "SELECT t.rate, sum(t.net), sum(t.tax) FROM sales s, unnest(s.tax_rates, s.tax_nets, s.tax_amounts) AS t(rate, net, tax) "
                    "WHERE s.created_at >= '{start}' AND s.created_at < '{end}' GROUP BY 1",
    "per customer": "SELECT customer_id, count(*), sum(total) FROM sales WHERE created_at >= '{start}' AND created_at < '{end}' "
                    "AND customer_id IS NOT NULL GROUP BY 1 ORDER BY 3 DESC LIMIT 20",
}
FAMILY = {"management.sales_by_day": "per day", "management.sales_by_product": "per product",
          "management.sales_by_tax_rate": "per tax rate", "management.top_customers": "per customer"}

def baseline(server, sql):
    times = []
    for _ in range(3):
        out = server.psql("EXPLAIN (ANALYZE, TIMING OFF) " + sql)
        times.append(float(re.search(r"Execution Time: ([0-9.]+) ms", out).group(1)))
    return statistics.median(times)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--binary", default="target/release/plugpos")
    ap.add_argument("--keep", help="keep the data directory here (and reuse it when it exists: no generation)")
    ap.add_argument("--rebuild", action="store_true", help="with a reused --keep directory: build the rollups again")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    reuse = args.keep and os.path.exists(os.path.join(args.keep, "data"))
    root = args.keep or tempfile.mkdtemp(prefix="plugpos-bench-reports-", dir="/tmp")
    os.makedirs(root, exist_ok=True); os.chmod(root, 0o755)
    server = Server(binary, os.path.join(root, "data"), free_port())
    try:
        server.start()
        today = datetime.date.fromisoformat(server.psql(f"SELECT (now() AT TIME ZONE '{TZ}')::date").strip())
        if not reuse:
            tax, location = set_up(server)
            t = time.time()
            sales = generate(server, tax, location, args.lines, today)
            print(f"generated {sales:,} sales ({sales * LINES_PER_SALE:,} lines) in {time.time() - t:.0f} s", flush=True)
        sales = int(server.psql("SELECT count(*) FROM sales").strip())
        if reuse and not args.rebuild:
            print("reusing the data and its rollups")
        else:
            built = roll_up(server)
            print(f"the server rolled up {sales:,} sales in {built:.0f} s ({sales / built:,.0f} sales/s)", flush=True)
        size = server.psql("SELECT pg_size_pretty(pg_total_relation_size('sale_lines')), "
                           "pg_size_pretty(pg_total_relation_size('report_products_daily') + pg_total_relation_size('report_products_monthly') "
                           "+ pg_total_relation_size('report_sales_hourly') + pg_total_relation_size('report_customers_daily'))").strip()
        print(f"sale_lines and its indexes | the rollups: {size}")
        rows = server.psql("SELECT (SELECT count(*) FROM report_products_daily), (SELECT count(*) FROM report_products_monthly), "
                           "(SELECT count(*) FROM report_sales_hourly)").strip()
        print(f"rollup rows (products per day | per month | sales per hour): {rows}")
        server.stop(); server.start()
        admin = call(server.base + "/api/v1/auth/login", "POST", {"username": "admin", "password": "bench password 1"})["access_token"]
        month_end = today.replace(day=1) - datetime.timedelta(days=1)
        periods = {"month": (month_end.replace(day=1), month_end), "year": (today - datetime.timedelta(days=364), today)}
        reports = [r["id"] for r in call(server.base + "/api/v1/reports", token=admin)["items"]]
        print(f"\n{'report':42} {'period':6} {'cold ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'rows':>5}   baseline (plain SQL, ms)")
        worst = 0.0
        for report in reports:
            for name, (start, end) in periods.items():
                url = f"{server.base}/api/v1/reports/{report}?from={start}&to={end}"
                info = next(r for r in call(server.base + "/api/v1/reports", token=admin)["items"] if r["id"] == report)
                if "from" not in info["parameters"]:
                    url = f"{server.base}/api/v1/reports/{report}"
                    if name == "year": continue
                cold, body = timed_get(url, admin)
                warm = [timed_get(url, admin)[0] for _ in range(args.runs)]
                worst = max(worst, cold, pct(warm, .95))
                line = f"{report:42} {name:6} {cold:9.1f} {pct(warm, .5):8.1f} {pct(warm, .95):8.1f} {len(json.loads(body)['rows']):5}"
                if report in FAMILY:
                    s = datetime.datetime.combine(start, datetime.time(), tzinfo=ZoneInfo(TZ)).isoformat()
                    e = datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time(), tzinfo=ZoneInfo(TZ)).isoformat()
                    base_ms = baseline(server, BASELINES[FAMILY[report]].format(tz=TZ, start=s, end=e))
                    line += f"   {base_ms:9.1f}  ({FAMILY[report]}: {base_ms / pct(warm, .5):.0f}x the report's p50)"
                print(line, flush=True)
        print(f"\nslowest report request (cold or warm p95): {worst:.1f} ms")
        # The dashboard: a sale, then the KPIs it changed computed by GET /api/v1/dashboard.
        cashier = call(server.base + "/api/v1/auth/login", "POST", {"username": "cashier1", "password": "cashier password 1"})["access_token"]
        register = server.psql("SELECT register_id FROM cash_sessions s JOIN users u ON u.id = s.opened_by WHERE u.username = 'cashier1' AND s.status = 'open'").strip()
        product = server.psql("SELECT id FROM products WHERE sku = 'B1'").strip()
        board = []
        for i in range(args.runs * 4):
            call(server.base + "/api/v1/sales", "POST", {"register_id": register, "lines": [{"product_id": product, "quantity": "1"}],
                 "payments": [{"method": "card", "amount": "2.99"}]}, cashier, {"Idempotency-Key": f"bench-{time.time()}-{i}"})
            time.sleep(0.3)
            board.append(timed_get(server.base + "/api/v1/dashboard", admin)[0])
        print(f"dashboard after a sale: p50 {pct(board, .5):.1f} ms  p95 {pct(board, .95):.1f} ms  (n={len(board)})")
    finally:
        server.stop()
        if not args.keep: shutil.rmtree(root, ignore_errors=True)

if __name__ == "__main__":
    main()
