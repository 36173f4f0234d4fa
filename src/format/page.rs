//! One b-tree page: its header, cell pointer array, cells and free space.
//!
//! Spec, section "B-tree Pages". Offsets inside a page are from the start of
//! the page, also on page 1 where the b-tree header follows the 100-byte
//! database header. Only the first `usable_size` bytes of a page hold b-tree
//! content; the rest is reserved.

use super::header::{HEADER_SIZE, MIN_USABLE_SIZE};
use super::varint::read_varint;
use super::{FormatError, be_u16, be_u32};

/// Offset of the page type byte in the b-tree page header.
pub const PAGE_TYPE_OFFSET: usize = 0;
/// Offset of the first freeblock's offset (u16, 0 = no freeblocks).
pub const FIRST_FREEBLOCK_OFFSET: usize = 1;
/// Offset of the number of cells (u16).
pub const CELL_COUNT_OFFSET: usize = 3;
/// Offset of the start of the cell content area (u16, 0 means 65536).
pub const CONTENT_START_OFFSET: usize = 5;
/// Offset of the number of fragmented free bytes in the cell content area (u8).
pub const FRAGMENTED_BYTES_OFFSET: usize = 7;
/// Offset of the right-most child page number (u32, interior pages only).
pub const RIGHT_CHILD_OFFSET: usize = 8;
/// Size of a leaf page's b-tree header.
pub const LEAF_HEADER_SIZE: usize = 8;
/// Size of an interior page's b-tree header.
pub const INTERIOR_HEADER_SIZE: usize = 12;
/// Size of one entry of the cell pointer array.
pub const CELL_POINTER_SIZE: usize = 2;
/// Offset of the b-tree header on page 1 (after the database header).
pub const PAGE1_BTREE_HEADER_OFFSET: usize = HEADER_SIZE;
/// Most fragmented free bytes a well-formed page has (SQLite defragments beyond this).
pub const MAX_FRAGMENTED_BYTES: u8 = 60;
/// Smallest space a cell occupies: shorter cells are padded to this size.
pub const MIN_CELL_SIZE: usize = 4;
/// Offset, inside a freeblock, of the next freeblock's offset (u16, 0 = last).
pub const FREEBLOCK_NEXT_OFFSET: usize = 0;
/// Offset, inside a freeblock, of its size in bytes (u16, header included).
pub const FREEBLOCK_SIZE_OFFSET: usize = 2;
/// Smallest freeblock: its own 4-byte header. Smaller gaps are fragments.
pub const MIN_FREEBLOCK_SIZE: usize = 4;
/// Size of a left-child page number at the start of an interior cell.
pub const CHILD_POINTER_SIZE: usize = 4;
/// Size of the first-overflow-page number that follows a spilled local payload.
pub const OVERFLOW_POINTER_SIZE: usize = 4;
/// Offset of the next overflow page number (u32, 0 = last) in an overflow page.
pub const OVERFLOW_NEXT_OFFSET: usize = 0;
/// Offset of the payload bytes in an overflow page (they run to the usable size).
pub const OVERFLOW_DATA_OFFSET: usize = 4;

/// The four kinds of b-tree page, by their type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageType {
    /// Interior page of an index b-tree.
    InteriorIndex = 2,
    /// Interior page of a table b-tree.
    InteriorTable = 5,
    /// Leaf page of an index b-tree.
    LeafIndex = 10,
    /// Leaf page of a table b-tree.
    LeafTable = 13,
}

impl TryFrom<u8> for PageType {
    type Error = FormatError;

    fn try_from(byte: u8) -> Result<PageType, FormatError> {
        match byte {
            2 => Ok(PageType::InteriorIndex),
            5 => Ok(PageType::InteriorTable),
            10 => Ok(PageType::LeafIndex),
            13 => Ok(PageType::LeafTable),
            _ => Err(FormatError::BadPageType { byte }),
        }
    }
}

impl PageType {
    /// Whether pages of this type have no children.
    pub fn is_leaf(self) -> bool {
        matches!(self, PageType::LeafIndex | PageType::LeafTable)
    }

    /// Whether this is a page of a table (rowid) b-tree.
    pub fn is_table(self) -> bool {
        matches!(self, PageType::InteriorTable | PageType::LeafTable)
    }

    /// Size of the b-tree page header for this type.
    pub fn header_size(self) -> usize {
        if self.is_leaf() {
            LEAF_HEADER_SIZE
        } else {
            INTERIOR_HEADER_SIZE
        }
    }
}

