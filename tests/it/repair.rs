//! `custodian repair`: exact outcomes against the fixture builder's truth,
//! and every safety rule of DESIGN.md, including SIGKILL at each phase.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};

use super::support::{bin, fixture_copy, fixtures, run, strings, truth};

pub(super) const COLUMNS: &str = "customer_id, card_number, name, phone, email, status, tier, balance_cents, created_at, updated_at";

/// Python's `json.dumps` of one value (the fixtures are ASCII).
fn py_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => format!("{f:?}"),
        Value::Text(t) => serde_json::to_string(t).unwrap(),
        Value::Blob(_) => panic!("no blobs in fixtures"),
    }
}

/// The builder's canonical digest of the customer table (fixtures/README.md).
pub(super) fn customers_sha256(db: &Path) -> String {
    customers_sha256_of(
        db,
        &format!("SELECT rowid, {COLUMNS} FROM customers NOT INDEXED"),
    )
}

/// The same digest of the rows `select` gives (rowid, then the columns in
/// the reference schema's order).
pub(super) fn customers_sha256_of(db: &Path, select: &str) -> String {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn.prepare(select).unwrap();
    let mut rows: Vec<(String, i64, String)> = stmt
        .query_map([], |r| {
            let vals: Vec<Value> = (0..11).map(|i| r.get::<_, Value>(i).unwrap()).collect();
            let id = match &vals[1] {
                Value::Text(t) => t.clone(),
                _ => String::new(),
            };
            let line = format!(
                "[{}]",
                vals.iter().map(py_json).collect::<Vec<_>>().join(", ")
            );
            Ok((id, r.get::<_, i64>(0)?, line))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    let text = rows.into_iter().map(|r| r.2).collect::<Vec<_>>().join("\n");
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn stock_integrity_check(db: &Path) -> String {
    super::support::sqlite3_cli(db, "PRAGMA integrity_check")
}

/// A temp folder with the fixture and its snapshot in `snaps/`.
pub(super) struct Setup {
    pub(super) dir: tempfile::TempDir,
    pub(super) db: PathBuf,
}

impl Setup {
    pub(super) fn new(name: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        std::fs::create_dir(dir.path().join("snaps")).unwrap();
        let snap = fixtures().join(format!("{name}.snap.db"));
        if snap.exists() {
            std::fs::copy(
                &snap,
                dir.path().join("snaps").join(format!("{name}.snap.db")),
            )
            .unwrap();
        }
        Setup { dir, db }
    }
    pub(super) fn args(&self) -> Vec<String> {
        vec![
            "repair".into(),
            self.db.display().to_string(),
            "--snapshot".into(),
            self.dir.path().join("snaps").display().to_string(),
            "--backup-dir".into(),
            self.dir.path().join("backup").display().to_string(),
            "--json".into(),
            "-".into(),
        ]
    }
    pub(super) fn repair(&self, extra: &[&str]) -> super::support::Run {
        let mut a = self.args();
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&a, self.dir.path())
    }
    pub(super) fn backups(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("backup"))
            .map(|rd| rd.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }
}

/// Every customer named by the truth is found through every index of the
/// repaired database, by SQLite itself. A customer no longer in the table
/// must be gone from every index that holds the ID too (no lookup returns a
/// row); those IDs are returned, for the caller to compare with the truth.
pub(super) fn assert_found_through_every_index(db: &Path, ids: &[String]) -> Vec<String> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let indexes: Vec<(String, String)> = conn
        .prepare("SELECT name, (SELECT group_concat(name, ',') FROM pragma_index_info(s.name)) FROM sqlite_schema s WHERE type = 'index' AND tbl_name = 'customers'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(indexes.len() >= 5, "{indexes:?}");
    let mut absent = Vec::new();
    for id in ids {
        let row: Option<(i64, Vec<Value>)> = conn
            .query_row(
                &format!(
                    "SELECT rowid, {COLUMNS} FROM customers NOT INDEXED WHERE customer_id = ?1"
                ),
                [id],
                |r| {
                    Ok((
                        r.get(0)?,
                        (1..11).map(|i| r.get::<_, Value>(i).unwrap()).collect(),
                    ))
                },
            )
            .ok();
        let Some((rowid, _)) = row else {
            for (name, cols) in &indexes {
                let Some(pos) = cols.split(',').position(|c| c == "customer_id") else {
                    continue;
                };
                if pos != 0 {
                    continue;
                }
                let got: Vec<i64> = conn
                    .prepare(&format!(
                        "SELECT rowid FROM customers INDEXED BY {name} WHERE customer_id = ?1"
                    ))
                    .unwrap()
                    .query_map([id], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert!(
                    got.is_empty(),
                    "{id} is not in the table, yet {name} leads to rows {got:?}"
                );
            }
            absent.push(id.clone());
            continue;
        };
        for (name, cols) in &indexes {
            let cols: Vec<&str> = cols.split(',').collect();
            let conds: Vec<String> = cols
                .iter()
                .map(|c| format!("{c} IS (SELECT {c} FROM customers NOT INDEXED WHERE rowid = ?1)"))
                .collect();
            let got: Vec<i64> = conn
                .prepare(&format!(
                    "SELECT rowid FROM customers INDEXED BY {name} WHERE {}",
                    conds.join(" AND ")
                ))
                .unwrap()
                .query_map([rowid], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                got.contains(&rowid),
                "{id} (row {rowid}) not found through {name}"
            );
        }
    }
    absent
}

struct Case {
    fixture: &'static str,
    exit: i32,
    verdict: &'static str,
}

const CASES: &[Case] = &[
    Case {
        fixture: "stale_pk_page",
        exit: 0,
        verdict: "repaired",
    },
    Case {
        fixture: "stale_pk_page_dups",
        exit: 1,
        verdict: "repaired_with_losses",
    },
    Case {
        fixture: "stale_secondary_page",
        exit: 0,
        verdict: "repaired",
    },
    Case {
        fixture: "zeroed_index_page",
        exit: 0,
        verdict: "repaired",
    },
    Case {
        fixture: "garbage_index_page",
        exit: 0,
        verdict: "repaired",
    },
    Case {
        fixture: "surplus_index_entries",
        exit: 0,
        verdict: "repaired",
    },
    Case {
        fixture: "index_definition_removed",
        exit: 0,
        verdict: "repaired",
    },
    Case {
        fixture: "wal_stale_index",
        exit: 0,
        verdict: "repaired",
    },
];

#[test]
fn every_index_damage_fixture_is_repaired_exactly() {
    for case in CASES {
        let s = Setup::new(case.fixture);
        let t = truth(case.fixture);
        let original = std::fs::read(&s.db).unwrap();
        let r = s.repair(&[]);
        assert_eq!(r.code(), case.exit, "{}: {}", case.fixture, r.show());
        let j = r.json();
        assert_eq!(j["verdict"], case.verdict, "{}", case.fixture);
        assert_eq!(j["command"], "repair");
        // the exact intended content, by the builder's own digest
        assert_eq!(
            customers_sha256(&s.db),
            t["expected_customers_sha256"].as_str().unwrap(),
            "{}: customer rows differ from the intended content",
            case.fixture
        );
        assert_eq!(stock_integrity_check(&s.db), "ok", "{}", case.fixture);
        // customers whose rows are gone stay gone (only surplus index
        // entries named them), every other one is found
        assert_eq!(
            assert_found_through_every_index(&s.db, &strings(&t["affected_customer_ids"])),
            strings(&t["index_only_customer_ids"]),
            "{}",
            case.fixture
        );
        // the check agrees
        let c = run(
            &["check", s.db.to_str().unwrap(), "--json", "-"],
            s.dir.path(),
        );
        assert_eq!(c.code(), 0, "{}: {}", case.fixture, c.show());
        // the backup is the original, byte for byte, with its checksum, mode 0600
        let bk = PathBuf::from(j["backup_path"].as_str().unwrap());
        assert_eq!(std::fs::read(&bk).unwrap(), original, "{}", case.fixture);
        let sha: String = Sha256::digest(&original)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(j["backup_sha256"], sha.as_str());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&bk).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let kinds: Vec<&str> = j["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.first(),
            Some(&"backup"),
            "{}: backup comes first",
            case.fixture
        );
        assert_eq!(kinds.last(), Some(&"swap"), "{}", case.fixture);
        assert!(kinds.contains(&"verify"));
    }
}

#[test]
fn duplicates_keep_the_original_and_quarantine_the_re_registration() {
    let s = Setup::new("stale_pk_page_dups");
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_originals_kept(&s.db, &r.json());
}

/// The common case: the duplicated customers are old ones, whose original
/// rows the snapshot holds (here a snapshot of the damaged file taken
/// before the re-registrations: the re-registered rows deleted and every
/// index rebuilt, which the stock sqlite3 finds sound). The row the
/// snapshot has is kept: still each original, by the builder's truth.
#[test]
fn duplicates_whose_original_is_in_the_snapshot_keep_the_original() {
    let s = Setup::new("stale_pk_page_dups");
    let t = truth("stale_pk_page_dups");
    let snaps = s.dir.path().join("snaps");
    for e in std::fs::read_dir(&snaps).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let snap = snaps.join("after_registration.snap.db");
    std::fs::copy(&s.db, &snap).unwrap();
    let rereg: Vec<String> = t["duplicates"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|d| d["reregistered_rowids"].as_array().unwrap().clone())
        .map(|r| r.as_i64().unwrap().to_string())
        .collect();
    Connection::open(&snap)
        .unwrap()
        .execute_batch(&format!(
            "DELETE FROM customers WHERE rowid IN ({}); REINDEX;",
            rereg.join(", ")
        ))
        .unwrap();
    assert_eq!(stock_integrity_check(&snap), "ok");
    for (id, d) in t["duplicates"].as_object().unwrap() {
        assert_eq!(
            super::support::sqlite3_cli(
                &snap,
                &format!("SELECT rowid FROM customers WHERE customer_id = '{id}'")
            ),
            d["original_rowids"][0].to_string(),
            "the snapshot holds {id}'s original row"
        );
    }
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["snapshot_used"], snap.to_str().unwrap());
    assert_originals_kept(&s.db, &j);
}

/// Each duplicated customer of stale_pk_page_dups (the builder's truth)
/// keeps its original row; each re-registration is in quarantine, naming
/// the row kept; the report lists them.
fn assert_originals_kept(db: &Path, j: &serde_json::Value) {
    let t = truth("stale_pk_page_dups");
    let dups = t["duplicates"].as_object().unwrap();
    let mut want_ids: Vec<String> = dups.keys().cloned().collect();
    want_ids.sort();
    assert_eq!(strings(&j["quarantined_customer_ids"]), want_ids);
    let conn = Connection::open(db).unwrap();
    for (id, d) in dups {
        let kept: Vec<i64> = conn
            .prepare("SELECT rowid FROM customers WHERE customer_id = ?1")
            .unwrap()
            .query_map([id], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let original: Vec<i64> = serde_json::from_value(d["original_rowids"].clone()).unwrap();
        assert_eq!(kept, original, "{id}: the original row is kept");
        let moved: Vec<(i64, i64, String)> = conn
            .prepare("SELECT original_rowid, kept_rowid, json_extract(row_json, '$.customer_id') FROM custodian_quarantine WHERE json_extract(row_json, '$.customer_id') = ?1")
            .unwrap()
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let rereg: Vec<i64> = serde_json::from_value(d["reregistered_rowids"].clone()).unwrap();
        assert_eq!(moved.iter().map(|m| m.0).collect::<Vec<_>>(), rereg, "{id}");
        assert!(moved.iter().all(|m| m.1 == original[0] && &m.2 == id));
    }
    let reason: String = conn
        .query_row("SELECT reason FROM custodian_quarantine LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(reason.contains("duplicate key"), "{reason}");
}

#[test]
fn a_healthy_database_is_left_byte_for_byte() {
    let s = Setup::new("healthy");
    let before = std::fs::read(&s.db).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "clean");
    assert_eq!(std::fs::read(&s.db).unwrap(), before);
    assert!(s.backups().is_empty(), "nothing to do: no backup either");
}

#[test]
fn repairing_twice_equals_repairing_once() {
    let s = Setup::new("stale_pk_page_dups");
    assert_eq!(s.repair(&[]).code(), 1);
    let once = std::fs::read(&s.db).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "clean");
    assert_eq!(std::fs::read(&s.db).unwrap(), once);
}

#[test]
fn dry_run_changes_nothing_and_shows_the_plan() {
    let s = Setup::new("stale_pk_page_dups");
    let before = std::fs::read(&s.db).unwrap();
    let r = s.repair(&["--dry-run"]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["plan"]["strategy"], "patch_copy");
    assert_eq!(
        strings(&j["plan"]["rebuild_indexes"]),
        vec!["sqlite_autoindex_customers_1"]
    );
    assert_eq!(
        j["plan"]["dedupe"][0]["index"],
        "sqlite_autoindex_customers_1"
    );
    assert_eq!(j["actions"], serde_json::json!([]));
    assert_eq!(std::fs::read(&s.db).unwrap(), before);
    assert!(s.backups().is_empty());
}

#[test]
fn a_busy_database_is_left_untouched() {
    let s = Setup::new("stale_pk_page");
    let before = std::fs::read(&s.db).unwrap();
    let reader = Connection::open(&s.db).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM transactions;")
        .unwrap();
    let _n: i64 = reader
        .query_row("SELECT count(*) FROM transactions", [], |r| r.get(0))
        .unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("busy"), "{}", r.show());
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    assert_eq!(std::fs::read(&s.db).unwrap(), before);
    assert!(s.backups().is_empty(), "busy: not even a backup");
}

