//! Each kind of damage SQLite's quick_check reports, made on purpose in a
//! small database, is found by custodian's own checks (quick_check is not
//! run without `--sqlite-quick-check`). The oracle is the stock `sqlite3`
//! CLI on the same bytes: it must report the damage, and custodian must name
//! it with the expected finding. (The stock CLI is SQLite 3.40, whose
//! quick_check checks less than the bundled library's - no entry counts, no
//! CHECK constraints - so its integrity_check, which checks all of these, is
//! the oracle.)

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;

use super::support::{root_page, run};

/// A small healthy database: a customer table (so the check runs as usual)
/// and `t`, the table the damage is made in, with an index.
fn base(dir: &Path, t_sql: &str, rows: &[&str], extra_sql: &str) -> PathBuf {
    let db = dir.join("d.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "PRAGMA page_size = 1024;
         {extra_sql}
         CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO customers VALUES ('C1', 'Ann'), ('C2', 'Bob');
         {t_sql};"
    ))
    .unwrap();
    for r in rows {
        c.execute_batch(&format!("INSERT INTO t VALUES ({r});"))
            .unwrap();
    }
    drop(c);
    db
}

/// Rewrites table `name`'s CREATE statement (as a damaged or tampered
/// schema would hold it), with the schema cookie bumped as SQLite does.
fn rewrite_sql(db: &Path, name: &str, sql: &str) {
    let c = Connection::open(db).unwrap();
    c.execute_batch("PRAGMA writable_schema = ON").unwrap();
    c.execute(
        "UPDATE sqlite_schema SET sql = ?1 WHERE name = ?2",
        [sql, name],
    )
    .unwrap();
    let v: i64 = c
        .pragma_query_value(None, "schema_version", |r| r.get(0))
        .unwrap();
    c.pragma_update(None, "schema_version", v + 1).unwrap();
}

fn stock_integrity_check(db: &Path) -> String {
    super::header::stock_integrity_check(db).0
}

/// Asserts the oracle sees `sqlite_says`, and custodian's check (without
/// quick_check) exits 1 with an error finding `code` on `object`, and gives
/// the same verdict with quick_check.
fn assert_found(db: &Path, sqlite_says: &str, code: &str, object: Option<&str>) {
    let qc = stock_integrity_check(db);
    assert!(qc.contains(sqlite_says), "stock integrity_check: {qc}");
    let dir = db.parent().unwrap();
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let hit = j["findings"].as_array().unwrap().iter().any(|f| {
        f["code"] == code && f["severity"] == "error" && object.is_none_or(|o| f["object"] == o)
    });
    assert!(
        hit,
        "no {code} on {object:?}; integrity_check: {qc}\n{}",
        r.show()
    );
    assert!(
        !j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "sqlite_quick_check"),
        "quick_check ran without the flag"
    );
    let with = run(
        &[
            "check",
            db.to_str().unwrap(),
            "--json",
            "-",
            "--sqlite-quick-check",
        ],
        dir,
    );
    assert_eq!(with.code(), 1, "{}", with.show());
}

fn assert_healthy(db: &Path) {
    assert_eq!(stock_integrity_check(db).trim(), "ok");
    let r = run(&["check", db.to_str().unwrap()], db.parent().unwrap());
    assert_eq!(r.code(), 0, "{}", r.show());
}

#[test]
fn null_in_a_not_null_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(
        dir.path(),
        "CREATE TABLE t(a, b)",
        &["1, 'x'", "NULL, 'y'"],
        "",
    );
    assert_healthy(&db);
    rewrite_sql(&db, "t", "CREATE TABLE t(a NOT NULL, b)");
    assert_found(&db, "NULL value in t.a", "column_constraint", Some("t"));
}

#[test]
fn null_in_the_customer_tables_not_null_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a)", &["1"], "");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("INSERT INTO customers VALUES ('C3', 'Cy')")
        .unwrap();
    drop(c);
    rewrite_sql(
        &db,
        "customers",
        "CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, tier NOT NULL)",
    );
    assert_found(
        &db,
        "NULL value in customers.tier",
        "column_constraint",
        Some("customers"),
    );
}

