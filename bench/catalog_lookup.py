#!/usr/bin/env python3
"""Catalog lookups at 1,000,000 products (SPEC: barcode p99 under 5 ms, search p95 under 25 ms).

Starts `plugpos serve` on a scratch data directory, sets it up through the API, loads N products
(each with one barcode) by SQL, then measures from one HTTP client, in the same run:
  floor     GET /health/live                        (what any request costs)
  barcode   GET /api/v1/products?barcode=...        (the scanner path)
  search    GET /api/v1/products?search=...&limit=20 (3-6 letter substrings of real names)
and prints p50/p95/p99 in milliseconds.

Usage: bench/catalog_lookup.py [--products N] [--binary target/release/plugpos]
"""
import argparse, json, os, random, shutil, signal, socket, statistics, subprocess, tempfile, time, urllib.request

WORDS = ["apple", "juice", "crème", "brûlée", "tea", "green", "black", "coffee", "bean", "milk", "oat", "soy",
         "bread", "rye", "wheat", "cheese", "gouda", "brie", "salami", "ham", "water", "sparkling", "still",
         "chocolate", "dark", "white", "nut", "honey", "jam", "cherry", "plum", "pear", "lemon", "lime"]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def call(url, method="GET", body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None: req.add_header("content-type", "application/json")
    if token: req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")

def timed(url, token, n):
    out = []
    for u in (url() for _ in range(n)):
        req = urllib.request.Request(u); req.add_header("authorization", "Bearer " + token)
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r: r.read()
        out.append((time.perf_counter() - t) * 1000)
    return out

def pct(values, p):
    values = sorted(values); return values[min(len(values) - 1, int(len(values) * p))]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--binary", default="target/release/plugpos")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-catalog-", dir="/tmp"); os.chmod(root, 0o755)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGPOS_")}; env["PLUGPOS_LOG__STDOUT"] = "false"
    proc = subprocess.Popen([args.binary, "serve", "--data-dir", data, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                call(base + "/health/ready"); break
            except Exception: time.sleep(0.1)
        token_file = open(os.path.join(data, "setup-token")).read().strip()
        call(base + "/api/v1/setup", "POST", {"setup_token": token_file,
             "business": {"name": "Bench", "currency": "EUR", "timezone": "UTC"},
             "admin": {"username": "admin", "password": "bench password 1"}})
        token = call(base + "/api/v1/auth/login", "POST", {"username": "admin", "password": "bench password 1"})["access_token"]
        tax = call(base + "/api/v1/tax-classes", "POST", {"name": "Standard", "rate": "0.19"}, token)["id"]
        words = ",".join("'" + w + "'" for w in WORDS)
        sql = f"""
          INSERT INTO products (id, sku, name, search_text, price, tax_class_id)
          SELECT gen_random_uuid(), 'SKU' || i, n, lower(translate(n, 'èûé', 'eue')) || ' sku' || i, (i % 5000) / 100.0, '{tax}'
          FROM (SELECT i, initcap(w[1 + i % 34] || ' ' || w[1 + (i / 34) % 34] || ' ' || w[1 + (i / 1156) % 34]) || ' ' || i AS n
                FROM generate_series(1, {args.products}) i, (SELECT ARRAY[{words}] AS w) a) s;
          INSERT INTO product_barcodes (barcode, product_id) SELECT (4000000000000 + substr(sku, 4)::bigint)::text, id FROM products;
          ANALYZE products; ANALYZE product_barcodes;"""
        psql = ["psql", "-X", "-q", "-h", os.path.join(data, "run"), "-U", "postgres", "-d", "plugpos", "-c", sql]
        if os.geteuid() == 0: psql = ["runuser", "-u", "postgres", "--"] + psql
        t = time.time(); subprocess.run(psql, check=True); print(f"loaded {args.products} products in {time.time() - t:.1f} s")
        rnd = random.Random(7)
        def barcode(): return f"{base}/api/v1/products?barcode={4000000000000 + rnd.randint(1, args.products)}"
        def search():
            w = rnd.choice(WORDS).replace("è", "e").replace("û", "u"); start = rnd.randint(0, max(0, len(w) - 3))
            return f"{base}/api/v1/products?search={urllib.request.quote(w[start:start + rnd.randint(3, 6)])}&limit=20"
        timed(barcode, token, 50); timed(search, token, 20)  # warm up
        floor = timed(lambda: base + "/health/live", token, 1000)
        b = timed(barcode, token, 2000)
        s = timed(search, token, 500)
        for name, v in [("floor", floor), ("barcode", b), ("search", s)]:
            print(f"{name:8} p50 {pct(v, .5):6.2f} ms  p95 {pct(v, .95):6.2f} ms  p99 {pct(v, .99):6.2f} ms  (n={len(v)})")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)

if __name__ == "__main__":
    main()
