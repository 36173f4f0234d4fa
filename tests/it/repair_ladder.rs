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

/// `fixture` copied into a temp folder (with its -wal), `edit` applied to
/// the database's bytes, then repaired with an empty snapshot folder.
fn repaired_after(
    fixture: &str,
    edit: impl FnOnce(&mut Vec<u8>),
) -> (tempfile::TempDir, PathBuf, super::support::Run) {
    let tmp = tempfile::tempdir().unwrap();
    let db = super::support::fixture_copy(fixture, tmp.path());
    let mut bytes = std::fs::read(&db).unwrap();
    edit(&mut bytes);
    std::fs::write(&db, bytes).unwrap();
    std::fs::create_dir(tmp.path().join("snaps")).unwrap();
    let (dbs, snaps) = (
        db.display().to_string(),
        tmp.path().join("snaps").display().to_string(),
    );
    let r = run(
        &["repair", &dbs, "--snapshot", &snaps, "--json", "-"],
        tmp.path(),
    );
    (tmp, db, r)
}

/// A damaged byte in the header's incremental-vacuum flag (offset 64) of a
/// file without pointer maps: the repaired copy failed its own verification
/// on that flag (exit 3). The page lists are now written anew and the flag
/// cleared: every customer as the builder made them, exit 0.
#[test]
fn a_stray_incremental_vacuum_flag_is_cleared() {
    let t = super::support::truth("healthy");
    let (_tmp, db, r) = repaired_after("healthy", |b| b[64] = 0xc2);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "repaired");
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        super::repair::customers_sha256(&db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(&std::fs::read(&db).unwrap()[64..68], &[0, 0, 0, 0]);
    assert_eq!(sqlite3_cli(&db, "PRAGMA auto_vacuum"), "0");
}