/// The customers a table repair must take from the snapshot, by the truth:
/// the rows lost from the live file (`lost_rowids`) that no page still holds
/// (`salvageable_rowids`, where the builder computed it), identified by
/// rowid in the snapshot, less those nothing surviving names
/// (`untraceable_customer_ids`). Sorted.
fn expected_restored(name: &str, t: &serde_json::Value) -> Vec<String> {
    let ints = |v: &serde_json::Value| -> std::collections::BTreeSet<i64> {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_i64().unwrap()).collect())
            .unwrap_or_default()
    };
    let salvageable = ints(&t["salvageable_rowids"]);
    let untraceable = strings(&t["untraceable_customer_ids"]);
    let snap = Connection::open_with_flags(
        fixtures().join(format!("{name}.snap.db")),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut ids: Vec<String> = ints(&t["lost_rowids"])
        .into_iter()
        .filter(|r| !salvageable.contains(r))
        .filter_map(|r| {
            snap.query_row(
                "SELECT customer_id FROM customers NOT INDEXED WHERE rowid = ?1",
                [r],
                |row| row.get::<_, String>(0),
            )
            .ok()
        })
        .filter(|id| !untraceable.contains(id))
        .collect();
    ids.sort();
    ids
}

/// Table pages damaged: every row that survives in the file is salvaged,
/// the rest that something still names comes from the snapshot.
#[test]
fn table_damage_is_rebuilt_from_salvage_and_the_snapshot() {
    for (name, restored) in [
        ("damaged_table_leaf", 27usize),
        ("damaged_table_interior", 0),
        ("overflow_chain_broken", 2),
    ] {
        let s = Setup::new(name);
        let t = truth(name);
        let original = std::fs::read(&s.db).unwrap();
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "{name}: {}", r.show());
        let j = r.json();
        assert_eq!(j["verdict"], "repaired", "{name}");
        let want = t
            .get("expected_after_repair_sha256")
            .unwrap_or(&t["expected_customers_sha256"])
            .as_str()
            .unwrap();
        assert_eq!(customers_sha256(&s.db), want, "{name}: customer rows");
        assert_eq!(stock_integrity_check(&s.db), "ok", "{name}");
        assert_eq!(
            strings(&j["restored_customer_ids"]).len(),
            restored,
            "{name}"
        );
        assert_eq!(
            strings(&j["unrecoverable_customer_ids"]),
            Vec::<String>::new(),
            "{name}"
        );
        // exactly the customers whose rows no page holds any more, taken
        // from the snapshot by rowid, less those nothing surviving names
        assert_eq!(
            strings(&j["restored_customer_ids"]),
            expected_restored(name, &t),
            "{name}: restored customers"
        );
        if restored > 0 {
            assert!(
                j["snapshot_used"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(".snap.db")),
                "{name}"
            );
        }
        let mut touched = strings(&t["affected_customer_ids"]);
        touched.extend(strings(&t["lost_customer_ids"]));
        touched.sort();
        touched.dedup();
        assert_eq!(
            assert_found_through_every_index(&s.db, &touched),
            strings(&t["untraceable_customer_ids"]),
            "{name}: only customers nothing names are gone"
        );
        let c = run(&["check", s.db.to_str().unwrap()], s.dir.path());
        assert_eq!(c.code(), 0, "{name}: {}", c.show());
        // other tables keep their data: every transaction that survived
        let conn = Connection::open(&s.db).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM transactions", [], |r| r.get(0))
            .unwrap();
        assert!(n > 0, "{name}");
        assert_eq!(
            std::fs::read(PathBuf::from(j["backup_path"].as_str().unwrap())).unwrap(),
            original
        );
    }
}

