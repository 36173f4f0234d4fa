//! Table repair in place (src/repair/rebuild/in_place.rs, issue 10): damage
//! confined to leaf pages of the customer table is mended in a copy of the
//! file, every other page kept. The result must be the one the whole
//! rebuild gives — the snapshot's rows, every index agreeing with the
//! table (the stock integrity_check), the lost customers restored or listed
//! by ID — and the other tables' pages must be the original's, byte for
//! byte.
//!
//! Truths: the snapshot (the file before the damage) read by SQLite, the
//! IDs written in the damaged page's bytes, and the page numbers SQLite's
//! dbstat gives for the snapshot (the same layout).

use std::path::Path;

use super::repair::stock_integrity_check;
use super::repair_load::{PAGE, build_with, find, rows, schema, zero_leaf_of};
use super::support::repair;
use super::support::{action_detail, action_kinds, run, sqlite3_cli, strings};

/// A transactions table naming every customer, made before the snapshot.
const TRANSACTIONS: &str = "
    CREATE TABLE transactions(txn_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, amount INTEGER);
    INSERT INTO transactions(customer_id, amount) SELECT customer_id, length(name) FROM customers;
    CREATE INDEX idx_transactions_customer ON transactions(customer_id);";

/// The customers table has three indexes: its primary key's, the UNIQUE
/// card's and idx_customers_name.
const CUSTOMER_INDEXES: usize = 3;

fn action(j: &serde_json::Value, kind: &str) -> String {
    action_detail(j, kind, None)
}

/// The pages of the objects `names`, by number (from the stock sqlite3's
/// dbstat over `layout`), with their bytes in `db`.
fn pages_of(db: &Path, layout: &Path, names: &[&str]) -> Vec<(usize, Vec<u8>)> {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let numbers = sqlite3_cli(
        layout,
        &format!("SELECT pageno FROM dbstat WHERE name IN ({list}) ORDER BY pageno"),
    );
    let image = std::fs::read(db).unwrap();
    let pages: Vec<(usize, Vec<u8>)> = numbers
        .lines()
        .map(|l| {
            let n: usize = l.parse().unwrap();
            (n, image[(n - 1) * PAGE..n * PAGE].to_vec())
        })
        .collect();
    assert!(pages.len() > 10, "{names:?}: {pages:?}");
    pages
}

#[test]
fn a_zeroed_leaf_is_mended_in_place_and_every_other_table_keeps_its_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build_with(dir.path(), "TEXT PRIMARY KEY", "", TRANSACTIONS);
    let snap = snaps.join("pos.snap.db");
    let others = ["transactions", "idx_transactions_customer"];
    let (page, lost) = zero_leaf_of(&db, 1500);
    let before = pages_of(&db, &snap, &others);
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 0, "page {page}: {}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    assert_eq!(strings(&j["restored_customer_ids"]), lost);
    assert!(strings(&j["unrecoverable_customer_ids"]).is_empty());
    assert_eq!(
        action_kinds(&j),
        ["backup", "patch_table_pages", "rows", "verify", "swap"]
    );
    let detail = action(&j, "patch_table_pages");
    let n = lost.len();
    for want in [
        format!("damage confined to 1 leaf page(s) of the table ({page})"),
        format!(
            "the {} index entries of its {n} lost rows removed",
            n * CUSTOMER_INDEXES
        ),
    ] {
        assert!(detail.contains(&want), "{want} in {detail}");
    }
    assert!(
        action(&j, "rows").starts_with(&format!(
            "{} from the table's pages, 0 from orphaned pages, {n} from the snapshot",
            3100 - n
        )),
        "{j}"
    );
    // the rows and the schema are the snapshot's; the other table and its
    // index kept every page as it was
    assert_eq!(rows(&db), rows(&snap));
    assert_eq!(schema(&db), schema(&snap));
    assert_eq!(stock_integrity_check(&db), "ok");
    assert_eq!(pages_of(&db, &snap, &others), before);
    let c = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(c.code(), 0, "{}", c.show());
}

