//! Opening a database for reading through SQLite, and telling "busy" apart
//! from "damaged". check never opens the database for writing.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// How long a reader waits for another process's lock before saying "busy".
pub const BUSY_WAIT: Duration = Duration::from_millis(1500);

/// Opens `path` read-only: no file is created, nothing is ever written.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    conn.busy_timeout(BUSY_WAIT)?;
    // Belt and braces: even a bug cannot write through this connection.
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// True when `err` means another process holds a lock (not damage).
pub fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// True when `err` is SQLite's own verdict that the file is damaged.
pub fn is_corrupt(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// The error for a database that another process has locked.
pub fn busy_error(path: &Path) -> anyhow::Error {
    anyhow!(
        "{}: database is busy (locked by another process); nothing was checked, try again",
        path.display()
    )
}

/// SQLite's lock bytes in the database file (os_unix.c): RESERVED is taken
/// by a connection with a write transaction open (rollback journal).
const PENDING_BYTE: i64 = 0x4000_0000;
const RESERVED_BYTE: i64 = PENDING_BYTE + 1;
/// The write lock of a WAL database, a byte of its -shm file
/// (WALINDEX_LOCK_OFFSET + WAL_WRITE_LOCK).
const WAL_WRITE_LOCK_BYTE: i64 = 120;

/// Whether another process holds a write lock on `len` bytes at `start` of
/// `file`: only tested (F_GETLK), never taken. A file that cannot be
/// opened has no lock.
fn write_locked(file: &Path, start: i64) -> bool {
    use std::os::unix::io::AsRawFd;
    let Ok(f) = std::fs::File::open(file) else {
        return false;
    };
    // SAFETY: an all-zero flock is a valid value of a plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = 1;
    // SAFETY: F_GETLK on a descriptor this process owns, with a valid flock.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    rc == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
}

/// Names the lock when another process holds a write transaction open on
/// the database, as SQLite's own locks say: the RESERVED byte of the file
/// (rollback journal) or the write lock in the -shm (WAL).
pub fn open_writer(db: &Path) -> Option<&'static str> {
    if write_locked(db, RESERVED_BYTE) {
        return Some("its RESERVED lock is held");
    }
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    if write_locked(Path::new(&shm), WAL_WRITE_LOCK_BYTE) {
        return Some("the WAL write lock in its -shm is held");
    }
    None
}

/// The -shm "dead man switch" byte (os_unix.c's UNIX_SHM_DMS): every
/// connection using the -shm holds a shared lock on it.
const SHM_DMS_BYTE: i64 = 128;

fn beside(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    std::path::PathBuf::from(p)
}

/// Whether a -wal and a -shm were beside the database before a read-only
/// command opened it. SQLite creates both to read a WAL database, even
/// through a read-only connection, and leaves them when that connection
/// closes without write access.
#[derive(Debug, Clone, Copy)]
pub struct Leftovers {
    wal: bool,
    shm: bool,
}

/// Runs `work`, which opens `db` only to read it, and then removes the -wal
/// and -shm that SQLite made for it (see [`Leftovers::clean`]): a read-only
/// command leaves the database's folder as it found it.
pub fn leaving_nothing<T>(db: &Path, work: impl FnOnce() -> T) -> T {
    let leftovers = Leftovers::note(db);
    let out = work();
    leftovers.clean(db);
    out
}

impl Leftovers {
    pub fn note(db: &Path) -> Leftovers {
        Leftovers {
            wal: std::fs::symlink_metadata(beside(db, "-wal")).is_ok(),
            shm: std::fs::symlink_metadata(beside(db, "-shm")).is_ok(),
        }
    }

    /// After this process closed its connections: removes the -wal and
    /// -shm that were not there before, as SQLite itself removes them when
    /// its last connection closes, and only when no other connection uses
    /// them: the -shm's dead man switch can be locked exclusively (held
    /// while they are removed, so no connection can start using them
    /// meanwhile), and a -wal is removed only when it is empty. A -shm made
    /// beside a -wal that was there before (a WAL database whose last
    /// connection did not checkpoint, or whose -wal was copied without its
    /// -shm) goes too: it is only an index of that -wal, which the next
    /// connection rebuilds from it. Anything else is left as it is.
    pub fn clean(self, db: &Path) {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        if self.wal && self.shm {
            return; // they were there before: not this run's
        }
        let (wal, shm) = (beside(db, "-wal"), beside(db, "-shm"));
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&shm)
        else {
            return;
        };
        // SAFETY: an all-zero flock is a valid value of a plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = SHM_DMS_BYTE as libc::off_t;
        fl.l_len = 1;
        // SAFETY: F_SETLK on a descriptor this process owns, with a valid flock.
        if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) } != 0 {
            return; // another connection uses them: they are its
        }
        let wal_now = std::fs::symlink_metadata(&wal).ok();
        let shm_may_go = match (&wal_now, self.wal) {
            // there before: it stays, whatever it holds
            (_, true) => true,
            (None, false) => true,
            (Some(m), false) if m.is_file() && m.len() == 0 => std::fs::remove_file(&wal).is_ok(),
            // frames someone wrote: not this run's to remove
            (Some(_), false) => false,
        };
        if shm_may_go && !self.shm {
            let _ = std::fs::remove_file(&shm);
        }
        drop(f); // releases the lock
    }
}