/// Bytes of a `total_len`-byte payload stored in the cell itself; the rest
/// spills to overflow pages. Spec, "Cell Payload Overflow Pages":
///
/// U = usable size, P = payload size, X = U-35 for table leaves and
/// ((U-12)*64/255)-23 for index pages, M = ((U-12)*32/255)-23,
/// K = M+((P-M)%(U-4)). If P <= X all of it is local; else K if K <= X, else M.
///
/// `usable_size` must be at least [`MIN_USABLE_SIZE`], as in every valid
/// database ([`BtreePage::parse`] refuses smaller ones): below 196, M is negative.
#[inline]
pub fn local_payload_size(total_len: u64, usable_size: u32, page_type: PageType) -> usize {
    let u = u64::from(usable_size);
    let max_local = if page_type == PageType::LeafTable {
        u - 35
    } else {
        ((u - 12) * 64 / 255) - 23
    };
    if total_len <= max_local {
        return total_len as usize;
    }
    let min_local = ((u - 12) * 32 / 255) - 23;
    let k = min_local + (total_len - min_local) % (u - 4);
    if k <= max_local {
        k as usize
    } else {
        min_local as usize
    }
}

/// A cell's payload: the part stored in the cell and where the rest continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// Total payload size in bytes, local part and overflow together.
    pub total_len: u64,
    /// The bytes stored in the cell itself.
    pub local: &'a [u8],
    /// First overflow page when the payload does not fit locally (may be 0 in a corrupt file).
    pub first_overflow: Option<u32>,
}

impl Payload<'_> {
    /// Whether the whole payload is in `local`.
    pub fn is_complete(&self) -> bool {
        self.first_overflow.is_none()
    }
}

/// One decoded cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    /// A row: its rowid and record.
    TableLeaf {
        /// The row's rowid.
        rowid: i64,
        /// The row's record.
        payload: Payload<'a>,
    },
    /// A divider: every rowid in `left_child`'s subtree is <= `rowid`.
    TableInterior {
        /// Page number of the left child.
        left_child: u32,
        /// The divider key.
        rowid: i64,
    },
    /// An index entry (a record ending with the row's key).
    IndexLeaf {
        /// The entry's record.
        payload: Payload<'a>,
    },
    /// An index entry that also divides: `left_child`'s entries sort before it.
    IndexInterior {
        /// Page number of the left child.
        left_child: u32,
        /// The entry's record.
        payload: Payload<'a>,
    },
}

impl<'a> Cell<'a> {
    /// The payload, for the cell types that have one.
    pub fn payload(&self) -> Option<&Payload<'a>> {
        match self {
            Cell::TableLeaf { payload, .. }
            | Cell::IndexLeaf { payload }
            | Cell::IndexInterior { payload, .. } => Some(payload),
            Cell::TableInterior { .. } => None,
        }
    }

    /// The left child, for interior cells.
    pub fn left_child(&self) -> Option<u32> {
        match self {
            Cell::TableInterior { left_child, .. } | Cell::IndexInterior { left_child, .. } => {
                Some(*left_child)
            }
            _ => None,
        }
    }
}

/// A parsed b-tree page borrowing the page image.
#[derive(Debug, Clone, Copy)]
pub struct BtreePage<'a> {
    data: &'a [u8],
    pgno: u32,
    usable: usize,
    header_offset: usize,
    page_type: PageType,
    first_freeblock: u16,
    cell_count: u16,
    content_start: u32,
    fragmented_bytes: u8,
    right_child: Option<u32>,
}

/// A stretch of a page claimed by a cell or a freeblock, for layout checks.
#[derive(Debug, Clone, Copy)]
struct Region {
    start: u32,
    end: u32,
    /// Cell index, or `u32::MAX - k` for the k-th freeblock.
    owner: u32,
}

impl Region {
    fn describe(&self) -> String {
        if self.owner > u32::MAX / 2 {
            format!(
                "freeblock at offset {} (offsets {}..{})",
                self.start, self.start, self.end
            )
        } else {
            format!("cell {} (offsets {}..{})", self.owner, self.start, self.end)
        }
    }
}

