#!/usr/bin/env python3
"""Crash loop: sales from 16 clients while the server is killed (issue 28, the crash suite).

One scratch managed instance: 16 registers, each with its own cashier and open cash session, 40 products
(30 with stock tracking). 16 client threads sell three random lines at a time, each sale with its own
client-made id and Idempotency-Key; a request that gets no answer (connection refused or reset, a 5xx) is
retried with the same id, key and body until the server acknowledges it, exactly as a till does. Meanwhile
the server is killed with SIGKILL --kills times at random moments (restarted each time on the same data
directory), and the PostgreSQL postmaster is killed --postmaster-kills times (the server restarts it).

Afterwards, with every request acknowledged:
  - every sale a client saw acknowledged exists exactly once, with the receipt number it was answered, and
    there is no sale that no client asked for;
  - receipt numbers per register are gap-free (1..n);
  - stock levels equal the ledger (adjustments and sale lines);
  - the audit chain verifies (GET /api/v1/audit/verify) and nothing is left pending (audit_pending empty
    after the chainer ran, no running or queued job).
Prints the figures and exits non-zero on any failure.

Usage: bench/crash_loop.py [--binary target/release/plugpos] [--kills 10] [--postmaster-kills 2] [--seed 1]
Build first: cargo build --release --bin plugpos (or pass --binary target/debug/plugpos)
"""
import argparse, json, os, random, shutil, signal, socket, subprocess, sys, tempfile, threading, time, uuid
import urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = 16


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def request(url, method="GET", body=None, token=None, headers=None, timeout=30):
    """(status, JSON body); status 0 when the server gave no answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None: req.add_header("content-type", "application/json")
    if token: req.add_header("authorization", "Bearer " + token)
    for k, v in (headers or {}).items(): req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try: return e.code, json.loads(e.read() or b"null")
        except ValueError: return e.code, None
    except (OSError, ValueError):
        return 0, None


class Server:
    def __init__(self, binary, data, port):
        self.binary, self.data, self.port = binary, data, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGPOS_")}
        env.update(PLUGPOS_LOG__STDOUT="false", PLUGPOS_AUTH__PUBLIC_REQUESTS_BURST="100000",
                   PLUGPOS_AUTH__PUBLIC_REQUESTS_PER_MINUTE="100000")
        self.env = env

    def start(self):
        self.proc = subprocess.Popen([self.binary, "serve", "--data-dir", self.data, "--port", str(self.port)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, limit=120):
        deadline = time.time() + limit
        while time.time() < deadline:
            status, _ = request(self.base + "/health/ready", timeout=5)
            if status == 200: return
            if self.proc.poll() is not None: raise SystemExit(f"the server exited ({self.proc.returncode}) while starting")
            time.sleep(0.1)
        raise SystemExit("the server did not get ready within 2 minutes")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL); self.proc.wait()

    def postmaster_pid(self):
        with open(os.path.join(self.data, "pg", "postmaster.pid")) as f:
            return int(f.readline().strip())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired: self.proc.kill()


def call(server, path, method="GET", body=None, token=None):
    status, answer = request(server.base + path, method, body, token)
    if not 200 <= status < 300:
        raise SystemExit(f"{method} {path}: {status} {answer}")
    return answer


def setup(server):
    token = open(os.path.join(server.data, "setup-token")).read().strip()
    call(server, "/api/v1/setup", "POST", {"setup_token": token,
         "business": {"name": "Crash loop", "currency": "EUR", "timezone": "UTC"},
         "admin": {"username": "admin", "password": "crash loop secret 1"}})
    admin = call(server, "/api/v1/auth/login", "POST", {"username": "admin", "password": "crash loop secret 1"})["access_token"]
    tax = call(server, "/api/v1/tax-classes", "POST", {"name": "Standard", "rate": "0.19"}, admin)["id"]
    products = [call(server, "/api/v1/products", "POST", {"sku": f"P{i}", "name": f"Product {i}", "price": f"{i % 20 + 1}.50",
                "tax_class_id": tax, "track_stock": i % 4 != 0}, admin)["id"] for i in range(40)]
    first = call(server, "/api/v1/registers", token=admin)
    first = first["items"] if isinstance(first, dict) else first
    location = first[0]["location_id"]
    registers = [first[0]["id"]] + [call(server, "/api/v1/registers", "POST", {"name": f"Till {i}", "location_id": location},
                                         admin)["id"] for i in range(1, CLIENTS)]
    cashiers = []
    for i, register in enumerate(registers):
        name = f"cashier{i}"
        call(server, "/api/v1/users", "POST", {"username": name, "password": "first password 1", "roles": ["cashier"]}, admin)
        t = call(server, "/api/v1/auth/login", "POST", {"username": name, "password": "first password 1"})["access_token"]
        call(server, "/api/v1/auth/password", "POST", {"current_password": "first password 1", "new_password": "cashier password 1"}, t)
        cashiers.append({"username": name, "password": "cashier password 1", "register": register})
        t = call(server, "/api/v1/auth/login", "POST", {"username": name, "password": "cashier password 1"})["access_token"]
        call(server, "/api/v1/cash-sessions", "POST", {"register_id": register, "opening_float": "100.00"}, t)
    return admin, products, cashiers


class Till(threading.Thread):
    """One cashier selling until told to stop; every sale is retried until acknowledged."""

    def __init__(self, server, cashier, products, rng, stop):
        super().__init__(daemon=True)
        self.server, self.cashier, self.products, self.rng, self.stop = server, cashier, products, rng, stop
        self.token = None
        self.acknowledged = {}  # sale id -> receipt number
        self.retries = 0
        self.errors = []

    def login(self):
        while True:
            status, body = request(self.server.base + "/api/v1/auth/login", "POST",
                                   {"username": self.cashier["username"], "password": self.cashier["password"]})
            if status == 200:
                self.token = body["access_token"]; return
            time.sleep(0.2)

    def sell_until_acknowledged(self, sale_id, key, body):
        while True:
            status, answer = request(self.server.base + "/api/v1/sales", "POST", body, self.token,
                                     {"Idempotency-Key": key})
            if status == 201:
                if answer["id"] != sale_id:
                    self.errors.append(f"sale {sale_id} answered as {answer['id']}")
                self.acknowledged[sale_id] = answer["receipt_number"]
                return
            if status == 401:
                self.login()
            elif status not in (0, 408, 500, 502, 503, 504):
                self.errors.append(f"sale {sale_id}: {status} {answer}")
                return
            self.retries += 1
            time.sleep(0.05)

    def run(self):
        self.login()
        while not self.stop.is_set():
            lines = [{"product_id": self.rng.choice(self.products), "quantity": str(self.rng.randint(1, 3))} for _ in range(3)]
            sale_id = str(uuid.uuid4())
            body = {"id": sale_id, "register_id": self.cashier["register"], "lines": lines,
                    "payments": [{"method": "cash", "amount": "500.00"}]}
            self.sell_until_acknowledged(sale_id, "crash-" + sale_id, body)


def psql(server, sql):
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    out = subprocess.run(as_pg + ["psql", "-X", "-A", "-t", "-q", "-h", os.path.join(server.data, "run"), "-U", "postgres",
                                  "-d", "plugpos", "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--postmaster-kills", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="plugpos-crash-", dir="/tmp"); os.chmod(root, 0o777)
    server = Server(args.binary, os.path.join(root, "data"), free_port())
    failures = []
    try:
        server.start()
        admin, products, cashiers = setup(server)
        stop = threading.Event()
        tills = [Till(server, c, products, random.Random(rng.random()), stop) for c in cashiers]
        for t in tills: t.start()
        # Kill at random moments: the server --kills times, the postmaster --postmaster-kills times.
        plan = ["server"] * args.kills + ["postmaster"] * args.postmaster_kills
        rng.shuffle(plan)
        survived = {"server": 0, "postmaster": 0}
        for what in plan:
            time.sleep(rng.uniform(1.0, 4.0))
            if what == "server":
                server.kill(); time.sleep(rng.uniform(0.0, 1.0)); server.start()
            else:
                os.kill(server.postmaster_pid(), signal.SIGKILL); server.wait_ready()
            survived[what] += 1
            print(f"killed the {what} ({survived['server']} server, {survived['postmaster']} postmaster kills so far)", flush=True)
        time.sleep(2.0)
        stop.set()
        for t in tills: t.join(timeout=300)
        if any(t.is_alive() for t in tills):
            failures.append("a client never got its last sale acknowledged")
        acknowledged = {}
        for t in tills:
            acknowledged.update(t.acknowledged)
            failures.extend(t.errors)
        retries = sum(t.retries for t in tills)

        # Every acknowledged sale exactly once, with its receipt number; nothing else.
        rows = psql(server, "SELECT id, receipt_number FROM sales")
        stored = dict(line.split("|") for line in rows.splitlines() if line)
        missing = [s for s in acknowledged if s not in stored]
        unasked = [s for s in stored if s not in acknowledged]
        renumbered = [s for s, n in acknowledged.items() if s in stored and stored[s] != n]
        if missing: failures.append(f"{len(missing)} acknowledged sales are missing, e.g. {missing[:3]}")
        if unasked: failures.append(f"{len(unasked)} sales no client saw acknowledged, e.g. {unasked[:3]}")
        if renumbered: failures.append(f"{len(renumbered)} sales stored under another receipt number than answered")
        gaps = psql(server, "SELECT register_id, count(*), min(receipt_seq), max(receipt_seq) FROM sales "
                            "GROUP BY register_id, receipt_year HAVING count(*) <> max(receipt_seq) OR min(receipt_seq) <> 1")
        if gaps: failures.append(f"receipt numbers with gaps: {gaps}")
        stock = psql(server, "SELECT count(*) FROM stock_levels l LEFT JOIN (SELECT product_id, location_id, "
                             "sum(quantity_delta) AS d FROM stock_ledger GROUP BY 1, 2) m USING (product_id, location_id) "
                             "WHERE l.quantity <> COALESCE(m.d, 0)")
        if stock != "0": failures.append(f"{stock} stock levels differ from their ledger")
        admin = call(server, "/api/v1/auth/login", "POST", {"username": "admin", "password": "crash loop secret 1"})["access_token"]
        deadline = time.time() + 30
        while True:
            verify = call(server, "/api/v1/audit/verify", token=admin)
            pending = psql(server, "SELECT count(*) FROM audit_pending")
            if (verify["ok"] and pending == "0") or time.time() > deadline: break
            time.sleep(0.5)
        if not verify["ok"]: failures.append(f"the audit chain does not verify: {verify}")
        if pending != "0": failures.append(f"{pending} audit records still pending")
        jobs = psql(server, "SELECT count(*) FROM jobs WHERE status IN ('running', 'queued') AND run_at <= now()")
        print(f"sales acknowledged {len(acknowledged)}, found {len(acknowledged) - len(missing)}, duplicates or unasked "
              f"{len(unasked)}, retries {retries}; server kills survived {survived['server']}, postmaster kills survived "
              f"{survived['postmaster']}; audit verified {verify['verified']} records, pending {pending}; jobs due {jobs}")
    finally:
        server.stop()
        if not args.keep: shutil.rmtree(root, ignore_errors=True)
    if failures:
        print("FAILED:"); [print("  " + f) for f in failures]
        sys.exit(1)
    print("OK: nothing lost, nothing counted twice")


if __name__ == "__main__":
    main()
