//! `custodian repair`, the flow and its safety (issue 8 items 1, 6, 7, 9–12):
//! losses that never block a repair, symbolic links, no snapshot, WAL at
//! rest, unwritable places, signals and leftovers. Exact results against
//! the fixture builder's truth and the stock `sqlite3`.

use super::repair::{
    Setup, assert_found_through_every_index, customers_sha256, stock_integrity_check,
};
use std::path::{Path, PathBuf};

use super::support::{run, sqlite3_cli, strings, truth};

/// Issue 8 item 1: one leaf of `customers` zeroed; 2 of its 27 rows are in
/// the snapshot, 25 were registered after it and are named by
/// `transactions.customer_id`. The repair goes through: the 2 are restored,
/// the 25 are listed as unrecoverable, exit 1.
#[test]
fn unrecoverable_customers_never_block_the_repair() {
    let name = "lost_customer_leaf";
    let t = truth(name);
    let s = Setup::new(name);
    let original = std::fs::read(&s.db).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    let lost = strings(&t["unrecoverable_customer_ids"]);
    assert_eq!(lost.len(), 25);
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    let restored = strings(&t["restorable_customer_ids"]);
    assert_eq!(restored.len(), 2);
    assert_eq!(strings(&j["restored_customer_ids"]), restored);
    assert_eq!(stock_integrity_check(&s.db), "ok");
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_after_repair_sha256"].as_str().unwrap()
    );
    assert_found_through_every_index(&s.db, &restored);
    let backup = std::path::PathBuf::from(j["backup_path"].as_str().unwrap());
    assert_eq!(std::fs::read(backup).unwrap(), original);
    // The 25 are still named by transactions: the stock sqlite3 agrees
    // that exactly they have no customer row.
    let gone: Vec<String> = sqlite3_cli(
        &s.db,
        "SELECT DISTINCT customer_id FROM transactions WHERE customer_id NOT IN (SELECT customer_id FROM customers) ORDER BY 1",
    )
    .lines()
    .map(String::from)
    .collect();
    assert_eq!(gone, lost);
}

/// `repair DB` with no `--snapshot`: JSON to stdout, backups in `backup/`.
fn repair_without_snapshot(s: &Setup, extra: &[&str]) -> super::support::Run {
    let db = s.db.display().to_string();
    let backup = s.dir.path().join("backup").display().to_string();
    let mut a = vec![
        "repair",
        db.as_str(),
        "--backup-dir",
        backup.as_str(),
        "--json",
        "-",
    ];
    a.extend_from_slice(extra);
    run(&a, s.dir.path())
}

