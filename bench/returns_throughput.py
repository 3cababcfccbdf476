#!/usr/bin/env python3
"""Returns vs sales over HTTP (issue 30): returns at 8 clients should reach at least 0.8x the sale
throughput measured in the same run.

In one scratch managed cluster (the shop of bench/sale_throughput.py: 32 registers, each with its own
cashier and open cash session, 200 tracked products; the cashiers' role may also take goods back), --rounds
times at --clients clients: first sales for --seconds (examples/sale_load.rs, three random lines, cash), then
returns for --seconds (the same tool with `returns`: one sale line each, refunded in cash, from the sales
just made, each line at most once). Returns go through the returns writer, like sales through theirs: the
request checks the return with reads, then the writer prices a batch of them against their sales' books and
records it in one statement (numbers, documents, returned quantities, refunds per rate, goods back, reviews
queued, audit records). Prints each run with the CPU each document cost (machine, PostgreSQL, plugpos) and the
medians of returns/sales; --show-metrics adds the writers' batch sizes and times.

Usage: bench/returns_throughput.py [--seconds 15] [--rounds 3] [--clients 8] [--setup-sql FILE] [--show-metrics]
Build first: cargo build --release --bin plugpos --example sale_load
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sale_throughput import Cpu, free_port, start_server, set_up_shop  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--binary", default=os.path.join(HERE, "../target/release/plugpos"))
    ap.add_argument("--load", default=os.path.join(HERE, "../target/release/examples/sale_load"))
    ap.add_argument("--setup-sql", help="SQL run as postgres on the business database after the setup, before the "
                                        "runs: for experiments (e.g. ALTER SYSTEM ...; SELECT pg_reload_conf())")
    ap.add_argument("--show-metrics", action="store_true", help="print the writers' batch metrics (GET /metrics) at the end")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="plugpos-bench-returns-", dir="/tmp"); os.chmod(root, 0o777)
    data = os.path.join(root, "data"); port = free_port(); base = f"http://127.0.0.1:{port}"
    proc = start_server(args.binary, data, port)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    sock = os.path.join(data, "run")

    def sql(query):
        return subprocess.run(as_pg + ["psql", "-X", "-q", "-t", "-A", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", sock,
                              "-U", "postgres", "-d", "plugpos", "-c", query], check=True, capture_output=True, text=True).stdout
    try:
        setup = set_up_shop(base, data, os.path.join(root), registers=32, products=200)
        # Cashiers may take goods back here without a manager (the bench measures the return, not the approval).
        sql("INSERT INTO role_permissions (role_id, permission) SELECT id, 'operations.returns.create' FROM roles WHERE name = 'cashier'")
        if args.setup_sql:
            for statement in filter(str.strip, open(args.setup_sql).read().split(";")):
                sql(statement)
            print(f"ran {args.setup_sql} after the setup", flush=True)

        cpu = Cpu(data, proc.pid)

        def load(mode, clients):
            return cpu.measure(lambda: run_load(mode, clients))

        def run_load(mode, clients):
            extra = [mode] if mode else []
            out = subprocess.run([args.load, base, str(clients), str(args.seconds), setup] + extra,
                                 check=True, capture_output=True, text=True)
            if out.stderr.strip(): print("  load tool:", out.stderr.strip().splitlines()[:3], flush=True)
            return json.loads(out.stdout.strip().splitlines()[-1])

        ratios = []
        for r in range(args.rounds):
            sales = load("", args.clients)
            # The lines just sold and never given back, per register.
            rows = sql("SELECT s.register_id, s.id, l.line_no, l.total FROM sales s JOIN sale_lines l ON l.sale_id = s.id "
                       "WHERE NOT EXISTS (SELECT 1 FROM returned_quantities q WHERE q.sale_id = s.id AND q.line_no = l.line_no) "
                       "ORDER BY s.created_at, l.line_no")
            returnable = {}
            for line in rows.splitlines():
                register, sale, line_no, total = line.split("\t")
                returnable.setdefault(register, []).append([sale, int(line_no), f"{float(total):.2f}"])
            spec = json.load(open(setup)); spec["returnable"] = returnable; json.dump(spec, open(setup, "w"))
            back = load("returns", args.clients)
            ratio = back["tps"] / sales["tps"]; ratios.append((ratio, sales, back))
            print(f"round {r + 1} clients {args.clients}: sales {sales['tps']:6.0f}/s (p50 {sales['p50_ms']:.1f} ms, p99 {sales['p99_ms']:.1f} ms, "
                  f"errors {sales['errors']})  returns {back['tps']:6.0f}/s (p50 {back['p50_ms']:.1f} ms, p99 {back['p99_ms']:.1f} ms, "
                  f"errors {back['errors']})  ratio returns/sales {ratio:.2f}", flush=True)
            print("  CPU ms per document (machine / postgres / plugpos): sales " +
                  " / ".join(f"{sales['cpu_ms'][k]:.2f}" for k in ("machine", "postgres", "plugpos")) + ", returns " +
                  " / ".join(f"{back['cpu_ms'][k]:.2f}" for k in ("machine", "postgres", "plugpos")) +
                  f"; machine busy {sales['busy']:.0%} / {back['busy']:.0%}", flush=True)
        med = lambda k, i: statistics.median(x[i][k] for x in ratios)
        print(f"medians at {args.clients} clients: sales {med('tps', 1):.0f}/s, returns {med('tps', 2):.0f}/s, "
              f"ratio returns/sales {statistics.median(x[0] for x in ratios):.2f} (target at least 0.80)")
        counted = sql("SELECT count(*), count(DISTINCT number), (SELECT count(*) FROM returned_quantities WHERE returned > sold) FROM returns")
        print("returns stored / distinct numbers / lines over-returned:", " / ".join(counted.split()))
        if args.show_metrics:
            import urllib.request
            text = urllib.request.urlopen(base + "/metrics").read().decode()
            for line in text.splitlines():
                if line.startswith(("plugpos_return_batch", "plugpos_sale_batch")) and ("quantile=\"0.5\"" in line or "_count" in line or "_sum" in line):
                    print("  ", line)
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=60); shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
