//! The bulk load of a salvaged table (src/repair/rebuild/load.rs, issue 10):
//! the rows go into a plain twin and SQLite builds the table's indexes after
//! them. The result must be the table the row-by-row load makes: the same
//! rows (a row that predates an ADD COLUMN reads its default), the same
//! schema, every index agreeing with the table (the stock integrity_check),
//! a refused row quarantined under the table's own name — and where rows
//! share a UNIQUE key, the row-by-row load, whose first row wins.
//!
//! Truths: the snapshot (the file before the damage) read by SQLite, and
//! the IDs written in the zeroed page's bytes.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::Value;

use super::repair::stock_integrity_check;
use super::support::{action_detail, action_kinds, repair, run, sqlite3_cli, strings};

pub(super) const PAGE: usize = 4096;

/// A POS-like customer table: TEXT primary key, UNIQUE card, NOT NULL
/// name; 3,000 rows, then a column added (NOT NULL with a default: the
/// first 3,000 records stay short and read the default) and 100 rows more.
/// `before_not_null` runs on the table before `name` is declared NOT NULL
/// (through writable_schema: rows the declaration now refuses).
fn build(dir: &Path, before_not_null: &str) -> (PathBuf, PathBuf) {
    build_with(dir, "TEXT PRIMARY KEY", before_not_null, "")
}

/// [`build`] with the ID column declared `id_decl`, and `last` run just
/// before the snapshot is taken.
pub(super) fn build_with(
    dir: &Path,
    id_decl: &str,
    before_not_null: &str,
    last: &str,
) -> (PathBuf, PathBuf) {
    let db = dir.join("pos.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = DELETE;
         CREATE TABLE customers(customer_id {id_decl}, card_number TEXT UNIQUE,
                                name TEXT, tier TEXT DEFAULT 'basic');
         CREATE INDEX idx_customers_name ON customers(name);"
    ))
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 1..=3000 {
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                format!("CUST-{i:06}"),
                format!("CARD-{i:06}"),
                format!("Name {i}"),
                ["gold", "silver", "basic"][i % 3]
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute_batch(before_not_null).unwrap();
    let v: i64 = c
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .unwrap();
    c.execute_batch(&format!(
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_schema SET sql = replace(sql, 'name TEXT,', 'name TEXT NOT NULL,')
          WHERE name = 'customers';
         PRAGMA schema_version = {};
         PRAGMA writable_schema = OFF;",
        v + 1
    ))
    .unwrap();
    drop(c);
    let c = Connection::open(&db).unwrap();
    c.execute_batch("ALTER TABLE customers ADD COLUMN status TEXT NOT NULL DEFAULT 'active'")
        .unwrap();
    for i in 3001..=3100 {
        c.execute(
            "INSERT INTO customers(customer_id, card_number, name, status) VALUES (?1, ?2, ?3, 'new')",
            rusqlite::params![format!("CUST-{i:06}"), format!("CARD-{i:06}"), format!("Name {i}")],
        )
        .unwrap();
    }
    c.execute_batch(last).unwrap();
    drop(c);
    let snaps = dir.join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    std::fs::copy(&db, snaps.join("pos.snap.db")).unwrap();
    (db, snaps)
}

/// The first offset of `needle` in `image`.
pub(super) fn find(image: &[u8], needle: &[u8]) -> usize {
    image
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{} not in the file", String::from_utf8_lossy(needle)))
}

