#!/usr/bin/env python3
"""Benchmarks custodian beside the stock sqlite3 CLI, in one run, and writes
BENCHMARKS.md. Heavy: not run in CI.

Usage: python3 bench/run.py [--sizes 200000,1000000] [--runs 5] [--work DIR]
                           [--ref DIR] [--parts check,repair,fleet] [--no-build]
                           [--repair-sizes 1000000,5000000] [--recover-max N]

Four parts (--parts picks some; BENCHMARKS.md keeps the others' sections):
* check: `custodian check` vs `PRAGMA integrity_check` and `quick_check`;
* repair (issue 10's rows, at each of --repair-sizes — default the largest
  of --sizes — each beside its yardstick,
  alternating run by run, every result checked): one leaf page of
  idx_customers_email zeroed, `custodian repair` with `--snapshot DIR`
  holding a healthy snapshot (as the nightly job passes it) and with an
  empty folder, vs `cp` + `sqlite3 DB 'REINDEX customers'` on the healthy
  file (on the damaged one REINDEX fails); one leaf page of the customers
  table zeroed, `custodian repair` with the snapshot folder vs `VACUUM INTO`
  of the healthy file and, when ../shared/bench/upstream-sqlite3/build.sh
  has built it, upstream `.recover` of the damaged file piped into a new
  database (only up to --recover-max customers, default 1,000,000: it takes
  minutes above). The snapshot folder of each size holds a hard link to
  the reference database (nothing writes it). Repairs run with CUSTODIAN_TIMING=1; the first run's phase
  times go into BENCHMARKS.md;
* fleet: 200 databases of 20,000 customers each in one folder. The CPU time
  (user + system) of `custodian check DB --json R.json` run on each, one at
  a time, against the wall time of `custodian check DIR --jobs 2 --out-dir
  …` on the folder (median of 3 runs); the target is wall ≤ 1.1 × CPU / 2 (both cores busy).
  Then `custodian summary` over the 200 JSON reports, in the three formats.

For each size it builds the reference POS database with
bench/make_reference_db.py (cached in --work), then times, RUNS
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
MAKE = os.path.join(HERE, "make_reference_db.py")
BIN = os.path.join(ROOT, "target", "release", "custodian")


def timed(cmd):
    """Wall time, peak RSS (MiB), exit code, stdout, stderr of one command.
    Peak RSS comes from GNU time (the rusage of a child forked from Python
    would count Python's own pages). Output goes through temporary files (a
    full pipe would block the child)."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as rss:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd,
                             stdout=out, stderr=err)
        code = p.wait()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        lines = [l for l in rss.read().splitlines() if l.strip().isdigit()]
        peak = int(lines[-1]) / 1024.0 if lines else float("nan")
        return (wall, peak, code, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))


