//! The corpus repairs measured row by row against upstream `.recover`
//! (issue 8): tests/corpus/recover_rows.json holds, for each of the 132
//! files, every row `.recover` gets back in the table T the repair is run
//! on (its rowid and `hex(sha3(quote(c1) || ',' || ...))`, computed by the
//! stock sqlite3; written by tools/recover_rows.py), and for a full-text
//! index's derived table its content table's rows too. [`account`] reads
//! the repaired table with the stock sqlite3 and puts each of those rows in
//! one class:
//!
//! * **kept**: the repaired table holds it (same rowid, same values);
//! * **quarantined**: custodian_quarantine holds it for that table (a
//!   rowid table's row by its rowid; a cell kept whole as `cell_payload`
//!   must hold exactly the bytes of a cell of the table in the original
//!   file — its local part, followed by as much of its overflow chain as
//!   the chain gives, page by page, for a record read in part — and a
//!   WITHOUT ROWID table's must decode to `.recover`'s values);
//! * **header bytes**: its rowid is read only from cells of the table that
//!   point into their own page's header or before the cell content area
//!   (read from the original file's bytes by [`leaf_cells`], not by
//!   custodian): no cell of the table holds such a row;
//! * **overflow broken**: the repaired table holds a row with its rowid,
//!   and that rowid's cell in the original spills to an overflow chain
//!   that does not deliver the payload (read from the bytes): the values
//!   differ only where the chain cannot be followed;
//! * **rebuilt**: T is derived data of a full-text index whose own
//!   integrity-check fails on the original file, and the repaired T is
//!   exactly what the module's 'rebuild' makes of the content kept (both
//!   asked of the stock sqlite3);
//! * **unexplained**: none of these. The caller pins these exactly
//!   (tests/corpus/unexplained_rows.json).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

#[derive(serde::Deserialize)]
struct Derived {
    virtual_table: String,
    #[allow(dead_code)]
    module: String,
}

#[derive(serde::Deserialize)]
struct RecTable {
    columns: Vec<String>,
    rowid: bool,
    rows: Vec<(Option<i64>, String)>,
}

#[derive(serde::Deserialize)]
pub struct RecEntry {
    pub file: String,
    table: String,
    tables: BTreeMap<String, RecTable>,
    #[serde(default)]
    derived_of: Option<Derived>,
}

#[derive(serde::Deserialize)]
struct RecoverRows {
    files: Vec<RecEntry>,
}

/// recover_rows.json, by file.
pub fn load() -> BTreeMap<String, RecEntry> {
    let path = super::support::root().join("tests/corpus/recover_rows.json");
    let j: RecoverRows = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    j.files.into_iter().map(|e| (e.file.clone(), e)).collect()
}

#[derive(serde::Deserialize)]
struct Pinned {
    file: String,
    row: String,
}

#[derive(serde::Deserialize)]
struct PinnedRows {
    rows: Vec<Pinned>,
}

/// The rows pinned as not accounted for (tests/corpus/unexplained_rows.json):
/// (file, `table rowid R` or `table row DIGEST`).
pub fn unexplained() -> BTreeSet<(String, String)> {
    let path = super::support::root().join("tests/corpus/unexplained_rows.json");
    let j: PinnedRows = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    j.rows.into_iter().map(|p| (p.file, p.row)).collect()
}

/// How `.recover`'s rows of one table fared.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub recover: usize,
    pub kept: usize,
    pub quarantined: usize,
    pub header_bytes: usize,
    /// Its cell's overflow chain is broken (read from the bytes) and the
    /// repaired table holds a row with its rowid: the values differ only
    /// where the chain cannot be followed (`.recover` fills the bytes it
    /// cannot read with zeros, custodian keeps the row read in part).
    pub overflow_broken: usize,
    pub rebuilt: usize,
    /// `table rowid R` (or `table row DIGEST` without a rowid).
    pub unexplained: Vec<String>,
}

