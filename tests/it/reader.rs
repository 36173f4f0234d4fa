//! The file-format reader against SQLite itself: databases built with
//! rusqlite must read back, row for row and index entry for index entry,
//! exactly as SQLite returns them; SQLite's corrupt test databases must never
//! make the reader panic or hang.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::Instant;

use custodian::format::FormatError;
use custodian::format::btree::{
    Damage, IndexItem, PageSource, TableItem, WalkStats, walk_index, walk_table,
};
use custodian::format::freelist::{
    self, PtrmapType, is_ptrmap_page, parse_ptrmap_entry, ptrmap_entry_location, walk_freelist,
};
use custodian::format::header::{DatabaseHeader, TextEncoding};
use custodian::format::page::BtreePage;
use custodian::format::record::{
    Collation, Record, ValueRef, compare_values, decode_text, parse_record,
};
use custodian::format::wal::{self, WalIndex};
use custodian::pager::Pager;
use rusqlite::{Connection, OpenFlags};

use crate::support::Val;

type Row = (i64, Vec<Val>);

/// A row of sqlite_schema as the reader decodes it.
#[derive(Debug, Clone)]
struct SchemaRow {
    kind: String,
    name: String,
    tbl_name: String,
    rootpage: i64,
    sql: String,
}

fn text_of(v: Option<&ValueRef>, enc: TextEncoding) -> String {
    match v {
        Some(ValueRef::Text(t)) => decode_text(t, enc).into_owned(),
        _ => String::new(),
    }
}

/// Reads sqlite_schema through the reader; `None` when it is damaged.
fn read_schema(src: &dyn PageSource) -> Option<Vec<SchemaRow>> {
    let enc = src.text_encoding();
    let mut rows = Vec::new();
    let mut damaged = false;
    let mut rec = Record::default();
    walk_table(src, 1, &mut |item| match item {
        TableItem::Row { payload, .. } => {
            if rec.parse(payload).is_err() {
                damaged = true;
                return;
            }
            let values: Vec<ValueRef> = rec.values(payload).collect();
            rows.push(SchemaRow {
                kind: text_of(values.first(), enc),
                name: text_of(values.get(1), enc),
                tbl_name: text_of(values.get(2), enc),
                rootpage: match values.get(3) {
                    Some(ValueRef::Integer(i)) => *i,
                    _ => 0,
                },
                sql: text_of(values.get(4), enc),
            });
        }
        TableItem::RowDamaged { .. } | TableItem::Damage(_) => damaged = true,
    });
    (!damaged).then_some(rows)
}

/// The reader's rows of the table rooted at `root`, and the damage it found.
fn reader_rows(src: &dyn PageSource, root: u32) -> (Vec<Row>, Vec<Damage>, WalkStats) {
    let enc = src.text_encoding();
    let mut rows = Vec::new();
    let mut damage = Vec::new();
    let mut rec = Record::default();
    let stats = walk_table(src, root, &mut |item| match item {
        TableItem::Row { rowid, payload, .. } => {
            let row = match rec.parse(payload) {
                Ok(()) => rec
                    .values(payload)
                    .map(|v| Val::from_reader(&v, enc))
                    .collect(),
                Err(_) => vec![Val::Text(b"<bad record>".to_vec())],
            };
            rows.push((rowid, row));
        }
        TableItem::RowDamaged { rowid, .. } => {
            rows.push((rowid, vec![Val::Text(b"<damaged>".to_vec())]))
        }
        TableItem::Damage(d) => damage.push(d),
    });
    (rows, damage, stats)
}

/// The reader's index entries (decoded records) and damage.
fn reader_entries(src: &dyn PageSource, root: u32) -> (Vec<Vec<Val>>, Vec<Damage>, WalkStats) {
    let enc = src.text_encoding();
    let mut entries = Vec::new();
    let mut damage = Vec::new();
    let stats = walk_index(src, root, &mut |item| match item {
        IndexItem::Entry { payload, .. } => {
            let mut values = Vec::new();
            let e = match parse_record(payload, &mut values) {
                Ok(()) => values.iter().map(|v| Val::from_reader(v, enc)).collect(),
                Err(_) => vec![Val::Text(b"<bad record>".to_vec())],
            };
            entries.push(e);
        }
        IndexItem::Damage(d) => damage.push(d),
    });
    (entries, damage, stats)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Columns of `table` as stored in its records: all but VIRTUAL generated
/// ones (`table_xinfo.hidden` 2) and hidden virtual-table columns (1).
fn stored_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_xinfo({})", quote(table)))?;
    let cols = stmt
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(6)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(cols
        .into_iter()
        .filter(|(_, hidden)| *hidden != 1 && *hidden != 2)
        .map(|(n, _)| n)
        .collect())
}