impl<'a> BtreePage<'a> {
    /// Parses the b-tree header of page `pgno` (page 1's starts at offset 100)
    /// and checks that the header and the cell pointer array fit in the usable
    /// part of the page. `page` must hold at least `usable_size` bytes, and
    /// `usable_size` must be at least [`MIN_USABLE_SIZE`] (the payload-size
    /// formulas of [`local_payload_size`] need it).
    pub fn parse(
        page: &'a [u8],
        pgno: u32,
        usable_size: u32,
    ) -> Result<BtreePage<'a>, FormatError> {
        if usable_size < MIN_USABLE_SIZE {
            return Err(FormatError::BadPage {
                detail: format!(
                    "page {pgno}: usable size {usable_size} is below the minimum of {MIN_USABLE_SIZE}"
                ),
            });
        }
        let usable = usable_size as usize;
        if page.len() < usable {
            return Err(FormatError::Truncated {
                what: "b-tree page",
            });
        }
        let header_offset = if pgno == 1 {
            PAGE1_BTREE_HEADER_OFFSET
        } else {
            0
        };
        let type_byte =
            *page
                .get(header_offset + PAGE_TYPE_OFFSET)
                .ok_or(FormatError::Truncated {
                    what: "b-tree page",
                })?;
        let page_type = PageType::try_from(type_byte)?;
        let header_end = header_offset + page_type.header_size();
        if header_end > usable {
            return Err(FormatError::OutOfBounds {
                what: format!("b-tree header of page {pgno}"),
            });
        }
        let h = &page[header_offset..header_end];
        // ok: `h` is the whole header, so these constant offsets are inside it.
        let first_freeblock = be_u16(h, FIRST_FREEBLOCK_OFFSET).unwrap_or(0);
        let cell_count = be_u16(h, CELL_COUNT_OFFSET).unwrap_or(0);
        let raw_content_start = be_u16(h, CONTENT_START_OFFSET).unwrap_or(0);
        let content_start = if raw_content_start == 0 {
            65536
        } else {
            u32::from(raw_content_start)
        };
        let fragmented_bytes = h[FRAGMENTED_BYTES_OFFSET];
        let right_child = if page_type.is_leaf() {
            None
        } else {
            be_u32(h, RIGHT_CHILD_OFFSET)
        };
        let pointers_end = header_end + CELL_POINTER_SIZE * usize::from(cell_count);
        if pointers_end > usable {
            return Err(FormatError::OutOfBounds {
                what: format!(
                    "cell pointer array of page {pgno} ({cell_count} cells, ends at offset {pointers_end}, usable size {usable})"
                ),
            });
        }
        Ok(BtreePage {
            data: page,
            pgno,
            usable,
            header_offset,
            page_type,
            first_freeblock,
            cell_count,
            content_start,
            fragmented_bytes,
            right_child,
        })
    }

    /// The page number this page was parsed as.
    pub fn pgno(&self) -> u32 {
        self.pgno
    }

    /// The page type.
    pub fn page_type(&self) -> PageType {
        self.page_type
    }

    /// Number of cells.
    pub fn cell_count(&self) -> u16 {
        self.cell_count
    }

    /// The right-most child (interior pages only).
    pub fn right_child(&self) -> Option<u32> {
        self.right_child
    }

    /// Offset of the first freeblock, 0 if none.
    pub fn first_freeblock(&self) -> u16 {
        self.first_freeblock
    }

    /// Start of the cell content area (the on-disk 0 is returned as 65536).
    pub fn content_start(&self) -> u32 {
        self.content_start
    }

    /// The header's count of fragmented free bytes.
    pub fn fragmented_bytes(&self) -> u8 {
        self.fragmented_bytes
    }

    /// Offset of the b-tree header (100 on page 1, else 0).
    pub fn header_offset(&self) -> usize {
        self.header_offset
    }

    /// Offset just past the cell pointer array.
    pub fn cell_pointers_end(&self) -> usize {
        self.header_offset
            + self.page_type.header_size()
            + CELL_POINTER_SIZE * usize::from(self.cell_count)
    }

    /// The usable size the page was parsed with.
    pub fn usable_size(&self) -> usize {
        self.usable
    }

    /// The whole page image.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Offset of cell `i` from the cell pointer array; an error if `i` is not a
    /// cell or the offset is not inside the usable part of the page.
    #[inline]
    pub fn cell_offset(&self, i: usize) -> Result<usize, FormatError> {
        if i >= usize::from(self.cell_count) {
            return Err(self.no_such_cell(i));
        }
        let at = self.header_offset + self.page_type.header_size() + CELL_POINTER_SIZE * i;
        // ok: parse() checked that the whole pointer array is inside the usable size.
        let offset = usize::from(be_u16(self.data, at).unwrap_or(0));
        if offset >= self.usable {
            return Err(self.cell_offset_error(i, offset));
        }
        Ok(offset)
    }

    #[cold]
    fn no_such_cell(&self, i: usize) -> FormatError {
        FormatError::OutOfBounds {
            what: format!(
                "cell index {i} of page {} ({} cells)",
                self.pgno, self.cell_count
            ),
        }
    }

    #[cold]
    fn cell_offset_error(&self, i: usize, offset: usize) -> FormatError {
        FormatError::OutOfBounds {
            what: format!(
                "cell {i} of page {} (offset {offset}, usable size {})",
                self.pgno, self.usable
            ),
        }
    }

    #[cold]
    fn cell_error(&self, i: usize, offset: usize, detail: &str) -> FormatError {
        FormatError::OutOfBounds {
            what: format!(
                "cell {i} of page {} at offset {offset} ({detail}, usable size {})",
                self.pgno, self.usable
            ),
        }
    }

    /// Decodes cell `i`. Every byte it borrows lies inside the usable part of
    /// the page; a cell that would reach past it is an error.
    #[inline]
    pub fn cell(&self, i: usize) -> Result<Cell<'a>, FormatError> {
        let offset = self.cell_offset(i)?;
        let bytes = &self.data[offset..self.usable];
        let mut pos = 0;
        let left_child = if self.page_type.is_leaf() {
            0
        } else {
            pos = CHILD_POINTER_SIZE;
            be_u32(bytes, 0).ok_or_else(|| self.cell_error(i, offset, "child pointer"))?
        };
        if self.page_type == PageType::InteriorTable {
            let (rowid, _) = read_varint(&bytes[pos..])
                .ok_or_else(|| self.cell_error(i, offset, "rowid varint"))?;
            return Ok(Cell::TableInterior {
                left_child,
                rowid: rowid as i64,
            });
        }
        let (total_len, n) = read_varint(bytes.get(pos..).unwrap_or(&[]))
            .ok_or_else(|| self.cell_error(i, offset, "payload size varint"))?;
        pos += n;
        let mut rowid = 0;
        if self.page_type == PageType::LeafTable {
            let (r, n) = read_varint(&bytes[pos..])
                .ok_or_else(|| self.cell_error(i, offset, "rowid varint"))?;
            rowid = r as i64;
            pos += n;
        }
        let payload = self
            .payload_at(bytes, pos, total_len)
            .ok_or_else(|| self.cell_error(i, offset, &format!("payload of {total_len} bytes")))?;
        Ok(match self.page_type {
            PageType::LeafTable => Cell::TableLeaf { rowid, payload },
            PageType::LeafIndex => Cell::IndexLeaf { payload },
            PageType::InteriorIndex => Cell::IndexInterior {
                left_child,
                payload,
            },
            // ok: returned above.
            PageType::InteriorTable => Cell::TableInterior { left_child, rowid },
        })
    }

    /// The payload starting at `pos` of `bytes` (a cell up to the usable end).
    #[inline]
    fn payload_at(&self, bytes: &'a [u8], pos: usize, total_len: u64) -> Option<Payload<'a>> {
        let local_len = local_payload_size(total_len, self.usable as u32, self.page_type);
        let local_end = pos.checked_add(local_len)?;
        let local = bytes.get(pos..local_end)?;
        let first_overflow = if local_len as u64 == total_len {
            None
        } else {
            Some(be_u32(bytes, local_end)?)
        };
        Some(Payload {
            total_len,
            local,
            first_overflow,
        })
    }

    /// For a table leaf, the rowid of cell `i` even when its payload does not
    /// fit the page (so a damaged row can still be named).
    pub fn table_leaf_rowid(&self, i: usize) -> Option<i64> {
        if self.page_type != PageType::LeafTable {
            return None;
        }
        let offset = self.cell_offset(i).ok()?;
        let bytes = &self.data[offset..self.usable];
        let (_, n) = read_varint(bytes)?;
        let (rowid, _) = read_varint(&bytes[n..])?;
        Some(rowid as i64)
    }

    /// The bytes cell `i` occupies on the page (at least [`MIN_CELL_SIZE`]),
    /// computed from its header varints; `None` if those run off the usable area.
    #[inline]
    pub fn cell_size_at(&self, offset: usize) -> Option<usize> {
        let bytes = self.data.get(offset..self.usable)?;
        let mut pos = if self.page_type.is_leaf() {
            0
        } else {
            CHILD_POINTER_SIZE
        };
        if self.page_type == PageType::InteriorTable {
            let (_, n) = read_varint(bytes.get(pos..)?)?;
            return Some((pos + n).max(MIN_CELL_SIZE));
        }
        let (total_len, n) = read_varint(bytes.get(pos..)?)?;
        pos += n;
        if self.page_type == PageType::LeafTable {
            let (_, n) = read_varint(bytes.get(pos..)?)?;
            pos += n;
        }
        let local = local_payload_size(total_len, self.usable as u32, self.page_type);
        let mut size = pos + local;
        if local as u64 != total_len {
            size += OVERFLOW_POINTER_SIZE;
        }
        Some(size.max(MIN_CELL_SIZE))
    }

    /// Every layout problem of this page, as SQLite's integrity check finds
    /// them: cells inside the content area and the usable size, no two cells
    /// or freeblocks overlapping, a freeblock chain that is in bounds and
    /// ascending, and a fragmented-byte count that is at most 60 and equals the
    /// bytes no cell or freeblock accounts for. Empty when the page is sound.
    pub fn check_layout(&self) -> Vec<FormatError> {
        let mut errors = Vec::new();
        let mut scratch = Vec::new();
        self.check_layout_into(&mut scratch, &mut errors);
        errors
    }

    /// [`Self::check_layout`] with caller-owned buffers (both are cleared
    /// first), for walks that check many pages without allocating.
    pub fn check_layout_into(
        &self,
        scratch: &mut Vec<(u32, u32, u32)>,
        errors: &mut Vec<FormatError>,
    ) {
        scratch.clear();
        errors.clear();
        let pgno = self.pgno;
        let usable = self.usable as u32;
        let pointers_end = self.cell_pointers_end() as u32;
        let mut content_ok = true;
        if self.content_start < pointers_end {
            content_ok = false;
            errors.push(FormatError::BadPage {
                detail: format!(
                    "page {pgno}: cell content area starts at offset {}, inside the cell pointer array that ends at {pointers_end}",
                    self.content_start
                ),
            });
        } else if self.content_start > usable {
            content_ok = false;
            errors.push(FormatError::OutOfBounds {
                what: format!(
                    "cell content area of page {pgno} (starts at offset {}, usable size {usable})",
                    self.content_start
                ),
            });
        }
        // Cells and freeblocks may not start before this offset.
        let lowest = if content_ok {
            self.content_start
        } else {
            pointers_end
        };
        if self.fragmented_bytes > MAX_FRAGMENTED_BYTES {
            errors.push(FormatError::BadPage {
                detail: format!(
                    "page {pgno}: {} fragmented free bytes, more than {MAX_FRAGMENTED_BYTES}",
                    self.fragmented_bytes
                ),
            });
        }

        let mut regions_complete = true;
        for i in 0..usize::from(self.cell_count) {
            let at = self.header_offset + self.page_type.header_size() + CELL_POINTER_SIZE * i;
            // ok: parse() checked that the whole pointer array is inside the usable size.
            let offset = u32::from(be_u16(self.data, at).unwrap_or(0));
            if offset < lowest || offset + MIN_CELL_SIZE as u32 > usable {
                regions_complete = false;
                errors.push(FormatError::OutOfBounds {
                    what: format!(
                        "cell {i} of page {pgno} (offset {offset}, outside the content area {lowest}..{usable})"
                    ),
                });
                continue;
            }
            match self.cell_size_at(offset as usize) {
                Some(size) if offset as usize + size <= self.usable => {
                    scratch.push((offset, offset + size as u32, i as u32));
                }
                Some(size) => {
                    regions_complete = false;
                    errors.push(FormatError::OutOfBounds {
                        what: format!(
                            "cell {i} of page {pgno} (offsets {offset}..{}, past the usable size {usable})",
                            offset as usize + size
                        ),
                    });
                }
                None => {
                    regions_complete = false;
                    errors.push(FormatError::OutOfBounds {
                        what: format!(
                            "cell {i} of page {pgno} (offset {offset}: its header runs past the usable size {usable})"
                        ),
                    });
                }
            }
        }

        // The freeblock chain: ascending offsets, so it ends after at most usable/4 steps.
        let mut freeblock = u32::from(self.first_freeblock);
        let mut k = 0u32;
        let mut previous_end = 0u32;
        while freeblock != 0 {
            if freeblock < lowest.max(previous_end)
                || freeblock + MIN_FREEBLOCK_SIZE as u32 > usable
            {
                regions_complete = false;
                errors.push(FormatError::BadPage {
                    detail: if freeblock < previous_end {
                        format!(
                            "page {pgno}: freeblock at offset {freeblock} is not after the previous freeblock, which ends at {previous_end}"
                        )
                    } else {
                        format!(
                            "page {pgno}: freeblock at offset {freeblock} is outside the content area {lowest}..{usable}"
                        )
                    },
                });
                break;
            }
            let f = freeblock as usize;
            // ok: freeblock + 4 <= usable was checked just above.
            let next = u32::from(be_u16(self.data, f + FREEBLOCK_NEXT_OFFSET).unwrap_or(0));
            let size = u32::from(be_u16(self.data, f + FREEBLOCK_SIZE_OFFSET).unwrap_or(0));
            if (size as usize) < MIN_FREEBLOCK_SIZE || freeblock + size > usable {
                regions_complete = false;
                errors.push(FormatError::BadPage {
                    detail: format!(
                        "page {pgno}: freeblock at offset {freeblock} has size {size} (usable size {usable})"
                    ),
                });
                break;
            }
            scratch.push((freeblock, freeblock + size, u32::MAX - k));
            k += 1;
            if next != 0
                && next < freeblock + size + MIN_FREEBLOCK_SIZE as u32
                && next >= freeblock + size
            {
                // Adjacent freeblocks (a gap of under 4 bytes) are always merged by SQLite.
                errors.push(FormatError::BadPage {
                    detail: format!(
                        "page {pgno}: freeblocks at offsets {freeblock} and {next} are less than 4 bytes apart"
                    ),
                });
            }
            previous_end = freeblock + size;
            freeblock = next;
        }

        // Overlaps, and the bytes that neither cells nor freeblocks account
        // for. Most pages have no overlap: a bitmap of the content area says
        // so and counts the bytes covered without sorting the regions. Only
        // a page with overlaps sorts them, to name each overlapping pair.
        if let Some(covered) = covered_without_overlap(scratch, usable) {
            let gaps = u64::from(usable.saturating_sub(lowest)).saturating_sub(covered);
            if content_ok && regions_complete && gaps != u64::from(self.fragmented_bytes) {
                errors.push(FormatError::BadPage {
                    detail: format!(
                        "page {pgno}: {gaps} bytes of the content area are in no cell or freeblock, but the header counts {} fragmented bytes",
                        self.fragmented_bytes
                    ),
                });
            }
            return;
        }
        scratch.sort_unstable();
        let mut overlaps = false;
        let mut gaps: u64 = 0;
        let mut covered_to = lowest;
        let mut last: Option<Region> = None;
        for &(start, end, owner) in scratch.iter() {
            let region = Region { start, end, owner };
            if start < covered_to {
                if let Some(prev) = last.filter(|p| p.end > start) {
                    overlaps = true;
                    errors.push(FormatError::Overlap {
                        what: format!("page {pgno}: {} and {}", prev.describe(), region.describe()),
                    });
                }
            } else {
                gaps += u64::from(start - covered_to);
            }
            if end > covered_to {
                covered_to = end;
                last = Some(region);
            }
        }
        gaps += u64::from(usable.saturating_sub(covered_to));
        if content_ok && regions_complete && !overlaps && gaps != u64::from(self.fragmented_bytes) {
            errors.push(FormatError::BadPage {
                detail: format!(
                    "page {pgno}: {gaps} bytes of the content area are in no cell or freeblock, but the header counts {} fragmented bytes",
                    self.fragmented_bytes
                ),
            });
        }
    }
}

