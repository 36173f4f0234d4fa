//! Two leaves of one of the customer table's indexes swapped (a page
//! written at another's offset): every entry is still there, so the
//! entry-for-entry comparison finds nothing missing, and SQLite's
//! quick_check says ok; but SQLite's seek for a key on either leaf lands on
//! the other, and the POS's lookup misses the customer. check must name
//! exactly those customers, not only the two entries where the key order
//! breaks; repair must put every entry back. Truth: each customer of
//! `healthy` looked up through each index by the stock SQLite (rusqlite's
//! bundled one), forced onto that index with INDEXED BY: a customer is
//! rejected when a lookup of its own key does not give back its own row.

use std::collections::BTreeSet;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::overflow::swap_pages;
use super::repair::{customers_sha256, stock_integrity_check};
use super::support::{finding_codes, fixture_copy, repair_json, run, sqlite3_cli, strings};

const COLUMNS: &str = "rowid, customer_id, card_number, name, phone, email, status, tier, \
                       balance_cents, created_at, updated_at";

/// Each index of the customer table, the lookup through it (the values
/// bound: columns of COLUMNS) and how many customers a swap of its third
/// and ninth leaves (by dbstat's path order) rejects.
const INDEXES: [(&str, &str, &[usize], usize); 5] = [
    (
        "sqlite_autoindex_customers_1",
        "customer_id = ?1",
        &[1],
        365,
    ),
    (
        "sqlite_autoindex_customers_2",
        "card_number = ?1",
        &[2],
        286,
    ),
    ("idx_customers_email", "email = ?1", &[5], 194),
    ("idx_customers_phone", "phone = ?1", &[4], 326),
    (
        "idx_customers_status",
        "status = ?1 AND tier IS ?2",
        &[6, 7],
        706,
    ),
];

fn rows(db: &std::path::Path) -> Vec<Vec<Value>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM customers NOT INDEXED"))
        .unwrap();
    stmt.query_map([], |r| (0..11).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The customers whose lookup through `index` does not give back their
/// own row (an error gives none).
fn rejected_through(
    db: &std::path::Path,
    every: &[Vec<Value>],
    index: &str,
    lookup: &str,
    cols: &[usize],
) -> BTreeSet<String> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let sql = format!("SELECT {COLUMNS} FROM customers INDEXED BY {index} WHERE {lookup}");
    let mut out = BTreeSet::new();
    for row in every {
        if row[cols[0]] == Value::Null {
            continue; // no lookup by a key the customer does not have
        }
        let got: Vec<Vec<Value>> = conn
            .prepare(&sql)
            .unwrap()
            .query_map(
                rusqlite::params_from_iter(cols.iter().map(|&c| &row[c])),
                |r| (0..11).map(|i| r.get::<_, Value>(i)).collect(),
            )
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap_or_default();
        if !got.contains(row) {
            let Value::Text(id) = &row[1] else {
                panic!("{row:?}")
            };
            out.insert(id.clone());
        }
    }
    out
}

