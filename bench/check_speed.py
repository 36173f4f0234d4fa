#!/usr/bin/env python3
"""Issue 10's check rows: `custodian check` against SQLite's `PRAGMA
quick_check`, side by side in one run, and where check's time goes.

Usage: python3 bench/check_speed.py [--sizes 1000000,5000000] [--runs 5]
                                    [--work DIR] [--out BENCHMARKS.md] [--no-build]

For each size, on the reference database of bench/make_reference_db.py
(built, or reused from --work as `ref-N.db`, as bench/run.py does), RUNS
rounds, each running one after the other:
`custodian check DB --quiet` (custodian's own checks: the default),
`sqlite3 DB 'PRAGMA quick_check'` (the yardstick) and
`custodian check DB --quiet --sqlite-quick-check` (with SQLite's full
quick_check as a second opinion). Reported: wall-time medians, the median
of the per-round ratios check / quick_check (each round's pair ran
back to back, so a shared machine's load weighs on both alike), CPU time
(user + system) medians, the largest peak RSS (GNU time), and the load
average before and after. Targets (issue 10): check at most 1.2 ×
quick_check, peak memory under 64 MiB at 5M customers. Then one more run
with CUSTODIAN_TIMING=1 gives check's phases (stderr), to say where the time
goes. Every check must exit 0 and quick_check say ok.

With --out, the table replaces the section "## Check against quick_check"
of that file (bench/run.py writes the others). Not run in CI.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: build, write_section, BIN, ROOT)

TITLE = "## Check against quick_check"


def timed(cmd, env=None):
    """Wall seconds, CPU seconds (user + system), peak RSS (MiB), exit code,
    stdout, stderr (GNU time gives the child's own counters)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as res:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M %U %S", "-o", res.name] + cmd,
                             stdout=out, stderr=err, env=env)
        code = p.wait()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        fields = res.read().split()[-3:]
        rss, user, sys_ = (float(x) for x in fields)
        return (wall, user + sys_, rss / 1024.0, code, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))


def measure(db, runs):
    cmds = {
        "check": [run.BIN, "check", db, "--quiet"],
        "quick_check": ["sqlite3", db, "PRAGMA quick_check"],
        "check --sqlite-quick-check": [run.BIN, "check", db, "--quiet", "--sqlite-quick-check"],
    }
    res = {k: [] for k in cmds}
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        for k, c in cmds.items():
            wall, cpu, rss, code, out, err = timed(c)
            if k == "quick_check" and out.strip() != "ok":
                sys.exit(f"quick_check did not say ok on {db}: {out[:200]}")
            if k != "quick_check" and code != 0:
                sys.exit(f"{' '.join(c)} exited {code}: {err}")
            res[k].append((wall, cpu, rss))
    load_after = os.getloadavg()[0]
    env = dict(os.environ, CUSTODIAN_TIMING="1")
    _, _, _, _, _, err = timed(cmds["check"], env)
    phases = [l.split("timing: ", 1)[1] for l in err.splitlines() if "timing: " in l]
    return res, (load_before, load_after), phases


def section(rows, runs):
    med = statistics.median
    t = [TITLE, "",
         "Written by `python3 bench/check_speed.py` (not run in CI): `custodian check DB "
         "--quiet` against `sqlite3 DB 'PRAGMA quick_check'`, on the reference databases "
         f"of `bench/make_reference_db.py N`. {runs} rounds, each running the commands one "
         "after the other; wall-time and CPU (user + system) medians; the ratio is the "
         "median of the per-round ratios; peak RSS is the largest over the runs. The "
         "machine is shared: the load average is given. Targets (issue 10): check at most "
         "1.2 × quick_check, peak memory under 64 MiB at 5,000,000 customers.", "",
         "| customers | check | quick_check | ratio | check CPU | quick_check CPU | "
         "check peak RSS | with --sqlite-quick-check | load (1 min) |",
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, res, load, _ in rows:
        c, q, w = res["check"], res["quick_check"], res["check --sqlite-quick-check"]
        ratio = med(a[0] / b[0] for a, b in zip(c, q))
        t.append(f"| {n:,} | {med(x[0] for x in c):.2f} s | {med(x[0] for x in q):.2f} s | "
                 f"{ratio:.2f} | {med(x[1] for x in c):.2f} s | {med(x[1] for x in q):.2f} s | "
                 f"{max(x[2] for x in c):.0f} MiB | {med(x[0] for x in w):.2f} s | "
                 f"{load[0]:.1f} → {load[1]:.1f} |")
    t.append("")
    for n, _, _, phases in rows:
        t.append(f"Where check's time goes at {n:,} customers (`CUSTODIAN_TIMING=1`, "
                 "seconds since the passes began, phases overlap): " + "; ".join(phases) + ".")
        t.append("")
    return "\n".join(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,5000000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(run.ROOT, "bench-work"))
    ap.add_argument("--out", help="write the section into this file (e.g. BENCHMARKS.md)")
    ap.add_argument("--no-build", action="store_true",
                    help="use target/release/custodian as it is (no cargo build first)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=run.ROOT, check=True)
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        db = run.build(n, a.work)
        res, load, phases = measure(db, a.runs)
        rows.append((n, res, load, phases))
    text = section(rows, a.runs)
    print(text)
    if a.out:
        run.write_section(a.out, TITLE, text + "\n")


if __name__ == "__main__":
    main()
