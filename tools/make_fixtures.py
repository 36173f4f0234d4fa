#!/usr/bin/env python3
"""Build custodian's committed test fixtures.

    python3 tools/make_fixtures.py [--out DIR]      (default DIR: fixtures/)

For every fixture NAME this writes into DIR:

    NAME.db          the damaged database (plus NAME.db-wal for the WAL fixture)
    NAME.snap.db     a healthy copy taken before the damage (the "nightly backup"),
                     where one makes sense
    NAME.truth.json  the ground truth, computed here with Python's sqlite3 module
                     (never with custodian)

and DIR/README.md describing them.  Python 3.11 standard library only.  The
output is deterministic: a fixed seed, no clocks, and the random salts SQLite
puts into a WAL header are replaced by fixed ones (with the checksums redone),
so running the script twice gives identical bytes (with the same SQLite).

Page layouts follow https://www.sqlite.org/fileformat2.html; the small page
parser below is only used to build the damage and to cross-check the truth.
"""

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile

SEED = 20_240_611
BASE_CUSTOMERS = 2000
TXNS_PER_CUSTOMER = 3
PAGE_SIZE = 4096
SMALL_PAGE_SIZE = 1024          # damaged_table_interior only: a 3-level table b-tree
SMALL_PAGE_CUSTOMERS = 1500     # enough for 2 interior levels at 1024 bytes a page

SCHEMA = """\
CREATE TABLE customers(customer_id TEXT PRIMARY KEY, card_number TEXT UNIQUE,
  name TEXT NOT NULL, phone TEXT, email TEXT, status TEXT NOT NULL DEFAULT 'active',
  tier TEXT, balance_cents INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX idx_customers_phone  ON customers(phone);
CREATE INDEX idx_customers_email  ON customers(email);
CREATE INDEX idx_customers_status ON customers(status, tier);
CREATE TABLE transactions(txn_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL,
  amount_cents INTEGER NOT NULL, ts TEXT NOT NULL);
CREATE INDEX idx_transactions_customer ON transactions(customer_id);
"""

PK_INDEX = "sqlite_autoindex_customers_1"
CARD_INDEX = "sqlite_autoindex_customers_2"
PHONE_INDEX = "idx_customers_phone"
EMAIL_INDEX = "idx_customers_email"
STATUS_INDEX = "idx_customers_status"

CUSTOMER_COLUMNS = ["customer_id", "card_number", "name", "phone", "email", "status",
                    "tier", "balance_cents", "created_at", "updated_at"]
INSERT_CUSTOMER = ("INSERT INTO customers(" + ", ".join(CUSTOMER_COLUMNS) + ") VALUES ("
                   + ", ".join("?" * len(CUSTOMER_COLUMNS)) + ")")
INSERT_TXN = "INSERT INTO transactions(customer_id, amount_cents, ts) VALUES (?, ?, ?)"

# Fixed WAL salts written over SQLite's random ones (see fix_wal_salts).
WAL_SALTS = (0x5A17C0DE, 0x0BADF00D)


# --------------------------------------------------------------------------
# Synthetic people (ASCII only, so the canonical dump is plain JSON text)
# --------------------------------------------------------------------------

FIRST = ("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William "
         "Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy "
         "Matthew Lisa Anthony Betty Mark Sandra Donald Ashley Steven Emily Paul Donna "
         "Andrew Michelle Joshua Carol Kevin Amanda Brian Melissa George Deborah Timothy "
         "Laura Ronald Rebecca Edward Sharon Jason Cynthia Ryan Kathleen Jacob Amy Gary "
         "Angela Nicholas Anna Eric Brenda Jonathan Emma Stephen Pamela Larry Nicole Justin "
         "Helen Scott Samantha Brandon Katherine Frank Christine Gregory Rachel Raymond "
         "Janet Samuel Maria Patrick Heather Omar Priya Wei Yuki Aisha Mateo Ingrid").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez "
        "Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee "
        "Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young "
        "Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall "
        "Rivera Campbell Mitchell Carter Roberts Patel Chen Kowalski Okafor Lindqvist "
        "O'Brien Van-Dijk Nakamura Haddad Schmidt Rossi Dubois Novak Silva").split()
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com",
           "proton.me", "example-mail.net", "shopmail.co.uk"]
STATUSES = ["active"] * 80 + ["inactive"] * 10 + ["suspended"] * 6 + ["closed"] * 4
TIERS = ["bronze"] * 45 + ["silver"] * 25 + ["gold"] * 12 + ["platinum"] * 3 + [None] * 15
EPOCH = dt.datetime(2019, 1, 1)
RECENT = dt.datetime(2024, 3, 1, 8, 0, 0)   # post-snapshot activity starts here


class People:
    """Deterministic generator of customers, keeping every key unique."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.ids = set()
        self.cards = set()
        self.emails = set()
        self.phones = []
        self.recent_seconds = 0

    def new_id(self, inside=None, outside=None):
        """A fresh 'C' + 12 digits ID; `inside`=(lo, hi) keeps it strictly between
        two IDs, `outside`=(lo, hi) keeps it out of that closed range."""
        a, b = 1_000, 99_999_999_999
        if inside:
            a, b = int(inside[0][1:]) + 1, int(inside[1][1:]) - 1
        for _ in range(100_000):
            cid = "C%012d" % self.rng.randint(a, b)
            if cid in self.ids:
                continue
            if outside and outside[0] <= cid <= outside[1]:
                continue
            self.ids.add(cid)
            return cid
        raise RuntimeError("no free customer ID in range")

    def new_card(self):
        while True:
            card = "6044%012d" % self.rng.randrange(10**12)
            if card not in self.cards:
                self.cards.add(card)
                return card

    def new_email(self, first, last, inside=None, outside=None):
        r = self.rng
        for _ in range(500_000):
            if inside or outside:      # re-draw the name too, to reach a key range
                first, last = r.choice(FIRST), r.choice(LAST)
            form = r.random()
            if form < 0.6:
                local = f"{first}.{last}"
            elif form < 0.85:
                local = f"{first[0]}{last}"
            else:
                local = f"{first}_{last}"
            local = local.lower().replace("'", "")
            email = f"{local}{r.randint(1, 999)}@{r.choice(DOMAINS)}"
            if email in self.emails:
                continue
            if inside and not inside[0] < email < inside[1]:
                continue
            if outside and outside[0] <= email <= outside[1]:
                continue
            self.emails.add(email)
            return email
        raise RuntimeError("no free email in range")

    def new_phone(self):
        r = self.rng
        if self.phones and r.random() < 0.03:        # a household sharing a number
            return r.choice(self.phones)
        phone = "(%03d) 555-%04d" % (r.randint(201, 989), r.randint(0, 9999))
        self.phones.append(phone)
        return phone

    @staticmethod
    def stamp(when):
        return when.strftime("%Y-%m-%d %H:%M:%S")

    def recent(self):
        """A strictly increasing time after RECENT, for post-snapshot activity."""
        self.recent_seconds += self.rng.randint(30, 900)
        return self.stamp(RECENT + dt.timedelta(seconds=self.recent_seconds))

    def customer(self, cid=None, email=None, recent=False):
        r = self.rng
        first, last = r.choice(FIRST), r.choice(LAST)
        cid = cid or self.new_id()
        card = None if r.random() < 0.04 else self.new_card()
        phone = None if r.random() < 0.12 else self.new_phone()
        if email is None and r.random() >= 0.15:
            email = self.new_email(first, last)
        status, tier = r.choice(STATUSES), r.choice(TIERS)
        balance = 0 if r.random() < 0.3 else r.randint(1, 250_000)
        if recent:
            created = updated = self.recent()
            status = "active"
        else:
            t0 = EPOCH + dt.timedelta(seconds=r.randint(0, 4 * 365 * 86400))
            created = self.stamp(t0)
            updated = self.stamp(t0 + dt.timedelta(seconds=r.randint(0, 300 * 86400)))
        return (cid, card, f"{first} {last}", phone, email, status, tier, balance,
                created, updated)

    def txn(self, cid, recent=False):
        r = self.rng
        amount = r.randint(-5_000, 40_000)
        if recent:
            ts = self.recent()
        else:
            ts = self.stamp(EPOCH + dt.timedelta(seconds=r.randint(0, 5 * 365 * 86400)))
        return (cid, amount, ts)


# --------------------------------------------------------------------------
# Database helpers
# --------------------------------------------------------------------------

def connect(path):
    return sqlite3.connect(path, isolation_level=None)


def build_base(path, page_size=PAGE_SIZE, n=BASE_CUSTOMERS, auto_vacuum=None, schema=SCHEMA):
    """The healthy POS database every fixture starts from.  Customers are
    inserted in shuffled order with transactions interleaved, so rowid order
    is not key order and table and index pages are mixed through the file.
    `auto_vacuum` ("FULL" or "INCREMENTAL") is set before the first table."""
    people = People(SEED)
    con = connect(path)
    con.execute(f"PRAGMA page_size={page_size}")
    if auto_vacuum:
        con.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
    con.execute("PRAGMA journal_mode=DELETE")
    con.executescript(schema)
    customers = [people.customer() for _ in range(n)]
    people.rng.shuffle(customers)
    con.execute("BEGIN")
    inserted = []
    for row in customers:
        con.execute(INSERT_CUSTOMER, row)
        inserted.append(row[0])
        for _ in range(TXNS_PER_CUSTOMER):
            con.execute(INSERT_TXN, people.txn(people.rng.choice(inserted)))
    con.execute("COMMIT")
    con.close()
    return people


def add_customers(con, people, ids=None, count=0, emails=None):
    """Register new customers (each with 1-2 recent transactions)."""
    ids = list(ids) if ids is not None else [people.new_id() for _ in range(count)]
    emails = emails or {}
    rows = []
    for cid in ids:
        row = people.customer(cid=cid, email=emails.get(cid), recent=True)
        con.execute(INSERT_CUSTOMER, row)
        for _ in range(people.rng.randint(1, 2)):
            con.execute(INSERT_TXN, people.txn(cid, recent=True))
        rows.append(row)
    return ids


def update_balances(con, people, count, skip_rowids=()):
    """Till activity that touches only the table b-tree (no indexed column)."""
    rowids = [r[0] for r in con.execute("SELECT rowid FROM customers ORDER BY rowid")]
    skip = set(skip_rowids)
    rowids = [r for r in rowids if r not in skip]
    for rowid in people.rng.sample(rowids, count):
        con.execute("UPDATE customers SET balance_cents = balance_cents + ?, updated_at = ? "
                    "WHERE rowid = ?", (people.rng.randint(-2_000, 9_000), people.recent(), rowid))


def dump_customers(con):
    """Every customer row, sorted by (customer_id, rowid)."""
    rows = con.execute("SELECT rowid, " + ", ".join(CUSTOMER_COLUMNS) + " FROM customers").fetchall()
    return sorted(rows, key=lambda r: (r[1], r[0]))


def canonical_sha256(rows):
    text = "\n".join(json.dumps(list(r)) for r in sorted(rows, key=lambda r: (r[1], r[0])))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dbstat(con, name):
    return con.execute("SELECT pageno, pagetype, path, ncell, unused FROM dbstat "
                       "WHERE name = ? ORDER BY path", (name,)).fetchall()


def leaf_pages(con, name):
    return [r for r in dbstat(con, name) if r[1] == "leaf"]


def middle_third(items):
    n = len(items)
    return items[n // 3: max(n // 3 + 1, 2 * n // 3)]


def read_page(path, pgno, page_size):
    with open(path, "rb") as f:
        f.seek((pgno - 1) * page_size)
        data = f.read(page_size)
    assert len(data) == page_size
    return data


def write_page(path, pgno, data, page_size, offset=0):
    with open(path, "r+b") as f:
        f.seek((pgno - 1) * page_size + offset)
        f.write(data)


def header_page_count(path):
    with open(path, "rb") as f:
        return struct.unpack(">I", f.read(100)[28:32])[0]


def key_neighbours(con, column, lo, hi):
    """The closed key range a leaf holding keys lo..hi may own: from the key
    before lo to the key after hi (new keys outside it cannot land on the leaf)."""
    before = con.execute(f"SELECT max({column}) FROM customers WHERE {column} < ?", (lo,)).fetchone()[0]
    after = con.execute(f"SELECT min({column}) FROM customers WHERE {column} > ?", (hi,)).fetchone()[0]
    return (before or lo, after or hi)


def copy_consistent(con, src, dst):
    """Copy a rollback-journal database file while no write is in progress."""
    assert not con.in_transaction
    shutil.copyfile(src, dst)


# --------------------------------------------------------------------------
# Minimal b-tree page reader (fileformat2.html, "B-tree Pages")
# --------------------------------------------------------------------------

INDEX_INTERIOR, TABLE_INTERIOR, INDEX_LEAF, TABLE_LEAF = 0x02, 0x05, 0x0A, 0x0D


def varint(buf, i):
    value = 0
    for k in range(8):
        byte = buf[i + k]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + k + 1
    return (value << 8) | buf[i + 8], i + 9


def decode_record(payload):
    header_len, i = varint(payload, 0)
    types = []
    while i < header_len:
        t, i = varint(payload, i)
        types.append(t)
    j, values = header_len, []
    for t in types:
        if t == 0:
            values.append(None)
        elif 1 <= t <= 6:
            size = (0, 1, 2, 3, 4, 6, 8)[t]
            values.append(int.from_bytes(payload[j:j + size], "big", signed=True))
            j += size
        elif t == 7:
            values.append(struct.unpack(">d", payload[j:j + 8])[0])
            j += 8
        elif t in (8, 9):
            values.append(t - 8)
        elif t >= 12:
            size = (t - 12) // 2
            raw = payload[j:j + size]
            values.append(raw.decode("utf-8") if t % 2 else raw)
            j += size
        else:
            raise ValueError(f"reserved serial type {t}")
    return values


def page_layout(page, pgno):
    """(page type, cell pointers, cell content start, right-most child, end of
    cell pointer array) of a b-tree page."""
    h = 100 if pgno == 1 else 0
    kind = page[h]
    ncell = struct.unpack(">H", page[h + 3:h + 5])[0]
    content = struct.unpack(">H", page[h + 5:h + 7])[0] or 65536
    interior = kind in (INDEX_INTERIOR, TABLE_INTERIOR)
    hdr = h + (12 if interior else 8)
    ptrs = [struct.unpack(">H", page[hdr + 2 * k:hdr + 2 * k + 2])[0] for k in range(ncell)]
    right = struct.unpack(">I", page[h + 8:h + 12])[0] if interior else None
    return kind, ptrs, content, right, hdr + 2 * ncell


def index_leaf_entries(page, pgno):
    """Records (key columns..., rowid) of an index leaf page without overflow."""
    kind, ptrs, _, _, _ = page_layout(page, pgno)
    assert kind == INDEX_LEAF, kind
    max_local = (len(page) - 12) * 64 // 255 - 23
    out = []
    for p in ptrs:
        n, i = varint(page, p)
        assert n <= max_local, "overflowing index cell"
        out.append(tuple(decode_record(page[i:i + n])))
    return out


def table_leaf_rowids(page, pgno):
    kind, ptrs, _, _, _ = page_layout(page, pgno)
    assert kind == TABLE_LEAF, kind
    out = []
    for p in ptrs:
        _, i = varint(page, p)
        rowid, _ = varint(page, i)
        out.append(rowid)
    return out


def table_subtree_leaves(path, pgno, page_size):
    """Leaf pages under a table b-tree page, in key order."""
    page = read_page(path, pgno, page_size)
    kind, ptrs, _, right, _ = page_layout(page, pgno)
    if kind == TABLE_LEAF:
        return [pgno]
    assert kind == TABLE_INTERIOR, kind
    children = [struct.unpack(">I", page[p:p + 4])[0] for p in ptrs] + [right]
    return [leaf for c in children for leaf in table_subtree_leaves(path, c, page_size)]


# --------------------------------------------------------------------------
# WAL helpers (fileformat2.html, "The WAL File Format")
# --------------------------------------------------------------------------

WAL_HEADER, WAL_FRAME_HEADER = 32, 24


def wal_checksum(data, big_endian, s0=0, s1=0):
    words = struct.unpack((">" if big_endian else "<") + "%dI" % (len(data) // 4), data)
    for k in range(0, len(words), 2):
        s0 = (s0 + words[k] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[k + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_frames(wal_bytes):
    """Valid frames of a WAL file (salt and checksum chain checked) and the
    number of frames up to the last commit frame: (frames, committed) where
    frames is a list of (page number, commit size)."""
    if len(wal_bytes) < WAL_HEADER:
        return [], 0
    magic, _, page_size, _, salt1, salt2, c0, c1 = struct.unpack(">8I", wal_bytes[:WAL_HEADER])
    big = magic == 0x377F0683
    assert magic in (0x377F0682, 0x377F0683)
    s = wal_checksum(wal_bytes[:24], big)
    assert s == (c0, c1), "WAL header checksum"
    frames, committed, off = [], 0, WAL_HEADER
    while off + WAL_FRAME_HEADER + page_size <= len(wal_bytes):
        pgno, commit, fs1, fs2, f0, f1 = struct.unpack(">6I", wal_bytes[off:off + 24])
        if (fs1, fs2) != (salt1, salt2):
            break
        s = wal_checksum(wal_bytes[off:off + 8], big, *s)
        s = wal_checksum(wal_bytes[off + 24:off + 24 + page_size], big, *s)
        if s != (f0, f1):
            break
        frames.append((pgno, commit))
        if commit:
            committed = len(frames)
        off += WAL_FRAME_HEADER + page_size
    return frames, committed


def fix_wal_salts(path):
    """Replace SQLite's random WAL salts with WAL_SALTS and redo every checksum,
    so the shipped -wal file is byte-for-byte reproducible."""
    data = bytearray(open(path, "rb").read())
    before, committed = wal_frames(bytes(data))
    magic, _, page_size = struct.unpack(">3I", data[:12])
    big = magic == 0x377F0683
    struct.pack_into(">2I", data, 16, *WAL_SALTS)
    s = wal_checksum(bytes(data[:24]), big)
    struct.pack_into(">2I", data, 24, *s)
    off = WAL_HEADER
    for _ in before:
        struct.pack_into(">2I", data, off + 8, *WAL_SALTS)
        s = wal_checksum(bytes(data[off:off + 8]), big, *s)
        s = wal_checksum(bytes(data[off + 24:off + 24 + page_size]), big, *s)
        struct.pack_into(">2I", data, off + 16, *s)
        off += WAL_FRAME_HEADER + page_size
    del data[off:]                      # nothing but the valid frames
    with open(path, "wb") as f:
        f.write(data)
    after, committed_after = wal_frames(bytes(data))
    assert after == before and committed_after == committed


# --------------------------------------------------------------------------
# Ground truth: the lookup probe, done with SQL on a read-only copy
# --------------------------------------------------------------------------

def qi(name):
    return '"' + name.replace('"', '""') + '"'


def _text(raw):
    return raw.decode("utf-8", "backslashreplace")


def _collect(con, sql, params, sink):
    """Run a query and feed rows to sink until the end or an error; return the
    error message or None.

    Python's sqlite3 steps one row ahead: when the step after row k fails it
    drops row k, although SQLite produced it.  That row is fetched again on
    its own with LIMIT 1 OFFSET k (LIMIT stops before the failing step), so
    the rows seen are those a step-at-a-time reader such as rusqlite sees."""
    n = 0
    try:
        for row in con.execute(sql, params):
            sink(row)
            n += 1
    except sqlite3.Error as e:
        try:
            for row in con.execute(f"{sql} LIMIT 1 OFFSET {n}", params):
                sink(row)
        except sqlite3.Error:
            pass
        return str(e)
    return None


def _jkey(key):
    return json.dumps(list(key))


def open_probe_copy(td, db_src, wal_src):
    db = os.path.join(td, "probe.db")
    shutil.copyfile(db_src, db)
    if wal_src:
        shutil.copyfile(wal_src, db + "-wal")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    con.text_factory = _text
    return con


def snapshot_rows(snap):
    if not snap:
        return []
    with tempfile.TemporaryDirectory() as td:
        con = open_probe_copy(td, snap, None)
        rows = dump_customers(con)
        con.close()
    return rows


def _varint(b, i):
    v = 0
    for k in range(9):
        if i + k >= len(b):
            raise ValueError("varint past end")
        c = b[i + k]
        if k == 8:
            return (v << 8) | c, i + 9
        v = (v << 7) | (c & 0x7F)
        if c < 0x80:
            return v, i + k + 1
    raise ValueError("unreachable")


def _record(payload):
    """Decode a record whose values are NULL, integers or text (enough for an
    index of TEXT ids plus the rowid)."""
    hsize, i = _varint(payload, 0)
    types = []
    while i < hsize:
        t, i = _varint(payload, i)
        types.append(t)
    pos, out = hsize, []
    for t in types:
        if t == 0:
            out.append(None)
        elif 1 <= t <= 6:
            n = (1, 2, 3, 4, 6, 8)[t - 1]
            out.append(int.from_bytes(payload[pos:pos + n], "big", signed=True))
            pos += n
        elif t in (8, 9):
            out.append(t - 8)
        elif t >= 13 and t % 2 == 1:
            n = (t - 13) // 2
            out.append(payload[pos:pos + n].decode("utf-8", "replace"))
            pos += n
        else:
            raise ValueError(f"serial type {t}")
        if pos > len(payload):
            raise ValueError("record past end")
    return out


def _btree_cells(path, root, page_size, interior, leaf):
    """(page bytes, page type, cell offset) of every cell on the readable
    pages of the b-tree rooted at `root` (page types `interior` and `leaf`),
    walking the file's own pages: pages past the end of the file, of another
    type, or seen before are skipped. Children of interior cells are queued
    before the cell is yielded."""
    data = open(path, "rb").read()
    npages = len(data) // page_size
    seen, stack = set(), [root]
    while stack:
        pg = stack.pop()
        if pg < 1 or pg > npages or pg in seen:
            continue
        seen.add(pg)
        page = data[(pg - 1) * page_size: pg * page_size]
        h = 100 if pg == 1 else 0
        kind = page[h]
        if kind not in (interior, leaf):
            continue
        ncells = int.from_bytes(page[h + 3:h + 5], "big")
        hdr = 12 if kind == interior else 8
        if kind == interior:
            stack.append(int.from_bytes(page[h + 8:h + 12], "big"))
        for c in range(ncells):
            off = int.from_bytes(page[h + hdr + 2 * c:h + hdr + 2 * c + 2], "big")
            if kind == interior:
                stack.append(int.from_bytes(page[off:off + 4], "big"))
            yield page, kind, off


def index_entries_from_pages(path, root, page_size):
    """Every entry of the index b-tree rooted at `root` that survives on a
    readable page, by walking the pages of the file itself. Independent of
    SQL, which stops at the first bad page, and of custodian's reader."""
    max_local = (page_size - 12) * 64 // 255 - 23
    out = []
    for page, kind, off in _btree_cells(path, root, page_size, 2, 10):
        try:
            i = off + 4 if kind == 2 else off
            n, i = _varint(page, i)
            if n > max_local or i + n > page_size:
                continue  # overflowing entries are not needed for short ids
            out.append(_record(page[i:i + n]))
        except (ValueError, IndexError):
            continue
    return out


