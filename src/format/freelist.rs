//! Freelist trunk pages and pointer-map (ptrmap) pages.
//!
//! Spec, sections "The Freelist" and "Pointer Map or Ptrmap Pages".
//!
//! The freelist is a chain of trunk pages starting at header offset 32; each
//! trunk holds the next trunk's number, a leaf count, and that many leaf page
//! numbers. Leaves hold no information.
//!
//! Auto-vacuum and incremental-vacuum databases (header offset 52 nonzero)
//! have ptrmap pages: page 2 is the first, and each ptrmap page holds 5-byte
//! entries (a type byte and a big-endian parent page number) for the
//! `usable_size / 5` pages that follow it; the next ptrmap page follows those.

use super::btree::{Damage, DamageKind, PageSet, PageSource};
use super::header::pending_byte_page;
use super::{FormatError, be_u32};

/// Offset of the next trunk page number in a freelist trunk page (0 = last trunk).
pub const TRUNK_NEXT_OFFSET: usize = 0;
/// Offset of the number of leaf page numbers in a trunk page.
pub const TRUNK_LEAF_COUNT_OFFSET: usize = 4;
/// Offset of the first leaf page number in a trunk page.
pub const TRUNK_LEAVES_OFFSET: usize = 8;
/// Size of a page number.
pub const PAGE_NUMBER_SIZE: usize = 4;

/// Size of one pointer-map entry: a type byte and a 4-byte parent page number.
pub const PTRMAP_ENTRY_SIZE: usize = 5;
/// Offset of the type byte within a ptrmap entry.
pub const PTRMAP_TYPE_OFFSET: usize = 0;
/// Offset of the parent page number within a ptrmap entry.
pub const PTRMAP_PARENT_OFFSET: usize = 1;
/// The first pointer-map page of an auto-vacuum database.
pub const FIRST_PTRMAP_PAGE: u32 = 2;

/// Most leaf numbers a trunk page can hold for a usable size: (U/4) - 2.
pub fn max_trunk_leaves(usable_size: u32) -> u32 {
    (usable_size / PAGE_NUMBER_SIZE as u32).saturating_sub(2)
}

/// A freelist trunk page, borrowing the page image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkPage<'a> {
    /// Next trunk page, 0 if this is the last.
    pub next_trunk: u32,
    /// Number of leaf page numbers on this trunk.
    pub leaf_count: u32,
    leaves: &'a [u8],
}

