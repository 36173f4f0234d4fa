//! The files SQLite keeps beside a database, told from the database itself.
//!
//! A user who gives `pos.db-wal`, `pos.db-journal` or `pos.db-shm` where the
//! database belongs meant `pos.db`: these files hold pages of it (or an index
//! of them), never a database, and a page reader that went looking for
//! b-tree pages in them could find some. They are recognised by their own
//! format (spec: <https://www.sqlite.org/fileformat2.html>, "The Rollback
//! Journal", "The Write-Ahead Log", "The WAL-Index File Format"):
//!
//! ```text
//!  -wal      0  magic 0x377f0682 or 0x377f0683 (big-endian u32)
//!            4  format version 3007000           (big-endian u32)
//!  -journal  0  magic d9 d5 05 f9 20 a1 63 d7 (a hot journal; zeros once a
//!               commit is done or before its first sync)
//!            8  page count, 12 nonce, 16 initial database size in pages
//!           20  sector size, 24 page size          (big-endian u32)
//!  -shm      0  wal-index header, first copy:  version 3007000 (u32 in the
//!               byte order of the machine that wrote it), ...
//!           48  wal-index header, second copy: the same version
//! ```
//!
//! A journal with zeros where the magic goes is told as one only when its
//! name says so and its header names a sector size and a page size SQLite
//! writes: the bytes alone could be anything.

use super::wal::{
    WAL_FORMAT_VERSION, WAL_MAGIC_BE, WAL_MAGIC_LE, WAL_MAGIC_OFFSET, WAL_VERSION_OFFSET,
};
use super::{be_u32, header};

/// The magic string a rollback journal's header starts with (pager.c,
/// `aJournalMagic`), once the journal is synced and would be rolled back.
pub const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/// Offset of the sector size in a rollback journal's header.
pub const JOURNAL_SECTOR_SIZE_OFFSET: usize = 20;
/// Offset of the page size in a rollback journal's header.
pub const JOURNAL_PAGE_SIZE_OFFSET: usize = 24;
/// The largest sector size SQLite writes into a journal header.
pub const MAX_SECTOR_SIZE: u32 = 65536;
/// Offset of the first copy of the wal-index header in a -shm file.
pub const SHM_HEADER1_OFFSET: usize = 0;
/// Offset of the second copy of the wal-index header in a -shm file.
pub const SHM_HEADER2_OFFSET: usize = 48;
/// The wal-index format version both copies of its header start with.
pub const SHM_VERSION: u32 = WAL_FORMAT_VERSION;

/// A file SQLite keeps beside a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    /// The write-ahead log (`-wal`).
    Wal,
    /// The rollback journal (`-journal`).
    Journal,
    /// The wal-index (`-shm`).
    WalIndex,
}

impl Companion {
    /// What the file is, in a sentence's words.
    pub fn what(self) -> &'static str {
        match self {
            Companion::Wal => "a SQLite write-ahead log",
            Companion::Journal => "a SQLite rollback journal",
            Companion::WalIndex => "a SQLite WAL index (shared-memory file)",
        }
    }

    /// The suffix SQLite gives it after the database's name.
    pub fn suffix(self) -> &'static str {
        match self {
            Companion::Wal => "-wal",
            Companion::Journal => "-journal",
            Companion::WalIndex => "-shm",
        }
    }
}

