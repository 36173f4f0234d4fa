//! `custodian repair` and the database's bytes (issue 10): the exclusive
//! lock holds from the plan to the swap, the backup is the original file
//! itself (a second name made before any work, named as the backup once
//! the verified copy is in place), and a kill at any instant leaves the
//! original or the verified result with a byte-for-byte backup.

use std::path::Path;

use super::repair::Setup;
use super::repair_ops::{signal_and_wait, start_paused};
use super::support::listing;

/// What another process gets when it tries to read and to write `db`
/// (rusqlite here is another process than custodian: its POSIX locks
/// count): `Err` with SQLite's message, or what it read.
fn try_read_and_write(db: &Path) -> (Result<i64, String>, Result<(), String>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::ZERO).unwrap();
    let read = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| e.to_string());
    let write = conn
        .execute_batch("BEGIN IMMEDIATE; CREATE TABLE intruder(x); COMMIT;")
        .map_err(|e| e.to_string());
    (read, write)
}

/// DESIGN rule 2: the exclusive lock is held for the whole run. At every
/// phase between the lock and the swap, another process can neither read
/// nor write the database (SQLite says "database is locked"), for an index
/// repair (patched copy) and a table repair (rebuild). A POSIX lock is
/// dropped when the process closes any descriptor of the file, so this
/// fails if custodian opens and closes the database while it holds the lock.
#[test]
fn the_lock_holds_from_the_plan_to_the_swap() {
    for name in ["stale_pk_page", "damaged_table_leaf"] {
        for phase in ["backup", "build", "verify", "rename"] {
            let s = Setup::new(name);
            let original = std::fs::read(&s.db).unwrap();
            let marks = tempfile::tempdir().unwrap();
            let child = start_paused(&s, phase, &marks.path().join("paused"));
            let (read, write) = try_read_and_write(&s.db);
            let out = signal_and_wait(child, "INT");
            assert_eq!(
                read,
                Err("database is locked".to_string()),
                "{name} at {phase}: another process read the database"
            );
            assert_eq!(
                write,
                Err("database is locked".to_string()),
                "{name} at {phase}: another process wrote the database"
            );
            assert_eq!(out.status.code(), Some(3), "{name} at {phase}");
            assert_eq!(
                std::fs::read(&s.db).unwrap(),
                original,
                "{name} at {phase}: the original changed"
            );
        }
    }
}

