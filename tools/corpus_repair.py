#!/usr/bin/env python3
"""Runs `custodian repair` over SQLite's own damaged databases and writes
the table of results (docs/corpus-repair.md).

For each corpus file from which upstream `.recover` gets rows in some table
other than lost_and_found (RECOVER.json): --table = the table with the most
rows there (on a tie, the first in RECOVER.json's order), --id-column = that
table's first column (or rowid), an empty snapshot folder, on a copy. The
verdict on the result comes from the stock sqlite3 CLI, never from
custodian: `PRAGMA integrity_check` must print `ok`, and the table must hold
at least .recover's row count.

usage: python3 tools/corpus_repair.py [--bin PATH] [--corpus DIR] [--out FILE] [FILE...]
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_FILE = 60


def corpus_dir(given):
    if given:
        return given
    for d in (os.path.join(ROOT, "../shared/corpus/sqlite-testsuite"),
              os.path.join(ROOT, "tests/corpus/sqlite-testsuite")):
        if os.path.exists(os.path.join(d, "RECOVER.json")):
            return d
    sys.exit("corpus_repair: no corpus folder with RECOVER.json")


def targets(corpus):
    """(file, table, id column, .recover's rows) for the 132 files."""
    rec = json.load(open(os.path.join(corpus, "RECOVER.json")))
    out = []
    for f in rec["files"]:
        counts = [(t, n) for t, n in f["tables"].items()
                  if t != "lost_and_found" and isinstance(n, int)]
        if not any(n > 0 for _, n in counts):
            continue
        best = max(n for _, n in counts)
        table = next(t for t, n in counts if n == best)  # ties: the first in RECOVER.json
        cols = f["columns"].get(table) or []
        out.append((f["file"], table, cols[0] if cols else "rowid", best))
    return out


DERIVED = ("data", "idx", "docsize", "segments", "segdir", "stat", "node", "rowid", "parent")


def reindexed(report, table):
    """The virtual table whose derived shadow table `table` is, when the
    repair rebuilt it from its recovered content."""
    for a in report.get("actions", []):
        vt = a.get("object") or ""
        if a["kind"] == "rebuild_virtual_table" and table.startswith(vt + "_") \
                and table[len(vt) + 1:] in DERIVED:
            return vt
    return None


def sqlite3(db, sql):
    try:
        p = subprocess.run(["sqlite3", "-batch", db, sql], capture_output=True,
                           text=True, errors="replace", timeout=30,
                           env={**os.environ, "HOME": "/nonexistent"})
        return p.returncode, p.stdout.strip(), p.stderr.strip()
    except subprocess.TimeoutExpired:
        return 124, "", "timed out"


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def run_one(binary, corpus, file, table, idcol, want):
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, file)
        shutil.copyfile(os.path.join(corpus, file), db)
        before = hashlib.sha256(open(db, "rb").read()).hexdigest()
        snaps = os.path.join(tmp, "snapshots")
        os.mkdir(snaps)
        t0 = time.monotonic()
        try:
            p = subprocess.run([binary, "repair", db, "--table", table, "--id-column", idcol,
                                "--snapshot", snaps, "--quiet", "--json", os.path.join(tmp, "r.json")],
                               capture_output=True, text=True, errors="replace", timeout=PER_FILE,
                               cwd=tmp)
            code, err = p.returncode, p.stderr.strip()
        except subprocess.TimeoutExpired:
            code, err = "hang", f"no answer in {PER_FILE} s"
        secs = time.monotonic() - t0
        row = {"file": file, "table": table, "id_column": idcol, "recover_rows": want,
               "exit": code, "seconds": round(secs, 2), "rows": None, "integrity": None,
               "reason": "", "ok": False, "reindexed": False}
        try:
            report = json.load(open(os.path.join(tmp, "r.json")))
        except (OSError, ValueError):
            report = {}
        if code in (0, 1):
            rc, out, e = sqlite3(db, "PRAGMA integrity_check")
            row["integrity"] = out if rc == 0 and not e else (out + " " + e).strip()
            rc, out, e = sqlite3(db, f"SELECT count(*) FROM {quote(table)}")
            row["rows"] = int(out) if rc == 0 and out.isdigit() else None
            if row["rows"] is None:
                row["reason"] = f"count(*) fails: {e or out}"
            row["ok"] = row["integrity"] == "ok" and row["rows"] is not None and row["rows"] >= want
            if row["integrity"] != "ok":
                row["reason"] = "repaired file fails integrity_check: " + row["integrity"].splitlines()[0]
            elif not row["ok"] and row["rows"] is not None:
                vt = reindexed(report, table)
                if vt:
                    row["reindexed"] = True
                    row["reason"] = (f"{table} is derived data of virtual table {vt}, whose index no "
                                     f"longer matched its recovered content and was rebuilt from it: "
                                     f"{row['rows']} rows (.recover copies the damaged {want})")
                else:
                    row["reason"] = f"{row['rows']} rows, .recover gets {want}"
        else:
            unchanged = hashlib.sha256(open(db, "rb").read()).hexdigest() == before
            lines = [l for l in err.splitlines() if l.strip()]
            row["reason"] = lines[0] if lines else "(no message)"
            if code == 101 or "panicked" in err:
                row["reason"] = "PANIC: " + row["reason"]
            if not unchanged:
                row["reason"] = "ORIGINAL CHANGED: " + row["reason"]
            row["reason"] = row["reason"].replace(tmp + "/", "")
        return row


