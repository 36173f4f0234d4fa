//! Every page's role, and the freelist and pointer-map pages that describe
//! the roles as SQLite would write them.
//!
//! Spec, sections "The Freelist", "Pointer Map or Ptrmap Pages" and "Cell
//! Payload Overflow Pages". In an auto_vacuum or incremental_vacuum
//! database every page but page 1, the pointer-map pages themselves and the
//! pending-byte page has a 5-byte pointer-map entry: a b-tree root (parent
//! 0), a free page (parent 0), the first page of an overflow chain (parent:
//! the b-tree page holding the cell), a later overflow page (parent: the
//! previous overflow page), or a non-root b-tree page (parent: its parent
//! page). [`page_roles`] computes those entries from the b-trees themselves;
//! [`ptrmap_images`] and [`freelist_images`] lay them out as page images.
//! Repair uses them to keep a work copy's pointer maps and freelist right
//! after it frees pages, and to rebuild damaged ones.

use super::be_u32;
use super::btree::{Damage, DamageKind, MAX_DEPTH, PageSet, PageSource};
use super::freelist::{
    PAGE_NUMBER_SIZE, PTRMAP_ENTRY_SIZE, PtrmapEntry, PtrmapType, TRUNK_LEAF_COUNT_OFFSET,
    TRUNK_LEAVES_OFFSET, TRUNK_NEXT_OFFSET, is_ptrmap_page, parse_ptrmap_entry,
    ptrmap_entry_location,
};
use super::header::pending_byte_page;
use super::page::{BtreePage, OVERFLOW_NEXT_OFFSET};

/// Leaves SQLite puts on one freelist trunk when it frees pages: U/4 - 8
/// (a trunk could hold U/4 - 2, but SQLite keeps 6 slots spare for
/// compatibility with old versions, and so does custodian).
pub fn trunk_leaves_written(usable_size: u32) -> usize {
    ((usable_size as usize) / PAGE_NUMBER_SIZE)
        .saturating_sub(8)
        .max(1)
}

/// The role of every page reached from a set of b-tree roots: its
/// pointer-map entry, by page number.
#[derive(Debug, Clone, Default)]
pub struct PageRoles {
    /// `roles[pgno]`; index 0 is unused.
    roles: Vec<Option<PtrmapEntry>>,
    /// What kept a tree from being walked whole (a page out of range, read
    /// twice, not a b-tree page, an overflow chain cut short). Roles computed
    /// from a damaged tree must not be written.
    pub damage: Vec<Damage>,
}

impl PageRoles {
    /// The pointer-map entry of `pgno`, if a tree reached it.
    pub fn get(&self, pgno: u32) -> Option<PtrmapEntry> {
        self.roles.get(pgno as usize).copied().flatten()
    }

    /// Whether some tree uses `pgno`.
    pub fn is_used(&self, pgno: u32) -> bool {
        self.get(pgno).is_some()
    }

    fn set(&mut self, pgno: u32, kind: PtrmapType, parent: u32) {
        if let Some(slot) = self.roles.get_mut(pgno as usize) {
            *slot = Some(PtrmapEntry { kind, parent });
        }
    }

    /// Marks `pages` as free pages (trunks and leaves alike).
    pub fn mark_free(&mut self, pages: &[u32]) {
        for &p in pages {
            self.set(p, PtrmapType::FreePage, 0);
        }
    }

    /// Pages 2..=page_count that no tree uses and that are neither a
    /// pointer-map page (when `auto_vacuum`) nor the pending-byte page:
    /// what belongs on the freelist.
    pub fn unused(&self, page_size: u32, usable_size: u32, auto_vacuum: bool) -> Vec<u32> {
        let pending = pending_byte_page(page_size);
        (2..self.roles.len() as u32)
            .filter(|&p| {
                self.get(p).is_none()
                    && p != pending
                    && !(auto_vacuum && is_ptrmap_page(p, usable_size, page_size))
            })
            .collect()
    }
}

