//! The 100-byte database header at the start of page 1.
//!
//! Spec, section "The Database Header". All multi-byte fields are big-endian.

use super::{FormatError, be_u16, be_u32};

/// The 16 bytes every SQLite 3 database starts with.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Size of the database header at the start of page 1.
pub const HEADER_SIZE: usize = 100;

/// Offset of the 16-byte magic string.
pub const MAGIC_OFFSET: usize = 0;
/// Offset of the page size (u16; the value 1 means 65536).
pub const PAGE_SIZE_OFFSET: usize = 16;
/// Offset of the file format write version (1 = rollback journal, 2 = WAL).
pub const WRITE_VERSION_OFFSET: usize = 18;
/// Offset of the file format read version (1 = rollback journal, 2 = WAL).
pub const READ_VERSION_OFFSET: usize = 19;
/// Offset of the number of reserved bytes at the end of each page.
pub const RESERVED_BYTES_OFFSET: usize = 20;
/// Offset of the maximum embedded payload fraction (must be 64).
pub const MAX_PAYLOAD_FRACTION_OFFSET: usize = 21;
/// Offset of the minimum embedded payload fraction (must be 32).
pub const MIN_PAYLOAD_FRACTION_OFFSET: usize = 22;
/// Offset of the leaf payload fraction (must be 32).
pub const LEAF_PAYLOAD_FRACTION_OFFSET: usize = 23;
/// Offset of the file change counter (u32).
pub const FILE_CHANGE_COUNTER_OFFSET: usize = 24;
/// Offset of the in-header database size in pages (u32).
pub const PAGE_COUNT_OFFSET: usize = 28;
/// Offset of the page number of the first freelist trunk page (u32, 0 = none).
pub const FIRST_FREELIST_TRUNK_OFFSET: usize = 32;
/// Offset of the total number of freelist pages (u32).
pub const FREELIST_COUNT_OFFSET: usize = 36;
/// Offset of the schema cookie (u32).
pub const SCHEMA_COOKIE_OFFSET: usize = 40;
/// Offset of the schema format number (u32, 1..=4).
pub const SCHEMA_FORMAT_OFFSET: usize = 44;
/// Offset of the suggested default page cache size (u32).
pub const DEFAULT_CACHE_SIZE_OFFSET: usize = 48;
/// Offset of the largest root b-tree page number in auto/incremental-vacuum mode (u32, else 0).
pub const LARGEST_ROOT_PAGE_OFFSET: usize = 52;
/// Offset of the text encoding (u32: 1 UTF-8, 2 UTF-16le, 3 UTF-16be).
pub const TEXT_ENCODING_OFFSET: usize = 56;
/// Offset of the user version set by `PRAGMA user_version` (u32).
pub const USER_VERSION_OFFSET: usize = 60;
/// Offset of the incremental-vacuum flag (u32, nonzero = incremental).
pub const INCREMENTAL_VACUUM_OFFSET: usize = 64;
/// Offset of the application id set by `PRAGMA application_id` (u32).
pub const APPLICATION_ID_OFFSET: usize = 68;
/// Offset of the 20 bytes reserved for expansion (must be zero).
pub const RESERVED_FOR_EXPANSION_OFFSET: usize = 72;
/// Length of the region reserved for expansion.
pub const RESERVED_FOR_EXPANSION_LEN: usize = 20;
/// Offset of the version-valid-for number: the change counter when the version below was stored (u32).
pub const VERSION_VALID_FOR_OFFSET: usize = 92;
/// Offset of the SQLITE_VERSION_NUMBER of the library that last wrote the file (u32).
pub const SQLITE_VERSION_OFFSET: usize = 96;

