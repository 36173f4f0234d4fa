//! Creating files safely: the one place that opens a new file for writing
//! (mode 0600, never through a symbolic link, never over an existing file)
//! and syncs a folder after a rename; and whether a place can be written,
//! asked before any work starts.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Creates a new file for reading and writing: mode 0600, never through a
/// symbolic link, never over an existing file.
pub fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))
}

/// Syncs a folder, so that a rename or a new file in it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("{}: cannot sync the folder", dir.display()))
}

/// Whether this process may write `path` (a file, or a folder to create
/// files in and rename within), by access(2) with the effective user and
/// group: `Err` with the reason (permission denied, read-only file system,
/// an immutable file, …). Asked up front, so that a repair is refused
/// before any work rather than failing half way.
pub fn can_write(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mode = if path.is_dir() {
        libc::W_OK | libc::X_OK
    } else {
        libc::W_OK
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call;
    // faccessat only reads it.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
