//! The only code that writes a database. It executes a plan and decides
//! nothing: lock, backup, build the repaired copy, hand it back for
//! verification, swap it in atomically.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use super::plan::Plan;
use crate::files::{create_new, fsync_dir};
use crate::schema::quote_ident;
use crate::sql_bytes;

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

/// A step boundary of the locked repair: the test pause (`pause_point`),
/// then a stop if a signal asked for one (`interrupt::stop_if_asked`), so a
/// signal sent during the pause stops the repair there, whatever the load.
pub fn step(phase: &str) -> Result<()> {
    pause_point(phase);
    super::interrupt::stop_if_asked()
}

/// Holds SQLite's exclusive lock on the database for the whole repair.
///
/// SQLite's locks are POSIX record locks, and the kernel drops every such
/// lock a process holds on a file when the process closes *any*
/// descriptor of that file (fcntl(2)). So the database is opened once,
/// here, and kept open until the lock is released: every read of the
/// locked database (the fingerprint, the backup's checksum, the copies)
/// goes through `file`, and nothing else opens it.
pub struct Lock {
    /// Declared before `file`, so a Lock dropped whole (after the swap)
    /// closes the connection first and `file` last, as `release` does.
    holder: Holder,
    file: File,
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
/// byte after it, then the 510-byte shared range: 512 bytes.
const LOCK_BYTES_START: i64 = 0x4000_0000;
const LOCK_BYTES_LEN: i64 = 512;

/// Write-locks SQLite's lock bytes of `path` with an open-file-description
/// lock (Linux's F_OFD_SETLK: it conflicts with SQLite's POSIX locks, and
/// unlike them is not dropped when another descriptor of the file closes).
/// `wal_mode`: SQLite opened it and said WAL (it may not open it at all).
fn lock_bytes(path: &Path, wal_mode: bool) -> Result<Lock> {
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
    let db = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    Ok(Lock {
        holder: Holder::LockBytes(file),
        file: db,
        // a -wal that commits transactions: the database was in WAL mode
        // (its header's bytes 18 and 19 may be the damaged ones)
        was_wal: wal_mode || committed_wal(path).is_some(),
        left_wal: std::cell::Cell::new(false),
    })
}

pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The index of the -wal beside `db` (a database or a copy of one), when
/// that -wal can be read and holds a commit: what SQLite replays over the
/// file at its next open.
pub fn committed_wal(db: &Path) -> Option<crate::format::wal::WalIndex> {
    let bytes = std::fs::read(sidecar(db, "-wal")).ok()?;
    let index = crate::format::wal::WalIndex::build(&bytes).ok()?;
    index.has_commits().then_some(index)
}

/// A rollback journal SQLite would roll back on its next read: one whose
/// first byte is not zero (pager.c, hasHotJournal). The journal a finished
/// commit leaves is not: empty (journal_mode=TRUNCATE) or with its header
/// zeroed (PERSIST).
fn hot_journal(db: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut first = [0u8; 1];
    File::open(sidecar(db, "-journal"))
        .and_then(|f| f.read_at(&mut first, 0))
        .is_ok_and(|n| n == 1 && first[0] != 0)
}

/// Whether the file's own header is one SQLite refuses (the rules of
/// [`crate::format::header::DatabaseHeader::parse`]).
fn header_refused(path: &Path) -> bool {
    let mut head = [0u8; crate::format::header::HEADER_SIZE];
    File::open(path)
        .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0))
        .is_ok_and(|()| crate::format::header::DatabaseHeader::parse(&head).is_err())
}

