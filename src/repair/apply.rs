//! The only code that writes a database. It executes a plan and decides
//! nothing: lock, backup, build the repaired copy, hand it back for
//! verification, swap it in atomically.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use super::plan::Plan;
use crate::files::{create_new, fsync_dir};
use crate::schema::quote_ident;

/// Test hook, compiled only with the `test-hooks` feature (the test build;
/// see Cargo.toml): with `CUSTODIAN_PAUSE_AT=<phase>` the process announces
/// the phase in `CUSTODIAN_PAUSE_FILE` and sleeps, so a test can SIGKILL it
/// exactly there. Phases: backup, build, verify, rename, renamed. In any
/// other build this does nothing, whatever the environment says.
pub fn pause_point(phase: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("CUSTODIAN_PAUSE_AT").as_deref() == Ok(phase) {
        if let Ok(f) = std::env::var("CUSTODIAN_PAUSE_FILE") {
            let _ = std::fs::write(f, phase);
        }
        // 30 s, or until a signal asks the repair to stop
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < until && super::interrupt::asked().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = phase;
}

/// Holds SQLite's exclusive lock on the database for the whole repair.
pub struct Lock {
    holder: Holder,
    pub was_wal: bool,
    /// The database was switched from WAL to a rollback journal (leave_wal).
    left_wal: std::cell::Cell<bool>,
}

enum Holder {
    /// SQLite's own exclusive lock.
    Sqlite(Connection),
    /// A file SQLite refuses to open as a database (a damaged header): the
    /// bytes SQLite locks, write-locked as SQLite's exclusive lock holds
    /// them, so that no SQLite connection gets in while the repair runs.
    LockBytes(File),
}

/// SQLite's lock bytes (os_unix.c): the pending byte at 1 GiB, the reserved
/// byte after it, then the 510-byte shared range.
const LOCK_BYTES_START: i64 = 0x4000_0000;
const LOCK_BYTES_LEN: i64 = 2 + 510;

/// Write-locks SQLite's lock bytes of `path` with an open-file-description
/// lock (Linux's F_OFD_SETLK: it conflicts with SQLite's POSIX locks, and
/// unlike them is not dropped when another descriptor of the file closes).
fn lock_bytes(path: &Path) -> Result<Lock> {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot open for repair", path.display()))?;
    // ok: a zeroed flock is a valid value of this plain C struct
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LOCK_BYTES_START;
    fl.l_len = LOCK_BYTES_LEN;
    // ok: fcntl on a descriptor we own, with a pointer to a live flock
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
            bail!(
                "{}: database is busy (in use by another process); repair needs it alone: nothing was changed",
                path.display()
            );
        }
        return Err(e).with_context(|| format!("{}: cannot lock", path.display()));
    }
    Ok(Lock {
        holder: Holder::LockBytes(file),
        was_wal: false,
        left_wal: std::cell::Cell::new(false),
    })
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Takes the exclusive lock, or fails at once with "busy" (exit 2).
pub fn lock(path: &Path) -> Result<Lock> {
    if std::fs::metadata(sidecar(path, "-journal")).is_ok_and(|m| m.len() > 0) {
        bail!(
            "{}: a write was interrupted (hot journal): SQLite must roll it back first; nothing was changed",
            path.display()
        );
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("{}: cannot open for repair", path.display()))?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    // This connection only locks (and, for WAL, checkpoints); nothing is
    // written through it. writable_schema lets SQLite open a file whose
    // header counts more pages than it holds (it then trusts the file size).
    conn.pragma_update(None, "writable_schema", true)?;
    let busy = |e: rusqlite::Error| {
        if crate::db::is_busy(&e) {
            anyhow!(
                "{}: database is busy (in use by another process); repair needs it alone: nothing was changed",
                path.display()
            )
        } else {
            anyhow!("{}: cannot lock: {e}", path.display())
        }
    };
    let mode = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .and_then(|m| {
            conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
                .map(|()| m)
        });
    let mode = match mode {
        Ok(m) => m,
        // SQLite refuses the file as a whole: its lock bytes, locked by hand
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            drop(conn);
            return lock_bytes(path);
        }
        Err(e) => return Err(busy(e)),
    };
    // reading the schema makes sure the lock is really held (a truncated
    // file is read with writable_schema: SQLite then trusts the file size)
    let count = |c: &Connection| {
        c.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
    };
    if let Err(e) = count(&conn) {
        if crate::db::is_corrupt(&e) {
            conn.pragma_update(None, "writable_schema", true)
                .map_err(busy)?;
            match count(&conn) {
                Ok(_) => {}
                // a schema table SQLite cannot read even so (repair/frame.rs
                // mends it): BEGIN EXCLUSIVE in exclusive locking mode holds
                // the lock all the same
                Err(e) if crate::db::is_corrupt(&e) && !mode.eq_ignore_ascii_case("wal") => {}
                Err(e) => return Err(busy(e)),
            }
        } else {
            return Err(busy(e));
        }
    }
    Ok(Lock {
        holder: Holder::Sqlite(conn),
        was_wal: mode.eq_ignore_ascii_case("wal"),
        left_wal: std::cell::Cell::new(false),
    })
}

