//! `custodian repair`, the paths issue 9 found untested: another table and
//! ID column, the newest of several snapshots, the verification's row-count
//! guard, a kill during the table rebuild, a WAL-mode writer, a failing
//! backup folder and a full disk, a hot journal. Exact results against the
//! fixture builder's truth and the stock `sqlite3`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

use super::repair::{
    Setup, assert_found_through_every_index, customers_sha256, stock_integrity_check,
};
use super::support::{
    bin, fixture_copy, fixtures, require_tool, run, snapshot_statuses, sqlite3_cli, strings, truth,
};

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn set_mtime(path: &Path, secs_since_epoch: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs_since_epoch))
        .unwrap();
}

/// Another table name and ID column (`--table clients --id-column
/// client_no`): the same damage is found, repaired and verified. The
/// database is the stale_pk_page fixture with its customer table and ID
/// column renamed by SQLite (the index contents are untouched, so the
/// fixture's truth still holds).
#[test]
fn another_table_and_id_column_are_checked_and_repaired() {
    let name = "stale_pk_page";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(name, dir.path());
    let snap = dir.path().join("nightly.db");
    std::fs::copy(fixtures().join(format!("{name}.snap.db")), &snap).unwrap();
    for f in [&db, &snap] {
        let c = Connection::open(f).unwrap();
        c.execute_batch(
            "ALTER TABLE customers RENAME TO clients; ALTER TABLE clients RENAME COLUMN customer_id TO client_no;",
        )
        .unwrap();
    }
    let pk = "sqlite_autoindex_clients_1";
    // the stock CLI sees the same damage under the new names
    let ic = sqlite3_cli(&db, "PRAGMA integrity_check");
    assert!(ic.contains(&format!("missing from index {pk}")), "{ic}");
    let opts = ["--table", "clients", "--id-column", "client_no"];
    let affected = strings(&t["affected_customer_ids"]);

    let mut args = vec!["check", db.to_str().unwrap(), "--json", "-"];
    args.extend(opts);
    let r = run(&args, dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["affected_customer_ids"]), affected);
    assert_eq!(j["coverage"]["table"], "clients");
    assert_eq!(j["coverage"]["id_column"], "client_no");
    let missing: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "index_entry_missing")
        .collect();
    assert_eq!(missing.len(), 1, "{j}");
    assert_eq!(missing[0]["object"], pk);
    assert_eq!(strings(&missing[0]["customer_ids"]), affected);

    let mut args = vec![
        "repair",
        db.to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
        "--backup-dir",
        dir.path().to_str().unwrap(),
        "--json",
        "-",
    ];
    args.extend(opts);
    let r = run(&args, dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "repaired");
    assert_eq!(stock_integrity_check(&db), "ok");
    // every previously rejected customer is found by SQLite through the
    // rebuilt ID index, as the POS would look it up
    let c = Connection::open(&db).unwrap();
    for id in &affected {
        let n: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM clients INDEXED BY {pk} WHERE client_no = ?1"),
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{id}");
    }
    let rows: i64 = c
        .query_row("SELECT count(*) FROM clients NOT INDEXED", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as u64, t["customers_total"].as_u64().unwrap());
    drop(c);
    let mut args = vec!["check", db.to_str().unwrap()];
    args.extend(opts);
    assert_eq!(run(&args, dir.path()).code(), 0);
}

