//! The POS-shaped damage that used to end in exit 3 (issue 8, session 16):
//! pages no object owns, with and without a snapshot. Each database is
//! built here with rusqlite; the truth is what was inserted, read back by
//! the stock sqlite3.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::support::{run, sqlite3_cli, strings};

/// A customer table of 500 rows and a `notes` table of 300 rows whose
/// schema entry is then deleted (writable_schema, schema_version bumped),
/// as a botched migration or a damaged schema page leaves it: its pages
/// belong to no object. Returns the database and the snapshot taken before.
fn orphaned_table(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("pos.db");
    let snap = dir.join("snaps").join("nightly.db");
    std::fs::create_dir(dir.join("snaps")).unwrap();
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT);
         CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 499)
           INSERT INTO customers SELECT printf('C%05d', i), 'name ' || i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 299)
           INSERT INTO notes SELECT i, 'note ' || i || ' ' || hex(zeroblob(20)) FROM n;",
    )
    .unwrap();
    drop(c);
    std::fs::copy(&db, &snap).unwrap();
    let c = Connection::open(&db).unwrap();
    let v: i64 = c
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .unwrap();
    c.execute_batch(&format!(
        "PRAGMA writable_schema = 1; DELETE FROM sqlite_schema WHERE name = 'notes';
         PRAGMA schema_version = {};",
        v + 1
    ))
    .unwrap();
    drop(c);
    (db, snap)
}

/// Pages no object owns that hold a table's rows (a table whose definition
/// is gone) are never freed: the database is rebuilt and every row of them
/// is kept, whole, in custodian_quarantine (exit 1: a person decides where
/// they belong). With or without a snapshot; before this, a repair with a
/// snapshot zeroed them and said "repaired" (exit 0), and one without
/// stopped (exit 3).
#[test]
fn rows_on_pages_no_object_owns_are_kept_in_quarantine() {
    for with_snapshot in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (db, snap) = orphaned_table(tmp.path());
        let notes: Vec<String> =
            sqlite3_cli(&snap, "SELECT id || '|' || body FROM notes ORDER BY id")
                .lines()
                .map(String::from)
                .collect();
        assert_eq!(notes.len(), 300);
        let customers = sqlite3_cli(&snap, "SELECT customer_id, name FROM customers ORDER BY 1");
        let original = std::fs::read(&db).unwrap();
        let (dbs, snaps) = (db.display().to_string(), snap.display().to_string());
        let mut args = vec!["repair", dbs.as_str(), "--json", "-"];
        if with_snapshot {
            args.extend(["--snapshot", snaps.as_str()]);
        }
        let r = run(&args, tmp.path());
        let case = if with_snapshot {
            "with a snapshot"
        } else {
            "without"
        };
        assert_eq!(r.code(), 1, "{case}: {}", r.show());
        let j = r.json();
        assert_eq!(j["verdict"], "repaired_with_losses", "{case}");
        // the leaves of notes, by the stock sqlite3's dbstat of the snapshot
        let leaves: Vec<String> = sqlite3_cli(
            &snap,
            "SELECT pageno FROM dbstat WHERE name = 'notes' AND pagetype = 'leaf' ORDER BY 1",
        )
        .lines()
        .map(String::from)
        .collect();
        let (first, last) = (&leaves[0], &leaves[leaves.len() - 1]);
        assert_eq!(
            last.parse::<usize>().unwrap() - first.parse::<usize>().unwrap() + 1,
            leaves.len(),
            "contiguous leaves: {leaves:?}"
        );
        assert_eq!(
            strings(&j["plan"]["strategy"]["rebuild"]["reasons"]),
            [format!(
                "{} pages no object owns hold table rows (pages {first}–{last}): a table whose definition is lost; its rows are kept in custodian_quarantine",
                leaves.len()
            )],
            "{case}"
        );
        assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok", "{case}");
        // every customer as it was
        assert_eq!(
            sqlite3_cli(&db, "SELECT customer_id, name FROM customers ORDER BY 1"),
            customers,
            "{case}"
        );
        // every note, whole, in the quarantine: rowid and body
        let kept: Vec<String> = sqlite3_cli(
            &db,
            "SELECT original_rowid || '|' || json_extract(row_json, '$.c1') FROM custodian_quarantine ORDER BY original_rowid",
        )
        .lines()
        .map(String::from)
        .collect();
        assert_eq!(kept, notes, "{case}");
        let backup = PathBuf::from(j["backup_path"].as_str().unwrap());
        assert_eq!(std::fs::read(backup).unwrap(), original, "{case}");
    }
}
