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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402

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


def made_anew(report, table):
    """The repair's account, when it made the virtual table `table` itself
    anew (an R-Tree, which has no 'rebuild')."""
    for a in report.get("actions", []):
        if a["kind"] == "rebuild_virtual_table" and a.get("object") == table:
            return a.get("detail", "")
    return None


def _varint(b, i):
    """make_fixtures' varint reader, with (None, len(b)) for one that runs
    past the end of `b` (a damaged page) instead of an exception."""
    try:
        return mf._varint(b, i)
    except ValueError:
        return None, len(b)


def serial_size(t):
    """The bytes a value of serial type t takes (None: reserved)."""
    if t in (10, 11):
        return None
    if t >= 12:
        return (t - 12) // 2
    return [0, 1, 2, 3, 4, 6, 8, 8, 0, 0][t]


def record_fault(p, j, size):
    """Why the record of `size` bytes at p[j:] is not whole (its header
    and values do not exactly fill it), or None when it is, read from the
    bytes as the file format describes a record."""
    hl, k = _varint(p, j)
    if hl is None or hl < k - j or hl > size:
        return f"its record's header size {hl} does not fit its {size}-byte payload"
    body = hl
    while k < j + hl:
        t, k = _varint(p, k)
        n = None if t is None else serial_size(t)
        if n is None:
            return "its record's header holds a reserved serial type"
        body += n
    if body != size:
        return f"its record's values end at byte {body} of its {size}-byte payload"
    return None