/// The hidden and the visible names in a folder (none when it is absent),
/// sorted.
fn names_in(dir: &Path) -> (Vec<String>, Vec<String>) {
    if !dir.exists() {
        return Default::default();
    }
    listing(dir).into_iter().partition(|n| n.starts_with('.'))
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (std::fs::metadata(a).unwrap(), std::fs::metadata(b).unwrap());
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Issue 10: the backup is the original file itself, given a second name
/// in the backup folder before any work and named as the backup once the
/// verified copy has replaced it. SIGKILL at every phase, for an index
/// repair and a table rebuild:
///
/// * before the swap, the database is the original byte for byte and no
///   backup is named: the only other name is the second one, a name of the
///   database itself (the next repair removes it);
/// * killed after the swap, before the naming ("renamed"), the verified
///   result is in place and the original bytes are under the second name,
///   no longer the database's: a dry run says so and the next repair —
///   which then has nothing to do — names it as the backup.
///
/// Either way, one repair later the backup folder holds exactly one
/// backup, byte for byte the original, mode 0600, with its SHA-256 in the
/// `.sha256` file, and no hidden file is left anywhere.
#[test]
fn a_kill_at_any_phase_leaves_the_original_bytes_named() {
    use std::os::unix::fs::PermissionsExt;
    for name in ["stale_pk_page", "damaged_table_leaf"] {
        for phase in ["backup", "build", "verify", "rename", "renamed"] {
            let s = Setup::new(name);
            let original = std::fs::read(&s.db).unwrap();
            let bdir = s.dir.path().join("backup");
            let marks = tempfile::tempdir().unwrap();
            let mut child = start_paused(&s, phase, &marks.path().join("paused"));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let (hidden, named) = names_in(&bdir);
            assert_eq!(named, Vec::<String>::new(), "{name} at {phase}");
            assert_eq!(hidden.len(), 1, "{name} at {phase}: {hidden:?}");
            assert!(hidden[0].ends_with(".custodian-original"), "{hidden:?}");
            let second = bdir.join(&hidden[0]);
            let after = if phase == "renamed" {
                assert_ne!(std::fs::read(&s.db).unwrap(), original, "{name}");
                assert!(!same_file(&second, &s.db), "{name}");
                assert_eq!(std::fs::read(&second).unwrap(), original, "{name}");
                let c = super::support::run(&["check", s.db.to_str().unwrap()], s.dir.path());
                assert_eq!(c.code(), 0, "{name}: the verified result: {}", c.show());
                let dry = s.repair(&["--dry-run"]);
                assert_eq!(dry.code(), 0, "{}", dry.show());
                assert!(
                    dry.stderr().contains(&format!(
                        "the original file of a repair killed after its swap is kept as {}",
                        second.display()
                    )),
                    "{}",
                    dry.show()
                );
                assert_eq!(names_in(&bdir).0, hidden, "a dry run changes nothing");
                let r = s.repair(&[]);
                assert_eq!(r.code(), 0, "{}", r.show());
                assert_eq!(r.json()["verdict"], "clean", "{}", r.show());
                r
            } else {
                assert_eq!(std::fs::read(&s.db).unwrap(), original, "{name} at {phase}");
                assert!(same_file(&second, &s.db), "{name} at {phase}");
                let r = s.repair(&[]);
                assert_eq!(r.code(), 0, "{name} at {phase}: {}", r.show());
                assert_eq!(r.json()["verdict"], "repaired", "{}", r.show());
                r
            };
            let (hidden, named) = names_in(&bdir);
            assert_eq!(hidden, Vec::<String>::new(), "{name} at {phase}");
            assert_eq!(names_in(s.dir.path()).0, Vec::<String>::new());
            assert_eq!(named.len(), 2, "{name} at {phase}: {named:?}");
            let (bk, sums) = (&named[0], &named[1]);
            assert!(bk.ends_with(".backup") && sums.ends_with(".sha256"));
            let bytes = std::fs::read(bdir.join(bk)).unwrap();
            assert!(
                bytes == original,
                "{name} at {phase}: the backup is the original"
            );
            assert_eq!(
                std::fs::read_to_string(bdir.join(sums)).unwrap(),
                format!("{}  {bk}\n", sha256_hex(&original))
            );
            assert_eq!(
                std::fs::metadata(bdir.join(bk))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
            let j = after.json();
            let detail = j["actions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| {
                    a["kind"]
                        == if phase == "renamed" {
                            "leftovers"
                        } else {
                            "backup"
                        }
                })
                .map(|a| a["detail"].as_str().unwrap().to_string())
                .unwrap_or_default();
            assert!(
                detail.contains(bdir.join(bk).to_str().unwrap())
                    && detail.contains(&sha256_hex(&original)),
                "{name} at {phase}: {detail}"
            );
        }
    }
}

/// A repair that runs through: its backup is the original file itself
/// (the database's old inode), byte for byte, mode 0600, with its SHA-256
/// in the report and the `.sha256` file; the repaired database is a new
/// file that keeps the original's mode.
#[test]
fn the_backup_is_the_original_file_itself() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for name in ["stale_pk_page", "damaged_table_leaf"] {
        let s = Setup::new(name);
        std::fs::set_permissions(&s.db, std::fs::Permissions::from_mode(0o640)).unwrap();
        let original = std::fs::read(&s.db).unwrap();
        let ino = std::fs::metadata(&s.db).unwrap().ino();
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "{}", r.show());
        let j = r.json();
        let bk = std::path::PathBuf::from(j["backup_path"].as_str().unwrap());
        let m = std::fs::metadata(&bk).unwrap();
        assert_eq!(m.ino(), ino, "{name}: the backup is the original inode");
        assert_eq!(m.nlink(), 1, "{name}: and its only name");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read(&bk).unwrap() == original);
        assert_eq!(j["backup_sha256"], sha256_hex(&original).as_str());
        let db = std::fs::metadata(&s.db).unwrap();
        assert_ne!(db.ino(), ino);
        assert_eq!(db.permissions().mode() & 0o777, 0o640);
        let first = &j["actions"][0];
        assert_eq!(first["kind"], "backup", "{name}: {first}");
    }
}