impl Lock {
    /// A WAL database: its committed frames are checkpointed into the file
    /// (SQLite's own crash-safe checkpoint: the content does not change) and
    /// it is switched to a rollback journal, so that the swap is one rename
    /// with no -wal to replay over the new file. Done after the backup.
    pub fn leave_wal(&self, path: &Path) -> Result<()> {
        let (true, Holder::Sqlite(conn)) = (self.was_wal, &self.holder) else {
            return Ok(());
        };
        conn.execute_batch("COMMIT")?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .with_context(|| format!("{}: cannot checkpoint the -wal", path.display()))?;
        self.left_wal.set(true);
        if !mode.eq_ignore_ascii_case("delete") {
            bail!(
                "{}: the -wal could not be checkpointed (journal mode stays {mode})",
                path.display()
            );
        }
        conn.execute_batch("BEGIN EXCLUSIVE")?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(())
    }

    /// Releases the lock of a repair that did not swap: a database that
    /// was in WAL mode is given WAL mode back (its content never changed).
    pub fn release(self) {
        match self.holder {
            Holder::Sqlite(conn) => {
                let _ = conn.execute_batch("ROLLBACK");
                if self.left_wal.get() {
                    let _ = conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()));
                }
                drop(conn);
            }
            // closing the descriptor drops its lock
            Holder::LockBytes(file) => drop(file),
        }
    }

    /// Releases the lock after the swap: the file this connection has open
    /// is no longer the database, and nothing is done to it.
    pub fn release_swapped(self) {
        match self.holder {
            Holder::Sqlite(conn) => {
                let _ = conn.execute_batch("ROLLBACK");
                drop(conn);
            }
            Holder::LockBytes(file) => drop(file),
        }
    }
}

/// Creates the empty file the rebuilt database is written into (0600, no
/// symlink, never over an existing file).
pub fn create_empty(path: &Path) -> Result<()> {
    create_new(path).map(drop)
}

/// The rebuilt file was written without a journal: give it the original's
/// journal mode (a rollback journal, or WAL) and sync it.
pub fn finish_journal_mode(path: &Path, was_wal: bool) -> Result<()> {
    let conn = Connection::open(path)?;
    let want = if was_wal { "wal" } else { "delete" };
    let m: String = conn.query_row(&format!("PRAGMA journal_mode = {want}"), [], |r| r.get(0))?;
    if !m.eq_ignore_ascii_case(want) {
        bail!("could not set journal mode {want} on the rebuilt copy");
    }
    drop(conn);
    File::open(path)?.sync_all()?;
    Ok(())
}

/// How much `copy_file` copies between two looks at the interrupt flag.
const COPY_CHUNK: u64 = 64 << 20;

/// Copies `from` to a new file `to` byte for byte (in the kernel:
/// copy_file_range), fsynced. The SHA-256 of the source is computed on
/// another thread meanwhile, when asked for.
pub fn copy_file(from: &Path, to: &Path, with_hash: bool) -> Result<Option<String>> {
    let hasher = with_hash.then(|| {
        let from = from.to_path_buf();
        std::thread::spawn(move || -> std::io::Result<String> {
            let mut f = File::open(&from)?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
        })
    });
    let src = File::open(from).with_context(|| format!("{}: cannot read", from.display()))?;
    let mut dst = create_new(to)?;
    // in chunks, so that a signal stops a long copy (interrupt.rs)
    loop {
        let n = std::io::copy(&mut (&src).take(COPY_CHUNK), &mut dst)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        if n == 0 {
            break;
        }
        super::interrupt::stop_if_asked()?;
    }
    dst.sync_all()
        .with_context(|| format!("syncing {}", to.display()))?;
    match hasher {
        None => Ok(None),
        // the bytes hashed are the bytes copied: the lock keeps writers out
        Some(h) => Ok(Some(
            h.join()
                .map_err(|_| anyhow!("checksum thread failed"))?
                .with_context(|| format!("reading {}", from.display()))?,
        )),
    }
}

