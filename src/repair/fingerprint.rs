//! What the database looked like when it was checked. Repair plans from a
//! check made before it takes the exclusive lock; once the lock is held it
//! compares the fingerprint again, and any difference means someone wrote
//! in between: the plan is stale (busy, exit 2, nothing changed).
//!
//! Only content that matters counts. The file's length, modification time
//! and 100-byte header, and the -wal's when it holds at least one whole
//! frame. A -wal that is absent, empty or holds no whole frame (SQLite
//! creates an empty one when it opens a WAL database at rest, as the check
//! and the lock do) is one and the same state: no committed content.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::format::header::HEADER_SIZE;
use crate::format::wal::{WAL_HEADER_SIZE, WalHeader};

/// Length, modification time and the leading bytes of one file.
type FileState = (u64, Option<SystemTime>, Vec<u8>);

#[derive(Debug, PartialEq)]
pub(super) struct Fingerprint {
    db: Option<FileState>,
    /// `None`: no -wal, or one without a whole frame.
    wal: Option<FileState>,
}

fn state(path: &Path, head_len: usize) -> Option<FileState> {
    open_state(&std::fs::File::open(path).ok()?, head_len)
}

/// The state of an open file, read at explicit offsets (its own offset is
/// neither used nor moved).
fn open_state(f: &std::fs::File, head_len: usize) -> Option<FileState> {
    use std::os::unix::fs::FileExt;
    let m = f.metadata().ok()?;
    let mut head = vec![0u8; head_len];
    let mut got = 0;
    while got < head_len {
        match f.read_at(&mut head[got..], got as u64).ok()? {
            0 => break,
            n => got += n,
        }
    }
    head.truncate(got);
    Some((m.len(), m.modified().ok(), head))
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn holds_frames((len, _, head): &FileState) -> bool {
    WalHeader::parse(head).is_ok_and(|h| h.frames_in_file(*len) > 0)
}

pub(super) fn fingerprint(db: &Path) -> Fingerprint {
    Fingerprint {
        db: state(db, HEADER_SIZE),
        wal: state(&wal_path(db), WAL_HEADER_SIZE).filter(holds_frames),
    }
}

/// The fingerprint of the locked database, read through the lock's open
/// file (the database may not be opened anew while it is locked: see
/// `apply::Lock`).
pub(super) fn fingerprint_locked(db: &Path, file: &std::fs::File) -> Fingerprint {
    Fingerprint {
        db: open_state(file, HEADER_SIZE),
        wal: state(&wal_path(db), WAL_HEADER_SIZE).filter(holds_frames),
    }
}

/// Whether the -wal of `db` holds at least one whole frame (else it holds
/// nothing a reader would see, and nothing to back up).
pub(super) fn wal_holds_frames(db: &Path) -> bool {
    state(&wal_path(db), WAL_HEADER_SIZE).is_some_and(|s| holds_frames(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::wal::{WAL_FORMAT_VERSION, WAL_MAGIC_BE, checksum};

    /// A valid WAL header for 512-byte pages.
    fn wal_header() -> Vec<u8> {
        let mut h = vec![0u8; WAL_HEADER_SIZE];
        h[0..4].copy_from_slice(&WAL_MAGIC_BE.to_be_bytes());
        h[4..8].copy_from_slice(&WAL_FORMAT_VERSION.to_be_bytes());
        h[8..12].copy_from_slice(&512u32.to_be_bytes());
        h[16..24].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let (a, b) = checksum(true, &h[..24], (0, 0));
        h[24..28].copy_from_slice(&a.to_be_bytes());
        h[28..32].copy_from_slice(&b.to_be_bytes());
        h
    }

    #[test]
    fn a_wal_without_a_whole_frame_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        std::fs::write(&db, vec![7u8; 1024]).unwrap();
        let wal = wal_path(&db);
        let at_rest = fingerprint(&db);
        // SQLite opening a WAL database at rest: an empty -wal appears
        std::fs::write(&wal, b"").unwrap();
        assert_eq!(fingerprint(&db), at_rest);
        // a header and part of a frame: still nothing committed
        let mut w = wal_header();
        w.extend(vec![0u8; 100]);
        std::fs::write(&wal, &w).unwrap();
        assert_eq!(fingerprint(&db), at_rest);
        // one whole frame: content that matters
        w.extend(vec![0u8; 24 + 512 - 100]);
        std::fs::write(&wal, &w).unwrap();
        let with_frame = fingerprint(&db);
        assert_ne!(with_frame, at_rest);
        // one more frame: a change
        w.extend(vec![0u8; 24 + 512]);
        std::fs::write(&wal, &w).unwrap();
        assert_ne!(fingerprint(&db), with_frame);
        // the database's header changing is a change
        std::fs::remove_file(&wal).unwrap();
        let mut bytes = vec![7u8; 1024];
        bytes[28] = 9;
        std::fs::write(&db, &bytes).unwrap();
        assert_ne!(fingerprint(&db), at_rest);
    }
}