/// Walks every b-tree from `roots` (page 1, the schema table, is always
/// included) and records each page's role. Guarded like the other walks:
/// a page reached twice, out of range, of the wrong kind or deeper than
/// [`MAX_DEPTH`] is damage, never a loop or a panic.
pub fn page_roles(src: &dyn PageSource, roots: &[u32]) -> PageRoles {
    let n = src.page_count();
    let mut w = RoleWalk {
        src,
        usable: src.usable_size(),
        page_count: n,
        seen: PageSet::new(),
        out: PageRoles {
            roles: vec![None; n as usize + 1],
            damage: Vec::new(),
        },
        buf: Vec::new(),
    };
    let mut all: Vec<u32> = std::iter::once(1).chain(roots.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    for root in all {
        w.tree(root);
    }
    w.out
}

struct RoleWalk<'s> {
    src: &'s dyn PageSource,
    usable: u32,
    page_count: u32,
    seen: PageSet,
    out: PageRoles,
    buf: Vec<u8>,
}

impl RoleWalk<'_> {
    fn damage(&mut self, pgno: u32, parent: Option<u32>, kind: DamageKind, detail: String) {
        self.out.damage.push(Damage {
            pgno,
            parent,
            kind,
            detail,
        });
    }

    /// Claims `pgno` for a role; false (with damage) when it cannot be.
    fn claim(&mut self, pgno: u32, parent: Option<u32>, what: &str) -> bool {
        if pgno == 0 || pgno > self.page_count {
            self.damage(
                pgno,
                parent,
                DamageKind::BadChildPointer,
                format!("{what} is page {pgno}, outside 1..={}", self.page_count),
            );
            return false;
        }
        if !self.seen.insert(pgno) {
            self.damage(
                pgno,
                parent,
                DamageKind::BadChildPointer,
                format!("{what} is page {pgno}, which is already in use"),
            );
            return false;
        }
        true
    }

    fn tree(&mut self, root: u32) {
        if !self.claim(root, None, "a root") {
            return;
        }
        self.out.set(root, PtrmapType::RootPage, 0);
        // (page, parent, depth); children are claimed when popped
        let mut stack = vec![(root, 0u32, 0u32)];
        while let Some((pgno, parent, depth)) = stack.pop() {
            if pgno != root {
                if !self.claim(pgno, Some(parent), &format!("a child of page {parent}")) {
                    continue;
                }
                self.out.set(pgno, PtrmapType::Btree, parent);
            }
            if depth > MAX_DEPTH {
                self.damage(
                    pgno,
                    Some(parent),
                    DamageKind::TooDeep,
                    format!("page {pgno} is deeper than {MAX_DEPTH}"),
                );
                continue;
            }
            let mut buf = std::mem::take(&mut self.buf);
            if let Err(e) = self.src.read_page(pgno, &mut buf) {
                self.damage(
                    pgno,
                    Some(parent),
                    DamageKind::PageUnreadable,
                    format!("page {pgno}: {e}"),
                );
                self.buf = buf;
                continue;
            }
            let children = self.cells(&buf, pgno, parent);
            self.buf = buf;
            stack.extend(children.into_iter().rev().map(|c| (c, pgno, depth + 1)));
        }
    }

    /// The children of one b-tree page; its cells' overflow chains are
    /// claimed on the way.
    fn cells(&mut self, buf: &[u8], pgno: u32, parent: u32) -> Vec<u32> {
        let page = match BtreePage::parse(buf, pgno, self.usable) {
            Ok(p) => p,
            Err(e) => {
                self.damage(
                    pgno,
                    Some(parent),
                    DamageKind::BadPageHeader,
                    format!("page {pgno}: {e}"),
                );
                return Vec::new();
            }
        };
        let mut children = Vec::new();
        let mut chains = Vec::new();
        for i in 0..usize::from(page.cell_count()) {
            match page.cell(i) {
                Ok(cell) => {
                    if let Some(c) = cell.left_child() {
                        children.push(c);
                    }
                    if let Some(p) = cell.payload()
                        && let Some(first) = p.first_overflow
                    {
                        let spilled = p.total_len.saturating_sub(p.local.len() as u64);
                        chains.push((first, spilled));
                    }
                }
                Err(e) => self.damage(
                    pgno,
                    Some(parent),
                    DamageKind::CellOutOfBounds,
                    format!("page {pgno}: {e}"),
                ),
            }
        }
        if let Some(r) = page.right_child() {
            children.push(r);
        }
        for (first, spilled) in chains {
            self.chain(pgno, first, spilled);
        }
        children
    }

    /// Claims the overflow chain holding `spilled` bytes, from `first`.
    fn chain(&mut self, owner: u32, first: u32, spilled: u64) {
        let per_page = u64::from(self.usable.saturating_sub(4)).max(1);
        let pages = spilled.div_ceil(per_page);
        let mut prev = owner;
        let mut next = first;
        let mut buf = std::mem::take(&mut self.buf);
        for k in 0..pages {
            let what = format!("overflow page {} of a cell on page {owner}", k + 1);
            if !self.claim(next, Some(prev), &what) {
                break;
            }
            let kind = if k == 0 {
                PtrmapType::Overflow1
            } else {
                PtrmapType::Overflow2
            };
            self.out.set(next, kind, prev);
            if k + 1 == pages {
                break;
            }
            if let Err(e) = self.src.read_page(next, &mut buf) {
                self.damage(
                    next,
                    Some(prev),
                    DamageKind::OverflowChainBroken,
                    format!("overflow page {next}: {e}"),
                );
                break;
            }
            prev = next;
            next = be_u32(&buf, OVERFLOW_NEXT_OFFSET).unwrap_or(0);
        }
        self.buf = buf;
    }
}

