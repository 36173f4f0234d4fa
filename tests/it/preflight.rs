//! `custodian preflight`: go on a healthy database with a fresh snapshot;
//! no-go with its own reason for each failed condition; a config naming a
//! missing column is exit 2; `--baseline` then `--compare` names exactly the
//! customers an "upgrade" made unfindable or changed without an update.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::Connection;

use super::support::{Run, fixture_copy, fixtures, run, strings, truth};

fn lines(r: &Run) -> Vec<String> {
    r.stdout().lines().map(str::to_string).collect()
}

/// A fresh verified snapshot: a copy of the fixture's nightly snapshot in `snaps/`.
/// `custodian preflight healthy.db --snapshot snaps` in `dir`.
fn preflight_healthy(dir: &Path) -> Run {
    run(&["preflight", "healthy.db", "--snapshot", "snaps"], dir)
}

/// Copies the fixture's snapshot to `dir/snaps/nightly.db`; returns that path.
fn fresh_snapshot(dir: &Path, fixture: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("snaps")).unwrap();
    let snap = dir.join("snaps/nightly.db");
    std::fs::copy(fixtures().join(format!("{fixture}.snap.db")), &snap).unwrap();
    snap
}

const SCHEMA_OK: &str = "ok: schema: table customers with ID column customer_id";
const WAL_OK: &str =
    "ok: no uncheckpointed WAL: the database file holds every committed transaction";

fn assert_space_ok(line: &str, db_bytes: &str) {
    assert!(
        line.starts_with("ok: free space in .: ")
            && line.ends_with(&format!(
                "bytes (2 × {db_bytes} bytes: a backup and a rebuilt copy)"
            )),
        "{line}"
    );
}

#[test]
fn go_on_a_healthy_database_with_a_fresh_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    std::fs::create_dir(dir.path().join("snaps")).unwrap();
    let s = run(&["snapshot", "healthy.db", "--out", "snaps"], dir.path());
    assert_eq!(s.code(), 0, "{}", s.show());
    let before = std::fs::read(dir.path().join("healthy.db")).unwrap();

    let r = preflight_healthy(dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    let l = lines(&r);
    assert_eq!(l.len(), 7, "{}", r.show());
    assert_eq!(l[0], "healthy.db: go");
    assert_eq!(l[1], SCHEMA_OK);
    assert_eq!(
        l[2],
        "ok: the database is clean (2,020 customers, 5 indexes compared)"
    );
    assert!(
        l[3].starts_with("ok: verified snapshot snaps/healthy.db.")
            && l[3].ends_with(".snapshot.db, 0 h old (limit 24 h)"),
        "{}",
        l[3]
    );
    assert_space_ok(&l[4], "1,015,808");
    assert_eq!(l[5], WAL_OK);
    assert_eq!(l[6], "ok: no other process holds a write transaction open");

    let j = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(j.code(), 0, "{}", j.show());
    let v = j.json();
    assert_eq!(v["command"], "preflight");
    assert_eq!(v["verdict"], "go");
    let conds: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["object"].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(c, _)| c.starts_with("preflight_"))
        .collect();
    let want: Vec<(String, String)> = [
        "schema",
        "database_clean",
        "snapshot_recent",
        "disk_space",
        "wal_checkpointed",
        "no_open_write",
    ]
    .iter()
    .map(|o| ("preflight_passed".to_string(), o.to_string()))
    .collect();
    assert_eq!(conds, want);
    // read-only: the database's bytes are unchanged, no -wal appeared
    assert_eq!(
        std::fs::read(dir.path().join("healthy.db")).unwrap(),
        before
    );
    assert!(!dir.path().join("healthy.db-wal").exists());
}