/// Takes the exclusive lock, or fails at once with "busy" (exit 2).
pub fn lock(path: &Path) -> Result<Lock> {
    if hot_journal(path) {
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
    // Until the lock is held, closing this connection must not checkpoint
    // a -wal into the file (SQLite does at the last close of a WAL
    // database): a lock refused, or a header SQLite refuses, would leave
    // the database changed by a repair that changed nothing.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
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
        // (a schema format SQLite does not read is a plain SQLITE_ERROR,
        // "unsupported file format": told from the header, as SQLite does)
        Err(e)
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase)
                || header_refused(path) =>
        {
            drop(conn);
            return lock_bytes(path, false);
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
    // A WAL database SQLite opens read-only (a header write version above
    // 2: btree.c, `lockBtree`) cannot leave WAL mode: `PRAGMA journal_mode
    // = DELETE` checkpoints the -wal into the file and removes it, and only
    // then fails to write the header (nightly 585: a refusal that had
    // changed the original). So it is locked as a header SQLite refuses is,
    // and its -wal set aside at the swap (`wal_to_set_aside`).
    if mode.eq_ignore_ascii_case("wal") && conn.is_readonly("main").map_err(busy)? {
        drop(conn);
        return lock_bytes(path, true);
    }
    // Its close still does not checkpoint: a repair that stops before the
    // swap leaves the database and its -wal byte for byte as they were
    // (the -wal and -shm its open made are removed after it, `db::Leftovers`).
    // kept open until the lock is released (see `Lock`); writable only so
    // that a truncated WAL database can reach its size (`reach_wal_size`)
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    Ok(Lock {
        holder: Holder::Sqlite(conn),
        file,
        was_wal: mode.eq_ignore_ascii_case("wal"),
        left_wal: std::cell::Cell::new(false),
    })
}

/// The context of an error of [`Lock::leave_wal`]: by then SQLite may have
/// checkpointed the -wal into the original file (its rows unchanged, its
/// bytes not), and given a truncated file its missing pages as zeros.
#[derive(Debug)]
pub struct LeavingWal;

impl std::fmt::Display for LeavingWal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("leaving WAL mode for the swap")
    }
}

/// Test hook, compiled only with the `test-hooks` feature: with
/// `CUSTODIAN_TEST_FAIL_LEAVE_WAL=1`, [`Lock::leave_wal`] fails right after
/// SQLite checkpointed the -wal and left WAL mode (as an I/O error could
/// make it fail), so a test sees what the repair says then. In any other
/// build this does nothing.
fn test_fail_leave_wal(path: &Path) -> Result<()> {
    #[cfg(feature = "test-hooks")]
    if std::env::var("CUSTODIAN_TEST_FAIL_LEAVE_WAL").as_deref() == Ok("1") {
        bail!(
            "{}: the lock could not be taken again after the checkpoint (test hook)",
            path.display()
        );
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = path;
    Ok(())
}

impl Lock {
    /// The locked database, open for reading: the only descriptor of it
    /// custodian may read through while the lock is held.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A WAL database: its committed frames are checkpointed into the file
    /// (SQLite's own crash-safe checkpoint: the content does not change) and
    /// it is switched to a rollback journal, so that the swap is one rename
    /// with no -wal to replay over the new file. Done right before the swap,
    /// once the copy is verified: a repair that stops before it leaves the
    /// database and its -wal as they were. Returns whether it was done.
    pub fn leave_wal(&self, path: &Path) -> Result<bool> {
        let (true, Holder::Sqlite(conn)) = (self.was_wal, &self.holder) else {
            return Ok(false);
        };
        conn.execute_batch("COMMIT")?;
        reach_wal_size(&self.file, path)?;
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
        test_fail_leave_wal(path)?;
        conn.execute_batch("BEGIN EXCLUSIVE")?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(true)
    }

    /// A database SQLite refuses as a whole, or opens read-only (its lock
    /// bytes taken by hand), whose -wal holds committed frames: SQLite
    /// cannot checkpoint them (it cannot open the file, or cannot then
    /// write its header), and it replays a -wal over whatever file
    /// then has the database's name (pager.c, `pagerOpenWalIfPresent`). So
    /// the -wal is set aside, by a rename, right before the swap
    /// (`interrupt::swap`), and goes with the backup; its frames are in the
    /// repaired copy already (`wal_into_copy`). The -wal's path, if so.
    pub fn wal_to_set_aside(&self, path: &Path) -> Option<PathBuf> {
        if !matches!(self.holder, Holder::LockBytes(_)) {
            return None;
        }
        committed_wal(path).map(|_| sidecar(path, "-wal"))
    }

    /// Releases the lock of a repair that did not swap: a database that
    /// was in WAL mode is given WAL mode back (its content never changed).
    pub fn release(self) {
        let Lock {
            holder,
            file,
            left_wal,
            ..
        } = self;
        match holder {
            Holder::Sqlite(conn) => {
                let _ = conn.execute_batch("ROLLBACK");
                if left_wal.get() {
                    let _ = conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()));
                    // its -wal was checkpointed already: a close that
                    // checkpoints removes the new one and its -shm
                    let _ = conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false);
                }
                drop(conn);
            }
            // closing the descriptor drops its lock
            Holder::LockBytes(f) => drop(f),
        }
        // last: closing it drops whatever lock the process still holds
        drop(file);
    }
}

