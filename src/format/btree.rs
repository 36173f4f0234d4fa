//! Guarded walks over whole b-trees.
//!
//! Spec, sections "B-tree Pages" and "Cell Payload Overflow Pages". A table
//! b-tree holds rows by rowid: interior cells carry divider rowids (every
//! rowid in a cell's left child is <= its divider, every rowid after it is
//! greater) and the rows live in the leaves. An index b-tree holds records in
//! key order; interior cells are entries too, ordered between their left
//! child's subtree and the next cell's.
//!
//! The walks here never panic and never loop: every child and overflow page
//! is claimed in a visited bitset (a page reached twice is a cycle or a
//! cross-link), page numbers outside `1..=page_count` are refused, and the
//! depth is limited to [`MAX_DEPTH`]. Damage is reported as it is found, once
//! per page and problem, and the walk carries on with the next sibling.

use super::FormatError;
use super::header::TextEncoding;
use super::page::{BtreePage, Cell, OVERFLOW_DATA_OFFSET, OVERFLOW_NEXT_OFFSET, Payload};

/// Deepest level a walk descends to (the root is level 0). SQLite's own
/// cursors cannot go deeper (its BTCURSOR_MAX_DEPTH is 20), so a deeper tree
/// is unreadable to SQLite too.
pub const MAX_DEPTH: u32 = 19;

/// Where a walk gets page images from: the pager, or an in-memory image in tests.
pub trait PageSource {
    /// Page size in bytes.
    fn page_size(&self) -> u32;
    /// Usable bytes per page (page size minus reserved bytes).
    fn usable_size(&self) -> u32;
    /// Number of pages in the database; valid page numbers are `1..=page_count`.
    fn page_count(&self) -> u32;
    /// The database's text encoding.
    fn text_encoding(&self) -> TextEncoding;
    /// The page image (page_size bytes). Err(FormatError) when it cannot be read (beyond end of file, truncated...).
    fn read_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), FormatError>;
}

/// What kind of damage a walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DamageKind {
    /// The page could not be read (beyond the end of the file, I/O error).
    PageUnreadable,
    /// The page is not a b-tree page, or its header / free-space bookkeeping is invalid.
    BadPageHeader,
    /// A b-tree page of the wrong kind for its place (a table page in an index
    /// tree, or a leaf at a different depth than the other leaves).
    WrongPageType,
    /// A cell lies (partly) outside the cell content area or the usable size.
    CellOutOfBounds,
    /// Two cells, or a cell and a freeblock, share bytes.
    CellOverlap,
    /// A child pointer is 0, beyond the last page, or to a page already
    /// reached in this walk (a cycle or a page shared by two parents).
    BadChildPointer,
    /// The tree is deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A record that cannot be decoded (for callers that decode payloads; the
    /// walks themselves do not).
    BadRecord,
    /// An overflow chain is cut short, loops, leaves the file, or runs on past its payload.
    OverflowChainBroken,
    /// Table rowids not ascending, or outside the bounds set by the parent's dividers.
    KeyOrder,
}

/// One problem found by a walk.
///
/// `pgno` is the page the problem is at: the page pointed to for
/// `BadChildPointer`, `PageUnreadable` and `TooDeep` (as found, so possibly 0
/// or beyond the file); the b-tree page holding the cell for
/// `OverflowChainBroken` (the detail names the overflow page); the page
/// itself otherwise. `parent` is the b-tree page whose pointer led to `pgno`
/// (`None` for the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The page the problem is at.
    pub pgno: u32,
    /// The b-tree page that points to `pgno`, `None` for the root.
    pub parent: Option<u32>,
    /// What kind of problem.
    pub kind: DamageKind,
    /// A one-line description, e.g. "cell 3 of page 7 ... is out of bounds".
    pub detail: String,
}

/// What a table walk yields, in rowid order.
#[derive(Debug, Clone, PartialEq)]
pub enum TableItem<'a> {
    /// A whole row: `payload` is the complete record (overflow assembled).
    Row {
        /// The row's rowid.
        rowid: i64,
        /// The complete record; borrowed until the visitor returns.
        payload: &'a [u8],
        /// The leaf page holding the row's cell.
        pgno: u32,
    },
    /// A row whose rowid is known but whose record is not whole (its cell runs
    /// off the page or its overflow chain is broken); a `Damage` saying why
    /// comes before it.
    RowDamaged {
        /// The row's rowid.
        rowid: i64,
        /// The leaf page holding the row's cell.
        pgno: u32,
    },
    /// A problem; the walk goes on.
    Damage(Damage),
}