def table_cells(path, root):
    """The leaf cells of the b-tree at `root` in the file at `path`, read
    from the bytes (independently of custodian and of SQLite), each as
    (page, cell, offset, kind, rowid): kind is "readable" (the cell lies in
    the page's cell content area and its local payload ends inside the
    page), "in header" (its offset points at or before its own cell
    pointer: the page's header bytes read as a cell, which upstream's
    current recovery code refuses), "outside" (it starts between the cell
    pointers and the cell content area the page header gives), or "past
    end" (the cell runs past the usable page)."""
    data = open(path, "rb").read()
    if len(data) < 100:
        return []
    ps = int.from_bytes(data[16:18], "big")
    ps = 65536 if ps == 1 else ps
    if ps < 512 or ps & (ps - 1):
        return []
    usable = ps - data[20]
    npages = len(data) // ps
    out, seen, todo = [], set(), [root]
    while todo:
        pg = todo.pop()
        if pg in seen or not 1 <= pg <= npages or len(seen) > 100000:
            continue
        seen.add(pg)
        p = data[(pg - 1) * ps: pg * ps]
        h = 100 if pg == 1 else 0
        t = p[h]
        if t not in (2, 5, 10, 13):
            continue
        n = int.from_bytes(p[h + 3: h + 5], "big")
        content = int.from_bytes(p[h + 5: h + 7], "big") or 65536
        hs = 12 if t in (2, 5) else 8
        if t in (2, 5):
            todo.append(int.from_bytes(p[h + 8: h + 12], "big"))
        for i in range(n):
            cp = h + hs + 2 * i
            if cp + 2 > usable:
                break
            o = int.from_bytes(p[cp: cp + 2], "big")
            if t in (2, 5):
                if o + 4 <= usable and o > cp:
                    todo.append(int.from_bytes(p[o: o + 4], "big"))
                continue
            if o <= cp:
                kind = "in header"
            elif o < content:
                kind = "outside"
            elif o >= usable:
                kind = "past end"
            else:
                kind = "readable"
            rowid = None
            size, j = _varint(p, o) if o < len(p) else (None, o)
            if t == 13 and size is not None:
                rowid, j = _varint(p, j)
            if kind == "readable" and size is not None:
                x = usable - 35 if t == 13 else ((usable - 12) * 64 // 255) - 23
                local = size if size <= x else None
                if local is None:
                    m = ((usable - 12) * 32 // 255) - 23
                    k = m + ((size - m) % (usable - 4))
                    local = (k if k <= x else m) + 4
                if j + local > usable:
                    kind = "past end"
            fault = None
            if kind == "readable" and size is not None and j + size <= usable:
                fault = record_fault(p, j, size)
            out.append((pg, i, o, kind, rowid, fault))
    return out


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
               "reason": "", "ok": False, "reindexed": False, "quarantined": None,
               "row_measure": None}
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
            rc, out, _ = sqlite3(db, "SELECT count(*) FROM custodian_quarantine "
                                 f"WHERE source_table = '{table.replace(chr(39), chr(39) * 2)}'")
            row["quarantined"] = int(out) if rc == 0 and out.isdigit() else 0
            import corpus_rows  # (it imports this module)
            entry = corpus_rows.truth()[0].get(file)
            if entry is not None:
                row["row_measure"] = corpus_rows.measure(entry, os.path.join(corpus, file), db)
            if row["integrity"] != "ok":
                row["reason"] = "repaired file fails integrity_check: " + row["integrity"].splitlines()[0]
            elif not row["ok"] and row["rows"] is not None:
                vt = reindexed(report, table)
                anew = made_anew(report, table)
                if anew is not None:
                    rc, out, _ = sqlite3(db, "SELECT count(*) FROM custodian_quarantine "
                                         f"WHERE source_table = '{table.replace(chr(39), chr(39) * 2)}'")
                    q = int(out) if rc == 0 and out.isdigit() else 0
                    row["reason"] = (f"{row['rows']} rows, .recover gets {want}: {table} is a virtual "
                                     "table whose module's check failed, and the repair made it anew from "
                                     f"the entries its nodes give; {q} of them, refused by the new tree, are "
                                     f"in custodian_quarantine ({row['rows']} + {q} = {row['rows'] + q}): "
                                     ".recover counts every entry the damaged nodes give, those the "
                                     "module refuses too")
                elif vt:
                    row["reindexed"] = True
                    row["reason"] = (f"{table} is derived data of virtual table {vt}, whose index no "
                                     f"longer matched its recovered content and was rebuilt from it: "
                                     f"{row['rows']} rows (.recover copies the damaged {want})")
                else:
                    row["reason"] = f"{row['rows']} rows, .recover gets {want}: " + \
                        explain_short(os.path.join(corpus, file), table, row["rows"], want, db)
                    m = (row["row_measure"] or {}).get(table)
                    if m and m["quarantined"]:
                        row["reason"] += (f"; {m['quarantined']} of .recover's rows are in "
                                          "custodian_quarantine (a cell kept whole as cell_payload, "
                                          "or a row the table refused)")
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


def explain_short(path, table, rows, want, repaired=None):
    """Why the repaired table holds fewer rows than .recover's, from the
    original file's bytes: the table's leaf cells, sorted as table_cells
    sorts them."""
    rc, out, _ = sqlite3(path, "PRAGMA writable_schema=1; SELECT rootpage FROM sqlite_schema "
                         f"WHERE type = 'table' AND name = '{table.replace(chr(39), chr(39) * 2)}'")
    root = out.splitlines()[-1] if rc == 0 and out else ""
    if not root.isdigit():
        return "the stock sqlite3 cannot name the table's root page"
    cells = table_cells(path, int(root))
    readable = [c for c in cells if c[3] == "readable"]
    header = [c for c in cells if c[3] == "in header"]
    outside = [c for c in cells if c[3] == "outside"]
    past = [c for c in cells if c[3] == "past end"]
    keyed = all(c[4] is not None for c in readable)
    ids = {c[4] for c in readable}
    extra = sorted({c[4] for c in header + outside if c[4] is not None} - ids)
    parts = [f"its leaf cells in the file: {len(readable)} inside their pages"
             + (f" ({len(ids)} distinct rowids)" if keyed and readable else "")]
    if header:
        parts.append(f"{len(header)} whose offset points into their own page's header "
                     f"(the header's bytes read as a cell{', rowid ' + ', '.join(map(str, extra)) if extra else ''}: "
                     "not a row; upstream's recovery refuses such cells today)")
    if outside:
        parts.append(f"{len(outside)} starting outside the cell content area its page's "
                     f"header gives (free space, not a row"
                     f"{'; rowid ' + ', '.join(map(str, extra)) if extra and not header else ''})")
    if past:
        parts.append(f"{len(past)} running past the page end")
    n = len(ids) if keyed else len(readable)
    if keyed and (header or outside) and n < want <= n + len(extra):
        parts.append(f".recover's {want} = the {n} rows there + {want - n} made of "
                     "header or free-space bytes")
    if rows < n:
        kept = set()
        if keyed and repaired:
            rc, out, _ = sqlite3(repaired, f"SELECT rowid FROM {quote(table)}")
            kept = {int(x) for x in out.split()} if rc == 0 else set()
        missing = [c for c in readable if c[4] not in kept]

        def order(c):
            """Whether cell c's rowid breaks its page's ascending order."""
            page = [x for x in readable if x[0] == c[0]]
            i = page.index(c)
            before = i > 0 and page[i - 1][4] >= c[4]
            after = i + 1 < len(page) and page[i + 1][4] <= c[4]
            return ", out of key order" if before or after else ""
        def fault(c):
            return f"; {c[5]}" if c[5] else ""
        where = ", ".join(f"rowid {c[4]} (page {c[0]} cell {c[1]}{order(c)}{fault(c)})"
                          for c in missing[:3]) if kept else ""
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        parts.append(f"custodian keeps {rows} of the {n}" + (f", not {where}{more}" if kept else ""))
        faulty = [c for c in readable if c[5]]
        if not kept and faulty:
            parts.append(f"{len(faulty)} of the {n} cells hold no whole record: "
                         + ", ".join(f"page {c[0]} cell {c[1]} ({c[5]})" for c in faulty[:3])
                         + (f" and {len(faulty) - 3} more" if len(faulty) > 3 else ""))
    return "; ".join(parts)


def invented(r):
    """.recover's rows beyond custodian's are made of page-header bytes,
    and custodian holds every row the table's cells hold."""
    return (not r["ok"] and r["rows"] is not None and "made of header or free-space bytes" in r["reason"]
            and "custodian keeps" not in r["reason"])


def ceiling(rows):
    """Why the issue's 95 % cannot be reached: the files where .recover's
    count is not a count of rows a sound file can hold."""
    derived = [r["file"] for r in rows if r["reindexed"]]
    made = [r["file"] for r in rows if invented(r)]
    others = [r for r in rows if not r["ok"] and not r["reindexed"] and not invented(r)]
    n = len(rows)
    best = n - len(derived) - len(made)
    return [
        "## What `.recover`'s count cannot be met on, and why",
        "",
        f"* **{len(derived)} files: the table is derived data of a full-text index** "
        "(an FTS index's `_data`, `_idx`, `_docsize`, `_segdir`, `_segments` "
        "table). In each, the index salvaged from the damaged pages failed the module's own "
        "integrity check against the recovered content (`INSERT INTO t(t) "
        "VALUES('integrity-check')`; SQLite 3.44 and later run it inside "
        "`PRAGMA integrity_check` too), so the repair rebuilt the index from the content "
        "(`'rebuild'`, the module's documented repair) and the table's row count is the "
        "rebuilt index's. `.recover` copies the damaged index rows as they were, without "
        "checking them: its count is the count of an index that does not match its "
        "content. Keeping those rows would hand on an index SQLite calls corrupt. "
        f"Files: {', '.join(derived) or 'none'}.",
        f"* **{len(made)} files: `.recover`'s extra row is made of a page's header or free "
        "space.** Cells whose offset points at or before their own cell pointer (offset 0, "
        "mostly) read the page's header as a cell, and cells that start before the cell "
        "content area read free space; the older `.recover` that made RECOVER.json turned "
        "such bytes into a row (rowid 0); upstream's current recovery code "
        "(`ext/recover/dbdata.c`) refuses a cell that points into its page's header. "
        "Custodian holds every row the table's cells hold (the reason column counts them "
        "from the file's bytes). "
        f"Files: {', '.join(made) or 'none'}.",
        f"* So at most {best} of {n} ({100.0 * best / n:.1f} %) can meet `.recover`'s count "
        f"without inventing or copying corrupt rows; {len(others)} files more are short or refused "
        "for reasons the table gives one by one: "
        + (", ".join(r["file"] for r in others) or "none") + "."
        + (" With the rows custodian_quarantine keeps for T, T holds at least `.recover`'s count "
           f"in {held} of them." if (held := sum(
               1 for r in others if r["rows"] is not None
               and r["rows"] + (r.get("quarantined") or 0) >= r["recover_rows"])) else ""),
    ]


def row_totals(rows, which):
    """Summed row classes over the files' T (which="table") or their
    content tables (which="content")."""
    tot = {"recover": 0, "kept": 0, "quarantined": 0, "header": 0, "overflow": 0, "rebuilt": 0,
           "lost": [], "files": 0}
    for r in rows:
        for name, m in (r.get("row_measure") or {}).items():
            if (name == r["table"]) != (which == "table"):
                continue
            tot["files"] += 1
            tot["recover"] += sum(m[k] for k in ("kept", "quarantined", "header", "overflow", "rebuilt")) \
                + len(m["lost"])
            for k in ("kept", "quarantined", "header", "overflow", "rebuilt"):
                tot[k] += m[k]
            tot["lost"] += [(r["file"], x) for x in m["lost"]]
    return tot


def row_headline(rows):
    t = row_totals(rows, "table")
    c = row_totals(rows, "content")
    measured = sum(1 for r in rows if (r.get("row_measure") or {}).get(r["table"]))
    whole = sum(1 for r in rows if (m := (r.get("row_measure") or {}).get(r["table"]))
                and not m["lost"])
    n = max(t["recover"], 1)
    return [
        f"**Row by row** (tests/corpus/recover_rows.json: every row `.recover` gets back in T, "
        f"by rowid and values): of the {t['recover']} rows of T in {measured} files, the "
        f"repaired T holds {t['kept']} ({100.0 * t['kept'] / n:.1f} %) and custodian_quarantine "
        f"{t['quarantined']} (among them the rows whose value spills to an overflow chain that is "
        f"broken in the file: `.recover` fills the bytes it cannot read with zeros; custodian "
        f"keeps the row read in part, the value NULL, and beside it in custodian_quarantine every "
        f"byte of the record the cell and its chain still give, as cell_payload); "
        f"{t['header']} are made of page-header bytes (no cell of T holds "
        f"them); {t['overflow']} are rows the repaired T holds under the same rowid whose value "
        f"spills to a broken overflow chain and whose bytes custodian_quarantine lacks; "
        f"{t['rebuilt']} belong to a full-text index's derived table that the index's own "
        f"check refused and the module's 'rebuild' made anew from the content kept; "
        f"**{len(t['lost'])} are not accounted for** (below). Every row of T is accounted for in "
        f"{whole} of the {measured} files. The content tables of those derived tables "
        f"({c['files']}): {c['recover']} rows, {c['kept']} kept, {c['quarantined']} quarantined, "
        f"{c['header']} header bytes, {c['overflow']} overflow broken, {len(c['lost'])} not "
        "accounted for. The CI test "
        "(tests/it/corpus_repair.rs) asserts the same classes from the files' bytes and the stock "
        "`sqlite3`.",
    ]


def not_accounted(rows):
    import corpus_rows  # (it imports this module)
    pins = corpus_rows.truth()[1]
    lost = row_totals(rows, "table")["lost"] + row_totals(rows, "content")["lost"]
    out = ["## `.recover`'s rows not accounted for", ""]
    for f, x in lost:
        out.append(f"* {f}, {x}: " + pins.get((f, x), "**not pinned: a row lost since the "
                                         "last measure**"))
    if not lost:
        out.append("None.")
    return out


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
    ] + row_headline(rows) + [""] + ceiling(rows) + [""] + not_accounted(rows) + [
        "",
        "*rows + quarantined*: T's rows and the rows custodian_quarantine keeps for T. "
        "*.recover's rows*: of the rows `.recover` gets in T, how many the repaired T holds "
        "(same rowid, same values) / custodian_quarantine holds / are made of page-header "
        "bytes / are held under their rowid with a value behind a broken overflow chain / "
        "belong to a derived table rebuilt from its content / are not accounted for.",
        "",
        "| file | table | exit | rows | rows + quarantined | .recover | integrity_check | ok "
        "| .recover's rows: kept / quarantined / header / overflow / rebuilt / not accounted "
        "| reason |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        integ = (r["integrity"] or "").splitlines()[0][:60] if r["integrity"] else ""
        m = (r.get("row_measure") or {}).get(r["table"])
        both = "" if r["rows"] is None else r["rows"] + (r.get("quarantined") or 0)
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["file"], r["table"], r["exit"], "" if r["rows"] is None else r["rows"], both,
            r["recover_rows"], integ.replace("|", "\\|"), "yes" if r["ok"] else "**no**",
            " / ".join(str(m[k]) for k in ("kept", "quarantined", "header", "overflow", "rebuilt"))
            + f" / {len(m['lost'])}" if m else "",
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