#[test]
fn two_leaves_of_a_customer_index_swapped_are_named_customer_by_customer_and_put_back() {
    for (index, lookup, cols, count) in INDEXES {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy("healthy", dir.path());
        let every = rows(&db);
        let want_sha = customers_sha256(&db);
        let leaves: Vec<usize> = sqlite3_cli(
            &db,
            &format!(
                "SELECT pageno FROM dbstat WHERE name = '{index}' AND pagetype = 'leaf' ORDER BY path"
            ),
        )
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
        let (a, b) = (leaves[2], leaves[8]);
        swap_pages(&db, a, b);
        assert_eq!(
            sqlite3_cli(&db, "PRAGMA quick_check").trim(),
            "ok",
            "{index}"
        );

        let rejected = rejected_through(&db, &every, index, lookup, cols);
        assert_eq!(rejected.len(), count, "{index}");
        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
        assert_eq!(r.code(), 1, "{index}: {}", r.show());
        let j = r.json();
        let named: BTreeSet<String> = strings(&j["affected_customer_ids"]).into_iter().collect();
        assert_eq!(named, rejected, "{index}");
        // the key order broken and lookups wrong, nothing else (no
        // customer holds a duplicate: a seek landing on another
        // customer's entry is not one)
        assert_eq!(
            finding_codes(&j),
            BTreeSet::from([
                ("key_order".to_string(), index.to_string()),
                ("lookup_wrong".to_string(), index.to_string()),
            ]),
            "{index}: {j:#}"
        );

        let r = repair_json(&db, &[]);
        assert_eq!(r.code(), 0, "{index}: {}", r.show());
        assert_eq!(r.json()["verdict"], "repaired", "{index}");
        assert_eq!(stock_integrity_check(&db), "ok", "{index}");
        assert_eq!(customers_sha256(&db), want_sha, "{index}");
        assert_eq!(
            rejected_through(&db, &every, index, lookup, cols),
            BTreeSet::new(),
            "{index}"
        );
        let c = run(&["check", db.to_str().unwrap()], dir.path());
        assert_eq!(c.code(), 0, "{index}: {}", c.show());
    }
}

/// A leaf of the customer table and a leaf of its ID index swapped: the
/// table's rows on the one are reached by no reference, and those whose ID
/// entry was on the other are named by nothing else in the file (no index
/// entry, no row SQLite reads). check finds the two pages holding each
/// other's content (`pages_swapped`), reads the table with them put back,
/// and names every customer on them whose lookup fails, so that every
/// customer SQLite rejects is named; repair puts the two back.
#[test]
fn a_customer_leaf_swapped_with_an_id_index_leaf_is_named_whole_and_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let every = rows(&db);
    let want_sha = customers_sha256(&db);
    let kind = |p: usize| {
        sqlite3_cli(
            &db,
            &format!(
                "SELECT name || ' ' || pagetype || ' ' || ncell FROM dbstat WHERE pageno = {p}"
            ),
        )
    };
    assert_eq!(kind(215), "customers leaf 28");
    assert_eq!(kind(101), "sqlite_autoindex_customers_1 leaf 176");
    swap_pages(&db, 101, 215);

    // rejected: a lookup by ID (through the ID index) that fails or misses
    // the customer's own row; through the other indexes, one that misses it
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut rejected = BTreeSet::new();
    for row in &every {
        for (lookup, col, error_rejects) in [
            ("customer_id = ?1", 1, true),
            ("card_number = ?1", 2, false),
            ("phone = ?1", 4, false),
            ("email = ?1", 5, false),
        ] {
            if row[col] == Value::Null {
                continue;
            }
            let got: rusqlite::Result<Vec<Vec<Value>>> = conn
                .prepare(&format!("SELECT {COLUMNS} FROM customers WHERE {lookup}"))
                .unwrap()
                .query_map([&row[col]], |r| {
                    (0..11).map(|i| r.get::<_, Value>(i)).collect()
                })
                .unwrap()
                .collect();
            let miss = match got {
                Ok(rows) => !rows.contains(row),
                Err(_) => error_rejects,
            };
            if miss {
                let Value::Text(id) = &row[1] else {
                    panic!("{row:?}")
                };
                rejected.insert(id.clone());
            }
        }
    }
    assert_eq!(rejected.len(), 203);

    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let named: BTreeSet<String> = strings(&j["affected_customer_ids"]).into_iter().collect();
    assert_eq!(named, rejected);
    let swapped: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "pages_swapped")
        .collect();
    assert_eq!(swapped.len(), 1, "{j:#}");
    assert_eq!(swapped[0]["pages"], serde_json::json!([101, 215]));
    assert_eq!(swapped[0]["severity"], "error");
    // the 28 rows of the customer leaf, every one rejected
    assert_eq!(swapped[0]["count"], 28);

    let r = repair_json(&db, &[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(stock_integrity_check(&db), "ok");
    assert_eq!(customers_sha256(&db), want_sha);
    let c = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(c.code(), 0, "{}", c.show());
}