/// SQLite refuses to checkpoint into a file shorter than the database
/// its -wal commits, by more than the -wal's frames could fill (wal.c,
/// `walCheckpoint`: SQLITE_CORRUPT): a truncated file (`file`, the database
/// `path` or a copy of it with the -wal beside it) is first given its
/// missing pages back as zeros, which is what SQLite reads past the file's
/// end in any case (the content does not change). Through the caller's
/// descriptor: closing another one of the locked database would drop
/// SQLite's locks.
fn reach_wal_size(file: &File, path: &Path) -> Result<()> {
    let Some(index) = committed_wal(path) else {
        return Ok(());
    };
    let want = u64::from(index.db_pages) * u64::from(index.page_size);
    let len = file
        .metadata()
        .with_context(|| format!("{}: cannot read its size", path.display()))?
        .len();
    if len < want {
        file.set_len(want).with_context(|| {
            format!(
                "{}: cannot give the truncated file its {} missing pages before the checkpoint",
                path.display(),
                (want - len) / u64::from(index.page_size)
            )
        })?;
    }
    Ok(())
}

/// What [`wal_into_copy`] wrote into a work copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalApplied {
    /// The -wal's last committed frame.
    pub max_frame: u32,
    /// Pages written from the -wal (each page's newest committed frame).
    pub pages: usize,
    /// The database's size as of that commit, in pages.
    pub db_pages: u32,
    /// The header's page count, where it was valid and said otherwise (a
    /// stale page 1): SQLite's b-tree layer reads no page past it.
    pub stale_page_count: Option<u32>,
}

impl WalApplied {
    /// The report's account of it.
    pub fn detail(&self, db: &Path) -> String {
        let stale = self.stale_page_count.map_or(String::new(), |n| {
            format!(
                "; the header's page count {n} (a stale page 1: SQLite reads no page past it) was set to the -wal's {}",
                self.db_pages
            )
        });
        format!(
            "the {} committed frames of {}-wal (the newest image of {} pages, a database of {} pages) were written into the work copy, as SQLite's checkpoint writes them; the original and its -wal were only read{stale}",
            self.max_frame,
            db.display(),
            self.pages,
            self.db_pages
        )
    }
}

