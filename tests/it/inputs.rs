//! Inputs that are not what the command needs: a file SQLite keeps beside a
//! database (-wal, -journal, -shm) given as the database, a backup folder
//! whose parent is missing; and what repair says of a WAL database's -wal.

use std::collections::BTreeMap;
use std::path::Path;

use super::support::{action_detail, action_kinds, fixture_copy, run, run_env, truth};

/// Every file in `dir` (and in its folders) with its bytes; a folder as
/// `name/`. What "nothing changed on disk" compares.
fn state(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(format!("{name}/"), Vec::new());
                todo.push(p);
            } else {
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Each command that takes a database path, given `db` (relative to the
/// test folder); `snap` is a good snapshot there.
fn every_command<'a>(db: &'a str, snap: &'a str) -> Vec<Vec<&'a str>> {
    vec![
        vec!["check", db],
        vec!["check", db, "--json", "-"],
        vec!["diagnose", db, "C1"],
        vec!["repair", db, "--backup-dir", "bk"],
        vec!["repair", db, "--snapshot", snap, "--dry-run"],
        vec!["snapshot", db, "--out", "snaps"],
        vec!["preflight", db, "--snapshot", snap],
    ]
}

/// Runs every command on `db` in `dir`: each exits 2 with exactly the line
/// `want` on stderr, nothing on stdout, and leaves every file as it was.
fn refused_by_every_command(dir: &Path, db: &str, want: &str) {
    let before = state(dir);
    for args in every_command(db, "snap.db") {
        let r = run(&args, dir);
        assert_eq!(r.code(), 2, "{}", r.show());
        assert_eq!(r.stderr(), format!("custodian: {want}\n"), "{}", r.show());
        if args.contains(&"--json") {
            // the report a cron job reads says so too
            assert_eq!(r.json()["verdict"], "failed", "{}", r.show());
        } else {
            assert_eq!(r.stdout(), "", "{}", r.show());
        }
        let after = state(dir);
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{}",
            r.show()
        );
        assert!(after == before, "a file changed: {}", r.show());
    }
}

#[test]
fn a_wal_given_as_the_database_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("wal_stale_index", dir.path());
    std::fs::copy(
        super::support::fixtures().join("wal_stale_index.snap.db"),
        dir.path().join("snap.db"),
    )
    .unwrap();
    assert!(db.with_extension("db-wal").exists());
    refused_by_every_command(
        dir.path(),
        "wal_stale_index.db-wal",
        "wal_stale_index.db-wal: a SQLite write-ahead log, not a database: give the database \
         it belongs to (wal_stale_index.db)",
    );
    // the same -wal under another name: told by its bytes, no database named
    std::fs::copy(
        dir.path().join("wal_stale_index.db-wal"),
        dir.path().join("log.bin"),
    )
    .unwrap();
    refused_by_every_command(
        dir.path(),
        "log.bin",
        "log.bin: a SQLite write-ahead log, not a database: give the database it belongs to",
    );
}