/// Several snapshots: the newest good one is used, by the time its
/// manifest records, else by modification time; a newer damaged one and a
/// newer one whose table has other columns are skipped, each with its
/// reason. The rows restored show which snapshot they came from: the older
/// good snapshot carries different balances for the lost customers.
#[test]
fn the_newest_good_snapshot_is_chosen() {
    let name = "damaged_table_leaf";
    let t = truth(name);
    let s = Setup::new(name);
    let snaps = s.dir.path().join("snaps");
    let good = snaps.join(format!("{name}.snap.db"));
    let lost = strings(&t["lost_customer_ids"]);
    assert_eq!(lost.len(), 27);
    // older, good, but with other balances for the lost customers
    let older = snaps.join("a-older.db");
    std::fs::copy(&good, &older).unwrap();
    let c = Connection::open(&older).unwrap();
    for id in &lost {
        c.execute(
            "UPDATE customers SET balance_cents = balance_cents + 777 WHERE customer_id = ?1",
            [id],
        )
        .unwrap();
    }
    drop(c);
    // newer, damaged: one index page zeroed
    let damaged = snaps.join("c-damaged.db");
    std::fs::copy(fixtures().join("zeroed_index_page.db"), &damaged).unwrap();
    // newer still, clean, but its customer table has another column
    let other = snaps.join("d-other-columns.db");
    std::fs::copy(&good, &other).unwrap();
    let c = Connection::open(&other).unwrap();
    c.execute_batch("ALTER TABLE customers ADD COLUMN loyalty TEXT")
        .unwrap();
    drop(c);
    set_mtime(&older, 1_600_000_000);
    set_mtime(&good, 1_700_000_000);
    set_mtime(&damaged, 1_750_000_000);
    set_mtime(&other, 1_760_000_000);

    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["snapshot_used"], good.to_str().unwrap());
    let statuses = snapshot_statuses(&j);
    let p = |f: &Path| f.to_str().unwrap().to_string();
    let (other, damaged, good, older) = (p(&other), p(&damaged), p(&good), p(&older));
    assert_eq!(
        statuses,
        vec![
            (other.as_str(), "skipped"),
            (damaged.as_str(), "skipped"),
            (good.as_str(), "good"),
            (older.as_str(), "good"),
        ],
        "newest first: {j}"
    );
    let reasons: Vec<&str> = j["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].contains("other columns") && reasons[0].contains("loyalty"),
        "{reasons:?}"
    );
    // the reason names the snapshot's own damage, from its fixture's truth
    // (the first error check finds: the zeroed page of the damaged index)
    let dt = truth("zeroed_index_page");
    let want = format!(
        "damaged itself: page {}:",
        dt["damage"]["pages"][0].as_u64().unwrap()
    );
    assert!(reasons[1].starts_with(&want), "{want} in {reasons:?}");
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_after_repair_sha256"].as_str().unwrap(),
        "the rows came from the newest good snapshot"
    );

    // A manifest's time outranks the file time: the older copy, recorded as
    // taken last, is chosen, and its balances are what is restored.
    let s = Setup::new(name);
    let snaps = s.dir.path().join("snaps");
    let good = snaps.join(format!("{name}.snap.db"));
    let older = snaps.join("a-older.db");
    std::fs::copy(&good, &older).unwrap();
    let c = Connection::open(&older).unwrap();
    c.execute_batch("UPDATE customers SET balance_cents = balance_cents + 777")
        .unwrap();
    drop(c);
    set_mtime(&older, 1_600_000_000);
    set_mtime(&good, 1_700_000_000);
    let manifest = snaps.join("a-older.db.manifest.json");
    std::fs::write(
        &manifest,
        r#"{"created_at": "2024-05-01T00:00:00Z", "verdict": "clean"}"#,
    )
    .unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["snapshot_used"], older.to_str().unwrap());
    let c = Connection::open(&s.db).unwrap();
    let snap = Connection::open(&good).unwrap();
    for id in &lost {
        let (now, then): (i64, i64) = (
            c.query_row(
                "SELECT balance_cents FROM customers WHERE customer_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap(),
            snap.query_row(
                "SELECT balance_cents FROM customers WHERE customer_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap(),
        );
        assert_eq!(now, then + 777, "{id}: restored from the manifest's newest");
    }
}

/// Only the SQLite files directly inside a snapshot folder are candidates:
/// not a text file, not a file shorter than a header, not the hidden
/// temporary file of an unfinished `custodian snapshot` (a whole SQLite
/// file here, newest of all, with other balances), not a snapshot in a
/// subfolder. The report lists the one real snapshot, and the restored rows
/// are its rows (the fixture's truth), not the unfinished file's.
#[test]
fn only_the_sqlite_files_directly_in_a_snapshot_folder_are_candidates() {
    let name = "damaged_table_leaf";
    let t = truth(name);
    let s = Setup::new(name);
    let snaps = s.dir.path().join("snaps");
    let good = snaps.join(format!("{name}.snap.db"));
    std::fs::write(
        snaps.join("notes.txt"),
        "nightly snapshots of the customer database, kept 7 days\n",
    )
    .unwrap();
    std::fs::write(snaps.join("short.db"), b"SQLite").unwrap();
    let unfinished = snaps.join(format!(".{name}.db.20261203T000000Z.4242.snapshot-tmp"));
    std::fs::copy(&good, &unfinished).unwrap();
    let c = Connection::open(&unfinished).unwrap();
    c.execute_batch("UPDATE customers SET balance_cents = balance_cents + 777")
        .unwrap();
    drop(c);
    std::fs::create_dir(snaps.join("older")).unwrap();
    std::fs::copy(&good, snaps.join("older").join("nightly.db")).unwrap();
    set_mtime(&good, 1_700_000_000);
    set_mtime(&unfinished, 1_760_000_000);

    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let statuses = snapshot_statuses(&j);
    assert_eq!(statuses, vec![(good.to_str().unwrap(), "good")], "{j}");
    assert_eq!(j["snapshot_used"], good.to_str().unwrap());
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_after_repair_sha256"].as_str().unwrap(),
        "the rows came from the finished snapshot"
    );
}