/// The work copy `copy` of the database `db`, made of its file alone, given
/// what SQLite reads over that file: the committed frames of the -wal
/// beside `db`. SQLite replays a -wal beside any non-empty database file,
/// whatever its header says (pager.c, `pagerOpenWalIfPresent`); each page's
/// newest committed frame is its content and the last commit's size the
/// database's (wal.c, `walCheckpoint`, `sqlite3WalDbsize`) — what
/// custodian's pager reads too. The frames are written here by custodian's
/// own WAL index, not by SQLite's checkpoint, so that the copy gets them
/// also where SQLite cannot checkpoint: a header it refuses, a stale page 1
/// whose page count hides the -wal's last pages (SQLite's checkpoint keeps
/// that count, its b-tree layer then reads no page past it: btree.c,
/// `lockBtree`). The copy's file is then sized to the -wal's database, its
/// header says rollback journal (bytes 18 and 19, as the build expects) and
/// a valid page count that says otherwise is set to that size. The database
/// and its -wal are only read. `None` when the -wal holds no commit.
pub fn wal_into_copy(db: &Path, copy: &Path) -> Result<Option<WalApplied>> {
    use crate::format::header::{
        DatabaseHeader, HEADER_SIZE, PAGE_COUNT_OFFSET, trusted_page_count,
    };
    use std::os::unix::fs::FileExt;
    let wal_path = sidecar(db, "-wal");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(copy)
        .with_context(|| format!("{}: cannot open", copy.display()))?;
    let Some(index) = committed_wal(db) else {
        rollback_journal(&f, copy)?;
        return Ok(None);
    };
    let ps = index.page_size;
    let wal =
        File::open(&wal_path).with_context(|| format!("{}: cannot read", wal_path.display()))?;
    let mut head = [0u8; HEADER_SIZE];
    if f.read_exact_at(&mut head, 0).is_ok()
        && let Ok(h) = DatabaseHeader::parse(&head)
        && h.page_size != ps
    {
        bail!(
            "{}: its frames are {ps}-byte pages, the database's header says {}",
            wal_path.display(),
            h.page_size
        );
    }
    let mut buf = vec![0u8; ps as usize];
    let mut pages = 0;
    for &(pgno, frame) in index.pages() {
        // a page past the last commit's size is not the database's
        if pgno > index.db_pages {
            continue;
        }
        wal.read_exact_at(&mut buf, crate::format::wal::frame_page_offset(frame, ps))
            .with_context(|| format!("{}: reading frame {frame}", wal_path.display()))?;
        f.write_all_at(&buf, u64::from(pgno - 1) * u64::from(ps))
            .with_context(|| format!("{}: writing page {pgno}", copy.display()))?;
        pages += 1;
    }
    f.set_len(u64::from(index.db_pages) * u64::from(ps))
        .with_context(|| format!("{}: cannot size it to the -wal's database", copy.display()))?;
    head = [0u8; HEADER_SIZE];
    f.read_exact_at(&mut head, 0)
        .with_context(|| format!("{}: reading the header", copy.display()))?;
    let stale_page_count = trusted_page_count(&head).filter(|&c| c != index.db_pages);
    if stale_page_count.is_some() {
        head[PAGE_COUNT_OFFSET..PAGE_COUNT_OFFSET + 4]
            .copy_from_slice(&index.db_pages.to_be_bytes());
    }
    f.write_all_at(&head, 0)
        .with_context(|| format!("{}: writing the header", copy.display()))?;
    rollback_journal(&f, copy)?;
    Ok(Some(WalApplied {
        max_frame: index.max_frame,
        pages,
        db_pages: index.db_pages,
        stale_page_count,
    }))
}

/// A work copy's header set to a rollback journal where it says WAL
/// (bytes 18 and 19 both 2), as `PRAGMA journal_mode = DELETE` sets them
/// (btree.c, `sqlite3BtreeSetVersion`): the build writes it with one.
fn rollback_journal(f: &File, copy: &Path) -> Result<()> {
    use crate::format::header::{READ_VERSION_OFFSET, WRITE_VERSION_OFFSET};
    use std::os::unix::fs::FileExt;
    let mut v = [0u8; 2];
    f.read_exact_at(&mut v, WRITE_VERSION_OFFSET as u64)
        .with_context(|| format!("{}: reading the header", copy.display()))?;
    if v == [2, 2] {
        f.write_all_at(&[1, 1], WRITE_VERSION_OFFSET as u64)
            .with_context(|| format!("{}: writing the header", copy.display()))?;
    }
    debug_assert_eq!(READ_VERSION_OFFSET, WRITE_VERSION_OFFSET + 1);
    Ok(())
}

/// A work copy whose header says a file format write version SQLite does
/// not write (above 2: SQLite then opens the file read-only, and every
/// step of the repair that writes fails) is given the write version that
/// goes with its read version (1 rollback journal, 2 WAL; 1 where that is
/// not 1 or 2 either). The value it had, when it was mended.
pub fn writable_copy(copy: &Path) -> Result<Option<u8>> {
    use crate::format::header::{READ_VERSION_OFFSET, WRITE_VERSION_OFFSET};
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(copy)
        .with_context(|| format!("{}: cannot open", copy.display()))?;
    let mut v = [0u8; 2];
    if f.read_exact_at(&mut v, WRITE_VERSION_OFFSET as u64)
        .is_err()
    {
        // a file too short for a header: the plan's own steps say so
        return Ok(None);
    }
    let [write, read] = v;
    if write <= 2 {
        return Ok(None);
    }
    let want = if matches!(read, 1 | 2) { read } else { 1 };
    f.write_all_at(&[want], WRITE_VERSION_OFFSET as u64)
        .with_context(|| format!("{}: cannot write its header", copy.display()))?;
    debug_assert_eq!(READ_VERSION_OFFSET, WRITE_VERSION_OFFSET + 1);
    Ok(Some(write))
}