/// A page whose pointer-map entry is not the one its role calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrmapMismatch {
    /// The page described.
    pub pgno: u32,
    /// The pointer-map page holding its entry.
    pub map: u32,
    /// The entry its role calls for.
    pub expected: PtrmapEntry,
    /// The entry stored; `None` when it is not a valid entry (or the
    /// pointer-map page cannot be read).
    pub found: Option<PtrmapEntry>,
}

/// Every page with a role (free pages marked) whose pointer-map entry in
/// `src` differs from it, in page order. Pages without a role are not
/// compared: they are unused pages, which page accounting reports.
pub fn ptrmap_mismatches(src: &dyn PageSource, roles: &PageRoles) -> Vec<PtrmapMismatch> {
    let (page_size, usable) = (src.page_size(), src.usable_size());
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut loaded: Option<(u32, bool)> = None;
    for pgno in 2..=src
        .page_count()
        .min(roles.roles.len().saturating_sub(1) as u32)
    {
        let Some(expected) = roles.get(pgno) else {
            continue;
        };
        let Some((map, offset)) = ptrmap_entry_location(pgno, usable, page_size) else {
            continue;
        };
        if loaded.map(|(m, _)| m) != Some(map) {
            loaded = Some((map, src.read_page(map, &mut buf).is_ok()));
        }
        let readable = loaded.is_some_and(|(_, ok)| ok);
        let found = if readable {
            parse_ptrmap_entry(&buf, offset).ok()
        } else {
            None
        };
        if found != Some(expected) {
            out.push(PtrmapMismatch {
                pgno,
                map,
                expected,
                found,
            });
        }
    }
    out
}

/// What the pages say of pointer maps, whatever the header's largest root
/// page (offset 52, SQLite's only sign of auto-vacuum) says: `Some(false)`
/// when a b-tree uses a page where a pointer map would have to be and that
/// page reads as a b-tree page; `Some(true)` when page 2, where an
/// auto-vacuum file's first pointer-map page must be, is used by no b-tree
/// and its entries say what their pages are (more agree with `roles` than
/// not, at least one); `None` when the pages do not tell (page 2 zeroed,
/// free, missing): the header decides. `roles` from [`page_roles`], free
/// pages marked or not.
pub fn pointer_maps_shown(src: &dyn PageSource, roles: &PageRoles) -> Option<bool> {
    const PAGE2: u32 = super::freelist::FIRST_PTRMAP_PAGE;
    let (page_size, usable) = (src.page_size(), src.usable_size());
    let n = src.page_count();
    let mut buf = Vec::new();
    let mut map = PAGE2;
    while map <= n {
        let in_tree = matches!(
            roles.get(map).map(|e| e.kind),
            Some(PtrmapType::RootPage | PtrmapType::Btree)
        );
        if in_tree
            && src.read_page(map, &mut buf).is_ok()
            && BtreePage::parse(&buf, map, usable).is_ok_and(|p| p.check_layout().is_empty())
        {
            return Some(false);
        }
        let next = u64::from(map) + u64::from(super::freelist::ptrmap_entries_per_page(usable)) + 1;
        match u32::try_from(next).map(|p| super::freelist::ptrmap_page_for(p, usable, page_size)) {
            Ok(p) if p > map => map = p,
            _ => break,
        }
    }
    if n < PAGE2 || roles.is_used(PAGE2) {
        return None;
    }
    src.read_page(PAGE2, &mut buf).ok()?;
    let (mut agree, mut disagree) = (0u32, 0u32);
    for pgno in PAGE2 + 1..=n {
        let Some((map, offset)) = ptrmap_entry_location(pgno, usable, page_size) else {
            continue;
        };
        if map != PAGE2 {
            break;
        }
        let Some(expected) = roles.get(pgno) else {
            continue;
        };
        if parse_ptrmap_entry(&buf, offset).ok() == Some(expected) {
            agree += 1;
        } else {
            disagree += 1;
        }
    }
    (agree > 0 && agree > disagree).then_some(true)
}

