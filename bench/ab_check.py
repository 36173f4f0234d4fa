#!/usr/bin/env python3
"""Two custodian binaries' `check` on the same databases, back to back.

Usage: python3 bench/ab_check.py --a OLD_BIN --b NEW_BIN [--runs 5] DB...

For each database, RUNS rounds, each running `A check DB --quiet` then
`B check DB --quiet` (the order swapped every other round, so that a shared
machine's load weighs on both alike). Reported per database and binary:
wall-time and CPU-time (user + system) medians, peak RSS (GNU time), the
exit codes seen, and the median of the per-round ratios B / A. Both must
give the same exit code in every round. Not run in CI: a change's speed
figure, e.g. a build of main against a branch's.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def timed(cmd):
    """Wall seconds, CPU seconds, peak RSS (MiB), exit code."""
    with tempfile.NamedTemporaryFile(mode="r") as res:
        t0 = time.perf_counter()
        code = subprocess.call(["/usr/bin/time", "-f", "%M %U %S", "-o", res.name] + cmd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        rss, user, sys_ = (float(x) for x in res.read().split()[-3:])
    return wall, user + sys_, rss / 1024.0, code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the binary to compare against (e.g. main's)")
    ap.add_argument("--b", required=True, help="the binary measured")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("dbs", nargs="+")
    args = ap.parse_args()
    load0 = open("/proc/loadavg").read().split()[:3]
    print("| database | binary | wall median (s) | CPU median (s) | peak RSS (MiB) | exit | B / A wall (median of rounds) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    failed = False
    for db in args.dbs:
        got = {"A": [], "B": []}
        ratios = []
        for r in range(args.runs):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            this = {}
            for who in order:
                this[who] = timed([args.a if who == "A" else args.b, "check", db, "--quiet"])
                got[who].append(this[who])
            ratios.append(this["B"][0] / this["A"][0])
            if this["A"][3] != this["B"][3]:
                failed = True
                print(f"{db}: round {r}: exit {this['A'][3]} (A) vs {this['B'][3]} (B)",
                      file=sys.stderr)
        for who in ("A", "B"):
            rows = got[who]
            codes = sorted({x[3] for x in rows})
            ratio = f"{statistics.median(ratios):.3f}" if who == "B" else ""
            print(f"| {db} | {who} | {statistics.median(x[0] for x in rows):.3f} | "
                  f"{statistics.median(x[1] for x in rows):.3f} | {max(x[2] for x in rows):.1f} | "
                  f"{codes} | {ratio} |")
    load1 = open("/proc/loadavg").read().split()[:3]
    print(f"\nload average before {' '.join(load0)}, after {' '.join(load1)}; {args.runs} rounds")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