impl<'a> TrunkPage<'a> {
    /// Parses a trunk page; the leaf count must fit the usable size.
    pub fn parse(page: &'a [u8], usable_size: u32) -> Result<TrunkPage<'a>, FormatError> {
        let usable = page
            .get(..usable_size as usize)
            .ok_or(FormatError::Truncated {
                what: "freelist trunk page",
            })?;
        let (Some(next_trunk), Some(leaf_count)) = (
            be_u32(usable, TRUNK_NEXT_OFFSET),
            be_u32(usable, TRUNK_LEAF_COUNT_OFFSET),
        ) else {
            return Err(FormatError::Truncated {
                what: "freelist trunk page",
            });
        };
        let max = max_trunk_leaves(usable_size);
        if leaf_count > max {
            return Err(FormatError::BadFreelist {
                detail: format!(
                    "trunk page lists {leaf_count} leaves, more than the {max} that fit"
                ),
            });
        }
        let end = TRUNK_LEAVES_OFFSET + leaf_count as usize * PAGE_NUMBER_SIZE;
        Ok(TrunkPage {
            next_trunk,
            leaf_count,
            // ok: leaf_count <= U/4 - 2, so `end` <= U.
            leaves: usable.get(TRUNK_LEAVES_OFFSET..end).unwrap_or(&[]),
        })
    }

    /// The leaf page numbers, in the order stored.
    pub fn leaves(&self) -> impl Iterator<Item = u32> + 'a {
        self.leaves
            .chunks_exact(PAGE_NUMBER_SIZE)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// The pages of a freelist and what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreelistWalk {
    /// Trunk pages, in chain order.
    pub trunks: Vec<u32>,
    /// Leaf pages, in the order listed.
    pub leaves: Vec<u32>,
    /// Problems: unreadable or invalid trunks, page numbers out of range or
    /// listed twice (a cycle).
    pub damage: Vec<Damage>,
    /// The freelist size the database header states; compare with [`Self::page_count`].
    pub header_count: u32,
}

impl FreelistWalk {
    /// Pages found on the freelist (trunks and leaves).
    pub fn page_count(&self) -> usize {
        self.trunks.len() + self.leaves.len()
    }
}

/// Follows the freelist from `first_trunk`, guarded against cycles and page
/// numbers outside 1..=page_count; `expected_count` is the header's total.
pub fn walk_freelist(src: &dyn PageSource, first_trunk: u32, expected_count: u32) -> FreelistWalk {
    let page_count = src.page_count();
    let usable = src.usable_size();
    let mut walk = FreelistWalk::default();
    let mut seen = PageSet::new();
    // Marks `pgno` as seen; false if it is out of range or already seen.
    let mut claim = |pgno: u32| -> bool { pgno != 0 && pgno <= page_count && seen.insert(pgno) };
    let mut buf = Vec::new();
    let mut trunk = first_trunk;
    let mut parent = None;
    while trunk != 0 {
        if !claim(trunk) {
            walk.damage.push(Damage {
                pgno: trunk,
                parent,
                kind: DamageKind::BadChildPointer,
                detail: if trunk > page_count {
                    format!("freelist trunk page {trunk} is beyond the last page {page_count}")
                } else {
                    format!("freelist trunk page {trunk} is already in use (a cycle)")
                },
            });
            break;
        }
        walk.trunks.push(trunk);
        if let Err(e) = src.read_page(trunk, &mut buf) {
            walk.damage.push(Damage {
                pgno: trunk,
                parent,
                kind: DamageKind::PageUnreadable,
                detail: format!("freelist trunk page {trunk}: {e}"),
            });
            break;
        }
        let t = match TrunkPage::parse(&buf, usable) {
            Ok(t) => t,
            Err(e) => {
                walk.damage.push(Damage {
                    pgno: trunk,
                    parent,
                    kind: DamageKind::BadPageHeader,
                    detail: format!("freelist trunk page {trunk}: {e}"),
                });
                break;
            }
        };
        for (i, leaf) in t.leaves().enumerate() {
            if claim(leaf) {
                walk.leaves.push(leaf);
            } else {
                walk.damage.push(Damage {
                    pgno: leaf,
                    parent: Some(trunk),
                    kind: DamageKind::BadChildPointer,
                    detail: if leaf == 0 || leaf > page_count {
                        format!("freelist leaf {i} of trunk {trunk} is page {leaf}, outside 1..={page_count}")
                    } else {
                        format!("freelist leaf {i} of trunk {trunk} is page {leaf}, already listed")
                    },
                });
            }
        }
        parent = Some(trunk);
        trunk = t.next_trunk;
    }
    walk.header_count = expected_count;
    walk
}

/// What a page is, according to its pointer-map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PtrmapType {
    /// A b-tree root page (parent 0).
    RootPage = 1,
    /// A freelist page (parent 0).
    FreePage = 2,
    /// The first page of an overflow chain (parent = the b-tree page of the cell).
    Overflow1 = 3,
    /// A later page of an overflow chain (parent = the previous overflow page).
    Overflow2 = 4,
    /// A non-root b-tree page (parent = its parent b-tree page).
    Btree = 5,
}

impl TryFrom<u8> for PtrmapType {
    type Error = FormatError;

    fn try_from(byte: u8) -> Result<PtrmapType, FormatError> {
        match byte {
            1 => Ok(PtrmapType::RootPage),
            2 => Ok(PtrmapType::FreePage),
            3 => Ok(PtrmapType::Overflow1),
            4 => Ok(PtrmapType::Overflow2),
            5 => Ok(PtrmapType::Btree),
            _ => Err(FormatError::BadFreelist {
                detail: format!("pointer-map entry type {byte} is not 1..=5"),
            }),
        }
    }
}

/// One pointer-map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtrmapEntry {
    /// What the page is.
    pub kind: PtrmapType,
    /// Its parent page (0 for root and free pages).
    pub parent: u32,
}

/// Number of pages one ptrmap page describes: usable size / 5.
pub fn ptrmap_entries_per_page(usable_size: u32) -> u32 {
    usable_size / PTRMAP_ENTRY_SIZE as u32
}

/// The ptrmap page that covers `pgno` (`pgno` itself when it is a ptrmap
/// page); 0 for page 1, which no ptrmap page covers. Ptrmap pages are every
/// (U/5 + 1)-th page from page 2, moved one page on when one would fall on the
/// pending-byte page.
pub fn ptrmap_page_for(pgno: u32, usable_size: u32, page_size: u32) -> u32 {
    if pgno < FIRST_PTRMAP_PAGE {
        return 0;
    }
    let group = u64::from(ptrmap_entries_per_page(usable_size)) + 1;
    let index = u64::from(pgno - FIRST_PTRMAP_PAGE) / group;
    let mut map = index * group + u64::from(FIRST_PTRMAP_PAGE);
    if map == u64::from(pending_byte_page(page_size)) {
        map += 1;
    }
    map.min(u64::from(u32::MAX)) as u32
}