/// `SELECT rowid, <stored columns> FROM table` through SQLite.
fn sqlite_rows(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Row>> {
    let cols = stored_columns(conn, table)?;
    let list: Vec<String> = cols.iter().map(|c| quote(c)).collect();
    let sql = format!(
        "SELECT rowid{}{} FROM {}",
        if list.is_empty() { "" } else { ", " },
        list.join(", "),
        quote(table)
    );
    let mut stmt = conn.prepare(&sql)?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            let rowid: i64 = r.get(0)?;
            let vals = (1..n)
                .map(|i| r.get_ref(i).map(Val::from_sqlite))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rowid, vals))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Compares the reader's rows with SQLite's; a row the reader stores with
/// fewer values (a column added later by ALTER TABLE) must match on what it has.
fn rows_match(reader: &[Row], sqlite: &[Row]) -> Result<(), String> {
    if reader.len() != sqlite.len() {
        return Err(format!(
            "reader has {} rows, SQLite {}",
            reader.len(),
            sqlite.len()
        ));
    }
    for ((rid, rv), (sid, sv)) in reader.iter().zip(sqlite) {
        if rid != sid {
            return Err(format!("rowid {rid} from the reader, {sid} from SQLite"));
        }
        if rv.len() > sv.len() || !rv.iter().zip(sv).all(|(a, b)| a.matches(b, *rid)) {
            return Err(format!("row {rid}: reader {rv:?}, SQLite {sv:?}"));
        }
    }
    Ok(())
}

/// One column of an index, from `PRAGMA index_xinfo`.
#[derive(Debug)]
struct IndexColumn {
    /// Column name, or None for the rowid (cid -1).
    name: Option<String>,
    desc: bool,
    collation: String,
    key: bool,
}

/// The columns of `index`, or None for an expression index.
fn index_columns(conn: &Connection, index: &str) -> rusqlite::Result<Option<Vec<IndexColumn>>> {
    let mut stmt = conn.prepare(&format!("PRAGMA index_xinfo({})", quote(index)))?;
    let cols = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if cols.iter().any(|c| c.0 == -2) {
        return Ok(None);
    }
    Ok(Some(
        cols.into_iter()
            .map(|(cid, name, desc, coll, key)| IndexColumn {
                name: if cid == -1 { None } else { name },
                desc: desc != 0,
                collation: coll.unwrap_or_else(|| "BINARY".into()),
                key: key != 0,
            })
            .collect(),
    ))
}

/// The index's entries as SQLite orders them: `SELECT cols, rowid FROM t INDEXED BY i ORDER BY ...`.
fn sqlite_index_entries(
    conn: &Connection,
    table: &str,
    index: &str,
    cols: &[IndexColumn],
) -> rusqlite::Result<Vec<Vec<Val>>> {
    let name = |c: &IndexColumn| c.name.as_deref().map_or("rowid".to_string(), quote);
    let select: Vec<String> = cols.iter().map(name).collect();
    let mut order: Vec<String> = cols
        .iter()
        .filter(|c| c.key)
        .map(|c| {
            format!(
                "{} COLLATE {}{}",
                name(c),
                c.collation,
                if c.desc { " DESC" } else { "" }
            )
        })
        .collect();
    order.push("rowid".into());
    let sql = format!(
        "SELECT {} FROM {} INDEXED BY {} ORDER BY {}",
        select.join(", "),
        quote(table),
        quote(index),
        order.join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| r.get_ref(i).map(Val::from_sqlite))
                .collect::<rusqlite::Result<Vec<_>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn collation(name: &str) -> Collation {
    Collation::from_name(name).unwrap_or(Collation::Binary)
}

/// Checks that consecutive index records are in order under `compare_values`.
fn assert_index_order(src: &dyn PageSource, root: u32, cols: &[IndexColumn], what: &str) {
    let enc = src.text_encoding();
    let mut prev: Option<Vec<u8>> = None;
    let (mut a, mut b) = (Record::default(), Record::default());
    let mut out_of_order = 0;
    walk_index(src, root, &mut |item| {
        let IndexItem::Entry { payload, .. } = item else {
            return;
        };
        if let Some(p) = &prev {
            a.parse(p).unwrap();
            b.parse(payload).unwrap();
            let mut ord = Ordering::Equal;
            for (i, c) in cols.iter().enumerate() {
                let (Some(x), Some(y)) = (a.get(p, i), b.get(payload, i)) else {
                    break;
                };
                let o = compare_values(&x, &y, collation(&c.collation), enc);
                let o = if c.desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    ord = o;
                    break;
                }
            }
            if ord == Ordering::Greater {
                out_of_order += 1;
            }
        }
        prev = Some(payload.to_vec());
    });
    assert_eq!(
        out_of_order, 0,
        "{what}: entries out of order by compare_values"
    );
}