/// A damaged byte in the header's text encoding (offset 59: 0x42, which
/// SQLite reads by its two low bits as UTF-16le) over UTF-8 records:
/// SQLite refuses the schema it decodes wrongly, and the repair read that
/// wrong schema (no table `customers`: exit 3). The schema is now read from
/// the pages in the encoding its records read in: every customer as the
/// builder made them, the file UTF-8 again, exit 0.
#[test]
fn a_damaged_text_encoding_is_told_from_the_records() {
    let t = super::support::truth("healthy");
    let (_tmp, db, r) = repaired_after("healthy", |b| b[59] = 0x42);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    assert!(
        super::support::action_detail(&j, "read_schema", Some("sqlite_schema")).contains(
            "the header names text encoding Utf16le, but the schema's records read as Utf8"
        ),
        "{}",
        r.show()
    );
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite3_cli(&db, "PRAGMA encoding"), "UTF-8");
    assert_eq!(
        super::repair::customers_sha256(&db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
}

/// A WAL database (with 64 committed frames) whose file was cut short:
/// SQLite refuses to checkpoint into a file shorter than the database its
/// -wal commits (wal.c), so the repair stopped (exit 3). The file is now
/// first given its missing pages as zeros (what SQLite reads past its end),
/// the checkpoint goes through, and the rebuild keeps what survives: exit
/// 1 (rows were lost with the pages), a file the stock sqlite3 calls ok, no
/// -wal left beside it, and every customer row in it exactly as in the
/// intact fixture (read by the stock sqlite3, -wal included).
#[test]
fn a_truncated_wal_database_is_repaired() {
    let t = super::support::truth("wal_stale_index");
    let (tmp, db, r) = repaired_after("wal_stale_index", |b| b.truncate(138 * 4096));
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    assert!(
        super::support::action_kinds(&j).contains(&"checkpoint"),
        "{}",
        r.show()
    );
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    assert!(!PathBuf::from(wal).exists());
    std::fs::create_dir(tmp.path().join("intact")).unwrap();
    let intact = super::support::fixture_copy("wal_stale_index", &tmp.path().join("intact"));
    let q = "SELECT rowid, * FROM customers ORDER BY rowid";
    let all: std::collections::BTreeSet<String> =
        sqlite3_cli(&intact, q).lines().map(String::from).collect();
    assert_eq!(all.len(), t["customers_total"].as_u64().unwrap() as usize);
    let kept: Vec<String> = sqlite3_cli(&db, q).lines().map(String::from).collect();
    assert!(kept.len() > 1000, "{} rows kept", kept.len());
    for row in &kept {
        assert!(all.contains(row), "not the fixture's row: {row}");
    }
}

/// A WAL database whose page 1 is a stale copy (the snapshot's: a
/// rollback-journal header counting 246 pages) while its -wal commits a
/// database of 247 pages. SQLite replays the -wal all the same (pager.c,
/// `pagerOpenWalIfPresent` looks at no header byte), but its b-tree layer
/// reads no page past the header's valid count (btree.c, `lockBtree`), so
/// the stock sqlite3 finds page 247 out of range; custodian's pager reads
/// the -wal's 247 pages. The work copy was checkpointed by SQLite, which
/// kept the stale count, and the rebuild lost the rows of page 247
/// (repair_property, nightly case 327: customer C056931917558 listed
/// unrecoverable). The -wal's committed frames are now written into the
/// copy by custodian's own WAL index, the stale count set to the -wal's:
/// exit 0, every customer the fixture's builder made (its -wal's included),
/// a file the stock sqlite3 calls ok, no -wal left beside it.
#[test]
fn a_stale_page_one_over_a_wal_keeps_every_committed_page() {
    let t = super::support::truth("wal_stale_index");
    let snap = std::fs::read(super::support::fixtures().join("wal_stale_index.snap.db")).unwrap();
    let (_tmp, db, r) = repaired_after("wal_stale_index", |b| {
        b[..4096].copy_from_slice(&snap[..4096])
    });
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    assert!(!PathBuf::from(wal).exists());
    assert_eq!(
        super::support::action_detail(&j, "wal_frames", None),
        format!(
            "the 64 committed frames of {}-wal (the newest image of 53 pages, a database of 247 pages) were written into the work copy, as SQLite's checkpoint writes them; the original and its -wal were only read; the header's page count 246 (a stale page 1: SQLite reads no page past it) was set to the -wal's 247",
            db.display()
        )
    );
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        sqlite3_cli(&db, "SELECT count(*) FROM customers"),
        t["customers_total"].to_string()
    );
    assert_eq!(
        super::repair::customers_sha256(&db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
}

/// A damaged database header (its 100 bytes zeroed) whose only snapshot
/// was written at another page size (1,024 bytes, by VACUUM, where the file
/// has 4,096): the snapshot's page size does not fit the pages, and the
/// repair stopped (exit 3). The header now takes its page size and reserved
/// bytes from the pages themselves and the rest from the snapshot: every
/// row as it was before the damage (read by the stock sqlite3), exit 0.
#[test]
fn a_damaged_header_takes_its_page_size_from_the_pages_not_a_snapshot_that_disagrees() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("pos.db");
    std::fs::create_dir(tmp.path().join("snaps")).unwrap();
    let snap = tmp.path().join("snaps").join("nightly.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA page_size = 4096;
         CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT);
         CREATE TABLE transactions(txn_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, amount_cents INTEGER NOT NULL);
         CREATE INDEX idx_transactions_customer ON transactions(customer_id);
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 799)
           INSERT INTO customers SELECT printf('C%05d', i), 'name ' || i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1499)
           INSERT INTO transactions SELECT i, printf('C%05d', i % 800), i FROM n;",
    )
    .unwrap();
    drop(c);
    std::fs::copy(&db, &snap).unwrap();
    let s = Connection::open(&snap).unwrap();
    s.execute_batch("PRAGMA page_size = 1024; VACUUM;").unwrap();
    drop(s);
    assert_eq!(sqlite3_cli(&snap, "PRAGMA page_size"), "1024");
    let q = "SELECT rowid, * FROM customers ORDER BY rowid; SELECT * FROM transactions ORDER BY 1";
    let rows = sqlite3_cli(&db, q);
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..100].fill(0);
    std::fs::write(&db, bytes).unwrap();
    let (dbs, snaps) = (db.display().to_string(), snap.display().to_string());
    let r = run(
        &["repair", &dbs, "--snapshot", &snaps, "--json", "-"],
        tmp.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    let mended = super::support::action_detail(&j, "mend_header", None);
    assert!(
        mended.contains("(page size 4096, 0 reserved bytes")
            && mended.ends_with(
                "; the snapshot's page size 1024 (0 reserved bytes) does not fit the file's pages, so the page size and reserved bytes are the pages' own"
            ),
        "{mended}"
    );
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite3_cli(&db, "PRAGMA page_size"), "4096");
    assert_eq!(sqlite3_cli(&db, q), rows);
}

/// `wal_stale_index` copied into `dir` with frame 1 of its -wal damaged
/// (both of its transactions are then ignored); the database and what the
/// stock sqlite3 reads of it ([`CUSTOMERS_BY_ROWID`], on a copy: opening
/// the log replays and checkpoints it).
fn wal_frame_one_damaged(dir: &Path) -> (PathBuf, String) {
    let t = super::support::truth("wal_stale_index");
    let db = super::support::fixture_copy("wal_stale_index", dir);
    let wal = dir.join("wal_stale_index.db-wal");
    let mut w = std::fs::read(&wal).unwrap();
    w[32 + 24 + 100] ^= 0xff; // frame 1's page (after the 32-byte log header and its 24-byte frame header)
    std::fs::write(&wal, w).unwrap();
    let oracle_dir = dir.join("oracle");
    std::fs::create_dir(&oracle_dir).unwrap();
    std::fs::copy(&db, oracle_dir.join("o.db")).unwrap();
    std::fs::copy(&wal, oracle_dir.join("o.db-wal")).unwrap();
    let expected = sqlite3_cli(&oracle_dir.join("o.db"), CUSTOMERS_BY_ROWID);
    assert_eq!(
        expected.lines().count() as u64,
        t["customers_without_wal"].as_u64().unwrap()
    );
    (db, expected)
}

