"""The row measure of a corpus repair (tools/corpus_repair.py): each row
upstream `.recover` gets back in table T (tests/corpus/recover_rows.json,
written by tools/recover_rows.py) put in one class, as the CI test
(tests/it/corpus_rows.rs) does, from the stock sqlite3 and the file's bytes:

* kept: the repaired T holds it (same rowid, same values);
* quarantined: custodian_quarantine holds it for T (by rowid: the row, or
  for a record read in part its bytes kept whole as cell_payload, a value
  behind a broken overflow chain included; a WITHOUT ROWID table's cell
  kept whole as cell_payload when its record decodes to .recover's values);
* header bytes: its rowid is read only from cells of T that point into
  their page's header or before the cell content area (table_cells);
* overflow broken: the repaired T holds a row with its rowid, and that
  rowid's cell spills to an overflow chain that does not deliver the
  payload (.recover fills what it cannot read with zeros; custodian keeps
  the row read in part), and custodian_quarantine does not hold its bytes;
* rebuilt: T is data a full-text index derives from its content, the
  index fails its own integrity-check in the original file, and the
  repaired T is exactly what the module's 'rebuild' makes of the content
  kept;
* not accounted: none of these (tests/corpus/unexplained_rows.json says
  what is known of each).
"""

import json
import os
import shutil
import struct
import tempfile

import corpus_repair as cr
import recover_rows as rr

def truth():
    """recover_rows.json by file, and unexplained_rows.json by (file, row)."""
    d = json.load(open(os.path.join(cr.ROOT, "tests/corpus/recover_rows.json")))
    u = json.load(open(os.path.join(cr.ROOT, "tests/corpus/unexplained_rows.json")))
    return ({e["file"]: e for e in d["files"]},
            {(r["file"], r["row"]): r["why"] for r in u["rows"]})


def _varint(b, i):
    v = 0
    for n in range(9):
        if i >= len(b):
            return None, i
        x = b[i]
        i += 1
        if n == 8:
            return (v << 8) | x, i
        v = (v << 7) | (x & 0x7F)
        if x < 0x80:
            return v, i
    return None, i


def record_literals(p, utf16=None):
    """A record's values as .recover reads them (each field its header gives
    that lies inside the payload), as SQL literals."""
    out = []
    hlen, pos = _varint(p, 0)
    if hlen is None:
        return out
    body = hlen
    while pos < min(hlen, len(p)):
        st, pos = _varint(p, pos)
        if st is None or st in (10, 11):
            break
        size = cr.serial_size(st)
        v = p[body:body + size]
        if len(v) < size:
            break
        body += size
        if st in (0, 8, 9):
            out.append({0: "NULL", 8: "0", 9: "1"}[st])
        elif st <= 6:
            out.append(str(int.from_bytes(v, "big", signed=True)))
        elif st == 7:
            out.append(repr(struct.unpack(">d", v)[0]))
        elif st % 2 == 0:
            out.append(f"X'{v.hex().upper()}'")
        else:
            s = v.decode("utf-16-le" if utf16 else "utf-16-be", errors="replace") \
                if utf16 is not None else v.decode(errors="replace")
            out.append(f"CAST(X'{s.encode().hex().upper()}' AS TEXT)")
    return out


def digest_of(literals, columns):
    """The digest .recover's row would have if it held `literals` (padded
    with NULLs to `columns`), by the stock sqlite3."""
    v = [f"quote({l})" for l in literals] + ["quote(NULL)"] * max(0, columns - len(literals))
    if not v:
        return None
    return rr.stock(":memory:", "SELECT hex(sha3(" + " || ',' || ".join(v) + "))")[0]