/// The verification counts the rows of a patched copy: a copy that passes
/// the full check but lost a customer (deleted with its index entries, so
/// that nothing else can see it) never replaces the original.
#[test]
fn the_row_count_guard_stops_a_copy_that_lost_a_row() {
    let name = "stale_pk_page";
    let t = truth(name);
    let s = Setup::new(name);
    let before = std::fs::read(&s.db).unwrap();
    let mut a = s.args();
    a.truncate(a.len() - 2);
    // one customer with no transactions, so no reference points at the gap
    let sql = "sql:DELETE FROM customers WHERE rowid = (SELECT min(rowid) FROM customers c \
               WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.customer_id = c.customer_id))";
    let out = Command::new(bin())
        .args(&a)
        .env("CUSTODIAN_TEST_DAMAGE_COPY", sql)
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let total = t["customers_total"].as_u64().unwrap();
    assert!(
        stderr.contains(&format!(
            "the repaired copy holds {} customers, expected {total}",
            total - 1
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read(&s.db).unwrap(),
        before,
        "the original is untouched"
    );
    let failed: Vec<String> = files_in(s.dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".failed"))
        .collect();
    assert_eq!(failed.len(), 1, "the copy is kept for inspection");
    // the kept copy really is short of one row, and otherwise sound
    let kept = s.dir.path().join(&failed[0]);
    assert_eq!(
        sqlite3_cli(&kept, "SELECT count(*) FROM customers"),
        (total - 1).to_string()
    );
    assert_eq!(stock_integrity_check(&kept), "ok");
}

/// SIGKILL at every phase of a table rebuild (a damaged table leaf: the
/// new database is built from salvage and the snapshot): the database holds
/// the original bytes or the verified result; a second repair finishes.
#[test]
fn a_table_rebuild_killed_at_any_phase_leaves_original_or_verified_result() {
    let name = "damaged_table_leaf";
    let t = truth(name);
    let want = t["expected_after_repair_sha256"].as_str().unwrap();
    for phase in ["backup", "build", "verify", "rename", "renamed"] {
        let s = Setup::new(name);
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
                panic!(
                    "{phase}: exited {st:?} before the pause point (are the test hooks built in?)"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = std::fs::read(&s.db).unwrap();
        if phase == "renamed" {
            assert_ne!(now, original, "after the rename the result is in place");
            assert_eq!(customers_sha256(&s.db), want, "{phase}");
            assert_eq!(stock_integrity_check(&s.db), "ok", "{phase}");
            let c = run(&["check", s.db.to_str().unwrap()], s.dir.path());
            assert_eq!(c.code(), 0, "{phase}: {}", c.show());
        } else {
            assert_eq!(
                now, original,
                "{phase}: the database changed before the rename"
            );
        }
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "{phase}: repair after the kill: {}", r.show());
        assert_eq!(customers_sha256(&s.db), want, "{phase}");
        assert_eq!(
            strings(&r.json()["restored_customer_ids"]).len(),
            if phase == "renamed" { 0 } else { 27 },
            "{phase}"
        );
    }
}

/// A POS terminal holding a write transaction on a WAL-mode database:
/// repair answers busy at once (exit 2), and neither the database nor its
/// -wal changes; no backup is taken.
#[test]
fn a_wal_writer_makes_repair_busy_and_changes_nothing() {
    let s = Setup::new("stale_pk_page");
    let w = Connection::open(&s.db).unwrap();
    let mode: String = w
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    w.execute_batch(
        "UPDATE customers SET tier = tier WHERE rowid = 1; \
         BEGIN IMMEDIATE; UPDATE customers SET balance_cents = balance_cents + 1 WHERE rowid % 5 = 0;",
    )
    .unwrap();
    let wal = PathBuf::from(format!("{}-wal", s.db.display()));
    let before = (std::fs::read(&s.db).unwrap(), std::fs::read(&wal).unwrap());
    assert!(
        !before.1.is_empty(),
        "the writer's -wal holds a committed frame"
    );
    let start = Instant::now();
    let r = s.repair(&[]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "busy is answered at once"
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("busy"), "{}", r.show());
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.show());
    assert_eq!(r.json()["verdict"], "failed");
    let after = (std::fs::read(&s.db).unwrap(), std::fs::read(&wal).unwrap());
    assert!(before == after, "database and -wal unchanged");
    assert!(s.backups().is_empty(), "busy: not even a backup");
    // the writer's transaction still commits
    w.execute_batch("COMMIT").unwrap();
}