#[test]
fn without_a_snapshot_the_lost_leafs_customers_are_listed_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build_with(dir.path(), "TEXT PRIMARY KEY", "", TRANSACTIONS);
    let snap = dir.path().join("pos.snap.db");
    std::fs::rename(snaps.join("pos.snap.db"), &snap).unwrap();
    let (page, lost) = zero_leaf_of(&db, 700);
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 1, "page {page}: {}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    assert!(strings(&j["restored_customer_ids"]).is_empty());
    assert!(action_kinds(&j).contains(&"patch_table_pages"), "{j}");
    // every other row as it was; the lost ones gone from the table and
    // from every index
    let id_of = |row: &Vec<rusqlite::types::Value>| match &row[1] {
        rusqlite::types::Value::Text(t) => t.clone(),
        v => panic!("{v:?}"),
    };
    let want: Vec<_> = rows(&snap)
        .into_iter()
        .filter(|r| !lost.contains(&id_of(r)))
        .collect();
    assert_eq!(rows(&db), want);
    assert_eq!(stock_integrity_check(&db), "ok");
    let in_index = sqlite3_cli(
        &db,
        &format!(
            "SELECT count(*) FROM customers INDEXED BY sqlite_autoindex_customers_1 WHERE customer_id IN ({})",
            lost.iter()
                .map(|i| format!("'{i}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    assert_eq!(in_index, "0");
}

#[test]
fn a_damaged_record_is_restored_and_its_leafs_other_rows_kept_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build_with(dir.path(), "TEXT PRIMARY KEY", "", TRANSACTIONS);
    let snap = snaps.join("pos.snap.db");
    // customer 1500's record header claims 127 bytes of header: SQLite
    // cannot read the row; its cell, and every other row of the page, can be
    let mut image = std::fs::read(&db).unwrap();
    let at = find(&image, b"CUST-001500CARD-001500");
    // the header: its size (5: itself and four one-byte serial types)
    assert_eq!(image[at - 5], 5);
    image[at - 5] = 0x7f;
    std::fs::write(&db, &image).unwrap();
    assert_ne!(stock_integrity_check(&db), "ok");
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["restored_customer_ids"]), ["CUST-001500"]);
    let detail = action(&j, "patch_table_pages");
    assert!(
        detail.contains(&format!(
            "the {CUSTOMER_INDEXES} index entries of its 1 lost rows removed"
        )),
        "{detail}"
    );
    assert_eq!(rows(&db), rows(&snap));
    assert_eq!(stock_integrity_check(&db), "ok");
}

#[test]
fn an_index_on_an_expression_is_rebuilt_from_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    // no stand-in row can give an expression's entry back: the placeholder
    // row goes, then REINDEX
    let last =
        format!("{TRANSACTIONS} CREATE INDEX idx_customers_lower ON customers(lower(name));");
    let (db, snaps) = build_with(dir.path(), "TEXT PRIMARY KEY", "", &last);
    let snap = snaps.join("pos.snap.db");
    let (_, lost) = zero_leaf_of(&db, 2000);
    let r = repair(&db, &snaps);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["restored_customer_ids"]), lost);
    let detail = action(&j, "patch_table_pages");
    assert!(
        detail.ends_with("the table's indexes rebuilt from its rows"),
        "{detail}"
    );
    assert_eq!(rows(&db), rows(&snap));
    assert_eq!(stock_integrity_check(&db), "ok");
    let by_lower = sqlite3_cli(
        &db,
        "SELECT count(*) FROM customers INDEXED BY idx_customers_lower WHERE lower(name) >= ''",
    );
    assert_eq!(by_lower, "3100");
}