/// A database in rollback-journal mode with a transaction left open; `f`
/// gets the open connection's journal path. `synchronous = OFF` makes
/// SQLite write the journal's magic at once (else only at its first sync).
fn with_open_journal(dir: &Path, synchronous_off: bool, f: impl FnOnce(&Path)) {
    let db = dir.join("pos.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE;
         CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO customers SELECT 'C' || i, 'someone' FROM n;",
    )
    .unwrap();
    if synchronous_off {
        conn.execute_batch("PRAGMA synchronous = OFF").unwrap();
    }
    conn.execute_batch("BEGIN; UPDATE customers SET name = 'changed';")
        .unwrap();
    f(&dir.join("pos.db-journal"));
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_rollback_journal_given_as_the_database_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // a hot journal: it starts with the journal magic
    with_open_journal(work.path(), true, |j| {
        std::fs::copy(j, dir.path().join("pos.db-journal")).unwrap();
    });
    std::fs::copy(work.path().join("pos.db"), dir.path().join("pos.db")).unwrap();
    std::fs::copy(work.path().join("pos.db"), dir.path().join("snap.db")).unwrap();
    let journal = std::fs::read(dir.path().join("pos.db-journal")).unwrap();
    assert_eq!(
        journal[..8],
        [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]
    );
    refused_by_every_command(
        dir.path(),
        "pos.db-journal",
        "pos.db-journal: a SQLite rollback journal, not a database: give the database it \
         belongs to (pos.db)",
    );
    // not yet synced: zeros where the magic goes; its name and its header's
    // sector and page sizes tell it
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    with_open_journal(work.path(), false, |j| {
        std::fs::copy(j, dir.path().join("pos.db-journal")).unwrap();
    });
    std::fs::copy(work.path().join("pos.db"), dir.path().join("snap.db")).unwrap();
    let journal = std::fs::read(dir.path().join("pos.db-journal")).unwrap();
    assert_eq!(journal[..8], [0; 8]);
    refused_by_every_command(
        dir.path(),
        "pos.db-journal",
        "pos.db-journal: a SQLite rollback journal, not a database: give the database it \
         belongs to",
    );
    // those bytes under another name are not told as a journal
    std::fs::copy(dir.path().join("pos.db-journal"), dir.path().join("j.bin")).unwrap();
    refused_by_every_command(
        dir.path(),
        "j.bin",
        "j.bin: not a SQLite database (no \"SQLite format 3\" header)",
    );
}

#[test]
fn a_wal_index_given_as_the_database_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("pos.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT);
         INSERT INTO customers VALUES ('C1', 'someone');",
    )
    .unwrap();
    let shm = std::fs::read(work.path().join("pos.db-shm")).unwrap();
    drop(conn);
    // both copies of the wal-index header start with version 3007000
    assert_eq!(shm[..4], 3_007_000u32.to_ne_bytes());
    assert_eq!(shm[48..52], 3_007_000u32.to_ne_bytes());
    std::fs::write(dir.path().join("pos.db-shm"), &shm).unwrap();
    std::fs::write(dir.path().join("index.bin"), &shm).unwrap();
    std::fs::copy(&db, dir.path().join("snap.db")).unwrap();
    refused_by_every_command(
        dir.path(),
        "pos.db-shm",
        "pos.db-shm: a SQLite WAL index (shared-memory file), not a database: give the \
         database it belongs to",
    );
    // told by its content, not its name
    refused_by_every_command(
        dir.path(),
        "index.bin",
        "index.bin: a SQLite WAL index (shared-memory file), not a database: give the \
         database it belongs to",
    );
}

