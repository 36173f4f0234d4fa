//! Read-only page access to a database file and its write-ahead log.
//!
//! The pager opens the database (and its `-wal`, when there is one) for
//! reading only: it never writes, locks or creates anything. Pages are read
//! with positioned reads (`pread`), so one `Pager` can serve several threads.
//! Pages committed to the WAL but not yet checkpointed are read from the WAL,
//! as SQLite would.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::format::FormatError;
use crate::format::btree::PageSource;
use crate::format::header::{DatabaseHeader, HEADER_SIZE, TextEncoding};
use crate::format::wal::{self, WAL_HEADER_SIZE, WalHeader, WalIndex};

/// Frames read per positioned read while indexing a WAL.
const WAL_FRAMES_PER_READ: u64 = 64;

/// A read-only view of a database's pages, WAL included.
#[derive(Debug)]
pub struct Pager {
    path: PathBuf,
    file: File,
    file_len: u64,
    header: DatabaseHeader,
    /// The main file's header when the WAL's page 1 supersedes it.
    main_header: Option<DatabaseHeader>,
    page_count: u32,
    wal: Option<WalIndex>,
    wal_file: Option<File>,
    wal_error: Option<String>,
}

impl Pager {
    /// Opens `path` read-only and parses its header; also indexes `<path>-wal`
    /// when it exists. Fails when the file cannot be read or is not a SQLite
    /// database; a `-wal` that cannot be used is not an error (see [`Pager::wal_error`]).
    pub fn open(path: &Path) -> anyhow::Result<Pager> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let file_len = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        if file_len < HEADER_SIZE as u64 {
            bail!(
                "{} is not a SQLite database: it is {file_len} bytes long, shorter than the {HEADER_SIZE}-byte header",
                path.display()
            );
        }
        let mut raw = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut raw, 0)
            .with_context(|| format!("reading the header of {}", path.display()))?;
        Pager::with_header(path, file, file_len, &raw)
    }

    /// Opens `path` read-only as [`Pager::open`] does, but reads its pages
    /// under `header` (for instance a header rebuilt from the pages, see
    /// `format::geometry`) instead of the file's own first bytes.
    pub fn open_with_header(path: &Path, header: &[u8]) -> anyhow::Result<Pager> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let file_len = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        Pager::with_header(path, file, file_len, header)
    }

    fn with_header(path: &Path, file: File, file_len: u64, raw: &[u8]) -> anyhow::Result<Pager> {
        let header = DatabaseHeader::parse(raw)
            .with_context(|| format!("{} is not a SQLite database", path.display()))?;

        let mut pager = Pager {
            path: path.to_path_buf(),
            file,
            file_len,
            page_count: 0,
            header,
            main_header: None,
            wal: None,
            wal_file: None,
            wal_error: None,
        };
        pager.open_wal();
        pager.use_wal_header();
        pager.page_count = pager.compute_page_count();
        Ok(pager)
    }

    /// When the WAL holds a committed page 1, its database header is the
    /// current one (freelist, schema cookie, change counter...).
    fn use_wal_header(&mut self) {
        if self.wal.as_ref().and_then(|w| w.newest_frame(1)).is_none() {
            return;
        }
        let mut page1 = Vec::new();
        let parsed = self
            .read_page(1, &mut page1)
            .and_then(|()| DatabaseHeader::parse(&page1));
        match parsed {
            Ok(h) if h.page_size == self.header.page_size => {
                self.main_header = Some(std::mem::replace(&mut self.header, h))
            }
            Ok(h) => {
                self.wal_error = Some(format!(
                    "page 1 in the WAL has page size {}, the database file {}; using the file's header",
                    h.page_size, self.header.page_size
                ))
            }
            Err(e) => {
                self.wal_error = Some(format!(
                    "page 1 in the WAL has an invalid header ({e}); using the file's header"
                ))
            }
        }
    }

    /// Page count: the WAL's when it has commits, else the main file's
    /// header's when valid, else the file length in pages (a partial last page counts, so
    /// that reading it reports the truncation).
    fn compute_page_count(&self) -> u32 {
        if let Some(w) = self.wal.as_ref().filter(|w| w.has_commits()) {
            return w.db_pages;
        }
        if self.header.page_count_is_valid() {
            return self.header.page_count;
        }
        let pages = self.file_len.div_ceil(u64::from(self.header.page_size));
        pages.min(u64::from(u32::MAX)) as u32
    }

    /// Looks for `<path>-wal` and indexes it; records why when it is unusable.
    fn open_wal(&mut self) {
        let mut wal_path = self.path.clone().into_os_string();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let file = match File::open(&wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.wal_error = Some(format!("cannot open {}: {e}", wal_path.display()));
                return;
            }
        };
        match index_wal(&file, self.header.page_size) {
            Ok(Some(index)) => {
                self.wal = Some(index);
                self.wal_file = Some(file);
            }
            Ok(None) => {}
            Err(e) => self.wal_error = Some(format!("{}: {e}", wal_path.display())),
        }
    }

    /// The current database header: from the newest committed page 1 in
    /// the WAL when there is one, else from the main file.
    pub fn header(&self) -> &DatabaseHeader {
        &self.header
    }

    /// The header as written in the main database file (differs from
    /// [`Pager::header`] while the WAL holds a newer page 1).
    pub fn main_header(&self) -> &DatabaseHeader {
        self.main_header.as_ref().unwrap_or(&self.header)
    }

    /// Length of the main database file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The pages that have bytes somewhere: [`PageSource::page_count`], but
    /// no further than the last page the main file or a committed WAL frame
    /// holds. A scan of every page stops there: a damaged header may claim a
    /// billion pages of a 32 KiB file.
    pub fn stored_page_count(&self) -> u32 {
        let in_file = self.file_len.div_ceil(u64::from(self.header.page_size));
        let in_wal = self
            .wal
            .as_ref()
            .and_then(|w| w.pages().last())
            .map_or(0, |&(pgno, _)| u64::from(pgno));
        // ok: the min with a u32 fits in a u32
        in_file.max(in_wal).min(u64::from(self.page_count)) as u32
    }

    /// The path the pager was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The WAL index when a usable `-wal` exists (it may have no commits).
    pub fn wal(&self) -> Option<&WalIndex> {
        self.wal.as_ref()
    }

    /// Why an existing `-wal` file is not used, if it is not.
    pub fn wal_error(&self) -> Option<&str> {
        self.wal_error.as_deref()
    }

    /// Reads page `pgno` of the main file, ignoring the WAL.
    pub fn read_main_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), FormatError> {
        if pgno == 0 {
            return Err(FormatError::OutOfBounds {
                what: "page number 0".into(),
            });
        }
        let size = u64::from(self.header.page_size);
        let offset = u64::from(pgno - 1) * size;
        if offset + size > self.file_len {
            return Err(FormatError::Truncated {
                what: "page beyond the end of the database file",
            });
        }
        buf.resize(size as usize, 0);
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| FormatError::Io {
                detail: format!("reading page {pgno} of {}: {e}", self.path.display()),
            })
    }
}

