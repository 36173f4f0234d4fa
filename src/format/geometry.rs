//! A database header rebuilt from the pages, for a file whose header SQLite
//! refuses (or whose header does not describe its own pages).
//!
//! Spec: https://www.sqlite.org/fileformat2.html, "The Database Header" and
//! "B-tree Pages". Of the header's fields only a few matter for reading the
//! b-trees: the page size, the reserved bytes at the end of every page, the
//! text encoding and the page count. The first two are found the way
//! SQLite's own recovery finds them: a well-formed b-tree page fills its
//! cell content area exactly (every byte from the content start to the end
//! of the usable space is a cell, a freeblock or one of the counted
//! fragmented bytes), so a page read with the wrong page size or the wrong
//! number of reserved bytes almost never passes [`BtreePage::check_layout`].
//! The page size and reserved bytes under which the most pages of the
//! file's first blocks pass are the file's. The encoding is told from the
//! schema's records (see [`super::schema_table`]); the page count from the
//! file length.
//!
//! Pure: the caller hands in the file's first bytes.

use super::header::{
    FILE_CHANGE_COUNTER_OFFSET, HEADER_SIZE, LEAF_PAYLOAD_FRACTION, LEAF_PAYLOAD_FRACTION_OFFSET,
    MAGIC, MAGIC_OFFSET, MAX_PAGE_SIZE, MAX_PAYLOAD_FRACTION, MAX_PAYLOAD_FRACTION_OFFSET,
    MAX_SCHEMA_FORMAT, MIN_PAGE_SIZE, MIN_PAYLOAD_FRACTION, MIN_PAYLOAD_FRACTION_OFFSET,
    MIN_USABLE_SIZE, PAGE_COUNT_OFFSET, PAGE_SIZE_OFFSET, READ_VERSION_OFFSET,
    RESERVED_BYTES_OFFSET, SCHEMA_FORMAT_OFFSET, TEXT_ENCODING_OFFSET, TextEncoding,
    VERSION_VALID_FOR_OFFSET, WRITE_VERSION_OFFSET,
};
use super::page::BtreePage;

/// How many bytes of the file [`infer`] wants: the first four 64 KiB blocks,
/// as SQLite's recovery reads (enough for four pages of the largest size).
pub const PROBE_BYTES: usize = 4 * MAX_PAGE_SIZE as usize;

/// Pages of one candidate size looked at, at most (small pages: the first ones).
const MAX_PAGES_TRIED: usize = 128;

/// The page geometry found from the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Page size in bytes.
    pub page_size: u32,
    /// Bytes reserved at the end of every page.
    pub reserved: u8,
    /// How many of the pages tried are well-formed b-tree pages under it.
    pub pages_seen: usize,
}

/// Whether `page` (one page image of `page_size` bytes; page 1's b-tree
/// header starts at offset 100) is a well-formed, non-empty b-tree page when
/// `reserved` bytes at its end are not part of it.
pub fn is_btree_page(page: &[u8], pgno: u32, page_size: u32, reserved: u8) -> bool {
    let usable = page_size.saturating_sub(u32::from(reserved));
    if usable < MIN_USABLE_SIZE || page.len() < page_size as usize {
        return false;
    }
    match BtreePage::parse(page, pgno, usable) {
        Ok(p) => p.cell_count() > 0 && p.check_layout().is_empty(),
        Err(_) => false,
    }
}

/// The page size and reserved bytes under which the most pages of `head`
/// (the file's first bytes, up to [`PROBE_BYTES`]) are well-formed b-tree
/// pages, or `None` when no page is. `reserved_hint` (the damaged header's
/// value) is tried first and wins ties, then 0, then every other value.
pub fn infer(head: &[u8], reserved_hint: u8) -> Option<Geometry> {
    let mut best: Option<Geometry> = None;
    let mut page_size = MIN_PAGE_SIZE;
    while page_size <= MAX_PAGE_SIZE {
        let mut reserved_values = vec![reserved_hint, 0];
        reserved_values.extend((1..=u8::MAX).filter(|&r| r != reserved_hint));
        for reserved in reserved_values {
            let seen = pages_passing(head, page_size, reserved);
            if seen > best.map_or(0, |b| b.pages_seen) {
                best = Some(Geometry {
                    page_size,
                    reserved,
                    pages_seen: seen,
                });
            }
        }
        page_size *= 2;
    }
    best
}

/// The geometry the pages of `head` show, when it fits them better than
/// the header's `page_size` and `reserved` do (strictly more pages are
/// well-formed b-tree pages under it): a header whose page size or reserved
/// bytes are damaged into other values SQLite accepts (a byte 16, 17 or 20
/// changed). `None` when the header's own geometry fits as well.
pub fn better_than_header(head: &[u8], page_size: u32, reserved: u8) -> Option<Geometry> {
    let g = infer(head, reserved)?;
    (g.pages_seen > pages_passing(head, page_size, reserved)).then_some(g)
}

/// Whether every one of the first pages of `head` that calls itself a
/// b-tree page (a page-type byte SQLite knows, at least one cell) is a
/// well-formed one under `page_size` and `reserved`: cheap, and true of
/// every sound file, so that the search for a better geometry
/// ([`better_than_header`]) runs only where some page does not fit.
pub fn pages_fit(head: &[u8], page_size: u32, reserved: u8) -> bool {
    head.chunks_exact(page_size as usize)
        .take(MAX_PAGES_TRIED)
        .enumerate()
        .all(|(i, page)| {
            let pgno = i as u32 + 1;
            let at = if pgno == 1 { HEADER_SIZE } else { 0 };
            let kind = page.get(at).copied().unwrap_or(0);
            let cells = page
                .get(at + 3..at + 5)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            !matches!(kind, 2 | 5 | 10 | 13)
                || cells == 0
                || is_btree_page(page, pgno, page_size, reserved)
        })
}

