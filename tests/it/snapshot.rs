//! `custodian snapshot`: a consistent, verified copy with a manifest; a
//! damaged database gives a snapshot marked corrupt (exit 1); `--keep`
//! prunes only verified snapshots and never the newest good one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::Value;
use sha2::{Digest, Sha256};

use super::support::{fixture_copy, listing, run};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn rows(db: &Path) -> Vec<Vec<Value>> {
    let c = Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT * FROM customers ORDER BY rowid").unwrap();
    let n = s.column_count();
    s.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The documented content hash, computed independently of custodian: rows in
/// rowid order, each value as tag byte + 8-byte LE integer / length + bytes.
fn customers_sha256(rows: &[Vec<Value>]) -> String {
    let mut h = Sha256::new();
    for r in rows {
        for v in r {
            match v {
                Value::Null => h.update([0u8]),
                Value::Integer(i) => {
                    h.update([1u8]);
                    h.update(i.to_le_bytes());
                }
                Value::Real(f) => {
                    assert!(f.fract() != 0.0, "integral reals are not in the fixtures");
                    h.update([2u8]);
                    h.update(f.to_bits().to_le_bytes());
                }
                Value::Text(t) => {
                    h.update([3u8]);
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t.as_bytes());
                }
                Value::Blob(b) => {
                    h.update([4u8]);
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                }
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn manifest(snapshot: &Path) -> serde_json::Value {
    let p = format!("{}.manifest.json", snapshot.display());
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Runs `custodian snapshot DB --out out [extra]` in `dir`; returns the
/// code, stdout, and the snapshot file named on the first line.
fn snapshot(dir: &Path, db: &str, extra: &[&str]) -> (i32, String, PathBuf) {
    let mut args = vec!["snapshot", db, "--out", "out"];
    args.extend_from_slice(extra);
    let r = run(&args, dir);
    assert!(r.code() == 0 || r.code() == 1, "{}", r.show());
    let out = r.stdout();
    let first = out.lines().next().unwrap_or_default().to_string();
    let path = first
        .split(" → ")
        .nth(1)
        .and_then(|s| s.split(" (").next())
        .unwrap_or_else(|| panic!("{}", r.show()));
    (r.code(), out.clone(), dir.join(path))
}

#[test]
fn snapshot_of_healthy_has_the_same_rows_and_a_true_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let (code, out, snap) = snapshot(dir.path(), "healthy.db", &[]);
    assert_eq!(code, 0, "{out}");
    let name = snap.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        out,
        format!("healthy.db → out/{name} (clean, 2,020 customers)\n")
    );
    // healthy.db.YYYYMMDDTHHMMSSZ.snapshot.db
    let stamp = name
        .strip_prefix("healthy.db.")
        .unwrap()
        .strip_suffix(".snapshot.db")
        .unwrap();
    assert!(
        stamp.len() == 16 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
        "{name}"
    );
    assert_eq!(
        listing(&dir.path().join("out")),
        vec![name.clone(), format!("{name}.manifest.json")]
    );
    assert_eq!(mode(&snap), 0o600);
    assert_eq!(
        mode(Path::new(&format!("{}.manifest.json", snap.display()))),
        0o600
    );

    let source_rows = rows(&db);
    assert_eq!(source_rows.len(), 2020);
    assert_eq!(rows(&snap), source_rows);
    // one self-contained file: a rollback-journal header (bytes 18, 19 = 1)
    let bytes = std::fs::read(&snap).unwrap();
    assert_eq!((bytes[18], bytes[19]), (1, 1));

    let m = manifest(&snap);
    let c = Connection::open(&db).unwrap();
    let txns: i64 = c
        .query_row("SELECT count(*) FROM transactions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(m["schema_version"], 1);
    assert_eq!(m["tool"]["name"], "custodian");
    assert_eq!(m["source"], "healthy.db");
    assert_eq!(m["snapshot"], name.as_str());
    assert_eq!(m["verdict"], "clean");
    assert_eq!(
        m["row_counts"],
        serde_json::json!({"customers": 2020, "transactions": txns})
    );
    assert_eq!(m["customer_table"], "customers");
    assert_eq!(m["customers"], 2020);
    assert_eq!(
        m["customers_sha256"],
        customers_sha256(&source_rows).as_str()
    );
    assert_eq!(m["bytes"], bytes.len() as u64);
    let file_sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(m["sha256"], file_sha.as_str());
    let created = m["created_at"].as_str().unwrap();
    assert!(
        created.len() == 27 && created.ends_with('Z') && created[..4] == stamp[..4],
        "{created}"
    );
}

#[test]
fn snapshot_while_another_connection_writes_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let w = Connection::open(&db).unwrap();
    let m: String = w
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(m, "wal");
    w.execute_batch(
        "PRAGMA wal_autocheckpoint = 0;
         INSERT INTO customers(customer_id, name, created_at, updated_at)
           VALUES ('C999999999901', 'x', '2026-11-27', '2026-11-27');
         BEGIN IMMEDIATE;
         INSERT INTO customers(customer_id, name, created_at, updated_at)
           VALUES ('C999999999902', 'y', '2026-11-27', '2026-11-27');",
    )
    .unwrap();
    // the write transaction stays open while the snapshot is taken
    let (code, out, snap) = snapshot(dir.path(), "healthy.db", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("(clean, 2,021 customers)\n"), "{out}");
    let ids: Vec<String> = rows(&snap)
        .into_iter()
        .filter_map(|r| match &r[0] {
            Value::Text(t) if t.starts_with("C9999") => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec!["C999999999901".to_string()]);
    assert_eq!(manifest(&snap)["verdict"], "clean");
    w.execute_batch("COMMIT").unwrap();
    // the snapshot is one file, not a WAL database
    let names = listing(&dir.path().join("out"));
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn snapshot_of_a_damaged_database_is_kept_but_marked_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("stale_pk_page", dir.path());
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let r = run(
        &["snapshot", "stale_pk_page.db", "--out", "out"],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let names = listing(&dir.path().join("out"));
    assert_eq!(names.len(), 2, "{names:?}");
    let snap = dir.path().join("out").join(&names[0]);
    assert_eq!(
        r.stdout(),
        format!(
            "stale_pk_page.db → out/{} (corrupt: the live database is damaged, 16 customers would be \
             rejected by the POS; kept as evidence, never counted as a good snapshot; run \
             `custodian check stale_pk_page.db`)\n",
            names[0]
        )
    );
    assert!(
        r.stderr()
            .contains("stale_pk_page.db: the database is damaged; the snapshot"),
        "{}",
        r.show()
    );
    assert_eq!(mode(&snap), 0o600);
    let m = manifest(&snap);
    assert_eq!(m["verdict"], "corrupt");
    assert_eq!(m["customers"], 2022);
}

#[test]
fn keep_prunes_the_oldest_verified_snapshots_only() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let mut taken = Vec::new();
    for _ in 0..3 {
        let (code, _, snap) = snapshot(dir.path(), "healthy.db", &[]);
        assert_eq!(code, 0);
        taken.push(snap);
    }
    let (code, out, newest) = snapshot(dir.path(), "healthy.db", &["--keep", "2"]);
    assert_eq!(code, 0, "{out}");
    taken.push(newest);
    let name = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_string();
    let mut want = vec![format!(
        "healthy.db → out/{} (clean, 2,020 customers)",
        name(&taken[3])
    )];
    for old in &taken[..2] {
        for f in [name(old), format!("{}.manifest.json", name(old))] {
            want.push(format!(
                "removed out/{f} (older than the newest 2 verified snapshots)"
            ));
        }
    }
    let mut got: Vec<&str> = out.lines().collect();
    got[1..].sort();
    want[1..].sort();
    assert_eq!(got, want);
    let mut left = vec![
        name(&taken[2]),
        format!("{}.manifest.json", name(&taken[2])),
        name(&taken[3]),
        format!("{}.manifest.json", name(&taken[3])),
    ];
    left.sort();
    assert_eq!(listing(&dir.path().join("out")), left);
}

#[test]
fn keep_never_removes_the_last_good_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = fixture_copy("healthy", dir.path());
    let damaged = fixture_copy("stale_pk_page", dir.path());
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let pos = dir.path().join("pos.db");
    std::fs::copy(&healthy, &pos).unwrap();
    let (code, _, good) = snapshot(dir.path(), "pos.db", &[]);
    assert_eq!(code, 0);
    // the live database is damaged from now on: newer snapshots are corrupt
    std::fs::copy(&damaged, &pos).unwrap();
    for _ in 0..2 {
        let (code, _, _) = snapshot(dir.path(), "pos.db", &[]);
        assert_eq!(code, 1);
    }
    let (code, out, _) = snapshot(dir.path(), "pos.db", &["--keep", "1"]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "nothing may be removed: {out}");
    let names = listing(&dir.path().join("out"));
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(good.exists());

    // a healthy database again: the old good one is pruned, the corrupt ones are not
    std::fs::copy(&healthy, &pos).unwrap();
    let (code, out, newest) = snapshot(dir.path(), "pos.db", &["--keep", "1"]);
    assert_eq!(code, 0, "{out}");
    let g = good.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        vec![
            format!("removed out/{g} (older than the newest 1 verified snapshot)"),
            format!("removed out/{g}.manifest.json (older than the newest 1 verified snapshot)"),
        ]
    );
    assert!(!good.exists() && newest.exists());
    assert_eq!(listing(&dir.path().join("out")).len(), 8);

    // --keep 0 is refused: nothing written, nothing removed
    let r = run(
        &["snapshot", "pos.db", "--out", "out", "--keep", "0"],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().contains("--keep must be at least 1"),
        "{}",
        r.show()
    );
    assert_eq!(listing(&dir.path().join("out")).len(), 8);
}

#[test]
fn a_database_whose_schema_sqlite_refuses_is_still_snapshotted_as_evidence() {
    // schema_page_garbage: page 1's schema cells are random bytes (SQLite:
    // "malformed"); the online backup copies the pages all the same, and the
    // copy is kept, marked corrupt. In WAL mode its header says WAL: the
    // snapshot must be one file (rollback journal) without SQLite parsing
    // the schema to switch it.
    for wal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        fixture_copy("schema_page_garbage", dir.path());
        let db = dir.path().join("schema_page_garbage.db");
        if wal {
            let mut bytes = std::fs::read(&db).unwrap();
            bytes[18] = 2;
            bytes[19] = 2;
            std::fs::write(&db, bytes).unwrap();
        }
        let original = std::fs::read(&db).unwrap();
        let r = run(
            &["snapshot", "schema_page_garbage.db", "--out", "out"],
            dir.path(),
        );
        assert_eq!(r.code(), 1, "wal {wal}: {}", r.show());
        let names = listing(&dir.path().join("out"));
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[1].ends_with(".manifest.json"), "{names:?}");
        let snap = std::fs::read(dir.path().join("out").join(&names[0])).unwrap();
        assert_eq!(snap.len(), original.len());
        // the header's file format bytes say rollback journal; every page
        // after the first, and page 1's schema bytes, are the original's
        assert_eq!(&snap[18..20], &[1, 1]);
        assert_eq!(&snap[100..], &original[100..]);
        assert_eq!(
            manifest(&dir.path().join("out").join(&names[0]))["verdict"],
            "corrupt"
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            original,
            "the live file is untouched"
        );
        assert_eq!(listing(dir.path()), ["out", "schema_page_garbage.db"]);
    }
}