#[test]
fn a_copy_that_fails_verification_never_replaces_the_original() {
    let s = Setup::new("stale_pk_page");
    let before = std::fs::read(&s.db).unwrap();
    let mut a = s.args();
    a.truncate(a.len() - 2);
    let out = Command::new(bin())
        .args(&a)
        .env("CUSTODIAN_TEST_DAMAGE_COPY", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed its verification"));
    assert_eq!(std::fs::read(&s.db).unwrap(), before);
    let kept: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".failed"))
        .collect();
    assert_eq!(kept.len(), 1, "the failed copy is kept for inspection");
}

#[test]
fn the_repaired_file_keeps_the_original_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new("stale_pk_page");
    std::fs::set_permissions(&s.db, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(s.repair(&[]).code(), 0);
    assert_eq!(
        std::fs::metadata(&s.db).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

/// SIGKILL at each phase: the database holds the original bytes or the
/// fully verified result, never anything else.
#[test]
fn a_repair_killed_at_any_phase_leaves_original_or_verified_result() {
    let t = truth("stale_pk_page");
    for phase in ["backup", "build", "verify", "rename", "renamed"] {
        let s = Setup::new("stale_pk_page");
        let original = std::fs::read(&s.db).unwrap();
        let marker = s.dir.path().join("paused");
        let mut a = s.args();
        a.truncate(a.len() - 2);
        let mut child = Command::new(bin())
            .args(&a)
            .env("CUSTODIAN_PAUSE_AT", phase)
            .env("CUSTODIAN_PAUSE_FILE", &marker)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !marker.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{phase}: never reached"
            );
            if let Some(st) = child.try_wait().unwrap() {
                panic!("{phase}: exited {st:?} before the pause point");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = std::fs::read(&s.db).unwrap();
        if now == original {
            assert!(
                phase != "renamed",
                "after the rename the result must be in place"
            );
            let c = run(&["check", s.db.to_str().unwrap()], s.dir.path());
            assert_eq!(c.code(), 1, "{phase}: the original, still damaged");
        } else {
            assert!(
                phase == "renamed",
                "{phase}: the database changed before the rename"
            );
            assert_eq!(
                customers_sha256(&s.db),
                t["expected_customers_sha256"].as_str().unwrap()
            );
            let c = run(&["check", s.db.to_str().unwrap()], s.dir.path());
            assert_eq!(c.code(), 0, "{phase}: the verified result: {}", c.show());
            assert_eq!(stock_integrity_check(&s.db), "ok");
        }
        // a later repair still works from whatever state was left
        let r = s.repair(&[]);
        assert!(
            r.code() == 0,
            "{phase}: repair after the kill: {}",
            r.show()
        );
        assert_eq!(
            customers_sha256(&s.db),
            t["expected_customers_sha256"].as_str().unwrap()
        );
    }
}

#[test]
fn a_damaged_stored_id_is_restored_not_enshrined() {
    let s = Setup::new("flipped_id_byte");
    let t = truth("flipped_id_byte");
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let rv = &j["plan"]["restore_values"][0];
    assert_eq!(rv["rowid"], t["damage"]["rowid"]);
    assert_eq!(rv["stored"], t["damage"]["stored_id"]);
    assert_eq!(rv["restored"], t["damage"]["true_id"]);
    assert!(rv["evidence"].as_str().unwrap().contains("snapshot"));
    assert_eq!(
        strings(&j["restored_customer_ids"]),
        vec![t["damage"]["true_id"].as_str().unwrap().to_string()]
    );
    // Without a snapshot the transactions decide: they name the index's ID
    // and not the stored one.
    let s = Setup::new("flipped_id_byte");
    std::fs::remove_dir_all(s.dir.path().join("snaps")).unwrap();
    std::fs::create_dir(s.dir.path().join("snaps")).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert!(
        j["plan"]["restore_values"][0]["evidence"]
            .as_str()
            .unwrap()
            .contains("transactions.customer_id names")
    );
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    // With nothing to decide by (no snapshot, and the transactions of that
    // customer gone too) a human decides: the repair stops, exit 3, the
    // original untouched (rebuilding the index around the row would make
    // the real customer vanish, which the verification refuses).
    let s = Setup::new("flipped_id_byte");
    std::fs::remove_dir_all(s.dir.path().join("snaps")).unwrap();
    std::fs::create_dir(s.dir.path().join("snaps")).unwrap();
    let conn = Connection::open(&s.db).unwrap();
    conn.execute(
        "DELETE FROM transactions WHERE customer_id = ?1",
        [t["damage"]["true_id"].as_str().unwrap()],
    )
    .unwrap();
    drop(conn);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let d = j["plan"]["needs_decision"][0].as_str().unwrap();
    assert!(
        d.contains(t["damage"]["stored_id"].as_str().unwrap())
            && d.contains(t["damage"]["true_id"].as_str().unwrap()),
        "{d}"
    );
}

#[test]
fn the_repair_report_is_for_a_ticket_and_names_customers_by_id_only() {
    let s = Setup::new("stale_pk_page_dups");
    let md = s.dir.path().join("repair.md");
    let mut a = s.args();
    a.truncate(a.len() - 2);
    a.push("--report".into());
    a.push(md.display().to_string());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = run(&a, s.dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let text = std::fs::read_to_string(&md).unwrap();
    let mut lines = text.lines().filter(|l| !l.is_empty());
    assert_eq!(
        lines.next(),
        Some("# custodian repair: repaired_with_losses")
    );
    assert_eq!(
        lines.next(),
        Some("**16 customers were rejected by the POS before the repair; 0 are after it.**")
    );
    for section in [
        "## What was wrong",
        "## Customers affected",
        "## What was done",
        "## Needs a human decision",
    ] {
        assert!(text.contains(section), "{section}\n{text}");
    }
    // personal data of the quarantined and kept rows never appears
    let conn = Connection::open(fixtures().join("stale_pk_page_dups.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT name, phone, email, card_number FROM customers NOT INDEXED")
        .unwrap();
    let rows: Vec<[Option<String>; 4]> = stmt
        .query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for v in rows.into_iter().flatten().flatten() {
        assert!(!text.contains(&v), "the report shows {v:?}");
    }
}

/// A customer gone from the table and every index (deleted with its index
/// entries) whom the transactions still name: check finds them, repair
/// restores them from the snapshot.
#[test]
fn vanished_customers_are_found_and_restored() {
    let s = Setup::new("healthy");
    std::fs::copy(&s.db, s.dir.path().join("snaps").join("nightly.db")).unwrap();
    let conn = Connection::open(&s.db).unwrap();
    let (id, rowid): (String, i64) = conn
        .query_row(
            "SELECT customer_id, rowid FROM customers WHERE customer_id IN (SELECT customer_id FROM transactions) ORDER BY rowid LIMIT 1 OFFSET 7",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let before = customers_sha256(&s.db);
    conn.execute("DELETE FROM customers WHERE rowid = ?1", [rowid])
        .unwrap();
    drop(conn);
    let c = run(
        &["check", s.db.to_str().unwrap(), "--json", "-"],
        s.dir.path(),
    );
    assert_eq!(c.code(), 1, "{}", c.show());
    let j = c.json();
    let f = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "customer_vanished")
        .cloned()
        .unwrap_or_else(|| panic!("no customer_vanished: {j}"));
    assert_eq!(strings(&f["customer_ids"]), vec![id.clone()]);
    assert_eq!(f["object"], "transactions.customer_id");
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(strings(&r.json()["restored_customer_ids"]), vec![id]);
    assert_eq!(
        customers_sha256(&s.db),
        before,
        "the row is back, with its rowid and values"
    );
    assert_eq!(
        run(&["check", s.db.to_str().unwrap()], s.dir.path()).code(),
        0
    );
}