/// The stock sqlite3's output for `sql` (bytes: column names need not be
/// UTF-8), or its error.
fn cli(db: &Path, sql: &[u8]) -> Result<Vec<u8>, String> {
    let out = Command::new("sqlite3")
        .arg("-batch")
        .arg(db)
        .arg(OsStr::from_bytes(sql))
        .env("HOME", "/nonexistent")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() || !out.stderr.is_empty() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(out.stdout)
}

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_string)
        .collect()
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn ident(name: &[u8]) -> Vec<u8> {
    let mut v = b"\"".to_vec();
    for &b in name {
        v.push(b);
        if b == b'"' {
            v.push(b'"');
        }
    }
    v.push(b'"');
    v
}

fn text_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Every row of `table` in `db` as (rowid, digest), the digest computed as
/// tools/recover_rows.py computes `.recover`'s: the values in the table's
/// column order (by position: a damaged schema may name a column in bytes
/// that are not UTF-8).
fn digests(db: &Path, table: &str, rowid: bool) -> Result<BTreeSet<(Option<i64>, String)>, String> {
    let q = format!(
        "SELECT hex(name) FROM pragma_table_info({}) ORDER BY cid",
        text_lit(table)
    );
    let names: Vec<Vec<u8>> = lines(&cli(db, q.as_bytes())?)
        .iter()
        .map(|h| unhex(h))
        .collect();
    let mut sql =
        format!("SELECT {}, hex(sha3(", if rowid { "rowid" } else { "NULL" }).into_bytes();
    if names.is_empty() {
        sql.extend_from_slice(b"''");
    }
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            sql.extend_from_slice(b" || ',' || ");
        }
        sql.extend_from_slice(b"quote(");
        sql.extend_from_slice(&ident(n));
        sql.extend_from_slice(b")");
    }
    sql.extend_from_slice(b")) FROM ");
    sql.extend_from_slice(&ident(table.as_bytes()));
    Ok(lines(&cli(db, &sql)?)
        .iter()
        .filter_map(|l| l.rsplit_once('|'))
        .map(|(r, d)| (r.parse().ok(), d.to_string()))
        .collect())
}

/// A leaf cell of a table's b-tree, read from the file's bytes.
#[derive(Debug)]
pub struct LeafCell {
    /// Its offset lies in the cell content area and its local payload
    /// ends inside the usable page.
    pub readable: bool,
    /// Its offset points at or before its own cell pointer, or between the
    /// cell pointers and the cell content area: header or free-space bytes.
    pub header_bytes: bool,
    pub rowid: Option<i64>,
    /// The local payload, where it lies inside the page.
    pub local: Option<Vec<u8>>,
    /// The bytes its overflow chain gives after the local payload, page by
    /// page in chain order, up to the payload's size or where the chain
    /// breaks.
    pub chain: Vec<u8>,
    /// The payload spills to overflow pages and their chain does not
    /// deliver it whole (a page past the end of the file, a chain that
    /// ends or loops before the payload does).
    pub overflow_broken: bool,
}

/// The bytes the overflow chain from page `first` gives towards
/// `remaining` bytes, and whether it fails to deliver them all.
fn chain_bytes(
    data: &[u8],
    ps: usize,
    usable: usize,
    mut pg: usize,
    mut remaining: usize,
) -> (Vec<u8>, bool) {
    let npages = data.len() / ps;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while remaining > 0 {
        if pg == 0 || pg > npages || !seen.insert(pg) {
            return (out, true);
        }
        let page = &data[(pg - 1) * ps..pg * ps];
        let take = remaining.min(usable - 4);
        out.extend_from_slice(&page[4..4 + take]);
        remaining -= take;
        pg = be(page, 0, 4);
    }
    (out, false)
}

fn varint(b: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for n in 0..9 {
        let x = *b.get(i)?;
        i += 1;
        if n == 8 {
            return Some(((v << 8) | u64::from(x), i));
        }
        v = (v << 7) | u64::from(x & 0x7f);
        if x & 0x80 == 0 {
            return Some((v, i));
        }
    }
    None
}