/// Required maximum embedded payload fraction.
pub const MAX_PAYLOAD_FRACTION: u8 = 64;
/// Required minimum embedded payload fraction.
pub const MIN_PAYLOAD_FRACTION: u8 = 32;
/// Required leaf payload fraction.
pub const LEAF_PAYLOAD_FRACTION: u8 = 32;
/// The newest file format read version SQLite reads (2 = WAL); a larger
/// value makes SQLite refuse the file.
pub const MAX_READ_VERSION: u8 = 2;
/// The newest schema format number SQLite reads; it reads the number's
/// low byte (0 meaning 1) and refuses the file above this ("unsupported
/// file format", prepare.c `sqlite3InitOne`).
pub const MAX_SCHEMA_FORMAT: u8 = 4;
/// Smallest page size.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest page size (stored as 1 at [`PAGE_SIZE_OFFSET`]).
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Smallest usable size (page size minus reserved bytes) a valid database may have.
pub const MIN_USABLE_SIZE: u32 = 480;
/// Byte offset of the pending-byte (locking) page; the page holding it is never used.
pub const PENDING_BYTE: u64 = 0x4000_0000;

/// How text values are encoded in this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextEncoding {
    /// UTF-8 (header value 1).
    Utf8,
    /// UTF-16 little-endian (header value 2).
    Utf16le,
    /// UTF-16 big-endian (header value 3).
    Utf16be,
}

impl TextEncoding {
    /// The encoding for a header value, or `None` if it is not 1, 2 or 3.
    pub fn from_header(value: u32) -> Option<TextEncoding> {
        match value {
            1 => Some(TextEncoding::Utf8),
            2 => Some(TextEncoding::Utf16le),
            3 => Some(TextEncoding::Utf16be),
            _ => None,
        }
    }

    /// The encoding SQLite uses for a header value: its low two bits, where
    /// 0 means "never set" and SQLite's default, UTF-8 (a file whose first
    /// table was never created carries 0). SQLite accepts every value.
    pub fn as_sqlite_reads(value: u32) -> TextEncoding {
        TextEncoding::from_header(value & 3).unwrap_or(TextEncoding::Utf8)
    }

    /// The value stored in the header for this encoding.
    pub fn header_value(self) -> u32 {
        match self {
            TextEncoding::Utf8 => 1,
            TextEncoding::Utf16le => 2,
            TextEncoding::Utf16be => 3,
        }
    }
}

/// The parsed database header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseHeader {
    /// Page size in bytes (the on-disk value 1 is returned as 65536).
    pub page_size: u32,
    /// File format write version: 1 legacy (rollback journal), 2 WAL.
    pub write_version: u8,
    /// File format read version: 1 legacy (rollback journal), 2 WAL.
    pub read_version: u8,
    /// Bytes reserved at the end of every page (for extensions such as checksums).
    pub reserved_bytes: u8,
    /// Incremented on every committed change in rollback-journal mode.
    pub file_change_counter: u32,
    /// In-header database size in pages (trust it only if [`Self::page_count_is_valid`]).
    pub page_count: u32,
    /// Page number of the first freelist trunk page, 0 if the freelist is empty.
    pub first_freelist_trunk: u32,
    /// Total number of freelist pages (trunks and leaves).
    pub freelist_count: u32,
    /// Incremented whenever the schema changes.
    pub schema_cookie: u32,
    /// Schema format number, 1..=4.
    pub schema_format: u32,
    /// Suggested page cache size (`PRAGMA default_cache_size`).
    pub default_cache_size: u32,
    /// Largest root b-tree page in auto_vacuum/incremental_vacuum databases, else 0.
    pub largest_root_page: u32,
    /// Text encoding of every string in the database, as SQLite reads the
    /// header value (see [`TextEncoding::as_sqlite_reads`]).
    pub text_encoding: TextEncoding,
    /// The text encoding value as stored (0 = never set).
    pub text_encoding_raw: u32,
    /// `PRAGMA user_version`.
    pub user_version: u32,
    /// Nonzero for incremental_vacuum mode, 0 for auto_vacuum=FULL (or no auto-vacuum).
    pub incremental_vacuum: u32,
    /// `PRAGMA application_id`.
    pub application_id: u32,
    /// The 20 bytes reserved for expansion; SQLite writes zeros.
    pub reserved_for_expansion: [u8; RESERVED_FOR_EXPANSION_LEN],
    /// Value of the change counter when `sqlite_version` was stored.
    pub version_valid_for: u32,
    /// SQLITE_VERSION_NUMBER of the library that last modified the file.
    pub sqlite_version: u32,
}