/// A copy mended in place that fails its verification is discarded and the
/// whole database built anew (here the test hook damages that copy too:
/// the repair stops, the original untouched, one failed copy kept).
#[test]
fn a_copy_mended_in_place_that_fails_its_verification_gives_way_to_the_whole_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build_with(dir.path(), "TEXT PRIMARY KEY", "", TRANSACTIONS);
    zero_leaf_of(&db, 1500);
    let original = std::fs::read(&db).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "repair",
            db.to_str().unwrap(),
            "--snapshot",
            snaps.to_str().unwrap(),
            "--json",
            "-",
        ])
        .env("CUSTODIAN_TEST_DAMAGE_COPY", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let detail = action(&j, "patch_table_pages");
    assert!(
        detail.starts_with("the copy mended in place failed its verification")
            && detail.ends_with("the whole database is built anew instead"),
        "{detail}"
    );
    assert!(action_kinds(&j).contains(&"rebuild_database"), "{j}");
    assert_eq!(std::fs::read(&db).unwrap(), original);
    let failed: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
}

/// A copy mended in place that fails its verification, and a whole rebuild
/// that passes: the rebuild is swapped in, and the failed copy is gone
/// (nothing under a work name, no `*.failed`: the repair succeeded). The
/// test hook deletes one of the lost customers from the first copy only
/// (a marker table in a database of the test's own records that it ran).
#[test]
fn a_copy_mended_in_place_that_fails_is_removed_when_the_whole_rebuild_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snaps) = build_with(dir.path(), "TEXT PRIMARY KEY", "", TRANSACTIONS);
    let (_, lost) = zero_leaf_of(&db, 1500);
    let hook_dir = tempfile::tempdir().unwrap();
    let marker = hook_dir.path().join("hook.db");
    let sql = format!(
        "sql:ATTACH '{}' AS hook; CREATE TABLE IF NOT EXISTS hook.ran(n); \
         DELETE FROM main.customers WHERE customer_id = '{}' AND NOT EXISTS (SELECT 1 FROM hook.ran); \
         INSERT INTO hook.ran VALUES (1); DETACH hook;",
        marker.display(),
        lost[0]
    );
    let names_before = super::support::listing(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "repair",
            db.to_str().unwrap(),
            "--snapshot",
            snaps.to_str().unwrap(),
            "--json",
            "-",
        ])
        .env("CUSTODIAN_TEST_DAMAGE_COPY", &sql)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        sqlite3_cli(&marker, "SELECT count(*) FROM ran"),
        "2",
        "the hook ran on both copies"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let detail = action(&j, "patch_table_pages");
    assert!(
        detail.starts_with("the copy mended in place failed its verification"),
        "{detail}"
    );
    assert!(action_kinds(&j).contains(&"rebuild_database"), "{j}");
    assert_eq!(strings(&j["restored_customer_ids"]), lost);
    assert_eq!(rows(&db), rows(&snaps.join("pos.snap.db")));
    assert_eq!(stock_integrity_check(&db), "ok");
    // the folder holds what it held, and the backup
    let mut names = super::support::listing(dir.path());
    names.retain(|n| !n.ends_with(".backup") && !n.ends_with(".sha256"));
    assert_eq!(names, names_before, "a work file or a failed copy was left");
}

/// The fixture's leaf of garbage (its cells' "overflow pages" are garbage
/// too: no page the table's walk took) in a WAL database, as a POS leaves
/// it: mended in place, the file back in WAL mode, the customers the
/// builder's truth says.
#[test]
fn a_garbage_leaf_of_a_wal_database_is_mended_in_place() {
    let s = super::repair::Setup::new("damaged_table_leaf");
    let t = super::support::truth("damaged_table_leaf");
    assert_eq!(sqlite3_cli(&s.db, "PRAGMA journal_mode = WAL"), "wal");
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let kinds = action_kinds(&j);
    assert!(
        kinds.contains(&"patch_table_pages") && !kinds.contains(&"rebuild_database"),
        "{kinds:?}"
    );
    assert_eq!(sqlite3_cli(&s.db, "PRAGMA journal_mode"), "wal");
    assert_eq!(
        super::repair::customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
}
