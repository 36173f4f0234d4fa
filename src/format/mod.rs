//! The SQLite database file format, parsed from bytes.
//!
//! Spec: <https://www.sqlite.org/fileformat2.html>. Every module here parses
//! `&[u8]` slices handed to it: no I/O (the pager in `crate::pager` reads the
//! files), no rusqlite, no printing. Every offset is a named constant in the
//! module of the structure it belongs to.
//!
//! ```text
//!  database file = page 1 | page 2 | ... | page N          (each page_size bytes)
//!
//!  page 1                                 any other b-tree page
//!  +--------------------------------+     +--------------------------------+
//!  | database header (100 bytes)    |     | b-tree page header (8 or 12)   |
//!  +--------------------------------+     +--------------------------------+
//!  | b-tree page header (8 or 12)   |     | cell pointer array (2 bytes    |
//!  +--------------------------------+     |   per cell, in key order)      |
//!  | cell pointer array             |     +--------------------------------+
//!  +--------------------------------+     | unallocated space              |
//!  | unallocated space              |     +--------------------------------+ <- cell content
//!  +--------------------------------+     | cell content area: cells,      |    area start
//!  | cell content area              |     |   freeblocks, fragments        |
//!  +--------------------------------+     +--------------------------------+ <- usable size
//!  | reserved bytes (header[20])    |     | reserved bytes                 |
//!  +--------------------------------+     +--------------------------------+ <- page size
//!
//!  b-tree page header                      cells (varints are 1..9 bytes)
//!   0  page type (2, 5, 10, 13)            table leaf:     len, rowid, payload, [overflow]
//!   1  first freeblock (u16)               table interior: left child (u32), rowid
//!   3  number of cells (u16)               index leaf:     len, payload, [overflow]
//!   5  cell content area start (u16)       index interior: left child (u32), len,
//!   7  fragmented free bytes (u8)                          payload, [overflow]
//!   8  right-most child (u32, interior)
//!
//!  overflow page: next overflow page (u32, 0 = last) | usable_size - 4 payload bytes
//!  freelist trunk: next trunk (u32) | leaf count (u32) | leaf page numbers (u32 each)
//!  WAL file: 32-byte header | frames = 24-byte frame header + one page image
//! ```
//!
//! Modules: [`header`] (the 100-byte database header), [`varint`], [`page`]
//! (one b-tree page and its cells), [`record`] (the record format and SQLite's
//! value ordering), [`wal`] (the write-ahead log), [`freelist`] (freelist
//! trunks and pointer-map pages), [`btree`] (guarded walks of whole trees over
//! a [`btree::PageSource`]), [`accounting`] (every page's role, and the
//! freelist and pointer-map pages that describe it, as repair writes them),
//! [`salvage`] (every row that survives anywhere), [`geometry`] (a damaged
//! header's page size and reserved bytes found from the pages),
//! [`schema_table`] (sqlite_schema read page by page), [`roots`] (the b-tree
//! roots a file's pages show, when its schema is lost), [`swapped`] (two pages
//! holding each other's content), [`companion`] (the -wal, -journal and -shm
//! files beside a database, told from a database).

pub mod accounting;
pub mod btree;
pub mod companion;
pub mod freelist;
pub mod geometry;
pub mod header;
pub mod page;
pub mod record;
pub mod roots;
pub mod salvage;
pub mod schema_table;
pub mod swapped;
pub mod varint;
pub mod wal;

use std::fmt;

/// Why some bytes are not valid SQLite file-format data.
///
/// A `FormatError` describes damage in the file; the caller decides whether
/// that is a finding (a checker) or a failure (opening a file that is not a
/// database at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The data ends before the structure named by `what` does.
    Truncated {
        /// The structure that is cut short, e.g. "database header".
        what: &'static str,
    },
    /// A b-tree page whose type byte is not 2, 5, 10 or 13.
    BadPageType {
        /// The type byte found.
        byte: u8,
    },
    /// Something lies outside the bytes or the range it must lie in.
    OutOfBounds {
        /// What is out of bounds and where, e.g. "cell 3 of page 7 (offsets 4000..4200, usable size 4096)".
        what: String,
    },
    /// Two structures of one page claim the same bytes.
    Overlap {
        /// The two structures and their offsets.
        what: String,
    },
    /// A varint runs past the end of the data.
    BadVarint,
    /// A record (row or index key) whose header or values do not fit its payload.
    BadRecord {
        /// What is wrong with it.
        detail: String,
    },
    /// The 100-byte database header is not a valid SQLite header.
    BadHeader {
        /// What is wrong with it.
        detail: String,
    },
    /// A b-tree page's header or layout is inconsistent (content area, freeblocks, fragment count).
    BadPage {
        /// What is wrong with it.
        detail: String,
    },
    /// A write-ahead log header or frame is not valid.
    BadWal {
        /// What is wrong with it.
        detail: String,
    },
    /// A freelist trunk or pointer-map page is not valid.
    BadFreelist {
        /// What is wrong with it.
        detail: String,
    },
    /// The bytes could not be read at all (an I/O error reported by a page source).
    Io {
        /// The I/O error, as text.
        detail: String,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { what } => write!(f, "{what} is truncated"),
            FormatError::BadPageType { byte } => {
                write!(f, "invalid b-tree page type {byte:#04x}")
            }
            FormatError::OutOfBounds { what } => write!(f, "{what} is out of bounds"),
            FormatError::Overlap { what } => write!(f, "{what} overlap"),
            FormatError::BadVarint => write!(f, "varint runs past the end of the data"),
            FormatError::BadRecord { detail } => write!(f, "bad record: {detail}"),
            FormatError::BadHeader { detail } => write!(f, "bad database header: {detail}"),
            FormatError::BadPage { detail } => write!(f, "bad b-tree page: {detail}"),
            FormatError::BadWal { detail } => write!(f, "bad write-ahead log: {detail}"),
            FormatError::BadFreelist { detail } => write!(f, "bad freelist: {detail}"),
            FormatError::Io { detail } => write!(f, "i/o error: {detail}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Reads the big-endian `u16` at `off`, or `None` when it does not fit in `buf`.
#[inline]
pub(crate) fn be_u16(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads the big-endian `u32` at `off`, or `None` when it does not fit in `buf`.
#[inline]
pub(crate) fn be_u32(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_lowercase_line() {
        let errors = [
            FormatError::Truncated {
                what: "database header",
            },
            FormatError::BadPageType { byte: 7 },
            FormatError::OutOfBounds {
                what: "cell 3 of page 2".into(),
            },
            FormatError::BadVarint,
        ];
        for e in errors {
            let s = e.to_string();
            assert!(!s.contains('\n'), "{s}");
            assert!(s.chars().next().is_some_and(|c| c.is_lowercase()), "{s}");
        }
        assert_eq!(
            FormatError::BadPageType { byte: 7 }.to_string(),
            "invalid b-tree page type 0x07"
        );
    }

    #[test]
    fn be_readers_are_bounds_checked() {
        let b = [1u8, 2, 3, 4];
        assert_eq!(be_u16(&b, 2), Some(0x0304));
        assert_eq!(be_u16(&b, 3), None);
        assert_eq!(be_u32(&b, 0), Some(0x0102_0304));
        assert_eq!(be_u32(&b, 1), None);
        assert_eq!(be_u32(&b, usize::MAX), None);
    }
}