def broken_overflow(path, cells):
    """The rowids of `cells` (table_cells' list) whose payload spills to an
    overflow chain that does not deliver it whole: a page past the end of
    the file, a chain that ends or loops before the payload does."""
    data = open(path, "rb").read()
    ps = int.from_bytes(data[16:18], "big")
    ps = 65536 if ps == 1 else ps
    usable = ps - data[20]
    npages = len(data) // ps
    out = set()
    for pg, _i, o, kind, rowid, _fault in cells:
        # ("past end" too: a cell whose local part lies inside the usable
        # page but whose overflow pointer runs into the reserved bytes)
        if kind not in ("readable", "past end") or rowid is None:
            continue
        p = data[(pg - 1) * ps: pg * ps]
        size, j = _varint(p, o)
        _, j = _varint(p, j)
        x = usable - 35
        if size is None or size <= x:
            continue
        m = ((usable - 12) * 32 // 255) - 23
        k = m + ((size - m) % (usable - 4))
        local = k if k <= x else m
        if j + local > usable:
            continue
        nxt = int.from_bytes(p[j + local: j + local + 4], "big")
        remaining, seen = size - local, set()
        while remaining > 0:
            if nxt == 0 or nxt > npages or nxt in seen:
                out.add(rowid)
                break
            seen.add(nxt)
            remaining -= min(remaining, usable - 4)
            nxt = int.from_bytes(data[(nxt - 1) * ps: (nxt - 1) * ps + 4], "big")
    return out


def quarantined(db, table):
    try:
        lines = rr.stock(db, "SELECT original_rowid, hex(row_json) FROM custodian_quarantine "
                             f"WHERE source_table = {rr.lit(table)}")
    except RuntimeError:
        return []
    out = []
    for l in lines:
        r, j = l.split("|", 1)
        out.append((int(r), json.loads(bytes.fromhex(j))))
    return out


def rebuilt(entry, original, repaired):
    """None when T is rebuilt derived data, else why not."""
    d = entry.get("derived_of")
    if not d:
        return "not a full-text index's derived table"
    vt = cr.quote(d["virtual_table"])
    with tempfile.TemporaryDirectory() as tmp:
        orig = os.path.join(tmp, "original.db")
        shutil.copyfile(original, orig)
        try:
            rr.stock(orig, f"INSERT INTO {vt}({vt}) VALUES('integrity-check')")
            return "the original's index passes its integrity-check"
        except RuntimeError:
            pass
        copy = os.path.join(tmp, "rebuilt.db")
        shutil.copyfile(repaired, copy)
        try:
            rr.stock(copy, f"INSERT INTO {vt}({vt}) VALUES('integrity-check')")
            before = rr.read_table(copy, entry["table"])["rows"]
            rr.stock(copy, f"INSERT INTO {vt}({vt}) VALUES('rebuild')")
            after = rr.read_table(copy, entry["table"])["rows"]
        except RuntimeError as e:
            return str(e)
        return None if before == after else "the repaired table is not what 'rebuild' makes"


def measure(entry, original, repaired):
    """{table: {class: count, "lost": [row names]}} for every table of `entry`."""
    data = open(original, "rb").read()
    enc = int.from_bytes(data[56:60], "big") if len(data) >= 60 else 1
    utf16 = {2: True, 3: False}.get(enc)
    state = {}

    def is_rebuilt():
        if "why" not in state:
            state["why"] = rebuilt(entry, original, repaired)
        return state["why"] is None

    out = {}
    for name, t in entry["tables"].items():
        tally = {"kept": 0, "quarantined": 0, "header": 0, "overflow": 0, "rebuilt": 0,
                 "lost": []}
        try:
            have = {(r, d) for r, d in rr.read_table(repaired, name)["rows"]}
        except RuntimeError:
            have = set()
        q = quarantined(repaired, name)
        rc, out_, _ = cr.sqlite3(original, "PRAGMA writable_schema=1; SELECT rootpage FROM sqlite_schema "
                                           f"WHERE type = 'table' AND name = {rr.lit(name)}")
        root = out_.splitlines()[-1] if rc == 0 and out_ else ""
        cells = cr.table_cells(original, int(root)) if root.isdigit() else []
        real = {c[4] for c in cells if c[3] == "readable"}
        header = {c[4] for c in cells if c[3] in ("in header", "outside")}
        broken = broken_overflow(original, cells)
        have_ids = {r for r, _ in have}
        for rowid, digest in t["rows"]:
            if (rowid, digest) in have:
                tally["kept"] += 1
            elif any((rowid is not None and r == rowid) or
                     (rowid is None and "cell_payload" in j and
                      digest_of(record_literals(bytes.fromhex(j["cell_payload"]), utf16),
                                len(t["columns"])) == digest)
                     for r, j in q):
                tally["quarantined"] += 1
            elif rowid is not None and rowid in header and rowid not in real:
                tally["header"] += 1
            elif rowid in broken and rowid in have_ids:
                tally["overflow"] += 1
            elif name == entry["table"] and is_rebuilt():
                tally["rebuilt"] += 1
            else:
                tally["lost"].append(f"{name} rowid {rowid}" if rowid is not None
                                     else f"{name} row {digest[:12]}")
        out[name] = tally
    return out
