#!/usr/bin/env python3
"""Customer search at 200,000 customers (SPEC: p95 under 25 ms).

Starts `plugpos serve` on a scratch data directory, sets it up through the API, loads N customers
by SQL (names from common first and last names, some with accents; an email and a phone each),
then measures from one HTTP client, in the same run:
  floor   GET /health/live                                  (what any request costs)
  name    GET /api/v1/customers?search=<3-6 letters>&limit=20 (fragments of real names, accents typed
                                                            or not)
  phone   GET /api/v1/customers?search=<4-7 digits>&limit=20 (as a cashier types part of a number)
  email   GET /api/v1/customers?search=<local part>&limit=20
and prints p50/p95/p99 in milliseconds.

Usage: bench/customer_search.py [--customers N] [--binary target/release/plugpos]
"""
import argparse, csv, io, json, os, random, shutil, signal, socket, statistics, subprocess, tempfile, time, unicodedata, urllib.request, uuid

FIRST = ["Anna", "Zoë", "Jürgen", "Marta", "Luca", "Noah", "Élodie", "Søren", "Fatma", "Olga", "Pedro", "Ines",
         "Björn", "Chloé", "Mia", "Jonas", "Leonie", "Mateo", "Ayşe", "Kai", "Nora", "Emil", "Lina", "Felix"]
LAST = ["Müller", "Schmidt", "Ångström", "García", "Rossi", "Dubois", "Kowalski", "Nowak", "Yılmaz", "Jensen",
        "Novák", "Silva", "Weber", "Fischer", "Schäfer", "Martín", "Bianchi", "Lefèvre", "Hansen", "Horváth",
        "Meyer", "Wagner", "Becker", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz"]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def call(url, method="GET", body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None: req.add_header("content-type", "application/json")
    if token: req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")

SLOW = []  # (ms, url) of every timed request, for --slowest

def timed(url, token, n):
    out = []
    for u in (url() for _ in range(n)):
        req = urllib.request.Request(u); req.add_header("authorization", "Bearer " + token)
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r: r.read()
        out.append((time.perf_counter() - t) * 1000); SLOW.append((out[-1], u))
    return out

def pct(values, p):
    values = sorted(values); return values[min(len(values) - 1, int(len(values) * p))]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--binary", default="target/release/plugpos")
    ap.add_argument("--slowest", type=int, default=0, help="also print the N slowest requests")
    ap.add_argument("--hold", type=int, default=0, help="keep the server (and its database) up this many seconds at the end")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-customers-", dir="/tmp"); os.chmod(root, 0o755)
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
        # Rows made here, with the search text folded exactly as the server folds it (NFKD, combining
        # marks dropped, lower case; the phone's digits), loaded with COPY.
        def fold(t): return "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c)).lower()
        rows = io.StringIO(); w = csv.writer(rows)
        now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        for i in range(1, args.customers + 1):
            name = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}-{LAST[(i // (len(FIRST) * len(LAST))) % len(LAST)]}"
            email = fold(name.replace(" ", ".")) + f".{i}@example.org"
            phone = f"+49 {150 + i % 30} {(i * 7919) % 10000000:07d}"
            digits = "".join(c for c in phone if c.isdigit())
            w.writerow([str(uuid.uuid4()), name, email, phone, f"{fold(name)} {fold(email)} {digits}", now, now])
        copy = "\\copy customers (id, name, email, phone, search_text, created_at, updated_at) FROM STDIN WITH (FORMAT csv)"
        psql = ["psql", "-X", "-q", "-h", os.path.join(data, "run"), "-U", "postgres", "-d", "plugpos"]
        if os.geteuid() == 0: psql = ["runuser", "-u", "postgres", "--"] + psql
        t = time.time()
        subprocess.run(psql + ["-c", copy], input=rows.getvalue().encode(), check=True)
        subprocess.run(psql + ["-c", "ANALYZE customers"], check=True)
        print(f"loaded {args.customers} customers in {time.time() - t:.1f} s")
        rnd = random.Random(7)
        q = lambda text: f"{base}/api/v1/customers?search={urllib.request.quote(text)}&limit=20"
        def name():
            w = rnd.choice(FIRST + LAST)
            if rnd.random() < 0.5:  # typed without its accents
                w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
            start = rnd.randint(0, max(0, len(w) - 3))
            return q(w[start:start + rnd.randint(3, 6)])
        def phone():
            digits = str(rnd.randint(0, 9999999)).zfill(7); start = rnd.randint(0, 3)
            return q(digits[start:start + rnd.randint(4, 7)])
        def email():
            fold = lambda t: "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c)).lower()
            return q(f"{fold(rnd.choice(FIRST))}.{fold(rnd.choice(LAST))}"[: rnd.randint(5, 12)])
        timed(name, token, 30); timed(phone, token, 30); timed(email, token, 30)  # warm up
        floor = timed(lambda: base + "/health/live", token, 1000)
        n = timed(name, token, 500)
        p = timed(phone, token, 500)
        e = timed(email, token, 300)
        for label, v in [("floor", floor), ("name", n), ("phone", p), ("email", e)]:
            print(f"{label:6} p50 {pct(v, .5):6.2f} ms  p95 {pct(v, .95):6.2f} ms  p99 {pct(v, .99):6.2f} ms  (n={len(v)})")
        for ms, u in sorted(SLOW, reverse=True)[: args.slowest]:
            print(f"  {ms:7.2f} ms  {urllib.request.unquote(u.split('?', 1)[1])}")
        if args.hold:
            print(f"holding {args.hold} s: psql -h {os.path.join(data, 'run')} -U postgres plugpos", flush=True)
            time.sleep(args.hold)
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)

if __name__ == "__main__":
    main()
