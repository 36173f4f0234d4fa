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
