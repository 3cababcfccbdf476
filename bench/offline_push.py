#!/usr/bin/env python3
"""The offline push vs online sales (issue 35): a till's push of 10,000 documents should record them at
least 0.8x as fast as the online sales measured in the same run.

In one scratch managed cluster (the shop of bench/sale_throughput.py: 32 registers with their cashiers and
open sessions, 200 tracked products, plus plenty of each in stock so that neither side logs stock
conflicts), --rounds times:
  online  POST /api/v1/sales at --clients clients for --seconds (examples/sale_load.rs: three random lines,
          paid in cash), sales per second;
  push    one POST /api/v1/sync/push of --documents sales (three random lines each, cash, numbered on from the
          till's last receipt) from a till enrolled on a register of its own, documents per second.
Prints each round and the median ratio push/online.

Usage: bench/offline_push.py [--documents 10000] [--seconds 15] [--rounds 3] [--clients 8]
Build first: cargo build --release --bin plugpos --example sale_load
"""
import argparse, json, os, random, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.error, urllib.request, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sale_throughput import Cpu, free_port, start_server, set_up_shop  # noqa: E402


def call(url, method="GET", body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None: req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items(): req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {url}: {e.code} {e.read().decode()[:2000]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    ap.add_argument("--load", default=os.path.join(HERE, "../target/release/examples/sale_load"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-push-", dir="/tmp"); os.chmod(root, 0o777)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    proc = start_server(args.binary, data, port)
    try:
        setup = set_up_shop(base, data, root, registers=32, products=200)
        spec = json.load(open(setup))
        admin = {"authorization": "Bearer " + call(base + "/api/v1/auth/login", "POST",
                 {"username": "admin", "password": "bench password 1"})["access_token"]}
        for product in spec["products"]:
            call(base + "/api/v1/stock/adjustments", "POST",
                 {"product_id": product, "quantity_delta": "10000000", "reason_code": "received"}, admin)
        prices = {p["id"]: p["price"] for p in call(base + "/api/v1/products?limit=200", headers=admin)["items"]}
        # The till: a register of its own, a cashier logged in on it, an open session, one online sale
        # (its receipt number is where the till's series goes on from).
        location = call(base + "/api/v1/registers", headers=admin)["items"][0]["location_id"]
        register = call(base + "/api/v1/registers", "POST", {"name": "Till", "location_id": location}, admin)["id"]
        device = call(base + "/api/v1/devices", "POST", {"name": "Till", "register_id": register}, admin)
        device_id = device["device"]["id"]
        device_token = call(base + "/api/v1/devices/enrol", "POST", {"code": device["enrolment_code"]})["device_token"]
        call(base + "/api/v1/users", "POST", {"username": "till", "password": "first password 1", "roles": ["cashier"]}, admin)
        first = call(base + "/api/v1/auth/login", "POST", {"username": "till", "password": "first password 1"})["access_token"]
        call(base + "/api/v1/auth/password", "POST", {"current_password": "first password 1", "new_password": "front counter 12"},
             {"authorization": "Bearer " + first})
        login = call(base + "/api/v1/auth/login", "POST", {"username": "till", "password": "front counter 12"},
                     {"X-Device-Token": device_token})
        till = {"authorization": "Bearer " + login["access_token"], "X-Device-Token": device_token}
        user_id = call(base + "/api/v1/auth/me", headers=till)["id"]
        session = call(base + "/api/v1/cash-sessions", "POST", {"register_id": register, "opening_float": "100.00"}, till)["id"]
        product = spec["products"][0]
        sold = call(base + "/api/v1/sales", "POST", {"register_id": register, "lines": [{"product_id": product, "quantity": "1"}],
                    "payments": [{"method": "cash", "amount": prices[product]}]}, dict(till, **{"Idempotency-Key": str(uuid.uuid4())}))
        head, digits = sold["receipt_number"].rsplit("-", 1)
        last = int(digits)
        rng = random.Random(7)

        def documents(n):
            nonlocal last
            out = []
            for _ in range(n):
                last += 1
                lines = [{"product_id": p, "quantity": str(rng.randint(1, 3)), "unit_price": prices[p]}
                         for p in rng.sample(spec["products"], 3)]
                cents = sum(int(l["quantity"]) * round(float(l["unit_price"]) * 100) for l in lines)
                total = f"{cents // 100}.{cents % 100:02d}"
                out.append({"type": "sale", "id": str(uuid.uuid4()), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "user_id": user_id, "receipt_number": f"{head}-{last:0{len(digits)}d}", "cash_session_id": session,
                            "lines": lines, "payments": [{"method": "cash", "amount": total}], "total": total})
            return out

        cpu = Cpu(data, proc.pid)

        def online():
            out = subprocess.run([args.load, base, str(args.clients), str(args.seconds), setup],
                                 check=True, capture_output=True, text=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        rounds = []
        for r in range(args.rounds):
            sales = cpu.measure(online)
            docs = documents(args.documents)
            body = {"device_id": device_id, "documents": docs}
            t = time.perf_counter()
            answer = call(base + "/api/v1/sync/push", "POST", body, till)
            secs = time.perf_counter() - t
            conflicts = sum(len(x["conflicts"]) for x in answer["results"])
            assert answer["recorded"] == args.documents, answer["recorded"]
            rate = args.documents / secs
            rounds.append((rate / sales["tps"], sales["tps"], rate))
            print(f"round {r + 1}: online {sales['tps']:6.0f} sales/s at {args.clients} clients (p99 {sales['p99_ms']:.1f} ms, "
                  f"errors {sales['errors']}); push of {args.documents} in {secs:5.2f} s = {rate:6.0f} documents/s "
                  f"({len(json.dumps(body)) / 1e6:.1f} MB, {conflicts} conflicts); ratio push/online {rate / sales['tps']:.2f}", flush=True)
            again = time.perf_counter()
            replay = call(base + "/api/v1/sync/push", "POST", body, till)
            assert replay["recorded"] == 0 and replay["already_recorded"] == args.documents
            print(f"  the same push again: nothing recorded, answered in {time.perf_counter() - again:.2f} s", flush=True)
        med = lambda i: statistics.median(x[i] for x in rounds)
        print(f"medians: online {med(1):.0f} sales/s, push {med(2):.0f} documents/s, ratio push/online {med(0):.2f} "
              f"(target at least 0.80)")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