#[test]
fn no_go_on_a_damaged_database() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("stale_pk_page", dir.path());
    fresh_snapshot(dir.path(), "stale_pk_page");
    let r = run(
        &["preflight", "stale_pk_page.db", "--snapshot", "snaps"],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let l = lines(&r);
    assert_eq!(l[0], "stale_pk_page.db: no-go (1 condition failed)");
    assert_eq!(l[1], SCHEMA_OK);
    assert_eq!(
        l[2],
        "no-go: the database is damaged: 16 customers would be rejected by the POS, 2 error \
         findings (run `custodian check stale_pk_page.db`)"
    );
    assert_eq!(
        l[3],
        "ok: verified snapshot snaps/nightly.db, 0 h old (limit 24 h)"
    );
    assert_space_ok(&l[4], "1,011,712");
    assert_eq!(l[5], WAL_OK);

    let j = run(
        &[
            "preflight",
            "stale_pk_page.db",
            "--snapshot",
            "snaps",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(j.code(), 1);
    let v = j.json();
    assert_eq!(v["verdict"], "no_go");
    let failed: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "preflight_failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["object"], "database_clean");
    let mut want =
        strings(&truth("stale_pk_page")["affected_by_index"]["sqlite_autoindex_customers_1"]);
    want.sort();
    assert_eq!(strings(&failed[0]["customer_ids"]), want);
}

#[test]
fn no_go_without_a_snapshot_young_enough() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let snap = fresh_snapshot(dir.path(), "healthy");
    let two_days = SystemTime::now() - Duration::from_secs(48 * 3600 + 60);
    std::fs::File::options()
        .write(true)
        .open(&snap)
        .unwrap()
        .set_modified(two_days)
        .unwrap();
    let r = preflight_healthy(dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let l = lines(&r);
    assert_eq!(l[0], "healthy.db: no-go (1 condition failed)");
    assert_eq!(
        l[3],
        "no-go: no verified snapshot younger than 24 h: the newest, snaps/nightly.db, is 48 h old"
    );
    // a longer --max-age accepts it
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--max-age",
            "72",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        lines(&r)[3],
        "ok: verified snapshot snaps/nightly.db, 48 h old (limit 72 h)"
    );

    // the time recorded in a manifest wins over a fresh mtime
    std::fs::File::options()
        .write(true)
        .open(&snap)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    let thirty_h_ago = SystemTime::now() - Duration::from_secs(30 * 3600 + 60);
    let secs = thirty_h_ago
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let created = rfc3339(secs);
    std::fs::write(
        dir.path().join("snaps/nightly.db.manifest.json"),
        format!("{{\"created_at\": \"{created}\", \"verdict\": \"clean\"}}"),
    )
    .unwrap();
    let r = preflight_healthy(dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(
        lines(&r)[3],
        "no-go: no verified snapshot younger than 24 h: the newest, snaps/nightly.db, is 30 h old"
    );

    // no snapshot at all
    std::fs::create_dir(dir.path().join("none")).unwrap();
    let r = run(
        &["preflight", "healthy.db", "--snapshot", "none"],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(
        lines(&r)[3],
        "no-go: no verified snapshot younger than 24 h: no snapshot file found"
    );
}

/// A snapshot whose customer table shares some columns with the live one
/// but neither holds all of the other's (a column renamed) does not serve:
/// it is skipped with its columns named, as SQLite lists them. Its
/// superset (a column the live table lacks) and subset (one column fewer)
/// both serve.
#[test]
fn a_snapshot_with_a_renamed_column_does_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let snap = fresh_snapshot(dir.path(), "healthy");
    let c = Connection::open(&snap).unwrap();
    c.execute_batch("ALTER TABLE customers RENAME COLUMN balance_cents TO credit_cents")
        .unwrap();
    let cols: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('customers')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(c);
    assert!(cols.contains(&"credit_cents".to_string()), "{cols:?}");
    let r = preflight_healthy(dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let l = lines(&r);
    assert_eq!(l[0], "healthy.db: no-go (1 condition failed)");
    assert_eq!(
        l[3],
        format!(
            "no-go: no verified snapshot younger than 24 h: snaps/nightly.db: its customers table has other columns ({})",
            cols.join(", ")
        )
    );

    // a superset of the live columns serves, and so does a subset
    for change in [
        "ALTER TABLE customers RENAME COLUMN credit_cents TO balance_cents; ALTER TABLE customers ADD COLUMN loyalty TEXT",
        "ALTER TABLE customers DROP COLUMN loyalty; ALTER TABLE customers DROP COLUMN balance_cents",
    ] {
        let c = Connection::open(&snap).unwrap();
        c.execute_batch(change).unwrap();
        drop(c);
        let r = preflight_healthy(dir.path());
        assert_eq!(r.code(), 0, "{change}: {}", r.show());
        assert_eq!(
            lines(&r)[3],
            "ok: verified snapshot snaps/nightly.db, 0 h old (limit 24 h)",
            "{change}"
        );
    }
}

/// Seconds since 1970 → YYYY-MM-DDTHH:MM:SSZ (test-side, independent).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[test]
fn no_go_with_an_uncheckpointed_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    fresh_snapshot(dir.path(), "healthy");
    let w = Connection::open(&db).unwrap();
    let m: String = w
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(m, "wal");
    w.execute_batch(
        "PRAGMA wal_autocheckpoint = 0;
         UPDATE customers SET balance_cents = balance_cents + 1, updated_at = '2026-11-27'
           WHERE rowid = 1;",
    )
    .unwrap();
    // `w` stays open: its committed frames are not checkpointed
    let r = preflight_healthy(dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let l = lines(&r);
    assert_eq!(l[0], "healthy.db: no-go (1 condition failed)");
    assert_eq!(
        l[2],
        "ok: the database is clean (2,020 customers, 5 indexes compared)"
    );
    assert!(
        l[5].starts_with("no-go: the -wal holds ")
            && l[5].contains(" committed frame")
            && l[5].contains("not checkpointed into the database file"),
        "{}",
        l[5]
    );
    // checkpointed while the connection stays open: the -wal still has its
    // frames, but SQLite's wal-index says they are all in the file
    let (busy, log, done): (i64, i64, i64) = w
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((busy, log == done), (0, true));
    let r = preflight_healthy(dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        lines(&r)[5],
        format!(
            "ok: no uncheckpointed WAL: the {log} frames of the -wal are all checkpointed into \
             the database file"
        )
    );
    drop(w);
}

#[test]
fn a_config_naming_a_missing_column_or_table_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    fresh_snapshot(dir.path(), "healthy");
    std::fs::write(
        dir.path().join("c.json"),
        "{\"status_column\": \"state\"}\n",
    )
    .unwrap();
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--config",
            "c.json",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().contains(
            "healthy.db: the config names status column \"state\", which table customers does not have"
        ),
        "{}",
        r.show()
    );
    assert_eq!(r.stdout(), "");
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--table",
            "clients",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("no table \"clients\""), "{}", r.show());
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--id-column",
            "cid",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("has no column \"cid\""), "{}", r.show());
}

