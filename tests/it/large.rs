//! The reference POS database at 200,000 customers (about 96 MB, built by
//! bench/make_reference_db.py with the system's Python): clean as built;
//! then one interior page of `idx_customers_email` zeroed, which damages
//! far more than the 50,000 rows a coarse diff may hold, so check's fine
//! digest pass (2^20 buckets) and its exact diff must find every customer.
//! The truth is independent of custodian: SQLite's own lookup of every
//! customer through the index (the POS's lookup), and the entries under the
//! zeroed page counted from the intact file (dbstat, an index-order scan).

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::support::{make_reference_db, run, sqlite3_cli, strings};

const N: u32 = 200_000;
const INDEX: &str = "idx_customers_email";
/// The root's child whose subtree is zeroed (its dbstat path).
const SUBTREE: &str = "/00a/";

/// Customers whose lookup by email, through the index, does not return
/// their own row (or errors), by SQLite: the POS's view.
fn rejected_by_email_lookup(db: &Path) -> BTreeSet<String> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let rows: Vec<(i64, String, Option<String>)> = c
        .prepare("SELECT rowid, customer_id, email FROM customers NOT INDEXED")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), N as usize);
    let mut lookup = c
        .prepare(&format!(
            "SELECT rowid FROM customers INDEXED BY {INDEX} WHERE email IS ?1"
        ))
        .unwrap();
    let mut run = |email: &Option<String>| -> Option<std::collections::HashSet<i64>> {
        lookup
            .query_map([email], |r| r.get::<_, i64>(0))
            .and_then(|it| it.collect::<Result<_, _>>())
            .ok()
    };
    // About 30,000 customers have no email: one lookup answers for them all.
    let nulls = run(&None);
    let mut out = BTreeSet::new();
    for (rowid, id, email) in rows {
        let found = match &email {
            None => nulls.as_ref().is_some_and(|g| g.contains(&rowid)),
            Some(_) => run(&email).is_some_and(|g| g.contains(&rowid)),
        };
        if !found {
            out.insert(id);
        }
    }
    out
}

/// The rowids of the index entries in the subtree at `path` of the intact
/// file: the subtree holds a contiguous run of the index order, after the
/// entries of the subtrees left of it and the root's separators between them.
fn rowids_under(db: &Path, path: &str) -> Vec<i64> {
    let stat = sqlite3_cli(
        db,
        &format!("SELECT path, ncell FROM dbstat WHERE name = '{INDEX}' ORDER BY path"),
    );
    let (mut before, mut inside, mut separators_before) = (0usize, 0usize, 0usize);
    for line in stat.lines() {
        let (p, n) = line.split_once('|').unwrap();
        let n: usize = n.parse().unwrap();
        if p == "/" {
            continue;
        }
        let child = &p[..5]; // "/xyz/"
        if child == path {
            inside += n;
        } else if child < path {
            before += n;
            if p.len() == 5 {
                separators_before += 1;
            }
        }
    }
    let skip = before + separators_before;
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut rowids: Vec<i64> = c
        .prepare(&format!(
            "SELECT rowid FROM customers INDEXED BY {INDEX} ORDER BY email, rowid LIMIT ?1 OFFSET ?2"
        ))
        .unwrap()
        .query_map([inside as i64, skip as i64], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rowids.len(), inside);
    rowids.sort();
    rowids
}

#[test]
fn the_200k_reference_database_and_a_zeroed_interior_index_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ref-200k.db");
    make_reference_db(N, &db);

    // 1. as built: clean
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "clean");
    assert_eq!(j["findings"], serde_json::json!([]));
    assert_eq!(j["coverage"]["customers_read"], N);
    assert_eq!(
        j["coverage"]["indexes_compared"].as_array().unwrap().len(),
        5
    );
    assert_eq!(j["coverage"]["complete"], true);

    // 2. one interior page of the email index zeroed
    let page: u64 = sqlite3_cli(
        &db,
        &format!("SELECT pageno FROM dbstat WHERE name = '{INDEX}' AND path = '{SUBTREE}'"),
    )
    .parse()
    .unwrap();
    let lost_entries = rowids_under(&db, SUBTREE);
    let damaged = dir.path().join("damaged.db");
    std::fs::copy(&db, &damaged).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&damaged)
            .unwrap();
        f.write_all_at(&[0u8; 4096], (page - 1) * 4096).unwrap();
    }
    let want = rejected_by_email_lookup(&damaged);
    // the number the issue measured, as a guard on the setup itself
    assert_eq!(want.len(), 9_565);
    assert_eq!(lost_entries.len(), 9_563);

    let before = std::fs::read(&damaged).unwrap();
    let r = run(
        &["check", damaged.to_str().unwrap(), "--json", "-"],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        before,
        "check writes nothing"
    );
    let j = r.json();
    let have: BTreeSet<String> = strings(&j["affected_customer_ids"]).into_iter().collect();
    assert_eq!(
        have.len(),
        want.len(),
        "affected: missing {:?}; extra {:?}",
        want.difference(&have).take(5).collect::<Vec<_>>(),
        have.difference(&want).take(5).collect::<Vec<_>>()
    );
    assert_eq!(have, want);
    let missing: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "index_entry_missing")
        .collect();
    assert_eq!(missing.len(), 1, "{}", j["findings"]);
    assert_eq!(missing[0]["object"], INDEX);
    let mut rowids: Vec<i64> = missing[0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rowid"].as_i64().unwrap())
        .collect();
    rowids.sort();
    assert_eq!(
        missing[0]["count"].as_u64(),
        Some(lost_entries.len() as u64)
    );
    assert_eq!(
        rowids, lost_entries,
        "every entry under the zeroed page, exactly"
    );
    let damaged_pages: Vec<u64> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "page_damaged")
        .flat_map(|f| {
            f["pages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
        })
        .collect();
    assert_eq!(damaged_pages, vec![page]);

    // 3. repaired without a snapshot (an index rebuild): every customer is
    //    found again, the rows are the intact file's
    let r = run(
        &[
            "repair",
            damaged.to_str().unwrap(),
            "--backup-dir",
            dir.path().to_str().unwrap(),
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "repaired");
    assert_eq!(rejected_by_email_lookup(&damaged), BTreeSet::new());
    assert_eq!(sqlite3_cli(&damaged, "PRAGMA integrity_check"), "ok");
    let digest = |f: &Path| {
        sqlite3_cli(
            f,
            "SELECT count(*), hex(sha3_query('SELECT rowid, * FROM customers NOT INDEXED ORDER BY rowid')) FROM customers",
        )
    };
    assert_eq!(digest(&damaged), digest(&db));
}
