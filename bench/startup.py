#!/usr/bin/env python3
"""Start-to-ready with the managed cluster (SPEC target: under 3 s).

Measures, in one run and interleaved so machine noise hits all alike:
  baseline  PostgreSQL alone: initdb + `pg_ctl start -w` on a fresh directory
  cold      `plugpos serve` on an empty data directory until /health/ready is 200
            (initdb, start, create database, migrations, checks)
  warm      `plugpos serve` on an existing data directory until /health/ready is 200
and prints medians and the ratio cold/baseline, plus plugpos's own resident memory once ready
(idle, PostgreSQL excluded; SPEC target: under 40 MB).

Usage: bench/startup.py [--runs N] [--binary target/release/plugpos]
(build first: cargo build --release). Runs as root too (PostgreSQL then runs as `postgres`).
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request


def pg_bin():
    for d in os.environ.get("PATH", "").split(":") + sorted(
        (f"/usr/lib/postgresql/{v}/bin" for v in os.listdir("/usr/lib/postgresql")), reverse=True
    ):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    raise SystemExit("initdb/pg_ctl not found")


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def baseline(root, bindir):
    pgdata = os.path.join(root, "pg")
    sock = os.path.join(root, "run")
    os.makedirs(sock)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    start = time.monotonic()
    subprocess.run(as_pg([f"{bindir}/initdb", "-D", pgdata, "-U", "postgres", "--auth=trust",
                          "--encoding=UTF8", "--locale=C.UTF-8"]), check=True, capture_output=True)
    subprocess.run(as_pg([f"{bindir}/pg_ctl", "start", "-w", "-D", pgdata, "-l", os.path.join(root, "pg.log"),
                          "-o", f"-k {sock} -c listen_addresses="]), check=True, capture_output=True)
    elapsed = time.monotonic() - start
    subprocess.run(as_pg([f"{bindir}/pg_ctl", "stop", "-m", "fast", "-w", "-D", pgdata]), check=True,
                   capture_output=True)
    return elapsed


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def plugpos(binary, data_dir):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGPOS_")}
    env["PLUGPOS_LOG__STDOUT"] = "false"
    start = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--data-dir", data_dir, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"plugpos exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        elapsed = time.monotonic() - start
                        time.sleep(0.5)
                        return elapsed, rss_mib(proc.pid)
            except OSError:
                pass
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--binary", default="target/release/plugpos")
    args = ap.parse_args()
    bindir = pg_bin()
    results = {"baseline": [], "cold": [], "warm": []}
    memory = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="plugpos-bench-", dir="/tmp") as root:
            os.chmod(root, 0o755)
            results["baseline"].append(baseline(os.path.join(root, "base"), bindir))
            data = os.path.join(root, "data")
            results["cold"].append(plugpos(args.binary, data)[0])
            warm, rss = plugpos(args.binary, data)
            results["warm"].append(warm)
            memory.append(rss)
    for name, values in results.items():
        print(f"{name:9} median {statistics.median(values):.3f} s  (runs: {', '.join(f'{v:.3f}' for v in values)})")
    ratio = statistics.median(results["cold"]) / statistics.median(results["baseline"])
    print(f"cold/baseline ratio {ratio:.2f}")
    print(f"idle RSS  median {statistics.median(memory):.1f} MiB (runs: {', '.join(f'{m:.1f}' for m in memory)})")


if __name__ == "__main__":
    main()