/// How many of the first pages of `head` pass [`is_btree_page`].
fn pages_passing(head: &[u8], page_size: u32, reserved: u8) -> usize {
    let size = page_size as usize;
    head.chunks_exact(size)
        .take(MAX_PAGES_TRIED)
        .enumerate()
        .filter(|(i, page)| is_btree_page(page, *i as u32 + 1, page_size, reserved))
        .count()
}

/// The first [`HEADER_SIZE`] bytes of a header SQLite reads as the file's:
/// the damaged header `raw` with the magic string, the page size, the
/// reserved bytes, the payload fractions, the file format versions (1:
/// rollback journal), the text encoding, a schema format number SQLite
/// refuses (4 then, the newest) and the page count (the file's length in
/// pages, marked valid) put right. The other fields (freelist, schema
/// cookie, auto-vacuum, user version, application id) are kept.
pub fn rebuilt_header(
    raw: &[u8],
    geometry: Geometry,
    encoding: TextEncoding,
    file_len: u64,
) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    let n = raw.len().min(HEADER_SIZE);
    h[..n].copy_from_slice(&raw[..n]);
    h[MAGIC_OFFSET..MAGIC_OFFSET + MAGIC.len()].copy_from_slice(MAGIC);
    let stored_size: u16 = if geometry.page_size == MAX_PAGE_SIZE {
        1
    } else {
        geometry.page_size as u16
    };
    h[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 2].copy_from_slice(&stored_size.to_be_bytes());
    h[WRITE_VERSION_OFFSET] = 1;
    h[READ_VERSION_OFFSET] = 1;
    h[RESERVED_BYTES_OFFSET] = geometry.reserved;
    h[MAX_PAYLOAD_FRACTION_OFFSET] = MAX_PAYLOAD_FRACTION;
    h[MIN_PAYLOAD_FRACTION_OFFSET] = MIN_PAYLOAD_FRACTION;
    h[LEAF_PAYLOAD_FRACTION_OFFSET] = LEAF_PAYLOAD_FRACTION;
    if h[SCHEMA_FORMAT_OFFSET + 3] > MAX_SCHEMA_FORMAT {
        h[SCHEMA_FORMAT_OFFSET..SCHEMA_FORMAT_OFFSET + 4]
            .copy_from_slice(&u32::from(MAX_SCHEMA_FORMAT).to_be_bytes());
    }
    let pages = (file_len / u64::from(geometry.page_size)).min(u64::from(u32::MAX)) as u32;
    h[PAGE_COUNT_OFFSET..PAGE_COUNT_OFFSET + 4].copy_from_slice(&pages.to_be_bytes());
    let counter = [
        h[FILE_CHANGE_COUNTER_OFFSET],
        h[FILE_CHANGE_COUNTER_OFFSET + 1],
        h[FILE_CHANGE_COUNTER_OFFSET + 2],
        h[FILE_CHANGE_COUNTER_OFFSET + 3],
    ];
    h[VERSION_VALID_FOR_OFFSET..VERSION_VALID_FOR_OFFSET + 4].copy_from_slice(&counter);
    h[TEXT_ENCODING_OFFSET..TEXT_ENCODING_OFFSET + 4]
        .copy_from_slice(&encoding.header_value().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::btree::test_image::{PS, image, leaf_cell, put_page};
    use crate::format::header::DatabaseHeader;

    /// A record of one small integer.
    fn rec(n: u8) -> Vec<u8> {
        vec![2, 1, n]
    }

    fn sample() -> Vec<u8> {
        let mut img = image(6);
        for pg in 2..=6usize {
            let cells: Vec<_> = (1..=3).map(|r| leaf_cell(r, &rec(r as u8))).collect();
            put_page(&mut img, pg, 13, &cells, None);
        }
        img
    }

    #[test]
    fn the_page_size_is_found_from_the_pages() {
        let mut img = sample();
        // the header's page size destroyed
        img[16] = 0x12;
        img[17] = 0x34;
        let g = infer(&img, img[20]).unwrap();
        assert_eq!((g.page_size, g.reserved), (PS as u32, 0));
        assert_eq!(g.pages_seen, 5);
    }

    #[test]
    fn nothing_is_found_in_zeros() {
        assert_eq!(infer(&vec![0u8; 8192], 0), None);
    }

    #[test]
    fn the_rebuilt_header_parses_and_keeps_the_rest() {
        let mut img = sample();
        img[0..16].copy_from_slice(b"garbage garbage!");
        img[60..64].copy_from_slice(&7u32.to_be_bytes()); // user_version
        let g = infer(&img, 0).unwrap();
        let h = rebuilt_header(&img[..100], g, TextEncoding::Utf16le, img.len() as u64);
        let parsed = DatabaseHeader::parse(&h).unwrap();
        assert_eq!(parsed.page_size, PS as u32);
        assert_eq!(parsed.text_encoding, TextEncoding::Utf16le);
        assert_eq!(parsed.user_version, 7);
        assert_eq!(parsed.page_count, 6);
        assert!(parsed.page_count_is_valid());
    }
}