/// Zeroes the table leaf that holds customer `i`'s row (its ID and card
/// side by side: only a table record has them so); returns the page's
/// number and the IDs of the rows it held, read from its bytes.
pub(super) fn zero_leaf_of(db: &Path, i: u32) -> (usize, Vec<String>) {
    let mut image = std::fs::read(db).unwrap();
    let at = find(&image, format!("CUST-{i:06}CARD-{i:06}").as_bytes());
    let page = at / PAGE;
    let bytes = &image[page * PAGE..(page + 1) * PAGE];
    let re = regex::bytes::Regex::new(r"(CUST-\d{6})CARD-\d{6}").unwrap();
    let mut ids: Vec<String> = re
        .captures_iter(bytes)
        .map(|c| String::from_utf8_lossy(&c[1]).into_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert!(ids.len() > 20, "a leaf holds many rows: {ids:?}");
    image[page * PAGE..(page + 1) * PAGE].fill(0);
    std::fs::write(db, &image).unwrap();
    (page + 1, ids)
}

/// Every row of customers with its rowid, in rowid order, as SQLite reads it.
pub(super) fn rows(db: &Path) -> Vec<Vec<Value>> {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c
        .prepare("SELECT rowid, * FROM customers NOT INDEXED ORDER BY rowid")
        .unwrap();
    let n = st.column_count();
    st.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// The `rows` action of the report for customers.
pub(super) fn rows_action(j: &serde_json::Value) -> String {
    action_detail(j, "rows", Some("customers"))
}

pub(super) fn schema(db: &Path) -> String {
    sqlite3_cli(
        db,
        "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name",
    )
}

#[test]
fn a_salvaged_table_is_loaded_in_bulk_with_every_row_and_index() {
    let dir = tempfile::tempdir().unwrap();
    // a trigger on the table: it is not mended in place (the rows deleted
    // and put back would fire it), so the whole database is rebuilt
    let (db, snaps) = build_with(
        dir.path(),
        "TEXT PRIMARY KEY",
        "",
        "CREATE TRIGGER customers_gone AFTER DELETE ON customers BEGIN SELECT 1; END;",
    );
    let snap = snaps.join("pos.snap.db");
    let (page, lost) = zero_leaf_of(&db, 1500);
    assert_ne!(stock_integrity_check(&db), "ok");
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 0, "page {page}: {}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    assert_eq!(strings(&j["restored_customer_ids"]), lost);
    assert_eq!(
        strings(&j["unrecoverable_customer_ids"]),
        Vec::<String>::new()
    );
    let detail = rows_action(&j);
    assert!(detail.contains("loaded in bulk"), "{detail}");
    assert_eq!(
        action_kinds(&j),
        ["backup", "rebuild_database", "rows", "verify", "swap"]
    );
    assert!(
        detail.starts_with(&format!(
            "{} from the table's pages, 0 from orphaned pages, {} from the snapshot",
            3100 - lost.len(),
            lost.len()
        )),
        "{detail}"
    );
    // the rows, the short records' defaults, the schema: the snapshot's
    let after = rows(&db);
    assert_eq!(after.len(), 3100);
    assert_eq!(after, rows(&snap));
    assert_eq!(schema(&db), schema(&snap));
    assert_eq!(stock_integrity_check(&db), "ok");
    let c = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(c.code(), 0, "{}", c.show());
}

/// Row 7's name is NULL where the declaration says NOT NULL: salvage takes
/// its record for damaged (it does not fit the table), so it is named, and
/// the snapshot — taken when row 7 still had its name — gives it back.
#[test]
fn a_row_that_breaks_its_declaration_comes_back_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build(
        dir.path(),
        "UPDATE customers SET name = NULL WHERE customer_id = 'CUST-000007'",
    );
    let snap = snaps.join("pos.snap.db");
    sqlite3_cli(
        &snap,
        "UPDATE customers SET name = 'Name 7' WHERE rowid = 7",
    );
    assert_eq!(stock_integrity_check(&snap), "ok");
    let (_, mut lost) = zero_leaf_of(&db, 1500);
    assert!(!lost.contains(&"CUST-000007".to_string()));
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    lost.push("CUST-000007".into());
    lost.sort();
    assert_eq!(strings(&j["restored_customer_ids"]), lost);
    assert!(rows_action(&j).contains("loaded in bulk"), "{}", r.show());
    assert_eq!(rows(&db), rows(&snap));
    assert_eq!(stock_integrity_check(&db), "ok");
}

/// The same without a good snapshot (the only one holds row 7's NULL too,
/// so it is skipped as damaged): what could be read of row 7 is refused by
/// the table and kept in quarantine — its customer listed as quarantined —
/// and the rows of the zeroed page are listed as unrecoverable: exit 1.
#[test]
fn without_a_good_snapshot_the_refused_row_is_quarantined_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build(
        dir.path(),
        "UPDATE customers SET name = NULL WHERE customer_id = 'CUST-000007'",
    );
    let snap = snaps.join("pos.snap.db");
    let (_, lost) = zero_leaf_of(&db, 1500);
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    assert_eq!(strings(&j["quarantined_customer_ids"]), ["CUST-000007"]);
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    assert_eq!(strings(&j["restored_customer_ids"]), Vec::<String>::new());
    assert!(rows_action(&j).contains("loaded in bulk"), "{}", r.show());
    assert_eq!(
        sqlite3_cli(
            &db,
            "SELECT source_table, original_rowid, json_extract(row_json, '$.customer_id'), \
             json_extract(row_json, '$.name') IS NULL FROM custodian_quarantine"
        ),
        "customers|7|CUST-000007|1"
    );
    let mut want = rows(&snap);
    want.retain(|r| {
        let Value::Text(id) = &r[1] else { return false };
        r[0] != Value::Integer(7) && !lost.contains(id)
    });
    assert_eq!(rows(&db), want);
    assert_eq!(stock_integrity_check(&db), "ok");
}