def build(n, work):
    path = os.path.join(work, f"ref-{n}.db")
    if not os.path.exists(path):
        subprocess.run([sys.executable, MAKE, str(n), path], check=True)
    with open(path, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    return path


def zero_leaf(src, dst, name, nth):
    """Copies src to dst and zeroes one leaf page of `name` there; returns
    the page number and the rowids whose entries or rows that leaf held
    (parsed from its bytes before the zeroing, by the fixture builder's
    page reader)."""
    import shutil
    import sqlite3
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_fixtures as mf
    shutil.copyfile(src, dst)
    c = sqlite3.connect(dst)
    leaves = [r[0] for r in c.execute("SELECT pageno FROM dbstat WHERE name = ? AND "
                                      "pagetype = 'leaf' ORDER BY pageno", (name,))]
    pg = leaves[min(nth, len(leaves) // 2)]
    ps = c.execute("PRAGMA page_size").fetchone()[0]
    c.close()
    with open(dst, "r+b") as f:
        f.seek((pg - 1) * ps)
        page = f.read(ps)
        f.seek((pg - 1) * ps)
        f.write(b"\0" * ps)
    if page[0] == mf.TABLE_LEAF:
        rowids = mf.table_leaf_rowids(page, pg)
    else:
        rowids = [e[-1] for e in mf.index_leaf_entries(page, pg)]
    return pg, rowids


def customers_digest(db):
    """(row count, SHA-256 of every customer row in rowid order), by Python's
    sqlite3 without any index: the independent truth of a repair's result."""
    import hashlib
    import sqlite3
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    h = hashlib.sha256()
    n = 0
    for row in c.execute("SELECT rowid, * FROM customers NOT INDEXED ORDER BY rowid"):
        h.update(repr(row).encode())
        n += 1
    c.close()
    return n, h.hexdigest()


def ids_of(db, rowids):
    """Customer IDs of `rowids` in `db` (sorted)."""
    import sqlite3
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    ids = sorted(c.execute("SELECT customer_id FROM customers NOT INDEXED WHERE rowid = ?",
                           (r,)).fetchone()[0] for r in rowids)
    c.close()
    return ids


def check_repair(db, code, j, want, first):
    """Exits unless a repair did exactly what `want` says: its exit code and
    verdict, the customers it restored and could not restore, the customers
    found damaged before, and a result whose customer rows are the
    reference's, found through the repaired index, and (first run) that the
    stock sqlite3 calls sound."""
    import sqlite3
    problems = []
    if code != want["exit"]:
        problems.append(f"exit {code}, want {want['exit']}")
    if j.get("verdict") != want["verdict"]:
        problems.append(f"verdict {j.get('verdict')}, want {want['verdict']}")
    for key in ("restored_customer_ids", "unrecoverable_customer_ids"):
        if j.get(key, []) != want[key]:
            problems.append(f"{key}: {len(j.get(key, []))} IDs, want {len(want[key])}")
    missed = sorted(set(want["affected_at_least"]) - set(j.get("affected_customer_ids", [])))
    if missed:
        problems.append(f"{len(missed)} customers of the zeroed page not named affected, e.g. {missed[:3]}")
    if customers_digest(db) != want["digest"]:
        problems.append("the repaired customer rows differ from the reference database's")
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    for cid in want["affected_at_least"]:
        col = want["lookup_column"]
        got = c.execute(f"SELECT count(*) FROM customers INDEXED BY {want['lookup_index']} "
                        f"WHERE {col} = (SELECT {col} FROM customers NOT INDEXED WHERE customer_id = ?)",
                        (cid,)).fetchone()[0]
        if got < 1:
            problems.append(f"{cid} not found through {want['lookup_index']} after the repair")
            break
    c.close()
    if first:
        ok = subprocess.run(["sqlite3", db, "PRAGMA integrity_check"], capture_output=True,
                            text=True).stdout.strip()
        if ok != "ok":
            problems.append(f"integrity_check after the repair: {ok[:200]}")
    if problems:
        sys.exit(f"repair of {db} is wrong: " + "; ".join(problems))


def repair_once(damaged, snapdir, work, tag, want, first):
    """Times one `custodian repair` (with CUSTODIAN_TIMING=1: its phase
    times go to stderr) on a fresh copy of `damaged`, with `snapdir` passed
    as `--snapshot`, and checks the result against `want` (check_repair)
    after the timing. Returns (wall, peak RSS, report, timing lines)."""
    import json
    import shutil
    db = os.path.join(work, f"{tag}-run.db")
    bk = os.path.join(work, f"{tag}-backup")
    shutil.rmtree(bk, ignore_errors=True)
    shutil.copyfile(damaged, db)
    os.environ["CUSTODIAN_TIMING"] = "1"
    try:
        wall, rss, code, stdout, err = timed([BIN, "repair", db, "--snapshot", snapdir,
                                              "--backup-dir", bk, "--json", "-", "--quiet"])
    finally:
        del os.environ["CUSTODIAN_TIMING"]
    if code not in (0, 1):
        sys.exit(f"repair exited {code}: {err}")
    j = json.loads(stdout)
    check_repair(db, code, j, want, first)
    shutil.rmtree(bk, ignore_errors=True)
    os.remove(db)
    timing = [l for l in err.splitlines() if "timing:" in l]
    return wall, rss, j, timing


def recover_binary():
    """The upstream sqlite3 CLI with `.recover` (../shared/bench/upstream-sqlite3/build.sh),
    if it has been built; None otherwise (it is never built here)."""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "upstream-sqlite3", "sqlite3up")
    return path if os.access(path, os.X_OK) else None


def sqlite_rows(db, sql):
    import sqlite3
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    n = c.execute(sql).fetchone()[0]
    c.close()
    return n


FLEET_DBS = 200
FLEET_CUSTOMERS = 20_000
FLEET_RUNS = 3


def cpu_timed(cmd):
    """Wall time, CPU time (user + system of the child and its threads),
    exit code of one command, output discarded."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    return wall, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status)


def fleet_bench(work):
    """The 200-database fleet: serial CPU time vs --jobs 2 wall time."""
    import json
    import shutil
    src = build(FLEET_CUSTOMERS, work)
    folder = os.path.join(work, "fleet")
    if not os.path.isdir(folder) or len(os.listdir(folder)) != FLEET_DBS:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for i in range(FLEET_DBS):
            shutil.copyfile(src, os.path.join(folder, f"store{i:03d}.db"))
    for name in os.listdir(folder):  # warm the page cache
        with open(os.path.join(folder, name), "rb") as f:
            while f.read(1 << 24):
                pass
    serial_out = os.path.join(work, "fleet-serial")
    shutil.rmtree(serial_out, ignore_errors=True)
    os.makedirs(serial_out)
    cpu = wall_serial = 0.0
    for name in sorted(os.listdir(folder)):
        w, c, code = cpu_timed([BIN, "check", os.path.join(folder, name), "--quiet",
                                "--json", os.path.join(serial_out, name + ".json")])
        if code != 0:
            sys.exit(f"custodian check {name} exited {code}")
        cpu += c
        wall_serial += w
    reports = os.path.join(work, "fleet-reports")
    shutil.rmtree(reports, ignore_errors=True)
    load_before = os.getloadavg()[0]
    summary = os.path.join(work, "fleet-summary.json")
    walls, rss = [], 0.0
    for _ in range(FLEET_RUNS):  # the median of FLEET_RUNS fleet runs
        shutil.rmtree(reports, ignore_errors=True)
        w, m, code, _, err = timed([BIN, "check", folder, "--jobs", "2", "--quiet",
                                    "--out-dir", reports, "--json", summary])
        if code != 0:
            sys.exit(f"custodian check {folder} --jobs 2 exited {code}: {err}")
        walls.append(w)
        rss = max(rss, m)
    wall = statistics.median(walls)
    load_after = os.getloadavg()[0]
    shutil.rmtree(reports + "-2", ignore_errors=True)
    fleet_cpu_w, fleet_cpu, _ = cpu_timed([BIN, "check", folder, "--jobs", "2", "--quiet",
                                           "--out-dir", reports + "-2"])
    with open(summary) as f:
        s = json.load(f)
    if s["totals"]["healthy"] != FLEET_DBS:
        sys.exit(f"the fleet summary counts {s['totals']} (expected {FLEET_DBS} healthy)")
    _, single_rss, _, _, _ = timed([BIN, "check", os.path.join(folder, "store000.db"), "--quiet"])
    hq = os.path.join(work, "hq")
    shutil.rmtree(hq, ignore_errors=True)
    os.makedirs(hq)
    sw, srss, scode, _, serr = timed([BIN, "summary", reports, "--quiet",
                                      "--json", os.path.join(hq, "summary.json"),
                                      "--report", os.path.join(hq, "summary.md"),
                                      "--html", os.path.join(hq, "summary.html")])
    if scode != 0:
        sys.exit(f"custodian summary exited {scode}: {serr}")
    with open(os.path.join(hq, "summary.json")) as f:
        hs = json.load(f)
    if hs["totals"]["databases"] != FLEET_DBS:
        sys.exit(f"the summary counts {hs['totals']}")
    r = {
        "dbs": FLEET_DBS, "customers": FLEET_CUSTOMERS, "size": os.path.getsize(src),
        "cpu": cpu, "wall_serial": wall_serial, "wall": wall, "rss": rss,
        "single_rss": single_rss, "fleet_cpu": fleet_cpu, "fleet_cpu_wall": fleet_cpu_w,
        "walls": walls, "summary_wall": sw, "summary_rss": srss, "load": (load_before, load_after),
        "summary_bytes": {e: os.path.getsize(os.path.join(hq, "summary." + e))
                          for e in ("json", "md", "html")},
    }
    print("fleet", {k: v for k, v in r.items()}, file=sys.stderr)
    return r


def fleet_section(r):
    target = 1.1 * r["cpu"] / 2
    ok = "met" if r["wall"] <= target else "NOT met"
    b = r["summary_bytes"]
    return (
        f"## Fleet: {r['dbs']} databases of {r['customers']:,} customers\n\n"
        f"Each database {r['size'] / 2**20:.1f} MiB, all in one folder, page cache warm.\n\n"
        "| run | wall | CPU (user + system) | peak RSS |\n| --- | ---: | ---: | ---: |\n"
        f"| `custodian check DB --json R.json`, one at a time, {r['dbs']} runs | "
        f"{r['wall_serial']:.2f} s | {r['cpu']:.2f} s | {r['single_rss']:.0f} MiB (one) |\n"
        f"| `custodian check DIR --jobs 2 --out-dir DIR --json S.json` (median of "
        f"{len(r['walls'])}: {', '.join(f'{w:.2f}' for w in r['walls'])}) | {r['wall']:.2f} s | "
        f"{r['fleet_cpu']:.2f} s | {r['rss']:.0f} MiB |\n"
        f"| `custodian summary DIR --json --report --html` over the {r['dbs']} JSON reports | "
        f"{r['summary_wall']:.2f} s | — | {r['summary_rss']:.0f} MiB |\n\n"
        f"Target: fleet wall ≤ 1.1 × serial CPU / 2 = {target:.2f} s: **{ok}** "
        f"(fleet wall / (serial CPU / 2) = {r['wall'] / (r['cpu'] / 2):.3f}). "
        f"The summary wrote {b['json']:,} bytes of JSON, {b['md']:,} of Markdown and "
        f"{b['html']:,} of HTML. One-minute load average just before the fleet run: "
        f"{r['load'][0]:.2f} (other work sharing the two cores; after it: {r['load'][1]:.2f}, "
        "its own two jobs included).\n"
    )


def write_section(path, title_prefix, text):
    """Replaces the section starting with `title_prefix` (to the next `## `)
    in BENCHMARKS.md, or appends it."""
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = old.find(title_prefix)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + 1)
        new = old[:start] + text + (old[end + 1:] if end >= 0 else "")
    with open(path, "w") as f:
        f.write(new)


def repair_bench(ref, email, table, snapdir, empty_snaps, a, want_index, want_table, recover):
    """Issue 10's repair rows, each beside its yardstick, alternating run by
    run: the index repair with the snapshot folder (as the nightly job
    passes it) and without one, against `cp` + `REINDEX customers` on the
    healthy file; the table repair with the snapshot folder, against
    `VACUUM INTO` of the healthy file and (when built) upstream `.recover`
    of the damaged file piped into a new database."""
    want_recover = recover
    recover = recover_binary() if recover else None
    res = {k: [] for k in ("idx_snap", "idx_none", "tbl_snap", "cp", "reindex", "vacuum",
                           "recover")}
    loads = []
    tmp = os.path.join(a.work, "yardstick.db")
    for i in range(a.runs):
        loads.append(os.getloadavg()[0])
        first = i == 0
        res["idx_snap"].append(repair_once(email, snapdir, a.work, "idx", want_index, first))
        w1, r1, _, _, _ = timed(["cp", ref, tmp])
        w2, r2, code, _, err = timed(["sqlite3", tmp, "REINDEX customers"])
        if code != 0:
            sys.exit(f"REINDEX failed: {err}")
        res["cp"].append((w1, r1))
        res["reindex"].append((w2, r2))
        os.remove(tmp)
        res["idx_none"].append(repair_once(email, empty_snaps, a.work, "idx", want_index, first))
        res["tbl_snap"].append(repair_once(table, snapdir, a.work, "tbl", want_table, first))
        w, r, code, _, err = timed(["sqlite3", ref, f"VACUUM INTO '{tmp}'"])
        if code != 0:
            sys.exit(f"VACUUM INTO failed: {err}")
        if first and sqlite_rows(tmp, "SELECT count(*) FROM customers") != want_table["digest"][0]:
            sys.exit("VACUUM INTO did not copy every customer")
        res["vacuum"].append((w, r))
        os.remove(tmp)
        if recover:
            w, r, code, _, err = timed(["sh", "-c", f"'{recover}' '{table}' .recover | "
                                        f"sqlite3 '{tmp}'"])
            if code != 0:
                sys.exit(f".recover failed: {err}")
            res["recover"].append((w, r, sqlite_rows(tmp, "SELECT count(*) FROM customers")))
            os.remove(tmp)
        print(f"repair run {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f}s" for k, v in res.items()
                                                  if v), file=sys.stderr)
    loads.append(os.getloadavg()[0])
    res["loads"] = loads
    res["recover_bin"] = recover
    res["recover_skipped"] = not want_recover
    return res


def repair_section(n, rep, table_pg):
    """The repair section of BENCHMARKS.md: each case beside its yardstick."""
    med = statistics.median
    wall = lambda k: med(x[0] for x in rep[k])
    rss = lambda k: max(x[1] for x in rep[k])
    runs = len(rep["idx_snap"])
    cp, rx = wall("cp"), wall("reindex")
    base = cp + rx
    lines = [
        f"## Repair, {n:,} customers (issue 10)\n\n",
        f"{runs} runs of each command, alternating (index repair with the snapshot folder, "
        "cp + REINDEX, index repair without, table repair, VACUUM INTO, .recover); wall-time "
        "medians, largest peak RSS. One-minute load average over the runs: "
        f"{min(rep['loads']):.1f}–{max(rep['loads']):.1f} (two cores, shared).\n\n",
        "| case | custodian repair | peak RSS | yardstick, same runs | ratio | target |\n",
        "| --- | ---: | ---: | ---: | ---: | ---: |\n",
    ]
    for key, what in (("idx_snap", "one leaf of `idx_customers_email` zeroed, `--snapshot DIR` "
                                   "holding a healthy snapshot (as the nightly job passes it)"),
                      ("idx_none", "the same, `--snapshot` an empty folder")):
        lines.append(f"| {what} | {wall(key):.2f} s | {rss(key):.0f} MiB | `cp` {cp:.2f} s + "
                     f"`REINDEX customers` {rx:.2f} s = {base:.2f} s | {wall(key) / base:.2f} | "
                     "≤ 1.0 |\n")
    vac = wall("vacuum")
    t = wall("tbl_snap")
    lines.append(f"| leaf page {table_pg} of `customers` zeroed, `--snapshot DIR` holding a "
                 f"healthy snapshot, every row back | {t:.2f} s | {rss('tbl_snap'):.0f} MiB | "
                 f"`VACUUM INTO` of the healthy file {vac:.2f} s | {t / vac:.2f} | ≤ 5.0 |\n")
    if rep["recover"]:
        rc = wall("recover")
        rows = rep["recover"][0][2]
        lines.append(f"| the same | {t:.2f} s | {rss('tbl_snap'):.0f} MiB | upstream `.recover` "
                     f"piped into `sqlite3 NEW.db` {rc:.2f} s ({rows:,} customers) | "
                     f"{t / rc:.2f} | ≤ 0.25 (about) |\n")
    j = rep["tbl_snap"][0][2]
    rows = [x["detail"] for x in j.get("actions", []) if x["kind"] == "rows"]
    how = [x["detail"] for x in j.get("actions", []) if x["kind"] == "patch_table_pages"]
    lines.append(
        f"\nTable repair: {len(j.get('restored_customer_ids', []))} customers restored from the "
        f"snapshot, {len(j.get('unrecoverable_customer_ids', []))} unrecoverable; customers: "
        f"{rows[0] if rows else '?'}; "
        f"{'mended in place: ' + how[0] if how else 'the whole database rebuilt'}.\n")
    if rep["recover_skipped"]:
        lines.append("\nupstream `.recover` was not timed at this size (it takes minutes; "
                     "`--recover-max` sets the largest size it is timed at).\n")
    elif not rep["recover"]:
        lines.append("\nupstream `.recover` was not timed: build it first with "
                     "`../shared/bench/upstream-sqlite3/build.sh` (never a dependency).\n")
    lines.append(
        "\nEvery repair is checked after its timing: exit code, verdict, restored and "
        "unrecoverable IDs, the customers of the zeroed page named affected and found through "
        "the repaired index, the customer rows equal to the reference's, and (first run) the "
        "stock `integrity_check`. Each repair includes the check before, the backup (the "
        "original file under a second name, named after the swap; its SHA-256 read beside the "
        "build), the repaired copy, its verification and fsync, and the atomic swap. The "
        "yardsticks do none of that: `cp` + `REINDEX` is not synced and verifies nothing; "
        "`VACUUM INTO` reads a healthy file (it fails on the damaged one); `.recover` reads the "
        "damaged file. The page cache is warm for all alike.\n\n"
        "Where the time goes (`CUSTODIAN_TIMING=1`, first run; times are seconds since the "
        "repair started, except copy / empty and free / sql steps / verify, counted from the "
        "start of their own step):\n\n")
    for key, what in (("idx_snap", "index repair, snapshot folder given"),
                      ("idx_none", "index repair, no snapshot"),
                      ("tbl_snap", "table repair")):
        lines.append(f"{what}:\n\n```\n" + "\n".join(rep[key][0][3]) + "\n```\n\n")
    return "".join(lines)


def repair_size(rn, a):
    """The repair rows at `rn` customers: the reference database, a healthy
    snapshot of it in its own folder (a hard link: nothing writes it), the
    two damaged copies, what each repair must give, and the runs."""
    import shutil
    ref = build(rn, a.ref)
    snapdir = os.path.join(a.work, f"snap-{rn}")
    os.makedirs(snapdir, exist_ok=True)
    snap = os.path.join(snapdir, "ref.db")
    if not os.path.exists(snap):
        try:
            os.link(ref, snap)
        except OSError:
            shutil.copyfile(ref, snap)
    email = os.path.join(a.work, f"email-zeroed-{rn}.db")
    _, email_rowids = zero_leaf(ref, email, "idx_customers_email", 3000)
    table = os.path.join(a.work, f"table-zeroed-{rn}.db")
    table_pg, table_rowids = zero_leaf(ref, table, "customers", 5000)
    empty_snaps = os.path.join(a.work, "no-snapshots")
    os.makedirs(empty_snaps, exist_ok=True)
    # What each repair must do, computed from the reference database before
    # the damage: the index is rebuilt from the table (nothing to restore);
    # the zeroed table leaf's rows come back from the snapshot, which is the
    # reference itself. Either way the result holds the reference's rows.
    digest = customers_digest(ref)
    want_index = {"exit": 0, "verdict": "repaired", "restored_customer_ids": [],
                  "unrecoverable_customer_ids": [], "affected_at_least": ids_of(ref, email_rowids),
                  "digest": digest, "lookup_index": "idx_customers_email", "lookup_column": "email"}
    lost = ids_of(ref, table_rowids)
    want_table = {"exit": 0, "verdict": "repaired", "restored_customer_ids": lost,
                  "unrecoverable_customer_ids": [], "affected_at_least": lost, "digest": digest,
                  "lookup_index": "sqlite_autoindex_customers_1", "lookup_column": "customer_id"}
    recover = rn <= a.recover_max
    rep = repair_bench(ref, email, table, snapdir, empty_snaps, a, want_index, want_table,
                       recover)
    for f in (email, table):
        os.remove(f)
    return rn, rep, table_pg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200000,1000000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work"))
    ap.add_argument("--ref", default=None,
                    help="folder of the cached reference databases ref-N.db (default: --work); "
                         "shared between runs, only read once made")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--parts", default="check,repair,fleet")
    ap.add_argument("--repair-sizes", default=None,
                    help="sizes the repair rows are measured at (default: the largest of --sizes)")
    ap.add_argument("--recover-max", type=int, default=1_000_000,
                    help="time upstream .recover only up to this size (it takes minutes above)")
    ap.add_argument("--no-build", action="store_true",
                    help="use target/release/custodian as it is (no cargo build first)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    a.ref = a.ref or a.work
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    parts = set(a.parts.split(","))
    if "fleet" in parts:
        fleet = fleet_section(fleet_bench(a.work))
    if not parts & {"check", "repair"}:
        write_section(a.out, "## Fleet", fleet)
        print(f"wrote the fleet section of {a.out}", file=sys.stderr)
        return
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        db = build(n, a.ref)
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
    # repairs, at each of --repair-sizes (default: the largest size)
    reps = []
    for rn in [int(x) for x in (a.repair_sizes or str(max(int(x) for x in a.sizes.split(","))))
               .split(",")]:
        reps.append(repair_size(rn, a))
    cpu = platform.processor() or platform.machine()
    # the other sections of an earlier run (the fleet's when not re-measured,
    # bench/check_speed.py's) are kept as they are
    kept = []
    if os.path.exists(a.out):
        for sec in open(a.out).read().split("\n## ")[1:]:
            if sec.startswith("Repair") or (sec.startswith("Fleet") and "fleet" in parts):
                continue
            kept.append("## " + sec.rstrip("\n") + "\n")
    with open(a.out, "w") as f:
        f.write("# Benchmarks\n\n")
        f.write("Written by `python3 bench/run.py` (not run in CI). Reference databases from\n")
        f.write("`bench/make_reference_db.py N` (customers with 4 indexes, 3\n")
        f.write(f"transactions per customer). {a.runs} runs each, alternating; wall-time medians;\n")
        f.write("peak memory is the largest maximum resident set over the runs (memory-mapped\n")
        f.write(f"pages included). Warm page cache. Machine: {os.cpu_count()} cores, {cpu}.\n\n")
        f.write("| customers | file | custodian check | integrity_check | ratio | quick_check | check / quick_check | custodian peak RSS | integrity_check peak RSS |\n")
        f.write("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
        for n, size, med in rows:
            c, ic, qc = med["custodian check"], med["sqlite3 integrity_check"], med["sqlite3 quick_check"]
            f.write(f"| {n:,} | {size / 2**20:.0f} MiB | {c[0]:.2f} s | {ic[0]:.2f} s | "
                    f"{c[0] / ic[0]:.3f} | {qc[0]:.2f} s | {c[0] / qc[0]:.2f} | {c[1]:.0f} MiB | "
                    f"{ic[1]:.0f} MiB |\n")
        f.write("\nratio = custodian check wall time / `PRAGMA integrity_check` wall time "
                "(target: at most 0.1); check / quick_check: issue 10's target is at most 1.2.\n")
        for rn, rep, table_pg in reps:
            f.write("\n" + repair_section(rn, rep, table_pg))
        if "fleet" in parts:
            f.write("\n" + fleet)
        for sec in kept:
            f.write("\n" + sec)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