/// The pointer-map pages of a database of `page_count` pages whose roles
/// are `roles` (free pages marked with [`PageRoles::mark_free`]): one image
/// per pointer-map page, every entry of a page without a role left zero.
pub fn ptrmap_images(
    roles: &PageRoles,
    page_count: u32,
    page_size: u32,
    usable_size: u32,
) -> Vec<(u32, Vec<u8>)> {
    let mut images: Vec<(u32, Vec<u8>)> = Vec::new();
    for pgno in 2..=page_count {
        if is_ptrmap_page(pgno, usable_size, page_size) {
            images.push((pgno, vec![0u8; page_size as usize]));
            continue;
        }
        let Some((map, offset)) = ptrmap_entry_location(pgno, usable_size, page_size) else {
            continue;
        };
        let Some(entry) = roles.get(pgno) else {
            continue;
        };
        // ok: pointer-map pages come before the pages they describe, so the
        // image of `map` was pushed when the loop passed it.
        if let Some((_, img)) = images.iter_mut().rev().find(|(p, _)| *p == map) {
            img[offset] = entry.kind as u8;
            img[offset + 1..offset + PTRMAP_ENTRY_SIZE]
                .copy_from_slice(&entry.parent.to_be_bytes());
        }
    }
    images
}

/// A freelist holding `pages`: (first trunk, the trunk page images). The
/// first page of every run of [`trunk_leaves_written`] + 1 pages is a
/// trunk listing the rest as leaves; the trunks chain in order. The leaves'
/// own bytes do not matter to SQLite and are not written. `(0, [])` for no
/// pages.
pub fn freelist_images(
    pages: &[u32],
    page_size: u32,
    usable_size: u32,
) -> (u32, Vec<(u32, Vec<u8>)>) {
    let per_trunk = trunk_leaves_written(usable_size);
    let chunks: Vec<&[u32]> = pages.chunks(per_trunk + 1).collect();
    let mut images = Vec::with_capacity(chunks.len());
    for (k, chunk) in chunks.iter().enumerate() {
        let next = chunks.get(k + 1).map_or(0, |c| c[0]);
        let mut img = vec![0u8; page_size as usize];
        img[TRUNK_NEXT_OFFSET..TRUNK_NEXT_OFFSET + 4].copy_from_slice(&next.to_be_bytes());
        let leaves = &chunk[1..];
        img[TRUNK_LEAF_COUNT_OFFSET..TRUNK_LEAF_COUNT_OFFSET + 4]
            .copy_from_slice(&(leaves.len() as u32).to_be_bytes());
        for (i, l) in leaves.iter().enumerate() {
            let at = TRUNK_LEAVES_OFFSET + i * PAGE_NUMBER_SIZE;
            img[at..at + PAGE_NUMBER_SIZE].copy_from_slice(&l.to_be_bytes());
        }
        images.push((chunk[0], img));
    }
    (pages.first().copied().unwrap_or(0), images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::btree::MemoryPages;
    use crate::format::btree::test_image::{image, interior_cell, leaf_cell, put_page};
    use crate::format::freelist::{TrunkPage, walk_freelist};

    #[test]
    fn roles_of_a_two_level_table() {
        // page 1: schema leaf (empty); page 2: interior root of a table with
        // leaves 3 and 4.
        let mut img = image(4);
        put_page(&mut img, 1, 0x0d, &[], None);
        put_page(&mut img, 2, 0x05, &[interior_cell(3, 10)], Some(4));
        put_page(&mut img, 3, 0x0d, &[leaf_cell(1, b"\x02\x01\x07")], None);
        put_page(&mut img, 4, 0x0d, &[leaf_cell(11, b"\x02\x01\x08")], None);
        let src = MemoryPages::new(img).unwrap();
        let roles = page_roles(&src, &[2]);
        assert!(roles.damage.is_empty(), "{:?}", roles.damage);
        let e = |k, p| Some(PtrmapEntry { kind: k, parent: p });
        assert_eq!(roles.get(1), e(PtrmapType::RootPage, 0));
        assert_eq!(roles.get(2), e(PtrmapType::RootPage, 0));
        assert_eq!(roles.get(3), e(PtrmapType::Btree, 2));
        assert_eq!(roles.get(4), e(PtrmapType::Btree, 2));
        assert_eq!(roles.unused(512, 512, false), Vec::<u32>::new());
    }

    /// An auto-vacuum image: page 2 a pointer map, page 3 the root of a
    /// table with leaves 4 and 5.
    fn with_pointer_map() -> Vec<u8> {
        use crate::format::btree::test_image::PS;
        let mut img = image(5);
        put_page(&mut img, 1, 0x0d, &[], None);
        put_page(&mut img, 3, 0x05, &[interior_cell(4, 10)], Some(5));
        put_page(&mut img, 4, 0x0d, &[leaf_cell(1, b"\x02\x01\x07")], None);
        put_page(&mut img, 5, 0x0d, &[leaf_cell(11, b"\x02\x01\x08")], None);
        let map = PS;
        img[map..map + 15].copy_from_slice(&[1, 0, 0, 0, 0, 5, 0, 0, 0, 3, 5, 0, 0, 0, 3]);
        img
    }

    #[test]
    fn the_pages_tell_whether_pointer_maps_are_there() {
        use crate::format::btree::test_image::PS;
        // a pointer map at page 2 that agrees with the trees
        let img = with_pointer_map();
        let src = MemoryPages::new(img.clone()).unwrap();
        assert_eq!(
            pointer_maps_shown(&src, &page_roles(&src, &[3])),
            Some(true)
        );
        // one entry wrong of three: still the map
        let mut one_wrong = img.clone();
        one_wrong[PS + 5..PS + 10].copy_from_slice(&[5, 0, 0, 0, 9]);
        let src = MemoryPages::new(one_wrong).unwrap();
        assert_eq!(
            pointer_maps_shown(&src, &page_roles(&src, &[3])),
            Some(true)
        );
        // page 2 zeroed: the pages do not tell
        let mut zeroed = img.clone();
        zeroed[PS..2 * PS].fill(0);
        let src = MemoryPages::new(zeroed).unwrap();
        assert_eq!(pointer_maps_shown(&src, &page_roles(&src, &[3])), None);
        // page 2 a table's root: no pointer maps
        let mut tree = image(3);
        put_page(&mut tree, 1, 0x0d, &[], None);
        put_page(&mut tree, 2, 0x0d, &[leaf_cell(1, b"\x02\x01\x07")], None);
        let src = MemoryPages::new(tree).unwrap();
        assert_eq!(
            pointer_maps_shown(&src, &page_roles(&src, &[2])),
            Some(false)
        );
    }

    #[test]
    fn a_page_reached_twice_or_out_of_range_is_damage() {
        let mut img = image(3);
        put_page(&mut img, 1, 0x0d, &[], None);
        put_page(
            &mut img,
            2,
            0x05,
            &[interior_cell(3, 10), interior_cell(3, 20)],
            Some(9),
        );
        put_page(&mut img, 3, 0x0d, &[], None);
        let src = MemoryPages::new(img).unwrap();
        let roles = page_roles(&src, &[2]);
        assert_eq!(roles.damage.len(), 2, "{:?}", roles.damage);
        assert!(roles.damage.iter().any(|d| d.pgno == 9));
        assert!(roles.damage.iter().any(|d| d.pgno == 3));
    }

    #[test]
    fn ptrmap_images_place_each_entry() {
        // usable 512: a pointer-map page describes 102 pages; pages 2 and 105
        // are pointer maps.
        let mut roles = PageRoles {
            roles: vec![None; 110],
            damage: Vec::new(),
        };
        roles.set(3, PtrmapType::RootPage, 0);
        roles.set(4, PtrmapType::Btree, 3);
        roles.set(106, PtrmapType::Overflow1, 4);
        roles.mark_free(&[5]);
        let imgs = ptrmap_images(&roles, 109, 512, 512);
        assert_eq!(imgs.iter().map(|i| i.0).collect::<Vec<_>>(), vec![2, 105]);
        let at = |img: &[u8], off| parse_ptrmap_entry(img, off).unwrap();
        assert_eq!(
            at(&imgs[0].1, 0),
            PtrmapEntry {
                kind: PtrmapType::RootPage,
                parent: 0
            }
        );
        assert_eq!(
            at(&imgs[0].1, 5),
            PtrmapEntry {
                kind: PtrmapType::Btree,
                parent: 3
            }
        );
        assert_eq!(
            at(&imgs[0].1, 10),
            PtrmapEntry {
                kind: PtrmapType::FreePage,
                parent: 0
            }
        );
        assert_eq!(
            at(&imgs[1].1, 0),
            PtrmapEntry {
                kind: PtrmapType::Overflow1,
                parent: 4
            }
        );
        assert_eq!(imgs[0].1[15], 0, "page 6 has no role: left zero");
    }

    #[test]
    fn mismatches_name_each_wrong_entry() {
        // page 1 schema leaf, page 2 pointer map, page 3 a table root with
        // leaf 4 under it, page 5 free.
        let mut img = image(5);
        put_page(&mut img, 1, 0x0d, &[], None);
        put_page(&mut img, 3, 0x05, &[], Some(4));
        put_page(&mut img, 4, 0x0d, &[], None);
        let mut roles = page_roles(&MemoryPages::new(img.clone()).unwrap(), &[3]);
        roles.mark_free(&[5]);
        for (p, map) in ptrmap_images(&roles, 5, 512, 512) {
            let at = (p as usize - 1) * 512;
            img[at..at + 512].copy_from_slice(&map);
        }
        let src = MemoryPages::new(img.clone()).unwrap();
        assert_eq!(ptrmap_mismatches(&src, &roles), Vec::new());
        // page 4's entry says parent 9; page 5's type byte is invalid
        img[512 + 5 + 1..512 + 5 + 5].copy_from_slice(&9u32.to_be_bytes());
        img[512 + 10] = 7;
        let src = MemoryPages::new(img).unwrap();
        let m = ptrmap_mismatches(&src, &roles);
        assert_eq!(m.iter().map(|x| x.pgno).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(
            m[0].found,
            Some(PtrmapEntry {
                kind: PtrmapType::Btree,
                parent: 9
            })
        );
        assert_eq!(
            m[0].expected,
            PtrmapEntry {
                kind: PtrmapType::Btree,
                parent: 3
            }
        );
        assert_eq!(m[1].found, None);
    }

    #[test]
    fn freelist_images_chain_trunks_and_list_leaves() {
        // usable 512: 120 leaves per trunk
        let pages: Vec<u32> = (10..260).collect();
        let (first, imgs) = freelist_images(&pages, 512, 512);
        assert_eq!(first, 10);
        assert_eq!(
            imgs.iter().map(|i| i.0).collect::<Vec<_>>(),
            vec![10, 131, 252]
        );
        let t = TrunkPage::parse(&imgs[0].1, 512).unwrap();
        assert_eq!(t.next_trunk, 131);
        assert_eq!(
            t.leaves().collect::<Vec<_>>(),
            (11..131).collect::<Vec<_>>()
        );
        let last = TrunkPage::parse(&imgs[2].1, 512).unwrap();
        assert_eq!((last.next_trunk, last.leaf_count), (0, 7));
        // read back by the freelist walker, as a whole file
        let mut img = image(260);
        for (p, page) in &imgs {
            let at = (*p as usize - 1) * 512;
            img[at..at + 512].copy_from_slice(page);
        }
        let src = MemoryPages::new(img).unwrap();
        let walk = walk_freelist(&src, first, 250);
        assert!(walk.damage.is_empty());
        assert_eq!(walk.page_count(), 250);
        assert_eq!(freelist_images(&[], 512, 512), (0, Vec::new()));
    }
}