def table_rows_from_pages(path, root, page_size):
    """(rowid, record) of every row on a readable leaf of the table b-tree
    rooted at `root`, walking the file's own pages (rows that overflow are
    skipped: none of the fixtures' reference rows do)."""
    max_local = page_size - 35
    out = []
    for page, kind, off in _btree_cells(path, root, page_size, 5, 13):
        if kind == 5:
            continue
        try:
            n, i = _varint(page, off)
            rowid, i = _varint(page, i)
            if n > max_local or i + n > page_size:
                continue
            out.append((rowid, _record(page[i:i + n])))
        except (ValueError, IndexError):
            continue
    return out


def traceable(db, intended):
    """The intended customers that something surviving in the damaged file
    still names: a readable row, an entry of any customers index (its rowid),
    or a transactions row or index entry (its customer_id). A repair can
    restore exactly these from a snapshot; the rest vanished without trace."""
    with tempfile.TemporaryDirectory() as td:
        con = open_probe_copy(td, db, None)
        con.execute("PRAGMA writable_schema = ON")
        psize = con.execute("PRAGMA page_size").fetchone()[0]
        objs = con.execute("SELECT type, name, tbl_name, rootpage FROM sqlite_schema").fetchall()
        con.close()
    rowids, ids = set(), set()
    for kind, name, tbl, root in objs:
        if not root:
            continue
        if tbl == "customers" and kind == "table":
            rowids |= {r for r, _ in table_rows_from_pages(db, root, psize)}
        elif tbl == "customers":
            rowids |= {rec[-1] for rec in index_entries_from_pages(db, root, psize)
                       if rec and isinstance(rec[-1], int)}
        elif tbl == "transactions" and kind == "table":
            ids |= {rec[1] for _, rec in table_rows_from_pages(db, root, psize)
                    if len(rec) > 1 and isinstance(rec[1], str)}
        elif tbl == "transactions":
            ids |= {rec[0] for rec in index_entries_from_pages(db, root, psize)
                    if rec and isinstance(rec[0], str)}
    return [r for r in intended if r[0] in rowids or r[1] in ids]


def probe_truth(db_src, wal_src=None, snap=None, intended=None):
    """Compute the truth fields of a damaged database by doing the lookups."""
    snap_rows = snapshot_rows(snap)
    with tempfile.TemporaryDirectory() as td:
        con = open_probe_copy(td, db_src, wal_src)
        try:
            return _probe(con, snap_rows, intended or [], None if wal_src else db_src)
        finally:
            con.close()


def _probe(con, snap_rows, intended, raw_path=None):
    select_cols = ", ".join(qi(c) for c in CUSTOMER_COLUMNS)
    schema_sql = ("SELECT name FROM sqlite_schema WHERE type = 'index' "
                  "AND tbl_name = 'customers' ORDER BY name")
    schema_error = None
    try:
        names = con.execute(schema_sql).fetchall()
    except sqlite3.DatabaseError as e:
        # A file shorter than its header's page count is refused as a whole
        # ("database disk image is malformed") unless writable_schema is on, in
        # which case SQLite believes the file size; probe in that mode.
        schema_error = str(e)
        con.execute("PRAGMA writable_schema = ON")
        names = con.execute(schema_sql).fetchall()
    indexes = {}
    for (name,) in names:
        indexes[name] = [r[2] for r in con.execute(f"PRAGMA index_info({qi(name)})")]
    col_pos = {c: k for k, c in enumerate(CUSTOMER_COLUMNS)}

    # 1. Table rows: full scan; if it breaks, a reverse scan and per-rowid reads.
    #    The scan reads every cell in page order, so a rowid two cells hold
    #    (a cell out of key order) gives two rows: the first read is in
    #    `rows`, the others in `repeated`; every customer is judged by its
    #    own row (`all_rows`).
    rows, repeated, seen = {}, [], set()

    def keep(r):
        rowid, row = r[0], tuple(r[1:])
        if (rowid, row) in seen:
            return
        seen.add((rowid, row))
        if rowid in rows:
            repeated.append((rowid, row))
        else:
            rows[rowid] = row

    scan_errors = []
    err = _collect(con, f"SELECT rowid, {select_cols} FROM customers NOT INDEXED", (), keep)
    if err:
        scan_errors.append(err)
        _collect(con, f"SELECT rowid, {select_cols} FROM customers NOT INDEXED "
                      "ORDER BY rowid DESC", (), keep)

    # 2. Every index of customers: a covering scan in index order, resumed past
    #    damaged pages by range scans started at keys known from the table rows,
    #    the snapshot, and a reverse scan from the end.
    def scan_index(name, cols):
        entries = set()
        first = qi(cols[0])
        head = f"SELECT {', '.join(qi(c) for c in cols)}, rowid FROM customers INDEXED BY {qi(name)}"
        last = []

        def take(r):
            entries.add((tuple(r[:-1]), r[-1]))
            last[:] = [r[0]]

        err = _collect(con, head, (), take)
        if not err:
            return entries, []
        errors = [err]
        order = ", ".join(f"{qi(c)} DESC" for c in cols)
        _collect(con, f"{head} ORDER BY {order}", (), lambda r: entries.add((tuple(r[:-1]), r[-1])))
        hints = sorted({r[col_pos[cols[0]]] for r in rows.values()
                        if isinstance(r[col_pos[cols[0]]], str)}
                       | {r[1 + col_pos[cols[0]]] for r in snap_rows
                          if isinstance(r[1 + col_pos[cols[0]]], str)})
        resume_after = last[0] if last and isinstance(last[0], str) else None
        for h in hints:
            if resume_after is not None and h <= resume_after:
                continue
            last[:] = []
            err = _collect(con, f"{head} WHERE {first} >= ?", (h,), take)
            if not err:
                break
            if last and isinstance(last[0], str):
                resume_after = last[0]
        return entries, errors

    index_entries, index_errors = {}, {}
    for name, cols in indexes.items():
        index_entries[name], errs = scan_index(name, cols)
        if errs:
            index_errors[name] = errs

    if scan_errors:
        top = max([0] + [r[0] for r in snap_rows] + list(rows)
                  + [rid for ents in index_entries.values() for _, rid in ents
                     if isinstance(rid, int) and rid < 10**7])
        for rowid in range(1, top + 200):
            _collect(con, f"SELECT rowid, {select_cols} FROM customers NOT INDEXED "
                          "WHERE rowid = ?", (rowid,), keep)

    # 3. Row fetch by rowid (never through an index) and index lookups, cached.
    fetched = {}

    def fetch(rowid):
        if rowid not in fetched:
            got = []
            err = _collect(con, f"SELECT {select_cols} FROM customers NOT INDEXED WHERE rowid = ?",
                           (rowid,), got.append)
            fetched[rowid] = ("error", None) if err else (("ok", tuple(got[0])) if got else ("absent", None))
        return fetched[rowid]

    looked = {}

    def lookup(name, values):
        k = (name, values)
        if k not in looked:
            cols = indexes[name]
            # the POS compares with `=`; only a NULL key needs `IS`
            where = " AND ".join(f"{qi(c)} IS ?" if v is None else f"{qi(c)} = ?"
                                 for c, v in zip(cols, values))
            got = []
            err = _collect(con, f"SELECT rowid FROM customers INDEXED BY {qi(name)} WHERE {where}",
                           values, lambda r: got.append(r[0]))
            looked[k] = (err, got)
        return looked[k]

    def holds(rowid, cols, values):
        state, row = fetch(rowid)
        return state == "ok" and tuple(row[col_pos[c]] for c in cols) == values

    all_rows = list(rows.items()) + repeated
    affected_by_index = {name: set() for name in indexes}
    own_only = set()     # ignoring the "other returned rowids" clause
    for rowid, row in all_rows:
        cid = row[0]
        for name, cols in indexes.items():
            values = tuple(row[col_pos[c]] for c in cols)
            err, got = lookup(name, values)
            if err or rowid not in got:
                own_only.add(cid)
            # Through an index that holds the ID, every row returned must
            # hold this key (else the POS gets another customer). Through
            # other indexes, other rows returned belong to other customers:
            # only this customer's own row decides.
            wrong_rows = "customer_id" in cols and not all(holds(s, cols, values) for s in got)
            if err or rowid not in got or wrong_rows:
                affected_by_index[name].add(cid)

    table_ids = {row[0] for _, row in all_rows}
    index_only_ids = set()
    if PK_INDEX in indexes:
        index_only_ids = {key[0] for key, _ in index_entries[PK_INDEX]} - table_ids
        if raw_path:
            # IDs that survive on readable pages of the ID index, even where
            # SQL cannot reach them (e.g. past a page lost to truncation).
            root = con.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?",
                               (PK_INDEX,)).fetchone()[0]
            psize = con.execute("PRAGMA page_size").fetchone()[0]
            for rec in index_entries_from_pages(raw_path, root, psize):
                if len(rec) == 2 and isinstance(rec[0], str) and isinstance(rec[1], int):
                    if rec[0] not in table_ids:
                        index_only_ids.add(rec[0])
        for cid in index_only_ids:
            err, got = lookup(PK_INDEX, (cid,))
            if err or not got or not all(holds(s, ["customer_id"], (cid,)) for s in got):
                affected_by_index[PK_INDEX].add(cid)
                own_only.add(cid)

    # The POS's lookup by ID alone (`customer_id = ?`) through an index whose
    # key starts with the ID and goes on (customer_id, status): for every ID
    # a row or an entry of that index names, every row returned must hold the
    # ID. (A single-column ID index answers that lookup in the loop above.)
    for name, cols in indexes.items():
        if len(cols) < 2 or cols[0] != "customer_id":
            continue
        named = table_ids | {key[0] for key, _ in index_entries[name] if isinstance(key[0], str)}
        for cid in sorted(named):
            err, got = lookup(name, (cid,))
            if err or not got:
                own_only.add(cid)
            if err or not got or not all(holds(s, ["customer_id"], (cid,)) for s in got):
                affected_by_index[name].add(cid)

    # 4. Missing and surplus index entries, against the rows that can be read.
    missing, surplus = [], []
    for name, cols in indexes.items():
        expected = {(tuple(row[col_pos[c]] for c in cols), rowid) for rowid, row in all_rows}
        actual = index_entries[name]
        for key, rowid in expected - actual:
            missing.append({"index": name, "rowid": rowid, "key": list(key)})
        for key, rowid in actual - expected:
            state, _ = fetch(rowid) if isinstance(rowid, int) else ("error", None)
            surplus.append({"index": name, "rowid": rowid, "key": list(key),
                            "row": "differs" if state == "ok" else
                                   ("absent" if state == "absent" else "unreadable")})
    order = lambda e: (e["index"], _jkey(e["key"]), str(e["rowid"]))
    missing.sort(key=order)
    surplus.sort(key=order)

    affected = set().union(*affected_by_index.values()) if affected_by_index else set()
    assert all(isinstance(x, str) for x in affected), "non-text customer id read"
    by_id = {}
    for rowid, row in all_rows:
        by_id.setdefault(row[0], []).append(rowid)
    duplicates = {cid: sorted(rids) for cid, rids in by_id.items() if len(rids) > 1}

    intended_by_rowid = {r[0]: tuple(r[1:]) for r in intended}
    lost = sorted(set(intended_by_rowid) - set(rows))
    # a customer is lost when no row read holds its intended row, under any rowid
    whole = {row for _, row in all_rows}
    altered = sorted(r for r in rows if r in intended_by_rowid
                     and (r, intended_by_rowid[r]) not in seen)
    extra = sorted(set(rows) - set(intended_by_rowid))
    return {
        "schema_error": schema_error,
        "indexes": indexes,
        "customers_total": len(all_rows),
        "table_scan_errors": scan_errors,
        "index_scan_errors": index_errors,
        "affected_customer_ids": sorted(affected),
        "affected_own_row_only": sorted(own_only),
        "affected_by_index": {n: sorted(v) for n, v in sorted(affected_by_index.items()) if v},
        "index_only_customer_ids": sorted(index_only_ids),
        "duplicates": duplicates,
        "missing_index_entries": missing,
        "surplus_index_entries": surplus,
        "lost_rowids": lost,
        "lost_customer_ids": sorted(intended_by_rowid[r][0] for r in lost
                                    if intended_by_rowid[r] not in whole),
        "altered_rowids": altered,
        "extra_rowids": extra,
        "rows": rows,
    }


def cli_lines(db_src, wal_src, pragma):
    """First 3 lines of the stock sqlite3 CLI running a pragma on a copy."""
    exe = shutil.which("sqlite3")
    if not exe:
        return None
    with tempfile.TemporaryDirectory() as td:
        name = os.path.basename(db_src)
        shutil.copyfile(db_src, os.path.join(td, name))
        if wal_src:
            shutil.copyfile(wal_src, os.path.join(td, name + "-wal"))
        p = subprocess.run([exe, "-batch", "-init", "/dev/null", name, f"PRAGMA {pragma}"],
                           cwd=td, capture_output=True,
                           text=True, errors="backslashreplace", timeout=120)
    # stdout (the pragma's rows) first, then stderr (the CLI's error line).
    return (p.stdout.splitlines() + p.stderr.splitlines())[:3]


# --------------------------------------------------------------------------
# Fixtures.  Each builder works in `work`, returns a dict:
#   db, wal, snap       paths of the built files (wal/snap may be None)
#   intended            rows the database should hold (None: not a database)
#   damage, description, extra truth fields, expect (construction-side checks)
# --------------------------------------------------------------------------

def pick_pk_leaf(con, prefer="unused"):
    cands = [l for l in middle_third(leaf_pages(con, PK_INDEX))]
    if prefer == "unused":
        return max(cands, key=lambda l: (l[4], -l[0]))
    return min(cands, key=lambda l: (l[4], l[0]))


def fx_healthy(work):
    db, snap = f"{work}/h.db", f"{work}/h.snap.db"
    people = build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=20)
    update_balances(con, people, 40)
    con.execute("COMMIT")
    intended = dump_customers(con)
    con.close()
    return dict(db=db, snap=snap, intended=intended, damage={"kind": "none"},
                expect_affected=set(),
                description="No damage. The snapshot was taken before the last 20 "
                            "registrations and 40 balance updates, so it differs from the "
                            "live file: a repair with it must change nothing.")


def _stale_pk(work, auto_vacuum=None):
    """Shared by stale_pk_page, stale_pk_page_dups and the auto_vacuum kinds."""
    db, snap = f"{work}/s.db", f"{work}/s.snap.db"
    people = build_base(db, auto_vacuum=auto_vacuum)
    con = connect(db)
    pgno, _, _, ncell, unused = pick_pk_leaf(con)
    pages_before = [l[0] for l in leaf_pages(con, PK_INDEX)]
    old = read_page(db, pgno, PAGE_SIZE)
    copy_consistent(con, db, snap)
    old_entries = index_leaf_entries(old, pgno)
    lo, hi = old_entries[0][0], old_entries[-1][0]
    k = min(16, (unused - 80) // 26)
    assert k >= 8, f"page {pgno} has too little room ({unused} bytes)"
    con.execute("BEGIN")
    on_page = add_customers(con, people, ids=[people.new_id(inside=(lo, hi)) for _ in range(k)])
    owned = key_neighbours(con, "customer_id", lo, hi)
    elsewhere = add_customers(con, people, ids=[people.new_id(outside=owned) for _ in range(6)])
    update_balances(con, people, 40)
    con.execute("COMMIT")
    # The page must still be a leaf of the PK index holding old + new entries:
    # no split, no rebalancing anywhere in the index.
    assert [l[0] for l in leaf_pages(con, PK_INDEX)] == pages_before, "PK index pages changed"
    now = index_leaf_entries(read_page(db, pgno, PAGE_SIZE), pgno)
    assert {e[0] for e in now} == {e[0] for e in old_entries} | set(on_page)
    intended = dump_customers(con)
    con.close()
    write_page(db, pgno, old, PAGE_SIZE)
    return db, snap, intended, pgno, on_page, elsewhere, people


def fx_stale_pk_page(work):
    db, snap, intended, pgno, on_page, elsewhere, _ = _stale_pk(work)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "stale_page", "object": PK_INDEX, "page_type": "index_leaf",
                        "pages": [pgno]},
                expect_affected=set(on_page),
                new_customer_ids_on_page=sorted(on_page),
                new_customer_ids_elsewhere=sorted(elsewhere),
                description=f"Lost write on leaf page {pgno} of {PK_INDEX}: the page was "
                            f"copied, then {len(on_page)} customers whose IDs fall on it and "
                            f"{len(elsewhere)} elsewhere were registered and 40 balances "
                            "updated, then the old bytes were written back. The customers "
                            "added on that page are in the table but not in the ID index.")


