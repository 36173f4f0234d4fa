#!/usr/bin/env python3
"""Records, row by row, what upstream `.recover` gets back from SQLite's own
damaged databases: the independent truth the corpus row test
(tests/it/corpus_repair.rs) holds custodian's repairs to.

For each of the files corpus_repair.py measures (those from which `.recover`
gets rows in a table other than lost_and_found, RECOVER.json), with T = the
table where `.recover` finds the most rows: `UPSTREAM FILE .recover |
UPSTREAM NEW.db` (an upstream CLI with the dbpage virtual table, built by
../shared/bench/upstream-sqlite3/build.sh: the way RECOVER.json was made),
then the stock `sqlite3` reads T in NEW.db and gives, for every row, its
rowid (where T has one) and the digest

    hex(sha3(quote(c1) || ',' || quote(c2) || ...))

of its values in T's column order (sha3 and quote are the stock CLI's own
functions; the test computes the same digest of the repaired table with the
same CLI, so the canonical form never depends on this script's reading of
a value). Where T is a shadow table a full-text index derives from its
content (VT_data, VT_idx, VT_docsize, VT_segdir, VT_segments, VT_stat), the
content table VT_content is recorded too: the rows the rebuilt index must
come from.

Written to tests/corpus/recover_rows.json; re-runnable, not run in CI.

usage: python3 tools/recover_rows.py [--upstream BIN] [--corpus DIR] [--out FILE]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus_repair as cr  # noqa: E402

ROOT = cr.ROOT
FTS_DERIVED = ("data", "idx", "docsize", "segdir", "segments", "stat")
TIMEOUT = 120


def upstream_bin(given):
    if given:
        return given
    p = subprocess.run([os.path.join(ROOT, "../shared/bench/upstream-sqlite3/build.sh")],
                       capture_output=True, text=True, check=True)
    return p.stdout.strip().splitlines()[-1]


def stock(db, sql):
    """The stock sqlite3's answer, one line a row (fails loudly). `sql` may
    be bytes: a damaged schema may name a column in bytes that are not
    UTF-8."""
    p = subprocess.run(["sqlite3", "-batch", db, sql], capture_output=True,
                       timeout=TIMEOUT, env={**os.environ, "HOME": "/nonexistent"})
    if p.returncode != 0 or p.stderr.strip():
        raise RuntimeError(f"sqlite3 {db}: {sql!r}: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout.decode(errors="replace").splitlines()


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def ident(name):
    """`name` (bytes) quoted as an SQL identifier."""
    return b'"' + name.replace(b'"', b'""') + b'"'


def digest_sql(table, names, rowid):
    """The query the test runs too (tests/it/corpus_rows.rs, digests): the
    columns by their names' bytes (a name SQLite does not know would be
    read as a string literal)."""
    body = b" || ',' || ".join(b"quote(" + ident(n) + b")" for n in names) or b"''"
    key = b"rowid" if rowid else b"NULL"
    return b"SELECT " + key + b", hex(sha3(" + body + b")) FROM " + ident(table.encode())


def read_table(db, table):
    """{columns, rowid, rows: [[rowid|None, digest]...]} of `table` in `db`."""
    names = [bytes.fromhex(h) for h in
             stock(db, f"SELECT hex(name) FROM pragma_table_info({lit(table)}) ORDER BY cid")]
    columns = [n.decode(errors="replace") for n in names]
    try:
        stock(db, f"SELECT rowid FROM {cr.quote(table)} LIMIT 0")
        rowid = True
    except RuntimeError:
        rowid = False  # WITHOUT ROWID
    rows = []
    for line in stock(db, digest_sql(table, names, rowid)):
        r, d = line.rsplit("|", 1)
        rows.append([int(r) if rowid else None, d])
    rows.sort(key=lambda x: (x[0] if x[0] is not None else 0, x[1]))
    return {"columns": columns, "rowid": rowid, "rows": rows}


def fts_content(db, table):
    """(VT, module, VT_content or None) when `table` is data a full-text
    index VT derives from its content: one of its shadow tables, or an
    fts5vocab table over it."""
    for line in stock(db, "SELECT name || '|' || sql FROM sqlite_schema WHERE type = 'table' "
                          "AND sql LIKE 'CREATE VIRTUAL TABLE%'"):
        vt, sql = line.split("|", 1)
        module = sql.split("USING", 1)[-1].strip().split("(")[0].strip().lower()
        if module == "fts5vocab" and vt == table:
            # fts5vocab('t1', 'row'): the vocabulary of t1's index
            args = sql.split("(", 1)[-1].rsplit(")", 1)[0].split(",")
            if len(args) >= 2:
                vt = args[-2].strip().strip("'\"[]`")
                table = vt + "_data"
        elif not module.startswith("fts") or not table.startswith(vt + "_"):
            continue
        if table[len(vt) + 1:] not in FTS_DERIVED:
            continue
        content = vt + "_content"
        if stock(db, f"SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = {lit(content)}") == ["1"]:
            return vt, module, content
        return vt, module, None
    return None


def recover_one(up, corpus, file, table, want):
    with tempfile.TemporaryDirectory() as tmp:
        new = os.path.join(tmp, "recovered.db")
        # on a copy: the CLI opens the file read-write, and .recover may
        # change it (the corpus must stay byte for byte as MANIFEST.json says)
        copy = os.path.join(tmp, file)
        shutil.copyfile(os.path.join(corpus, file), copy)
        sql = subprocess.run([up, copy, ".recover"], capture_output=True,
                             timeout=TIMEOUT).stdout
        subprocess.run([up, new], input=sql, capture_output=True, timeout=TIMEOUT)
        entry = {"file": file, "table": table, "tables": {table: read_table(new, table)}}
        got = len(entry["tables"][table]["rows"])
        if got != want:
            print(f"note: {file}: {table} has {got} rows here, RECOVER.json says {want}",
                  file=sys.stderr)
        derived = fts_content(new, table)
        if derived:
            vt, module, content = derived
            entry["derived_of"] = {"virtual_table": vt, "module": module, "content": content}
            if content:
                entry["tables"][content] = read_table(new, content)
        return entry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", help="an upstream sqlite3 CLI with dbpage (default: build.sh's)")
    ap.add_argument("--corpus")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/corpus/recover_rows.json"))
    a = ap.parse_args()
    up = upstream_bin(a.upstream)
    corpus = cr.corpus_dir(a.corpus)
    files = []
    for (file, table, _idcol, want) in cr.targets(corpus):
        e = recover_one(up, corpus, file, table, want)
        files.append(e)
        print(f"{file:28} {table:14} {len(e['tables'][table]['rows'])}", flush=True)
    out = {
        "what": "Every row upstream .recover gets back in table T (the table corpus_repair.py "
                "repairs) of each corpus file, written by tools/recover_rows.py: rowid (null for "
                "WITHOUT ROWID) and hex(sha3(quote(c1) || ',' || quote(c2) ...)) in T's column "
                "order, computed by the stock sqlite3 on the database .recover's SQL builds; "
                "for a full-text index's derived table, its content table's rows too.",
        "upstream": subprocess.run([up, "--version"], capture_output=True, text=True).stdout.strip(),
        "reader": subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.strip(),
        "files": files,
    }
    with open(a.out, "w") as f:
        # one line a file: diffs of a re-run show which files changed
        head = {k: v for k, v in out.items() if k != "files"}
        f.write(json.dumps(head, indent=1)[:-2] + ',\n "files": [\n')
        f.write(",\n".join(json.dumps(e, separators=(",", ":")) for e in files))
        f.write("\n ]\n}\n")
    print(f"{len(files)} files, {sum(len(e['tables'][e['table']]['rows']) for e in files)} rows of T")


if __name__ == "__main__":
    main()
