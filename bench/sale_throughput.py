#!/usr/bin/env python3
"""Sale completion over HTTP vs the same writes as raw SQL (SPEC section 9).

In one scratch managed cluster and one run:
  http      POST /api/v1/sales through plugpos (auth, RBAC, validation, idempotency key, pricing,
            gap-free numbering, stock, cash session, audit): 32 registers each with an open cash
            session and its own cashier, 200 products, three random lines per sale, paid in cash;
            driven by examples/sale_load.rs (Rust, so the load generator is not the bottleneck);
  baseline  ../shared/bench/raw_sale.pgbench (the same writes with a naive hash-chain head lock)
            through pgbench on a database of the same cluster,
alternating at 8 and 32 clients (--clients), --rounds times, and prints each run and the medians
(throughput ratio http/baseline, p50 and p99 latency; a baseline transaction pgbench logs as failed, a
deadlock between two of its random product orders, counts as an error). Each run also reports the CPU it used per sale (the
whole machine from /proc/stat, and PostgreSQL and plugpos on their own; the load generator is in the machine's
figure) and how busy the machine was, and the medians say what the throughput ratio would be with every core
busy at that CPU per sale: on a 2-core machine that is the most any tuning of the waits could reach.

With --floors it then measures, at 8 clients and --rounds times alternating with the baseline, two
floors that bound what any server can do here: `GET /api/v1/auth/me` through plugpos (the cheapest
authenticated request), and bench/sql/sale_floor.pgbench (plugpos's own writes for one sale as one
raw SQL statement on its real schema, pgbench -M prepared, no HTTP, no reads).

Usage: bench/sale_throughput.py [--seconds 15] [--rounds 3] [--clients 8,32] [--floors]
Build first: cargo build --release --bin plugpos --example sale_load
"""
import argparse, glob, json, os, shutil, signal, socket, statistics, subprocess, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def call(url, method="GET", body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None: req.add_header("content-type", "application/json")
    if token: req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")

def start_server(binary, data, port):
    """Starts `binary serve` on a fresh data directory. The benches log in dozens of cashiers from this one
    address, so the per-address limit on logins is lifted; a binary from before that limit refuses the
    unknown setting and is started without it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGPOS_")}; env["PLUGPOS_LOG__STDOUT"] = "false"
    lifted = dict(env, PLUGPOS_AUTH__PUBLIC_REQUESTS_BURST="100000", PLUGPOS_AUTH__PUBLIC_REQUESTS_PER_MINUTE="100000")
    for environment in (lifted, env):
        proc = subprocess.Popen([binary, "serve", "--data-dir", data, "--port", str(port)], env=environment,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return proc
    raise SystemExit(f"{binary} does not start")

def set_up_shop(base, data, root, registers, products):
    """Waits for the server, runs setup and makes `products` tracked products, `registers` registers each
    with its own cashier (password changed, logged in) and open cash session. Writes the SETUP.json that
    examples/sale_load.rs reads and answers its path."""
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
    product_ids = [call(base + "/api/v1/products", "POST", {"sku": f"SKU{i}", "name": f"Product {i}",
                   "price": f"{i % 100}.99", "tax_class_id": tax, "track_stock": True}, admin)["id"] for i in range(1, products + 1)]
    first = call(base + "/api/v1/registers", token=admin)
    first = first["items"] if isinstance(first, dict) else first  # a page since issue 28
    location = first[0]["location_id"]
    register_ids = [first[0]["id"]] + [call(base + "/api/v1/registers", "POST",
                    {"name": f"Register {i}", "location_id": location}, admin)["id"] for i in range(2, registers + 1)]
    tokens = []
    for i, register in enumerate(register_ids, 1):
        name = f"cashier{i}"
        call(base + "/api/v1/users", "POST", {"username": name, "password": "first password 1", "roles": ["cashier"]}, admin)
        token = call(base + "/api/v1/auth/login", "POST", {"username": name, "password": "first password 1"})["access_token"]
        call(base + "/api/v1/auth/password", "POST", {"current_password": "first password 1", "new_password": "cashier password 1"}, token)
        token = call(base + "/api/v1/auth/login", "POST", {"username": name, "password": "cashier password 1"})["access_token"]
        call(base + "/api/v1/cash-sessions", "POST", {"register_id": register, "opening_float": "100.00"}, token)
        tokens.append(token)
    setup = os.path.join(root, "setup.json")
    json.dump({"tokens": tokens, "registers": register_ids, "products": product_ids}, open(setup, "w"))
    return setup

def pct(values, p):
    values = sorted(values); return values[min(len(values) - 1, int(len(values) * p))]

TICK = os.sysconf("SC_CLK_TCK")

def stat(pid):
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1]); [] once it is gone."""
    try: return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError: return []

def proc_cpu(pid, children=False):
    """CPU seconds of a process (with its reaped children when asked), 0 once it is gone."""
    return sum(int(x) for x in stat(pid)[11:15 if children else 13]) / TICK

class Cpu:
    """CPU used during one run: the whole machine (/proc/stat: everything but idle, iowait and steal),
    PostgreSQL (the postmaster with its reaped backends, plus the live ones) and plugpos."""
    def __init__(self, data, server):
        self.data, self.server = data, server
    def sample(self):
        ticks = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        busy = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / TICK  # not idle, iowait or steal
        pm = int(open(os.path.join(self.data, "pg", "postmaster.pid")).readline())
        kids = [p for p in os.listdir("/proc") if p.isdigit() and stat(p)[1:2] == [str(pm)]]
        pg = proc_cpu(pm, children=True) + sum(proc_cpu(k) for k in kids)
        return time.monotonic(), busy, pg, proc_cpu(self.server)
    def measure(self, run):
        before = self.sample(); res = run()
        time.sleep(0.3)  # let the postmaster reap the run's backends
        after = self.sample()
        wall, busy, pg, srv = (b - a for a, b in zip(before, after))
        n = res["sales"] or 1
        res["cpu_ms"] = {"machine": busy / n * 1000, "postgres": pg / n * 1000, "plugpos": srv / n * 1000}
        res["busy"] = busy / (wall * os.cpu_count())
        return res

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--floors", action="store_true")
    def client_counts(text):
        try: counts = [int(c) for c in text.split(",")]
        except ValueError: counts = []
        if not counts or min(counts) < 1: raise argparse.ArgumentTypeError(f"not a list of client counts: {text!r} (e.g. 8,32)")
        return counts
    ap.add_argument("--clients", type=client_counts, default=[8, 32], help="comma-separated client counts (default 8,32)")
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    ap.add_argument("--setup-sql", help="SQL file run (as postgres, on the business database) after the setup, "
                                        "before the runs: for experiments (drop an index, a trigger...)")
    ap.add_argument("--load", default=os.path.join(HERE, "../target/release/examples/sale_load"))
    ap.add_argument("--shared", default=os.environ.get("SHARED_BENCH", os.path.join(HERE, "../../shared/bench")))
    args = ap.parse_args()
    loads = args.clients
    root = tempfile.mkdtemp(prefix="plugpos-bench-sale-", dir="/tmp"); os.chmod(root, 0o777)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    proc = start_server(args.binary, data, port)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    sock = os.path.join(data, "run")
    try:
        setup = set_up_shop(base, data, root, registers=32, products=200)
        if args.setup_sql:
            shutil.copy(args.setup_sql, os.path.join(root, "experiment.sql")); os.chmod(os.path.join(root, "experiment.sql"), 0o644)
            subprocess.run(as_pg + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", sock, "-U", "postgres", "-d", "plugpos",
                            "-f", os.path.join(root, "experiment.sql")], check=True)
            print(f"ran {args.setup_sql} after the setup", flush=True)

        # The baseline database, in the same cluster.
        for f in ("raw_sale_schema.sql", "raw_sale.pgbench"):
            shutil.copy(os.path.join(args.shared, f), root); os.chmod(os.path.join(root, f), 0o644)
        subprocess.run(as_pg + ["createdb", "-h", sock, "-U", "postgres", "rawbench"], check=True)
        subprocess.run(as_pg + ["psql", "-X", "-q", "-h", sock, "-U", "postgres", "-d", "rawbench", "-f",
                        os.path.join(root, "raw_sale_schema.sql")], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def baseline(clients):
            logs = os.path.join(root, f"pgbench-{clients}-{time.time_ns()}"); os.mkdir(logs); os.chmod(logs, 0o777)
            out = subprocess.run(as_pg + ["pgbench", "-n", "-h", sock, "-U", "postgres", "-f", os.path.join(root, "raw_sale.pgbench"),
                                 "-c", str(clients), "-j", "2", "-T", str(args.seconds), "-l", "--log-prefix", os.path.join(logs, "tx"), "rawbench"],
                                 check=True, capture_output=True, text=True, cwd=logs).stdout
            # A transaction that failed (pgbench logs "failed" for a deadlock its random product order can
            # cause) is an error, not a sale.
            times = [line.split()[2] for f in glob.glob(os.path.join(logs, "tx*")) for line in open(f)]
            lat = [int(t) / 1000.0 for t in times if t.isdigit()]
            return {"tps": len(lat) / args.seconds, "p50_ms": pct(lat, .5), "p99_ms": pct(lat, .99), "sales": len(lat),
                    "errors": len(times) - len(lat)}

        def http(clients):
            out = subprocess.run([args.load, base, str(clients), str(args.seconds), setup], check=True, capture_output=True, text=True)
            if out.stderr.strip(): print("  load tool:", out.stderr.strip().splitlines()[:3], flush=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        cpu = Cpu(data, proc.pid)
        results = {}
        for r in range(args.rounds):
            for clients in loads:
                for name, run in (("baseline", baseline), ("http", http)):
                    res = cpu.measure(lambda: run(clients)); results.setdefault((name, clients), []).append(res)
                    c = res["cpu_ms"]
                    print(f"round {r + 1} clients {clients:2} {name:8} {res['tps']:7.0f} sales/s  p50 {res['p50_ms']:6.1f} ms  p99 {res['p99_ms']:6.1f} ms  errors {res['errors']}"
                          f"  cpu/sale {c['machine']:.2f} ms (postgres {c['postgres']:.2f}, plugpos {c['plugpos']:.2f}), machine {res['busy']:.0%} busy", flush=True)
        print("medians:")
        for clients in loads:
            b = results[("baseline", clients)]; h = results[("http", clients)]
            ratio = statistics.median(x["tps"] / y["tps"] for x, y in zip(h, b))
            med = lambda rs, k: statistics.median(x[k] for x in rs)
            print(f"clients {clients:2}: http {med(h, 'tps'):6.0f} sales/s (p50 {med(h, 'p50_ms'):5.1f} ms, p99 {med(h, 'p99_ms'):5.1f} ms)  "
                  f"baseline {med(b, 'tps'):6.0f} (p50 {med(b, 'p50_ms'):5.1f} ms, p99 {med(b, 'p99_ms'):5.1f} ms)  ratio http/baseline {ratio:.2f}")
            # What the CPU allows: all cores busy with nothing but sales, at each run's CPU per sale.
            ceiling = statistics.median(os.cpu_count() * 1000 / x["cpu_ms"]["machine"] / y["tps"] for x, y in zip(h, b))
            cms = lambda rs, k: statistics.median(x["cpu_ms"][k] for x in rs)
            print(f"            cpu/sale http {cms(h, 'machine'):.2f} ms (postgres {cms(h, 'postgres'):.2f}, plugpos {cms(h, 'plugpos'):.2f}), "
                  f"{med(h, 'busy'):.0%} busy; baseline {cms(b, 'machine'):.2f} ms (postgres {cms(b, 'postgres'):.2f}), {med(b, 'busy'):.0%} busy; "
                  f"http at 100 % CPU would be {ceiling:.2f} x baseline")
        if args.floors:
            sql = os.path.join(HERE, "sql")
            for f in ("sale_floor_setup.sql", "sale_floor.pgbench"):
                shutil.copy(os.path.join(sql, f), root); os.chmod(os.path.join(root, f), 0o644)
            subprocess.run(as_pg + ["psql", "-X", "-q", "-h", sock, "-U", "postgres", "-d", "plugpos", "-f",
                            os.path.join(root, "sale_floor_setup.sql")], check=True, capture_output=True)

            def floor(clients):
                out = subprocess.run(as_pg + ["pgbench", "-n", "-M", "prepared", "-h", sock, "-U", "postgres", "-f",
                                     os.path.join(root, "sale_floor.pgbench"), "-c", str(clients), "-j", "2", "-T",
                                     str(args.seconds), "plugpos"], check=True, capture_output=True, text=True, cwd=root).stdout
                tps = float(next(l for l in out.splitlines() if l.startswith("tps")).split()[2])
                return {"tps": tps}

            def me(clients):
                out = subprocess.run([args.load, base, str(clients), str(args.seconds), setup, "me"], check=True, capture_output=True, text=True)
                return json.loads(out.stdout.strip().splitlines()[-1])

            floors = {}
            for r in range(args.rounds):
                for name, run in (("baseline", baseline), ("writes as one statement", floor), ("GET /auth/me", me)):
                    res = run(8); floors.setdefault(name, []).append(res["tps"])
                    print(f"floors round {r + 1} clients  8 {name:24} {res['tps']:7.0f} /s", flush=True)
            b = floors["baseline"]
            for name in ("writes as one statement", "GET /auth/me"):
                ratio = statistics.median(x / y for x, y in zip(floors[name], b))
                print(f"floor at 8 clients: {name:24} {statistics.median(floors[name]):7.0f} /s, {ratio:.2f} x baseline")
        counted = subprocess.run(as_pg + ["psql", "-X", "-q", "-t", "-h", sock, "-U", "postgres", "-d", "plugpos", "-c",
                                 "SELECT count(*), count(DISTINCT receipt_number), max(receipt_seq) FROM sales"], capture_output=True, text=True).stdout.split("|")
        print("sales stored / distinct receipt numbers / highest counter:", " / ".join(c.strip() for c in counted))
        # The server's resident memory (PostgreSQL not counted): the peak covers the 32 logins and every run.
        status = dict(line.split(":", 1) for line in open(f"/proc/{proc.pid}/status"))
        mib = lambda key: int(status[key].split()[0]) / 1024
        print(f"server memory: peak {mib('VmHWM'):.1f} MiB, now {mib('VmRSS'):.1f} MiB (target: under 150 MB at 32 clients)")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)

if __name__ == "__main__":
    main()