def fx_stale_pk_page_dups(work):
    db, snap, intended, pgno, on_page, elsewhere, people = _stale_pk(work)
    rereg = sorted(on_page)[::3][:5]
    con = connect(db)
    con.execute("BEGIN")
    originals = {cid: [r[0] for r in con.execute(
        "SELECT rowid FROM customers NOT INDEXED WHERE customer_id = ?", (cid,))] for cid in rereg}
    new_rowids = {}
    for cid in rereg:
        # The broken UNIQUE index lets the second row through.
        con.execute(INSERT_CUSTOMER, people.customer(cid=cid, recent=True))
        new_rowids[cid] = [con.execute("SELECT last_insert_rowid()").fetchone()[0]]
        con.execute(INSERT_TXN, people.txn(cid, recent=True))
    con.execute("COMMIT")
    con.close()
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "stale_page_with_duplicates", "object": PK_INDEX,
                        "page_type": "index_leaf", "pages": [pgno]},
                expect_affected=set(on_page),
                expect_duplicates=set(rereg),
                duplicates_detail={cid: {"original_rowids": originals[cid],
                                         "reregistered_rowids": new_rowids[cid]} for cid in rereg},
                new_customer_ids_on_page=sorted(on_page),
                description=f"As stale_pk_page (lost write on page {pgno} of {PK_INDEX}), then "
                            f"{len(rereg)} of the unfindable customers were 're-registered': a "
                            "second row with the same customer_id, a new card number and name. "
                            "The intended content is the original rows; the re-registrations "
                            "are to be quarantined.")


def fx_stale_secondary_page(work):
    db, snap = f"{work}/e.db", f"{work}/e.snap.db"
    people = build_base(db)
    con = connect(db)
    leaves = leaf_pages(con, EMAIL_INDEX)
    pages_before = [l[0] for l in leaves]
    pgno = max(middle_third(leaves), key=lambda l: (l[4], -l[0]))[0]
    old = read_page(db, pgno, PAGE_SIZE)
    copy_consistent(con, db, snap)
    old_entries = index_leaf_entries(old, pgno)
    assert old_entries[0][0] is not None
    lo, hi = old_entries[0][0], old_entries[-1][0]
    con.execute("BEGIN")
    # (a) new customers whose email falls on the page
    new_ids = [people.new_id() for _ in range(6)]
    emails = {cid: people.new_email("", "", inside=(lo, hi)) for cid in new_ids}
    add_customers(con, people, ids=new_ids, emails=emails)
    # (b) customers elsewhere who changed their email to one on the page
    page_rowids = {e[1] for e in old_entries}
    others = con.execute("SELECT rowid, customer_id FROM customers WHERE email IS NULL "
                         "OR email < ? OR email > ? ORDER BY rowid", (lo, hi)).fetchall()
    moved_in = people.rng.sample(others, 4)
    for rowid, _ in moved_in:
        con.execute("UPDATE customers SET email = ?, updated_at = ? WHERE rowid = ?",
                    (people.new_email("", "", inside=(lo, hi)), people.recent(), rowid))
    # (c) customers on the page who changed their email to one elsewhere
    on_page = sorted(page_rowids)
    owned = key_neighbours(con, "email", lo, hi)
    moved_out = people.rng.sample(on_page[1:-1], 3)
    moved_out_ids = [con.execute("SELECT customer_id FROM customers WHERE rowid = ?",
                                 (r,)).fetchone()[0] for r in moved_out]
    for rowid in moved_out:
        con.execute("UPDATE customers SET email = ?, updated_at = ? WHERE rowid = ?",
                    (people.new_email("", "", outside=owned), people.recent(), rowid))
    update_balances(con, people, 20)
    con.execute("COMMIT")
    assert [l[0] for l in leaf_pages(con, EMAIL_INDEX)] == pages_before, "email index pages changed"
    now = {e[1] for e in index_leaf_entries(read_page(db, pgno, PAGE_SIZE), pgno)}
    added_rowids = {r for (r,) in con.execute(
        f"SELECT rowid FROM customers WHERE customer_id IN ({','.join('?' * len(new_ids))})", new_ids)}
    assert now == (page_rowids - set(moved_out)) | added_rowids | {r for r, _ in moved_in}
    intended = dump_customers(con)
    con.close()
    write_page(db, pgno, old, PAGE_SIZE)
    expect = set(new_ids) | {cid for _, cid in moved_in}
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "stale_page", "object": EMAIL_INDEX, "page_type": "index_leaf",
                        "pages": [pgno]},
                expect_affected=expect,
                email_added_on_page_ids=sorted(new_ids),
                email_moved_onto_page_ids=sorted(cid for _, cid in moved_in),
                email_moved_off_page_ids=sorted(moved_out_ids),
                description=f"Lost write on leaf page {pgno} of {EMAIL_INDEX}: after the copy, "
                            "6 customers were registered with emails on that page, 4 customers "
                            "changed their email to one on it and 3 whose entry was on it "
                            "changed to an email elsewhere; then the old bytes were written "
                            "back. The first 10 are unfindable by email; the last 3 leave "
                            "stale (surplus) entries that no lookup by a current value reaches.")


def fx_zeroed_index_page(work):
    db, snap = f"{work}/z.db", f"{work}/z.snap.db"
    people = build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=12)
    update_balances(con, people, 30)
    con.execute("COMMIT")
    pgno = pick_pk_leaf(con)[0]
    entries = index_leaf_entries(read_page(db, pgno, PAGE_SIZE), pgno)
    intended = dump_customers(con)
    con.close()
    write_page(db, pgno, bytes(PAGE_SIZE), PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "zeroed_page", "object": PK_INDEX, "page_type": "index_leaf",
                        "pages": [pgno]},
                expect_affected={e[0] for e in entries},
                entries_on_damaged_page=len(entries),
                description=f"Leaf page {pgno} of {PK_INDEX} ({len(entries)} entries) "
                            "overwritten with zeros (a torn write). The snapshot predates the "
                            "last 12 registrations and 30 balance updates.")


def fx_garbage_index_page(work):
    db, snap = f"{work}/g.db", f"{work}/g.snap.db"
    people = build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=12)
    update_balances(con, people, 30)
    con.execute("COMMIT")
    leaves = [l for l in middle_third(leaf_pages(con, PHONE_INDEX))]
    pgno = leaves[len(leaves) // 2][0]
    page = read_page(db, pgno, PAGE_SIZE)
    entries = index_leaf_entries(page, pgno)
    assert entries[0][0] is not None
    _, _, content, _, ptr_end = page_layout(page, pgno)
    intended = dump_customers(con)
    con.close()
    garbage = random.Random(SEED * 10 + 6).randbytes(PAGE_SIZE - content)
    write_page(db, pgno, garbage, PAGE_SIZE, offset=content)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "garbage_cells", "object": PHONE_INDEX, "page_type": "index_leaf",
                        "pages": [pgno], "byte_range": [content, PAGE_SIZE],
                        "region": "cell content area; page header and cell pointer array intact"},
                phones_on_damaged_page=len(entries),
                _phone_rowids=[e[1] for e in entries],
                description=f"Deterministic random bytes written over the cell content area "
                            f"(bytes {content}..{PAGE_SIZE}) of leaf page {pgno} of "
                            f"{PHONE_INDEX}; the 8-byte page header and the cell pointer array "
                            f"({len(entries)} cells) are intact, so the page still parses but "
                            "its cells are garbage.")


def fx_surplus_index_entries(work):
    db, snap = f"{work}/u.db", f"{work}/u.snap.db"
    people = build_base(db)
    con = connect(db)
    pgno = pick_pk_leaf(con, prefer="full")[0]
    pages_before = [l[0] for l in leaf_pages(con, PK_INDEX)]
    old = read_page(db, pgno, PAGE_SIZE)
    copy_consistent(con, db, snap)
    entries = index_leaf_entries(old, pgno)
    victims = sorted(people.rng.sample([e[0] for e in entries[1:-1]], 5))
    con.execute("BEGIN")
    for cid in victims:
        con.execute("DELETE FROM transactions WHERE customer_id = ?", (cid,))
        con.execute("DELETE FROM customers WHERE customer_id = ?", (cid,))
    update_balances(con, people, 20)
    con.execute("COMMIT")
    assert [l[0] for l in leaf_pages(con, PK_INDEX)] == pages_before, "PK index pages changed"
    now = {e[0] for e in index_leaf_entries(read_page(db, pgno, PAGE_SIZE), pgno)}
    assert now == {e[0] for e in entries} - set(victims)
    intended = dump_customers(con)
    con.close()
    write_page(db, pgno, old, PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "stale_page", "object": PK_INDEX, "page_type": "index_leaf",
                        "pages": [pgno]},
                expect_affected=set(victims),
                deleted_customer_ids=victims,
                description=f"Leaf page {pgno} of {PK_INDEX} was copied, then 5 customers with "
                            "entries on it were deleted with their transactions (and 20 "
                            "balances updated), then the old bytes were written back: the ID "
                            "index has 5 entries whose row is gone. The deletions were "
                            "intended: the expected content is without them (the snapshot "
                            "still has them).")


def fx_flipped_id_byte(work):
    db, snap = f"{work}/f.db", f"{work}/f.snap.db"
    build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    # a row in the middle of the table: flip one digit of its stored ID
    pgno = middle_third(leaf_pages(con, "customers"))[0][0]
    page = bytearray(read_page(db, pgno, PAGE_SIZE))
    rowid = table_leaf_rowids(bytes(page), pgno)[0]
    true_id = con.execute("SELECT customer_id FROM customers WHERE rowid = ?", (rowid,)).fetchone()[0]
    intended = dump_customers(con)
    con.close()
    at = bytes(page).find(true_id.encode())
    assert at > 0 and bytes(page).count(true_id.encode()) == 1
    last = at + len(true_id) - 1
    stored_id = true_id[:-1] + str((int(true_id[-1]) + 1) % 10)
    assert all(r[1] != stored_id for r in intended), "the flipped ID must be new"
    page[last] = ord(stored_id[-1])
    write_page(db, pgno, bytes(page), PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "flipped_id_byte", "object": "customers", "page_type": "table_leaf",
                        "pages": [pgno], "rowid": rowid, "true_id": true_id, "stored_id": stored_id},
                expect_affected={true_id, stored_id},
                description=f"One byte of the customer_id stored in row {rowid} (table leaf page "
                            f"{pgno}) was changed: the row now holds {stored_id}, while the ID "
                            f"index (and the snapshot) still say {true_id}. Rebuilding the index "
                            "from the table would enshrine the damage; the row must be restored.")


def garbage_over_cells(db, pgno, content, intended, seed):
    """Deterministic random bytes over the cell content area (from `content`)
    of table leaf `pgno`, drawn again until SQLite reads none of it as a
    customer row other than an intended one. Returns the attempt kept."""
    good = {r[0]: tuple(r[1:]) for r in intended}
    for attempt in range(50):
        garbage = random.Random(seed + 1000 * attempt).randbytes(PAGE_SIZE - content)
        write_page(db, pgno, garbage, PAGE_SIZE, offset=content)
        probe = probe_truth(db)
        if all(good.get(r) == v for r, v in probe["rows"].items()):
            return attempt
    raise RuntimeError("garbage always decodes as rows")


def fx_damaged_table_leaf(work):
    db, snap = f"{work}/t.db", f"{work}/t.snap.db"
    people = build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=10)
    update_balances(con, people, 40)
    con.execute("COMMIT")
    # A middle leaf of the table that the post-snapshot activity left untouched,
    # so the snapshot holds exactly the rows lost on it.
    pgno = next(l[0] for l in middle_third(leaf_pages(con, "customers"))
                if read_page(db, l[0], PAGE_SIZE) == read_page(snap, l[0], PAGE_SIZE))
    page = read_page(db, pgno, PAGE_SIZE)
    rowids = table_leaf_rowids(page, pgno)
    _, _, content, _, _ = page_layout(page, pgno)
    intended = dump_customers(con)
    root = con.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'customers'").fetchone()[0]
    con.close()
    # Rows that survive intact somewhere: every row on every leaf but the damaged one.
    salvageable = sorted(r for leaf in table_subtree_leaves(db, root, PAGE_SIZE) if leaf != pgno
                         for r in table_leaf_rowids(read_page(db, leaf, PAGE_SIZE), leaf))
    assert salvageable == sorted({r[0] for r in intended} - set(rowids))
    attempt = garbage_over_cells(db, pgno, content, intended, SEED * 10 + 8)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "garbage_cells", "object": "customers", "page_type": "table_leaf",
                        "pages": [pgno], "byte_range": [content, PAGE_SIZE],
                        "region": "cell content area; page header and cell pointer array intact"},
                damaged_rowids=sorted(rowids),
                salvageable_rowids=salvageable,
                garbage_attempt=attempt,
                description=f"Deterministic random bytes over the cell content area (bytes "
                            f"{content}..{PAGE_SIZE}) of leaf page {pgno} of the customers table "
                            f"({len(rowids)} rows); header and cell pointer array intact. The "
                            "page's bytes are identical in the snapshot, which predates 10 "
                            "registrations and 40 balance updates elsewhere.")


def fx_misplaced_table_cells(work):
    db, snap, _, intended = _base_then_activity(work, "m", added=10, updated=40)
    con = connect(db)
    leaves = [l[0] for l in leaf_pages(con, "customers")]
    con.close()
    pgno = middle_third(leaves)[0]
    other = leaves[leaves.index(pgno) + 1]
    page = bytearray(read_page(db, pgno, PAGE_SIZE))
    _, ptrs, _, _, _ = page_layout(page, pgno)
    before = table_leaf_rowids(page, pgno)
    taken = {r[0] for r in intended}

    def rowid_at(k):
        """(offset, length) of cell k's rowid varint."""
        _, i = varint(page, ptrs[k])
        _, j = varint(page, i)
        return i, j - i

    def put_rowid(k, rowid):
        i, n = rowid_at(k)
        assert n == 2 and 128 <= rowid < 1 << 14, (n, rowid)
        page[i:i + 2] = bytes([0x80 | (rowid >> 7), rowid & 0x7F])

    # a third of the way in: a rowid no row has, above every rowid (the
    # largest with the same 2-byte varint), as a flipped bit leaves it
    a = len(ptrs) // 3
    fresh = (1 << 14) - 1
    assert fresh not in taken
    put_rowid(a, fresh)
    # two thirds in: the rowid of the first row of the next leaf
    b = 2 * len(ptrs) // 3
    repeated = table_leaf_rowids(read_page(db, other, PAGE_SIZE), other)[0]
    put_rowid(b, repeated)
    # the page's fragmented-free-bytes count, far above what SQLite allows
    page[7] = 255
    write_page(db, pgno, bytes(page), PAGE_SIZE)
    after = table_leaf_rowids(read_page(db, pgno, PAGE_SIZE), pgno)
    by_rowid = {r[0]: r[1] for r in intended}
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "misplaced_cells", "object": "customers", "page_type": "table_leaf",
                        "pages": [pgno], "cells": [a, b],
                        "region": "two cells' rowid varints and the page header's fragmented-bytes count"},
                truth={"page_rowids_before": before, "page_rowids": after,
                       "misplaced": {"cell": a, "rowid": fresh, "was": before[a],
                                     "customer_id": by_rowid[before[a]]},
                       "repeated": {"cell": b, "rowid": repeated, "was": before[b],
                                    "customer_id": by_rowid[before[b]],
                                    "holder_customer_id": by_rowid[repeated],
                                    "holder_page": other}},
                description=f"Leaf page {pgno} of the customers table ({len(ptrs)} cells): cell {a} "
                            f"has its rowid {before[a]} changed to {fresh} (above every rowid, "
                            f"no row has it), cell {b} its rowid {before[b]} changed to "
                            f"{repeated} (the rowid of the first row of leaf page {other}), "
                            "both 2-byte varints as before, and the page header's fragmented "
                            "free bytes set to 255. Every cell's record is whole. The snapshot "
                            "predates 10 registrations and 40 balance updates.")


def fx_damaged_table_interior(work):
    db, snap = f"{work}/i.db", f"{work}/i.snap.db"
    people = build_base(db, page_size=SMALL_PAGE_SIZE, n=SMALL_PAGE_CUSTOMERS)
    con = connect(db)
    stats = dbstat(con, "customers")
    interiors = [r for r in stats if r[1] == "internal" and r[2] != "/"]
    assert interiors, "customers table has no second interior level"
    # Not the right-most one: new rows are appended under that.
    pgno, _, path, _, _ = interiors[(len(interiors) - 1) // 2]
    assert path != interiors[-1][2]
    leaves = [r[0] for r in stats if r[1] == "leaf" and r[2].startswith(path)]
    assert leaves == table_subtree_leaves(db, pgno, SMALL_PAGE_SIZE)
    orphaned = sorted(r for leaf in leaves
                      for r in table_leaf_rowids(read_page(db, leaf, SMALL_PAGE_SIZE), leaf))
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=10)               # appended at the right edge
    update_balances(con, people, 40, skip_rowids=orphaned)
    con.execute("COMMIT")
    stats_now = dbstat(con, "customers")
    assert (pgno, "internal", path) in [r[:3] for r in stats_now]
    assert [r[0] for r in stats_now if r[1] == "leaf" and r[2].startswith(path)] == leaves
    for leaf in leaves:
        assert read_page(db, leaf, SMALL_PAGE_SIZE) == read_page(snap, leaf, SMALL_PAGE_SIZE)
    depth = max(r[2].count("/") for r in stats_now if r[1] == "internal")
    intended = dump_customers(con)
    orphaned_ids = sorted(r[1] for r in intended if r[0] in set(orphaned))
    root = con.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'customers'").fetchone()[0]
    con.close()
    # Rows that survive intact somewhere: those on the leaves still reachable
    # plus those on the orphaned (intact) leaves; only the interior page is zeroed.
    all_leaves = table_subtree_leaves(db, root, SMALL_PAGE_SIZE)
    reachable = [r for leaf in all_leaves if leaf not in set(leaves)
                 for r in table_leaf_rowids(read_page(db, leaf, SMALL_PAGE_SIZE), leaf)]
    salvageable = sorted(set(reachable) | set(orphaned))
    assert salvageable == sorted(r[0] for r in intended)
    write_page(db, pgno, bytes(SMALL_PAGE_SIZE), SMALL_PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended, page_size=SMALL_PAGE_SIZE,
                damage={"kind": "zeroed_page", "object": "customers",
                        "page_type": "table_interior", "pages": [pgno],
                        "dbstat_path": path, "orphaned_leaf_pages": leaves},
                orphaned_rowids=orphaned,
                orphaned_customer_ids=orphaned_ids,
                salvageable_rowids=salvageable,
                interior_levels=depth,
                expect_affected=set(orphaned_ids),
                description=f"page_size {SMALL_PAGE_SIZE}, {SMALL_PAGE_CUSTOMERS} customers in the base "
                            f"database: the customers table b-tree has "
                            f"{depth} levels of interior pages. Non-root interior page {pgno} "
                            f"(dbstat path {path}) was zeroed; its {len(leaves)} leaf pages "
                            f"({len(orphaned)} rows) are intact but orphaned. Those leaves are "
                            "byte-identical in the snapshot (taken before 10 registrations and "
                            "40 balance updates of other rows).")