fn be(b: &[u8], at: usize, n: usize) -> usize {
    b.get(at..at + n).map_or(0, |s| {
        s.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x))
    })
}

/// The leaf cells of the b-tree rooted at `root` in the database image
/// `data` (the file format's layout, independent of custodian's reader).
pub fn leaf_cells(data: &[u8], root: u32) -> Vec<LeafCell> {
    let mut out = Vec::new();
    if data.len() < 100 {
        return out;
    }
    let ps = match be(data, 16, 2) {
        1 => 65536,
        n => n,
    };
    if ps < 512 || !ps.is_power_of_two() {
        return out;
    }
    let usable = ps - usize::from(data[20]);
    let npages = data.len() / ps;
    let (mut seen, mut todo) = (BTreeSet::new(), vec![root]);
    while let Some(pg) = todo.pop() {
        if pg == 0 || pg as usize > npages || !seen.insert(pg) || seen.len() > 100_000 {
            continue;
        }
        let p = &data[(pg as usize - 1) * ps..pg as usize * ps];
        let h = if pg == 1 { 100 } else { 0 };
        let t = p[h];
        if ![2, 5, 10, 13].contains(&t) {
            continue;
        }
        let n = be(p, h + 3, 2);
        let content = match be(p, h + 5, 2) {
            0 => 65536,
            c => c,
        };
        let interior = t == 2 || t == 5;
        let hs = if interior { 12 } else { 8 };
        if interior {
            todo.push(be(p, h + 8, 4) as u32);
        }
        for i in 0..n {
            let cp = h + hs + 2 * i;
            if cp + 2 > usable {
                break;
            }
            let o = be(p, cp, 2);
            if interior {
                if o + 4 <= usable && o > cp {
                    todo.push(be(p, o, 4) as u32);
                }
                continue;
            }
            let header_bytes = o <= cp || o < content;
            let mut readable = !header_bytes && o < usable;
            let (mut rowid, mut local, mut overflow_broken) = (None, None, false);
            let mut chain = Vec::new();
            if let Some((size, j)) = varint(p, o) {
                let mut j = j;
                if t == 13
                    && let Some((r, k)) = varint(p, j)
                {
                    rowid = Some(r as i64);
                    j = k;
                }
                let x = if t == 13 {
                    usable - 35
                } else {
                    (usable - 12) * 64 / 255 - 23
                };
                let size = size as usize;
                let n_local = if size <= x {
                    size
                } else {
                    let m = (usable - 12) * 32 / 255 - 23;
                    let k = m + (size - m) % (usable - 4);
                    if k <= x { k } else { m }
                };
                if j + n_local <= usable {
                    local = Some(p[j..j + n_local].to_vec());
                    if n_local < size {
                        let first = be(p, j + n_local, 4);
                        (chain, overflow_broken) =
                            chain_bytes(data, ps, usable, first, size - n_local);
                    }
                } else {
                    readable = false;
                }
            }
            out.push(LeafCell {
                chain,
                overflow_broken,
                readable,
                header_bytes,
                rowid,
                local,
            });
        }
    }
    out
}

