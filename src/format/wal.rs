//! The write-ahead log (the `-wal` file next to a database in WAL mode).
//!
//! Spec, section "The Write-Ahead Log": a 32-byte header, then frames of a
//! 24-byte frame header plus one page image. All fields are big-endian u32.
//! A frame is valid when its salts equal the header's and its checksum equals
//! the running checksum over the header and every frame up to it; a
//! transaction is committed once a valid frame with a nonzero "database size
//! after commit" field ends it. Readers use only frames up to the last valid
//! commit frame, and for each page the newest such frame.

use super::{FormatError, be_u32};

/// Size of the WAL header.
pub const WAL_HEADER_SIZE: usize = 32;
/// Size of a frame header (the page image follows it).
pub const FRAME_HEADER_SIZE: usize = 24;
/// Magic number of a WAL whose checksums read the data as little-endian words.
pub const WAL_MAGIC_LE: u32 = 0x377f_0682;
/// Magic number of a WAL whose checksums read the data as big-endian words.
pub const WAL_MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version.
pub const WAL_FORMAT_VERSION: u32 = 3_007_000;

/// Offset of the magic number in the WAL header.
pub const WAL_MAGIC_OFFSET: usize = 0;
/// Offset of the file format version in the WAL header.
pub const WAL_VERSION_OFFSET: usize = 4;
/// Offset of the database page size in the WAL header.
pub const WAL_PAGE_SIZE_OFFSET: usize = 8;
/// Offset of the checkpoint sequence number in the WAL header.
pub const WAL_CHECKPOINT_SEQ_OFFSET: usize = 12;
/// Offset of salt-1 (random, incremented by each checkpoint that resets the WAL).
pub const WAL_SALT1_OFFSET: usize = 16;
/// Offset of salt-2 (a fresh random value on each reset).
pub const WAL_SALT2_OFFSET: usize = 20;
/// Offset of the first header checksum word (over header bytes 0..24).
pub const WAL_CHECKSUM1_OFFSET: usize = 24;
/// Offset of the second header checksum word.
pub const WAL_CHECKSUM2_OFFSET: usize = 28;
/// Header bytes covered by the header checksum.
pub const WAL_CHECKSUMMED_LEN: usize = 24;

/// Offset of the page number in a frame header.
pub const FRAME_PGNO_OFFSET: usize = 0;
/// Offset of the database size in pages after commit (0 unless a commit frame).
pub const FRAME_DB_SIZE_OFFSET: usize = 4;
/// Offset of the copy of the header's salt-1 in a frame header.
pub const FRAME_SALT1_OFFSET: usize = 8;
/// Offset of the copy of the header's salt-2 in a frame header.
pub const FRAME_SALT2_OFFSET: usize = 12;
/// Offset of the first cumulative checksum word in a frame header.
pub const FRAME_CHECKSUM1_OFFSET: usize = 16;
/// Offset of the second cumulative checksum word in a frame header.
pub const FRAME_CHECKSUM2_OFFSET: usize = 20;
/// Frame-header bytes covered by the frame checksum (page number and db size).
pub const FRAME_CHECKSUMMED_LEN: usize = 8;