/// What an index walk yields, in key order.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexItem<'a> {
    /// An index entry: `payload` is the complete record (overflow assembled).
    Entry {
        /// The complete record; borrowed until the visitor returns.
        payload: &'a [u8],
        /// The page holding the entry's cell.
        pgno: u32,
        /// Whether the cell is on an interior page.
        interior: bool,
    },
    /// A problem; the walk goes on.
    Damage(Damage),
}

/// What a walk covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// B-tree pages read and parsed.
    pub pages_visited: u32,
    /// Every page this tree claims, in visit order: its b-tree pages (also
    /// those that turned out unreadable or invalid) and its overflow pages.
    /// Each appears once; all are in `1..=page_count`.
    pub pages: Vec<u32>,
    /// How many of `pages` are overflow pages.
    pub overflow_pages: u32,
    /// Rows (table) or entries (index) yielded whole.
    pub cells: u64,
    /// Number of `Damage` items yielded.
    pub damage: u32,
    /// Deepest level reached (the root is 0).
    pub depth: u32,
}

/// Walks the table b-tree rooted at `root`, yielding rows in tree (rowid) order.
pub fn walk_table(
    src: &dyn PageSource,
    root: u32,
    visit: &mut dyn FnMut(TableItem<'_>),
) -> WalkStats {
    let mut w = Walker::new(src);
    w.table_page(root, None, 0, None, None, visit);
    w.stats
}

/// Walks the index b-tree rooted at `root`, yielding entries in key order.
pub fn walk_index(
    src: &dyn PageSource,
    root: u32,
    visit: &mut dyn FnMut(IndexItem<'_>),
) -> WalkStats {
    let mut w = Walker::new(src);
    w.index_page(root, None, 0, visit);
    w.stats
}

/// Pages per chunk of a [`PageSet`] (a chunk is 4 KiB of bits).
const PAGESET_CHUNK_PAGES: usize = 32768;

/// A set of page numbers: a bitset allocated in 4 KiB chunks as pages are
/// added, so a header claiming billions of pages costs nothing until pages
/// that far out are actually reached.
#[derive(Debug, Clone, Default)]
pub struct PageSet {
    chunks: Vec<Option<Box<[u64]>>>,
    len: usize,
}

impl PageSet {
    /// An empty set.
    pub fn new() -> PageSet {
        PageSet::default()
    }

    /// Adds `pgno`; false if it was already present.
    #[inline]
    pub fn insert(&mut self, pgno: u32) -> bool {
        let (c, bit) = (
            pgno as usize / PAGESET_CHUNK_PAGES,
            pgno as usize % PAGESET_CHUNK_PAGES,
        );
        if c >= self.chunks.len() {
            self.chunks.resize(c + 1, None);
        }
        let chunk = self.chunks[c]
            .get_or_insert_with(|| vec![0u64; PAGESET_CHUNK_PAGES / 64].into_boxed_slice());
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if chunk[word] & mask != 0 {
            return false;
        }
        chunk[word] |= mask;
        self.len += 1;
        true
    }

    /// Whether `pgno` is in the set.
    #[inline]
    pub fn contains(&self, pgno: u32) -> bool {
        let (c, bit) = (
            pgno as usize / PAGESET_CHUNK_PAGES,
            pgno as usize % PAGESET_CHUNK_PAGES,
        );
        match self.chunks.get(c) {
            Some(Some(chunk)) => chunk[bit / 64] & (1u64 << (bit % 64)) != 0,
            _ => false,
        }
    }

    /// Number of pages in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How many layout problems of one page are spelled out in its `Damage`.
const LAYOUT_PROBLEMS_SHOWN: usize = 3;

/// The damage kind and one-line detail for a page whose layout check failed
/// (`errors` not empty): overlap first, then out of bounds, else the header.
pub(crate) fn layout_damage(errors: &[FormatError]) -> (DamageKind, String) {
    let kind = if errors
        .iter()
        .any(|e| matches!(e, FormatError::Overlap { .. }))
    {
        DamageKind::CellOverlap
    } else if errors
        .iter()
        .any(|e| matches!(e, FormatError::OutOfBounds { .. }))
    {
        DamageKind::CellOutOfBounds
    } else {
        DamageKind::BadPageHeader
    };
    let mut detail = errors
        .iter()
        .take(LAYOUT_PROBLEMS_SHOWN)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > LAYOUT_PROBLEMS_SHOWN {
        detail.push_str(&format!(
            "; and {} more",
            errors.len() - LAYOUT_PROBLEMS_SHOWN
        ));
    }
    (kind, detail)
}

/// State of one walk; buffers are reused so that a walk allocates only when
/// it first reaches a new depth or a longer payload.
struct Walker<'s> {
    src: &'s dyn PageSource,
    page_count: u32,
    usable: u32,
    visited: PageSet,
    stats: WalkStats,
    /// Page buffers not in use by a level of the recursion.
    spare: Vec<Vec<u8>>,
    overflow_page: Vec<u8>,
    assembled: Vec<u8>,
    regions: Vec<(u32, u32, u32)>,
    layout_errors: Vec<FormatError>,
    leaf_depth: Option<u32>,
}

impl<'s> Walker<'s> {
    fn new(src: &'s dyn PageSource) -> Walker<'s> {
        let page_count = src.page_count();
        Walker {
            src,
            page_count,
            usable: src.usable_size(),
            visited: PageSet::new(),
            stats: WalkStats::default(),
            spare: Vec::new(),
            overflow_page: Vec::new(),
            assembled: Vec::new(),
            regions: Vec::new(),
            layout_errors: Vec::new(),
            leaf_depth: None,
        }
    }

    /// Claims `pgno` for this tree; the reason when it cannot be.
    fn claim(&mut self, pgno: u32) -> Result<(), String> {
        if pgno == 0 {
            return Err("page number 0".into());
        }
        if pgno > self.page_count {
            return Err(format!(
                "page {pgno} is beyond the last page {}",
                self.page_count
            ));
        }
        if !self.visited.insert(pgno) {
            return Err(format!(
                "page {pgno} is reached twice in this tree (a cycle or a shared page)"
            ));
        }
        self.stats.pages.push(pgno);
        Ok(())
    }

    /// Claims and reads b-tree page `pgno` into a spare buffer.
    fn load(&mut self, pgno: u32, parent: Option<u32>, depth: u32) -> Result<Vec<u8>, Damage> {
        let damage = |kind, detail| Damage {
            pgno,
            parent,
            kind,
            detail,
        };
        if depth > MAX_DEPTH {
            return Err(damage(
                DamageKind::TooDeep,
                format!("page {pgno} is at depth {depth}, deeper than {MAX_DEPTH}"),
            ));
        }
        self.claim(pgno).map_err(|why| {
            let from = parent.map_or("the root pointer".to_string(), |p| format!("page {p}"));
            damage(
                DamageKind::BadChildPointer,
                format!("child pointer from {from}: {why}"),
            )
        })?;
        self.stats.depth = self.stats.depth.max(depth);
        let mut buf = self.spare.pop().unwrap_or_default();
        match self.src.read_page(pgno, &mut buf) {
            Ok(()) => Ok(buf),
            Err(e) => {
                self.spare.push(buf);
                Err(damage(
                    DamageKind::PageUnreadable,
                    format!("page {pgno} cannot be read: {e}"),
                ))
            }
        }
    }

    /// Parses a loaded page and checks its layout; `Err` when the page cannot be walked at all.
    fn open<'b>(
        &mut self,
        buf: &'b [u8],
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        table: bool,
    ) -> Result<(BtreePage<'b>, [Option<Damage>; 2]), Damage> {
        let damage = |kind, detail| Damage {
            pgno,
            parent,
            kind,
            detail,
        };
        let page = BtreePage::parse(buf, pgno, self.usable)
            .map_err(|e| damage(DamageKind::BadPageHeader, format!("page {pgno}: {e}")))?;
        let tree = if table { "table" } else { "index" };
        if page.page_type().is_table() != table {
            return Err(damage(
                DamageKind::WrongPageType,
                format!(
                    "page {pgno} is a {:?} page inside a {tree} b-tree",
                    page.page_type()
                ),
            ));
        }
        self.stats.pages_visited += 1;
        let mut depth_damage = None;
        if page.page_type().is_leaf() {
            match self.leaf_depth {
                None => self.leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    depth_damage = Some(damage(
                        DamageKind::WrongPageType,
                        format!(
                            "leaf page {pgno} is at depth {depth}, the first leaf of this {tree} b-tree at depth {d}"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        page.check_layout_into(&mut self.regions, &mut self.layout_errors);
        if self.layout_errors.is_empty() {
            return Ok((page, [depth_damage, None]));
        }
        let (kind, detail) = layout_damage(&self.layout_errors);
        Ok((page, [depth_damage, Some(damage(kind, detail))]))
    }

    /// Copies a spilled payload into `self.assembled`: the local part, then
    /// each overflow page's share. `Ok(Some(_))` when the payload is whole but
    /// the chain's last page points on to another page.
    fn assemble(
        &mut self,
        payload: &Payload<'_>,
        pgno: u32,
        parent: Option<u32>,
        cell: usize,
    ) -> Result<Option<Damage>, Damage> {
        let damage = |detail: String| Damage {
            pgno,
            parent,
            kind: DamageKind::OverflowChainBroken,
            detail,
        };
        self.assembled.clear();
        self.assembled.extend_from_slice(payload.local);
        let per_page = u64::from(self.usable) - OVERFLOW_DATA_OFFSET as u64;
        let mut remaining = payload.total_len - payload.local.len() as u64;
        let needed = remaining.div_ceil(per_page);
        if needed > u64::from(self.page_count) {
            return Err(damage(format!(
                "cell {cell} of page {pgno}: a payload of {} bytes needs {needed} overflow pages, more than the database's {}",
                payload.total_len, self.page_count
            )));
        }
        let mut from = pgno;
        let mut next = payload.first_overflow.unwrap_or(0);
        let mut hops = 0u64;
        while remaining > 0 {
            if next == 0 {
                return Err(damage(format!(
                    "cell {cell} of page {pgno}: overflow chain ends at page {from} after {hops} pages, {remaining} bytes short"
                )));
            }
            if let Err(why) = self.claim(next) {
                return Err(damage(format!(
                    "cell {cell} of page {pgno}: overflow page {hops} (after page {from}): {why}"
                )));
            }
            self.stats.overflow_pages += 1;
            if let Err(e) = self.src.read_page(next, &mut self.overflow_page) {
                return Err(damage(format!(
                    "cell {cell} of page {pgno}: overflow page {next} cannot be read: {e}"
                )));
            }
            let take = remaining.min(per_page) as usize;
            let Some(data) = self
                .overflow_page
                .get(OVERFLOW_DATA_OFFSET..OVERFLOW_DATA_OFFSET + take)
            else {
                return Err(damage(format!(
                    "cell {cell} of page {pgno}: overflow page {next} is shorter than the usable size"
                )));
            };
            self.assembled.extend_from_slice(data);
            remaining -= take as u64;
            hops += 1;
            from = next;
            // ok: the slice above is longer than OVERFLOW_DATA_OFFSET bytes.
            next = super::be_u32(&self.overflow_page, OVERFLOW_NEXT_OFFSET).unwrap_or(0);
        }
        if next != 0 {
            return Ok(Some(damage(format!(
                "cell {cell} of page {pgno}: the last overflow page {from} points on to page {next}"
            ))));
        }
        Ok(None)
    }

    fn table_damage(&mut self, visit: &mut dyn FnMut(TableItem<'_>), d: Damage) {
        self.stats.damage += 1;
        visit(TableItem::Damage(d));
    }

    fn index_damage(&mut self, visit: &mut dyn FnMut(IndexItem<'_>), d: Damage) {
        self.stats.damage += 1;
        visit(IndexItem::Damage(d));
    }

    /// Walks the table subtree at `pgno`, whose rowids must lie in `(lo, hi]`.
    fn table_page(
        &mut self,
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        lo: Option<i64>,
        hi: Option<i64>,
        visit: &mut dyn FnMut(TableItem<'_>),
    ) {
        let buf = match self.load(pgno, parent, depth) {
            Ok(buf) => buf,
            Err(d) => return self.table_damage(visit, d),
        };
        self.table_page_body(&buf, pgno, parent, depth, lo, hi, visit);
        self.spare.push(buf);
    }

    #[allow(clippy::too_many_arguments)]
    fn table_page_body(
        &mut self,
        buf: &[u8],
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        lo: Option<i64>,
        hi: Option<i64>,
        visit: &mut dyn FnMut(TableItem<'_>),
    ) {
        let (page, damage) = match self.open(buf, pgno, parent, depth, true) {
            Ok(p) => p,
            Err(d) => return self.table_damage(visit, d),
        };
        let layout_reported = damage[1].is_some();
        for d in damage.into_iter().flatten() {
            self.table_damage(visit, d);
        }
        let mut order_reported = false;
        let mut check_order = |w: &mut Walker<'_>,
                               visit: &mut dyn FnMut(TableItem<'_>),
                               i: usize,
                               key: i64,
                               prev: Option<i64>| {
            if order_reported {
                return;
            }
            let problem = if prev.is_some_and(|p| key <= p) {
                Some("not above the previous key")
            } else if lo.is_some_and(|l| key <= l) {
                Some("not above the lower bound set by the parent")
            } else if hi.is_some_and(|h| key > h) {
                Some("above the upper bound set by the parent")
            } else {
                None
            };
            if let Some(problem) = problem {
                order_reported = true;
                let bounds = format!(
                    "({}, {}]",
                    lo.map_or("-inf".into(), |v| v.to_string()),
                    hi.map_or("+inf".into(), |v| v.to_string())
                );
                w.table_damage(
                    visit,
                    Damage {
                        pgno,
                        parent,
                        kind: DamageKind::KeyOrder,
                        detail: format!(
                            "page {pgno} cell {i}: rowid {key} is {problem} (previous {}, bounds {bounds})",
                            prev.map_or("none".into(), |v| v.to_string())
                        ),
                    },
                );
            }
        };
        let cells = usize::from(page.cell_count());
        let mut prev: Option<i64> = None;
        if page.page_type().is_leaf() {
            for i in 0..cells {
                let (rowid, payload) = match page.cell(i) {
                    Ok(Cell::TableLeaf { rowid, payload }) => (rowid, payload),
                    Ok(_) => continue,
                    Err(e) => {
                        if !layout_reported {
                            self.table_damage(
                                visit,
                                Damage {
                                    pgno,
                                    parent,
                                    kind: DamageKind::CellOutOfBounds,
                                    detail: e.to_string(),
                                },
                            );
                        }
                        if let Some(rowid) = page.table_leaf_rowid(i) {
                            visit(TableItem::RowDamaged { rowid, pgno });
                        }
                        continue;
                    }
                };
                check_order(self, visit, i, rowid, prev);
                prev = Some(rowid);
                if payload.first_overflow.is_none() {
                    self.stats.cells += 1;
                    visit(TableItem::Row {
                        rowid,
                        payload: payload.local,
                        pgno,
                    });
                    continue;
                }
                match self.assemble(&payload, pgno, parent, i) {
                    Ok(extra) => {
                        if let Some(d) = extra {
                            self.table_damage(visit, d);
                        }
                        self.stats.cells += 1;
                        visit(TableItem::Row {
                            rowid,
                            payload: &self.assembled,
                            pgno,
                        });
                    }
                    Err(d) => {
                        self.table_damage(visit, d);
                        visit(TableItem::RowDamaged { rowid, pgno });
                    }
                }
            }
            return;
        }
        for i in 0..cells {
            let (left_child, key) = match page.cell(i) {
                Ok(Cell::TableInterior { left_child, rowid }) => (left_child, rowid),
                Ok(_) => continue,
                Err(e) => {
                    if !layout_reported {
                        self.table_damage(
                            visit,
                            Damage {
                                pgno,
                                parent,
                                kind: DamageKind::CellOutOfBounds,
                                detail: e.to_string(),
                            },
                        );
                    }
                    continue;
                }
            };
            check_order(self, visit, i, key, prev);
            let child_lo = prev.or(lo);
            self.table_page(
                left_child,
                Some(pgno),
                depth + 1,
                child_lo,
                Some(key),
                visit,
            );
            prev = Some(key);
        }
        if let Some(right) = page.right_child() {
            self.table_page(right, Some(pgno), depth + 1, prev.or(lo), hi, visit);
        }
    }

    /// Walks the index subtree at `pgno`.
    fn index_page(
        &mut self,
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        visit: &mut dyn FnMut(IndexItem<'_>),
    ) {
        let buf = match self.load(pgno, parent, depth) {
            Ok(buf) => buf,
            Err(d) => return self.index_damage(visit, d),
        };
        self.index_page_body(&buf, pgno, parent, depth, visit);
        self.spare.push(buf);
    }

    fn index_page_body(
        &mut self,
        buf: &[u8],
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        visit: &mut dyn FnMut(IndexItem<'_>),
    ) {
        let (page, damage) = match self.open(buf, pgno, parent, depth, false) {
            Ok(p) => p,
            Err(d) => return self.index_damage(visit, d),
        };
        let layout_reported = damage[1].is_some();
        for d in damage.into_iter().flatten() {
            self.index_damage(visit, d);
        }
        let interior = !page.page_type().is_leaf();
        for i in 0..usize::from(page.cell_count()) {
            let (left_child, payload) = match page.cell(i) {
                Ok(Cell::IndexLeaf { payload }) => (None, payload),
                Ok(Cell::IndexInterior {
                    left_child,
                    payload,
                }) => (Some(left_child), payload),
                Ok(_) => continue,
                Err(e) => {
                    if !layout_reported {
                        self.index_damage(
                            visit,
                            Damage {
                                pgno,
                                parent,
                                kind: DamageKind::CellOutOfBounds,
                                detail: e.to_string(),
                            },
                        );
                    }
                    continue;
                }
            };
            if let Some(child) = left_child {
                self.index_page(child, Some(pgno), depth + 1, visit);
            }
            if payload.first_overflow.is_none() {
                self.stats.cells += 1;
                visit(IndexItem::Entry {
                    payload: payload.local,
                    pgno,
                    interior,
                });
                continue;
            }
            match self.assemble(&payload, pgno, parent, i) {
                Ok(extra) => {
                    if let Some(d) = extra {
                        self.index_damage(visit, d);
                    }
                    self.stats.cells += 1;
                    visit(IndexItem::Entry {
                        payload: &self.assembled,
                        pgno,
                        interior,
                    });
                }
                Err(d) => self.index_damage(visit, d),
            }
        }
        if let Some(right) = page.right_child() {
            self.index_page(right, Some(pgno), depth + 1, visit);
        }
    }
}

/// A database held in memory, for tests and for callers that already have the bytes.
#[derive(Debug, Clone)]
pub struct MemoryPages {
    /// The whole database image.
    pub bytes: Vec<u8>,
    /// Page size.
    pub page_size: u32,
    /// Usable size.
    pub usable_size: u32,
    /// Text encoding.
    pub text_encoding: TextEncoding,
}

impl MemoryPages {
    /// Wraps a database image, taking page size, reserved bytes and encoding
    /// from its header.
    pub fn new(bytes: Vec<u8>) -> Result<MemoryPages, FormatError> {
        let h = super::header::DatabaseHeader::parse(&bytes)?;
        Ok(MemoryPages {
            bytes,
            page_size: h.page_size,
            usable_size: h.usable_size(),
            text_encoding: h.text_encoding,
        })
    }
}

impl PageSource for MemoryPages {
    fn page_size(&self) -> u32 {
        self.page_size
    }

    fn usable_size(&self) -> u32 {
        self.usable_size
    }

    fn page_count(&self) -> u32 {
        let n = (self.bytes.len() as u64).div_ceil(u64::from(self.page_size));
        n.min(u64::from(u32::MAX)) as u32
    }

    fn text_encoding(&self) -> TextEncoding {
        self.text_encoding
    }

    fn read_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), FormatError> {
        let size = self.page_size as usize;
        let start = (pgno as usize)
            .checked_sub(1)
            .ok_or(FormatError::OutOfBounds {
                what: "page number 0".into(),
            })?
            * size;
        let page = self
            .bytes
            .get(start..start + size)
            .ok_or(FormatError::Truncated {
                what: "page beyond the end of the database image",
            })?;
        buf.clear();
        buf.extend_from_slice(page);
        Ok(())
    }
}

/// Hand-built database images for the reader's tests (b-tree and salvage).
#[cfg(test)]
pub(crate) mod test_image {
    use crate::format::varint::write_varint;

    pub const PS: usize = 512;

    /// A database image of `n` zeroed 512-byte pages with a valid header.
    pub fn image(n: usize) -> Vec<u8> {
        let mut b = vec![0u8; PS * n];
        b[..16].copy_from_slice(crate::format::header::MAGIC);
        b[16..18].copy_from_slice(&512u16.to_be_bytes());
        b[18] = 1;
        b[19] = 1;
        b[21] = 64;
        b[22] = 32;
        b[23] = 32;
        b[56..60].copy_from_slice(&1u32.to_be_bytes());
        b
    }

    /// Writes b-tree page `pgno` of type `kind` with `cells` packed at the
    /// end (page 1's b-tree header follows the database header).
    pub fn put_page(img: &mut [u8], pgno: usize, kind: u8, cells: &[Vec<u8>], right: Option<u32>) {
        let base = (pgno - 1) * PS;
        let hdr = if pgno == 1 { 100 } else { 0 };
        let page = &mut img[base..base + PS];
        let hsize = if right.is_some() { 12 } else { 8 };
        let mut top = PS;
        for (i, c) in cells.iter().enumerate() {
            top -= c.len().max(4);
            page[top..top + c.len()].copy_from_slice(c);
            let p = hdr + hsize + 2 * i;
            page[p..p + 2].copy_from_slice(&(top as u16).to_be_bytes());
        }
        page[hdr] = kind;
        page[hdr + 3..hdr + 5].copy_from_slice(&(cells.len() as u16).to_be_bytes());
        page[hdr + 5..hdr + 7].copy_from_slice(&(top as u16).to_be_bytes());
        if let Some(r) = right {
            page[hdr + 8..hdr + 12].copy_from_slice(&r.to_be_bytes());
        }
    }

    /// A table-leaf cell.
    pub fn leaf_cell(rowid: i64, payload: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        write_varint(payload.len() as u64, &mut c);
        write_varint(rowid as u64, &mut c);
        c.extend_from_slice(payload);
        c
    }

    /// A table-interior cell.
    pub fn interior_cell(child: u32, rowid: i64) -> Vec<u8> {
        let mut c = child.to_be_bytes().to_vec();
        write_varint(rowid as u64, &mut c);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::varint::write_varint;

    use super::test_image::{PS, image, interior_cell, leaf_cell, put_page};

    fn put_table_page(img: &mut [u8], pgno: usize, cells: &[Vec<u8>], right: Option<u32>) {
        put_page(
            img,
            pgno,
            if right.is_some() { 5 } else { 13 },
            cells,
            right,
        );
    }

    type Collected = (Vec<(i64, Vec<u8>)>, Vec<i64>, Vec<Damage>, WalkStats);

    fn collect(src: &MemoryPages, root: u32) -> Collected {
        let (mut rows, mut damaged, mut damage) = (Vec::new(), Vec::new(), Vec::new());
        let stats = walk_table(src, root, &mut |item| match item {
            TableItem::Row { rowid, payload, .. } => rows.push((rowid, payload.to_vec())),
            TableItem::RowDamaged { rowid, .. } => damaged.push(rowid),
            TableItem::Damage(d) => damage.push(d),
        });
        (rows, damaged, damage, stats)
    }

    #[test]
    fn page_set() {
        let mut s = PageSet::new();
        assert!(s.insert(1));
        assert!(!s.insert(1));
        assert!(s.insert(u32::MAX));
        assert!(s.contains(u32::MAX) && s.contains(1) && !s.contains(2));
        assert!(!s.contains(40_000_000));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn two_level_table() {
        let mut img = image(4);
        put_table_page(&mut img, 2, &[interior_cell(3, 2)], Some(4));
        put_table_page(
            &mut img,
            3,
            &[leaf_cell(1, b"\x02\x0fa"), leaf_cell(2, b"\x02\x0fb")],
            None,
        );
        put_table_page(&mut img, 4, &[leaf_cell(5, b"\x02\x0fc")], None);
        let src = MemoryPages::new(img).unwrap();
        let (rows, damaged, damage, stats) = collect(&src, 2);
        assert!(damage.is_empty(), "{damage:?}");
        assert!(damaged.is_empty());
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 5]);
        assert_eq!(stats.pages, vec![2, 3, 4]);
        assert_eq!(stats.pages_visited, 3);
        assert_eq!(stats.cells, 3);
        assert_eq!(stats.depth, 1);
    }

    #[test]
    fn cycles_and_bad_children_are_reported_once() {
        let mut img = image(4);
        // Page 2 points to itself, to 0, and to page 9 (beyond the end); right child 3.
        put_table_page(
            &mut img,
            2,
            &[
                interior_cell(2, 1),
                interior_cell(0, 2),
                interior_cell(9, 3),
            ],
            Some(3),
        );
        put_table_page(&mut img, 3, &[leaf_cell(7, b"\x02\x0fa")], None);
        let src = MemoryPages::new(img).unwrap();
        let (rows, _, damage, stats) = collect(&src, 2);
        assert_eq!(rows.len(), 1);
        let kinds: Vec<_> = damage.iter().map(|d| (d.kind, d.pgno, d.parent)).collect();
        assert_eq!(
            kinds,
            vec![
                (DamageKind::BadChildPointer, 2, Some(2)),
                (DamageKind::BadChildPointer, 0, Some(2)),
                (DamageKind::BadChildPointer, 9, Some(2)),
            ]
        );
        assert_eq!(stats.pages, vec![2, 3]);
    }

    #[test]
    fn leaves_at_different_depths() {
        let mut img = image(5);
        // Root 2: left child leaf 3 (depth 1), right child interior 4 -> leaf 5 (depth 2).
        put_table_page(&mut img, 2, &[interior_cell(3, 1)], Some(4));
        put_table_page(&mut img, 3, &[leaf_cell(1, b"\x01")], None);
        put_table_page(&mut img, 4, &[], Some(5));
        put_table_page(&mut img, 5, &[leaf_cell(2, b"\x01")], None);
        let src = MemoryPages::new(img).unwrap();
        let (rows, _, damage, _) = collect(&src, 2);
        assert_eq!(rows.len(), 2);
        let found: Vec<_> = damage.iter().map(|d| (d.kind, d.pgno)).collect();
        assert_eq!(found, vec![(DamageKind::WrongPageType, 5)]);
    }

    #[test]
    fn key_order() {
        let mut img = image(4);
        put_table_page(&mut img, 2, &[interior_cell(3, 2)], Some(4));
        // Rowid 3 in the left child exceeds the divider 2.
        put_table_page(
            &mut img,
            3,
            &[leaf_cell(1, b"\x01"), leaf_cell(3, b"\x01")],
            None,
        );
        put_table_page(
            &mut img,
            4,
            &[leaf_cell(5, b"\x01"), leaf_cell(4, b"\x01")],
            None,
        );
        let src = MemoryPages::new(img).unwrap();
        let (rows, _, damage, _) = collect(&src, 2);
        assert_eq!(rows.len(), 4, "rows are still yielded");
        let pages: Vec<_> = damage
            .iter()
            .filter(|d| d.kind == DamageKind::KeyOrder)
            .map(|d| d.pgno)
            .collect();
        assert_eq!(pages, vec![3, 4]);
    }

    #[test]
    fn overflow_chains() {
        // 600-byte payload in 512-byte pages: 92 bytes local, then 508 on page 3.
        let payload: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
        let build = |next_of_3: u32, first: u32| {
            let mut img = image(4);
            let mut cell = Vec::new();
            write_varint(600, &mut cell);
            write_varint(1, &mut cell);
            cell.extend_from_slice(&payload[..92]);
            cell.extend_from_slice(&first.to_be_bytes());
            put_table_page(&mut img, 2, &[cell], None);
            let base = 2 * PS;
            img[base..base + 4].copy_from_slice(&next_of_3.to_be_bytes());
            img[base + 4..base + 4 + 508].copy_from_slice(&payload[92..]);
            MemoryPages::new(img).unwrap()
        };
        let (rows, damaged, damage, stats) = collect(&build(0, 3), 2);
        assert!(damage.is_empty(), "{damage:?}");
        assert!(damaged.is_empty());
        assert_eq!(rows, vec![(1, payload.clone())]);
        assert_eq!(stats.pages, vec![2, 3]);
        assert_eq!(stats.overflow_pages, 1);

        // First overflow pointer to the leaf itself: a cycle.
        let (rows, damaged, damage, _) = collect(&build(0, 2), 2);
        assert!(rows.is_empty());
        assert_eq!(damaged, vec![1]);
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].kind, DamageKind::OverflowChainBroken);

        // A chain that runs on past the payload: row whole, damage reported.
        let (rows, _, damage, _) = collect(&build(4, 3), 2);
        assert_eq!(rows.len(), 1);
        assert_eq!(damage.len(), 1);

        // Pointer beyond the end.
        let (_, damaged, _, _) = collect(&build(0, 77), 2);
        assert_eq!(damaged, vec![1]);
    }

    #[test]
    fn wrong_page_types_and_garbage() {
        let mut img = image(3);
        put_table_page(&mut img, 2, &[leaf_cell(1, b"\x01")], None);
        let src = MemoryPages::new(img.clone()).unwrap();
        let mut damage = Vec::new();
        walk_index(&src, 2, &mut |item| {
            if let IndexItem::Damage(d) = item {
                damage.push(d.kind);
            }
        });
        assert_eq!(damage, vec![DamageKind::WrongPageType]);

        // Page 3 is all zeros: not a b-tree page.
        let (_, _, damage, _) = collect(&src, 3);
        assert_eq!(damage[0].kind, DamageKind::BadPageHeader);
        // Root 0 and a root beyond the end.
        assert_eq!(collect(&src, 0).2[0].kind, DamageKind::BadChildPointer);
        assert_eq!(collect(&src, 99).2[0].kind, DamageKind::BadChildPointer);
    }

    #[test]
    fn a_truncated_image_reports_unreadable_pages() {
        let mut img = image(3);
        put_table_page(&mut img, 2, &[interior_cell(3, 2)], Some(3));
        img.truncate(2 * PS + 100);
        let src = MemoryPages::new(img).unwrap();
        let (_, _, damage, _) = collect(&src, 2);
        assert_eq!(damage[0].kind, DamageKind::PageUnreadable);
        assert_eq!(damage[0].pgno, 3);
    }

    #[test]
    fn every_single_byte_corruption_terminates() {
        // A small healthy-ish tree; flip each byte of pages 2-4 and walk both ways.
        let mut img = image(4);
        put_table_page(&mut img, 2, &[interior_cell(3, 2)], Some(4));
        put_table_page(
            &mut img,
            3,
            &[leaf_cell(1, b"\x02\x0fa"), leaf_cell(2, b"\x02\x0fb")],
            None,
        );
        put_table_page(&mut img, 4, &[leaf_cell(5, b"\x02\x0fc")], None);
        for at in PS..4 * PS {
            for v in [0x00, 0xff, 0x02, 0x0a] {
                let mut b = img.clone();
                b[at] = v;
                let src = MemoryPages::new(b).unwrap();
                let _ = collect(&src, 2);
                walk_index(&src, 2, &mut |_| {});
            }
        }
    }
}