/// Creates the empty file the rebuilt database is written into (0600, no
/// symlink, never over an existing file).
pub fn create_empty(path: &Path) -> Result<()> {
    create_new(path).map(drop)
}

/// The rebuilt file was written without a journal: give it the original's
/// journal mode (a rollback journal, or WAL). It is synced before the swap.
pub fn finish_journal_mode(path: &Path, was_wal: bool) -> Result<()> {
    let conn = Connection::open(path)?;
    let want = if was_wal { "wal" } else { "delete" };
    let m: String = conn.query_row(&format!("PRAGMA journal_mode = {want}"), [], |r| r.get(0))?;
    if !m.eq_ignore_ascii_case(want) {
        bail!("could not set journal mode {want} on the rebuilt copy");
    }
    drop(conn);
    start_writeback(&File::open(path)?);
    Ok(())
}

/// How much a copy copies between two looks at the interrupt flag.
const COPY_CHUNK: u64 = 64 << 20;

/// What a copy is for, and so how durable it must be before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Synced before the copy returns (a backup).
    Now,
    /// Its writeback is started, so that the sync before the swap finds
    /// little left to write (the repaired copy).
    Later,
    /// Never synced: read and removed within the run (the rebuild's source).
    Never,
}

/// Copies the open file `src` (`from` names it in messages) into the new
/// file `to` (0600, no symlink, never over an existing file), byte for
/// byte from offset 0 to its end: in the kernel (copy_file_range, at
/// explicit offsets: `src`'s own offset is neither used nor moved, so the
/// lock's descriptor can be shared), in chunks so that a signal stops a
/// long copy. Returns the new file.
pub fn copy_open(src: &File, from: &Path, to: &Path, durable: Durable) -> Result<File> {
    let dst = create_new(to)?;
    let len = src
        .metadata()
        .with_context(|| format!("{}: cannot read", from.display()))?
        .len();
    let what = || format!("copying {} to {}", from.display(), to.display());
    let mut off = 0u64;
    while off < len {
        let n = copy_range(src, &dst, off, (len - off).min(COPY_CHUNK)).with_context(what)?;
        if n == 0 {
            bail!("{}: the file ended at byte {off} of {len}", from.display());
        }
        off += n;
        super::interrupt::stop_if_asked()?;
    }
    match durable {
        Durable::Now => dst
            .sync_all()
            .with_context(|| format!("syncing {}", to.display()))?,
        Durable::Later => start_writeback(&dst),
        Durable::Never => {}
    }
    Ok(dst)
}

/// Copies up to `len` bytes at `off` from `src` to the same offset of
/// `dst`: copy_file_range, or read and write where the kernel cannot copy
/// between the two (another file system). Returns the bytes copied.
fn copy_range(src: &File, dst: &File, off: u64, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let mut done = 0u64;
    while done < len {
        let mut off_in = (off + done) as libc::loff_t;
        let mut off_out = off_in;
        // ok: two descriptors we own, offsets in live locals
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                (len - done) as usize,
                0,
            )
        };
        if n > 0 {
            done += n as u64;
            continue;
        }
        if n == 0 {
            return Ok(done);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => break,
            _ => return Err(e),
        }
    }
    // the kernel would not copy: read and write
    let mut buf = vec![0u8; 1 << 20];
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = src.read_at(&mut buf[..want], off + done)?;
        if n == 0 {
            break;
        }
        dst.write_all_at(&buf[..n], off + done)?;
        done += n as u64;
    }
    Ok(done)
}

/// Asks the kernel to start writing `f`'s dirty pages now (sync_file_range),
/// on a thread of its own: the call queues every dirty page of the file and
/// can itself wait a long time for the disk's queue (15 s for a 2.4 GiB
/// rebuilt file), while the verification that follows needs only to read.
/// The fsync before the swap then has little left to do. Only a hint:
/// nothing depends on it, nothing waits for it.
pub fn start_writeback(f: &File) {
    use std::os::unix::io::AsRawFd;
    let Ok(f) = f.try_clone() else { return };
    std::thread::spawn(move || {
        // ok: a descriptor this thread owns; the call only starts writeback
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    });
}