/// Issue 8 item 7: without a snapshot, repair does everything that needs
/// none, and says what a snapshot would have restored.
#[test]
fn without_a_snapshot_repair_does_what_needs_none() {
    // index damage: needs no snapshot at all
    let s = Setup::new("stale_pk_page");
    let t = truth("stale_pk_page");
    let r = repair_without_snapshot(&s, &[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    assert_eq!(
        j.get("without_snapshot"),
        None,
        "nothing a snapshot would add"
    );
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_found_through_every_index(&s.db, &strings(&t["affected_customer_ids"]));

    // duplicates: the oldest row is kept (here the original, by the truth)
    let s = Setup::new("stale_pk_page_dups");
    let t = truth("stale_pk_page_dups");
    let r = repair_without_snapshot(&s, &[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(
        strings(&j["quarantined_customer_ids"]),
        strings(&t["duplicate_customer_ids"])
    );
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    for (id, d) in t["duplicates"].as_object().unwrap() {
        let kept: Vec<i64> = conn
            .prepare("SELECT rowid FROM customers WHERE customer_id = ?1")
            .unwrap()
            .query_map([id], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let original: Vec<i64> = d["original_rowids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(kept, original, "{id}");
    }
    assert_eq!(
        strings(&j["without_snapshot"]),
        [
            "no snapshot was given: of each customer's duplicate rows the oldest is kept; a snapshot would show which row is the original"
        ]
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");

    // a lost table leaf: every customer on it is unrecoverable, the report
    // says a snapshot would restore them; the rest is rebuilt
    let s = Setup::new("lost_customer_leaf");
    let t = truth("lost_customer_leaf");
    let dry = repair_without_snapshot(&s, &["--dry-run"]);
    assert_eq!(dry.code(), 1, "{}", dry.show());
    assert_eq!(
        strings(&dry.json()["without_snapshot"]),
        [
            "no snapshot was given: rows that index entries or other tables name but no page holds cannot be restored; they will be listed as unrecoverable (a snapshot that has them would restore them)"
        ]
    );
    let r = repair_without_snapshot(&s, &[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    let mut lost = strings(&t["unrecoverable_customer_ids"]);
    lost.extend(strings(&t["restorable_customer_ids"]));
    lost.sort();
    assert_eq!(lost.len(), 27);
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    assert_eq!(strings(&j["restored_customer_ids"]), Vec::<String>::new());
    assert_eq!(
        strings(&j["without_snapshot"]),
        [
            "no snapshot was given: 27 customers that index entries or other tables name but no page holds could not be restored (unrecoverable_customer_ids); a snapshot that has them would restore them"
        ]
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
    let n: i64 = sqlite3_cli(&s.db, "SELECT count(*) FROM customers")
        .parse()
        .unwrap();
    assert_eq!(n, t["customers_total"].as_i64().unwrap());

    // an index whose definition is gone can only come from a snapshot: stop
    let s = Setup::new("index_definition_removed");
    let before = std::fs::read(&s.db).unwrap();
    let r = repair_without_snapshot(&s, &[]);
    assert_eq!(r.code(), 3, "{}", r.show());
    assert!(
        r.stderr().contains("give a snapshot with --snapshot"),
        "{}",
        r.show()
    );
    assert_eq!(std::fs::read(&s.db).unwrap(), before);
    assert!(s.backups().is_empty());
}

/// Issue 8 item 12: a `--snapshot` path that cannot be read is an error:
/// exit 2 at once, one line naming it, nothing changed, no backup.
#[test]
fn an_unreadable_snapshot_path_is_an_error() {
    let s = Setup::new("stale_pk_page_dups");
    let before = std::fs::read(&s.db).unwrap();
    let missing = s.dir.path().join("snaps-typo");
    let under_a_file = s.db.join("x.db");
    for bad in [&missing, &under_a_file] {
        for dry in [false, true] {
            let bad_s = bad.display().to_string();
            let mut a = vec!["--snapshot", bad_s.as_str()];
            if dry {
                a.push("--dry-run");
            }
            let r = s.repair(&a);
            assert_eq!(r.code(), 2, "{}", r.show());
            let err = r.stderr();
            assert_eq!(err.lines().count(), 1, "{}", r.show());
            assert!(
                err.starts_with(&format!(
                    "custodian: {bad_s}: the --snapshot path cannot be read ("
                )),
                "{}",
                r.show()
            );
            assert!(
                err.trim_end().ends_with("; nothing was changed"),
                "{}",
                r.show()
            );
            assert_eq!(std::fs::read(&s.db).unwrap(), before);
            assert!(s.backups().is_empty());
        }
    }
}

/// `DB-wal`, `DB-shm`, `DB-journal` beside a database.
fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Issue 8 item 9: a WAL-mode database at rest (journal_mode=wal, no -wal:
/// the state after the last POS connection closed) repairs like any other.
/// Opening it makes SQLite create an empty -wal; that is no change.
#[test]
fn a_wal_database_at_rest_is_repaired_like_any_other() {
    let s = Setup::new("stale_pk_page");
    let t = truth("stale_pk_page");
    assert_eq!(sqlite3_cli(&s.db, "PRAGMA journal_mode=wal"), "wal");
    assert!(!sidecar(&s.db, "-wal").exists(), "at rest: no -wal");
    let original = std::fs::read(&s.db).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_found_through_every_index(&s.db, &strings(&t["affected_customer_ids"]));
    assert_eq!(sqlite3_cli(&s.db, "PRAGMA journal_mode"), "wal");
    assert_eq!(stock_integrity_check(&s.db), "ok");
    // the backup is the file as it was; an empty -wal holds nothing to back up
    let mut backups: Vec<String> = s
        .backups()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    backups.sort();
    let backup = PathBuf::from(j["backup_path"].as_str().unwrap());
    let stem = backup.file_name().unwrap().to_string_lossy().into_owned();
    let stem = stem.strip_suffix(".backup").unwrap();
    assert_eq!(
        backups,
        [format!("{stem}.backup"), format!("{stem}.sha256")]
    );
    assert_eq!(std::fs::read(&backup).unwrap(), original);
    // and again: now healthy, nothing to do, every time
    let again = s.repair(&[]);
    assert_eq!(again.code(), 0, "{}", again.show());
    assert_eq!(again.json()["verdict"], "clean");
}

/// The names in a folder, sorted (hidden ones too).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The database, its folder and the backups are as they were.
fn assert_untouched(s: &Setup, before: &[u8], names: &[String]) {
    assert_eq!(
        std::fs::read(&s.db).unwrap(),
        before,
        "the database changed"
    );
    assert_eq!(listing(s.dir.path()), names, "files appeared or went");
    assert!(s.backups().is_empty(), "a backup was made");
}

/// Issue 8 item 6 and DESIGN rule 8: a database path that is a symbolic
/// link is repaired where the database lives (backup and work files in its
/// folder) and the link stays a link; a report path that is a link is
/// never written through.
#[test]
fn a_symlinked_database_is_repaired_where_it_lives() {
    let t = truth("stale_pk_page");
    let s = Setup::new("stale_pk_page");
    let real_dir = s.dir.path().join("data");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("pos.db");
    std::fs::rename(&s.db, &real).unwrap();
    let links = s.dir.path().join("pos");
    std::fs::create_dir(&links).unwrap();
    let link = links.join("pos.db");
    std::os::unix::fs::symlink("../data/pos.db", &link).unwrap();
    let original = std::fs::read(&real).unwrap();
    let link_s = link.display().to_string();
    let snaps = s.dir.path().join("snaps").display().to_string();
    let r = run(
        &["repair", &link_s, "--snapshot", &snaps, "--json", "-"],
        s.dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    assert_eq!(j["database"], link_s.as_str(), "the path as given");
    // the link is still the same link; the file it names is repaired
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("../data/pos.db")
    );
    assert_eq!(
        customers_sha256(&real),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(stock_integrity_check(&real), "ok");
    // the backup is beside the real file; nothing else appeared anywhere
    assert_eq!(listing(&links), ["pos.db"]);
    let backup = PathBuf::from(j["backup_path"].as_str().unwrap());
    assert_eq!(
        backup.parent().unwrap(),
        std::fs::canonicalize(&real_dir).unwrap()
    );
    let stem = backup.file_name().unwrap().to_string_lossy().into_owned();
    let stem = stem.strip_suffix(".backup").unwrap();
    assert_eq!(
        listing(&real_dir),
        [
            "pos.db".to_string(),
            format!("{stem}.backup"),
            format!("{stem}.sha256")
        ]
    );
    assert_eq!(std::fs::read(&backup).unwrap(), original);
    assert_eq!(j["actions"][0]["kind"], "symlink");

    // a report path that is a symbolic link: refused up front, the file it
    // names untouched, the database untouched
    let s = Setup::new("stale_pk_page");
    let victim = s.dir.path().join("victim.txt");
    std::fs::write(&victim, "not a report").unwrap();
    let out = s.dir.path().join("repair.md");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    let before = std::fs::read(&s.db).unwrap();
    let names = listing(s.dir.path());
    let r = s.repair(&["--report", out.to_str().unwrap()]);
    assert_eq!(r.code(), 2, "{}", r.show());
    assert_eq!(
        r.stderr(),
        format!(
            "custodian: {}: the report cannot be written there (a symbolic link: custodian never writes through one); nothing was changed\n",
            out.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not a report");
    assert_untouched(&s, &before, &names);
}

/// Runs the binary as the unprivileged user `nobody` (setpriv), for whom
/// file modes hold (root ignores them).
fn run_as_nobody(args: &[&str], cwd: &Path) -> super::support::Run {
    super::support::require_tool("setpriv", "read-only tests run custodian as nobody");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(super::support::bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run setpriv");
    super::support::Run {
        cmd: format!("setpriv (as nobody) custodian {}", args.join(" ")),
        out,
    }
}

/// Issue 8 item 10: a read-only database, database folder or backup
/// folder is refused up front: exit 2 at once, one line naming what is not
/// writable, nothing changed, no backup, no work file; the dry run too.
/// The tests run as root, which file modes do not stop, so custodian runs
/// as `nobody` here (setpriv): the files are root's, mode 0644/0755, and
/// each case gives `nobody` one more place until the repair can run.
#[test]
fn unwritable_places_are_refused_up_front() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let s = Setup::new("stale_pk_page");
    let dir = s.dir.path();
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(dir, 0o755);
    mode(&s.db, 0o644);
    let snaps = dir.join("snaps");
    mode(&snaps, 0o755);
    for e in std::fs::read_dir(&snaps).unwrap() {
        mode(&e.unwrap().path(), 0o644);
    }
    let before = std::fs::read(&s.db).unwrap();
    let db = s.db.display().to_string();
    let snaps = snaps.display().to_string();
    let nobody = Some(65534);
    let refused = |backup_dir: Option<&str>, what: &str, place: &str| {
        for dry in [false, true] {
            let names = listing(dir);
            let mut a = vec![
                "repair",
                db.as_str(),
                "--snapshot",
                snaps.as_str(),
                "--json",
                "-",
            ];
            if let Some(b) = backup_dir {
                a.extend(["--backup-dir", b]);
            }
            if dry {
                a.push("--dry-run");
            }
            let r = run_as_nobody(&a, dir);
            assert_eq!(r.code(), 2, "{}", r.show());
            assert_eq!(
                r.stderr(),
                format!(
                    "custodian: {place}: {what} is not writable (Permission denied (os error 13)); repair must write there: nothing was changed\n"
                ),
                "{}",
                r.show()
            );
            assert_untouched(&s, &before, &names);
        }
    };
    // 1. the database is root's, 0644
    refused(None, "the database", &db);
    // 2. the database is nobody's, its folder root's
    chown(&s.db, nobody, nobody).unwrap();
    refused(None, "the database's folder", &dir.display().to_string());
    // 3. both are nobody's; the backup folder (to be made inside a folder
    //    of root's) is not writable
    chown(dir, nobody, nobody).unwrap();
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    mode(&locked, 0o755);
    let inside = locked.join("backups").display().to_string();
    refused(
        Some(&inside),
        "the backup folder",
        &locked.display().to_string(),
    );
    // 4. everything writable: the same command repairs, as nobody
    let r = run_as_nobody(&["repair", &db, "--snapshot", &snaps, "--json", "-"], dir);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "repaired");
    assert_eq!(stock_integrity_check(&s.db), "ok");
}