#[test]
fn a_wrong_type_in_a_strict_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a INTEGER)", &["1", "'two'"], "");
    rewrite_sql(&db, "t", "CREATE TABLE t(a INTEGER) STRICT");
    assert_found(
        &db,
        "non-INTEGER value in t.a",
        "column_constraint",
        Some("t"),
    );
}

#[test]
fn a_number_in_a_text_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a)", &["'x'", "5"], "");
    rewrite_sql(&db, "t", "CREATE TABLE t(a TEXT)");
    assert_found(&db, "NUMERIC value in t.a", "column_constraint", Some("t"));
}

#[test]
fn text_that_reads_as_a_number_in_a_numeric_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a)", &["'abc'", "' 12 '"], "");
    rewrite_sql(&db, "t", "CREATE TABLE t(a INTEGER)");
    assert_found(&db, "TEXT value in t.a", "column_constraint", Some("t"));
}

#[test]
fn a_failed_check_constraint() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a)", &["3", "-1"], "");
    rewrite_sql(&db, "t", "CREATE TABLE t(a CHECK (a > 0))");
    // SQLite 3.40's integrity_check does not evaluate CHECK constraints: the
    // oracle evaluates the constraint itself (one row breaks it)
    let o = Command::new("sqlite3")
        .arg("-readonly")
        .arg(&db)
        .arg("SELECT count(*) FROM t WHERE NOT (a > 0)")
        .output()
        .expect("stock sqlite3");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    assert_found(&db, "ok", "column_constraint", Some("t"));
}

#[test]
fn an_index_with_another_number_of_entries_than_its_table_has_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(
        dir.path(),
        "CREATE TABLE t(a); CREATE INDEX ti ON t(a); CREATE TABLE u(b); CREATE INDEX ui ON u(b)",
        &["1", "2", "3"],
        "",
    );
    assert_healthy(&db);
    // the two indexes' root pages swapped: ti now holds u's 0 entries
    let c = Connection::open(&db).unwrap();
    let ti: i64 = c
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name='ti'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let ui: i64 = c
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name='ui'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    c.execute_batch("PRAGMA writable_schema = ON").unwrap();
    c.execute(
        "UPDATE sqlite_schema SET rootpage = ?1 WHERE name = 'ti'",
        [ui],
    )
    .unwrap();
    c.execute(
        "UPDATE sqlite_schema SET rootpage = ?1 WHERE name = 'ui'",
        [ti],
    )
    .unwrap();
    let v: i64 = c
        .pragma_query_value(None, "schema_version", |r| r.get(0))
        .unwrap();
    c.pragma_update(None, "schema_version", v + 1).unwrap();
    drop(c);
    assert_found(
        &db,
        "wrong # of entries in index ti",
        "index_entry_missing",
        Some("ti"),
    );
    assert_found(
        &db,
        "wrong # of entries in index ui",
        "index_entry_surplus",
        Some("ui"),
    );
}

/// Page number and offset of the first cell of table `name`'s root page.
fn first_cell(db: &Path, name: &str) -> (u64, u64) {
    let root = root_page(db, name);
    let f = std::fs::File::open(db).unwrap();
    let mut hdr = [0u8; 12];
    f.read_exact_at(&mut hdr, (root - 1) * 1024).unwrap();
    assert_eq!(hdr[0], 13, "a table leaf");
    let mut ptr = [0u8; 2];
    f.read_exact_at(&mut ptr, (root - 1) * 1024 + 8).unwrap();
    (root, u64::from(u16::from_be_bytes(ptr)))
}

#[test]
fn a_record_header_larger_than_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a TEXT)", &["'hello'"], "");
    let (root, cell) = first_cell(&db, "t");
    // cell: payload length (1 byte), rowid (1 byte), then the record whose
    // first byte is its header size: claim 100 bytes in a 7-byte record
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&[100], (root - 1) * 1024 + cell + 2)
        .unwrap();
    drop(f);
    assert_found(&db, "malformed", "record_damaged", Some("t"));
}