/// The WAL checksum: the running pair `(s0, s1)` updated over `data` read as
/// 32-bit words (big- or little-endian as the magic number says), two at a
/// time: `s0 += x[i] + s1; s1 += x[i+1] + s0`, all modulo 2^32. `data` must be
/// a multiple of 8 bytes long (headers and pages are); a shorter tail is ignored.
#[inline]
pub fn checksum(big_endian: bool, data: &[u8], init: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = init;
    let chunks = data.chunks_exact(8);
    if big_endian {
        for c in chunks {
            s0 = s0
                .wrapping_add(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .wrapping_add(s1);
            s1 = s1
                .wrapping_add(u32::from_be_bytes([c[4], c[5], c[6], c[7]]))
                .wrapping_add(s0);
        }
    } else {
        for c in chunks {
            s0 = s0
                .wrapping_add(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .wrapping_add(s1);
            s1 = s1
                .wrapping_add(u32::from_le_bytes([c[4], c[5], c[6], c[7]]))
                .wrapping_add(s0);
        }
    }
    (s0, s1)
}

/// The parsed, validated WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// The magic number ([`WAL_MAGIC_LE`] or [`WAL_MAGIC_BE`]).
    pub magic: u32,
    /// Whether checksums read data as big-endian words (the magic's low bit).
    pub big_endian_checksum: bool,
    /// File format version (always [`WAL_FORMAT_VERSION`] when valid).
    pub version: u32,
    /// Database page size.
    pub page_size: u32,
    /// Checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Salt-1, copied into every frame of this WAL generation.
    pub salt1: u32,
    /// Salt-2, copied into every frame of this WAL generation.
    pub salt2: u32,
    /// First checksum word over the first 24 header bytes.
    pub checksum1: u32,
    /// Second checksum word.
    pub checksum2: u32,
}

impl WalHeader {
    /// Parses the 32-byte WAL header and checks its magic, version, page size
    /// and checksum. Any failure means SQLite would ignore the whole WAL.
    pub fn parse(bytes: &[u8]) -> Result<WalHeader, FormatError> {
        let h = bytes.get(..WAL_HEADER_SIZE).ok_or(FormatError::Truncated {
            what: "write-ahead log header",
        })?;
        let bad = |detail: String| FormatError::BadWal { detail };
        // ok: `h` is exactly WAL_HEADER_SIZE bytes; all offsets are constants inside it.
        let at = |off: usize| be_u32(h, off).unwrap_or(0);
        let magic = at(WAL_MAGIC_OFFSET);
        if magic != WAL_MAGIC_LE && magic != WAL_MAGIC_BE {
            return Err(bad(format!(
                "magic number {magic:#010x} is not 0x377f0682 or 0x377f0683"
            )));
        }
        let version = at(WAL_VERSION_OFFSET);
        if version != WAL_FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version} is not {WAL_FORMAT_VERSION}"
            )));
        }
        let page_size = at(WAL_PAGE_SIZE_OFFSET);
        if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
            return Err(bad(format!(
                "page size {page_size} is not a power of two between 512 and 65536"
            )));
        }
        let big_endian_checksum = magic & 1 == 1;
        let header = WalHeader {
            magic,
            big_endian_checksum,
            version,
            page_size,
            checkpoint_seq: at(WAL_CHECKPOINT_SEQ_OFFSET),
            salt1: at(WAL_SALT1_OFFSET),
            salt2: at(WAL_SALT2_OFFSET),
            checksum1: at(WAL_CHECKSUM1_OFFSET),
            checksum2: at(WAL_CHECKSUM2_OFFSET),
        };
        let computed = checksum(big_endian_checksum, &h[..WAL_CHECKSUMMED_LEN], (0, 0));
        if computed != (header.checksum1, header.checksum2) {
            return Err(bad("header checksum does not match".into()));
        }
        Ok(header)
    }

    /// Size of one frame (frame header plus page image).
    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE as u64 + u64::from(self.page_size)
    }

    /// Number of whole frames in a WAL file of `file_len` bytes.
    pub fn frames_in_file(&self, file_len: u64) -> u32 {
        let frames = file_len.saturating_sub(WAL_HEADER_SIZE as u64) / self.frame_size();
        frames.min(u64::from(u32::MAX)) as u32
    }
}

/// A parsed frame header (not yet validated against the WAL header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The database page this frame holds.
    pub pgno: u32,
    /// Database size in pages after this commit; 0 for non-commit frames.
    pub db_size_after_commit: u32,
    /// Salt-1 as written with the frame.
    pub salt1: u32,
    /// Salt-2 as written with the frame.
    pub salt2: u32,
    /// First cumulative checksum word.
    pub checksum1: u32,
    /// Second cumulative checksum word.
    pub checksum2: u32,
}