/// Checks every table and index of the database at `path` against SQLite:
/// rows and entries equal, no damage found in a healthy file.
fn check_against_sqlite(path: &Path, conn: &Connection) {
    let pager = Pager::open(path).unwrap();
    let schema = read_schema(&pager).expect("schema readable");
    let mut tables = 0;
    let mut indexes = 0;
    for obj in &schema {
        let what = format!("{} {} in {}", obj.kind, obj.name, path.display());
        if obj.rootpage <= 0 {
            continue;
        }
        let root = obj.rootpage as u32;
        if obj.kind == "table" {
            if obj.sql.to_uppercase().contains("WITHOUT ROWID") {
                let (_, damage, _) = reader_entries(&pager, root);
                assert!(damage.is_empty(), "{what}: {damage:?}");
                continue;
            }
            let (rows, damage, stats) = reader_rows(&pager, root);
            assert!(damage.is_empty(), "{what}: {damage:?}");
            assert_eq!(stats.damage, 0);
            assert_eq!(stats.cells as usize, rows.len());
            let expected = sqlite_rows(conn, &obj.name).unwrap();
            if let Err(e) = rows_match(&rows, &expected) {
                panic!("{what}: {e}");
            }
            // Healthy rows decode to exactly as many values as SQLite shows.
            for ((_, r), (_, s)) in rows.iter().zip(&expected) {
                assert_eq!(r.len(), s.len(), "{what}");
            }
            tables += 1;
        } else if obj.kind == "index" {
            let (entries, damage, _) = reader_entries(&pager, root);
            assert!(damage.is_empty(), "{what}: {damage:?}");
            let Some(cols) = index_columns(conn, &obj.name).unwrap() else {
                continue;
            };
            let expected = sqlite_index_entries(conn, &obj.tbl_name, &obj.name, &cols).unwrap();
            assert_eq!(entries.len(), expected.len(), "{what}");
            for (r, s) in entries.iter().zip(&expected) {
                let ok = r.len() == s.len() && r.iter().zip(s).all(|(a, b)| a.matches(b, i64::MIN));
                assert!(ok, "{what}: reader {r:?}, SQLite {s:?}");
            }
            assert_index_order(&pager, root, &cols, &what);
            indexes += 1;
        }
    }
    assert!(
        tables >= 2 && indexes >= 3,
        "{}: {tables} tables, {indexes} indexes",
        path.display()
    );
    check_pages(&pager, &schema);
}

/// Every b-tree page of a healthy database passes `check_layout`, every page
/// is accounted for once (trees, overflow, freelist, ptrmap), and in an
/// auto-vacuum database the pointer map agrees with the trees.
fn check_pages(pager: &Pager, schema: &[SchemaRow]) {
    let h = pager.header();
    let n = pager.page_count();
    let mut owner = vec![0u8; n as usize + 1];
    let mut roots = vec![1u32];
    roots.extend(
        schema
            .iter()
            .filter(|o| o.rootpage > 0)
            .map(|o| o.rootpage as u32),
    );
    let mut buf = Vec::new();
    for &root in &roots {
        let is_index = {
            pager.read_page(root, &mut buf).unwrap();
            let p = BtreePage::parse(&buf, root, pager.usable_size()).unwrap();
            !p.page_type().is_table()
        };
        let stats = if is_index {
            walk_index(pager, root, &mut |_| {})
        } else {
            walk_table(pager, root, &mut |_| {})
        };
        for &p in &stats.pages {
            assert_eq!(owner[p as usize], 0, "page {p} claimed twice");
            owner[p as usize] = 1;
            pager.read_page(p, &mut buf).unwrap();
            if let Ok(page) = BtreePage::parse(&buf, p, pager.usable_size()) {
                let errors = page.check_layout();
                assert!(errors.is_empty(), "page {p}: {errors:?}");
            }
            if h.is_auto_vacuum() && p != 1 {
                let (map, off) =
                    ptrmap_entry_location(p, pager.usable_size(), pager.page_size()).unwrap();
                pager.read_page(map, &mut buf).unwrap();
                let e = parse_ptrmap_entry(&buf, off).unwrap();
                if p == root {
                    assert_eq!(e.kind, PtrmapType::RootPage, "root {p}: {e:?}");
                } else {
                    assert!(
                        matches!(
                            e.kind,
                            PtrmapType::Btree | PtrmapType::Overflow1 | PtrmapType::Overflow2
                        ),
                        "page {p}: {e:?}"
                    );
                }
            }
        }
    }
    let free = walk_freelist(pager, h.first_freelist_trunk, h.freelist_count);
    assert!(free.damage.is_empty(), "{:?}", free.damage);
    assert_eq!(free.page_count(), h.freelist_count as usize);
    for &p in free.trunks.iter().chain(&free.leaves) {
        assert_eq!(owner[p as usize], 0, "free page {p} also in a tree");
        owner[p as usize] = 2;
        if h.is_auto_vacuum() {
            let (map, off) =
                ptrmap_entry_location(p, pager.usable_size(), pager.page_size()).unwrap();
            pager.read_page(map, &mut buf).unwrap();
            assert_eq!(
                parse_ptrmap_entry(&buf, off).unwrap().kind,
                PtrmapType::FreePage
            );
        }
    }
    for p in 1..=n {
        if h.is_auto_vacuum() && is_ptrmap_page(p, pager.usable_size(), pager.page_size()) {
            assert_eq!(owner[p as usize], 0, "ptrmap page {p} in use");
            owner[p as usize] = 3;
        }
    }
    let unaccounted: Vec<u32> = (1..=n).filter(|&p| owner[p as usize] == 0).collect();
    assert!(unaccounted.is_empty(), "pages in nothing: {unaccounted:?}");
}

