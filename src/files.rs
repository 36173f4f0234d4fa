//! Creating files safely: the one place that opens a new file for writing
//! (mode 0600, never through a symbolic link, never over an existing file)
//! and syncs a folder after a rename.

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