/// Which companion file `head` (a file's first bytes) is, if it is one;
/// `name` is the file's name (only a journal without its magic needs it).
/// A file that starts like a database is none.
pub fn identify(head: &[u8], name: &[u8]) -> Option<Companion> {
    if head.starts_with(header::MAGIC) {
        return None;
    }
    let u32_at = |at: usize| be_u32(head, at);
    // the machine that wrote it wrote its own byte order
    let shm_version = |at: usize| {
        head.get(at..at + 4).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            u32::from_le_bytes(b) == SHM_VERSION || u32::from_be_bytes(b) == SHM_VERSION
        }) == Some(true)
    };
    let wal_magic = u32_at(WAL_MAGIC_OFFSET);
    if (wal_magic == Some(WAL_MAGIC_LE) || wal_magic == Some(WAL_MAGIC_BE))
        && u32_at(WAL_VERSION_OFFSET) == Some(WAL_FORMAT_VERSION)
    {
        return Some(Companion::Wal);
    }
    if head.starts_with(&JOURNAL_MAGIC) {
        return Some(Companion::Journal);
    }
    if shm_version(SHM_HEADER1_OFFSET) && shm_version(SHM_HEADER2_OFFSET) {
        return Some(Companion::WalIndex);
    }
    let sizes_written = u32_at(JOURNAL_SECTOR_SIZE_OFFSET)
        .is_some_and(|s| s.is_power_of_two() && (512..=MAX_SECTOR_SIZE).contains(&s))
        && u32_at(JOURNAL_PAGE_SIZE_OFFSET).is_some_and(|p| {
            p.is_power_of_two() && (header::MIN_PAGE_SIZE..=header::MAX_PAGE_SIZE).contains(&p)
        });
    if name.ends_with(Companion::Journal.suffix().as_bytes())
        && head.len() >= JOURNAL_MAGIC.len()
        && head[..JOURNAL_MAGIC.len()].iter().all(|&b| b == 0)
        && sizes_written
    {
        return Some(Companion::Journal);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_head(magic: u32) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[0..4].copy_from_slice(&magic.to_be_bytes());
        h[4..8].copy_from_slice(&WAL_FORMAT_VERSION.to_be_bytes());
        h[8..12].copy_from_slice(&4096u32.to_be_bytes());
        h
    }

    fn journal_head(magic: [u8; 8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(&magic);
        h[20..24].copy_from_slice(&512u32.to_be_bytes());
        h[24..28].copy_from_slice(&4096u32.to_be_bytes());
        h
    }

    #[test]
    fn each_companion_is_told_by_its_bytes() {
        assert_eq!(
            identify(&wal_head(WAL_MAGIC_LE), b"x"),
            Some(Companion::Wal)
        );
        assert_eq!(
            identify(&wal_head(WAL_MAGIC_BE), b"x"),
            Some(Companion::Wal)
        );
        // the magic alone, with another version: not told as a -wal
        let mut h = wal_head(WAL_MAGIC_LE);
        h[7] ^= 1;
        assert_eq!(identify(&h, b"x.db-wal"), None);
        assert_eq!(
            identify(&journal_head(JOURNAL_MAGIC), b"x"),
            Some(Companion::Journal)
        );
        let mut shm = vec![0u8; 136];
        shm[0..4].copy_from_slice(&SHM_VERSION.to_ne_bytes());
        shm[48..52].copy_from_slice(&SHM_VERSION.to_ne_bytes());
        assert_eq!(identify(&shm, b"x"), Some(Companion::WalIndex));
        // one copy of the wal-index header only: not told
        shm[48] ^= 1;
        assert_eq!(identify(&shm, b"x.db-shm"), None);
    }

    #[test]
    fn a_journal_without_its_magic_needs_its_name_and_sizes() {
        let zeroed = journal_head([0; 8]);
        assert_eq!(
            identify(&zeroed, b"pos.db-journal"),
            Some(Companion::Journal)
        );
        assert_eq!(identify(&zeroed, b"pos.db"), None);
        let mut no_sizes = zeroed.clone();
        no_sizes[20..28].fill(0);
        assert_eq!(identify(&no_sizes, b"pos.db-journal"), None);
    }

    #[test]
    fn a_database_is_no_companion() {
        let mut db = vec![0u8; 512];
        db[..16].copy_from_slice(header::MAGIC);
        assert_eq!(identify(&db, b"pos.db-wal"), None);
        assert_eq!(identify(&[], b"pos.db-wal"), None);
    }

    /// Seeded property (the repair fuzz target reaches `identify` only
    /// under a `.db` name): heads made from each companion's and a
    /// database's, cut at every length and with random bytes changed,
    /// under each kind of name. Never a panic, and every answer is one the
    /// format's own fields give.
    #[test]
    fn random_heads_are_told_only_by_their_fields() {
        let mut shm = vec![0u8; 136];
        shm[0..4].copy_from_slice(&SHM_VERSION.to_ne_bytes());
        shm[48..52].copy_from_slice(&SHM_VERSION.to_ne_bytes());
        let mut db = vec![0u8; 512];
        db[..16].copy_from_slice(header::MAGIC);
        let bases = [
            wal_head(WAL_MAGIC_LE),
            journal_head(JOURNAL_MAGIC),
            journal_head([0; 8]),
            shm,
            db,
        ];
        let names: [&[u8]; 4] = [b"pos.db", b"pos.db-wal", b"pos.db-journal", b"pos.db-shm"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let u32_at = |h: &[u8], at: usize| {
            h.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        for round in 0..4000 {
            let base = &bases[round % bases.len()];
            let mut h = base[..(next() as usize) % (base.len() + 1)].to_vec();
            for _ in 0..(next() % 4) {
                if !h.is_empty() {
                    let at = (next() as usize) % h.len().min(64);
                    h[at] = next() as u8;
                }
            }
            let name = names[(next() as usize) % names.len()];
            match identify(&h, name) {
                Some(Companion::Wal) => {
                    assert!(matches!(u32_at(&h, 0), Some(WAL_MAGIC_LE | WAL_MAGIC_BE)));
                    assert_eq!(u32_at(&h, 4), Some(WAL_FORMAT_VERSION));
                }
                Some(Companion::Journal) => assert!(
                    h.starts_with(&JOURNAL_MAGIC)
                        || (name.ends_with(b"-journal") && h.len() >= 8 && h[..8] == [0; 8]),
                    "{h:?}"
                ),
                Some(Companion::WalIndex) => {
                    assert!(h.len() >= 52, "{h:?}");
                }
                None => {}
            }
            if h.starts_with(header::MAGIC) {
                assert_eq!(identify(&h, name), None);
            }
        }
    }
}