def table_leaf_cell_payload(page, pgno, rowid):
    """(payload size, local bytes, first overflow page or None) of the cell of
    `rowid` on a table leaf page, sized as in fileformat2.html "Cell Payload
    Overflow Pages" (X = U-35, M = ((U-12)*32/255)-23, K = M+((P-M)%(U-4)))."""
    kind, ptrs, _, _, _ = page_layout(page, pgno)
    assert kind == TABLE_LEAF, kind
    u = len(page)
    x, m = u - 35, (u - 12) * 32 // 255 - 23
    for p in ptrs:
        size, i = varint(page, p)
        r, i = varint(page, i)
        if r != rowid:
            continue
        if size <= x:
            return size, page[i:i + size], None
        k = m + (size - m) % (u - 4)
        local = k if k <= x else m
        return size, page[i:i + local], struct.unpack(">I", page[i + local:i + local + 4])[0]
    raise KeyError(rowid)


def overflow_chain(path, first, page_size):
    """Page numbers of an overflow chain, following next-page pointers."""
    chain, pg = [], first
    while pg:
        assert pg not in chain
        chain.append(pg)
        pg = struct.unpack(">I", read_page(path, pg, page_size)[:4])[0]
    return chain


OVERFLOW_BASE_CUSTOMERS = 400   # overflow_chain_broken: a small base database
LONG_NAME_CUSTOMERS = 10
LONG_NAME_CHARS = 9000          # name + notes: over two 4096-byte overflow pages


def long_name_customer(people, cid):
    """A new customer whose name runs on with notes to LONG_NAME_CHARS
    characters: its row spills onto overflow pages."""
    row = list(people.customer(cid=cid, recent=True))
    words = [row[2], "- notes:"]
    while len(" ".join(words)) < LONG_NAME_CHARS:
        words.append(people.rng.choice(FIRST + LAST + ["paid", "cash", "card", "returned",
                                                       "voucher", "loyalty", "store", "visit"]))
    row[2] = " ".join(words)[:LONG_NAME_CHARS]
    return row


def fx_overflow_chain_broken(work):
    db, snap = f"{work}/o.db", f"{work}/o.snap.db"
    people = build_base(db, n=OVERFLOW_BASE_CUSTOMERS)
    con = connect(db)
    rng = people.rng
    long_ids = [people.new_id() for _ in range(LONG_NAME_CUSTOMERS)]
    con.execute("BEGIN")
    for cid in long_ids:
        con.execute(INSERT_CUSTOMER, long_name_customer(people, cid))
        con.execute(INSERT_TXN, people.txn(cid, recent=True))
    con.execute("COMMIT")
    long_rowids = sorted(con.execute(
        f"SELECT rowid FROM customers WHERE customer_id IN ({','.join('?' * len(long_ids))})",
        long_ids).fetchall())
    long_rowids = [r[0] for r in long_rowids]
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=8)
    update_balances(con, people, 20, skip_rowids=long_rowids)
    con.execute("COMMIT")
    intended = dump_customers(con)
    root = con.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'customers'").fetchone()[0]
    con.close()
    npages = header_page_count(db)
    leaf_of = {r: leaf for leaf in table_subtree_leaves(db, root, PAGE_SIZE)
               for r in table_leaf_rowids(read_page(db, leaf, PAGE_SIZE), leaf)}
    assert sorted(leaf_of) == sorted(r[0] for r in intended)
    chains = {}
    for r in long_rowids:
        size, _, first = table_leaf_cell_payload(read_page(db, leaf_of[r], PAGE_SIZE), leaf_of[r], r)
        chains[r] = overflow_chain(db, first, PAGE_SIZE)
        assert len(chains[r]) >= 2, (r, size, chains[r])
    # Victim A: its first overflow page zeroed (the chain ends one page early).
    # Victim B: its first overflow page points past the end of the file.
    victim_a, victim_b = long_rowids[3], long_rowids[7]
    a_page, b_page = chains[victim_a][0], chains[victim_b][0]
    write_page(db, a_page, bytes(PAGE_SIZE), PAGE_SIZE)
    beyond = npages + 1000
    write_page(db, b_page, struct.pack(">I", beyond), PAGE_SIZE)
    damaged = sorted([victim_a, victim_b])
    spill = sorted({len(c) for c in chains.values()})
    spill = f"{spill[0]}" if len(spill) == 1 else f"{spill[0]}-{spill[-1]}"
    surviving = sorted(set(leaf_of) - set(damaged))
    by_rowid = {r[0]: r[1] for r in intended}
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "overflow_chain_broken", "object": "customers",
                        "page_type": "overflow", "pages": [a_page, b_page],
                        "chains": {str(victim_a): {"pages": chains[victim_a],
                                                   "broken": f"page {a_page} zeroed"},
                                   str(victim_b): {"pages": chains[victim_b],
                                                   "broken": f"page {b_page} points to page {beyond}, "
                                                             "past the end of the file"}}},
                expect_affected={by_rowid[r] for r in damaged},
                damaged_rowids=damaged,
                damaged_customer_ids=sorted(by_rowid[r] for r in damaged),
                surviving_rowids=surviving,
                salvageable_rowids=surviving,
                long_name_rowids=long_rowids,
                description=f"{OVERFLOW_BASE_CUSTOMERS} customers in the base database, then "
                            f"{LONG_NAME_CUSTOMERS} customers whose name carries {LONG_NAME_CHARS} "
                            f"characters of notes (each row spills onto {spill} overflow pages); the "
                            "snapshot was taken then, before 8 registrations and 20 balance "
                            "updates (none of the long rows). Then two overflow chains were "
                            f"broken: rowid {victim_a}'s first overflow page {a_page} was zeroed "
                            f"(the chain ends early) and rowid {victim_b}'s first overflow page "
                            f"{b_page} was made to point to page {beyond}, past the end of the "
                            "file. Those two rows are unreadable (never to be returned truncated); "
                            "every other row is whole.")


def fx_index_definition_removed(work):
    db, snap = f"{work}/d.db", f"{work}/d.snap.db"
    people = build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=10)
    update_balances(con, people, 20)
    con.execute("COMMIT")
    intended = dump_customers(con)
    pages = sorted(r[0] for r in dbstat(con, PHONE_INDEX))
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = ?", (PHONE_INDEX,)).fetchone()[0]
    version = con.execute("PRAGMA schema_version").fetchone()[0]
    con.execute("PRAGMA writable_schema = ON")
    con.execute("BEGIN")
    con.execute("DELETE FROM sqlite_master WHERE type = 'index' AND name = ?", (PHONE_INDEX,))
    con.execute(f"PRAGMA schema_version = {version + 1}")
    con.execute("COMMIT")
    con.execute("PRAGMA writable_schema = OFF")
    con.close()
    con = connect(db)
    assert not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (PHONE_INDEX,)).fetchall()
    con.close()
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "index_definition_removed", "object": PHONE_INDEX,
                        "page_type": "index", "pages": pages, "sql": sql,
                        "schema_version_before": version},
                expect_affected=set(),
                description=f"With writable_schema the sqlite_schema row of {PHONE_INDEX} was "
                            f"deleted and schema_version bumped ({version} -> {version + 1}); its "
                            f"{len(pages)} b-tree pages are orphaned. The snapshot (before 10 "
                            "registrations and 20 balance updates) still has the definition.")


def fx_wal_stale_index(work):
    db, snap = f"{work}/w.db", f"{work}/w.snap.db"
    people = build_base(db)
    con = connect(db)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    con.execute("PRAGMA wal_autocheckpoint=0")
    pgno, _, _, _, unused = pick_pk_leaf(con)
    pages_before = [l[0] for l in leaf_pages(con, PK_INDEX)]
    old = read_page(db, pgno, PAGE_SIZE)               # everything is in the main file
    old_entries = index_leaf_entries(old, pgno)
    lo, hi = old_entries[0][0], old_entries[-1][0]
    shutil.copyfile(db, snap)
    s = connect(snap)                                   # the backup: rollback journal mode
    assert s.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    s.close()
    # Registrations on the page, checkpointed into the main file.
    con.execute("BEGIN")
    on_page = add_customers(con, people, ids=[people.new_id(inside=(lo, hi)) for _ in range(12)])
    update_balances(con, people, 20)
    con.execute("COMMIT")
    busy, log, ckpt = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0 and os.path.getsize(db + "-wal") == 0
    # Later registrations committed into the WAL only, never touching the page.
    wal_ids = []
    owned = key_neighbours(con, "customer_id", lo, hi)
    for _ in range(2):
        con.execute("BEGIN")
        wal_ids += add_customers(con, people, ids=[people.new_id(outside=owned) for _ in range(6)])
        update_balances(con, people, 2)
        con.execute("COMMIT")
    assert [l[0] for l in leaf_pages(con, PK_INDEX)] == pages_before, "PK index pages changed"
    intended = dump_customers(con)
    # Copy both files while this connection keeps the WAL alive.
    out_db, out_wal = f"{work}/w.out.db", f"{work}/w.out.db-wal"
    shutil.copyfile(db, out_db)
    shutil.copyfile(db + "-wal", out_wal)
    con.close()
    fix_wal_salts(out_wal)
    frames, committed = wal_frames(open(out_wal, "rb").read())
    assert frames and committed == len(frames)
    assert pgno not in {f[0] for f in frames}, "stale page is in the WAL"
    now = index_leaf_entries(read_page(out_db, pgno, PAGE_SIZE), pgno)
    assert {e[0] for e in now} == {e[0] for e in old_entries} | set(on_page)
    write_page(out_db, pgno, old, PAGE_SIZE)
    # The -wal must really carry committed customers: compare with and without it.
    with tempfile.TemporaryDirectory() as td:
        shutil.copyfile(out_db, f"{td}/a.db")
        shutil.copyfile(out_wal, f"{td}/a.db-wal")
        shutil.copyfile(out_db, f"{td}/b.db")
        with_wal = connect(f"{td}/a.db").execute("SELECT count(*) FROM customers NOT INDEXED").fetchone()[0]
        without = connect(f"{td}/b.db").execute("SELECT count(*) FROM customers NOT INDEXED").fetchone()[0]
    assert with_wal == len(intended) and with_wal - without == len(wal_ids), (with_wal, without)
    return dict(db=out_db, wal=out_wal, snap=snap, intended=intended,
                journal_mode="wal",
                damage={"kind": "stale_page", "object": PK_INDEX, "page_type": "index_leaf",
                        "pages": [pgno], "file": "main database file (newest version of the page "
                                                 "is not in the WAL)"},
                expect_affected=set(on_page),
                wal_frames=len(frames),
                wal_commit_frames=sum(1 for f in frames if f[1]),
                wal_pages=sorted({f[0] for f in frames}),
                wal_only_customer_ids=sorted(wal_ids),
                customers_without_wal=without,
                new_customer_ids_on_page=sorted(on_page),
                description=f"WAL mode. Leaf page {pgno} of {PK_INDEX} was copied; 12 customers "
                            "on it were registered and checkpointed into the main file; then "
                            f"{len(wal_ids)} more (on other pages) were committed in 2 transactions into the "
                            f"-wal ({len(frames)} frames, never checkpointed); then the old page "
                            "was written back into the main file. Ship .db and .db-wal together "
                            "(no -shm). The snapshot is the pre-copy state in rollback mode.")


def fx_truncated(work):
    db, snap = f"{work}/x.db", f"{work}/x.snap.db"
    build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    intended = dump_customers(con)
    con.close()
    pages = header_page_count(db)
    cut = pages * 55 // 100
    os.truncate(db, cut * PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "truncated", "object": None, "pages": list(range(cut + 1, pages + 1)),
                        "header_page_count": pages, "file_pages": cut},
                description=f"The healthy base database ({pages} pages by its header) cut to its "
                            f"first {cut} pages ({cut * PAGE_SIZE} bytes). The snapshot is the "
                            "file before the cut. Stock SQLite refuses the whole file "
                            "(page count in the header > file size); the truth was probed "
                            "with PRAGMA writable_schema=ON, under which SQLite uses the file "
                            "size, so rows and index pages past the cut are lost.")


def fx_lost_customer_leaf(work):
    """Issue 8 item 1: a lost customer-table leaf whose rows are mostly newer
    than the nightly snapshot, each already named by transactions."""
    db, snap = f"{work}/l.db", f"{work}/l.snap.db"
    people = build_base(db)
    con = connect(db)

    def right_leaf():
        pgno = leaf_pages(con, "customers")[-1][0]
        return pgno, table_leaf_rowids(read_page(db, pgno, PAGE_SIZE), pgno)

    # Register customers until the right-most leaf holds exactly 2 rows:
    # those 2 are in the snapshot taken next.
    while len(right_leaf()[1]) != 2:
        add_customers(con, people, count=1)
    pgno, old_rowids = right_leaf()
    copy_consistent(con, db, snap)
    # After the snapshot: 25 new customers, each with 1-2 purchases. New rows
    # are appended to the right-most leaf.
    con.execute("BEGIN")
    new_ids = add_customers(con, people, count=25)
    con.execute("COMMIT")
    leaf_now, rowids = right_leaf()
    assert leaf_now == pgno and len(rowids) == 27, (leaf_now, pgno, len(rowids))
    intended = dump_customers(con)
    by_rowid = {r[0]: r for r in intended}
    named = {r[0] for r in con.execute("SELECT DISTINCT customer_id FROM transactions")}
    con.close()
    # The truth, from the builder's own data and the snapshot (never custodian):
    snap_con = sqlite3.connect(f"file:{snap}?mode=ro", uri=True)
    in_snapshot = {r[0]: r for r in snap_con.execute(
        "SELECT rowid, " + ", ".join(CUSTOMER_COLUMNS) + " FROM customers")}
    snap_con.close()
    restorable = sorted(by_rowid[r][1] for r in rowids if r in in_snapshot)
    lost = sorted(by_rowid[r][1] for r in rowids if r not in in_snapshot)
    assert len(restorable) == 2 and sorted(by_rowid[r][1] for r in old_rowids) == restorable
    assert all(in_snapshot[r] == by_rowid[r] for r in old_rowids), "restored rows are unchanged"
    assert sorted(new_ids) == lost and set(lost) <= named, "every lost customer bought something"
    after = [r for r in intended if r[1] not in set(lost)]
    write_page(db, pgno, bytes(PAGE_SIZE), PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "zeroed_page", "object": "customers", "page_type": "table_leaf",
                        "pages": [pgno]},
                damaged_rowids=sorted(rowids),
                restorable_customer_ids=restorable,
                unrecoverable_customer_ids=lost,
                after_repair=after,
                expect_affected=set(restorable) | set(lost),
                description=f"The right-most leaf of the customers table (page {pgno}) held 2 "
                            "rows when the snapshot was taken; then 25 customers were registered "
                            "(appended to that leaf), each with 1-2 transactions; then the page "
                            "was zeroed. The 2 older rows are in the snapshot "
                            "(`restorable_customer_ids`); the 25 newer ones are in no source but "
                            "named by `transactions.customer_id` and by the ID index "
                            "(`unrecoverable_customer_ids`). `expected_after_repair_*` is the "
                            "intended content without those 25.")

# --------------------------------------------------------------------------
# Files SQLite refuses as a whole (the POS cannot run one lookup). Their truth
# is what the POS gets (its own open and lookup, through Python's sqlite3) and
# what the file's pages still hold, read by the generator's own page walker
# from page 1's schema rows - never by custodian.
# --------------------------------------------------------------------------

def pos_refusal(db_src, wal_src=None):
    """SQLite's error when the POS opens the file as it always does and runs
    its lookup by ID; None when that works."""
    with tempfile.TemporaryDirectory() as td:
        con = open_probe_copy(td, db_src, wal_src)
        try:
            con.execute("SELECT * FROM customers WHERE customer_id = ?",
                        ("C000000000000",)).fetchall()
            return None
        except sqlite3.DatabaseError as e:
            return str(e)
        finally:
            con.close()


def schema_from_pages(path, page_size):
    """(type, name, tbl_name, rootpage) of every row on the b-tree at page 1
    shaped as a sqlite_schema row; [] when page 1 holds none."""
    out = []
    for _, rec in table_rows_from_pages(path, 1, page_size):
        if len(rec) == 5 and all(isinstance(x, str) for x in rec[:3]) and isinstance(rec[3], int):
            out.append(tuple(rec[:4]))
    return out


def refused_page_truth(db, page_size):
    """What a page-level reading of a refused file can still name: the IDs
    of the customer rows on readable pages of the customers b-tree, and the
    IDs of the entries of the ID index (roots from page 1's schema rows).
    Every one of them is rejected by the POS, which cannot open the file."""
    roots = {name: root for _, name, _, root in schema_from_pages(db, page_size)}
    row_ids, index_ids = set(), set()
    if "customers" in roots:
        row_ids = {rec[0] for _, rec in table_rows_from_pages(db, roots["customers"], page_size)
                   if rec and isinstance(rec[0], str)}
    if PK_INDEX in roots:
        index_ids = {rec[0] for rec in index_entries_from_pages(db, roots[PK_INDEX], page_size)
                     if len(rec) == 2 and isinstance(rec[0], str)}
    return {"schema_read_from_pages": bool(roots),
            "page_readable_customer_ids": sorted(row_ids),
            "affected_customer_ids": sorted(row_ids | index_ids)}


def _refused_base(work, tag):
    db, snap = f"{work}/{tag}.db", f"{work}/{tag}.snap.db"
    build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    intended = dump_customers(con)
    con.close()
    return db, snap, intended


def fx_header_zeroed(work):
    db, snap, intended = _refused_base(work, "hz")
    with open(db, "r+b") as f:
        f.write(bytes(100))
    return dict(db=db, snap=snap, intended=intended, page_truth=True,
                damage={"kind": "header_zeroed", "object": None, "pages": [1],
                        "bytes": [0, 100]},
                description="The healthy base database with its 100-byte header zeroed (magic "
                            "string, page size, counters: all gone). Every page, page 1's "
                            "b-tree included, is intact. Stock SQLite refuses the whole file "
                            "(\"file is not a database\"); a page-level reader that finds the "
                            "page size from page 1 still reads every customer. The snapshot is "
                            "the file before the damage.")


def fx_schema_page_destroyed(work):
    db, snap, intended = _refused_base(work, "sp")
    with open(db, "r+b") as f:
        f.seek(100)
        f.write(bytes(PAGE_SIZE - 100))
    return dict(db=db, snap=snap, intended=intended, page_truth=True,
                damage={"kind": "schema_page_destroyed", "object": "sqlite_schema",
                        "pages": [1], "bytes": [100, PAGE_SIZE]},
                description="The healthy base database with page 1 zeroed after its header: "
                            "the b-tree page that holds sqlite_schema (every table's and "
                            "index's definition and root page) is gone; the header and every "
                            "other page are intact. Stock SQLite refuses the whole file; "
                            "without the schema no reader of this file alone can tell which "
                            "pages are the customer table (a snapshot's schema can). The "
                            "snapshot is the file before the damage.")