#[test]
fn rows_that_share_a_unique_key_are_loaded_row_by_row_first_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build(dir.path(), "");
    let snap = snaps.join("pos.snap.db");
    // row 2's record now holds row 1's card (the card index still says
    // otherwise): two rows share a UNIQUE key
    let mut image = std::fs::read(&db).unwrap();
    let at = find(&image, b"CUST-000002CARD-000002");
    image[at..at + 22].copy_from_slice(b"CUST-000002CARD-000001");
    std::fs::write(&db, &image).unwrap();
    let (page, lost) = zero_leaf_of(&db, 1500);
    assert_ne!(page, at / PAGE + 1);
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["quarantined_customer_ids"]), ["CUST-000002"]);
    assert_eq!(strings(&j["restored_customer_ids"]), lost);
    let detail = rows_action(&j);
    assert!(!detail.contains("loaded in bulk"), "{detail}");
    assert!(detail.ends_with(", 1 quarantined"), "{detail}");
    let q = sqlite3_cli(
        &db,
        "SELECT source_table, original_rowid, json_extract(row_json, '$.card_number'), reason \
         FROM custodian_quarantine",
    );
    assert_eq!(
        q,
        "customers|2|CARD-000001|UNIQUE constraint failed: customers.card_number (row from the table's pages)"
    );
    let mut want = rows(&snap);
    want.retain(|r| r[0] != Value::Integer(2));
    assert_eq!(rows(&db), want);
    assert_eq!(stock_integrity_check(&db), "ok");
    assert_eq!(
        sqlite3_cli(
            &db,
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'custodian_load%'"
        ),
        "0"
    );
}

/// Customers other tables name are looked for as SQLite's `=` looks: here
/// the ID column is declared COLLATE NOCASE, so a transaction naming
/// "cust-000010" names customer CUST-000010, who is there — nothing to
/// restore, nothing lost. (Where both columns compare alike, a merge of
/// the two sorted ID lists replaces the lookups; here it must not.)
#[test]
fn references_are_matched_as_the_id_columns_collation_says() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build_with(
        dir.path(),
        "TEXT PRIMARY KEY COLLATE NOCASE",
        "",
        "CREATE TABLE transactions(txn_id INTEGER PRIMARY KEY, customer_id TEXT, amount INTEGER);
         CREATE INDEX idx_transactions_customer ON transactions(customer_id);
         INSERT INTO transactions(customer_id, amount)
           SELECT lower(customer_id), rowid FROM customers WHERE rowid % 10 = 0;",
    );
    let snap = snaps.join("pos.snap.db");
    let (_, lost) = zero_leaf_of(&db, 1500);
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["restored_customer_ids"]), lost);
    assert_eq!(
        strings(&j["unrecoverable_customer_ids"]),
        Vec::<String>::new()
    );
    assert_eq!(
        strings(&j["quarantined_customer_ids"]),
        Vec::<String>::new()
    );
    assert_eq!(rows(&db), rows(&snap));
    assert_eq!(stock_integrity_check(&db), "ok");
    let c = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(c.code(), 0, "{}", c.show());
}
