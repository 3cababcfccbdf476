#!/usr/bin/env python3
"""Sales while the login is flooded (issue 28, finding 1).

One scratch managed cluster, 8 registers each with an open cash session and its own cashier. Each
round runs examples/sale_load.rs (8 clients, --seconds) twice: once quiet, once while --flooders
threads post logins with random usernames as fast as they are answered, each thread from its own
loopback address 127.0.0.x (so the per-address limit does not stop the flood before the hasher's
queue does). Prints per run the sales' throughput, p50 and p99 and their errors, and the flood's
answers by status and code; then the medians over --rounds and the ratio flooded/quiet.

Usage: bench/login_flood.py [--seconds 15] [--rounds 3] [--flooders 150] [--binary target/release/plugpos]
Build first: cargo build --release --bin plugpos --example sale_load
"""
import argparse, collections, http.client, json, os, shutil, signal, statistics, subprocess, tempfile, threading, time, uuid

from sale_throughput import HERE, free_port, set_up_shop, start_server


def flood(port, flooders, stop, counts, lock):
    def one(i):
        source = (f"127.0.0.{10 + i % 240}", 0)
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=source)
            try:
                body = json.dumps({"username": f"ghost-{uuid.uuid4().hex[:12]}", "password": "a random guess"})
                conn.request("POST", "/api/v1/auth/login", body, {"content-type": "application/json"})
                r = conn.getresponse(); data = r.read()
                code = json.loads(data or b"{}").get("code", "")
                key = f"{r.status} {code}"
            except Exception as e:
                key = f"error {type(e).__name__}"
            finally:
                conn.close()
            with lock: counts[key] += 1
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(flooders)]
    for t in threads: t.start()
    return threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flooders", type=int, default=150)
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    ap.add_argument("--load", default=os.path.join(HERE, "../target/release/examples/sale_load"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-flood-", dir="/tmp"); os.chmod(root, 0o777)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    proc = start_server(args.binary, data, port)
    try:
        setup = set_up_shop(base, data, root, registers=8, products=100)

        def sales():
            out = subprocess.run([args.load, base, "8", str(args.seconds), setup], check=True, capture_output=True, text=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        results = collections.defaultdict(list)
        for r in range(args.rounds):
            for mode in ("quiet", "flooded"):
                counts, lock, stop = collections.Counter(), threading.Lock(), threading.Event()
                threads = flood(port, args.flooders, stop, counts, lock) if mode == "flooded" else []
                res = sales()
                stop.set()
                for t in threads: t.join(timeout=60)
                results[mode].append(res)
                answers = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "-"
                print(f"round {r + 1} {mode:7} {res['tps']:6.0f} sales/s  p50 {res['p50_ms']:6.1f} ms  p99 {res['p99_ms']:7.1f} ms"
                      f"  sale errors {res['errors']}  logins: {answers}", flush=True)
        med = lambda mode, k: statistics.median(x[k] for x in results[mode])
        ratio = statistics.median(f["tps"] / q["tps"] for f, q in zip(results["flooded"], results["quiet"]))
        print("medians:")
        for mode in ("quiet", "flooded"):
            print(f"  {mode:7} {med(mode, 'tps'):6.0f} sales/s  p50 {med(mode, 'p50_ms'):6.1f} ms  p99 {med(mode, 'p99_ms'):7.1f} ms"
                  f"  sale errors {sum(x['errors'] for x in results[mode])}")
        print(f"  throughput flooded/quiet {ratio:.2f}")
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