def fx_not_a_database(work):
    path = f"{work}/n.db"
    rng = random.Random(SEED * 10 + 13)
    lines = ["# POS terminal log export (not a database)"]
    clock = RECENT
    while sum(len(l) + 1 for l in lines) < 4000:
        clock += dt.timedelta(seconds=rng.randint(5, 400))
        cid = "C%012d" % rng.randint(1_000, 99_999_999_999)
        event = rng.choice(["lookup ok", "lookup ok", "lookup ok", "sale posted",
                            "ERROR unsupported customer ID", "card swipe"])
        lines.append(f"{clock:%Y-%m-%d %H:%M:%S} TERM-{rng.randint(1, 12):02d} {cid} {event}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return dict(db=path, snap=None, intended=None, damage={"kind": "not_a_database"},
                description="About 4 KB of text (a terminal log), not an SQLite file.")


def fx_empty(work):
    path = f"{work}/0.db"
    open(path, "wb").close()
    return dict(db=path, snap=None, intended=None, damage={"kind": "empty"},
                description="A 0-byte file (SQLite itself would treat it as an empty database).")


# --------------------------------------------------------------------------
# The repair ladder's other kinds of damage: auto_vacuum files and their
# pointer maps, the freelist, the header, the schema table, WITHOUT ROWID
# customer tables, and several kinds in one file.
# --------------------------------------------------------------------------

def ptrmap_pages(path, page_size):
    """Pointer-map page numbers of an auto_vacuum file (fileformat2.html,
    "Pointer Map or Ptrmap Pages"): page 2, then every (U/5 + 1)-th page."""
    with open(path, "rb") as f:
        head = f.read(100)
    usable = page_size - head[20]
    pages = header_page_count(path)
    return list(range(2, pages + 1, usable // 5 + 1))


def _stale_pk_vacuum(work, mode):
    db, snap, intended, pgno, on_page, elsewhere, _ = _stale_pk(work, auto_vacuum=mode)
    con = connect(db)
    got = con.execute("PRAGMA auto_vacuum").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    con.close()
    assert got == {"FULL": 1, "INCREMENTAL": 2}[mode], got
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "stale_page", "object": PK_INDEX, "page_type": "index_leaf",
                        "pages": [pgno], "auto_vacuum": mode.lower(),
                        "ptrmap_pages": ptrmap_pages(db, PAGE_SIZE)},
                expect_affected=set(on_page),
                new_customer_ids_on_page=sorted(on_page),
                new_customer_ids_elsewhere=sorted(elsewhere),
                description=f"As stale_pk_page, in a database made with auto_vacuum={mode} "
                            f"(pointer-map pages {ptrmap_pages(db, PAGE_SIZE)}, {free} free pages): "
                            f"a lost write on leaf page {pgno} of {PK_INDEX} hides the "
                            f"{len(on_page)} customers registered on it since. Repairing the "
                            "index frees its pages, so the pointer map must follow.")


def fx_stale_pk_page_autovacuum(work):
    return _stale_pk_vacuum(work, "FULL")


def fx_stale_pk_page_incremental(work):
    return _stale_pk_vacuum(work, "INCREMENTAL")


def _base_then_activity(work, tag, auto_vacuum=None, added=10, updated=20):
    """The base database and its snapshot, then `added` registrations and
    `updated` balance updates in the live file: (db, snap, people, intended)."""
    db, snap = f"{work}/{tag}.db", f"{work}/{tag}.snap.db"
    people = build_base(db, auto_vacuum=auto_vacuum)
    con = connect(db)
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=added)
    update_balances(con, people, updated)
    con.execute("COMMIT")
    intended = dump_customers(con)
    con.close()
    return db, snap, people, intended


def fx_ptrmap_page_zeroed(work):
    db, snap, _, intended = _base_then_activity(work, "p", auto_vacuum="FULL")
    maps = ptrmap_pages(db, PAGE_SIZE)
    assert maps == [2], maps
    pages = header_page_count(db)
    write_page(db, 2, bytes(PAGE_SIZE), PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "zeroed_page", "object": None, "page_type": "ptrmap",
                        "pages": [2], "auto_vacuum": "full"},
                expect_affected=set(),
                # every page but page 1 and the map itself has an entry on it
                truth={"ptrmap_entries_lost": pages - 2},
                description="An auto_vacuum=FULL database (10 registrations and 20 balance "
                            "updates after the snapshot) whose only pointer-map page, page 2, "
                            "was zeroed (a torn write). Every lookup still works; SQLite's "
                            "integrity_check reports each page's entry, and the next commit "
                            "that frees a page would need the map to move pages.")


def _largest_root_page(work, tag, mode, damaged):
    """The base database in auto_vacuum `mode` with activity after its
    snapshot, then the header's largest root page (offset 52, 4 bytes:
    SQLite's only sign of auto-vacuum) overwritten with `damaged(largest)`."""
    db, snap, _, intended = _base_then_activity(work, tag, auto_vacuum=mode)
    con = connect(db)
    assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == {"FULL": 1, "INCREMENTAL": 2}[mode]
    largest = con.execute("SELECT max(rootpage) FROM sqlite_schema").fetchone()[0]
    con.close()
    maps = ptrmap_pages(db, PAGE_SIZE)
    with open(db, "rb") as f:
        head = f.read(100)
    assert int.from_bytes(head[52:56], "big") == largest, (head[52:56], largest)
    with open(db, "r+b") as f:
        f.seek(52)
        f.write(damaged(largest).to_bytes(4, "big"))
    return db, snap, intended, largest, maps


def fx_largest_root_page_damaged(work):
    # the first byte of the field random, as a torn header write leaves it
    # (nightly repair property seed 16)
    db, snap, intended, largest, maps = _largest_root_page(
        work, "lr", "INCREMENTAL", lambda largest: (0x5B << 24) | largest)
    damaged = (0x5B << 24) | largest
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "header_bytes", "object": None, "page_type": "header",
                        "pages": [1], "offsets": [52], "auto_vacuum": "incremental",
                        "ptrmap_pages": maps},
                expect_affected=set(),
                truth={"largest_root_page": largest, "header_largest_root_page": damaged,
                       "auto_vacuum": "incremental"},
                description=f"An auto_vacuum=INCREMENTAL database (10 registrations and 20 "
                            f"balance updates after the snapshot) whose header byte 52, the "
                            f"first of the largest root page, was overwritten: the header says "
                            f"{damaged}, the schema's largest root page is {largest}. Every "
                            "lookup works; SQLite's integrity_check names the disagreement, and "
                            "SQLite would put the next new table's root after the header's "
                            "page.")


def fx_largest_root_page_zeroed(work):
    db, snap, intended, largest, maps = _largest_root_page(work, "lz", "FULL", lambda _: 0)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "header_bytes", "object": None, "page_type": "header",
                        "pages": [1], "offsets": [52, 53, 54, 55], "auto_vacuum": "full",
                        "ptrmap_pages": maps},
                expect_affected=set(),
                truth={"largest_root_page": largest, "header_largest_root_page": 0,
                       "auto_vacuum": "full"},
                description=f"An auto_vacuum=FULL database (10 registrations and 20 balance "
                            f"updates after the snapshot) whose header's largest root page "
                            f"(bytes 52-55, {largest}) was zeroed: SQLite now reads the file as "
                            f"one without auto-vacuum, and its pointer-map page(s) {maps} as "
                            "pages nothing uses. The pages still show the file's mode: page 2 "
                            "is a pointer map whose entries agree with the b-trees.")


def freelist_of(path, page_size):
    """(trunk pages, leaf pages) of the freelist, following the header's
    first trunk (fileformat2.html, "The Freelist")."""
    with open(path, "rb") as f:
        head = f.read(100)
    trunk = struct.unpack(">I", head[32:36])[0]
    trunks, leaves = [], []
    while trunk:
        page = read_page(path, trunk, page_size)
        trunks.append(trunk)
        nxt, count = struct.unpack(">II", page[:8])
        leaves += list(struct.unpack(f">{count}I", page[8:8 + 4 * count]))
        trunk = nxt
    return trunks, leaves


def _purged(work, tag):
    """The base database after a purge of old transactions (rowids 1..2400,
    a contiguous run of the table's leaves): its pages go to the freelist.
    Returns (db, intended, trunks, leaves, free pages by dbstat)."""
    db = f"{work}/{tag}.db"
    build_base(db)
    con = connect(db)
    con.execute("DELETE FROM transactions WHERE txn_id <= 2400")
    intended = dump_customers(con)
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    used = con.execute("SELECT count(*) FROM dbstat").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    con.close()
    trunks, leaves = freelist_of(db, PAGE_SIZE)
    assert free == pages - used == len(trunks) + len(leaves) and free >= 10, (free, pages, used)
    return db, intended, trunks, leaves, free


def _freelist_fixture(db, intended, free, damage, description):
    return dict(db=db, snap=None, intended=intended, damage=damage, expect_affected=set(),
                truth={"free_pages_after_repair": free},
                description=description + " Every row is intact (no lookup is wrong); a "
                            "write that takes a page from the freelist would corrupt the file. "
                            "No snapshot: none is needed.")


def fx_freelist_trunk_zeroed(work):
    db, intended, trunks, leaves, free = _purged(work, "fz")
    write_page(db, trunks[0], bytes(PAGE_SIZE), PAGE_SIZE)
    return _freelist_fixture(
        db, intended, free,
        {"kind": "zeroed_page", "object": None, "page_type": "freelist_trunk",
         "pages": [trunks[0]], "orphaned_leaf_pages": sorted(leaves)},
        f"Old transactions (rowids 1..2400) were deleted: {free} pages went to the "
        f"freelist (trunk page {trunks[0]}, {len(leaves)} leaves). Then the trunk page was "
        "zeroed: the freelist ends at it, its leaves belong to nothing.")


def fx_freelist_trunk_out_of_range(work):
    db, intended, trunks, leaves, free = _purged(work, "fo")
    beyond = header_page_count(db) + 500
    write_page(db, trunks[-1], struct.pack(">I", beyond), PAGE_SIZE)
    return _freelist_fixture(
        db, intended, free,
        {"kind": "freelist_pointer_out_of_range", "object": None, "page_type": "freelist_trunk",
         "pages": [trunks[-1]], "next_trunk": beyond},
        f"Old transactions (rowids 1..2400) were deleted: {free} pages went to the "
        f"freelist. Then the last trunk page ({trunks[-1]}) was made to point on to page "
        f"{beyond}, past the end of the file.")


def fx_freelist_count_wrong(work):
    db, intended, trunks, leaves, free = _purged(work, "fc")
    with open(db, "r+b") as f:
        f.seek(36)
        f.write(struct.pack(">I", free + 7))
    return _freelist_fixture(
        db, intended, free,
        {"kind": "freelist_count_wrong", "object": None, "page_type": "header",
         "pages": [1], "header_count": free + 7, "free_pages": free},
        f"Old transactions (rowids 1..2400) were deleted: {free} pages went to the "
        f"freelist. Then the header's freelist count (offset 36) was set to {free + 7}.")


def schema_roots(con):
    """{object name: root page} of every b-tree in the schema."""
    return {n: r for n, r in con.execute(
        "SELECT name, rootpage FROM sqlite_schema WHERE rootpage > 0 ORDER BY name")}


HEADER_USER_VERSION = 7
HEADER_APPLICATION_ID = 0x504F5331    # "POS1"


def fx_header_damaged(work):
    db, snap = f"{work}/hd.db", f"{work}/hd.snap.db"
    people = build_base(db)
    con = connect(db)
    con.execute(f"PRAGMA user_version = {HEADER_USER_VERSION}")
    con.execute(f"PRAGMA application_id = {HEADER_APPLICATION_ID}")
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=10)
    update_balances(con, people, 20)
    con.execute("COMMIT")
    con.execute("DELETE FROM transactions WHERE txn_id <= 1500")   # a purge: free pages
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    intended = dump_customers(con)
    con.close()
    assert free >= 10, free
    trunks, leaves = freelist_of(db, PAGE_SIZE)
    assert len(trunks) + len(leaves) == free, (trunks, leaves, free)
    with open(db, "r+b") as f:
        f.seek(16)
        f.write(bytes(84))             # every field after the magic string
    return dict(db=db, snap=snap, intended=intended, page_truth=True,
                damage={"kind": "header_fields_zeroed", "object": None, "page_type": "header",
                        "pages": [1], "byte_range": [16, 100],
                        "free_pages": sorted(trunks + leaves)},
                expect_affected=set(),
                truth={"free_pages_after_repair": free, "page_count": pages,
                       "user_version": HEADER_USER_VERSION,
                       "application_id": HEADER_APPLICATION_ID},
                description="user_version 7 and application_id 0x504F5331 were set, the snapshot "
                            "taken, then 10 registrations, 20 balance updates and a purge of old "
                            f"transactions ({free} free pages). Then bytes 16..100 of the header "
                            "(every field after the magic string: page size, reserved bytes, "
                            "payload fractions, page count, freelist, schema cookie, encoding, "
                            "user_version, ...) were zeroed. SQLite refuses the whole file "
                            "(\"file is not a database\"); every page after the header is "
                            "intact.")


# --------------------------------------------------------------------------
# Header fields SQLite accepts that do not describe the file: the reserved
# bytes (byte 20) and the page count (bytes 28..32, used only when bytes
# 92..96 equal the change counter at 24..28)
# --------------------------------------------------------------------------

HEADER_RESERVED_WRONG = 8
HEADER_LONG_NAME_CUSTOMERS = 3
RESERVED_BYTES_OFFSET = 20
PAGE_COUNT_OFFSET = 28
VERSION_VALID_FOR_OFFSET = 92


def _header_base(work, tag, long_names=0):
    """The healthy base, `long_names` customers whose name spills onto
    overflow pages, the snapshot, then 10 registrations and 20 balance
    updates. Returns (db, snap, intended, IDs of the long-name customers)."""
    db, snap = f"{work}/{tag}.db", f"{work}/{tag}.snap.db"
    people = build_base(db)
    con = connect(db)
    long_ids = [people.new_id() for _ in range(long_names)]
    con.execute("BEGIN")
    for cid in long_ids:
        con.execute(INSERT_CUSTOMER, long_name_customer(people, cid))
    con.execute("COMMIT")
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=10)
    update_balances(con, people, 20)
    con.execute("COMMIT")
    intended = dump_customers(con)
    con.close()
    return db, snap, intended, sorted(long_ids)


def write_header(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def count_not_valid_truth(db, snap, intended):
    """What the POS sees in the same file with its page count not marked
    valid (bytes 92..96 made unequal to the change counter): SQLite then
    takes the page count from the file size."""
    with tempfile.TemporaryDirectory() as td:
        copy = os.path.join(td, "copy.db")
        shutil.copyfile(db, copy)
        with open(copy, "rb") as f:
            counter = struct.unpack(">I", f.read(100)[24:28])[0]
        write_header(copy, VERSION_VALID_FOR_OFFSET, struct.pack(">I", (counter + 1) & 0xFFFFFFFF))
        p = probe_truth(copy, None, snap, intended)
        return {"pos_refusal": pos_refusal(copy), "customers_total": p["customers_total"],
                "affected_customer_ids": p["affected_customer_ids"],
                "sqlite_quick_check": cli_lines(copy, None, "quick_check")}


def fx_reserved_bytes_wrong(work):
    db, snap, intended, long_ids = _header_base(work, "rb", long_names=HEADER_LONG_NAME_CUSTOMERS)
    with open(db, "rb") as f:
        assert f.read(100)[RESERVED_BYTES_OFFSET] == 0
    write_header(db, RESERVED_BYTES_OFFSET, bytes([HEADER_RESERVED_WRONG]))
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "header_reserved_bytes", "object": None, "pages": [1],
                        "byte": RESERVED_BYTES_OFFSET, "was": 0, "now": HEADER_RESERVED_WRONG},
                expect_affected=set(long_ids),
                truth={"long_name_customer_ids": long_ids, "reserved_bytes": 0},
                description=f"The healthy base with {HEADER_LONG_NAME_CUSTOMERS} customers whose "
                            f"name runs to {LONG_NAME_CHARS} characters (overflow pages), the "
                            "snapshot, then 10 registrations and 20 balance updates. Then header "
                            f"byte 20 (reserved bytes per page) set from 0 to "
                            f"{HEADER_RESERVED_WRONG}. SQLite accepts the header and reads every "
                            "page 8 bytes short: a row whose payload spills onto overflow pages "
                            "is split at another place and its lookups fail; its writes to pages "
                            "whose cells reach into the last 8 bytes fail as malformed. The "
                            "truth is the lookups SQLite answers on this file.")


def _page_count_fixture(work, tag, count_of, what):
    """The header base with its page count (bytes 28..32) set to
    `count_of(file pages)`, still marked valid; `what` says what SQLite
    then does."""
    db, snap, intended, _ = _header_base(work, tag)
    pages = header_page_count(db)
    count = count_of(pages)
    write_header(db, PAGE_COUNT_OFFSET, struct.pack(">I", count))
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "header_page_count", "object": None, "pages": [1],
                        "bytes": [PAGE_COUNT_OFFSET, PAGE_COUNT_OFFSET + 4],
                        "header_page_count": count, "file_pages": pages},
                truth={"file_pages": pages, "header_page_count": count,
                       "if_count_not_valid": count_not_valid_truth(db, snap, intended)},
                description=f"The healthy base, the snapshot, 10 registrations and 20 balance "
                            f"updates; then the header's page count (bytes 28..32) set from "
                            f"{pages} to {count}, still marked valid (bytes 92..96 equal the "
                            f"change counter). {what(count)} `if_count_not_valid` is the same "
                            "file with bytes 92..96 changed, where SQLite takes the page count "
                            "from the file size.")


def fx_page_count_short(work):
    return _page_count_fixture(
        work, "pcs", lambda pages: pages * 85 // 100,
        lambda n: f"SQLite reads no page past page {n}: lookups whose path or rows lie there "
                  "fail. The truth is the lookups SQLite answers on this file;")


def fx_page_count_long(work):
    return _page_count_fixture(
        work, "pcl", lambda pages: pages + 50,
        lambda n: "Every page is in the file, but SQLite refuses a file shorter than its "
                  "header says (\"database disk image is malformed\"), so the POS rejects "
                  "every customer.")


def _migrate_customers(con):
    """A POS upgrade's table rebuild: customers copied into a new table (rowids
    kept), the old one dropped, the new one renamed, the indexes made again.
    Every b-tree of customers gets new pages."""
    idx = [sql for (sql,) in con.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'customers' "
        "AND sql IS NOT NULL ORDER BY rowid")]
    table_sql = con.execute("SELECT sql FROM sqlite_schema WHERE name = 'customers'").fetchone()[0]
    cols = ", ".join(CUSTOMER_COLUMNS)
    con.execute("BEGIN")
    con.execute(table_sql.replace("CREATE TABLE customers", "CREATE TABLE customers_new", 1))
    con.execute(f"INSERT INTO customers_new(rowid, {cols}) SELECT rowid, {cols} FROM customers")
    con.execute("DROP TABLE customers")
    con.execute("ALTER TABLE customers_new RENAME TO customers")
    for sql in idx:
        con.execute(sql)
    con.execute("COMMIT")


def _page1_garbage(db, seed):
    """Deterministic random bytes over page 1 after the database header: the
    schema table's b-tree page (its header, cell pointers and cells)."""
    garbage = random.Random(seed).randbytes(PAGE_SIZE - 100)
    write_page(db, 1, garbage, PAGE_SIZE, offset=100)