/// A record's values as `.recover` reads them (every field its header
/// gives that lies inside the payload), as SQL literals.
fn record_literals(payload: &[u8], utf16: Option<bool>) -> Vec<String> {
    let mut out = Vec::new();
    let Some((hlen, mut pos)) = varint(payload, 0) else {
        return out;
    };
    let hlen = hlen as usize;
    let mut body = hlen;
    while pos < hlen.min(payload.len()) {
        let Some((st, next)) = varint(payload, pos) else {
            break;
        };
        pos = next;
        let size = match st {
            0 | 8 | 9 => 0,
            1..=4 => st as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => break,
            _ => (st as usize - 12) / 2,
        };
        let Some(v) = payload.get(body..body + size) else {
            break;
        };
        body += size;
        let int = || {
            let x = v.iter().fold(0i64, |a, &b| (a << 8) | i64::from(b));
            let bits = 8 * size as u32;
            if bits < 64 && x >> (bits - 1) & 1 == 1 {
                x - (1i64 << bits)
            } else {
                x
            }
        };
        out.push(match st {
            0 => "NULL".to_string(),
            8 => "0".to_string(),
            9 => "1".to_string(),
            1..=6 => int().to_string(),
            7 => format!("{:?}", f64::from_bits(int() as u64)),
            s if s % 2 == 0 => format!("X'{}'", hex(v)),
            _ => {
                let s = match utf16 {
                    None => String::from_utf8_lossy(v).into_owned(),
                    Some(le) => {
                        let units: Vec<u16> = v
                            .chunks_exact(2)
                            .map(|c| {
                                if le {
                                    u16::from_le_bytes([c[0], c[1]])
                                } else {
                                    u16::from_be_bytes([c[0], c[1]])
                                }
                            })
                            .collect();
                        String::from_utf16_lossy(&units)
                    }
                };
                format!("CAST(X'{}' AS TEXT)", hex(s.as_bytes()))
            }
        });
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The digest `.recover`'s row would have if it held `literals` (padded
/// with NULLs to `columns`), computed by the stock sqlite3.
fn digest_of(literals: &[String], columns: usize) -> Option<String> {
    let mut v: Vec<String> = literals.iter().map(|l| format!("quote({l})")).collect();
    while v.len() < columns {
        v.push("quote(NULL)".into());
    }
    let sql = format!("SELECT hex(sha3({}))", v.join(" || ',' || "));
    cli(Path::new(":memory:"), sql.as_bytes())
        .ok()
        .map(|o| String::from_utf8_lossy(&o).trim().to_string())
}

/// custodian_quarantine's rows for `table`: (original rowid, row_json).
fn quarantined(db: &Path, table: &str) -> Vec<(i64, serde_json::Value)> {
    let q = format!(
        "SELECT original_rowid, hex(row_json) FROM custodian_quarantine WHERE source_table = {}",
        text_lit(table)
    );
    let Ok(out) = cli(db, q.as_bytes()) else {
        return Vec::new();
    };
    lines(&out)
        .iter()
        .filter_map(|l| l.split_once('|'))
        .filter_map(|(r, j)| Some((r.parse().ok()?, serde_json::from_slice(&unhex(j)).ok()?)))
        .collect()
}

/// Why T counts as rebuilt derived data, or why not.
fn rebuilt(entry: &RecEntry, original: &Path, repaired: &Path, work: &Path) -> Result<(), String> {
    let Some(d) = &entry.derived_of else {
        return Err("not a full-text index's derived table".into());
    };
    let vt = String::from_utf8_lossy(&ident(d.virtual_table.as_bytes())).into_owned();
    let check = format!("INSERT INTO {vt}({vt}) VALUES('integrity-check')");
    let orig = work.join("rows-original.db");
    std::fs::copy(original, &orig).map_err(|e| e.to_string())?;
    if cli(&orig, check.as_bytes()).is_ok() {
        return Err("the original's full-text index passes its integrity-check".into());
    }
    cli(repaired, check.as_bytes())
        .map_err(|e| format!("the repaired index fails its integrity-check: {e}"))?;
    let copy = work.join("rows-rebuilt.db");
    std::fs::copy(repaired, &copy).map_err(|e| e.to_string())?;
    let rowid = entry.tables[&entry.table].rowid;
    let before = digests(repaired, &entry.table, rowid)?;
    cli(
        &copy,
        format!("INSERT INTO {vt}({vt}) VALUES('rebuild')").as_bytes(),
    )?;
    let after = digests(&copy, &entry.table, rowid)?;
    if before != after {
        return Err(format!(
            "the repaired {} is not what 'rebuild' makes of the content kept",
            entry.table
        ));
    }
    Ok(())
}

/// The root page of table `name` in `db` as the stock sqlite3 reads it.
fn root_of(db: &Path, name: &str) -> Option<u32> {
    let q = format!(
        "PRAGMA writable_schema = 1; SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = {}",
        text_lit(name)
    );
    let out = Command::new("sqlite3")
        .arg("-batch")
        .arg(db)
        .arg(q)
        .env("HOME", "/nonexistent")
        .output()
        .ok()?;
    lines(&out.stdout).last()?.trim().parse().ok()
}

/// Every recorded table of `entry`: how `.recover`'s rows fared in the
/// repaired file `repaired` (the original is `original`; `work` a folder
/// for copies).
pub fn account(
    entry: &RecEntry,
    original: &Path,
    repaired: &Path,
    work: &Path,
) -> Vec<(String, Tally)> {
    let bytes = std::fs::read(original).unwrap();
    let utf16 = match bytes.get(56..60).map(|b| be(b, 0, 4)) {
        Some(2) => Some(true),
        Some(3) => Some(false),
        _ => None,
    };
    let mut derived: Option<Result<(), String>> = None;
    let mut out = Vec::new();
    for (name, t) in &entry.tables {
        let mut tally = Tally {
            recover: t.rows.len(),
            ..Tally::default()
        };
        let have = digests(repaired, name, t.rowid).unwrap_or_default();
        let q = quarantined(repaired, name);
        let cells = root_of(original, name).map_or_else(Vec::new, |r| leaf_cells(&bytes, r));
        let real: BTreeSet<i64> = cells
            .iter()
            .filter(|c| c.readable)
            .filter_map(|c| c.rowid)
            .collect();
        let from_header: BTreeSet<i64> = cells
            .iter()
            .filter(|c| c.header_bytes)
            .filter_map(|c| c.rowid)
            .collect();
        let broken: BTreeSet<i64> = cells
            .iter()
            .filter(|c| c.readable && c.overflow_broken)
            .filter_map(|c| c.rowid)
            .collect();
        // a cell kept whole must be a cell of the table, byte for byte: its
        // local part, or (a record read in part) that followed by the
        // first bytes its overflow chain gives
        let cell_ok = |rowid: Option<i64>, payload: &[u8]| {
            cells.iter().any(|c| {
                c.readable
                    && (rowid.is_none() || c.rowid == rowid)
                    && c.local.as_deref().is_some_and(|local| {
                        local == payload
                            || (rowid.is_some()
                                && payload.starts_with(local)
                                && c.chain.starts_with(&payload[local.len()..]))
                    })
            })
        };
        for (rowid, digest) in &t.rows {
            if have.contains(&(*rowid, digest.clone())) {
                tally.kept += 1;
                continue;
            }
            let in_quarantine = q.iter().any(|(r, j)| {
                let raw = j.get("cell_payload").and_then(|v| v.as_str()).map(unhex);
                match (rowid, raw) {
                    (Some(id), None) => r == id,
                    (Some(id), Some(p)) => r == id && cell_ok(Some(*id), &p),
                    (None, Some(p)) => {
                        cell_ok(None, &p)
                            && digest_of(&record_literals(&p, utf16), t.columns.len()).as_ref()
                                == Some(digest)
                    }
                    (None, None) => false,
                }
            });
            if in_quarantine {
                tally.quarantined += 1;
            } else if rowid.is_some_and(|r| from_header.contains(&r) && !real.contains(&r)) {
                tally.header_bytes += 1;
            } else if rowid
                .is_some_and(|r| broken.contains(&r) && have.iter().any(|(h, _)| *h == Some(r)))
            {
                tally.overflow_broken += 1;
            } else if *name == entry.table
                && derived
                    .get_or_insert_with(|| rebuilt(entry, original, repaired, work))
                    .is_ok()
            {
                tally.rebuilt += 1;
            } else {
                tally.unexplained.push(match rowid {
                    Some(r) => format!("{name} rowid {r}"),
                    None => format!("{name} row {}", &digest[..12]),
                });
            }
        }
        out.push((name.clone(), tally));
    }
    out
}