thread_local! {
    /// One bit per byte of a page, for [`covered_without_overlap`].
    static PAGE_BITS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The bytes the regions `(start, end, _)` (each within `0..usable`)
/// cover, or None when two of them overlap.
fn covered_without_overlap(regions: &[(u32, u32, u32)], usable: u32) -> Option<u64> {
    PAGE_BITS.with(|bits| {
        let mut bits = bits.borrow_mut();
        let words = (usable as usize).div_ceil(64);
        bits.clear();
        bits.resize(words, 0);
        let mut covered = 0u64;
        for &(start, end, _) in regions {
            if end <= start {
                continue;
            }
            covered += u64::from(end - start);
            let (first, last) = (start as usize / 64, (end as usize - 1) / 64);
            // the bits of the first and the last word the region covers
            let low = u64::MAX << (start % 64);
            let high = u64::MAX >> (63 - (end - 1) % 64);
            if last >= bits.len() {
                return None;
            }
            if first == last {
                let mask = low & high;
                if bits[first] & mask != 0 {
                    return None;
                }
                bits[first] |= mask;
                continue;
            }
            if bits[first] & low != 0 || bits[last] & high != 0 {
                return None;
            }
            bits[first] |= low;
            bits[last] |= high;
            for word in &mut bits[first + 1..last] {
                if *word != 0 {
                    return None;
                }
                *word = u64::MAX;
            }
        }
        Some(covered)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::varint::write_varint;

    #[test]
    fn covered_without_overlap_counts_bytes_and_finds_overlaps() {
        assert_eq!(covered_without_overlap(&[], 4096), Some(0));
        assert_eq!(
            covered_without_overlap(&[(100, 164, 0), (164, 170, 1), (4000, 4096, 2)], 4096),
            Some(64 + 6 + 96)
        );
        assert_eq!(covered_without_overlap(&[(0, 4096, 0)], 4096), Some(4096));
        assert_eq!(
            covered_without_overlap(&[(10, 20, 0), (19, 30, 1)], 4096),
            None
        );
        assert_eq!(
            covered_without_overlap(&[(10, 200, 0), (63, 64, 1)], 4096),
            None
        );
        assert_eq!(
            covered_without_overlap(&[(63, 64, 0), (64, 65, 1)], 4096),
            Some(2)
        );
        assert_eq!(
            covered_without_overlap(&[(63, 64, 0), (63, 64, 1)], 4096),
            None
        );
    }

    /// The bitmap agrees with a byte-by-byte count on seeded random
    /// regions: the bytes covered, or an overlap.
    #[test]
    fn covered_without_overlap_agrees_with_counting_bytes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(n)) as u32
        };
        for _ in 0..20_000 {
            let usable = 512 + next(3600);
            let regions: Vec<(u32, u32, u32)> = (0..next(12))
                .map(|k| {
                    let start = next(usable);
                    let len = [1, 4, 63, 64, 65, 130, 700][next(7) as usize].min(usable - start);
                    (start, start + next(len + 1), k)
                })
                .collect();
            let mut bytes = vec![0u8; usable as usize];
            let mut overlap = false;
            for &(start, end, _) in &regions {
                for b in &mut bytes[start as usize..end as usize] {
                    overlap |= *b != 0;
                    *b = 1;
                }
            }
            let want = (!overlap).then(|| bytes.iter().map(|&b| u64::from(b)).sum());
            assert_eq!(
                covered_without_overlap(&regions, usable),
                want,
                "{regions:?}"
            );
        }
    }

    #[test]
    fn page_type_try_from() {
        assert_eq!(PageType::try_from(2), Ok(PageType::InteriorIndex));
        assert_eq!(PageType::try_from(5), Ok(PageType::InteriorTable));
        assert_eq!(PageType::try_from(10), Ok(PageType::LeafIndex));
        assert_eq!(PageType::try_from(13), Ok(PageType::LeafTable));
        for b in [0u8, 1, 3, 4, 6, 12, 14, 255] {
            assert_eq!(
                PageType::try_from(b),
                Err(FormatError::BadPageType { byte: b })
            );
        }
        assert!(PageType::LeafTable.is_leaf() && PageType::LeafTable.is_table());
        assert!(!PageType::InteriorTable.is_leaf() && PageType::InteriorTable.is_table());
        assert!(PageType::LeafIndex.is_leaf() && !PageType::LeafIndex.is_table());
        assert!(!PageType::InteriorIndex.is_leaf() && !PageType::InteriorIndex.is_table());
        assert_eq!(PageType::LeafTable as u8, 13);
    }

    #[test]
    fn local_payload_sizes() {
        // U = 4096: X(table leaf) = 4061, X(index) = 1002, M = 489.
        let u = 4096;
        assert_eq!(local_payload_size(100, u, PageType::LeafTable), 100);
        assert_eq!(local_payload_size(4061, u, PageType::LeafTable), 4061);
        // P = 4062: K = 489 + (4062-489) % 4092 = 4062 > 4061, so M.
        assert_eq!(local_payload_size(4062, u, PageType::LeafTable), 489);
        // P = 5000: K = 489 + 4511 % 4092 = 908 <= 4061.
        assert_eq!(local_payload_size(5000, u, PageType::LeafTable), 908);
        assert_eq!(local_payload_size(1002, u, PageType::LeafIndex), 1002);
        assert_eq!(local_payload_size(1003, u, PageType::InteriorIndex), 489);
        // Huge sizes from corrupt varints do not overflow.
        let n = local_payload_size(u64::MAX, u, PageType::LeafTable);
        assert!((489..=4061).contains(&n));
    }

    /// Builds a 512-byte table leaf page with the given (rowid, payload) cells
    /// packed at the end of the page, as SQLite lays them out.
    fn leaf_page(cells: &[(i64, &[u8])]) -> Vec<u8> {
        let mut page = vec![0u8; 512];
        let mut top = 512usize;
        for (i, (rowid, payload)) in cells.iter().enumerate() {
            let mut cell = Vec::new();
            write_varint(payload.len() as u64, &mut cell);
            write_varint(*rowid as u64, &mut cell);
            cell.extend_from_slice(payload);
            while cell.len() < MIN_CELL_SIZE {
                cell.push(0);
            }
            top -= cell.len();
            page[top..top + cell.len()].copy_from_slice(&cell);
            let p = LEAF_HEADER_SIZE + 2 * i;
            page[p..p + 2].copy_from_slice(&(top as u16).to_be_bytes());
        }
        page[0] = 13;
        page[3..5].copy_from_slice(&(cells.len() as u16).to_be_bytes());
        page[5..7].copy_from_slice(&(top as u16).to_be_bytes());
        page
    }

    #[test]
    fn parses_a_leaf() {
        let page = leaf_page(&[(1, b"\x02\x0fa"), (7, b"\x02\x11bc")]);
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        assert_eq!(p.page_type(), PageType::LeafTable);
        assert_eq!(p.cell_count(), 2);
        assert_eq!(p.right_child(), None);
        assert!(p.check_layout().is_empty(), "{:?}", p.check_layout());
        match p.cell(1).unwrap() {
            Cell::TableLeaf { rowid, payload } => {
                assert_eq!(rowid, 7);
                assert_eq!(payload.local, b"\x02\x11bc");
                assert_eq!(payload.first_overflow, None);
            }
            c => panic!("{c:?}"),
        }
        assert!(p.cell(2).is_err());
        assert_eq!(p.table_leaf_rowid(0), Some(1));
    }

    #[test]
    fn overlapping_cells_are_found() {
        let mut page = leaf_page(&[(1, b"\x02\x0fa"), (7, b"\x02\x11bc")]);
        // Point cell 1 at cell 0's bytes plus one.
        let c0 = u16::from_be_bytes([page[8], page[9]]);
        page[10..12].copy_from_slice(&(c0 + 1).to_be_bytes());
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        let errors = p.check_layout();
        assert!(
            errors
                .iter()
                .any(|e| matches!(e, FormatError::Overlap { .. })),
            "{errors:?}"
        );
    }

    #[test]
    fn cell_past_the_page_end() {
        let mut page = leaf_page(&[(1, b"\x02\x0fa")]);
        page[8..10].copy_from_slice(&510u16.to_be_bytes());
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        assert!(!p.check_layout().is_empty());
        let mut page = leaf_page(&[(1, b"\x02\x0fa")]);
        page[8..10].copy_from_slice(&600u16.to_be_bytes());
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        assert!(matches!(p.cell(0), Err(FormatError::OutOfBounds { .. })));
    }

    #[test]
    fn fragment_count_must_match() {
        let mut page = leaf_page(&[(1, b"\x02\x0fa")]);
        page[FRAGMENTED_BYTES_OFFSET] = 2;
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        assert_eq!(p.check_layout().len(), 1);
        page[FRAGMENTED_BYTES_OFFSET] = 61;
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        assert_eq!(p.check_layout().len(), 2);
    }

    #[test]
    fn freeblock_chain() {
        // One cell at the end, a 10-byte freeblock before it, content starts at the freeblock.
        let mut page = leaf_page(&[(1, b"\x02\x0fa")]);
        let cell = u16::from_be_bytes([page[8], page[9]]);
        let fb = cell - 10;
        page[5..7].copy_from_slice(&fb.to_be_bytes());
        page[1..3].copy_from_slice(&fb.to_be_bytes());
        page[fb as usize + 2..fb as usize + 4].copy_from_slice(&10u16.to_be_bytes());
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        assert!(p.check_layout().is_empty(), "{:?}", p.check_layout());
        // A freeblock pointing back to itself is reported, not looped on.
        page[fb as usize..fb as usize + 2].copy_from_slice(&fb.to_be_bytes());
        let p = BtreePage::parse(&page, 2, 512).unwrap();
        assert!(!p.check_layout().is_empty());
    }

    #[test]
    fn cell_pointer_array_must_fit() {
        let mut page = leaf_page(&[]);
        page[3..5].copy_from_slice(&300u16.to_be_bytes());
        assert!(matches!(
            BtreePage::parse(&page, 2, 512),
            Err(FormatError::OutOfBounds { .. })
        ));
        page[0] = 1;
        assert_eq!(
            BtreePage::parse(&page, 2, 512).unwrap_err(),
            FormatError::BadPageType { byte: 1 }
        );
        assert!(BtreePage::parse(&page[..100], 2, 512).is_err());
    }

    #[test]
    fn overflowing_payload() {
        // 600-byte payload in a 512-byte page: X = 477, M = 39, K = 39 + 561 % 508 = 92.
        let mut page = vec![0u8; 512];
        let mut cell = Vec::new();
        write_varint(600, &mut cell);
        write_varint(5, &mut cell);
        cell.extend(std::iter::repeat_n(7u8, 92));
        cell.extend_from_slice(&9u32.to_be_bytes());
        let top = 512 - cell.len();
        page[top..].copy_from_slice(&cell);
        page[0] = 13;
        page[3..5].copy_from_slice(&1u16.to_be_bytes());
        page[5..7].copy_from_slice(&(top as u16).to_be_bytes());
        page[8..10].copy_from_slice(&(top as u16).to_be_bytes());
        let p = BtreePage::parse(&page, 3, 512).unwrap();
        assert!(p.check_layout().is_empty(), "{:?}", p.check_layout());
        let Cell::TableLeaf { rowid, payload } = p.cell(0).unwrap() else {
            panic!()
        };
        assert_eq!(rowid, 5);
        assert_eq!(payload.total_len, 600);
        assert_eq!(payload.local.len(), 92);
        assert_eq!(payload.first_overflow, Some(9));
    }

    #[test]
    fn fuzz_usable_size_below_the_minimum_is_refused() {
        // Found by `cargo fuzz run page`: an index leaf parsed with usable
        // size 86 reached local_payload_size, where M = ((U-12)*32/255)-23
        // is negative for U < 196 (a subtraction overflow).
        let page: [u8; 86] = [
            10, 2, 205, 0, 39, 1, 54, 48, 52, 52, 56, 52, 52, 56, 48, 54, 49, 48, 54, 48, 51, 53,
            84, 0, 0, 0, 0, 0, 0, 0, 0, 52, 52, 56, 52, 52, 56, 48, 54, 49, 48, 54, 48, 51, 53, 84,
            54, 55, 52, 48, 3, 129, 1, 54, 84, 54, 3, 48, 51, 53, 84, 1, 54, 48, 52, 52, 56, 52,
            52, 56, 48, 54, 49, 53, 54, 55, 52, 48, 3, 129, 20, 3, 45, 1, 54, 84,
        ];
        assert!(matches!(
            BtreePage::parse(&page, 2, 86),
            Err(FormatError::BadPage { .. })
        ));
        // The smallest usable size a valid database has is still accepted.
        let mut padded = page.to_vec();
        padded.resize(480, 0);
        let p = BtreePage::parse(&padded, 2, 480).unwrap();
        for i in 0..usize::from(p.cell_count()) {
            let _ = p.cell(i);
        }
        let _ = p.check_layout();
    }
}