/// A backup folder that cannot be made (a file stands in its way): exit 2
/// at once, before the check, one line naming it and what is wrong,
/// nothing changed, nothing left behind.
#[test]
fn a_backup_folder_that_cannot_be_made_stops_the_repair() {
    let s = Setup::new("stale_pk_page");
    let before = std::fs::read(&s.db).unwrap();
    let blocker = s.dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let listing = files_in(s.dir.path());
    let b = blocker.display();
    for (dir, want) in [
        (
            blocker.join("backups"),
            format!(
                "custodian: {b}/backups: the backup folder does not exist, and {b}, where it would be made, is a file: nothing was changed\n"
            ),
        ),
        (
            blocker.clone(),
            format!(
                "custodian: {b}: the backup folder is a file, not a folder: nothing was changed\n"
            ),
        ),
    ] {
        let r = run(
            &[
                "repair",
                s.db.to_str().unwrap(),
                "--snapshot",
                s.dir.path().join("snaps").to_str().unwrap(),
                "--backup-dir",
                dir.to_str().unwrap(),
            ],
            s.dir.path(),
        );
        assert_eq!(r.code(), 2, "{}", r.show());
        assert_eq!(r.stderr(), want, "{}", r.show());
        assert_eq!(std::fs::read(&s.db).unwrap(), before);
        assert_eq!(files_in(s.dir.path()), listing, "nothing left behind");
    }
}

/// Runs `script` (sh) in a private mount namespace, where it can mount a
/// small tmpfs: `unshare -rm` (any user, where user namespaces are allowed),
/// else `unshare -m` as root. Fails, saying so, when neither works.
fn in_mount_namespace(script: &str, cwd: &Path) -> std::process::Output {
    require_tool(
        "unshare",
        "a small full filesystem is mounted in a private mount namespace",
    );
    let mut last = String::new();
    for flags in ["-rm", "-m"] {
        let out = Command::new("unshare")
            .arg(flags)
            .args(["sh", "-euc", script])
            .current_dir(cwd)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if err.contains("unshare failed")
            || err.contains("mount: ") && err.contains("permission denied")
        {
            last = err;
            continue;
        }
        return out;
    }
    panic!(
        "cannot make a private mount namespace for the full-disk test (unshare -rm and unshare -m failed): {last}"
    );
}