#[test]
fn a_wrong_fragment_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a TEXT)", &["'hello'"], "");
    let (root, _) = first_cell(&db, "t");
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&[3], (root - 1) * 1024 + 7).unwrap();
    drop(f);
    assert_found(
        &db,
        "Fragmentation of 0 bytes reported as 3",
        "page_damaged",
        Some("t"),
    );
}

#[test]
fn a_wrong_freelist_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a TEXT)", &["'hello'"], "");
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&2u32.to_be_bytes(), 36).unwrap();
    drop(f);
    assert_found(&db, "size is 0 but should be 2", "freelist_damaged", None);
}

#[test]
fn incremental_vacuum_set_without_auto_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a TEXT)", &["'hello'"], "");
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&1u32.to_be_bytes(), 64).unwrap();
    drop(f);
    assert_found(
        &db,
        "incremental_vacuum enabled with a max rootpage of zero",
        "ptrmap_damaged",
        None,
    );
}

#[test]
fn auto_vacuum_bookkeeping() {
    // a wrong largest root page in the header
    let dir = tempfile::tempdir().unwrap();
    let db = base(
        dir.path(),
        "CREATE TABLE t(a TEXT)",
        &["'hello'"],
        "PRAGMA auto_vacuum = FULL;",
    );
    assert_healthy(&db);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&db)
        .unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, 52).unwrap();
    let largest = u32::from_be_bytes(b);
    f.write_all_at(&(largest + 1).to_be_bytes(), 52).unwrap();
    drop(f);
    assert_found(
        &db,
        &format!(
            "max rootpage ({largest}) disagrees with header ({})",
            largest + 1
        ),
        "ptrmap_damaged",
        None,
    );

    // a pointer-map entry that names the wrong parent: page 3's entry is the
    // first of page 2 (the first pointer-map page)
    let dir = tempfile::tempdir().unwrap();
    let db = base(
        dir.path(),
        "CREATE TABLE t(a TEXT)",
        &["'hello'"],
        "PRAGMA auto_vacuum = FULL;",
    );
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&[5, 0, 0, 0, 9], 1024).unwrap();
    drop(f);
    assert_found(&db, "Bad ptr map entry key=3", "ptrmap_damaged", None);
}

#[test]
fn a_virtual_tables_damaged_shadow_content() {
    let dir = tempfile::tempdir().unwrap();
    let db = base(dir.path(), "CREATE TABLE t(a)", &["1"], "");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE VIRTUAL TABLE notes USING fts4(body);
         INSERT INTO notes VALUES ('alpha beta'), ('gamma delta'), ('beta gamma');
         DELETE FROM notes_segdir;",
    )
    .unwrap();
    drop(c);
    // the oracle: FTS4's own integrity check in the stock CLI
    let o = Command::new("sqlite3")
        .arg(&db)
        .arg("INSERT INTO notes(notes) VALUES('integrity-check')")
        .output()
        .expect("stock sqlite3");
    assert!(!o.status.success(), "the stock CLI finds no damage");
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert!(
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| { f["code"] == "virtual_table_damaged" && f["object"] == "notes" }),
        "{}",
        r.show()
    );
}

#[test]
fn null_in_a_not_null_generated_column() {
    // a VIRTUAL generated column is not stored: SQLite computes it
    let dir = tempfile::tempdir().unwrap();
    let db = base(
        dir.path(),
        "CREATE TABLE t(a INT, b AS (a * 2))",
        &["1", "NULL"],
        "",
    );
    assert_healthy(&db);
    rewrite_sql(&db, "t", "CREATE TABLE t(a INT, b AS (a * 2) NOT NULL)");
    assert_found(&db, "NULL value in t.b", "column_constraint", Some("t"));
}