def fx_schema_page_garbage(work):
    db, snap = f"{work}/sg.db", f"{work}/sg.snap.db"
    people = build_base(db)
    con = connect(db)
    copy_consistent(con, db, snap)
    before = schema_roots(con)
    _migrate_customers(con)
    con.execute("BEGIN")
    add_customers(con, people, count=10)
    update_balances(con, people, 20)
    con.execute("COMMIT")
    roots = schema_roots(con)
    intended = dump_customers(con)
    assert con.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == len(before) == len(roots)
    con.close()
    moved = sorted(n for n in roots if roots[n] != before[n])
    assert [n for n in moved if n.startswith("sqlite_autoindex_customers") or n in
            ("customers", PHONE_INDEX, EMAIL_INDEX, STATUS_INDEX)] == moved and len(moved) == 6, moved
    _page1_garbage(db, SEED * 10 + 21)
    return dict(db=db, snap=snap, intended=intended, page_truth=True,
                damage={"kind": "garbage_cells", "object": "sqlite_schema", "page_type": "table_leaf",
                        "pages": [1], "byte_range": [100, PAGE_SIZE]},
                expect_affected=set(),
                truth={"schema_roots": roots, "snapshot_schema_roots": before},
                description="After the snapshot a POS upgrade rebuilt the customers table "
                            "(copied into a new table, rowids kept, the old one dropped, the new "
                            "one renamed, its indexes made again: all six b-trees of customers "
                            "moved to new pages), then 10 customers registered and 20 balances "
                            "changed. Then page 1 after the header (the schema table's only "
                            "page) was overwritten with deterministic random bytes. SQLite "
                            "cannot read the schema; every other page is intact. The snapshot "
                            "has the schema, with the old root pages.")


def fx_schema_and_root_zeroed(work):
    db, snap, _, intended = _base_then_activity(work, "sr")
    con = connect(db)
    roots = schema_roots(con)
    stats = dbstat(con, "customers")
    con.close()
    root = roots["customers"]
    leaves = sorted(r[0] for r in stats if r[1] == "leaf")
    assert [r for r in stats if r[2] == "/"][0][1] == "internal" and root not in leaves
    assert all(r[2].count("/") == 2 for r in stats if r[1] == "leaf"), "a 2-level table"
    write_page(db, 1, bytes(PAGE_SIZE - 100), PAGE_SIZE, offset=100)
    write_page(db, root, bytes(PAGE_SIZE), PAGE_SIZE)
    salvageable = sorted(r for leaf in leaves for r in table_leaf_rowids(read_page(db, leaf, PAGE_SIZE), leaf))
    assert salvageable == sorted(r[0] for r in intended)
    return dict(db=db, snap=snap, intended=intended, page_truth=True,
                damage={"kind": "zeroed_page", "object": "sqlite_schema", "page_type": "table_leaf",
                        "pages": [1, root], "byte_range": [100, PAGE_SIZE],
                        "also": {"object": "customers", "page": root, "page_type": "table_interior"},
                        "orphaned_leaf_pages": leaves},
                expect_affected=set(),
                salvageable_rowids=salvageable,
                truth={"schema_roots": roots},
                description=f"A torn write over pages 1 and {root}: page 1 after the header (the "
                            f"schema table) and page {root}, the interior root of the customers "
                            f"table, zeroed. The {len(leaves)} leaves of customers are intact but "
                            "nothing points to them: the table's root cannot be told from the "
                            "pages, so its rows must be salvaged by their record shape. The "
                            "snapshot predates 10 registrations and 20 balance updates.")


def fx_several_kinds(work):
    """Issue 8, "several kinds of damage in one file, in one run": a lost
    write on a leaf of the ID index, the nightly purge, then a torn write
    zeroing a leaf of the phone index, garbage over a customers table leaf
    and the freelist's first trunk page zeroed."""
    return _several_kinds(work, table_leaf=True)


def fx_several_index_kinds(work):
    """As several_kinds without the table leaf: every row intact, so the
    damage is mended page by page (two indexes, the freelist)."""
    return _several_kinds(work, table_leaf=False)


def fx_several_kinds_incremental(work):
    """As several_kinds in an auto_vacuum=INCREMENTAL file (pointer maps)."""
    return _several_kinds(work, table_leaf=True, auto_vacuum="INCREMENTAL")