impl FrameHeader {
    /// Parses the 24-byte frame header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<FrameHeader, FormatError> {
        let h = bytes
            .get(..FRAME_HEADER_SIZE)
            .ok_or(FormatError::Truncated {
                what: "write-ahead log frame header",
            })?;
        // ok: `h` is exactly FRAME_HEADER_SIZE bytes; all offsets are constants inside it.
        let at = |off: usize| be_u32(h, off).unwrap_or(0);
        Ok(FrameHeader {
            pgno: at(FRAME_PGNO_OFFSET),
            db_size_after_commit: at(FRAME_DB_SIZE_OFFSET),
            salt1: at(FRAME_SALT1_OFFSET),
            salt2: at(FRAME_SALT2_OFFSET),
            checksum1: at(FRAME_CHECKSUM1_OFFSET),
            checksum2: at(FRAME_CHECKSUM2_OFFSET),
        })
    }

    /// Whether this frame ends a transaction.
    pub fn is_commit(&self) -> bool {
        self.db_size_after_commit != 0
    }
}

/// Byte offset in the WAL file of frame `frame`'s page image (frames are numbered from 1).
pub fn frame_page_offset(frame: u32, page_size: u32) -> u64 {
    frame_offset(frame, page_size) + FRAME_HEADER_SIZE as u64
}

/// Byte offset in the WAL file of frame `frame`'s frame header (frames are numbered from 1).
pub fn frame_offset(frame: u32, page_size: u32) -> u64 {
    WAL_HEADER_SIZE as u64
        + u64::from(frame.saturating_sub(1)) * (FRAME_HEADER_SIZE as u64 + u64::from(page_size))
}

/// What a reader of the database sees in a WAL: which frame holds the newest
/// committed image of each page. Memory is O(frames), never O(WAL bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalIndex {
    /// The WAL header.
    pub header: WalHeader,
    /// Page size of the frames.
    pub page_size: u32,
    /// Last valid commit frame (0 when nothing is committed); later frames are ignored.
    pub max_frame: u32,
    /// Database size in pages as of that commit (0 when nothing is committed).
    pub db_pages: u32,
    /// Whole frames physically in the file, valid or not.
    pub frames_total: u32,
    /// Frames whose salts and checksum are valid, up to the first invalid one
    /// (includes a trailing uncommitted transaction).
    pub frames_valid: u32,
    /// Commit frames written after the first invalid frame with this log's
    /// salts: transactions that committed after the damage, which SQLite
    /// (and this index) ignore, as every frame after an invalid one. A torn
    /// last transaction leaves none (its commit frame is the last frame it
    /// writes); a damaged frame inside the log does.
    pub lost_commits: u32,
    /// The log's last transaction when its own commit frame fails (see
    /// [`TornTransaction`]); None when the log ends otherwise.
    pub torn_last: Option<TornTransaction>,
    /// (page number, newest committed frame), sorted by page number.
    latest: Vec<(u32, u32)>,
}

/// A last transaction SQLite discards: every frame after the last valid
/// commit is sound but for the first invalid one, which carries this log's
/// salts and a commit mark and fails its checksum, and no commit of this
/// log follows it ([`WalIndex::lost_commits`] is 0). A write torn by a
/// power cut, or damage to the commit frame itself: SQLite (wal.c,
/// `walIndexRecover`) treats the transaction as never committed, so its
/// changes are not in the database. Frames after the last commit that carry
/// other salts (left over from before the log was last reset), or valid
/// frames with no commit after them (a transaction still being written),
/// are not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTransaction {
    /// Its first frame, the one after the last valid commit frame.
    pub first_frame: u32,
    /// Its commit frame, the first frame that fails.
    pub commit_frame: u32,
    /// The database pages its frames hold (each once), sorted; the commit
    /// frame's as its header names it.
    pub pages: Vec<u32>,
}

