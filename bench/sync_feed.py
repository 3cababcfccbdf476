#!/usr/bin/env python3
"""The change feed: a till's first snapshot, and the changes after a catalog update.

Starts `plugpos serve` on a scratch data directory, sets it up through the API, loads N products
(each with a barcode) and M customers by SQL, enrols a device for the register and logs the admin
in on it, then measures from one HTTP client, in the same run:
  list      GET /api/v1/products?limit=200, every page     (the API's own product list: the baseline)
  snapshot  GET /api/v1/sync/changes?limit=2000 from no cursor to the end (every entity)
  changes   the pages after UPDATE of K product prices in one transaction
and prints each as seconds and items per second, with the snapshot's ratio to the list.

Usage: bench/sync_feed.py [--products N] [--customers M] [--changes K] [--binary target/release/plugpos]
"""
import argparse, csv, io, json, os, shutil, signal, socket, subprocess, tempfile, time, urllib.request, uuid

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def call(url, method="GET", body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None: req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items(): req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--changes", type=int, default=2_000)
    ap.add_argument("--binary", default="target/release/plugpos")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-sync-", dir="/tmp"); os.chmod(root, 0o755)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGPOS_")}; env["PLUGPOS_LOG__STDOUT"] = "false"
    proc = subprocess.Popen([args.binary, "serve", "--data-dir", data, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                call(base + "/health/ready"); break
            except Exception: time.sleep(0.1)
        setup_token = open(os.path.join(data, "setup-token")).read().strip()
        call(base + "/api/v1/setup", "POST", {"setup_token": setup_token,
             "business": {"name": "Bench", "currency": "EUR", "timezone": "UTC"},
             "admin": {"username": "admin", "password": "bench password 1"}})
        admin = {"authorization": "Bearer " + call(base + "/api/v1/auth/login", "POST",
                 {"username": "admin", "password": "bench password 1"})["access_token"]}
        tax = call(base + "/api/v1/tax-classes", "POST", {"name": "Standard", "rate": "0.19"}, admin)["id"]
        register = call(base + "/api/v1/registers", headers=admin)["items"][0]["id"]
        psql = ["psql", "-X", "-q", "-h", os.path.join(data, "run"), "-U", "postgres", "-d", "plugpos"]
        if os.geteuid() == 0: psql = ["runuser", "-u", "postgres", "--"] + psql
        products, barcodes, customers = io.StringIO(), io.StringIO(), io.StringIO()
        pw, bw, cw = csv.writer(products), csv.writer(barcodes), csv.writer(customers)
        now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        for i in range(args.products):
            pid = str(uuid.uuid4())
            pw.writerow([pid, f"SKU{i}", f"Product {i}", f"product {i} sku{i}", f"{1 + i % 50}.{i % 100:02d}", tax])
            bw.writerow([f"{4000000000000 + i}", pid])
        for i in range(args.customers):
            cw.writerow([str(uuid.uuid4()), f"Customer {i}", f"c{i}@example.org", f"customer {i}", now, now])
        t = time.time()
        for table, cols, rows in [("products", "id, sku, name, search_text, price, tax_class_id", products),
                                  ("product_barcodes", "barcode, product_id", barcodes),
                                  ("customers", "id, name, email, search_text, created_at, updated_at", customers)]:
            subprocess.run(psql + ["-c", f"\\copy {table} ({cols}) FROM STDIN WITH (FORMAT csv)"],
                           input=rows.getvalue().encode(), check=True)
        subprocess.run(psql + ["-c", "ANALYZE"], check=True)
        print(f"loaded {args.products} products and {args.customers} customers in {time.time() - t:.1f} s")

        device = call(base + "/api/v1/devices", "POST", {"name": "Till", "register_id": register}, admin)
        token = call(base + "/api/v1/devices/enrol", "POST", {"code": device["enrolment_code"]})["device_token"]
        access = call(base + "/api/v1/auth/login", "POST", {"username": "admin", "password": "bench password 1"},
                      {"X-Device-Token": token})["access_token"]
        till = {"authorization": "Bearer " + access, "X-Device-Token": token}

        def pages(first, next_url, headers):
            items, url, n, t = 0, first, 0, time.perf_counter()
            while url:
                page = call(url, headers=headers); n += 1; items += len(page["items"])
                url = next_url(page)
            return items, n, time.perf_counter() - t

        listed = pages(base + "/api/v1/products?limit=200",
                       lambda p: p["next_cursor"] and f"{base}/api/v1/products?limit=200&cursor={p['next_cursor']}", admin)
        cursor = {}
        def feed_next(p):
            cursor["c"] = p["next_cursor"]
            return (p["more"] or p["held_back"]) and f"{base}/api/v1/sync/changes?limit=2000&cursor={p['next_cursor']}"
        snap = pages(base + "/api/v1/sync/changes?limit=2000", feed_next, till)
        t = time.time()
        subprocess.run(psql + ["-c", f"UPDATE products SET price = price + 0.10, version = version + 1 "
                               f"WHERE id IN (SELECT id FROM products ORDER BY id LIMIT {args.changes})"], check=True)
        print(f"updated {args.changes} prices in {time.time() - t:.2f} s")
        changed = pages(f"{base}/api/v1/sync/changes?limit=2000&cursor={cursor['c']}", feed_next, till)
        for label, (items, n, secs) in [("list", listed), ("snapshot", snap), ("changes", changed)]:
            print(f"{label:9} {items:7} items in {n:3} pages, {secs:6.2f} s, {items / secs:8.0f} items/s")
        print(f"snapshot items/s over the product list's: {(snap[0] / snap[2]) / (listed[0] / listed[2]):.2f}")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)

if __name__ == "__main__":
    main()