impl DatabaseHeader {
    /// Parses and validates the first [`HEADER_SIZE`] bytes of a database file.
    ///
    /// Accepts exactly what SQLite accepts when it opens a file (btree.c,
    /// `lockBtree`): the magic string, a read version of at most 2, the
    /// payload fractions 64/32/32, a power-of-two page size in 512..=65536
    /// (stored as 1 for 65536) and a usable size of at least 480 bytes;
    /// and, as SQLite refuses it when it reads the schema, a schema format
    /// number whose low byte is above [`MAX_SCHEMA_FORMAT`]. The
    /// text encoding is read as SQLite reads it (any value; 0 means UTF-8);
    /// the write version, the counters and the in-header page count are
    /// returned as found (SQLite ignores the page count unless
    /// version-valid-for equals the change counter:
    /// [`DatabaseHeader::page_count_is_valid`]).
    pub fn parse(bytes: &[u8]) -> Result<DatabaseHeader, FormatError> {
        let h = bytes.get(..HEADER_SIZE).ok_or(FormatError::Truncated {
            what: "database header",
        })?;
        let bad = |detail: String| FormatError::BadHeader { detail };
        if &h[MAGIC_OFFSET..MAGIC_OFFSET + MAGIC.len()] != MAGIC {
            return Err(bad("missing the \"SQLite format 3\" magic string".into()));
        }
        // ok: `h` is exactly HEADER_SIZE bytes and every offset below is a constant inside it.
        let u16_at = |off: usize| be_u16(h, off).unwrap_or(0);
        let u32_at = |off: usize| be_u32(h, off).unwrap_or(0);

        if h[READ_VERSION_OFFSET] > MAX_READ_VERSION {
            return Err(bad(format!(
                "file format read version {} is newer than any SQLite reads (1 or 2)",
                h[READ_VERSION_OFFSET]
            )));
        }
        let raw_page_size = u16_at(PAGE_SIZE_OFFSET);
        // SQLite reads the two bytes as (b16 << 8) | (b17 << 16): 1 is 65536.
        let page_size =
            (u32::from(h[PAGE_SIZE_OFFSET]) << 8) | (u32::from(h[PAGE_SIZE_OFFSET + 1]) << 16);
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(bad(format!(
                "page size {raw_page_size} is not a power of two between 512 and 65536"
            )));
        }
        let fractions = (
            h[MAX_PAYLOAD_FRACTION_OFFSET],
            h[MIN_PAYLOAD_FRACTION_OFFSET],
            h[LEAF_PAYLOAD_FRACTION_OFFSET],
        );
        if fractions
            != (
                MAX_PAYLOAD_FRACTION,
                MIN_PAYLOAD_FRACTION,
                LEAF_PAYLOAD_FRACTION,
            )
        {
            return Err(bad(format!(
                "payload fractions are {}/{}/{}, not 64/32/32",
                fractions.0, fractions.1, fractions.2
            )));
        }
        let reserved_bytes = h[RESERVED_BYTES_OFFSET];
        if page_size - u32::from(reserved_bytes) < MIN_USABLE_SIZE {
            return Err(bad(format!(
                "{reserved_bytes} reserved bytes leave fewer than {MIN_USABLE_SIZE} usable bytes in a {page_size}-byte page"
            )));
        }
        let schema_format = u32_at(SCHEMA_FORMAT_OFFSET);
        if schema_format as u8 > MAX_SCHEMA_FORMAT {
            return Err(bad(format!(
                "schema format number {schema_format} (SQLite reads {}) is above {MAX_SCHEMA_FORMAT}: unsupported file format",
                schema_format as u8
            )));
        }
        let text_encoding_raw = u32_at(TEXT_ENCODING_OFFSET);
        let mut reserved_for_expansion = [0u8; RESERVED_FOR_EXPANSION_LEN];
        reserved_for_expansion.copy_from_slice(
            &h[RESERVED_FOR_EXPANSION_OFFSET
                ..RESERVED_FOR_EXPANSION_OFFSET + RESERVED_FOR_EXPANSION_LEN],
        );
        Ok(DatabaseHeader {
            page_size,
            write_version: h[WRITE_VERSION_OFFSET],
            read_version: h[READ_VERSION_OFFSET],
            reserved_bytes,
            file_change_counter: u32_at(FILE_CHANGE_COUNTER_OFFSET),
            page_count: u32_at(PAGE_COUNT_OFFSET),
            first_freelist_trunk: u32_at(FIRST_FREELIST_TRUNK_OFFSET),
            freelist_count: u32_at(FREELIST_COUNT_OFFSET),
            schema_cookie: u32_at(SCHEMA_COOKIE_OFFSET),
            schema_format,
            default_cache_size: u32_at(DEFAULT_CACHE_SIZE_OFFSET),
            largest_root_page: u32_at(LARGEST_ROOT_PAGE_OFFSET),
            text_encoding: TextEncoding::as_sqlite_reads(text_encoding_raw),
            text_encoding_raw,
            user_version: u32_at(USER_VERSION_OFFSET),
            incremental_vacuum: u32_at(INCREMENTAL_VACUUM_OFFSET),
            application_id: u32_at(APPLICATION_ID_OFFSET),
            reserved_for_expansion,
            version_valid_for: u32_at(VERSION_VALID_FOR_OFFSET),
            sqlite_version: u32_at(SQLITE_VERSION_OFFSET),
        })
    }

    /// Bytes of each page available to b-tree content: page size minus reserved bytes.
    pub fn usable_size(&self) -> u32 {
        self.page_size - u32::from(self.reserved_bytes)
    }

    /// Whether the in-header database size can be trusted: it is nonzero and
    /// was written by a library that maintains it (version-valid-for equals the
    /// change counter).
    pub fn page_count_is_valid(&self) -> bool {
        count_trusted(
            self.page_count,
            self.file_change_counter,
            self.version_valid_for,
        )
    }

    /// The whole pages a file of `file_len` bytes holds, when that is more
    /// than a page count SQLite trusts ([`Self::page_count_is_valid`]):
    /// SQLite then reads no page past the header's count (a lookup that
    /// reaches one fails as corrupt), though the pages are in the file.
    /// (A count larger than the file makes SQLite refuse the file.)
    pub fn pages_past_count(&self, file_len: u64) -> Option<u32> {
        let in_file = file_len / u64::from(self.page_size);
        let in_file = u32::try_from(in_file).unwrap_or(u32::MAX);
        (self.page_count_is_valid() && self.page_count < in_file).then_some(in_file)
    }

    /// Whether the database has pointer-map pages (auto_vacuum or incremental_vacuum).
    pub fn is_auto_vacuum(&self) -> bool {
        self.largest_root_page != 0
    }

    /// The page that holds the pending byte at 1 GiB; SQLite never stores data in it.
    pub fn pending_byte_page(&self) -> u32 {
        pending_byte_page(self.page_size)
    }
}