impl WalIndex {
    /// Builds the index from a whole WAL file held in memory.
    pub fn build(wal: &[u8]) -> Result<WalIndex, FormatError> {
        let header = WalHeader::parse(wal)?;
        let frames_total = header.frames_in_file(wal.len() as u64);
        let frame_size = header.frame_size() as usize;
        WalIndex::build_streaming(wal, frames_total, |frame, buf| {
            let start = frame_offset(frame, header.page_size) as usize;
            match wal.get(start..start + frame_size) {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    true
                }
                None => false,
            }
        })
    }

    /// Builds the index reading one frame at a time: `read_frame(n, buf)` must
    /// fill `buf` (frame header plus page, [`WalHeader::frame_size`] bytes)
    /// with frame `n` (from 1) and return false if it cannot. `header` holds at
    /// least the 32-byte WAL header; `frames_total` is the number of whole
    /// frames in the file. Only one frame is held in memory at a time.
    pub fn build_streaming<F>(
        header: &[u8],
        frames_total: u32,
        mut read_frame: F,
    ) -> Result<WalIndex, FormatError>
    where
        F: FnMut(u32, &mut [u8]) -> bool,
    {
        let header = WalHeader::parse(header)?;
        let mut buf = vec![0u8; header.frame_size() as usize];
        let mut sum = (header.checksum1, header.checksum2);
        let mut frames: Vec<(u32, u32)> = Vec::new();
        let mut max_frame = 0u32;
        let mut db_pages = 0u32;
        let mut frames_valid = 0u32;
        for frame in 1..=frames_total {
            if !read_frame(frame, &mut buf) {
                break;
            }
            // ok: `buf` is a whole frame, longer than a frame header.
            let Ok(fh) = FrameHeader::parse(&buf) else {
                break;
            };
            if fh.salt1 != header.salt1 || fh.salt2 != header.salt2 || fh.pgno == 0 {
                break;
            }
            let s = checksum(
                header.big_endian_checksum,
                &buf[..FRAME_CHECKSUMMED_LEN],
                sum,
            );
            let s = checksum(header.big_endian_checksum, &buf[FRAME_HEADER_SIZE..], s);
            if s != (fh.checksum1, fh.checksum2) {
                break;
            }
            sum = s;
            frames_valid = frame;
            frames.push((fh.pgno, frame));
            if fh.is_commit() {
                max_frame = frame;
                db_pages = fh.db_size_after_commit;
            }
        }
        // from the first invalid frame on: the commits of this log (its
        // salts) that SQLite will not replay; the first invalid frame's own
        // commit is that of a torn last transaction, never committed
        let mut lost_commits = 0u32;
        let mut torn_commit_page = None;
        for frame in frames_valid.saturating_add(1)..=frames_total {
            if !read_frame(frame, &mut buf) {
                break;
            }
            if let Ok(fh) = FrameHeader::parse(&buf)
                && fh.salt1 == header.salt1
                && fh.salt2 == header.salt2
                && fh.pgno != 0
                && fh.is_commit()
            {
                if frame == frames_valid + 1 {
                    torn_commit_page = Some(fh.pgno);
                } else {
                    lost_commits += 1;
                }
            }
        }
        let torn_last = torn_commit_page
            .filter(|_| lost_commits == 0)
            .map(|commit_page| {
                // `frames` holds frame n at n - 1: the torn transaction's
                // sound frames are those after the last valid commit
                let mut pages: Vec<u32> = frames[max_frame as usize..]
                    .iter()
                    .map(|&(pgno, _)| pgno)
                    .chain([commit_page])
                    .collect();
                pages.sort_unstable();
                pages.dedup();
                TornTransaction {
                    first_frame: max_frame + 1,
                    commit_frame: frames_valid + 1,
                    pages,
                }
            });
        frames.truncate(max_frame as usize);
        // Newest frame per page: sort by (page, frame) and keep each page's last.
        frames.sort_unstable();
        let mut latest: Vec<(u32, u32)> = Vec::with_capacity(frames.len());
        for (pgno, frame) in frames {
            match latest.last_mut() {
                Some(last) if last.0 == pgno => last.1 = frame,
                _ => latest.push((pgno, frame)),
            }
        }
        latest.shrink_to_fit();
        Ok(WalIndex {
            page_size: header.page_size,
            header,
            max_frame,
            db_pages,
            frames_total,
            frames_valid,
            lost_commits,
            torn_last,
            latest,
        })
    }

    /// The newest committed frame holding page `pgno`, if the WAL has one.
    pub fn newest_frame(&self, pgno: u32) -> Option<u32> {
        self.latest
            .binary_search_by_key(&pgno, |&(p, _)| p)
            .ok()
            .map(|i| self.latest[i].1)
    }

    /// Byte offset in the WAL file of frame `frame`'s page image (see [`frame_page_offset`]).
    pub fn frame_page_offset(frame: u32, page_size: u32) -> u64 {
        frame_page_offset(frame, page_size)
    }

    /// Whether any transaction is committed in the WAL.
    pub fn has_commits(&self) -> bool {
        self.max_frame != 0
    }

    /// (page number, newest committed frame) for every page the WAL holds, by page number.
    pub fn pages(&self) -> &[(u32, u32)] {
        &self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a WAL with the given (pgno, db_size, fill byte) frames.
    fn make_wal(big_endian: bool, page_size: u32, frames: &[(u32, u32, u8)]) -> Vec<u8> {
        let magic = if big_endian {
            WAL_MAGIC_BE
        } else {
            WAL_MAGIC_LE
        };
        let mut w = Vec::new();
        for v in [
            magic,
            WAL_FORMAT_VERSION,
            page_size,
            0,
            0x1234_5678,
            0x9abc_def0,
        ] {
            w.extend_from_slice(&v.to_be_bytes());
        }
        let mut s = checksum(big_endian, &w, (0, 0));
        w.extend_from_slice(&s.0.to_be_bytes());
        w.extend_from_slice(&s.1.to_be_bytes());
        for &(pgno, db_size, fill) in frames {
            let mut fh = Vec::new();
            for v in [pgno, db_size, 0x1234_5678, 0x9abc_def0] {
                fh.extend_from_slice(&v.to_be_bytes());
            }
            let page = vec![fill; page_size as usize];
            s = checksum(big_endian, &fh[..8], s);
            s = checksum(big_endian, &page, s);
            fh.extend_from_slice(&s.0.to_be_bytes());
            fh.extend_from_slice(&s.1.to_be_bytes());
            w.extend_from_slice(&fh);
            w.extend_from_slice(&page);
        }
        w
    }

    #[test]
    fn checksum_words() {
        // s0 = 1 + 0 = 1, s1 = 2 + 1 = 3; s0 = 3 + 1 + 3 = 7, s1 = 4 + 3 + 7 = 14.
        let data = [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        assert_eq!(checksum(true, &data, (0, 0)), (7, 14));
        let le = [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0];
        assert_eq!(checksum(false, &le, (0, 0)), (7, 14));
        // Wrapping arithmetic.
        // s0 = 1 + 0xffffffff + 1 = 1, s1 = 1 + 0xffffffff + 1 = 1 (mod 2^32).
        assert_eq!(checksum(true, &[0xff; 8], (1, 1)), (1, 1));
    }

    #[test]
    fn commits_and_newest_frames() {
        for be in [false, true] {
            let wal = make_wal(
                be,
                512,
                &[(1, 0, 1), (2, 3, 2), (2, 0, 3), (3, 4, 4), (1, 0, 5)],
            );
            let idx = WalIndex::build(&wal).unwrap();
            assert_eq!(idx.frames_total, 5);
            assert_eq!(idx.frames_valid, 5);
            assert_eq!(idx.max_frame, 4);
            assert_eq!(idx.db_pages, 4);
            assert_eq!(idx.newest_frame(1), Some(1)); // frame 5 is uncommitted
            assert_eq!(idx.newest_frame(2), Some(3));
            assert_eq!(idx.newest_frame(3), Some(4));
            assert_eq!(idx.newest_frame(4), None);
            assert_eq!(frame_page_offset(3, 512), 32 + 2 * 536 + 24);
            assert_eq!(wal[frame_page_offset(3, 512) as usize], 3);
        }
    }

    #[test]
    fn a_bad_frame_ends_the_log() {
        let mut wal = make_wal(false, 512, &[(1, 2, 1), (2, 2, 2), (3, 3, 3)]);
        // Corrupt frame 2's page: frames 2 and 3 no longer count.
        let off = frame_page_offset(2, 512) as usize;
        wal[off] ^= 0xff;
        let idx = WalIndex::build(&wal).unwrap();
        assert_eq!((idx.max_frame, idx.frames_valid, idx.db_pages), (1, 1, 2));
        assert_eq!(idx.newest_frame(3), None);
        // frame 3 committed after the damage: a transaction lost
        assert_eq!(idx.lost_commits, 1);

        // a torn last transaction (its commit frame damaged): nothing lost
        let mut wal = make_wal(false, 512, &[(1, 2, 1), (2, 0, 2), (3, 3, 3)]);
        let off = frame_page_offset(3, 512) as usize;
        wal[off] ^= 0xff;
        let idx = WalIndex::build(&wal).unwrap();
        assert_eq!(
            (idx.max_frame, idx.frames_valid, idx.lost_commits),
            (1, 2, 0)
        );
        assert_eq!(
            idx.torn_last,
            Some(TornTransaction {
                first_frame: 2,
                commit_frame: 3,
                pages: vec![2, 3],
            })
        );
        // the same transaction damaged in its first frame: its commit lost
        let mut wal = make_wal(false, 512, &[(1, 2, 1), (2, 0, 2), (3, 3, 3)]);
        let off = frame_page_offset(2, 512) as usize;
        wal[off] ^= 0xff;
        let idx = WalIndex::build(&wal).unwrap();
        assert_eq!((idx.lost_commits, idx.torn_last), (1, None));
        // frames of an older log generation (other salts) after the end: none
        let mut wal = make_wal(false, 512, &[(1, 2, 1), (2, 2, 2), (3, 3, 3)]);
        for f in [2, 3] {
            let off = frame_offset(f, 512) as usize + FRAME_SALT1_OFFSET;
            wal[off] ^= 1;
        }
        let idx = WalIndex::build(&wal).unwrap();
        assert_eq!(
            (idx.max_frame, idx.lost_commits, idx.torn_last),
            (1, 0, None)
        );
        // a commit frame damaged with a commit after it: lost, not torn
        let mut wal = make_wal(false, 512, &[(1, 2, 1), (2, 2, 2), (3, 3, 3)]);
        let off = frame_page_offset(2, 512) as usize;
        wal[off] ^= 0xff;
        let idx = WalIndex::build(&wal).unwrap();
        assert_eq!((idx.lost_commits, idx.torn_last), (1, None));
        // valid frames with no commit after them (a transaction still being
        // written), and a sound log: nothing discarded for damage
        let wal = make_wal(false, 512, &[(1, 2, 1), (2, 0, 2), (3, 0, 3)]);
        let idx = WalIndex::build(&wal).unwrap();
        assert_eq!(
            (idx.max_frame, idx.frames_valid, idx.torn_last),
            (1, 3, None)
        );
        let wal = make_wal(false, 512, &[(1, 2, 1), (2, 0, 2), (3, 3, 3)]);
        assert_eq!(WalIndex::build(&wal).unwrap().torn_last, None);
        // the torn transaction is the log's only one: from frame 1, each
        // page once
        let mut wal = make_wal(true, 512, &[(4, 0, 1), (2, 0, 2), (4, 4, 3)]);
        let off = frame_page_offset(3, 512) as usize + 511;
        wal[off] ^= 1;
        let idx = WalIndex::build(&wal).unwrap();
        assert_eq!(
            (idx.max_frame, idx.torn_last),
            (
                0,
                Some(TornTransaction {
                    first_frame: 1,
                    commit_frame: 3,
                    pages: vec![2, 4],
                })
            )
        );

        // A salt mismatch ends it too.
        let mut wal = make_wal(false, 512, &[(1, 2, 1), (2, 2, 2)]);
        let off = frame_offset(2, 512) as usize + FRAME_SALT1_OFFSET;
        wal[off] ^= 1;
        assert_eq!(WalIndex::build(&wal).unwrap().max_frame, 1);

        // A partial trailing frame is not a frame.
        let wal = make_wal(false, 512, &[(1, 2, 1), (2, 2, 2)]);
        let idx = WalIndex::build(&wal[..wal.len() - 1]).unwrap();
        assert_eq!((idx.frames_total, idx.max_frame), (1, 1));
        assert_eq!(idx.torn_last, None);
    }

    #[test]
    fn bad_headers() {
        let wal = make_wal(false, 512, &[]);
        assert!(WalIndex::build(&wal).is_ok());
        assert!(WalIndex::build(&wal[..31]).is_err());
        for (off, what) in [
            (0, "magic"),
            (7, "version"),
            (10, "page size"),
            (17, "salt"),
        ] {
            let mut w = wal.clone();
            w[off] ^= 0x10;
            assert!(
                matches!(WalHeader::parse(&w), Err(FormatError::BadWal { .. })),
                "{what}"
            );
        }
    }
}
