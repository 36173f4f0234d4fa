#!/usr/bin/env python3
"""Benchmarks custodian beside the stock sqlite3 CLI, in one run, and writes
BENCHMARKS.md. Heavy: not run in CI.

Usage: python3 bench/run.py [--sizes 200000,1000000] [--runs 5] [--work DIR]

For each size it builds the reference POS database with
../shared/bench/make_reference_db.py (cached in --work), then times, RUNS
times each, alternating: `custodian check DB --quiet`,
`sqlite3 DB 'PRAGMA integrity_check'`, `sqlite3 DB 'PRAGMA quick_check'`.
Wall time and peak RSS come from GNU time's -v style counters via
os.wait4 (ru_maxrss, which counts memory-mapped pages touched). Medians are
reported. The page cache is warm for every command alike (each database is
read once before timing).
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MAKE = os.path.join(ROOT, "..", "shared", "bench", "make_reference_db.py")
BIN = os.path.join(ROOT, "target", "release", "custodian")


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out = p.stdout.read().decode(errors="replace")
    err = p.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_maxrss / 1024.0, code, out, err


def build(n, work):
    path = os.path.join(work, f"ref-{n}.db")
    if not os.path.exists(path):
        subprocess.run([sys.executable, MAKE, str(n), path], check=True)
    with open(path, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200000,1000000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work"))
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        db = build(n, a.work)
        size = os.path.getsize(db)
        cmds = {
            "custodian check": [BIN, "check", db, "--quiet"],
            "sqlite3 integrity_check": ["sqlite3", db, "PRAGMA integrity_check"],
            "sqlite3 quick_check": ["sqlite3", db, "PRAGMA quick_check"],
        }
        res = {k: [] for k in cmds}
        for _ in range(a.runs):
            for k, c in cmds.items():
                wall, rss, code, out, err = timed(c)
                if k == "custodian check" and code != 0:
                    sys.exit(f"custodian check exited {code} on {db}: {err}")
                if k.startswith("sqlite3") and out.strip() != "ok":
                    sys.exit(f"{k} did not say ok on {db}: {out[:200]}")
                res[k].append((wall, rss))
        med = {k: (statistics.median(w for w, _ in v), max(r for _, r in v)) for k, v in res.items()}
        rows.append((n, size, med))
        print(n, {k: f"{w:.3f}s {r:.0f}MiB" for k, (w, r) in med.items()}, file=sys.stderr)
    cpu = platform.processor() or platform.machine()
    with open(a.out, "w") as f:
        f.write("# Benchmarks\n\n")
        f.write("Written by `python3 bench/run.py` (not run in CI). Reference databases from\n")
        f.write("`../shared/bench/make_reference_db.py N` (customers with 4 indexes, 3\n")
        f.write(f"transactions per customer). {a.runs} runs each, alternating; wall-time medians;\n")
        f.write("peak memory is the largest maximum resident set over the runs (memory-mapped\n")
        f.write(f"pages included). Warm page cache. Machine: {os.cpu_count()} cores, {cpu}.\n\n")
        f.write("| customers | file | custodian check | integrity_check | ratio | quick_check | custodian peak RSS | integrity_check peak RSS |\n")
        f.write("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
        for n, size, med in rows:
            c, ic, qc = med["custodian check"], med["sqlite3 integrity_check"], med["sqlite3 quick_check"]
            f.write(f"| {n:,} | {size / 2**20:.0f} MiB | {c[0]:.2f} s | {ic[0]:.2f} s | "
                    f"{c[0] / ic[0]:.3f} | {qc[0]:.2f} s | {c[1]:.0f} MiB | {ic[1]:.0f} MiB |\n")
        f.write("\nratio = custodian check wall time / `PRAGMA integrity_check` wall time "
                "(target: at most 0.1).\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