/// The page number holding [`PENDING_BYTE`] for a page size (never used for data).
pub fn pending_byte_page(page_size: u32) -> u32 {
    (PENDING_BYTE / u64::from(page_size.max(1))) as u32 + 1
}

/// SQLite trusts an in-header page count that is nonzero and was written
/// by a library that maintains it (version-valid-for equals the change
/// counter).
fn count_trusted(count: u32, change_counter: u32, valid_for: u32) -> bool {
    count != 0 && valid_for == change_counter
}

/// The page count of the raw header bytes `h` when SQLite trusts it
/// ([`DatabaseHeader::page_count_is_valid`]), read from the bytes alone: for
/// a header that [`DatabaseHeader::parse`] may refuse (its other fields
/// damaged).
pub fn trusted_page_count(h: &[u8]) -> Option<u32> {
    let word = |off: usize| be_u32(h, off).unwrap_or(0);
    let count = word(PAGE_COUNT_OFFSET);
    count_trusted(
        count,
        word(FILE_CHANGE_COUNTER_OFFSET),
        word(VERSION_VALID_FOR_OFFSET),
    )
    .then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as SQLite writes it for a fresh 4096-byte-page database.
    fn good_header() -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE];
        h[..16].copy_from_slice(MAGIC);
        h[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 2].copy_from_slice(&4096u16.to_be_bytes());
        h[WRITE_VERSION_OFFSET] = 1;
        h[READ_VERSION_OFFSET] = 1;
        h[MAX_PAYLOAD_FRACTION_OFFSET] = 64;
        h[MIN_PAYLOAD_FRACTION_OFFSET] = 32;
        h[LEAF_PAYLOAD_FRACTION_OFFSET] = 32;
        let put = |h: &mut Vec<u8>, off: usize, v: u32| {
            h[off..off + 4].copy_from_slice(&v.to_be_bytes());
        };
        put(&mut h, FILE_CHANGE_COUNTER_OFFSET, 7);
        put(&mut h, PAGE_COUNT_OFFSET, 3);
        put(&mut h, SCHEMA_FORMAT_OFFSET, 4);
        put(&mut h, TEXT_ENCODING_OFFSET, 1);
        put(&mut h, VERSION_VALID_FOR_OFFSET, 7);
        put(&mut h, SQLITE_VERSION_OFFSET, 3_045_000);
        h
    }

    #[test]
    fn parses_a_good_header() {
        let h = DatabaseHeader::parse(&good_header()).unwrap();
        assert_eq!(h.page_size, 4096);
        assert_eq!(h.usable_size(), 4096);
        assert_eq!(h.page_count, 3);
        assert!(h.page_count_is_valid());
        assert_eq!(h.text_encoding, TextEncoding::Utf8);
        assert_eq!(h.sqlite_version, 3_045_000);
        assert!(!h.is_auto_vacuum());
    }

    #[test]
    fn bad_magic() {
        let mut b = good_header();
        b[0] = b's';
        assert!(matches!(
            DatabaseHeader::parse(&b),
            Err(FormatError::BadHeader { .. })
        ));
    }

    #[test]
    fn truncated() {
        let b = good_header();
        assert_eq!(
            DatabaseHeader::parse(&b[..99]),
            Err(FormatError::Truncated {
                what: "database header"
            })
        );
    }

    #[test]
    fn page_size_one_means_65536() {
        let mut b = good_header();
        b[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 2].copy_from_slice(&1u16.to_be_bytes());
        let h = DatabaseHeader::parse(&b).unwrap();
        assert_eq!(h.page_size, 65536);
        assert_eq!(h.usable_size(), 65536);
    }

    #[test]
    fn page_size_must_be_a_power_of_two_in_range() {
        for bad in [0u16, 256, 1000, 4095, 3, 2, 0x0201] {
            let mut b = good_header();
            b[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 2].copy_from_slice(&bad.to_be_bytes());
            assert!(DatabaseHeader::parse(&b).is_err(), "page size {bad}");
        }
        for good in [512u16, 1024, 32768] {
            let mut b = good_header();
            b[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 2].copy_from_slice(&good.to_be_bytes());
            assert_eq!(
                DatabaseHeader::parse(&b).unwrap().page_size,
                u32::from(good)
            );
        }
    }

    #[test]
    fn reserved_bytes_must_leave_480_usable() {
        let mut b = good_header();
        b[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 2].copy_from_slice(&512u16.to_be_bytes());
        b[RESERVED_BYTES_OFFSET] = 32;
        assert_eq!(DatabaseHeader::parse(&b).unwrap().usable_size(), 480);
        b[RESERVED_BYTES_OFFSET] = 33;
        assert!(matches!(
            DatabaseHeader::parse(&b),
            Err(FormatError::BadHeader { .. })
        ));
        // 255 reserved bytes are fine in a larger page.
        let mut b = good_header();
        b[RESERVED_BYTES_OFFSET] = 255;
        assert_eq!(DatabaseHeader::parse(&b).unwrap().usable_size(), 4096 - 255);
    }

    #[test]
    fn a_schema_format_is_read_by_its_low_byte() {
        // SQLite keeps the low byte (0 is 1) and refuses above 4
        for (v, ok) in [
            (0u32, true),
            (4, true),
            (0x1000_0004, true),
            (0x40_0000, true),
            (5, false),
            (0x94, false),
            (0x0100_00ff, false),
        ] {
            let mut b = good_header();
            b[SCHEMA_FORMAT_OFFSET..SCHEMA_FORMAT_OFFSET + 4].copy_from_slice(&v.to_be_bytes());
            assert_eq!(
                DatabaseHeader::parse(&b).is_ok(),
                ok,
                "schema format {v:#x}"
            );
        }
    }

    #[test]
    fn payload_fractions_are_fixed() {
        let mut b = good_header();
        b[MIN_PAYLOAD_FRACTION_OFFSET] = 33;
        assert!(DatabaseHeader::parse(&b).is_err());
    }

    #[test]
    fn text_encodings() {
        for (v, e) in [
            (1u32, TextEncoding::Utf8),
            (2, TextEncoding::Utf16le),
            (3, TextEncoding::Utf16be),
        ] {
            let mut b = good_header();
            b[TEXT_ENCODING_OFFSET..TEXT_ENCODING_OFFSET + 4].copy_from_slice(&v.to_be_bytes());
            assert_eq!(DatabaseHeader::parse(&b).unwrap().text_encoding, e);
            assert_eq!(e.header_value(), v);
        }
        // SQLite reads any value by its low two bits; 0 ("never set") is UTF-8.
        for (v, e) in [
            (0u32, TextEncoding::Utf8),
            (4, TextEncoding::Utf8),
            (5, TextEncoding::Utf8),
            (6, TextEncoding::Utf16le),
            (889_537_280, TextEncoding::Utf8),
            (15_400_961, TextEncoding::Utf8),
            (3_892_314_113, TextEncoding::Utf8),
            (0xffff_ffff, TextEncoding::Utf16be),
        ] {
            let mut b = good_header();
            b[TEXT_ENCODING_OFFSET..TEXT_ENCODING_OFFSET + 4].copy_from_slice(&v.to_be_bytes());
            let h = DatabaseHeader::parse(&b).unwrap();
            assert_eq!((h.text_encoding, h.text_encoding_raw), (e, v), "value {v}");
        }
    }

    #[test]
    fn read_version_above_two_is_refused_write_version_is_not_judged() {
        let mut b = good_header();
        b[READ_VERSION_OFFSET] = 2;
        b[WRITE_VERSION_OFFSET] = 200;
        assert!(DatabaseHeader::parse(&b).is_ok());
        b[READ_VERSION_OFFSET] = 3;
        assert!(matches!(
            DatabaseHeader::parse(&b),
            Err(FormatError::BadHeader { .. })
        ));
        b[READ_VERSION_OFFSET] = 0;
        assert!(DatabaseHeader::parse(&b).is_ok());
    }

    #[test]
    fn page_count_validity() {
        let mut b = good_header();
        b[VERSION_VALID_FOR_OFFSET + 3] = 6;
        assert!(!DatabaseHeader::parse(&b).unwrap().page_count_is_valid());
        assert_eq!(trusted_page_count(&b), None);
        let mut b = good_header();
        b[PAGE_COUNT_OFFSET..PAGE_COUNT_OFFSET + 4].copy_from_slice(&[0; 4]);
        assert!(!DatabaseHeader::parse(&b).unwrap().page_count_is_valid());
        assert_eq!(trusted_page_count(&b), None);
        let b = good_header();
        let h = DatabaseHeader::parse(&b).unwrap();
        assert!(h.page_count_is_valid());
        assert_eq!(trusted_page_count(&b), Some(h.page_count));
    }

    #[test]
    fn pending_byte_pages() {
        assert_eq!(pending_byte_page(4096), 262_145);
        assert_eq!(pending_byte_page(65536), 16_385);
        assert_eq!(pending_byte_page(512), 2_097_153);
    }
}
