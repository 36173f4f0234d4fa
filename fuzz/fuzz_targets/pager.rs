//! `Pager` over a database file and its `-wal`, both taken from the input:
//! 4 bytes (big-endian) giving the length `n` of the database part, the
//! first `n` bytes of the rest as the database file, the remainder as its
//! `-wal`. Both are written to /dev/shm (or the temporary directory), opened
//! with `Pager::open` and removed again; then the schema table and a few more roots are
//! walked through the pager, the freelist followed, and every page read.
//!
//! The WAL's frames are fixed up first (header checksum, salts, running
//! checksums), so that mutations reach the pager's use of the WAL: its page
//! 1 replacing the header, its page count, its page images.
//!
//! Oracles: nothing panics or loops; page reads stay within what the pager
//! reports.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use custodian::format::btree::{PageSource, walk_index, walk_table};
use custodian::format::freelist::walk_freelist;
use custodian::pager::Pager;
use libfuzzer_sys::fuzz_target;

/// Pages read one by one per input.
const MAX_READS: u32 = 64;
/// Roots walked per input (1 is the schema table).
const MAX_ROOTS: u32 = 8;

/// `<scratch>/custodian-fuzz-pager-<pid>.db`; the files are removed right
/// after each open (the pager keeps its handles), so nothing is left behind.
fn db_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("custodian-fuzz-pager-{}.db", std::process::id()))
    })
}

#[path = "../common/wal_fixup.rs"]
mod wal_fixup;
use wal_fixup::fix_up;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let n = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let rest = &data[4..];
    let (db, wal) = rest.split_at(n.min(rest.len()));
    let mut wal = wal.to_vec();
    fix_up(&mut wal);
    let db_path = db_path();
    let mut wal_path = db_path.clone().into_os_string();
    wal_path.push("-wal");
    std::fs::write(db_path, db).expect("writing the database");
    std::fs::write(&wal_path, &wal).expect("writing the -wal");
    let opened = Pager::open(db_path);
    let _ = std::fs::remove_file(db_path);
    let _ = std::fs::remove_file(&wal_path);
    let Ok(pager) = opened else {
        return;
    };
    let _ = (pager.wal_error(), pager.file_len(), pager.path());
    if let Some(index) = pager.wal() {
        assert!(index.max_frame <= index.frames_valid);
        assert_eq!(index.page_size, pager.page_size());
    }
    let header = pager.header().clone();
    let _ = pager.main_header();
    let page_count = pager.page_count();
    let mut buf = Vec::new();
    for pgno in 0..=page_count.min(MAX_READS) {
        if pager.read_page(pgno, &mut buf).is_ok() {
            assert_eq!(buf.len(), pager.page_size() as usize);
        }
        let _ = pager.read_main_page(pgno, &mut buf);
    }
    for root in 1..=page_count.min(MAX_ROOTS) {
        let stats = walk_table(&pager, root, &mut |_| {});
        assert!(stats.pages.iter().all(|&p| p >= 1 && p <= page_count));
        let stats = walk_index(&pager, root, &mut |_| {});
        assert!(stats.pages.iter().all(|&p| p >= 1 && p <= page_count));
    }
    let _ = walk_freelist(&pager, header.first_freelist_trunk, header.freelist_count);
});