/// A small POS database with a plain UNIQUE index on the ID (so that one
/// entry can be dropped with SQLite itself).
fn small_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE customers(customer_id TEXT NOT NULL, name TEXT NOT NULL,
           phone TEXT, balance_cents INTEGER NOT NULL, updated_at TEXT NOT NULL);
         CREATE UNIQUE INDEX idx_customers_id ON customers(customer_id);",
    )
    .unwrap();
    for i in 1..=50 {
        c.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4, '2026-11-01')",
            rusqlite::params![
                format!("C{i:012}"),
                format!("Name Person{i}"),
                format!("+1555{i:07}"),
                i * 100
            ],
        )
        .unwrap();
    }
}

#[test]
fn compare_names_exactly_the_customers_an_upgrade_broke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    small_db(&db);
    std::fs::create_dir(dir.path().join("snaps")).unwrap();
    std::fs::copy(&db, dir.path().join("snaps/nightly.db")).unwrap();

    let r = run(
        &[
            "preflight",
            "pos.db",
            "--snapshot",
            "snaps",
            "--baseline",
            "base.json",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let l = lines(&r);
    assert_eq!(l.len(), 8, "{}", r.show());
    assert_eq!(l[6], "ok: baseline of 50 customers written to base.json");
    let base = dir.path().join("base.json");
    assert_eq!(
        std::fs::metadata(&base).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&base).unwrap();
    assert!(
        !text.contains("Person") && !text.contains("+1555"),
        "personal data in the baseline"
    );
    let b: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["customers"].as_array().unwrap().len(), 50);
    assert_eq!(b["customers"][0]["id"], "C000000000001");
    assert_eq!(b["updated_column"], "updated_at");
    // the baseline is never written over an existing file
    let r = run(
        &[
            "preflight",
            "pos.db",
            "--snapshot",
            "snaps",
            "--baseline",
            "base.json",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());

    // the "upgrade": C000000000005 loses its index entry (the index is
    // rebuilt as a partial index without it, then its definition restored);
    // C000000000007 changes without a new updated_at; C000000000009 is a
    // proper update.
    let set_sql = |sql: &str| {
        let c = Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA writable_schema = ON").unwrap();
        c.execute(
            "UPDATE sqlite_schema SET sql = ?1 WHERE name = 'idx_customers_id'",
            [sql],
        )
        .unwrap();
    };
    set_sql(
        "CREATE UNIQUE INDEX idx_customers_id ON customers(customer_id) \
         WHERE customer_id <> 'C000000000005'",
    );
    Connection::open(&db)
        .unwrap()
        .execute_batch("REINDEX idx_customers_id")
        .unwrap();
    set_sql("CREATE UNIQUE INDEX idx_customers_id ON customers(customer_id)");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "UPDATE customers NOT INDEXED SET name = 'Changed Person7' WHERE customer_id = 'C000000000007';
             UPDATE customers NOT INDEXED SET name = 'Moved Person9', updated_at = '2026-11-27'
               WHERE customer_id = 'C000000000009';",
        )
        .unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM customers INDEXED BY idx_customers_id
                 WHERE customer_id = 'C000000000005'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "the test's damage did not take");
    }

    let r = run(
        &[
            "preflight",
            "pos.db",
            "--snapshot",
            "snaps",
            "--compare",
            "base.json",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let l = lines(&r);
    assert_eq!(l[0], "pos.db: no-go (3 conditions failed)");
    assert!(
        l[2].starts_with("no-go: the database is damaged: 1 customer would be rejected"),
        "{}",
        l[2]
    );
    assert_eq!(
        l[6..],
        [
            "ok: the customer table has the baseline's 5 columns".to_string(),
            "no-go: 1 customer of the baseline is no longer found by ID through idx_customers_id: C000000000005"
                .to_string(),
            "no-go: 1 customer changed while updated_at did not: C000000000007".to_string(),
            "ok: no other process holds a write transaction open".to_string(),
        ]
    );
    assert!(!r.stdout().contains("Person"), "{}", r.show());

    let j = run(
        &[
            "preflight",
            "pos.db",
            "--snapshot",
            "snaps",
            "--compare",
            "base.json",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(j.code(), 1);
    let v = j.json();
    assert_eq!(v["verdict"], "no_go");
    let ids_of = |obj: &str| {
        let f = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["object"] == obj)
            .unwrap_or_else(|| panic!("no finding {obj}"));
        strings(&f["customer_ids"])
    };
    assert_eq!(ids_of("baseline_findable"), vec!["C000000000005"]);
    assert_eq!(ids_of("baseline_unchanged"), vec!["C000000000007"]);
    assert!(!j.stdout().contains("Person"));
}