/// A WAL database at rest (no -wal) repaired: its actions say nothing of a
/// checkpoint, there being no -wal to checkpoint; with a -wal of 64
/// committed frames, the checkpoint says so.
#[test]
fn repair_names_a_checkpoint_only_where_a_wal_held_frames() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("flipped_id_byte", dir.path());
    rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    assert!(!dir.path().join("flipped_id_byte.db-wal").exists());
    assert_eq!(std::fs::read(&db).unwrap()[18..20], [2, 2]);
    let r = run(
        &[
            "repair",
            "flipped_id_byte.db",
            "--backup-dir",
            "bk",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(
        action_kinds(&j),
        [
            "backup",
            "rebuild_index",
            "free_pages",
            "restore_value",
            "verify",
            "swap"
        ],
        "{}",
        r.show()
    );
    assert_eq!(std::fs::read(&db).unwrap()[18..20], [2, 2]);
    assert!(!dir.path().join("flipped_id_byte.db-wal").exists());

    let dir = tempfile::tempdir().unwrap();
    fixture_copy("wal_stale_index", dir.path());
    let r = run(
        &[
            "repair",
            "wal_stale_index.db",
            "--backup-dir",
            "bk",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        action_detail(&r.json(), "checkpoint", None),
        "the -wal's 64 committed frames were checkpointed into the database (its content is \
         unchanged) so the swap is a single rename"
    );
}

#[test]
fn a_backup_folder_whose_parent_is_missing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("flipped_id_byte", dir.path());
    let before = state(dir.path());
    let missing = dir.path().join("nowhere/sub/dir");
    for backup in [missing.display().to_string(), "nowhere/sub/dir".to_string()] {
        for dry in [false, true] {
            let mut args = vec!["repair", "flipped_id_byte.db", "--backup-dir", &backup];
            if dry {
                args.push("--dry-run");
            }
            let r = run(&args, dir.path());
            assert_eq!(r.code(), 2, "{}", r.show());
            let parent = backup.strip_suffix("/dir").unwrap();
            assert_eq!(
                r.stderr(),
                format!(
                    "custodian: {backup}: the backup folder does not exist, nor does {parent}, \
                     the folder it would be made in: give a folder that exists (or one inside \
                     it); nothing was changed\n"
                ),
                "{}",
                r.show()
            );
            assert_eq!(r.stdout(), "", "{}", r.show());
            assert!(state(dir.path()) == before, "a file changed: {}", r.show());
        }
    }
    // a file where the folder should be
    let r = run(
        &[
            "repair",
            "flipped_id_byte.db",
            "--backup-dir",
            "flipped_id_byte.db",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert_eq!(
        r.stderr(),
        "custodian: flipped_id_byte.db: the backup folder is a file, not a folder: nothing was \
         changed\n",
        "{}",
        r.show()
    );
    assert!(state(dir.path()) == before);
    // a missing folder whose parent is there is made
    let r = run(
        &[
            "repair",
            "flipped_id_byte.db",
            "--backup-dir",
            "new",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let backup = r.json()["backup_path"].as_str().unwrap().to_string();
    assert!(backup.starts_with("new/flipped_id_byte.db."), "{backup}");
    assert_eq!(
        std::fs::read(dir.path().join(&backup)).unwrap(),
        before["flipped_id_byte.db"]
    );
}

/// Leaving WAL mode fails after SQLite checkpointed the -wal (test hook):
/// the repair stops (exit 3) and says what is known — the rows are the
/// original's, the bytes may not be, the backup holds them — never that
/// the original is untouched.
#[test]
fn a_failure_after_the_checkpoint_is_told_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("wal_stale_index", dir.path());
    let original = std::fs::read(&db).unwrap();
    let wal = std::fs::read(dir.path().join("wal_stale_index.db-wal")).unwrap();
    let r = run_env(
        &[
            "repair",
            "wal_stale_index.db",
            "--backup-dir",
            "bk",
            "--json",
            "-",
        ],
        dir.path(),
        &[("CUSTODIAN_TEST_FAIL_LEAVE_WAL", "1")],
    );
    assert_eq!(r.code(), 3, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "failed");
    let backup = j["backup_path"].as_str().unwrap();
    assert_eq!(
        r.stderr(),
        format!(
            "custodian: wal_stale_index.db: repair stopped: leaving WAL mode for the swap: \
             wal_stale_index.db: the lock could not be taken again after the checkpoint (test \
             hook); the database's rows are as they were, but SQLite may have checkpointed its \
             -wal into the file, so the file and its -wal may not be byte for byte the \
             original's: the backup {backup} holds them as they were\n"
        ),
        "{}",
        r.show()
    );
    // and so it is: the rows as before, WAL mode back, the backup the bytes
    assert_eq!(
        super::repair::customers_sha256(&db),
        truth("wal_stale_index")["expected_customers_sha256"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        super::support::sqlite3_cli(&db, "PRAGMA journal_mode"),
        "wal"
    );
    assert_eq!(std::fs::read(dir.path().join(backup)).unwrap(), original);
    assert_eq!(
        std::fs::read(dir.path().join(format!("{backup}-wal"))).unwrap(),
        wal
    );
}