/// How a test database is built.
#[derive(Debug, Clone, Copy)]
struct Build {
    page_size: u32,
    encoding: &'static str,
    auto_vacuum: bool,
    reserved: Option<i32>,
    rows: i64,
}

impl Default for Build {
    fn default() -> Self {
        Build {
            page_size: 4096,
            encoding: "UTF-8",
            auto_vacuum: false,
            reserved: None,
            rows: 600,
        }
    }
}

const SCHEMA: &str = "
    CREATE TABLE customers(
        id INTEGER PRIMARY KEY,
        name TEXT COLLATE NOCASE,
        email TEXT,
        note BLOB,
        balance REAL,
        code TEXT,
        extra
    );
    CREATE INDEX idx_customers_name ON customers(name);
    CREATE INDEX idx_customers_name_binary ON customers(name COLLATE BINARY, id);
    CREATE INDEX idx_customers_email ON customers(email DESC, balance);
    CREATE INDEX idx_customers_code ON customers(code COLLATE RTRIM);
    CREATE TABLE kv(k TEXT PRIMARY KEY, v);
    CREATE TABLE wr(a INTEGER, b TEXT, PRIMARY KEY(a, b)) WITHOUT ROWID;
";

/// A deterministic mix of values: NULLs, unicode, extremes, long text and blobs.
fn insert_rows(conn: &Connection, from: i64, to: i64, page_size: u32) {
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut c = tx
            .prepare("INSERT INTO customers(id, name, email, note, balance, code, extra) VALUES (?,?,?,?,?,?,?)")
            .unwrap();
        let mut kv = tx.prepare("INSERT INTO kv(k, v) VALUES (?, ?)").unwrap();
        let mut wr = tx.prepare("INSERT INTO wr(a, b) VALUES (?, ?)").unwrap();
        let names = [
            "Ann", "ann", "Bob", "Zoë", "Ōsaka", "émile", "_under", "Ā", "a", "B", "z",
        ];
        for i in from..to {
            let name: Option<String> = if i % 13 == 0 {
                None
            } else {
                Some(format!(
                    "{}{}",
                    names[(i % names.len() as i64) as usize],
                    i % 7
                ))
            };
            let email = if i % 5 == 0 {
                None
            } else {
                Some(format!("user{}@example.com", (i * 7919) % 1000))
            };
            // Some notes spill to overflow pages, a few over several pages.
            let note: Option<Vec<u8>> = match i % 17 {
                0 => Some(
                    (0..(page_size as i64 * 3 + i) as usize)
                        .map(|k| (k * 31 + i as usize) as u8)
                        .collect(),
                ),
                1 => Some(vec![0xab; (page_size as usize / 2) + (i as usize % 300)]),
                2 => None,
                _ => Some(i.to_le_bytes().to_vec()),
            };
            let balance = match i % 6 {
                0 => rusqlite::types::Value::Real(i as f64),
                1 => rusqlite::types::Value::Real(-0.5 * i as f64),
                2 => rusqlite::types::Value::Null,
                _ => rusqlite::types::Value::Real(1e300 / (i as f64 + 1.0)),
            };
            let code = format!("c{}{}", i % 40, " ".repeat((i % 3) as usize));
            let extra = match i % 7 {
                0 => rusqlite::types::Value::Integer(i64::MIN + i),
                1 => rusqlite::types::Value::Integer(i64::MAX - i),
                2 => rusqlite::types::Value::Integer(i % 2),
                3 => rusqlite::types::Value::Text("x".repeat(page_size as usize * 2 + i as usize)),
                4 => rusqlite::types::Value::Integer(-(1 << 40) - i),
                5 => rusqlite::types::Value::Real(f64::NEG_INFINITY),
                _ => rusqlite::types::Value::Integer(70_000 + i),
            };
            c.execute(rusqlite::params![
                i * 3 - 100,
                name,
                email,
                note,
                balance,
                code,
                extra
            ])
            .unwrap();
            // Long keys make the kv index spill to overflow pages too.
            let key = if i % 23 == 0 {
                format!("key-{i}-{}", "k".repeat(page_size as usize))
            } else {
                format!("key-{i}")
            };
            kv.execute(rusqlite::params![key, i]).unwrap();
            wr.execute(rusqlite::params![i % 50, format!("w{i}")])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn build_db(path: &Path, b: Build) -> Connection {
    let conn = Connection::open(path).unwrap();
    if let Some(mut n) = b.reserved {
        conn.file_control(Some("main"), rusqlite::FileControl::ReserveBytes(&mut n))
            .unwrap();
    }
    conn.execute_batch(&format!(
        "PRAGMA page_size={}; PRAGMA encoding='{}'; PRAGMA auto_vacuum={};",
        b.page_size,
        b.encoding,
        if b.auto_vacuum { "FULL" } else { "NONE" }
    ))
    .unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    insert_rows(&conn, 0, b.rows, b.page_size);
    // Deletes leave freeblocks, fragments and (without auto-vacuum) free pages.
    conn.execute_batch(
        "DELETE FROM customers WHERE id % 11 = 0 OR id % 17 = 3;
         DELETE FROM kv WHERE v % 9 = 4;
         UPDATE customers SET name = name || ' jr' WHERE id % 4 = 1;",
    )
    .unwrap();
    conn
}

#[test]
fn databases_read_back_exactly_as_sqlite_returns_them() {
    let dir = tempfile::tempdir().unwrap();
    let builds = [
        Build {
            page_size: 512,
            rows: 400,
            ..Build::default()
        },
        Build {
            page_size: 1024,
            encoding: "UTF-16le",
            ..Build::default()
        },
        Build::default(),
        Build {
            encoding: "UTF-16be",
            auto_vacuum: true,
            rows: 300,
            ..Build::default()
        },
        Build {
            page_size: 1024,
            auto_vacuum: true,
            ..Build::default()
        },
        Build {
            page_size: 65536,
            rows: 150,
            ..Build::default()
        },
        Build {
            page_size: 1024,
            reserved: Some(40),
            rows: 300,
            ..Build::default()
        },
    ];
    for (i, b) in builds.into_iter().enumerate() {
        let path = dir.path().join(format!("db{i}.sqlite"));
        let conn = build_db(&path, b);
        let pager = Pager::open(&path).unwrap();
        let h = pager.header();
        assert_eq!(h.page_size, b.page_size, "{b:?}");
        assert_eq!(h.is_auto_vacuum(), b.auto_vacuum, "{b:?}");
        if let Some(r) = b.reserved {
            assert_eq!(i32::from(h.reserved_bytes), r, "{b:?}");
        }
        let enc = match b.encoding {
            "UTF-8" => TextEncoding::Utf8,
            "UTF-16le" => TextEncoding::Utf16le,
            _ => TextEncoding::Utf16be,
        };
        assert_eq!(h.text_encoding, enc);
        assert!(h.page_count_is_valid());
        assert_eq!(
            u64::from(h.page_count) * u64::from(h.page_size),
            pager.file_len()
        );
        assert!(pager.wal().is_none() && pager.wal_error().is_none());
        check_against_sqlite(&path, &conn);
    }
}

#[test]
fn the_wal_is_read_as_sqlite_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.sqlite");
    let conn = build_db(
        &path,
        Build {
            page_size: 1024,
            rows: 200,
            ..Build::default()
        },
    );
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
        .unwrap();
    insert_rows(&conn, 200, 400, 1024);
    conn.execute_batch("DELETE FROM customers WHERE id % 7 = 2;")
        .unwrap();

    // Everything since the switch to WAL is only in the -wal file.
    let pager = Pager::open(&path).unwrap();
    let wal = pager.wal().expect("wal indexed");
    assert!(pager.wal_error().is_none());
    assert!(wal.max_frame > 0 && wal.max_frame == wal.frames_valid);
    assert_eq!(wal.frames_total, wal.max_frame);
    assert_eq!(pager.page_count(), wal.db_pages);
    assert!(pager.page_count() > pager.main_header().page_count);
    assert_eq!(pager.page_count(), pager.header().page_count);
    assert!(pager.header().file_change_counter > pager.main_header().file_change_counter);
    check_against_sqlite(&path, &conn);
    // The same checksums over the file read whole.
    let whole = WalIndex::build(&std::fs::read(wal_path(&path)).unwrap()).unwrap();
    assert_eq!(&whole, wal);

    // Checkpoint and restart the log: new frames overwrite the start of the
    // WAL with new salts, and the old frames after them must be ignored.
    let frames_before = wal.frames_total;
    conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch("UPDATE customers SET email = 'restarted' WHERE id % 10 = 1;")
        .unwrap();
    let pager = Pager::open(&path).unwrap();
    let wal = pager.wal().unwrap();
    assert_eq!(wal.frames_total, frames_before, "the file did not shrink");
    assert!(wal.frames_valid < wal.frames_total, "{wal:?}");
    assert!(wal.max_frame > 0);
    check_against_sqlite(&path, &conn);

    // A torn last frame hides its transaction: copy the database and its WAL,
    // cut the copy's WAL inside the last commit frame, and compare with what
    // SQLite recovers from the same two files.
    conn.execute_batch("UPDATE customers SET code = 'second' WHERE id % 10 = 2;")
        .unwrap();
    let pager = Pager::open(&path).unwrap();
    let wal = pager.wal().unwrap().clone();
    let cut_dir = tempfile::tempdir().unwrap();
    let copy = cut_dir.path().join("cut.sqlite");
    std::fs::copy(&path, &copy).unwrap();
    let wal_bytes = std::fs::read(wal_path(&path)).unwrap();
    let cut_at = wal::frame_offset(wal.max_frame, wal.page_size) as usize + 100;
    std::fs::write(wal_path(&copy), &wal_bytes[..cut_at]).unwrap();
    let cut = Pager::open(&copy).unwrap();
    let cut_wal = cut.wal().unwrap();
    assert!(
        cut_wal.max_frame > 0 && cut_wal.max_frame < wal.max_frame,
        "{cut_wal:?}"
    );
    assert_eq!(cut_wal.frames_total, wal.max_frame - 1);
    let recovered = Connection::open(&copy).unwrap();
    let codes: i64 = recovered
        .query_row(
            "SELECT count(*) FROM customers WHERE code = 'second'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(codes, 0, "SQLite also dropped the torn transaction");
    check_against_sqlite(&copy, &recovered);
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

#[test]
fn the_pager_refuses_what_is_not_a_database_and_reports_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    std::fs::write(&path, b"").unwrap();
    let e = format!("{:#}", Pager::open(&path).unwrap_err());
    assert!(e.contains("not a SQLite database"), "{e}");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let e = format!("{:#}", Pager::open(&path).unwrap_err());
    assert!(
        e.contains("not a SQLite database") && e.contains("magic"),
        "{e}"
    );
    assert!(Pager::open(&dir.path().join("missing")).is_err());
    assert!(!dir.path().join("missing").exists(), "open never creates");

    // Cut a healthy database short: the header still claims every page.
    let path = dir.path().join("cut.sqlite");
    drop(build_db(&path, Build::default()));
    let bytes = std::fs::read(&path).unwrap();
    let h = DatabaseHeader::parse(&bytes).unwrap();
    let pager = Pager::open(&path).unwrap();
    let schema = read_schema(&pager).unwrap();
    let trees_before: Vec<(u32, bool, Vec<u32>)> = schema
        .iter()
        .filter(|o| o.rootpage > 0)
        .map(|o| {
            let root = o.rootpage as u32;
            let table = o.kind == "table" && !o.sql.contains("WITHOUT ROWID");
            let (_, damage, stats) = if table {
                reader_rows(&pager, root)
            } else {
                let (_, d, s) = reader_entries(&pager, root);
                (Vec::new(), d, s)
            };
            assert!(damage.is_empty());
            (root, table, stats.pages)
        })
        .collect();
    drop(pager);

    std::fs::write(&path, &bytes[..bytes.len() - 4096 - 100]).unwrap();
    let pager = Pager::open(&path).unwrap();
    assert_eq!(pager.page_count(), h.page_count);
    let mut buf = Vec::new();
    assert!(matches!(
        pager.read_page(h.page_count, &mut buf),
        Err(FormatError::Truncated { .. })
    ));
    assert!(matches!(
        pager.read_page(h.page_count - 1, &mut buf),
        Err(FormatError::Truncated { .. })
    ));
    assert!(pager.read_page(h.page_count - 2, &mut buf).is_ok());
    assert!(pager.read_page(0, &mut buf).is_err());
    // Exactly the trees that owned a cut page report damage, naming the page.
    let cut = [h.page_count - 1, h.page_count];
    let mut damaged_trees = 0;
    for (root, table, pages) in &trees_before {
        let damage = if *table {
            reader_rows(&pager, *root).1
        } else {
            reader_entries(&pager, *root).1
        };
        let owned: Vec<u32> = pages.iter().copied().filter(|p| cut.contains(p)).collect();
        if owned.is_empty() {
            assert!(damage.is_empty(), "tree {root}: {damage:?}");
            continue;
        }
        damaged_trees += 1;
        // The walk stops at the first missing page of a chain, so at least one is named.
        assert!(
            owned.iter().any(|p| damage
                .iter()
                .any(|d| d.pgno == *p || d.detail.contains(&format!("page {p} ")))),
            "tree {root}: none of {owned:?} reported in {damage:?}"
        );
    }
    let free = walk_freelist(&pager, h.first_freelist_trunk, h.freelist_count);
    let free_cut = cut
        .iter()
        .filter(|p| free.leaves.contains(p) || free.trunks.contains(p))
        .count();
    assert!(damaged_trees > 0 || free_cut > 0);
}

#[test]
fn two_threads_share_one_pager() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.sqlite");
    drop(build_db(&path, Build::default()));
    let pager = Pager::open(&path).unwrap();
    let schema = read_schema(&pager).unwrap();
    let roots: Vec<u32> = schema
        .iter()
        .filter(|o| o.kind == "table" && o.rootpage > 0 && !o.sql.contains("WITHOUT"))
        .map(|o| o.rootpage as u32)
        .collect();
    let (a, b) = std::thread::scope(|s| {
        let t = s.spawn(|| reader_rows(&pager, roots[0]).0.len());
        let u = s.spawn(|| reader_rows(&pager, roots[1]).0.len());
        (t.join().unwrap(), u.join().unwrap())
    });
    assert_eq!(a, reader_rows(&pager, roots[0]).0.len());
    assert_eq!(b, reader_rows(&pager, roots[1]).0.len());
}

/// A small deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Walks everything reachable in `path` the way a checker would.
fn walk_everything(path: &Path) {
    let Ok(pager) = Pager::open(path) else {
        return;
    };
    let h = pager.header().clone();
    let _ = walk_freelist(&pager, h.first_freelist_trunk, h.freelist_count);
    let roots: Vec<u32> = match read_schema(&pager) {
        Some(s) => s
            .iter()
            .filter(|o| o.rootpage > 0)
            .map(|o| o.rootpage as u32)
            .collect(),
        None => (1..=pager.page_count().min(64)).collect(),
    };
    for root in roots {
        let _ = reader_rows(&pager, root);
        let _ = reader_entries(&pager, root);
    }
}

#[test]
fn random_corruption_never_panics_or_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("healthy.sqlite");
    let conn = build_db(
        &path,
        Build {
            page_size: 512,
            rows: 120,
            ..Build::default()
        },
    );
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
        .unwrap();
    insert_rows(&conn, 120, 160, 512);
    let db = std::fs::read(&path).unwrap();
    let wal = std::fs::read(wal_path(&path)).unwrap();
    drop(conn);

    let bad = dir.path().join("bad.sqlite");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    for round in 0..300 {
        let (mut d, mut w) = (db.clone(), wal.clone());
        for _ in 0..1 + rng.below(8) {
            // Mostly hit page headers and cell pointers, where damage matters most.
            let target = if round % 3 == 0 { &mut w } else { &mut d };
            let page = rng.below(target.len() / 512);
            let at = page * 512
                + if rng.below(2) == 0 {
                    rng.below(24)
                } else {
                    rng.below(512)
                };
            if let Some(b) = target.get_mut(at) {
                *b = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    _ => rng.next() as u8,
                };
            }
        }
        if round % 7 == 0 {
            let keep = d.len() - rng.below(d.len() / 2);
            d.truncate(keep);
        }
        std::fs::write(&bad, &d).unwrap();
        std::fs::write(wal_path(&bad), &w).unwrap();
        walk_everything(&bad);
        let _ = WalIndex::build(&w);
    }
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}