def write_table(rows, path):
    ok = sum(r["ok"] for r in rows)
    reidx = sum(r["reindexed"] for r in rows)
    n = max(len(rows), 1)
    lines = [
        "# Repair on SQLite's own damaged databases",
        "",
        "Written by `python3 tools/corpus_repair.py` (do not edit by hand). For each",
        "file of `corpus/sqlite-testsuite` from which upstream `.recover` gets rows in a",
        "table other than `lost_and_found` (RECOVER.json): `custodian repair FILE --table T",
        "--id-column C --snapshot EMPTY_FOLDER` on a copy, T = the table where `.recover`",
        "finds the most rows (on a tie, the first in RECOVER.json's order), C = its first column. *ok* means exit 0 or 1, the stock",
        "`sqlite3` says `ok` to `PRAGMA integrity_check` on the result, and T holds at",
        "least `.recover`'s rows. A refusal (exit 2 or 3) leaves the original byte for",
        "byte as it was.",
        "",
        f"**{ok} of {len(rows)} files repaired holding at least `.recover`'s rows "
        f"({100.0 * ok / n:.1f} %).** {reidx} more are repaired into a sound file whose table "
        f"is derived data of a full-text or R-Tree index, rebuilt from the content recovered "
        f"({100.0 * (ok + reidx) / n:.1f} % with them). Exit 0 or 1 always gave a file the stock "
        f"`sqlite3` calls `ok`; no panic, no hang.",
        "",
        "| file | table | exit | rows | .recover | integrity_check | ok | reason |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        integ = (r["integrity"] or "").splitlines()[0][:60] if r["integrity"] else ""
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["file"], r["table"], r["exit"], "" if r["rows"] is None else r["rows"],
            r["recover_rows"], integ.replace("|", "\\|"), "yes" if r["ok"] else "**no**",
            r["reason"].replace("|", "\\|")))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/custodian"))
    ap.add_argument("--corpus")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/corpus-repair.md"))
    ap.add_argument("--json", help="also write the rows as JSON")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    corpus = corpus_dir(a.corpus)
    rows = []
    for (file, table, idcol, want) in targets(corpus):
        if a.files and file not in a.files:
            continue
        r = run_one(a.bin, corpus, file, table, idcol, want)
        rows.append(r)
        print(f"{file:28} exit {r['exit']!s:4} rows {r['rows']!s:>6}/{want:<6} "
              f"{'ok ' if r['ok'] else 'NO '} {r['reason'][:110]}", flush=True)
    ok = sum(r["ok"] for r in rows)
    reidx = sum(r["reindexed"] for r in rows)
    print(f"{ok} of {len(rows)} ok, {reidx} more reindexed")
    if not a.files:
        write_table(rows, a.out)
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