/// Indexes the WAL in `file`; `Ok(None)` for an empty file.
fn index_wal(file: &File, db_page_size: u32) -> Result<Option<WalIndex>, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut raw = [0u8; WAL_HEADER_SIZE];
    if len < WAL_HEADER_SIZE as u64 {
        return Err(format!(
            "{len} bytes, shorter than the {WAL_HEADER_SIZE}-byte header"
        ));
    }
    file.read_exact_at(&mut raw, 0).map_err(|e| e.to_string())?;
    let header = WalHeader::parse(&raw).map_err(|e| e.to_string())?;
    if header.page_size != db_page_size {
        return Err(format!(
            "its page size {} differs from the database's {db_page_size}",
            header.page_size
        ));
    }
    let frames_total = header.frames_in_file(len);
    let frame_size = header.frame_size();
    // Read frames in batches; hand them to the index one at a time.
    let mut chunk: Vec<u8> = Vec::new();
    let mut chunk_first = 0u32;
    let mut chunk_frames = 0u32;
    let index = WalIndex::build_streaming(&raw, frames_total, |frame, buf| {
        if frame < chunk_first || frame >= chunk_first + chunk_frames {
            let count = u64::from(frames_total - frame + 1).min(WAL_FRAMES_PER_READ);
            chunk.resize((count * frame_size) as usize, 0);
            if file
                .read_exact_at(&mut chunk, wal::frame_offset(frame, header.page_size))
                .is_err()
            {
                return false;
            }
            chunk_first = frame;
            chunk_frames = count as u32;
        }
        let start = (u64::from(frame - chunk_first) * frame_size) as usize;
        match chunk.get(start..start + frame_size as usize) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(Some(index))
}

impl PageSource for Pager {
    fn page_size(&self) -> u32 {
        self.header.page_size
    }

    fn usable_size(&self) -> u32 {
        self.header.usable_size()
    }

    fn page_count(&self) -> u32 {
        self.page_count
    }

    fn text_encoding(&self) -> TextEncoding {
        self.header.text_encoding
    }

    /// The newest committed WAL image of the page, else the main file's.
    fn read_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), FormatError> {
        if let (Some(index), Some(file)) = (&self.wal, &self.wal_file)
            && let Some(frame) = index.newest_frame(pgno)
        {
            let size = self.header.page_size;
            buf.resize(size as usize, 0);
            return file
                .read_exact_at(buf, wal::frame_page_offset(frame, size))
                .map_err(|e| FormatError::Io {
                    detail: format!("reading page {pgno} from WAL frame {frame}: {e}"),
                });
        }
        self.read_main_page(pgno, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_stops_at_the_last_page_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA page_size = 1024; CREATE TABLE t(a); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 2048);
        assert_eq!(Pager::open(&path).unwrap().stored_page_count(), 2);
        // the header claims 1,090,519,039 pages (a fuzz input that made the
        // rebuild's lost-and-found scan read a billion missing pages)
        bytes[28..32].copy_from_slice(&1_090_519_039u32.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let pager = Pager::open(&path).unwrap();
        assert_eq!(pager.page_count(), 1_090_519_039);
        assert_eq!(pager.stored_page_count(), 2);
    }

    #[test]
    fn pager_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pager>();
    }
}