/// Walks everything in one corpus file; returns (tables compared equal, tables SQLite read).
fn walk_corpus_file(path: &Path, scratch: &Path) -> (usize, usize) {
    let Ok(pager) = Pager::open(path) else {
        return (0, 0);
    };
    let file_pages = pager.file_len().div_ceil(u64::from(pager.page_size())) as u32;
    let h = pager.header().clone();
    let _ = walk_freelist(&pager, h.first_freelist_trunk, h.freelist_count);
    let schema = read_schema(&pager);
    let roots: Vec<u32> = match &schema {
        Some(s) => s
            .iter()
            .filter(|o| o.rootpage > 0)
            .map(|o| o.rootpage as u32)
            .chain([1])
            .collect(),
        None => (1..=pager.page_count().min(file_pages)).collect(),
    };
    for &root in &roots {
        let _ = reader_rows(&pager, root);
        let _ = reader_entries(&pager, root);
    }
    let mut buf = Vec::new();
    for p in 1..=pager.page_count().min(file_pages) {
        if pager.read_page(p, &mut buf).is_ok()
            && let Ok(page) = BtreePage::parse(&buf, p, pager.usable_size())
        {
            let _ = page.check_layout();
            for i in 0..usize::from(page.cell_count()) {
                if let Ok(c) = page.cell(i)
                    && let Some(pl) = c.payload()
                {
                    let _ = parse_record(pl.local, &mut Vec::new());
                }
            }
        }
        if h.is_auto_vacuum()
            && let Some((map, off)) =
                ptrmap_entry_location(p, pager.usable_size(), pager.page_size())
            && pager.read_page(map, &mut buf).is_ok()
        {
            let _ = parse_ptrmap_entry(&buf, off);
        }
        if pager.read_page(p, &mut buf).is_ok() {
            let _ = freelist::TrunkPage::parse(&buf, pager.usable_size());
        }
    }

    // Compare with SQLite, on a private copy (SQLite may want to write a -shm or journal).
    let Some(schema) = schema else {
        return (0, 0);
    };
    let copy = scratch.join(path.file_name().unwrap());
    std::fs::copy(path, &copy).unwrap();
    let Ok(conn) = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return (0, 0);
    };
    let (mut equal, mut read) = (0, 0);
    for obj in schema
        .iter()
        .filter(|o| o.kind == "table" && o.rootpage > 0)
    {
        if obj.sql.to_uppercase().contains("WITHOUT ROWID") {
            continue;
        }
        let Ok(expected) = sqlite_rows(&conn, &obj.name) else {
            continue;
        };
        read += 1;
        let (rows, damage, _) = reader_rows(&pager, obj.rootpage as u32);
        let what = format!("{} table {}", path.display(), obj.name);
        if damage.is_empty() {
            // Both find the tree sound: the rows must be identical.
            if let Err(e) = rows_match(&rows, &expected) {
                panic!("{what}: the reader finds no damage but differs from SQLite: {e}");
            }
            equal += 1;
        } else {
            // SQLite read a damaged tree without noticing (it reads cells that
            // lie off the page, or records with broken headers as NULLs). Every
            // row the reader does return whole must be one SQLite returned too.
            let mut unused: Vec<&Row> = expected.iter().collect();
            for (rowid, vals) in &rows {
                if vals.first() == Some(&Val::Text(b"<bad record>".to_vec()))
                    || vals.first() == Some(&Val::Text(b"<damaged>".to_vec()))
                {
                    continue;
                }
                let found = unused.iter().position(|(sid, sv)| {
                    // SQLite shows only as many values as the table has columns.
                    sid == rowid
                        && vals
                            .iter()
                            .zip(sv.iter())
                            .all(|(a, b)| a.matches(b, *rowid))
                });
                match found {
                    Some(i) => {
                        unused.swap_remove(i);
                    }
                    None => {
                        panic!("{what}: reader row {rowid} {vals:?} is not among SQLite's rows")
                    }
                }
            }
        }
    }
    (equal, read)
}

#[test]
fn sqlite_corpus_never_panics_and_agrees_with_sqlite() {
    let dir = crate::support::corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    files.sort();
    assert!(files.len() > 100, "{} corpus files", files.len());
    let scratch = tempfile::tempdir().unwrap();
    let (mut equal, mut read) = (0, 0);
    for f in &files {
        let start = Instant::now();
        let (e, r) = walk_corpus_file(f, scratch.path());
        equal += e;
        read += r;
        assert!(
            start.elapsed().as_secs() < 10,
            "{} took {:?}",
            f.display(),
            start.elapsed()
        );
    }
    eprintln!(
        "corpus: {} files; of {read} tables SQLite reads, {equal} are sound and equal, {} damaged and consistent",
        files.len(),
        read - equal
    );
    assert!(equal > 50, "only {equal} sound tables compared with SQLite");
}
