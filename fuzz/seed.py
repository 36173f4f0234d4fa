#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ (git-ignored) for the six fuzz targets.

    python3 fuzz/seed.py            # from the repository root or from fuzz/

  database  whole files: tests/corpus/sqlite-testsuite/*.db (SQLite's
            own corrupt test databases) and fixtures/*.db
  repair    the same whole files
  page      the distinct pages of those files, split by the page size at
            header offset 16 (1 = 65536; 4096 when the header is invalid)
  record    handmade records, as the target reads them: one byte giving the
            length of payload A, then payload A, then payload B
  wal       write-ahead logs made here with Python's sqlite3 (page sizes 512,
            1024 and 4096, several transactions, an uncommitted tail), plus
            fixtures/*-wal
  pager     a 4-byte big-endian length n, a database of n bytes, then its
            -wal: each database above with no WAL, and each WAL above with the
            database file it belongs to

Files are named by the SHA-1 of their contents, as libFuzzer names its own,
so running the script again adds no duplicate of the database, page and record
seeds (SQLite picks new random WAL salts each time, so WAL seeds differ). Only
the standard library is used.
"""

import glob
import hashlib
import os
import shutil
import sqlite3
import struct
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
TESTSUITE = os.environ.get(
    "SQLITE_TESTSUITE_CORPUS",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "corpus", "sqlite-testsuite"),
)
CORPUS = os.path.join(FUZZ, "corpus")
# Largest seed written; bigger databases are cut (libFuzzer would cut them to -max_len anyway).
MAX_SEED = 256 * 1024


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    data = bytes(data[:MAX_SEED])
    path = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


def databases():
    files = sorted(glob.glob(os.path.join(TESTSUITE, "*.db")))
    files += sorted(glob.glob(os.path.join(ROOT, "fixtures", "*.db")))
    for path in files:
        with open(path, "rb") as f:
            yield path, f.read()


def page_size(data):
    if len(data) >= 18:
        raw = struct.unpack(">H", data[16:18])[0]
        size = 65536 if raw == 1 else raw
        if 512 <= size <= 65536 and size & (size - 1) == 0:
            return size
    return 4096


# --- records -----------------------------------------------------------------

def varint(v):
    v &= (1 << 64) - 1
    if v > 0x00FFFFFFFFFFFFFF:
        high = v >> 8
        out = [((high >> (7 * i)) & 0x7F) | 0x80 for i in range(7, -1, -1)]
        return bytes(out + [v & 0xFF])
    groups = []
    while True:
        groups.append(v & 0x7F)
        v >>= 7
        if not v:
            break
    groups.reverse()
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


def value(v, enc="utf-8"):
    """(serial type, body) of a Python value, as SQLite stores it."""
    if v is None:
        return 0, b""
    if isinstance(v, float):
        return 7, struct.pack(">d", v)
    if isinstance(v, int):
        if v == 0:
            return 8, b""
        if v == 1:
            return 9, b""
        for t, n in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (6, 8)):
            if -(1 << (8 * n - 1)) <= v < (1 << (8 * n - 1)):
                return t, v.to_bytes(n, "big", signed=True)
    if isinstance(v, str):
        b = v.encode(enc)
        return 13 + 2 * len(b), b
    if isinstance(v, bytes):
        return 12 + 2 * len(v), v
    raise TypeError(v)


def record(values, enc="utf-8"):
    cols = [value(v, enc) for v in values]
    types = b"".join(varint(t) for t, _ in cols)
    n = len(types) + 1
    if len(varint(n)) > 1:
        n += 1
    return varint(n) + types + b"".join(b for _, b in cols)


RECORDS = [
    [],
    [None],
    [0, 1, -1, 127, -128, 300, -70000, 1 << 31, -(1 << 40), (1 << 63) - 1, -(1 << 63)],
    [1.5, -0.0, 0.0, float("inf"), float("-inf"), float("nan"), 2.0**63, -(2.0**63)],
    [9007199254740993, 9007199254740992.0, 3, 3.0, 3.5],
    ["alice", "ALICE", "alice  ", "Alice", "", "zz"],
    ["smith", 42, None, b"\x00\xff", 7.25],
    [b"", b"\x00", b"\x00\x00", b"abc"],
    ["x" * 300, b"y" * 200],
    ["caf\u00e9", "CAF\u00c9", "\U0001f600", "a\u0000b"],
]


def records():
    out = []
    for values in RECORDS:
        for enc in ("utf-8", "utf-16-le", "utf-16-be"):
            out.append(record(values, enc))
    # Malformed ones: header size past the end, reserved types, a cut body.
    out += [b"\x05\x01", b"\x02\x0a", b"\x02\x0b", b"\x03\x06\x07\x00", b"\x81", b"\x00"]
    return out


# --- write-ahead logs ----------------------------------------------------------

def wal_files():
    """(database file bytes, WAL bytes) pairs."""
    with tempfile.TemporaryDirectory() as tmp:
        for ps in (512, 1024, 4096):
            db = os.path.join(tmp, f"w{ps}.db")
            con = sqlite3.connect(db, isolation_level=None)
            con.execute(f"PRAGMA page_size={ps}")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA wal_autocheckpoint=0")
            con.execute("CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT, card BLOB)")
            con.execute("CREATE INDEX customer_name ON customer(name COLLATE NOCASE)")
            for t in range(3):
                con.execute("BEGIN")
                for i in range(20 * (t + 1)):
                    con.execute(
                        "INSERT INTO customer(name, card) VALUES (?, ?)",
                        (f"Customer {t}-{i}" * (1 + i % 4), os.urandom(i % 50)),
                    )
                con.execute("COMMIT")
                yield read(db), read(db + "-wal")
            # An uncommitted tail: frames written by a transaction still open.
            con.execute("BEGIN")
            con.execute("PRAGMA cache_size=1")
            con.executemany(
                "INSERT INTO customer(name) VALUES (?)", [("tail" * 50,)] * 40
            )
            yield read(db), read(db + "-wal")
            con.execute("ROLLBACK")
            con.close()
    for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "*-wal"))):
        yield read(path[: -len("-wal")]), read(path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def pager_input(db, wal):
    db = db[: MAX_SEED // 2]
    return struct.pack(">I", len(db)) + db + wal[: MAX_SEED // 2]


def main():
    if not os.path.isdir(TESTSUITE):
        sys.exit(f"{TESTSUITE} not found (set SQLITE_TESTSUITE_CORPUS)")
    pages = 0
    for _, data in databases():
        write("database", data)
        write("repair", data)
        size = page_size(data)
        for off in range(0, len(data), size):
            page = data[off : off + size]
            if any(page):
                write("page", page)
                pages += 1
    for r in records():
        write("record", bytes([min(len(r), 255)]) + r)
    rs = records()
    for a, b in zip(rs, rs[1:] + rs[:1]):
        if len(a) < 256:
            write("record", bytes([len(a)]) + a + b)
    for db, wal in wal_files():
        write("wal", wal)
        write("pager", pager_input(db, wal))
    for _, data in databases():
        write("pager", pager_input(data, b""))
    for target in ("database", "repair", "page", "record", "wal", "pager"):
        d = os.path.join(CORPUS, target)
        print(f"{target}: {len(os.listdir(d))} files in {os.path.relpath(d, ROOT)}")


if __name__ == "__main__":
    main()