/// The byte-for-byte backup of the database and its -wal.
pub struct Backup {
    pub path: PathBuf,
    pub sha256: String,
    pub wal: Option<(PathBuf, String)>,
}

/// A hidden work file of this run in `dir` (see interrupt.rs).
fn work(dir: &Path, db_name: &str, stamp: &str, kind: &str) -> PathBuf {
    dir.join(super::interrupt::work_name(
        db_name,
        stamp,
        std::process::id(),
        kind,
    ))
}

/// Copies `from` to `to` by way of the hidden work file `work` in the same
/// folder, renamed into place once whole and synced: a backup file is
/// complete or absent, and a run killed half way leaves only a work file
/// that the next run removes. Returns the SHA-256 of the bytes copied.
fn copy_into_place(from: &Path, to: &Path, work: &Path) -> Result<String> {
    super::interrupt::work_file(work);
    let sha = copy_file(from, work, true)?.unwrap_or_default();
    if to.exists() {
        bail!(
            "{}: exists already; a backup never replaces a file",
            to.display()
        );
    }
    std::fs::rename(work, to)
        .with_context(|| format!("cannot rename {} to {}", work.display(), to.display()))?;
    super::interrupt::forget(work);
    Ok(sha)
}

pub fn backup(db: &Path, dir: &Path, stamp: &str) -> Result<Backup> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "database".into());
    // never over an existing backup: a second repair in the same second
    // gets the next free suffix
    let base = (1..1000)
        .map(|n| {
            if n == 1 {
                format!("{name}.{stamp}")
            } else {
                format!("{name}.{stamp}-{n}")
            }
        })
        .find(|b| {
            !dir.join(format!("{b}.backup")).exists() && !dir.join(format!("{b}.sha256")).exists()
        })
        .ok_or_else(|| anyhow!("{}: no free backup name", dir.display()))?;
    let path = dir.join(format!("{base}.backup"));
    let sha256 = copy_into_place(db, &path, &work(dir, &name, stamp, "backup"))?;
    let wal_src = sidecar(db, "-wal");
    // a -wal without a whole frame (SQLite makes an empty one when it opens
    // a WAL database at rest) holds nothing: there is nothing to back up
    let wal = if super::fingerprint::wal_holds_frames(db) {
        let wal_path = dir.join(format!("{base}.backup-wal"));
        let h = copy_into_place(&wal_src, &wal_path, &work(dir, &name, stamp, "backup-wal"))?;
        Some((wal_path, h))
    } else {
        None
    };
    let sums = dir.join(format!("{base}.sha256"));
    let mut text = format!(
        "{sha256}  {}\n",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    if let Some((p, h)) = &wal {
        text.push_str(&format!(
            "{h}  {}\n",
            p.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    let mut f = create_new(&sums)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fsync_dir(dir)?;
    Ok(Backup { path, sha256, wal })
}

/// What the SQL steps did.
#[derive(Debug, Default)]
pub struct SqlOutcome {
    /// (index, kept rowid, moved rowids, customer ID of the kept row)
    pub quarantined: Vec<(String, i64, Vec<i64>, String)>,
    /// Customer IDs of the rows moved to quarantine.
    pub quarantined_ids: Vec<String>,
}

pub const QUARANTINE_TABLE: &str = "custodian_quarantine";

/// The SQL steps on the copy: quarantine duplicates, recreate missing
/// indexes, rebuild emptied ones, restore the journal mode.
pub fn sql_steps(
    copy: &Path,
    plan: &Plan,
    table: &crate::schema::CustomerTable,
    snapshot: Option<&Path>,
    was_wal: bool,
    stamp: &str,
) -> Result<SqlOutcome> {
    let conn = Connection::open_with_flags(
        copy,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    super::interrupt::watch(&conn);
    // Deleting a row whose entry is missing from an (emptied) index is
    // tolerated with writable_schema; the index is rebuilt right after.
    conn.execute_batch(
        "PRAGMA writable_schema = ON; PRAGMA journal_mode = DELETE; BEGIN IMMEDIATE;",
    )?;
    let mut out = SqlOutcome::default();
    let tq = quote_ident(&table.name);
    // the damaged side of an ID mismatch is the row: restore its value
    // (its index is emptied and rebuilt below)
    for rv in &plan.restore_values {
        conn.execute(
            &format!(
                "UPDATE {tq} SET {} = ?1 WHERE rowid = ?2",
                quote_ident(&table.columns[table.id_column].name)
            ),
            rusqlite::params![rv.restored, rv.rowid],
        )
        .with_context(|| format!("restoring the ID of row {}", rv.rowid))?;
    }
    for d in &plan.dedupe {
        let Some(index) = table.indexes.iter().find(|i| i.name == d.index) else {
            continue;
        };
        let cols: Vec<String> = index
            .fields
            .iter()
            .filter(|f| f.key)
            .filter_map(|f| match &f.part {
                crate::schema::IndexPart::Column(c) => Some(quote_ident(&table.columns[*c].name)),
                _ => None,
            })
            .collect();
        if cols.is_empty() {
            continue;
        }
        let key_expr = cols.join(" || '|' || ");
        let conds = cols
            .iter()
            .map(|c| format!("{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let sql = format!(
            "SELECT {key_expr}, group_concat(rowid) FROM (SELECT rowid, {c} FROM {tq} NOT INDEXED WHERE {conds} ORDER BY rowid) \
             GROUP BY {c} HAVING count(*) > 1",
            c = cols.join(", ")
        );
        let groups: Vec<(String, String)> = conn
            .prepare(&sql)?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        if groups.is_empty() {
            continue;
        }
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE}(quarantined_at TEXT NOT NULL, reason TEXT NOT NULL, \
             source_table TEXT NOT NULL, original_rowid INTEGER NOT NULL, kept_rowid INTEGER, row_json TEXT NOT NULL)"
        ))?;
        let all_cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("'{}', {}", c.name.replace('\'', "''"), quote_ident(&c.name)))
            .collect();
        for (key, rowids) in groups {
            let rowids: Vec<i64> = rowids.split(',').filter_map(|x| x.parse().ok()).collect();
            // keep the row the snapshot has, else the oldest (smallest rowid)
            let mut keep = rowids[0];
            if let Some(snap) = snapshot {
                let s = Connection::open_with_flags(snap, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                for &r in &rowids {
                    // the snapshot row with this rowid holds the same key?
                    let snap_key: Option<String> = s
                        .query_row(
                            &format!("SELECT {key_expr} FROM {tq} NOT INDEXED WHERE rowid = ?1"),
                            [r],
                            |row| row.get(0),
                        )
                        .ok();
                    if snap_key.as_deref() == Some(key.as_str()) {
                        keep = r;
                        break;
                    }
                }
            }
            let moved: Vec<i64> = rowids.iter().copied().filter(|&r| r != keep).collect();
            // reports name the customer by ID, never by another key (a card number)
            let kept_id: rusqlite::types::Value = conn.query_row(
                &format!(
                    "SELECT {} FROM {tq} NOT INDEXED WHERE rowid = ?1",
                    quote_ident(&table.columns[table.id_column].name)
                ),
                [keep],
                |row| row.get(0),
            )?;
            let key = crate::report::id_text(&kept_id).unwrap_or_default();
            for &r in &moved {
                let id: rusqlite::types::Value = conn.query_row(
                    &format!(
                        "SELECT {} FROM {tq} NOT INDEXED WHERE rowid = ?1",
                        quote_ident(&table.columns[table.id_column].name)
                    ),
                    [r],
                    |row| row.get(0),
                )?;
                if let Some(t) = crate::report::id_text(&id) {
                    out.quarantined_ids.push(t);
                }
                conn.execute(
                    &format!(
                        "INSERT INTO {QUARANTINE_TABLE} SELECT ?1, ?2, ?3, rowid, ?4, json_object({}) FROM {tq} NOT INDEXED WHERE rowid = ?5",
                        all_cols.join(", ")
                    ),
                    rusqlite::params![
                        stamp,
                        format!("duplicate key under UNIQUE index {} (re-registered while the index was broken)", d.index),
                        table.name,
                        keep,
                        r
                    ],
                )?;
                conn.execute(&format!("DELETE FROM {tq} WHERE rowid = ?1"), [r])?;
            }
            out.quarantined.push((d.index.clone(), keep, moved, key));
        }
    }
    for r in &plan.recreate_indexes {
        conn.execute_batch(&r.sql)
            .with_context(|| format!("recreating index {} from {}", r.name, r.snapshot))?;
    }
    for name in &plan.rebuild_indexes {
        conn.execute_batch(&format!("REINDEX {}", quote_ident(name)))
            .with_context(|| format!("rebuilding index {name}"))?;
    }
    conn.execute_batch("COMMIT; PRAGMA writable_schema = OFF;")?;
    if was_wal {
        let m: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !m.eq_ignore_ascii_case("wal") {
            bail!("could not restore WAL mode on the repaired copy");
        }
    }
    drop(conn);
    // closing the last connection checkpointed and removed the copy's own -wal
    Ok(out)
}

/// Gives the copy the original's permissions and owner, so the POS keeps
/// its access after the swap (backups stay 0600).
pub fn match_owner_and_mode(copy: &Path, db: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(db).with_context(|| format!("{}: cannot stat", db.display()))?;
    std::fs::set_permissions(copy, std::fs::Permissions::from_mode(m.mode() & 0o7777))
        .with_context(|| format!("{}: cannot set permissions", copy.display()))?;
    // Only root can give a file away; for anyone else the owner is already them.
    let _ = std::os::unix::fs::chown(copy, Some(m.uid()), Some(m.gid()));
    Ok(())
}

/// Test hook, compiled only with the `test-hooks` feature (the test build):
/// `CUSTODIAN_TEST_DAMAGE_COPY=1` overwrites one page of the repaired copy
/// before it is verified, to prove that a copy failing its verification
/// never replaces the original; `CUSTODIAN_TEST_DAMAGE_COPY=sql:<SQL>` runs
/// that SQL on the copy instead (a change the copy's check cannot see, such
/// as one customer deleted with its index entries, for the verification's
/// row-count guard). In any other build this does nothing.
#[cfg(not(feature = "test-hooks"))]
pub fn test_damage_copy(_copy: &Path) -> Result<()> {
    Ok(())
}

/// See the other `test_damage_copy`: this is the test build's.
#[cfg(feature = "test-hooks")]
pub fn test_damage_copy(copy: &Path) -> Result<()> {
    use crate::format::header::{DatabaseHeader, HEADER_SIZE};
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;
    let hook = std::env::var("CUSTODIAN_TEST_DAMAGE_COPY").unwrap_or_default();
    if let Some(sql) = hook.strip_prefix("sql:") {
        Connection::open(copy)?.execute_batch(sql)?;
        return Ok(());
    }
    if hook != "1" {
        return Ok(());
    }
    let f = OpenOptions::new().read(true).write(true).open(copy)?;
    let mut head = vec![0u8; HEADER_SIZE];
    f.read_exact_at(&mut head, 0)?;
    let h = DatabaseHeader::parse(&head).map_err(|e| anyhow!("{e}"))?;
    // page 2 is always a b-tree page of the schema's first object
    f.write_all_at(&vec![0xA5u8; h.page_size as usize], h.page_size as u64)?;
    Ok(())
}

/// The copy's -wal and -shm, made by the read-only connections that
/// verified it. Its -wal holds no frame (nothing was written through them),
/// so both are removed before the rename: else they would stay behind in
/// the POS folder under the copy's name.
pub fn drop_sidecars(copy: &Path) -> Result<()> {
    if super::fingerprint::wal_holds_frames(copy) {
        bail!("{}: the verified copy's -wal holds frames", copy.display());
    }
    for suffix in ["-wal", "-shm"] {
        match std::fs::remove_file(sidecar(copy, suffix)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("{}{suffix}: cannot remove", copy.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Renames the verified copy over the database, atomically, and syncs the
/// folder. The copy is fsynced before. A signal before the rename stops it
/// (interrupt.rs); once renamed, the repair is done.
pub fn swap(copy: &Path, db: &Path) -> Result<()> {
    File::open(copy)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot sync", copy.display()))?;
    pause_point("rename");
    super::interrupt::swap(copy, db)?;
    pause_point("renamed");
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // the rename is done: a folder that cannot be synced is said, not undone
    if let Err(e) = fsync_dir(dir) {
        crate::messages::error(&format!("warning: {e:#}"));
    }
    Ok(())
}