#[test]
fn what_cannot_be_snapshotted_is_exit_2_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    for (name, why) in [
        ("not_a_database", "not a SQLite database"),
        ("empty", "empty file (0 bytes)"),
        (
            "truncated",
            "the online backup failed, no snapshot was written",
        ),
        // a damaged header is a damaged database, as check says, not "not
        // a SQLite database"
        (
            "header_zeroed",
            "the online backup failed, no snapshot was written (run `custodian check header_zeroed.db`)",
        ),
    ] {
        fixture_copy(name, dir.path());
        let db = format!("{name}.db");
        let r = run(&["snapshot", &db, "--out", "out"], dir.path());
        assert_eq!(r.code(), 2, "{}", r.show());
        assert!(
            r.stderr().starts_with(&format!("custodian: {db}: {why}")),
            "{}",
            r.show()
        );
        assert_eq!(r.stdout(), "");
    }
    // a refusal creates nothing, not even the --out folder it was given
    fixture_copy("healthy", dir.path());
    for (args, why) in [
        (
            &["snapshot", "empty.db", "--out", "missing"][..],
            "custodian: empty.db: empty file (0 bytes): not a database\n",
        ),
        (
            &["snapshot", "not_a_database.db", "--out", "missing"],
            "custodian: not_a_database.db: not a SQLite database (no \"SQLite format 3\" header)\n",
        ),
        (
            &[
                "snapshot",
                "healthy.db",
                "--out",
                "missing/deeper",
                "--table",
                "clients",
            ],
            "custodian: healthy.db: no table \"clients\"; tables: customers, transactions (use --table)\n",
        ),
    ] {
        let r = run(args, dir.path());
        assert_eq!(r.code(), 2, "{}", r.show());
        assert_eq!(r.stderr(), why, "{}", r.show());
        assert!(!dir.path().join("missing").exists(), "{}", r.show());
    }
    // nor when SQLite's online backup cannot even start: the folders made
    // for it are removed again (a folder that was there stays)
    std::fs::create_dir(dir.path().join("there")).unwrap();
    for db in ["truncated.db", "header_zeroed.db"] {
        for (out, made) in [
            ("missing/deeper", "missing"),
            ("there/deeper", "there/deeper"),
        ] {
            let r = run(&["snapshot", db, "--out", out], dir.path());
            assert_eq!(r.code(), 2, "{}", r.show());
            let why = format!("custodian: {db}: the online backup failed, no snapshot was written");
            assert!(r.stderr().starts_with(&why), "{}", r.show());
            assert!(!dir.path().join(made).exists(), "{}", r.show());
            assert!(dir.path().join("there").is_dir());
        }
    }
    // --keep 0 (refused by the argument parser), one database or several
    for args in [
        &["snapshot", "healthy.db", "--out", "missing", "--keep", "0"][..],
        &[
            "snapshot",
            "healthy.db",
            "empty.db",
            "--out",
            "missing",
            "--keep",
            "0",
        ],
    ] {
        let r = run(args, dir.path());
        assert_eq!(r.code(), 2, "{}", r.show());
        assert!(!dir.path().join("missing").exists(), "{}", r.show());
    }
    // an --id-column the readable schema lacks is the user's mistake: refused
    // as check refuses it, before a copy is written (it was written, marked
    // unverified, with exit 2)
    let r = run(
        &[
            "snapshot",
            "healthy.db",
            "--out",
            "out",
            "--id-column",
            "cust_id",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().starts_with(
            "custodian: healthy.db: table customers has no column \"cust_id\"; its columns: "
        ),
        "{}",
        r.show()
    );
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.show());
    assert!(listing(&dir.path().join("out")).is_empty());
}