/// A full disk, on a 512 KiB tmpfs: under the backup folder (the backup
/// cannot be written: exit 2, nothing changed) and under the database's
/// own folder (the work copy cannot be written: exit 3, the original
/// untouched, the backup complete with its checksum).
#[test]
fn a_full_disk_stops_the_repair_and_leaves_the_original() {
    let name = "stale_pk_page";
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(fixtures().join(format!("{name}.db"))).unwrap();
    let snap = fixtures().join(format!("{name}.snap.db"));
    let db_src = fixtures().join(format!("{name}.db"));
    std::fs::create_dir(dir.path().join("full")).unwrap();
    std::fs::create_dir(dir.path().join("roomy")).unwrap();

    // 1. the backup folder is on the full disk
    let script = format!(
        "mount -t tmpfs -o size=512k tmpfs full\n\
         cp '{db}' roomy/pos.db\n\
         code=0; '{bin}' repair roomy/pos.db --snapshot '{snap}' --backup-dir full/backup 2>err || code=$?\n\
         echo \"exit $code\"; cat err\n\
         cmp -s roomy/pos.db '{db}' && echo original-intact\n\
         ls -A roomy\n",
        db = db_src.display(),
        bin = bin(),
        snap = snap.display()
    );
    let out = in_mount_namespace(&script, dir.path());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut l = text.lines();
    assert_eq!(
        l.next(),
        Some("exit 2"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = l.next().unwrap_or_default();
    assert!(
        err.starts_with("custodian: roomy/pos.db: backup failed; nothing was changed:")
            && err.ends_with("No space left on device (os error 28)"),
        "{text}"
    );
    assert_eq!(l.next(), Some("original-intact"), "{text}");
    assert_eq!(
        l.next(),
        Some("pos.db"),
        "nothing beside the database: {text}"
    );
    assert_eq!(l.next(), None, "{text}");

    // 2. the database's folder is on the full disk (room for the database,
    //    not for a second copy of it)
    let script = format!(
        "mount -t tmpfs -o size={size}k tmpfs full\n\
         cp '{db}' full/pos.db\n\
         code=0; '{bin}' repair full/pos.db --snapshot '{snap}' --backup-dir roomy/backup --json roomy/report.json 2>err || code=$?\n\
         echo \"exit $code\"; cat err\n\
         cmp -s full/pos.db '{db}' && echo original-intact\n",
        size = original.len() / 1024 + 200,
        db = db_src.display(),
        bin = bin(),
        snap = snap.display()
    );
    let out = in_mount_namespace(&script, dir.path());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut l = text.lines();
    assert_eq!(
        l.next(),
        Some("exit 3"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = l.next().unwrap_or_default();
    assert!(
        err.starts_with("custodian: full/pos.db: repair stopped:")
            && err.contains("No space left on device (os error 28)")
            && err.ends_with("the original is untouched"),
        "{text}"
    );
    assert_eq!(l.next(), Some("original-intact"), "{text}");
    // the backup, outside the full disk, was a copy (no link across file
    // systems); the original never changed, so, like a linked backup, it is
    // not kept: the report says so
    let backups = files_in(&dir.path().join("roomy/backup"));
    assert_eq!(backups, Vec::<String>::new());
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("roomy/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["verdict"], "failed");
    assert_eq!(report["backup_path"], serde_json::Value::Null);
    let detail = super::support::action_detail(&report, "backup", None);
    assert!(
        detail.starts_with(
            "none kept: the repair stopped before the original was changed, so the copy made at roomy/backup/pos.db."
        ) && detail.ends_with(".backup was removed with the work files"),
        "{detail}"
    );
}

/// The `-journal` a finished commit leaves is not hot: journal_mode=TRUNCATE
/// leaves it empty, PERSIST with its header zeroed, and SQLite rolls back
/// only a journal whose first byte is not zero (pager.c, hasHotJournal).
/// Made by the stock `sqlite3` (a commit of `user_version`), which then
/// reads the database without rolling anything back. Repair goes through,
/// to the truth's rows, and leaves the POS's journal as it was.
#[test]
fn the_journal_a_finished_commit_leaves_is_not_hot() {
    let t = truth("stale_pk_page");
    for mode in ["truncate", "persist"] {
        let s = Setup::new("stale_pk_page");
        assert_eq!(
            sqlite3_cli(
                &s.db,
                &format!("PRAGMA journal_mode={mode}; PRAGMA user_version=7;")
            ),
            mode
        );
        let journal = PathBuf::from(format!("{}-journal", s.db.display()));
        let left = std::fs::read(&journal).unwrap();
        match mode {
            "truncate" => assert!(left.is_empty(), "{mode}"),
            _ => assert!(left.len() > 512 && left[..28] == [0; 28], "{mode}"),
        }
        let before = std::fs::read(&s.db).unwrap();
        assert_eq!(
            sqlite3_cli(&s.db, "SELECT count(*) FROM customers NOT INDEXED"),
            t["customers_total"].to_string(),
            "{mode}"
        );
        assert!(
            std::fs::read(&s.db).unwrap() == before,
            "{mode}: the stock sqlite3 rolled something back"
        );
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "{mode}: {}", r.show());
        assert_eq!(r.json()["verdict"], "repaired", "{mode}");
        assert_eq!(
            customers_sha256(&s.db),
            t["expected_customers_sha256"].as_str().unwrap(),
            "{mode}"
        );
        assert_eq!(stock_integrity_check(&s.db), "ok", "{mode}");
        assert_eq!(sqlite3_cli(&s.db, "PRAGMA user_version"), "7", "{mode}");
        assert!(
            std::fs::read(&journal).unwrap() == left,
            "{mode}: the journal"
        );
    }
}

/// A write interrupted in rollback-journal mode leaves a hot journal that
/// SQLite must roll back first: repair refuses (exit 2, one line), and the
/// database and its journal are left exactly as they were.
#[test]
fn a_hot_journal_stops_the_repair_and_changes_nothing() {
    require_tool("sqlite3", "it plays the writer that dies mid-transaction");
    let s = Setup::new("stale_pk_page");
    let mut child = Command::new("sqlite3")
        .arg(&s.db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"PRAGMA cache_size=5;\nBEGIN;\nUPDATE customers SET name = name || 'x';\nSELECT 1;\n")
            .unwrap();
        stdin.flush().unwrap();
    }
    let journal = PathBuf::from(format!("{}-journal", s.db.display()));
    let start = Instant::now();
    while std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(start.elapsed().as_secs() < 20, "the writer never spilled");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let before = (
        std::fs::read(&s.db).unwrap(),
        std::fs::read(&journal).unwrap(),
    );
    let listing = files_in(s.dir.path());
    let r = s.repair(&[]);
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("hot journal"), "{}", r.show());
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.show());
    let after = (
        std::fs::read(&s.db).unwrap(),
        std::fs::read(&journal).unwrap(),
    );
    assert!(before == after, "nothing was rolled back or changed");
    assert!(s.backups().is_empty());
    assert_eq!(files_in(s.dir.path()), listing, "no work file either");
    // once SQLite has rolled the write back (the stock CLI does, on its
    // first read), the content is the truth's again and the repair goes through
    let t = truth("stale_pk_page");
    assert_eq!(
        sqlite3_cli(&s.db, "SELECT count(*) FROM customers NOT INDEXED"),
        t["customers_total"].to_string()
    );
    assert_eq!(std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0), 0);
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_found_through_every_index(
        &s.db,
        &strings(&truth("stale_pk_page")["affected_customer_ids"]),
    );
}