/// DESIGN rule 3 when the backup is the original file: a process that had
/// the database open before the repair (a POS terminal left running) cannot
/// write into the backup afterwards. SQLite refuses any write through a
/// connection whose file is no longer the one its path names
/// (SQLITE_READONLY_DBMOVED), so the backup stays byte for byte the
/// original, and the stale connection's write reaches neither file.
#[test]
fn a_connection_left_open_cannot_write_into_the_backup() {
    for name in ["stale_pk_page", "damaged_table_leaf"] {
        let s = Setup::new(name);
        let original = std::fs::read(&s.db).unwrap();
        let stale = rusqlite::Connection::open(&s.db).unwrap();
        let n: i64 = stale
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert!(n > 0);
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "{name}: {}", r.show());
        let j = r.json();
        let bk = std::path::PathBuf::from(j["backup_path"].as_str().unwrap());
        let repaired = std::fs::read(&s.db).unwrap();
        let err = stale
            .execute_batch("BEGIN IMMEDIATE; CREATE TABLE stale_write(x); COMMIT;")
            .unwrap_err();
        match &err {
            rusqlite::Error::SqliteFailure(e, _) => assert_eq!(
                e.extended_code,
                rusqlite::ffi::SQLITE_READONLY_DBMOVED,
                "{name}: {err}"
            ),
            other => panic!("{name}: {other}"),
        }
        drop(stale);
        assert!(
            std::fs::read(&bk).unwrap() == original,
            "{name}: the backup changed"
        );
        assert!(
            std::fs::read(&s.db).unwrap() == repaired,
            "{name}: the database changed"
        );
        assert_eq!(j["backup_sha256"], sha256_hex(&original).as_str(), "{name}");
    }
}