/// Copies the file at `from` (one that is not locked: the database before
/// the lock, a scratch copy) into the new file `to`.
pub fn copy_file(from: &Path, to: &Path, durable: Durable) -> Result<()> {
    let src = File::open(from).with_context(|| format!("{}: cannot read", from.display()))?;
    copy_open(&src, from, to, durable).map(drop)
}

/// The SHA-256 of the open file `src`, read at explicit offsets (its own
/// offset is neither used nor moved), as lowercase hex. Stops early when a
/// signal asks the repair to stop.
pub fn sha256_of(src: &File) -> Result<String> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    for reads in 1u64.. {
        let n = src.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
        if reads % 64 == 0 {
            super::interrupt::stop_if_asked()?;
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
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
    // No journal and no sync: the copy is not live (a step that fails
    // leaves it to be removed), and it is synced whole before the swap.
    conn.execute_batch(
        "PRAGMA writable_schema = ON; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN IMMEDIATE;",
    )?;
    let mut out = SqlOutcome::default();
    let tq = quote_ident(&table.name);
    // the damaged side of an ID mismatch is the row: restore its value
    // (its index is emptied and rebuilt below)
    for rv in &plan.restore_values {
        sql_bytes::execute(
            &conn,
            &format!(
                "UPDATE {tq} SET {} = ?1 WHERE rowid = ?2",
                quote_ident(&table.columns[table.id_column].name)
            ),
            &[&rv.restored, &rv.rowid],
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
        let groups: Vec<(String, String)> = sql_bytes::query_map(&conn, &sql, &[], |r| {
            Ok((r.get::<String>(0)?, r.get::<String>(1)?))
        })?;
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
                    let snap_key: Option<String> = sql_bytes::query_row(
                        &s,
                        &format!("SELECT {key_expr} FROM {tq} NOT INDEXED WHERE rowid = ?1"),
                        &[&r],
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
            let kept_id: rusqlite::types::Value = sql_bytes::query_row(
                &conn,
                &format!(
                    "SELECT {} FROM {tq} NOT INDEXED WHERE rowid = ?1",
                    quote_ident(&table.columns[table.id_column].name)
                ),
                &[&keep],
                |row| row.get(0),
            )?;
            let key = crate::report::id_text(&kept_id).unwrap_or_default();
            for &r in &moved {
                let id: rusqlite::types::Value = sql_bytes::query_row(
                    &conn,
                    &format!(
                        "SELECT {} FROM {tq} NOT INDEXED WHERE rowid = ?1",
                        quote_ident(&table.columns[table.id_column].name)
                    ),
                    &[&r],
                    |row| row.get(0),
                )?;
                if let Some(t) = crate::report::id_text(&id) {
                    out.quarantined_ids.push(t);
                }
                sql_bytes::execute(
                    &conn,
                    &format!(
                        "INSERT INTO {QUARANTINE_TABLE} SELECT ?1, ?2, ?3, rowid, ?4, json_object({}) FROM {tq} NOT INDEXED WHERE rowid = ?5",
                        all_cols.join(", ")
                    ),
                    &[
                        &stamp,
                        &sql_bytes::param(&format!(
                            "duplicate key under UNIQUE index {} (re-registered while the index was broken)",
                            d.index
                        )),
                        &sql_bytes::param(&table.name),
                        &keep,
                        &r,
                    ],
                )?;
                sql_bytes::execute(&conn, &format!("DELETE FROM {tq} WHERE rowid = ?1"), &[&r])?;
            }
            out.quarantined.push((d.index.clone(), keep, moved, key));
        }
    }
    for r in &plan.recreate_indexes {
        sql_bytes::execute_batch(&conn, &r.sql)
            .with_context(|| format!("recreating index {} from {}", r.name, r.snapshot))?;
    }
    for name in &plan.rebuild_indexes {
        crate::sql_bytes::execute_batch(&conn, &format!("REINDEX {}", quote_ident(name)))
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
/// (interrupt.rs); once renamed, the repair is done. `wal_aside`: a -wal
/// SQLite would replay over the new file, and the name it is renamed to
/// first (`Lock::wal_to_set_aside`, `interrupt::swap`).
pub fn swap(copy: &Path, db: &Path, wal_aside: Option<(&Path, &Path)>) -> Result<()> {
    File::open(copy)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot sync", copy.display()))?;
    pause_point("rename");
    super::interrupt::swap(copy, db, wal_aside)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    const MIB: u64 = 1 << 20;

    /// Runs `f` (a test's body) on a thread of its own and fails the test
    /// if it has not returned after 20 s. These tests take milliseconds; a
    /// loop that never ends (a copy or checksum loop whose offset stops
    /// moving) then fails its test instead of hanging the suite. The
    /// looping thread is left behind: the test binary's exit ends it.
    fn within_20s<F: FnOnce() + Send + 'static>(f: F) {
        use std::sync::mpsc::RecvTimeoutError;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => panic!("still running after 20 s: it never ends"),
            Err(RecvTimeoutError::Disconnected) => panic!("the test failed (above)"),
        }
    }

    /// Bytes that differ from offset to offset with no short period
    /// (xorshift), so that a byte copied from or to the wrong offset shows.
    fn pattern(len: u64) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// `dst` holds `src[off..off + len]` at `off`, zeros before it, nothing
    /// after it.
    fn assert_copied(dst: &Path, src: &[u8], off: u64, len: u64) {
        let got = std::fs::read(dst).unwrap();
        assert_eq!(got.len() as u64, off + len, "the copy's length");
        let (off, end) = (off as usize, (off + len) as usize);
        assert!(got[..off].iter().all(|&b| b == 0), "bytes before the range");
        assert!(got[off..] == src[off..end], "the range's bytes");
    }

    /// In the kernel (copy_file_range): exactly the range asked, at the same
    /// offset, from a source that goes on after it.
    #[test]
    fn copy_range_copies_exactly_the_range_asked() {
        within_20s(|| {
            let dir = tempfile::tempdir().unwrap();
            let bytes = pattern(5 * MIB + 123);
            std::fs::write(dir.path().join("src"), &bytes).unwrap();
            let src = File::open(dir.path().join("src")).unwrap();
            let dst = create_new(&dir.path().join("dst")).unwrap();
            let (off, len) = (MIB + 4097, 2 * MIB + 3);
            assert_eq!(copy_range(&src, &dst, off, len).unwrap(), len);
            assert_copied(&dir.path().join("dst"), &bytes, off, len);
        });
    }

    /// A source that ends inside the range: what it has is copied, and the
    /// count says so (the kernel's copy returns 0 at the end of the file).
    #[test]
    fn copy_range_stops_where_the_source_ends() {
        within_20s(|| {
            let dir = tempfile::tempdir().unwrap();
            let bytes = pattern(3 * MIB + 5);
            std::fs::write(dir.path().join("src"), &bytes).unwrap();
            let src = File::open(dir.path().join("src")).unwrap();
            let dst = create_new(&dir.path().join("dst")).unwrap();
            assert_eq!(copy_range(&src, &dst, 0, 4 * MIB).unwrap(), 3 * MIB + 5);
            assert_copied(&dir.path().join("dst"), &bytes, 0, 3 * MIB + 5);
        });
    }

    /// Where the kernel will not copy, read and write do it: the kernel
    /// refuses a range of a file copied onto itself where the two overlap
    /// (EINVAL, on every kernel), as it refuses two file systems (EXDEV).
    /// The file is copied onto itself at the same offsets, so it must come
    /// out unchanged: a byte read or written at another offset changes it.
    #[test]
    fn copy_range_reads_and_writes_where_the_kernel_refuses() {
        within_20s(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let bytes = pattern(4 * MIB + 17);
            std::fs::write(&path, &bytes).unwrap();
            let src = File::open(&path).unwrap();
            let dst = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let (off, len) = (MIB + 4097, 2 * MIB + 3);
            assert_eq!(copy_range(&src, &dst, off, len).unwrap(), len);
            assert!(std::fs::read(&path).unwrap() == bytes, "the file changed");
        });
    }

    /// From another file system: a memfd (its own tmpfs) into a file of a
    /// temporary folder. Since Linux 5.19 the kernel refuses the copy
    /// (EXDEV) and read and write do it; before, the kernel copied.
    #[test]
    fn copy_range_copies_across_file_systems() {
        within_20s(|| {
            use std::os::fd::FromRawFd;
            let dir = tempfile::tempdir().unwrap();
            // ok: a NUL-terminated name; the descriptor is checked, then owned by `src`
            let fd = unsafe { libc::memfd_create(c"custodian-test".as_ptr(), 0) };
            assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
            // ok: a new descriptor that nothing else owns
            let src = unsafe { File::from_raw_fd(fd) };
            let bytes = pattern(3 * MIB + 11);
            src.write_all_at(&bytes, 0).unwrap();
            let dst = create_new(&dir.path().join("dst")).unwrap();
            let (off, len) = (4097, 3 * MIB + 11 - 4097);
            assert_eq!(copy_range(&src, &dst, off, len).unwrap(), len);
            assert_copied(&dir.path().join("dst"), &bytes, off, len);
        });
    }

    /// A whole file copied into a new file (one chunk of the loop, which
    /// must end at the file's end): every byte.
    #[test]
    fn copy_open_copies_the_whole_file() {
        within_20s(|| {
            let dir = tempfile::tempdir().unwrap();
            let from = dir.path().join("src");
            let bytes = pattern(2 * MIB + 9);
            std::fs::write(&from, &bytes).unwrap();
            let to = dir.path().join("dst");
            let src = File::open(&from).unwrap();
            copy_open(&src, &from, &to, Durable::Never).unwrap();
            assert!(std::fs::read(&to).unwrap() == bytes, "the copy differs");
        });
    }

    /// The backup's checksum is the SHA-256 of every byte of the file, read
    /// 1 MiB at a time: a file of three reads and a short fourth, against
    /// the digest of the whole at once; and the published digests of "abc"
    /// and of no bytes (FIPS 180-2), which pin the hex form.
    #[test]
    fn sha256_of_digests_every_byte() {
        within_20s(|| {
            let dir = tempfile::tempdir().unwrap();
            let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
            let bytes = pattern(3 * MIB + 7);
            let big = dir.path().join("big");
            std::fs::write(&big, &bytes).unwrap();
            let got = sha256_of(&File::open(&big).unwrap()).unwrap();
            assert_eq!(got, hex(&Sha256::digest(&bytes)));
            for (content, want) in [
                (
                    &b"abc"[..],
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                ),
                (
                    &b""[..],
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                ),
            ] {
                let f = dir.path().join("small");
                std::fs::write(&f, content).unwrap();
                assert_eq!(sha256_of(&File::open(&f).unwrap()).unwrap(), want);
            }
        });
    }

    /// Without `CUSTODIAN_PAUSE_AT` (no test of this binary sets it) a pause
    /// point returns at once, whatever the phase: the hook pauses only the
    /// phase a test names.
    #[test]
    fn a_pause_point_nobody_asked_for_does_not_pause() {
        assert!(std::env::var_os("CUSTODIAN_PAUSE_AT").is_none());
        within_20s(|| {
            for phase in ["backup", "build", "verify", "rename", "renamed"] {
                pause_point(phase);
            }
        });
    }

    /// SQLite rolls a journal back only when its first byte is not zero
    /// (pager.c, hasHotJournal): a journal that starts with its header's
    /// magic (d9 d5 05 f9 20 a1 63 d7) is hot; none, an empty one (what
    /// journal_mode=TRUNCATE leaves) and one whose header is zeroed
    /// (PERSIST) are not.
    #[test]
    fn a_journal_is_hot_when_its_first_byte_is_not_zero() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        let journal = dir.path().join("pos.db-journal");
        assert!(!hot_journal(&db), "no journal");
        std::fs::write(&journal, b"").unwrap();
        assert!(!hot_journal(&db), "an empty journal");
        std::fs::write(&journal, [0u8; 512]).unwrap();
        assert!(!hot_journal(&db), "a zeroed header");
        let mut header = [0u8; 512];
        header[..8].copy_from_slice(&[0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);
        std::fs::write(&journal, header).unwrap();
        assert!(hot_journal(&db), "a journal header");
        std::fs::write(&journal, [0x01]).unwrap();
        assert!(hot_journal(&db), "one byte, not zero");
    }
}