def _several_kinds(work, table_leaf, auto_vacuum=None):
    db, snap, intended, pk_page, on_page, elsewhere, _ = _stale_pk(work, auto_vacuum)
    con = connect(db)
    con.execute("DELETE FROM transactions WHERE txn_id <= 1500")    # the purge: free pages
    assert dump_customers(con) == intended
    transactions = con.execute("SELECT count(*) FROM transactions").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    phones = middle_third(leaf_pages(con, PHONE_INDEX))
    phone_page = phones[len(phones) // 2][0]
    # a table leaf the activity since the snapshot left untouched: the
    # snapshot holds exactly its rows
    table_page = next(l[0] for l in middle_third(leaf_pages(con, "customers"))
                      if read_page(db, l[0], PAGE_SIZE) == read_page(snap, l[0], PAGE_SIZE))
    con.close()
    trunks, leaves = freelist_of(db, PAGE_SIZE)
    assert len(trunks) + len(leaves) == free >= 10, (trunks, free)
    page = read_page(db, table_page, PAGE_SIZE)
    rowids = table_leaf_rowids(page, table_page) if table_leaf else []
    _, _, content, _, _ = page_layout(page, table_page)
    by_rowid = {r[0]: r[1] for r in intended}
    assert not set(on_page) & {by_rowid[r] for r in rowids}
    phone_entries = index_leaf_entries(read_page(db, phone_page, PAGE_SIZE), phone_page)
    pages = [pk_page, phone_page, trunks[0]] + ([table_page] if table_leaf else [])
    assert len(set(pages)) == len(pages), pages
    write_page(db, phone_page, bytes(PAGE_SIZE), PAGE_SIZE)
    write_page(db, trunks[0], bytes(PAGE_SIZE), PAGE_SIZE)
    parts = [{"kind": "stale_page", "object": PK_INDEX, "page_type": "index_leaf", "page": pk_page},
             {"kind": "zeroed_page", "object": PHONE_INDEX, "page_type": "index_leaf",
              "page": phone_page}]
    extra, table_text = {}, ""
    if table_leaf:
        extra = dict(damaged_rowids=sorted(rowids),
                     garbage_attempt=garbage_over_cells(db, table_page, content, intended,
                                                        SEED * 10 + 31))
        parts.append({"kind": "garbage_cells", "object": "customers", "page_type": "table_leaf",
                      "page": table_page, "byte_range": [content, PAGE_SIZE]})
        table_text = (f"random bytes over the cell content area of customers table leaf page "
                      f"{table_page} ({len(rowids)} rows, the page identical in the snapshot), ")
    parts.append({"kind": "zeroed_page", "object": None, "page_type": "freelist_trunk",
                  "page": trunks[0]})
    damage = {"kind": "several", "object": None, "pages": sorted(pages),
              "free_pages": sorted(trunks[1:] + leaves), "parts": parts}
    mode = ""
    if auto_vacuum:
        damage["auto_vacuum"] = auto_vacuum.lower()
        mode = f"An auto_vacuum={auto_vacuum} file. "
    return dict(db=db, snap=snap, intended=intended, damage=damage,
                expect_affected=set(on_page) | {by_rowid[r] for r in rowids}
                | {by_rowid[e[-1]] for e in phone_entries},
                new_customer_ids_on_page=sorted(on_page),
                new_customer_ids_elsewhere=sorted(elsewhere),
                **extra,
                truth={"repair_restored_customer_ids": sorted(by_rowid[r] for r in rowids),
                       "repair_unrecoverable_customer_ids": [],
                       "transactions_count": transactions,
                       "phone_entries_on_zeroed_page": len(phone_entries)},
                description=f"{mode}Lost write on leaf page {pk_page} of {PK_INDEX} (as "
                            f"stale_pk_page: {len(on_page)} customers registered on it since "
                            "the snapshot are not in the ID index), then the nightly purge of "
                            f"old transactions ({free} free pages), then a torn write: leaf "
                            f"page {phone_page} of {PHONE_INDEX} ({len(phone_entries)} entries) "
                            f"zeroed, {table_text}the freelist's first trunk page {trunks[0]} "
                            "zeroed. Several kinds in one file, for one run.")


# --------------------------------------------------------------------------
# WITHOUT ROWID customer tables: the same POS schema, the customers table
# stored as its primary key's b-tree (rows named by customer_id, no rowid).
# Their truth is computed here by doing the lookups, as for the others, but
# rows are told apart by customer_id.
# --------------------------------------------------------------------------

WR_SCHEMA = SCHEMA.replace("updated_at TEXT NOT NULL);", "updated_at TEXT NOT NULL) WITHOUT ROWID;", 1)
assert WR_SCHEMA != SCHEMA


def wr_dump(con):
    """Every customer row (no rowid), sorted by customer_id."""
    return con.execute("SELECT " + ", ".join(CUSTOMER_COLUMNS)
                       + " FROM customers ORDER BY customer_id").fetchall()


def wr_sha256(rows):
    """sha256 of the rows sorted by customer_id, one json.dumps(row) a line."""
    text = "\n".join(json.dumps(list(r)) for r in sorted(rows, key=lambda r: r[0]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def wr_update_balances(con, people, count):
    ids = [r[0] for r in con.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
    for cid in people.rng.sample(ids, count):
        con.execute("UPDATE customers SET balance_cents = balance_cents + ?, updated_at = ? "
                    "WHERE customer_id = ?", (people.rng.randint(-2_000, 9_000), people.recent(), cid))


def wr_truth(db, intended, lookup_rows=None):
    """The lookups of a WITHOUT ROWID customers table, done on a read-only
    copy: for every row the scan through the primary key reads, the POS's
    lookup by ID (`SELECT customer_id FROM customers WHERE customer_id = ?`,
    SQLite's plan: the primary key) and, through every index of customers,
    `SELECT customer_id FROM customers INDEXED BY I WHERE c1 = ? [AND ...]`
    with the row's values (`IS` for NULL). A customer is affected when one of
    them errors or does not return the customer's own row.

    `lookup_rows` (where the scan stops at a damaged page of the table):
    the lookups are made for these rows instead, and each reads the row as
    the POS does: `SELECT * FROM customers WHERE customer_id = ?`, and
    through every index `SELECT * FROM customers INDEXED BY I WHERE c1 = ?
    [AND ...] AND customer_id = ?` (the customer's own entry, then its row:
    a key such as a NULL card number is shared by many customers, and one
    of them lost must not make the others' lookups count as failing)."""
    with tempfile.TemporaryDirectory() as td:
        con = open_probe_copy(td, db, None)
        try:
            names = [n for (n,) in con.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'customers' "
                "ORDER BY name")]
            indexes = {n: [r[2] for r in con.execute(f"PRAGMA index_info({qi(n)})")] for n in names}
            assert not any("customer_id" in c for c in indexes.values())
            col_pos = {c: k for k, c in enumerate(CUSTOMER_COLUMNS)}
            rows = []
            scan_error = _collect(con, "SELECT " + ", ".join(CUSTOMER_COLUMNS)
                                  + " FROM customers NOT INDEXED", (), rows.append)
            by_index = {}
            own = lookup_rows is not None
            what = "*" if own else "customer_id"
            for row in rows if lookup_rows is None else lookup_rows:
                cid = row[0]
                lookups = [("customers", f"SELECT {what} FROM customers WHERE customer_id = ?",
                            (cid,))]
                for name, cols in indexes.items():
                    values = tuple(row[col_pos[c]] for c in cols)
                    where = " AND ".join(f"{qi(c)} IS ?" if v is None else f"{qi(c)} = ?"
                                         for c, v in zip(cols, values))
                    if own:
                        where, values = where + " AND customer_id = ?", values + (cid,)
                    lookups.append((name, f"SELECT {what} FROM customers INDEXED BY {qi(name)} "
                                          f"WHERE {where}", values))
                for name, sql, params in lookups:
                    got = []
                    err = _collect(con, sql, params, lambda r: got.append(r[0]))
                    if err or cid not in got:
                        by_index.setdefault(name, set()).add(cid)
        finally:
            con.close()
    affected = set().union(*by_index.values()) if by_index else set()
    return {
        "without_rowid": True,
        "indexes": indexes,
        "customers_total": len(rows),
        "table_scan_errors": [scan_error] if scan_error else [],
        "affected_customer_ids": sorted(affected),
        "affected_by_index": {n: sorted(v) for n, v in sorted(by_index.items())},
        "lost_customer_ids": sorted({r[0] for r in intended} - {r[0] for r in rows}),
        "expected_customers_count": len(intended),
        "expected_customers_sha256": wr_sha256(intended),
    }


def fx_without_rowid_index_page(work):
    db, snap = f"{work}/wr.db", f"{work}/wr.snap.db"
    people = build_base(db, schema=WR_SCHEMA)
    con = connect(db)
    copy_consistent(con, db, snap)
    con.execute("BEGIN")
    add_customers(con, people, count=12)
    wr_update_balances(con, people, 30)
    con.execute("COMMIT")
    pgno = middle_third(leaf_pages(con, EMAIL_INDEX))[0][0]
    # an entry of a WITHOUT ROWID table's index: (email, customer_id)
    entries = index_leaf_entries(read_page(db, pgno, PAGE_SIZE), pgno)
    assert all(len(e) == 2 and isinstance(e[1], str) for e in entries)
    intended = wr_dump(con)
    con.close()
    write_page(db, pgno, bytes(PAGE_SIZE), PAGE_SIZE)
    truth = wr_truth(db, intended)
    on_page = sorted(e[1] for e in entries)
    assert set(on_page) <= set(truth["affected_customer_ids"])
    assert not truth["lost_customer_ids"] and truth["customers_total"] == len(intended)
    truth.update({
        "entries_on_damaged_page": len(entries),
        "customer_ids_on_damaged_page": on_page,
        "missing_index_entries": sorted(({"index": EMAIL_INDEX, "customer_id": e[1], "key": [e[0]]}
                                         for e in entries), key=lambda x: x["customer_id"]),
        "surplus_index_entries": [],
        "lost_rowids": [],
        "duplicate_customer_ids": [],
    })
    return dict(db=db, snap=snap, intended=intended, own_truth=truth,
                damage={"kind": "zeroed_page", "object": EMAIL_INDEX, "page_type": "index_leaf",
                        "pages": [pgno]},
                description=f"The POS schema with `customers` declared WITHOUT ROWID (rows stored "
                            f"in the primary key's b-tree, named by customer_id; an index entry "
                            f"is (key, customer_id)). Leaf page {pgno} of {EMAIL_INDEX} "
                            f"({len(entries)} entries) overwritten with zeros. The snapshot "
                            "predates the last 12 registrations and 30 balance updates.")


def fx_without_rowid_table_leaf(work):
    """Issue 8 for a WITHOUT ROWID customers table: a zeroed leaf of the
    table itself. Its rows are named by the surviving entries of the
    table's secondary indexes, which end with the primary key
    (customer_id); some were registered after the snapshot, and some of
    those bought nothing (no transaction names them)."""
    db, snap = f"{work}/wrl.db", f"{work}/wrl.snap.db"
    people = build_base(db, schema=WR_SCHEMA)
    con = connect(db)
    # the leaf to lose: a middle one, with its rows' key range
    pgno = middle_third(leaf_pages(con, "customers"))[0][0]
    keys = sorted(e[0] for e in index_leaf_entries(read_page(db, pgno, PAGE_SIZE), pgno))
    copy_consistent(con, db, snap)
    # after the snapshot: customers registered inside that key range (2 with
    # purchases, 2 without), and till activity elsewhere
    con.execute("BEGIN")
    bought = add_customers(con, people, ids=[people.new_id(inside=(keys[0], keys[-1]))
                                             for _ in range(2)])
    quiet = [people.new_id(inside=(keys[0], keys[-1])) for _ in range(2)]
    for cid in quiet:
        con.execute(INSERT_CUSTOMER, people.customer(cid=cid, recent=True))
    wr_update_balances(con, people, 30)
    con.execute("COMMIT")
    # the leaf that holds them now (the page may have split): its rows,
    # read from its bytes, are what the damage loses
    leaves = {p: [e[0] for e in index_leaf_entries(read_page(db, p, PAGE_SIZE), p)]
              for p, *_ in leaf_pages(con, "customers")}
    pgno = next(p for p, ids in sorted(leaves.items()) if quiet[0] in ids)
    lost = sorted(leaves[pgno])
    new = set(bought) | set(quiet)
    intended = wr_dump(con)
    referenced = {r[0] for r in con.execute("SELECT DISTINCT customer_id FROM transactions")}
    con.close()
    snap_con = sqlite3.connect(f"file:{snap}?mode=ro", uri=True)
    in_snapshot = {r[0]: r for r in snap_con.execute(
        "SELECT " + ", ".join(CUSTOMER_COLUMNS) + " FROM customers")}
    snap_con.close()
    restorable = sorted(c for c in lost if c in in_snapshot)
    unrecoverable = sorted(c for c in lost if c not in in_snapshot)
    assert set(unrecoverable) == new & set(lost) and set(quiet) <= set(unrecoverable), unrecoverable
    # every kind is there: old rows with and without purchases, new ones
    # with and without
    assert set(restorable) & referenced and set(restorable) - referenced
    assert set(unrecoverable) & referenced and set(unrecoverable) - referenced
    after = sorted([in_snapshot[r[0]] if r[0] in restorable else r
                    for r in intended if r[0] not in set(unrecoverable)], key=lambda r: r[0])
    write_page(db, pgno, bytes(PAGE_SIZE), PAGE_SIZE)
    truth = wr_truth(db, intended, lookup_rows=intended)
    assert set(lost) <= set(truth["affected_customer_ids"])
    col_pos = {c: k for k, c in enumerate(CUSTOMER_COLUMNS)}
    by_id = {r[0]: r for r in intended}
    truth.update({
        # the rows the page reader can read: all but the lost leaf's (SQL's
        # scan stops at the zeroed page: `table_scan_errors`)
        "customers_total": len(intended) - len(lost),
        "lost_customer_ids": lost,
        "restorable_customer_ids": restorable,
        "unrecoverable_customer_ids": unrecoverable,
        "referenced_lost_customer_ids": sorted(set(lost) & referenced),
        "expected_after_repair_count": len(after),
        "expected_after_repair_sha256": wr_sha256(after),
        # every index still holds the lost rows' entries: (key, customer_id)
        "missing_index_entries": [],
        "surplus_index_entries": sorted(
            ({"index": n, "customer_id": c, "key": [by_id[c][col_pos[k]] for k in cols]}
             for n, cols in truth["indexes"].items() for c in lost),
            key=lambda x: (x["index"], x["customer_id"])),
        "lost_rowids": [],
        "duplicate_customer_ids": [],
    })
    return dict(db=db, snap=snap, intended=intended, own_truth=truth,
                damage={"kind": "zeroed_page", "object": "customers", "page_type": "index_leaf",
                        "pages": [pgno]},
                description=f"The POS schema with `customers` declared WITHOUT ROWID. After the "
                            f"snapshot, {len(new)} customers were registered inside the key range "
                            f"of one leaf of the table ({len(bought)} with purchases, "
                            f"{len(quiet)} without) and 30 balances changed; then that leaf "
                            f"(page {pgno}, {len(lost)} rows, read from its bytes: "
                            "`lost_customer_ids`) was overwritten with zeros. The secondary "
                            "indexes still name every lost row by its primary key. "
                            "`restorable_customer_ids` are in the snapshot, "
                            "`unrecoverable_customer_ids` are not; `expected_after_repair_*` is "
                            "the intended content without the unrecoverable rows and with the "
                            "snapshot's version of the restorable ones.")


ID_STATUS_INDEX = "idx_customers_id_status"
ID_STATUS_SCHEMA = SCHEMA + f"CREATE INDEX {ID_STATUS_INDEX} ON customers(customer_id, status);\n"


def fx_composite_id_entry_rewritten(work):
    """A composite index whose key starts with the ID: one entry's ID
    rewritten to its left neighbour's, so that the POS's lookup by that
    neighbour's ID alone also returns a row of another customer, while the
    neighbour's own full key (ID, status) still finds only its own row."""
    db, snap = f"{work}/ci.db", f"{work}/ci.snap.db"
    build_base(db, schema=ID_STATUS_SCHEMA)
    con = connect(db)
    copy_consistent(con, db, snap)
    intended = dump_customers(con)
    pgno = middle_third(leaf_pages(con, ID_STATUS_INDEX))[0][0]
    con.close()
    page = bytearray(read_page(db, pgno, PAGE_SIZE))
    _, ptrs, _, _, _ = page_layout(bytes(page), pgno)
    entries = index_leaf_entries(bytes(page), pgno)
    # neighbours (A, B) in key order whose statuses keep the page in order
    # once B's entry holds A's ID: (A, sA, rA) < (A, sB, rB) needs sA < sB
    k = next(k for k in range(1, len(entries) - 1) if entries[k][1] < entries[k + 1][1])
    (a_id, a_status, a_rowid), (b_id, b_status, b_rowid) = entries[k], entries[k + 1]
    n, start = varint(page, ptrs[k + 1])
    record = bytes(page[start:start + n])
    assert record.count(b_id.encode()) == 1 and len(a_id) == len(b_id)
    at = start + record.find(b_id.encode())
    page[at:at + len(b_id)] = a_id.encode()
    write_page(db, pgno, bytes(page), PAGE_SIZE)
    return dict(db=db, snap=snap, intended=intended,
                damage={"kind": "index_entry_rewritten", "object": ID_STATUS_INDEX,
                        "page_type": "index_leaf", "pages": [pgno], "rowid": b_rowid,
                        "true_key": [b_id, b_status], "stored_key": [a_id, b_status]},
                expect_affected={a_id, b_id},
                truth={"wrong_row_customer_id": a_id, "wrong_row_customer_rowid": a_rowid,
                       "entry_lost_customer_id": b_id, "entry_lost_customer_rowid": b_rowid},
                description=f"The POS schema plus {ID_STATUS_INDEX} on (customer_id, status). "
                            f"On its leaf page {pgno}, the entry of customer {b_id} "
                            f"({b_status!r}, row {b_rowid}) had its ID rewritten to that of its "
                            f"neighbour {a_id} ({a_status!r}, row {a_rowid}). The lookup "
                            f"`customer_id = ?` through the index now returns rows {a_rowid} "
                            f"and {b_rowid} for {a_id} (row {b_rowid} is {b_id}'s), and no row "
                            f"for {b_id}; the lookup by {a_id}'s full key ({a_id}, "
                            f"{a_status!r}) still returns only its own row.")


LATIN1_EMAIL_INDEX = b"idx_customers_stra\xdfe"      # "straße" in Latin-1: not UTF-8


def rename_index_bytes(db, name, new_name):
    """Renames index `name` to the bytes `new_name` in sqlite_schema (its name
    and its CREATE INDEX text), as a client that writes Latin-1 would have
    created it; only page 1 changes."""
    con = connect(db)
    sql = con.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (name,)).fetchone()[0]
    assert sql.count(name) == 1
    new_sql = sql.encode().replace(name.encode(), new_name)
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_schema SET name = CAST(? AS TEXT), sql = CAST(? AS TEXT) "
                "WHERE name = ?", (new_name, new_sql, name))
    con.execute("PRAGMA writable_schema = OFF")
    con.close()


def fx_index_name_not_utf8(work):
    """stale_secondary_page, with the stale email index named by bytes that
    are not valid UTF-8 (in the damaged file and in the snapshot)."""
    b = fx_stale_secondary_page(work)
    shadow = f"{work}/e.utf8-name.db"
    shutil.copyfile(b["db"], shadow)
    for path in (b["db"], b["snap"]):
        rename_index_bytes(path, EMAIL_INDEX, LATIN1_EMAIL_INDEX)
    shown = LATIN1_EMAIL_INDEX.decode("utf-8", "replace")
    b["damage"]["object"] = shown
    b["damage"]["object_name_hex"] = LATIN1_EMAIL_INDEX.hex()
    b["probe_db"] = shadow
    b["probe_names"] = {EMAIL_INDEX: shown}
    b["description"] = (f"stale_secondary_page, with {EMAIL_INDEX} renamed (in the damaged file "
                        f"and in the snapshot) to the Latin-1 bytes "
                        f"{LATIN1_EMAIL_INDEX!r} (hex {LATIN1_EMAIL_INDEX.hex()}), which are not "
                        "valid UTF-8: SQLite addresses the index by those bytes. Names are given "
                        "here with U+FFFD for the byte that is not UTF-8. The lookups of the "
                        "truth were made on a copy with the index's old name (only page 1 "
                        "differs), by Python's sqlite3, which cannot write the name in SQL.")
    return b


# Table and column names a Latin-1 client wrote (not valid UTF-8), as a
# French POS might: numéro_client (the customer ID column, in both tables),
# téléphone (the column of idx_customers_phone) and opérations (the
# transactions table).
LATIN1_NAMES = [(b"customer_id", b"num\xe9ro_client"),
                (b"phone", b"t\xe9l\xe9phone"),
                (b"transactions", b"op\xe9rations")]


def rename_names_bytes(db, renames):
    """Renames tables and columns in sqlite_schema (name, tbl_name and the
    CREATE text, whole words only: `idx_customers_phone` keeps its name) to
    the given bytes, as a client that writes Latin-1 would have named them;
    only page 1 changes."""
    con = connect(db)
    con.text_factory = bytes
    rows = con.execute("SELECT rowid, name, tbl_name, sql FROM sqlite_schema").fetchall()
    con.execute("PRAGMA writable_schema = ON")
    for rowid, name, tbl, sql in rows:
        for old, new in renames:
            word = re.compile(rb"(?<![A-Za-z0-9_])" + re.escape(old) + rb"(?![A-Za-z0-9_])")
            name = new if name == old else name
            tbl = new if tbl == old else tbl
            sql = word.sub(new, sql) if sql is not None else None
        con.execute("UPDATE sqlite_schema SET name = CAST(? AS TEXT), tbl_name = CAST(? AS TEXT), "
                    "sql = CAST(? AS TEXT) WHERE rowid = ?", (name, tbl, sql, rowid))
    con.execute("PRAGMA writable_schema = OFF")
    con.close()


def fx_names_not_utf8(work):
    """several_kinds (a stale leaf of the ID index, a zeroed leaf of the
    phone index, garbage over a customers table leaf, the freelist's first
    trunk zeroed), its tables and columns named by Latin-1 bytes."""
    b = _several_kinds(work, table_leaf=True)
    return _latin1_names(b, "several_kinds")


def fx_names_not_utf8_dups(work):
    """stale_pk_page_dups (index damage only, with re-registered duplicates),
    its tables and columns named by Latin-1 bytes."""
    b = fx_stale_pk_page_dups(work)
    return _latin1_names(b, "stale_pk_page_dups")


def _latin1_names(b, like):
    """The truth is made on the files as built (UTF-8 names, which Python's
    sqlite3 can write in SQL); make_fixture renames the shipped files after
    (`rename_after`): only page 1 differs."""
    b["rename_after"] = LATIN1_NAMES
    b["names_not_utf8"] = [{"was": old.decode(), "hex": new.hex(),
                            "shown": new.decode("utf-8", "replace")}
                           for old, new in LATIN1_NAMES]
    b["description"] = (f"{like}, then (in the damaged file and in the snapshot) the customer "
                        "ID column customer_id (in both tables), the column phone and the table "
                        "transactions renamed to the Latin-1 bytes " +
                        ", ".join(f"{new!r}" for _, new in LATIN1_NAMES) +
                        " (not valid UTF-8; only page 1 changes). SQLite addresses them by "
                        "those bytes. The truth was computed on the files before the renaming, "
                        "under the old names (`names_not_utf8` maps them); integrity_check "
                        f"lines are the renamed file's. As {like}: " + b["description"])
    return b


FIXTURES = [
    ("healthy", fx_healthy),
    ("stale_pk_page", fx_stale_pk_page),
    ("stale_pk_page_dups", fx_stale_pk_page_dups),
    ("stale_secondary_page", fx_stale_secondary_page),
    ("zeroed_index_page", fx_zeroed_index_page),
    ("garbage_index_page", fx_garbage_index_page),
    ("surplus_index_entries", fx_surplus_index_entries),
    ("damaged_table_leaf", fx_damaged_table_leaf),
    ("damaged_table_interior", fx_damaged_table_interior),
    ("overflow_chain_broken", fx_overflow_chain_broken),
    ("flipped_id_byte", fx_flipped_id_byte),
    ("index_definition_removed", fx_index_definition_removed),
    ("wal_stale_index", fx_wal_stale_index),
    ("truncated", fx_truncated),
    ("lost_customer_leaf", fx_lost_customer_leaf),
    ("header_zeroed", fx_header_zeroed),
    ("schema_page_destroyed", fx_schema_page_destroyed),
    ("not_a_database", fx_not_a_database),
    ("empty", fx_empty),
    ("stale_pk_page_autovacuum", fx_stale_pk_page_autovacuum),
    ("stale_pk_page_incremental", fx_stale_pk_page_incremental),
    ("ptrmap_page_zeroed", fx_ptrmap_page_zeroed),
    ("largest_root_page_damaged", fx_largest_root_page_damaged),
    ("largest_root_page_zeroed", fx_largest_root_page_zeroed),
    ("freelist_trunk_zeroed", fx_freelist_trunk_zeroed),
    ("freelist_trunk_out_of_range", fx_freelist_trunk_out_of_range),
    ("freelist_count_wrong", fx_freelist_count_wrong),
    ("header_damaged", fx_header_damaged),
    ("schema_page_garbage", fx_schema_page_garbage),
    ("schema_and_root_zeroed", fx_schema_and_root_zeroed),
    ("several_kinds", fx_several_kinds),
    ("several_index_kinds", fx_several_index_kinds),
    ("several_kinds_incremental", fx_several_kinds_incremental),
    ("without_rowid_index_page", fx_without_rowid_index_page),
    ("without_rowid_table_leaf", fx_without_rowid_table_leaf),
    ("misplaced_table_cells", fx_misplaced_table_cells),
    ("composite_id_entry_rewritten", fx_composite_id_entry_rewritten),
    ("index_name_not_utf8", fx_index_name_not_utf8),
    ("names_not_utf8", fx_names_not_utf8),
    ("names_not_utf8_dups", fx_names_not_utf8_dups),
    ("reserved_bytes_wrong", fx_reserved_bytes_wrong),
    ("page_count_short", fx_page_count_short),
    ("page_count_long", fx_page_count_long),
]

# Fixtures whose damage must make some lookup wrong.
MUST_AFFECT = {"stale_pk_page", "stale_pk_page_dups", "stale_secondary_page", "zeroed_index_page",
               "garbage_index_page", "surplus_index_entries", "damaged_table_leaf",
               "wal_stale_index", "truncated", "overflow_chain_broken", "flipped_id_byte",
               "lost_customer_leaf",
               "stale_pk_page_autovacuum", "stale_pk_page_incremental",
               "header_zeroed", "several_kinds", "several_index_kinds",
               "several_kinds_incremental", "composite_id_entry_rewritten",
               "index_name_not_utf8", "names_not_utf8", "names_not_utf8_dups"}


# --------------------------------------------------------------------------
# Assembling one fixture
# --------------------------------------------------------------------------

def sha256_file(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def truth_json(value, depth=0):
    """JSON with one top-level field per line and one index entry per line:
    readable in a diff, without one line per customer ID."""
    pad = "  " * depth
    if isinstance(value, dict) and value and depth < 2:
        items = [f"{pad}  {json.dumps(k)}: {truth_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        return "[\n" + ",\n".join(f"{pad}  {json.dumps(x, separators=(',', ':'))}"
                                     for x in value) + "\n" + pad + "]"
    return json.dumps(value)


def rename_indexes(p, names):
    """The probe's findings with each index named as `names` maps it."""
    if not names:
        return p
    n = lambda x: names.get(x, x)
    p["indexes"] = {n(k): v for k, v in p["indexes"].items()}
    p["affected_by_index"] = {n(k): v for k, v in sorted(p["affected_by_index"].items(),
                                                         key=lambda kv: n(kv[0]))}
    p["index_scan_errors"] = {n(k): v for k, v in p["index_scan_errors"].items()}
    for e in p["missing_index_entries"] + p["surplus_index_entries"]:
        e["index"] = n(e["index"])
    return p


def make_fixture(name, builder, out):
    with tempfile.TemporaryDirectory() as work:
        b = builder(work)
        files = {"db": f"{name}.db"}
        for stale in (f"{name}.db-wal", f"{name}.db-shm", f"{name}.db-journal", f"{name}.snap.db"):
            if os.path.exists(os.path.join(out, stale)):
                os.remove(os.path.join(out, stale))
        shutil.copyfile(b["db"], os.path.join(out, files["db"]))
        if b.get("wal"):
            files["wal"] = f"{name}.db-wal"
            shutil.copyfile(b["wal"], os.path.join(out, files["wal"]))
        if b.get("snap"):
            files["snapshot"] = f"{name}.snap.db"
            shutil.copyfile(b["snap"], os.path.join(out, files["snapshot"]))
        probe_db = b.get("probe_db")
        if probe_db:
            with open(probe_db, "rb") as f:
                probe_bytes = f.read()

    db = os.path.join(out, files["db"])
    wal = os.path.join(out, files["wal"]) if "wal" in files else None
    snap = os.path.join(out, files["snapshot"]) if "snapshot" in files else None
    truth = {"fixture": name, "description": b["description"], "generator":
             "python3 tools/make_fixtures.py", "seed": SEED, "sqlite_version": sqlite3.sqlite_version,
             "files": {k: {"path": v, "bytes": os.path.getsize(os.path.join(out, v)),
                           "sha256": sha256_file(os.path.join(out, v))} for k, v in files.items()}}
    intended = b["intended"]
    if intended is not None:
        truth["page_size"] = b.get("page_size", PAGE_SIZE)
        truth["journal_mode"] = b.get("journal_mode", "delete")
    truth["damage"] = b["damage"]
    refusal = pos_refusal(db, wal) if intended is not None else None
    if refusal:
        truth["pos_refusal"] = refusal

    if b.get("page_truth"):
        pt = refused_page_truth(db, truth["page_size"])
        truth["schema_read_from_pages"] = pt["schema_read_from_pages"]
        truth["customers_total"] = len(pt["page_readable_customer_ids"])
        truth["page_readable_customer_ids"] = pt["page_readable_customer_ids"]
        truth["affected_customer_ids"] = pt["affected_customer_ids"]
        truth["expected_customers_count"] = len(intended)
        truth["expected_customers_sha256"] = canonical_sha256(intended)
        srows = snapshot_rows(snap)
        truth["snapshot_customers_count"] = len(srows)
        truth["snapshot_customers_sha256"] = canonical_sha256(srows)
        # builder-specific truth (the fixtures of the repair ladder's kinds)
        truth.update(b.get("truth", {}))
        if "salvageable_rowids" in b:
            truth["salvageable_rowids"] = b["salvageable_rowids"]
        if name in MUST_AFFECT:
            assert truth["affected_customer_ids"], f"{name}: no affected customers"
    elif b.get("own_truth"):
        # computed by the builder (WITHOUT ROWID tables: see wr_truth)
        truth.update(b["own_truth"])
        if snap:
            with tempfile.TemporaryDirectory() as td:
                c = open_probe_copy(td, snap, None)
                srows = wr_dump(c)
                c.close()
            truth["snapshot_customers_count"] = len(srows)
            truth["snapshot_customers_sha256"] = wr_sha256(srows)
    elif intended is not None:
        # (a builder may have the lookups made on a copy whose index names
        # Python's sqlite3 can write in SQL: `probe_db`, `probe_names`)
        if probe_db:
            with tempfile.TemporaryDirectory() as td:
                shadow = os.path.join(td, "probe.db")
                with open(shadow, "wb") as f:
                    f.write(probe_bytes)
                p = rename_indexes(probe_truth(shadow, wal, snap, intended), b["probe_names"])
        else:
            p = probe_truth(db, wal, snap, intended)
        if p["schema_error"]:
            truth["schema_read_error"] = p["schema_error"]
            truth["probe_pragmas"] = ["writable_schema=ON"]
        truth["indexes"] = p["indexes"]
        truth["customers_total"] = p["customers_total"]
        truth["affected_customer_ids"] = p["affected_customer_ids"]
        truth["affected_by_index"] = p["affected_by_index"]
        truth["affected_own_row_only"] = p["affected_own_row_only"]
        truth["index_only_customer_ids"] = p["index_only_customer_ids"]
        truth["duplicate_customer_ids"] = sorted(p["duplicates"])
        if b.get("duplicates_detail"):
            truth["duplicates"] = b["duplicates_detail"]
        truth["missing_index_entries"] = p["missing_index_entries"]
        truth["surplus_index_entries"] = p["surplus_index_entries"]
        truth["lost_rowids"] = p["lost_rowids"]
        truth["lost_customer_ids"] = p["lost_customer_ids"]
        truth["extra_rowids"] = p["extra_rowids"]
        truth["altered_rowids"] = p["altered_rowids"]
        truth["table_scan_errors"] = p["table_scan_errors"]
        truth["index_scan_errors"] = p["index_scan_errors"]
        for key in ("orphaned_rowids", "orphaned_customer_ids", "interior_levels", "damaged_rowids",
                    "wal_frames", "wal_commit_frames", "wal_pages", "wal_only_customer_ids",
                    "customers_without_wal", "new_customer_ids_on_page", "new_customer_ids_elsewhere",
                    "deleted_customer_ids", "email_added_on_page_ids", "email_moved_onto_page_ids",
                    "email_moved_off_page_ids", "entries_on_damaged_page", "garbage_attempt",
                    "damaged_customer_ids", "surviving_rowids", "salvageable_rowids",
                    "long_name_rowids", "restorable_customer_ids", "unrecoverable_customer_ids"):
            if key in b:
                truth[key] = b[key]
        # builder-specific truth (the fixtures of the repair ladder's kinds)
        truth.update(b.get("truth", {}))
        if "_phone_rowids" in b:
            by_rowid = {r[0]: r[1] for r in intended}
            truth["customer_ids_on_damaged_page"] = sorted({by_rowid[r] for r in b["_phone_rowids"]})
        truth["expected_customers_count"] = len(intended)
        truth["expected_customers_sha256"] = canonical_sha256(intended)
        if "after_repair" in b:
            # The builder knows what no source holds (see the fixture).
            truth["expected_after_repair_count"] = len(b["after_repair"])
            truth["expected_after_repair_sha256"] = canonical_sha256(b["after_repair"])
        elif not wal and snap and p["lost_rowids"]:
            # What a repair from the snapshot can give back: the customers
            # that something surviving still names (see `traceable`).
            tr = traceable(db, intended)
            truth["expected_after_repair_count"] = len(tr)
            truth["expected_after_repair_sha256"] = canonical_sha256(tr)
            kept = {r[0] for r in tr}
            truth["untraceable_customer_ids"] = sorted(r[1] for r in intended if r[0] not in kept)
        if snap:
            srows = snapshot_rows(snap)
            truth["snapshot_customers_count"] = len(srows)
            truth["snapshot_customers_sha256"] = canonical_sha256(srows)

        # Construction-side cross-checks of the probe.
        got = set(p["affected_customer_ids"])
        if "expect_affected" in b and got != b["expect_affected"]:
            print(f"  note: {name}: probe found {len(got)} affected, construction predicts "
                  f"{len(b['expect_affected'])} (only in probe: {sorted(got - b['expect_affected'])[:5]}, "
                  f"only predicted: {sorted(b['expect_affected'] - got)[:5]})", file=sys.stderr)
        if name == "healthy":
            assert not got and not p["missing_index_entries"] and not p["surplus_index_entries"]
            assert canonical_sha256([(r, *v) for r, v in p["rows"].items()]) == truth["expected_customers_sha256"]
        if name in MUST_AFFECT:
            assert got, f"{name}: no affected customers"
        if "expect_duplicates" in b:
            assert set(p["duplicates"]) == b["expect_duplicates"]
        if refusal:
            # The POS cannot open the file: every customer its pages still
            # name is rejected (the lookups above were made with
            # writable_schema, which the POS does not use).
            pt = refused_page_truth(db, truth["page_size"])
            truth["affected_with_writable_schema"] = truth["affected_customer_ids"]
            truth["page_readable_customer_ids"] = pt["page_readable_customer_ids"]
            truth["affected_customer_ids"] = pt["affected_customer_ids"]

    if b.get("rename_after"):
        # names a Latin-1 client wrote, given to the shipped files last: the
        # truth above was made under the old names (see _latin1_names)
        for k, v in files.items():
            if k in ("db", "snapshot"):
                rename_names_bytes(os.path.join(out, v), b["rename_after"])
        truth["names_not_utf8"] = b["names_not_utf8"]
        truth["files"] = {k: {"path": v, "bytes": os.path.getsize(os.path.join(out, v)),
                              "sha256": sha256_file(os.path.join(out, v))}
                          for k, v in files.items()}
    truth["sqlite_quick_check"] = cli_lines(db, wal, "quick_check")
    truth["sqlite_integrity_check"] = cli_lines(db, wal, "integrity_check")
    with open(os.path.join(out, f"{name}.truth.json"), "w") as f:
        f.write(truth_json(truth) + "\n")
    return truth


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------

README_HEAD = """\
# custodian test fixtures

Generated by `tools/make_fixtures.py` (Python 3 standard library, SQLite {sqlite}).
Rebuild them all with:

    python3 tools/make_fixtures.py            # or: --out DIR

Do not edit these files by hand. The generator is deterministic (fixed seed
{seed}; the random WAL salts are replaced by fixed ones and the checksums
recomputed): running it twice gives identical bytes with the same SQLite
version. Every database uses the reference schema of DESIGN.md, page_size 4096
and the rollback journal (DELETE) unless noted. The base database has
{base} customers (IDs `C` + 12 digits, inserted in shuffled order, about 3
transactions each, interleaved), some NULL phones, emails and card numbers,
statuses active/inactive/suspended/closed.

For each fixture NAME:

* `NAME.db` - the damaged database (`NAME.db-wal` too for `wal_stale_index`:
  copy both together; no `-shm` is shipped).
* `NAME.snap.db` - a healthy copy taken before the damage (the nightly backup).
  It usually predates some later activity, so it is not identical to the
  intended content.
* `NAME.truth.json` - the ground truth, computed by the generator with Python's
  sqlite3 on a read-only copy, never by custodian.

Tests must open copies, never the files here (opening the WAL fixture
read-write checkpoints and deletes its -wal).

## Fixtures

| fixture | files (bytes) | customers readable / intended | affected IDs | damage |
| --- | --- | --- | --- | --- |
"""

README_TRUTH = """
## Truth file fields

* `damage`: `kind` (`none`, `stale_page`, `stale_page_with_duplicates`,
  `zeroed_page`, `garbage_cells`, `overflow_chain_broken`,
  `index_definition_removed`, `truncated`, `header_zeroed`,
  `schema_page_destroyed`, `not_a_database`, `empty`,
  `freelist_pointer_out_of_range`, `freelist_count_wrong`, `header_fields_zeroed`,
  `index_entry_rewritten`: one entry's key changed in place, with
  `true_key`, `stored_key` and the entry's `rowid`),
  `object` (index or table damaged), `page_type` (also `ptrmap`,
  `freelist_trunk`, `header`), `auto_vacuum` (`full` / `incremental`, for
  files made in that mode), `free_pages` (`header_damaged`, `several_*`:
  the free pages no freelist names any more, once the header or the first
  trunk page was zeroed), `parts` (`several_*`, kind `several`: each
  damage with its `kind`, `object`, `page_type` and `page`),
  `pages` (page numbers, 1-based; for `truncated` the pages cut off; for
  `index_definition_removed` the orphaned pages), plus kind-specific details.
* `files`: path, size and sha256 of each shipped file.
* `indexes`: the indexes of `customers` present in the damaged file's schema
  and their columns.
* `customers_total`: rows of `customers` readable through SQL (full scan, plus
  a reverse scan and a read of every rowid when the scan fails).
* `affected_customer_ids`: sorted IDs for which some index of `customers` gives
  a wrong answer, found by doing the lookups:
  for each readable row R (rowid r, ID X) and each index I:
  `SELECT rowid FROM customers INDEXED BY I WHERE c1 = ? [AND c2 = ?]` with R's
  values (`IS` for a NULL value: the POS's own comparison is `=`); X is
  affected if the query errors, r is not returned, or - through an index whose
  key holds the customer ID - a returned rowid's row (read with
  `NOT INDEXED WHERE rowid = ?`) is absent, unreadable or holds another ID.
  (Through other indexes the other rows returned belong to other customers:
  only X's own row decides, so damage to one table page does not make every
  customer sharing a status "affected".) For an ID known only from an entry of
  `sqlite_autoindex_customers_1` (no readable row has it), it is affected if the
  lookup `customer_id = ?` through that index errors, returns nothing, or
  returns a rowid whose row is absent, unreadable or holds another ID.
  Through an index whose key starts with `customer_id` and goes on
  (`composite_id_entry_rewritten`'s `(customer_id, status)`), the POS's lookup
  by ID alone, `customer_id = ?`, is made too, for every ID a readable row or
  an entry of that index names: the ID is affected if it errors, returns
  nothing, or returns a rowid whose row is absent, unreadable or holds another
  ID. `affected_by_index` splits this by index; `index_only_customer_ids` lists the
  IDs known only from the ID index. `affected_own_row_only` is the narrower set
  that ignores the "another returned row is bad" clause (see the notes below).
* `missing_index_entries` / `surplus_index_entries`: `{index, rowid, key}` with
  the full key, comparing every readable row with a covering scan of each index
  (scans are resumed past a damaged page by range scans, so entries on the bad
  page itself are not read). Surplus entries carry `row`: `absent` (no row with
  that rowid), `unreadable` (reading the row errors) or `differs` (the row holds
  other values). Sorted by index, JSON of key, rowid.
* `duplicate_customer_ids`: IDs held by more than one readable row; `duplicates`
  gives `original_rowids` and `reregistered_rowids` per ID.
* `lost_rowids` / `lost_customer_ids`: intended rows that cannot be read through
  SQL; `extra_rowids`: readable rows not in the intended content;
  `altered_rowids`: readable rows whose values differ from the intended ones.
* `expected_customers_count` / `expected_customers_sha256`: the content a perfect
  repair gives. The sha256 is over the UTF-8 text of the rows sorted by
  (customer_id, rowid), one line per row, lines joined by `\\n` (no trailing
  newline), each line Python's `json.dumps([rowid, customer_id, card_number,
  name, phone, email, status, tier, balance_cents, created_at, updated_at])`
  with default settings (`", "` separators, `null` for NULL, all data ASCII).
  `snapshot_customers_count` / `snapshot_customers_sha256`: the same for the
  snapshot.
* `pos_refusal` (files SQLite refuses as a whole: `truncated`,
  `header_zeroed`, `schema_page_destroyed`): SQLite's error when the POS
  opens the file normally (Python's sqlite3, read-only) and runs its lookup
  `SELECT * FROM customers WHERE customer_id = ?`. The POS then rejects every
  customer, so `affected_customer_ids` is every customer the file's pages
  still name: the IDs of the rows on readable pages of the customers b-tree
  (`page_readable_customer_ids`) and of the entries of
  `sqlite_autoindex_customers_1`, both found by the generator's own page
  walker from the root pages in page 1's schema rows
  (`schema_read_from_pages`: whether page 1 holds any). For `truncated`,
  `affected_with_writable_schema` keeps the lookups made with
  `writable_schema=ON` (what a reader that forces the file open would see);
  for `header_zeroed` and `schema_page_destroyed` no SQL can read the file, so
  `customers_total` counts the rows readable from the pages.
* `sqlite_quick_check` / `sqlite_integrity_check`: the first 3 output lines of
  the stock `sqlite3` CLI on a copy (its stdout first, then its stderr).
* `table_scan_errors` / `index_scan_errors`: the SQLite errors the scans met.
  `schema_read_error` and `probe_pragmas`: set when the file could only be read
  with `PRAGMA writable_schema=ON` (see `truncated`).
* `salvageable_rowids` (`damaged_table_leaf`, `damaged_table_interior`,
  `overflow_chain_broken`): the rowids whose records survive intact somewhere
  in the file, whether or not SQL can reach them - every row on an intact
  leaf page, orphaned leaves included, whose overflow chain (if any) is
  intact. Computed by the generator from the pages as they were before it
  damaged them, not by SQL and not by custodian. A page-level salvage must
  return exactly these rows, with their intended values.
* `misplaced_table_cells`: `page_rowids` are the rowids of the damaged leaf's
  cells in cell order as the generator reads them from the page after the
  damage (`page_rowids_before`: before it); `misplaced` is the cell given a
  rowid no row has (`rowid`, the one it `was`, its `customer_id`);
  `repeated` is the cell given the rowid of the first row of leaf
  `holder_page` (whose customer is `holder_customer_id`). Every cell's
  record is whole: a repair keeps every intended row, by customer ID, with
  its values (the row under `repeated.rowid` is the holder's; the repeated
  cell's customer gets another rowid, as nothing names a customer row by
  rowid in this schema). The probe's full scan reads both rows under
  `repeated.rowid` (`customers_total` counts each once), and every customer
  is judged by its own row: the two cells' customers are missing from every
  index under the rowids their rows now have, their lookups through every
  index miss them, and neither is lost (`lost_rowids` are the rowids no row
  has any more, `lost_customer_ids` the customers whose intended row no
  rowid holds: none).
* `overflow_chain_broken`: `damaged_rowids` / `damaged_customer_ids` are the
  rows whose overflow chain was broken (whole nowhere in the file),
  `surviving_rowids` every other row (all whole), `long_name_rowids` the rows
  with a spilled name; `damage.chains` gives each broken chain's pages.
* `names_not_utf8`, `names_not_utf8_dups`: `names_not_utf8` lists the
  table and column names given Latin-1 bytes (`was`: the name the truth
  uses, `hex`: the bytes in the shipped files, `shown`: with U+FFFD for each
  byte that is not UTF-8, as custodian's reports and `--id-column` spell
  it). Every other field was computed on the files before the renaming
  (only page 1 differs), so it names the old names; `sqlite_*_check` are the
  renamed files'.
* `lost_customer_leaf`: `restorable_customer_ids` are the lost leaf's
  customers the snapshot holds (unchanged since), `unrecoverable_customer_ids`
  those registered after it (no source holds them; `transactions` and the ID
  index still name them). `expected_after_repair_*` is the intended content
  without the unrecoverable ones, from the builder's own rows.
* The repair ladder's refused files (`header_damaged`, `schema_page_garbage`,
  `schema_and_root_zeroed`) have, besides `pos_refusal` and the page-level
  truth, the builder's own facts: `free_pages_after_repair`, `page_count`,
  `user_version` and `application_id` (the snapshot's header's) for
  `header_damaged`; `schema_roots` (every b-tree's root page in the damaged
  file, from `sqlite_schema` before the damage) for the schema fixtures and
  `snapshot_schema_roots` (the snapshot's: all different for customers' six
  b-trees, moved by a migration) for `schema_page_garbage`. Nothing but the
  frame (and for `schema_and_root_zeroed` the customers root, whose leaves
  are intact) is damaged: a repair gives back every intended row.
* `ptrmap_entries_lost` (`ptrmap_page_zeroed`): the pages whose pointer-map
  entry was on the zeroed page (every page but page 1 and the map itself).
* `largest_root_page`, `header_largest_root_page`, `auto_vacuum`
  (`largest_root_page_damaged`, `largest_root_page_zeroed`): the schema's
  largest root page (`SELECT max(rootpage) FROM sqlite_schema`, which the
  header held before the damage), what the damaged header says, and the
  mode `PRAGMA auto_vacuum` gave before the damage.
* `free_pages_after_repair` (the freelist fixtures): the pages no b-tree
  uses (page count minus the pages `dbstat` counts, before the damage): the
  freelist a repair must leave.
* Fixture-specific: `new_customer_ids_on_page`, `deleted_customer_ids`,
  `orphaned_rowids`, `orphaned_customer_ids`, `damaged_rowids`, `wal_frames`,
  `wal_only_customer_ids`, `customers_without_wal`, and so on.
* WITHOUT ROWID fixtures (`without_rowid_*`, `without_rowid: true`): the
  customers table is declared WITHOUT ROWID, so rows have no rowid and are
  named by customer_id. `affected_customer_ids` comes from the same lookups
  (`SELECT customer_id FROM customers INDEXED BY I WHERE ...` with each
  readable row's values, plus the POS's own `WHERE customer_id = ?`, which
  SQLite answers through the primary key), a customer being affected when a
  lookup errors or misses its own row; `affected_by_index` splits it
  (`customers`: the lookup by ID). `missing_index_entries` are
  `{index, customer_id, key}`: the entries the generator read from the page
  before it damaged it. `expected_customers_sha256` /
  `snapshot_customers_sha256` hash the rows without a rowid: sorted by
  customer_id, one line per row, `json.dumps([customer_id, card_number,
  ...])`.

## Notes: what the probe found that one might not expect

* Why only the customer's own row decides through a non-ID index: when a row
  cannot be read (`damaged_table_leaf`, `damaged_table_interior`,
  `truncated`), a lookup through `idx_customers_status` (about 16 (status,
  tier) pairs) also returns that unreadable row's rowid for almost every
  customer. Counting that would call nearly everyone "affected" although only
  the lost rows' lookups by ID fail; `affected_own_row_only` keeps the
  narrowest reading for comparison.
* `IS ?` is not `= ?` at a damaged leaf's border. The keys stored in the
  interior cells on both sides of a damaged index leaf are readable, and
  `customer_id = ?` finds them, but `customer_id IS ?` steps on into the
  damaged leaf and errors. The probe uses `=`, as the POS does.
* A file shorter than its header's page count is refused as a whole by
  SQLite ("database disk image is malformed", even `quick_check`). The truth
  of `truncated` was probed with `PRAGMA writable_schema=ON`, under which
  SQLite trusts the file size; a tool reading it through SQL must do the same
  (or read pages itself).
* A lost write on a secondary index leaves entries that no lookup by a current
  value reaches: in `stale_secondary_page` the 3 customers whose email moved
  off the page are not affected, but their old entries are listed as surplus
  (`row: differs`).
* `quick_check` says `ok` for every stale-page fixture; only
  `integrity_check` sees them. For `surplus_index_entries` it only says
  `wrong # of entries in index ...`, without naming the entries.
* Python's sqlite3 steps one row ahead and drops a row when the following step
  fails; the generator re-reads that row with `LIMIT 1 OFFSET n`, so the rows
  counted are those a step-at-a-time reader (rusqlite) sees.
"""


def write_readme(out, truths):
    text = README_HEAD.format(sqlite=sqlite3.sqlite_version, seed=SEED, base=BASE_CUSTOMERS)
    for t in truths:
        files = ", ".join(f"`{f['path']}` ({f['bytes']:,})" for f in t["files"].values())
        if "expected_customers_count" in t:
            cust = f"{t['customers_total']} / {t['expected_customers_count']}"
            aff = str(len(t["affected_customer_ids"]))
        else:
            cust, aff = "-", "-"
        d = t["damage"]
        dmg = d["kind"] + (f" `{d['object']}`" if d.get("object") else "")
        if d.get("pages") and d["kind"] != "truncated":
            dmg += " page " + ", ".join(str(p) for p in d["pages"][:8]) + (" ..." if len(d["pages"]) > 8 else "")
        text += f"| `{t['fixture']}` | {files} | {cust} | {aff} | {dmg} |\n"
    text += "\n"
    for t in truths:
        text += f"### {t['fixture']}\n\n{t['description']}\n\n"
        if "pos_refusal" in t:
            text += (f"SQLite refuses the whole file (`{t['pos_refusal']}`): every customer is "
                     f"rejected. Customers readable from the pages "
                     f"{len(t['page_readable_customer_ids'])}, named anywhere in the pages "
                     f"(rows and ID index entries) {len(t['affected_customer_ids'])}, "
                     f"intended {t['expected_customers_count']}.\n\n")
        elif "expected_customers_count" in t:
            text += (f"Readable customers {t['customers_total']}, intended "
                     f"{t['expected_customers_count']}, affected IDs "
                     f"{len(t['affected_customer_ids'])}, missing index entries "
                     f"{len(t['missing_index_entries'])}, surplus index entries "
                     f"{len(t['surplus_index_entries'])}, lost rows {len(t['lost_rowids'])}, "
                     f"duplicate IDs {len(t['duplicate_customer_ids'])}.\n\n")
        for label, key in (("quick_check", "sqlite_quick_check"),
                           ("integrity_check", "sqlite_integrity_check")):
            lines = t.get(key)
            if lines is not None:
                text += f"`sqlite3 {t['files']['db']['path']} 'PRAGMA {label}'` (first 3 lines):\n\n"
                text += "".join(f"    {l}\n" for l in lines) or "    (no output)\n"
                text += "\n"
    text += README_TRUTH
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "fixtures"))
    ap.add_argument("--only", action="append", help="build only this fixture (repeatable)")
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    truths = []
    for name, builder in FIXTURES:
        if args.only and name not in args.only:
            continue
        print(f"building {name} ...", file=sys.stderr)
        truths.append(make_fixture(name, builder, out))
    if not args.only:
        write_readme(out, truths)

    print(f"\n{'fixture':26} {'bytes':>10} {'customers':>10} {'affected':>9}  integrity_check")
    total = 0
    for t in truths:
        size = sum(f["bytes"] for f in t["files"].values())
        total += size
        cust = str(t.get("customers_total", "-"))
        aff = str(len(t["affected_customer_ids"])) if "affected_customer_ids" in t else "-"
        ic = (t.get("sqlite_integrity_check") or ["-"])
        first = ic[0] if ic else "(none)"
        print(f"{t['fixture']:26} {size:>10,} {cust:>10} {aff:>9}  {first[:70]}")
    print(f"{'total':26} {total:>10,}")


if __name__ == "__main__":
    main()