/// Issue 10: damage confined to an index (its own pages zeroed or filled
/// with garbage) is repaired by rebuilding the index from the live table,
/// so the snapshot folder a DBA passes is not verified: each snapshot is
/// listed "not_needed", a damaged one among them too (verified, it would be
/// "skipped"), and none is used. Every customer row is
/// the truth's, and the stock sqlite3 finds the result sound.
#[test]
fn index_damage_verifies_no_snapshot() {
    for name in ["zeroed_index_page", "garbage_index_page"] {
        let s = Setup::new(name);
        let t = super::support::truth(name);
        // a damaged file among the snapshots: verified, it would be skipped
        std::fs::copy(&s.db, s.dir.path().join("snaps").join("damaged.db")).unwrap();
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "{name}: {}", r.show());
        let j = r.json();
        assert_eq!(j["verdict"], "repaired", "{name}");
        let statuses = super::support::snapshot_statuses(&j);
        assert_eq!(statuses.len(), 2, "{name}: {statuses:?}");
        assert!(
            statuses.iter().all(|(_, st)| *st == "not_needed"),
            "{name}: {statuses:?}"
        );
        assert!(j["snapshot_used"].is_null(), "{name}: {j}");
        assert_eq!(j["restored_customer_ids"], serde_json::json!([]), "{name}");
        assert_eq!(
            super::repair::customers_sha256(&s.db),
            t["expected_customers_sha256"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(super::repair::stock_integrity_check(&s.db), "ok", "{name}");
    }
}

/// SQLite's shared lock as os_unix.c takes it (a read lock on the 510-byte
/// shared range after the pending and reserved bytes at 1 GiB), taken or
/// tried on `f` by this process: `Err` is the kernel's answer when another
/// process holds a conflicting lock.
fn sqlite_shared_lock(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // ok: a zeroed flock is a valid value of this plain C struct
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0x4000_0000 + 2;
    fl.l_len = 510;
    // ok: fcntl on a descriptor the caller owns, with a pointer to a live flock
    match unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// A database SQLite refuses as a whole (its page size zeroed: "file is not
/// a database") cannot be locked through SQLite, so repair locks SQLite's
/// lock bytes by hand. They must be SQLite's own: while another process
/// holds SQLite's shared lock, repair is busy (exit 2, one line, nothing
/// changed, no backup); once it lets go, the repair goes through, and while
/// the repair is paused no process gets SQLite's shared lock.
#[test]
fn a_database_sqlite_refuses_is_locked_on_sqlites_own_lock_bytes() {
    let s = Setup::new("stale_pk_page");
    let t = super::support::truth("stale_pk_page");
    let mut image = std::fs::read(&s.db).unwrap();
    image[16..18].copy_from_slice(&[0, 0]);
    std::fs::write(&s.db, &image).unwrap();
    let reader = std::fs::File::open(&s.db).unwrap();
    sqlite_shared_lock(&reader).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 2, "{}", r.show());
    assert_eq!(
        r.stderr(),
        format!(
            "custodian: {}: database is busy (in use by another process); repair needs it alone: nothing was changed\n",
            s.db.display()
        ),
        "{}",
        r.show()
    );
    assert!(
        std::fs::read(&s.db).unwrap() == image,
        "the database changed"
    );
    assert!(s.backups().is_empty(), "a backup was made");
    drop(reader); // closing it drops this process's locks
    // the repair holds them now: SQLite's shared lock is refused (paused
    // with no report on stdout: this one is larger than a pipe holds)
    let marker = s.dir.path().join("paused");
    let mut args = s.args();
    args.truncate(args.len() - 2);
    let mut child = std::process::Command::new(super::support::bin())
        .args(&args)
        .env("CUSTODIAN_PAUSE_AT", "build")
        .env("CUSTODIAN_PAUSE_FILE", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !marker.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before the pause"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let probe = std::fs::File::open(&s.db).unwrap();
    let shared = sqlite_shared_lock(&probe).map_err(|e| e.raw_os_error());
    drop(probe);
    child.kill().unwrap(); // SIGKILL: the work files are the next run's to remove
    child.wait().unwrap();
    assert_eq!(
        shared,
        Err(Some(libc::EAGAIN)),
        "another process took SQLite's shared lock during the repair"
    );
    assert!(
        std::fs::read(&s.db).unwrap() == image,
        "the database changed"
    );
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        super::repair::customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(super::repair::stock_integrity_check(&s.db), "ok");
}

/// A WAL database whose schema table SQLite cannot read (schema_page_garbage
/// with header bytes 18-19 set to 2, WAL, as `PRAGMA journal_mode = WAL`
/// writes them; the stock sqlite3 cannot set it, the file is malformed to
/// it). Mending the schema needs the lock, and leaving WAL before the
/// build needs SQLite to read the schema, which it cannot: so the lock
/// refuses at once — exit 2, one line, the file and its folder as they
/// were, no backup. Without that refusal the repair went on, took a
/// backup, and stopped when leaving WAL (exit 3).
#[test]
fn a_wal_database_whose_schema_sqlite_cannot_read_is_refused_before_any_write() {
    let s = Setup::new("schema_page_garbage");
    let mut image = std::fs::read(&s.db).unwrap();
    image[18..20].copy_from_slice(&[2, 2]);
    std::fs::write(&s.db, &image).unwrap();
    let names = listing(s.dir.path());
    let r = s.repair(&[]);
    assert_eq!(r.code(), 2, "{}", r.show());
    assert_eq!(
        r.stderr(),
        format!(
            "custodian: {}: cannot lock: database disk image is malformed\n",
            s.db.display()
        ),
        "{}",
        r.show()
    );
    assert!(
        std::fs::read(&s.db).unwrap() == image,
        "the database changed"
    );
    assert_eq!(listing(s.dir.path()), names, "a file was left or removed");
    assert!(s.backups().is_empty(), "a backup was made");
}