/// Whether `pgno` is a ptrmap page in an auto-vacuum database.
pub fn is_ptrmap_page(pgno: u32, usable_size: u32, page_size: u32) -> bool {
    pgno >= FIRST_PTRMAP_PAGE && ptrmap_page_for(pgno, usable_size, page_size) == pgno
}

/// Where `pgno`'s entry is: (ptrmap page, byte offset in it). `None` for page
/// 1, the ptrmap pages themselves and the pending-byte page.
pub fn ptrmap_entry_location(pgno: u32, usable_size: u32, page_size: u32) -> Option<(u32, usize)> {
    if pgno == pending_byte_page(page_size) {
        return None;
    }
    let map = ptrmap_page_for(pgno, usable_size, page_size);
    if map == 0 || pgno <= map {
        return None;
    }
    let offset = (pgno - map - 1) as usize * PTRMAP_ENTRY_SIZE;
    (offset + PTRMAP_ENTRY_SIZE <= usable_size as usize).then_some((map, offset))
}

/// Reads the ptrmap entry at `offset` of a ptrmap page.
pub fn parse_ptrmap_entry(page: &[u8], offset: usize) -> Result<PtrmapEntry, FormatError> {
    let kind = *page
        .get(offset + PTRMAP_TYPE_OFFSET)
        .ok_or(FormatError::Truncated {
            what: "pointer-map entry",
        })?;
    let parent = be_u32(page, offset + PTRMAP_PARENT_OFFSET).ok_or(FormatError::Truncated {
        what: "pointer-map entry",
    })?;
    Ok(PtrmapEntry {
        kind: PtrmapType::try_from(kind)?,
        parent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_page() {
        let mut page = vec![0u8; 512];
        page[0..4].copy_from_slice(&9u32.to_be_bytes());
        page[4..8].copy_from_slice(&2u32.to_be_bytes());
        page[8..12].copy_from_slice(&5u32.to_be_bytes());
        page[12..16].copy_from_slice(&6u32.to_be_bytes());
        let t = TrunkPage::parse(&page, 512).unwrap();
        assert_eq!(t.next_trunk, 9);
        assert_eq!(t.leaves().collect::<Vec<_>>(), vec![5, 6]);
        page[4..8].copy_from_slice(&126u32.to_be_bytes());
        assert_eq!(TrunkPage::parse(&page, 512).unwrap().leaves().count(), 126);
        page[4..8].copy_from_slice(&127u32.to_be_bytes());
        assert!(TrunkPage::parse(&page, 512).is_err());
        assert!(TrunkPage::parse(&page[..100], 512).is_err());
    }

    #[test]
    fn ptrmap_pages() {
        // U = 1024: 204 entries per ptrmap page, so ptrmap pages 2, 207, 412, ...
        let (u, p) = (1024, 1024);
        assert!(is_ptrmap_page(2, u, p));
        assert!(!is_ptrmap_page(3, u, p));
        assert!(is_ptrmap_page(207, u, p));
        assert!(is_ptrmap_page(412, u, p));
        assert!(!is_ptrmap_page(1, u, p));
        assert_eq!(ptrmap_entry_location(3, u, p), Some((2, 0)));
        assert_eq!(ptrmap_entry_location(206, u, p), Some((2, 203 * 5)));
        assert_eq!(ptrmap_entry_location(208, u, p), Some((207, 0)));
        assert_eq!(ptrmap_entry_location(207, u, p), None);
        assert_eq!(ptrmap_entry_location(1, u, p), None);
        // U = 4096: 819 per page; ptrmap pages 2, 822, 1642.
        assert!(is_ptrmap_page(822, 4096, 4096));
        assert!(is_ptrmap_page(1642, 4096, 4096));
    }

    #[test]
    fn ptrmap_entries() {
        let mut page = vec![0u8; 512];
        page[5] = 5;
        page[6..10].copy_from_slice(&17u32.to_be_bytes());
        assert_eq!(
            parse_ptrmap_entry(&page, 5).unwrap(),
            PtrmapEntry {
                kind: PtrmapType::Btree,
                parent: 17
            }
        );
        assert!(parse_ptrmap_entry(&page, 0).is_err());
        assert!(parse_ptrmap_entry(&page, 510).is_err());
        assert_eq!(PtrmapType::try_from(3), Ok(PtrmapType::Overflow1));
    }
}