/// Two leaves of an index of another table (idx_transactions_customer)
/// written over each other: every page is sound and every entry is there,
/// so SQLite's quick_check says ok, but the entries are out of key order
/// and lookups miss them (the stock integrity_check: rows "missing from
/// index"). check names the order of that index (exit 1, no customer
/// affected); repair rebuilds the index into a file the stock sqlite3
/// calls ok.
#[test]
fn leaves_of_another_tables_index_swapped_are_out_of_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = super::support::fixture_copy("healthy", dir.path());
    swap_first_two_leaves(&db);
    assert_eq!(
        super::support::sqlite3_cli(&db, "PRAGMA quick_check;"),
        "ok"
    );
    let ic = super::support::sqlite3_cli(&db, "PRAGMA integrity_check;");
    assert!(
        ic.contains("missing from index idx_transactions_customer"),
        "{ic}"
    );

    let r = run(&["check", "healthy.db", "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(j["affected_customer_ids"], serde_json::json!([]));
    let errors = error_codes_and_objects(&j);
    assert_eq!(errors, [("key_order", "idx_transactions_customer")]);

    std::fs::create_dir(dir.path().join("snaps")).unwrap();
    let r = run(&["repair", "healthy.db", "--snapshot", "snaps"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        super::support::sqlite3_cli(&db, "PRAGMA integrity_check;"),
        "ok"
    );
    let r = run(&["check", "healthy.db"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
}

/// Writes the first two leaves of idx_transactions_customer (page numbers
/// from the stock sqlite3's dbstat) over each other.
fn swap_first_two_leaves(db: &Path) {
    let leaves = super::support::sqlite3_cli(
        db,
        "SELECT pageno FROM dbstat WHERE name = 'idx_transactions_customer' AND pagetype = 'leaf' \
         ORDER BY path LIMIT 2;",
    );
    let pages: Vec<u64> = leaves.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(pages.len(), 2, "{leaves}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(db)
        .unwrap();
    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
    f.read_exact_at(&mut a, (pages[0] - 1) * 4096).unwrap();
    f.read_exact_at(&mut b, (pages[1] - 1) * 4096).unwrap();
    f.write_all_at(&b, (pages[0] - 1) * 4096).unwrap();
    f.write_all_at(&a, (pages[1] - 1) * 4096).unwrap();
    drop(f);
}

/// The same, with the index named by bytes that are not UTF-8 (Latin-1
/// `idx_transß`, in its name and its CREATE statement): the index is
/// addressed by those bytes, so its order is checked all the same.
#[test]
fn an_index_named_by_bytes_that_are_not_utf8_is_held_to_its_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = super::support::fixture_copy("healthy", dir.path());
    swap_first_two_leaves(&db);
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA writable_schema = ON").unwrap();
        let sql: String = c
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'idx_transactions_customer'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let name = b"idx_trans\xdf".to_vec();
        let mut new_sql = Vec::new();
        let (head, tail) = sql.split_once("idx_transactions_customer").unwrap();
        new_sql.extend_from_slice(head.as_bytes());
        new_sql.extend_from_slice(&name);
        new_sql.extend_from_slice(tail.as_bytes());
        c.execute(
            "UPDATE sqlite_schema SET name = CAST(?1 AS TEXT), sql = CAST(?2 AS TEXT) \
             WHERE name = 'idx_transactions_customer'",
            rusqlite::params![name, new_sql],
        )
        .unwrap();
    }
    assert_eq!(
        super::support::sqlite3_cli(&db, "PRAGMA quick_check;"),
        "ok"
    );
    let r = run(&["check", "healthy.db", "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let errors = error_codes_and_objects(&j);
    assert_eq!(errors, [("key_order", "idx_trans\u{FFFD}")]);
}

/// The report's errors, each as (code, object): what these tests pin.
fn error_codes_and_objects(j: &serde_json::Value) -> Vec<(&str, &str)> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["code"].as_str().unwrap(),
                f["object"].as_str().unwrap_or(""),
            )
        })
        .collect()
}