const CUSTOMERS_BY_ROWID: &str = "SELECT rowid, * FROM customers NOT INDEXED ORDER BY rowid";

/// A byte of the first frame of a WAL database's -wal damaged, as a torn
/// write inside the log leaves it: SQLite ignores that frame and every
/// frame after it, so both transactions the -wal commits (12 customers)
/// are lost (the stock sqlite3 reads the database without them). check
/// said nothing of it, and the repair said "repaired" (exit 0) with the 12
/// customers gone (repair_property, nightly case 26). check now names the
/// damaged frame and the commits after it (`wal_invalid`, an error), and
/// the repair keeps what SQLite reads and says what is lost, under
/// `needs_decision`: exit 1.
#[test]
fn a_damaged_wal_frame_is_named_with_the_commits_lost_after_it() {
    let t = super::support::truth("wal_stale_index");
    let tmp = tempfile::tempdir().unwrap();
    let (db, expected) = wal_frame_one_damaged(tmp.path());
    let q = CUSTOMERS_BY_ROWID;
    let dbs = db.display().to_string();
    let c = run(&["check", &dbs, "--json", "-"], tmp.path());
    assert_eq!(c.code(), 1, "{}", c.show());
    let j = c.json();
    let lost: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "wal_invalid" && f["severity"] == "error")
        .collect();
    assert_eq!(lost.len(), 1, "{}", c.show());
    assert_eq!(lost[0]["count"], t["wal_commit_frames"]);
    let message = lost[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "frame 1 of the -wal is damaged: 2 transactions committed after it are ignored"
        ),
        "{message}"
    );

    std::fs::create_dir(tmp.path().join("snaps")).unwrap();
    let snaps = tmp.path().join("snaps").display().to_string();
    let r = run(
        &["repair", &dbs, "--snapshot", &snaps, "--json", "-"],
        tmp.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    let undecided = strings(&j["plan"]["needs_decision"]);
    assert!(
        undecided.iter().any(|n| n.starts_with(message)
            && n.ends_with("not recovered (the backup keeps the -wal as it was)")),
        "{undecided:?}"
    );
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite3_cli(&db, q), expected);
    for id in strings(&t["wal_only_customer_ids"]) {
        assert!(!expected.contains(&id), "{id} is read without the -wal");
    }
    assert_eq!(run(&["check", &dbs], tmp.path()).code(), 0);
}

/// The same damaged -wal under a database header SQLite refuses (its magic
/// string damaged), with the snapshot at hand: the header is mended from
/// the snapshot on a scratch copy and the repair planned from that copy's
/// check, which cannot see the -wal's lost commits (the copy has only the
/// frames SQLite would replay). The plan lost them, and the repair said
/// "repaired" (exit 0) with the 12 customers gone (repair_property,
/// nightly case 2764). The original's `wal_invalid` now goes into the
/// copy's plan: exit 1, the lost commits under `needs_decision`.
#[test]
fn a_damaged_wal_frame_under_a_refused_header_is_named_after_mending() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, expected) = wal_frame_one_damaged(tmp.path());
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[0] = b's'; // "sQLite format 3": SQLite refuses the file
    std::fs::write(&db, &bytes).unwrap();
    let snaps = tmp.path().join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    std::fs::copy(
        super::support::fixtures().join("wal_stale_index.snap.db"),
        snaps.join("wal_stale_index.db.20240301T020000Z.snapshot.db"),
    )
    .unwrap();
    let (dbs, snaps) = (db.display().to_string(), snaps.display().to_string());
    let r = run(
        &["repair", &dbs, "--snapshot", &snaps, "--json", "-"],
        tmp.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    let kinds: Vec<&str> = j["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"mend_header"), "{kinds:?}");
    let undecided = strings(&j["plan"]["needs_decision"]);
    assert_eq!(
        undecided,
        [
            "frame 1 of the -wal is damaged: 2 transactions committed after it are ignored, \
             as SQLite ignores every frame after a damaged one; their changes are lost (the \
             database is read as of frame 0): not recovered (the backup keeps the -wal as it was)"
        ],
        "{}",
        r.show()
    );
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite3_cli(&db, CUSTOMERS_BY_ROWID), expected);
    assert_eq!(run(&["check", &dbs], tmp.path()).code(), 0);
}
