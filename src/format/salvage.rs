//! Salvage: every row of a table, and every entry of an index, that survives
//! anywhere in the file.
//!
//! SQL stops at the first damaged page ("database disk image is malformed").
//! Salvage walks a b-tree from its root as [`super::btree::walk_table`] does,
//! but judges every row on its own, and where the walk lost part of the tree
//! (an unreadable or invalid interior page, a bad child pointer) it scans the
//! pages of the file that no other object owns for orphaned leaf pages whose
//! records fit the table, and yields their rows too.
//!
//! The rules:
//!
//! * A row is yielded whole or not at all. A row whose rowid is known but
//!   whose record is not whole (a broken overflow chain, a record that does
//!   not decode or does not fit the table's columns) is a
//!   [`SalvageItem::RowDamaged`], never a truncated [`SalvageItem::Row`].
//! * On a page whose layout is sound every cell is taken at its word: rows
//!   outside the bounds set by the parent's dividers are still yielded (a
//!   damaged divider must not lose rows) and reported as `KeyOrder` damage.
//! * On a page whose layout is damaged (cells overlapping or outside the
//!   content area, e.g. garbage written over the cells) a cell is taken only
//!   when its bytes overlap no other cell, its rowid lies inside the parent's
//!   bounds and above the previous cell's, and its record fits the table. A
//!   cell whose rowid passes (inside the bounds, ascending) but whose bytes
//!   or record do not is yielded as `RowDamaged`. A cell whose rowid does
//!   not pass is weighed after the walk (`misplaced_cells`): when it lies in
//!   the cell content area and holds a whole record that fits, it is a row
//!   all the same (or `RowRepeated`, below); else it is only counted, in
//!   the page's `Damage`.
//! * An unclaimed page is an orphaned leaf only when it all fits: a table leaf
//!   (an index leaf or interior page for [`salvage_index`]) whose layout check
//!   passes, with at least one cell, every cell decoding, rowids strictly
//!   ascending, and every record fitting the shape.
//! * A rowid is yielded as a `Row` at most once: tree rows in key order come
//!   first, then the tree's cells out of key order, then orphans. A tree
//!   cell whose rowid was yielded already is yielded whole as
//!   [`SalvageItem::RowRepeated`], for the caller to keep aside; an orphan
//!   row whose rowid the tree already gave is skipped (counted in
//!   [`SalvageStats::duplicate_rowids`]: a stale copy). A rowid the tree
//!   gave only as `RowDamaged` may still come whole from an orphaned leaf.
//! * `claimed` is the set of pages that other objects own (every other
//!   b-tree, the freelist, pointer-map pages; see [`claimed_pages`]). The scan
//!   skips them, and a child or overflow pointer found on a damaged or
//!   orphaned page is not followed into them. Pointers on sound pages are
//!   followed regardless: a damaged tree elsewhere may have wandered into this
//!   tree's pages, and that must not cost this tree its rows.
//!
//! Work is bounded: the walk reads each page at most once (a visited set,
//! page numbers checked against the page count, depth at most
//! [`MAX_DEPTH`]), and the scan reads each unclaimed page once, stopping when
//! it meets a long stretch of unreadable pages (a page count beyond the end of
//! the file).

use std::collections::HashSet;

use super::btree::{Damage, DamageKind, MAX_DEPTH, PageSet, PageSource, walk_index, walk_table};
use super::header::{DatabaseHeader, pending_byte_page};
use super::page::{
    BtreePage, Cell, OVERFLOW_DATA_OFFSET, OVERFLOW_NEXT_OFFSET, PageType, Payload,
    local_payload_size,
};
use super::record::{
    SERIAL_BLOB_MIN, SERIAL_FLOAT64, SERIAL_INT8, SERIAL_INT64, SERIAL_NULL, SERIAL_ONE,
    SERIAL_ZERO, serial_type_size,
};
use super::varint::read_varint;
use super::{FormatError, be_u32};

/// The longest strictly ascending run (not necessarily contiguous) of the
/// known keys, in order: `true` for the entries it keeps. On a damaged page
/// one rowid out of place then costs only its own cell, never every cell
/// after it. Among runs of the same length the one ending on the smallest
/// key is kept (patience sorting: O(n log n)).
fn longest_ascending(keys: &[Option<i64>]) -> Vec<bool> {
    // tails[k]: index of the entry ending the best run of length k + 1
    let mut tails: Vec<usize> = Vec::new();
    let mut back: Vec<Option<usize>> = vec![None; keys.len()];
    for (i, key) in keys.iter().enumerate() {
        let Some(k) = *key else { continue };
        // ok: every index in `tails` is an entry with a known key
        let at = tails.partition_point(|&t| keys[t].is_some_and(|x| x < k));
        back[i] = at.checked_sub(1).map(|a| tails[a]);
        if at == tails.len() {
            tails.push(i);
        } else {
            tails[at] = i;
        }
    }
    let mut keep = vec![false; keys.len()];
    let mut at = tails.last().copied();
    while let Some(i) = at {
        keep[i] = true;
        at = back[i];
    }
    keep
}

/// A `KeyOrder` damage for cell `i` of page `pgno` whose key (`what`:
/// rowid or divider) is not above `prev` or outside the parent's bounds.
#[allow(clippy::too_many_arguments)]
fn key_order_damage(
    pgno: u32,
    parent: Option<u32>,
    i: usize,
    what: &str,
    key: i64,
    prev: Option<i64>,
    lo: Option<i64>,
    hi: Option<i64>,
) -> Damage {
    let show = |v: Option<i64>, none: &str| v.map_or(none.to_string(), |v| v.to_string());
    Damage {
        pgno,
        parent,
        kind: DamageKind::KeyOrder,
        detail: format!(
            "page {pgno} cell {i}: {what} {key} is out of order (previous {}, bounds ({}, {}])",
            show(prev, "none"),
            show(lo, "-inf"),
            show(hi, "+inf")
        ),
    }
}

/// The orphan scan gives up after this many unreadable pages in a row (a
/// page count that runs far beyond the end of the file).
const MAX_UNREADABLE_RUN: u32 = 4096;

/// A set of storage classes (NULL, INTEGER, REAL, TEXT, BLOB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    /// SQL NULL.
    pub const NULL: KindSet = KindSet(1);
    /// An integer (serial types 1-6, 8, 9).
    pub const INTEGER: KindSet = KindSet(2);
    /// A float.
    pub const REAL: KindSet = KindSet(4);
    /// Text.
    pub const TEXT: KindSet = KindSet(8);
    /// A BLOB.
    pub const BLOB: KindSet = KindSet(16);
    /// Every storage class.
    pub const ANY: KindSet = KindSet(31);

    /// The classes in either set.
    pub const fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    /// The classes of `self` that are not in `other`.
    pub const fn without(self, other: KindSet) -> KindSet {
        KindSet(self.0 & !other.0)
    }

    /// Whether every class of `other` is in `self`.
    pub const fn contains(self, other: KindSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// The storage class of a record serial type (10 and 11 are reserved:
    /// the empty set).
    pub fn of_serial_type(t: u64) -> KindSet {
        match t {
            SERIAL_NULL => KindSet::NULL,
            SERIAL_INT8..=SERIAL_INT64 | SERIAL_ZERO | SERIAL_ONE => KindSet::INTEGER,
            SERIAL_FLOAT64 => KindSet::REAL,
            t if t >= SERIAL_BLOB_MIN && t % 2 == 0 => KindSet::BLOB,
            t if t >= SERIAL_BLOB_MIN => KindSet::TEXT,
            _ => KindSet(0),
        }
    }

    /// What a column of an ordinary (not STRICT) table with declared type
    /// `decl_type` can hold on disk. Only TEXT affinity (a type containing
    /// "CHAR", "CLOB" or "TEXT" and not "INT") rules anything out: numbers
    /// stored into it become text, so it never holds INTEGER or REAL. NOT NULL
    /// rules out NULL. (SQLite's affinity rules, "Determination Of Column
    /// Affinity" in datatype3.html.)
    pub fn for_declared_type(decl_type: &str, not_null: bool) -> KindSet {
        let t = decl_type.to_ascii_uppercase();
        let text_affinity =
            !t.contains("INT") && (t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT"));
        let kinds = if text_affinity {
            KindSet::NULL.union(KindSet::TEXT).union(KindSet::BLOB)
        } else {
            KindSet::ANY
        };
        if not_null {
            kinds.without(KindSet::NULL)
        } else {
            kinds
        }
    }
}

/// What the table's rows must look like, to recognise orphaned leaf pages
/// (and to refuse garbage on damaged pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// Stored columns: a record may have fewer (ALTER TABLE ADD COLUMN) but never more.
    pub columns: usize,
    /// Fewest columns a record may have (at least 1 is always required); the
    /// column count of the original CREATE TABLE when it is known.
    pub min_columns: usize,
    /// The INTEGER PRIMARY KEY column, which is stored as NULL.
    pub rowid_alias: Option<usize>,
    /// Storage classes each column may hold, by position; columns past the
    /// end of this list may hold anything.
    pub kinds: Vec<KindSet>,
}

/// One stored column, as [`TableShape::from_columns`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec<'a> {
    /// The declared type, e.g. "TEXT" ("" when none).
    pub decl_type: &'a str,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// Has a DEFAULT clause.
    pub has_default: bool,
}

impl TableShape {
    /// The shape of an ordinary rowid table from its stored columns (in
    /// record order) and its INTEGER PRIMARY KEY column. Kinds follow
    /// [`KindSet::for_declared_type`]. `min_columns` is the position after the
    /// last NOT NULL column without a DEFAULT: ALTER TABLE ADD COLUMN cannot
    /// add such a column, so it was in the original CREATE TABLE and every
    /// record has it (records written before an ADD COLUMN are shorter, so
    /// the full column count would wrongly refuse them).
    pub fn from_columns(columns: &[ColumnSpec<'_>], rowid_alias: Option<usize>) -> TableShape {
        let min_columns = columns
            .iter()
            .rposition(|c| c.not_null && !c.has_default)
            .map_or(1, |i| i + 1);
        TableShape {
            columns: columns.len(),
            min_columns,
            rowid_alias,
            kinds: columns
                .iter()
                .map(|c| KindSet::for_declared_type(c.decl_type, c.not_null))
                .collect(),
        }
    }

    /// A shape that only limits the column count to `1..=columns`.
    pub fn new(columns: usize) -> TableShape {
        TableShape {
            columns,
            min_columns: 1,
            rowid_alias: None,
            kinds: Vec::new(),
        }
    }
}

/// How a row or entry was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// By walking the b-tree from its root.
    Tree,
    /// On a page no b-tree reaches, found by the orphan scan (for an index
    /// this includes orphaned interior pages, whose cells are entries too).
    OrphanLeaf,
}

/// What [`salvage_table`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SalvageItem<'a> {
    /// A whole row: `payload` is the complete record (overflow assembled) and
    /// fits the table's shape.
    Row {
        /// The row's rowid.
        rowid: i64,
        /// The complete record; borrowed until the visitor returns.
        payload: &'a [u8],
        /// The leaf page holding the row's cell.
        pgno: u32,
        /// How the page was found.
        via: Via,
    },
    /// A row whose rowid is known but whose record is not whole or does not
    /// fit the table. A `Damage` saying why comes before it; on a page whose
    /// layout is damaged, the page's layout `Damage` comes before and one
    /// summing up its unreadable cells after.
    RowDamaged {
        /// The row's rowid (0 for a WITHOUT ROWID table).
        rowid: i64,
        /// The leaf page holding the row's cell.
        pgno: u32,
        /// How the page was found.
        via: Via,
        /// Why the record cannot be used, one line.
        reason: String,
        /// What could be read of the record, when the cell could be located:
        /// its first bytes (the local part, and the overflow pages that
        /// could be followed), possibly cut short or not fitting the shape.
        /// For a caller that keeps what can be kept of a row no other source
        /// has whole, and says so; never a [`SalvageItem::Row`].
        partial: Option<&'a [u8]>,
    },
    /// A second whole row under a rowid already yielded: a cell of the
    /// tree whose rowid repeats another's (on another page, or out of key
    /// order on a damaged page, where the cell in key order is the one
    /// kept). Never dropped by salvage: the caller keeps it aside
    /// (quarantine) so that nothing read is lost.
    RowRepeated {
        /// The rowid it shares with a row yielded before.
        rowid: i64,
        /// The complete record; borrowed until the visitor returns.
        payload: &'a [u8],
        /// The leaf page holding the cell.
        pgno: u32,
        /// Which cell of that page.
        cell: usize,
    },
    /// A cell that lies whole inside its page's cell content area but is
    /// not taken as a row: a table cell whose rowid is out of key order and
    /// whose record does not decode, or a WITHOUT ROWID table's cell on a
    /// damaged page whose bytes overlap another cell's or whose record does
    /// not fit. No evidence of a row, but bytes that may be one (SQLite's
    /// `.recover` reads such cells as rows): never dropped, the caller keeps
    /// them aside whole (quarantine) for a person to judge.
    CellSetAside {
        /// The cell's rowid (None for a WITHOUT ROWID table's cell).
        rowid: Option<i64>,
        /// The cell's payload as the cell gives it: its local part (a
        /// spilled payload's overflow is not followed).
        payload: &'a [u8],
        /// The payload's size the cell states.
        total_len: u64,
        /// The leaf page holding the cell.
        pgno: u32,
        /// Which cell of that page.
        cell: usize,
        /// Why it is not a row, one line.
        reason: String,
    },
    /// A problem; salvage goes on.
    Damage(Damage),
}

/// What [`salvage_index`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SalvageEntry<'a> {
    /// An index entry whose record has the expected number of fields and an
    /// integer last field (the rowid); for an index of a WITHOUT ROWID table
    /// ([`salvage_without_rowid_index`]), the expected number of fields.
    Entry {
        /// The complete record; borrowed until the visitor returns.
        payload: &'a [u8],
        /// The record's last field: the rowid of the row it indexes (0 for
        /// an index of a WITHOUT ROWID table, whose entries end with the
        /// table's primary key instead).
        rowid: i64,
        /// The page holding the entry's cell.
        pgno: u32,
        /// How the page was found.
        via: Via,
    },
    /// A problem; salvage goes on.
    Damage(Damage),
}

/// When to scan the file for orphaned pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrphanScan {
    /// When the walk met damage that can cut pages off the tree: an
    /// unreadable or invalid page, a bad child pointer, a damaged interior
    /// page, a tree too deep. (Damage confined to a leaf's cells does not.)
    #[default]
    WhenPagesLost,
    /// Always.
    Always,
    /// Never: the tree walk only.
    Never,
}

/// Options of [`salvage_table_with`] and [`salvage_index_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SalvageOptions {
    /// When to scan for orphaned pages.
    pub orphan_scan: OrphanScan,
}

/// What salvage found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalvageStats {
    /// Rows (entries) yielded whole from the tree walk.
    pub rows_tree: u64,
    /// Rows (entries) yielded whole from orphaned pages.
    pub rows_orphan: u64,
    /// `RowDamaged` items yielded (for an index: entries that could not be read).
    pub rows_damaged: u64,
    /// Orphaned pages whose cells were taken, in page order.
    pub orphan_leaves: Vec<u32>,
    /// Overflow pages of rows taken from orphaned pages.
    pub orphan_overflow_pages: Vec<u32>,
    /// Orphan rows (entries) whose rowid the tree already gave: skipped.
    pub duplicate_rowids: u64,
    /// Every page the tree walk claimed, in visit order: its b-tree pages
    /// (also those that turned out unreadable or invalid) and its overflow
    /// pages. All are in `1..=page_count`.
    pub pages: Vec<u32>,
    /// Number of `Damage` items yielded.
    pub damage: u32,
    /// Whether the walk met damage that can cut pages off the tree.
    pub pages_lost: bool,
    /// Cells of the tree's pages that could not be read at all, not even
    /// their rowid (on a page whose layout is damaged: rowids out of order
    /// or out of bounds; elsewhere: cells that cannot be located): rows (or
    /// entries) that may be lost without a name.
    pub cells_refused: u64,
    /// Cells of damaged leaves whose rowid is out of key order or outside
    /// the parent's bounds, weighed after the walk: those yielded whole
    /// (`Row`, or `RowRepeated` when their rowid was taken).
    pub rows_misplaced: u64,
    /// Whether the orphan scan ran.
    pub orphan_scan: bool,
    /// Pages the orphan scan read (those not claimed and not in this tree).
    pub pages_scanned: u32,
    /// Unclaimed pages of the right b-tree kind that the scan refused
    /// (layout or records do not fit).
    pub pages_rejected: u32,
    /// Unclaimed pages the scan could read but that are no b-tree page of
    /// this tree's kind (zeroed, garbage, another kind of page): a lost leaf
    /// may be among them.
    pub pages_unrecognized: u32,
    /// Unclaimed pages the scan could not read.
    pub pages_unreadable: u32,
    /// Depth of the first leaf the walk reached (the root is at depth 0).
    pub leaf_depth: Option<u32>,
    /// Subtrees the walk could not enter, in the order met: what their
    /// pages held is lost unless the orphan scan finds it.
    pub lost_subtrees: Vec<LostSubtree>,
}

/// A subtree the walk could not enter (a child pointer out of range or to
/// another object's page, a page that cannot be read or is no page of this
/// tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostSubtree {
    /// The page the pointer named (0 when the pointer itself was 0).
    pub pgno: u32,
    /// Its depth below the root (0: the root itself).
    pub depth: u32,
    /// For a table b-tree, the rowids the subtree held lie in `(lo, hi]`
    /// (`None`: unbounded on that side), from the parent's dividers.
    pub lo: Option<i64>,
    /// See `lo`.
    pub hi: Option<i64>,
}

impl SalvageStats {
    /// Whether rows may have been lost with pages of the tree: cells could
    /// not be read at all, or a subtree the walk could not enter was a leaf (or its depth is unknown), or it
    /// was an interior page and the orphan scan met unclaimed pages it
    /// could not take (a leaf of the lost subtree may be among them). An
    /// interior page of a table b-tree holds no rows, so one whose leaves
    /// all turned up as orphans lost nothing. (For an index b-tree, or a
    /// WITHOUT ROWID table, interior pages hold entries: any lost subtree
    /// may have lost some.)
    pub fn rows_may_be_lost(&self, table_tree: bool) -> bool {
        if self.cells_refused > 0 {
            return true;
        }
        if self.lost_subtrees.is_empty() {
            return false;
        }
        let unexplained = self.pages_rejected + self.pages_unrecognized + self.pages_unreadable > 0;
        self.lost_subtrees
            .iter()
            .any(|l| !table_tree || unexplained || self.leaf_depth.is_none_or(|d| l.depth >= d))
    }
}

/// Every row of the table rooted at `root` that survives anywhere: the tree
/// walk from the root, then, when the walk lost pages, every table leaf of
/// the file that no tree owns and whose records fit `shape` (see the module
/// documentation). Rows are yielded in the order found: tree rows in rowid
/// order, then orphan rows by page number.
pub fn salvage_table(
    src: &dyn PageSource,
    root: u32,
    shape: &TableShape,
    claimed: &PageSet,
    visit: &mut dyn FnMut(SalvageItem<'_>),
) -> SalvageStats {
    salvage_table_with(src, root, shape, claimed, SalvageOptions::default(), visit)
}

/// [`salvage_table`] with options.
pub fn salvage_table_with(
    src: &dyn PageSource,
    root: u32,
    shape: &TableShape,
    claimed: &PageSet,
    options: SalvageOptions,
    visit: &mut dyn FnMut(SalvageItem<'_>),
) -> SalvageStats {
    let mut s = Salvager::new(src, claimed, Shape::Table(shape));
    s.table_page(root, None, 0, None, None, false, visit);
    s.misplaced_cells(visit);
    if s.should_scan(options) {
        s.orphan_scan(visit);
    }
    s.stats.leaf_depth = s.leaf_depth;
    s.stats
}

/// [`salvage_table`] for a table whose rowids mean nothing, sqlite_schema:
/// a row whose rowid the walk already gave is yielded too (a damaged
/// schema page may repeat a rowid across distinct entries), never skipped.
pub fn salvage_table_keeping_repeats(
    src: &dyn PageSource,
    root: u32,
    shape: &TableShape,
    claimed: &PageSet,
    visit: &mut dyn FnMut(SalvageItem<'_>),
) -> SalvageStats {
    let mut s = Salvager::new(src, claimed, Shape::Table(shape));
    s.keep_repeats = true;
    s.table_page(root, None, 0, None, None, false, visit);
    if s.should_scan(SalvageOptions::default()) {
        s.orphan_scan(visit);
    }
    s.stats.leaf_depth = s.leaf_depth;
    s.stats
}

/// The surviving entries of the index rooted at `root`: the tree walk, then,
/// when the walk lost pages, every index page of the file that no tree owns
/// and whose records all have `fields` fields and an integer last field (the
/// rowid), so that rows which cannot be read can still be named by their key.
/// Entries are checked for their shape, not for key order (that needs the
/// index's collations).
pub fn salvage_index(
    src: &dyn PageSource,
    root: u32,
    fields: usize,
    claimed: &PageSet,
    visit: &mut dyn FnMut(SalvageEntry<'_>),
) -> SalvageStats {
    salvage_index_with(src, root, fields, claimed, SalvageOptions::default(), visit)
}

/// [`salvage_index`] with options.
pub fn salvage_index_with(
    src: &dyn PageSource,
    root: u32,
    fields: usize,
    claimed: &PageSet,
    options: SalvageOptions,
    visit: &mut dyn FnMut(SalvageEntry<'_>),
) -> SalvageStats {
    index_entries(
        src,
        root,
        Shape::Index {
            fields,
            rowid: true,
        },
        claimed,
        options,
        visit,
    )
}

/// The surviving entries of an index of a WITHOUT ROWID table, found as
/// [`salvage_index`] finds them: records of `fields` fields, the index's key
/// columns followed by the table's primary-key columns not already among
/// them (SQLite appends those where a rowid index appends the rowid; `PRAGMA
/// index_xinfo` lists them with `key = 0`), so that rows which were lost can
/// still be named by their primary key. Entries are yielded with rowid 0,
/// and an orphaned page may repeat an entry the tree gave: the caller tells
/// copies apart by key.
pub fn salvage_without_rowid_index(
    src: &dyn PageSource,
    root: u32,
    fields: usize,
    claimed: &PageSet,
    visit: &mut dyn FnMut(SalvageEntry<'_>),
) -> SalvageStats {
    let shape = Shape::Index {
        fields,
        rowid: false,
    };
    index_entries(src, root, shape, claimed, SalvageOptions::default(), visit)
}

/// The walk and scan behind [`salvage_index_with`] and
/// [`salvage_without_rowid_index`].
fn index_entries(
    src: &dyn PageSource,
    root: u32,
    shape: Shape<'_>,
    claimed: &PageSet,
    options: SalvageOptions,
    visit: &mut dyn FnMut(SalvageEntry<'_>),
) -> SalvageStats {
    let mut inner = |item: SalvageItem<'_>| match item {
        SalvageItem::Row {
            rowid,
            payload,
            pgno,
            via,
        } => visit(SalvageEntry::Entry {
            payload,
            rowid,
            pgno,
            via,
        }),
        SalvageItem::Damage(d) => visit(SalvageEntry::Damage(d)),
        // (rowids repeat only in table b-trees; cells are set aside only
        // for rows)
        SalvageItem::RowDamaged { .. }
        | SalvageItem::RowRepeated { .. }
        | SalvageItem::CellSetAside { .. } => {}
    };
    let mut s = Salvager::new(src, claimed, shape);
    s.index_page(root, None, 0, false, &mut inner);
    if s.should_scan(options) {
        s.orphan_scan(&mut inner);
    }
    s.stats.leaf_depth = s.leaf_depth;
    s.stats
}

/// The rows of the WITHOUT ROWID table rooted at `root` that survive
/// anywhere: the tree walk (interior pages hold rows too), then, when the
/// walk lost pages, every index page no tree owns whose records all fit
/// `shape`. `shape` lists the columns in record order: the primary key
/// columns first, then the others in table order. Rows are yielded as
/// [`SalvageItem::Row`] with rowid 0; a row that cannot be read has no key
/// to name it by and is only counted (`rows_damaged`). An orphaned page may
/// repeat a row the tree gave: the caller tells copies apart by key.
pub fn salvage_without_rowid(
    src: &dyn PageSource,
    root: u32,
    shape: &TableShape,
    claimed: &PageSet,
    visit: &mut dyn FnMut(SalvageItem<'_>),
) -> SalvageStats {
    let mut s = Salvager::new(src, claimed, Shape::Rows(shape));
    s.index_page(root, None, 0, false, visit);
    if s.should_scan(SalvageOptions::default()) {
        s.orphan_scan(visit);
    }
    s.stats.leaf_depth = s.leaf_depth;
    s.stats
}

/// The most columns a row of a table may have (SQLite's default limit): the
/// shape a row of an unknown table is read with.
pub const MAX_COLUMNS: usize = 2000;

/// Of `pages` (pages no object owns), the table leaves that hold a row the
/// salvage reads whole: rows of a table whose definition is lost, which a
/// repair must keep. An orphaned index page, a zeroed or garbage page holds
/// none; its bytes may be freed.
pub fn leaves_with_rows(src: &dyn PageSource, pages: &[u32]) -> Vec<u32> {
    let mut buf = Vec::new();
    let options = SalvageOptions {
        orphan_scan: OrphanScan::Never,
    };
    let shape = TableShape::new(MAX_COLUMNS);
    let none = PageSet::new();
    pages
        .iter()
        .copied()
        .filter(|&pgno| {
            pgno > 1
                && src.read_page(pgno, &mut buf).is_ok()
                && buf.first() == Some(&(PageType::LeafTable as u8))
        })
        .filter(|&pgno| {
            let mut rows = 0u64;
            salvage_table_with(src, pgno, &shape, &none, options, &mut |item| {
                if let SalvageItem::Row { .. } = item {
                    rows += 1;
                }
            });
            rows > 0
        })
        .collect()
}

/// The pages that objects other than the ones being salvaged own: the
/// b-trees rooted at `other_roots` (root, is an index or WITHOUT ROWID
/// table) with their overflow pages, sqlite_schema (page 1), the freelist,
/// the pointer-map pages of an auto-vacuum database and the lock-byte page.
/// The b-trees are walked ([`walk_table`] / [`walk_index`]); a caller that
/// has walked them already can build the set from its own walks instead.
pub fn claimed_pages(src: &dyn PageSource, other_roots: &[(u32, bool)]) -> PageSet {
    let mut set = PageSet::new();
    let n = src.page_count();
    let mut roots: Vec<(u32, bool)> = vec![(1, false)];
    roots.extend_from_slice(other_roots);
    for (root, is_index) in roots {
        let pages = if is_index {
            walk_index(src, root, &mut |_| {}).pages
        } else {
            walk_table(src, root, &mut |_| {}).pages
        };
        for p in pages {
            set.insert(p);
        }
    }
    let mut page1 = Vec::new();
    if src.read_page(1, &mut page1).is_ok()
        && let Ok(h) = DatabaseHeader::parse(&page1)
    {
        let free = super::freelist::walk_freelist(src, h.first_freelist_trunk, h.freelist_count);
        for p in free.trunks.iter().chain(free.leaves.iter()) {
            set.insert(*p);
        }
        if h.is_auto_vacuum() {
            let step = super::freelist::ptrmap_entries_per_page(src.usable_size()) + 1;
            let mut p = super::freelist::FIRST_PTRMAP_PAGE;
            while p <= n {
                set.insert(p);
                match p.checked_add(step) {
                    Some(next) => p = next,
                    None => break,
                }
            }
        }
    }
    let lock = pending_byte_page(src.page_size());
    if lock <= n {
        set.insert(lock);
    }
    set
}

/// What records must look like.
#[derive(Debug, Clone, Copy)]
enum Shape<'a> {
    /// Rows of a rowid table (table b-tree pages).
    Table(&'a TableShape),
    /// Entries of an index: `fields` fields, the last the rowid when
    /// `rowid` (else the entries of a WITHOUT ROWID table's index, ending
    /// with its primary key).
    Index { fields: usize, rowid: bool },
    /// Rows of a WITHOUT ROWID table (index b-tree pages; the shape lists
    /// the columns in record order, primary key first, no rowid alias).
    Rows(&'a TableShape),
}

/// The column count of a record and where its last value is: (serial type, offset).
struct HeaderInfo {
    columns: usize,
    last: Option<(u64, u64)>,
}

/// Walks the header of a record whose first bytes are `prefix` and whose
/// whole size is `total_len`, calling `each(column, serial type)`. The values
/// must exactly fill the payload (SQLite writes records that way), and no
/// serial type may be reserved. `Ok(None)` when the header runs past
/// `prefix` (the rest is in overflow pages).
fn walk_header(
    prefix: &[u8],
    total_len: u64,
    mut each: impl FnMut(usize, u64) -> Result<(), String>,
) -> Result<Option<HeaderInfo>, String> {
    let complete = prefix.len() as u64 >= total_len;
    let Some((header_len, mut pos)) = read_varint(prefix) else {
        return if complete {
            Err("the record's header size runs past its payload".into())
        } else {
            Ok(None)
        };
    };
    if header_len < pos as u64 || header_len > total_len {
        return Err(format!(
            "header size {header_len} does not fit a payload of {total_len} bytes"
        ));
    }
    if header_len > prefix.len() as u64 {
        return Ok(None);
    }
    let header_end = header_len as usize;
    let mut body = header_len;
    let mut columns = 0usize;
    let mut last = None;
    while pos < header_end {
        let Some((t, n)) = read_varint(&prefix[pos..header_end]) else {
            return Err(format!(
                "serial type at offset {pos} runs past the header end {header_end}"
            ));
        };
        pos += n;
        let size = serial_type_size(t)
            .ok_or_else(|| format!("column {columns} has the reserved serial type {t}"))?;
        each(columns, t)?;
        last = Some((t, body));
        body = body
            .checked_add(size)
            .filter(|&e| e <= total_len)
            .ok_or_else(|| {
                format!("column {columns} ({size} bytes) runs past the payload end {total_len}")
            })?;
        columns += 1;
    }
    if body != total_len {
        return Err(format!(
            "the values end at byte {body} of a {total_len}-byte payload"
        ));
    }
    Ok(Some(HeaderInfo { columns, last }))
}

/// Checks a record (or its first bytes) against the shape; `Ok(None)` when
/// the header is not all in `prefix`.
fn check_record(
    shape: Shape<'_>,
    prefix: &[u8],
    total_len: u64,
) -> Result<Option<HeaderInfo>, String> {
    let info = match shape {
        Shape::Table(t) | Shape::Rows(t) => walk_header(prefix, total_len, |col, st| {
            if col >= t.columns {
                return Err(format!("more columns than the table's {}", t.columns));
            }
            let kind = KindSet::of_serial_type(st);
            if t.rowid_alias == Some(col) {
                if st != SERIAL_NULL {
                    return Err(format!(
                        "column {col} (the rowid alias) is not NULL (serial type {st})"
                    ));
                }
            } else if let Some(k) = t.kinds.get(col)
                && !k.contains(kind)
            {
                return Err(format!(
                    "column {col} holds a value of serial type {st}, which it cannot hold"
                ));
            }
            Ok(())
        })?,
        Shape::Index { fields, .. } => walk_header(prefix, total_len, |col, _| {
            if col >= fields {
                return Err(format!("more fields than the index's {fields}"));
            }
            Ok(())
        })?,
    };
    let Some(info) = info else {
        return Ok(None);
    };
    match shape {
        Shape::Table(t) | Shape::Rows(t) => {
            let min = t.min_columns.max(1);
            if info.columns < min {
                return Err(format!(
                    "{} columns, fewer than the table's {min}",
                    info.columns
                ));
            }
        }
        Shape::Index { fields, rowid } => {
            if info.columns != fields || fields == 0 {
                return Err(format!("{} fields, not the index's {fields}", info.columns));
            }
            if !rowid {
                return Ok(Some(info));
            }
            let last_type = info.last.map_or(SERIAL_NULL, |l| l.0);
            if KindSet::of_serial_type(last_type) != KindSet::INTEGER {
                return Err(format!(
                    "the last field (the rowid) has serial type {last_type}, not an integer"
                ));
            }
        }
    }
    Ok(Some(info))
}

/// The local payload of table-leaf cell `i` as far as the page holds it,
/// for a cell whose payload runs past the usable area.
fn cut_short_payload<'p>(page: &BtreePage<'p>, i: usize) -> Option<&'p [u8]> {
    let offset = page.cell_offset(i).ok()?;
    let bytes = page.data().get(offset..page.usable_size())?;
    let (len, n) = read_varint(bytes)?;
    let (_, m) = read_varint(bytes.get(n..)?)?;
    let rest = bytes.get(n + m..)?;
    // a spilled payload's local part ends where its overflow page number
    // begins: those four bytes are no payload
    let local = local_payload_size(len, page.usable_size() as u32, page.page_type());
    let take = local.min(rest.len());
    (take > 0).then(|| &rest[..take])
}

/// The integer of serial type `t` at `offset` of a complete record.
fn integer_at(payload: &[u8], t: u64, offset: u64) -> Option<i64> {
    let size = match t {
        SERIAL_ZERO => return Some(0),
        SERIAL_ONE => return Some(1),
        SERIAL_INT8..=SERIAL_INT64 => serial_type_size(t)? as usize,
        _ => return None,
    };
    let start = usize::try_from(offset).ok()?;
    let bytes = payload.get(start..start.checked_add(size)?)?;
    let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &b in bytes {
        v = (v << 8) | i64::from(b);
    }
    Some(v)
}

/// The rowids already yielded whole: those that arrive in ascending order (a
/// sound table walk) in a sorted vector, the rest in a hash set.
#[derive(Debug, Default)]
struct RowidSet {
    ascending: Vec<i64>,
    others: HashSet<i64>,
}

impl RowidSet {
    fn from_sorted(mut v: Vec<i64>) -> RowidSet {
        v.sort_unstable();
        v.dedup();
        RowidSet {
            ascending: v,
            others: HashSet::new(),
        }
    }

    fn contains(&self, r: i64) -> bool {
        let in_vec = match self.ascending.last() {
            Some(&last) if r <= last => self.ascending.binary_search(&r).is_ok(),
            _ => false,
        };
        in_vec || (!self.others.is_empty() && self.others.contains(&r))
    }

    /// Adds `r`, which is not in the set.
    fn insert_new(&mut self, r: i64) {
        if self.ascending.last().is_none_or(|&last| r > last) {
            self.ascending.push(r);
        } else {
            self.others.insert(r);
        }
    }
}

/// A cell of a damaged table leaf whose rowid is out of key order or
/// outside the parent's bounds, weighed after the walk.
struct Misplaced {
    pgno: u32,
    parent: Option<u32>,
    cell: usize,
    /// In the longest ascending run of its page's rowids, bounds aside.
    in_page_order: bool,
    /// Most of its page's cells hold a whole record that fits the table: a
    /// bad cell among good ones, not a page of garbage, whose cells are set
    /// aside when they hold no row (see [`SalvageItem::CellSetAside`]).
    among_rows: bool,
}

/// Whether a page's `rows` cells holding a whole record that fits are most
/// of its `cells` (see `Misplaced::among_rows`).
fn mostly_rows(rows: usize, cells: usize) -> bool {
    rows > 0 && rows * 2 >= cells
}

/// State of one salvage.
struct Salvager<'s, 'c> {
    src: &'s dyn PageSource,
    claimed: &'c PageSet,
    shape: Shape<'c>,
    page_count: u32,
    usable: u32,
    /// Pages of this tree, and pages taken by the orphan scan.
    owned: PageSet,
    stats: SalvageStats,
    /// Rowids yielded whole (tables).
    seen: RowidSet,
    /// Rowids of the index entries the tree walk yielded (indexes).
    index_rowids: Vec<i64>,
    spare: Vec<Vec<u8>>,
    overflow_page: Vec<u8>,
    assembled: Vec<u8>,
    regions: Vec<(u32, u32, u32)>,
    layout_errors: Vec<FormatError>,
    leaf_depth: Option<u32>,
    /// Yield a row whose rowid was yielded before (see
    /// [`salvage_table_keeping_repeats`]).
    keep_repeats: bool,
    /// Cells of damaged leaves the walk set aside (see [`Misplaced`]).
    misplaced: Vec<Misplaced>,
}

impl<'s, 'c> Salvager<'s, 'c> {
    fn new(src: &'s dyn PageSource, claimed: &'c PageSet, shape: Shape<'c>) -> Salvager<'s, 'c> {
        Salvager {
            src,
            claimed,
            shape,
            page_count: src.page_count(),
            usable: src.usable_size(),
            owned: PageSet::new(),
            stats: SalvageStats::default(),
            seen: RowidSet::default(),
            index_rowids: Vec::new(),
            spare: Vec::new(),
            overflow_page: Vec::new(),
            assembled: Vec::new(),
            regions: Vec::new(),
            layout_errors: Vec::new(),
            leaf_depth: None,
            keep_repeats: false,
            misplaced: Vec::new(),
        }
    }

    fn should_scan(&self, options: SalvageOptions) -> bool {
        match options.orphan_scan {
            OrphanScan::Always => true,
            OrphanScan::Never => false,
            OrphanScan::WhenPagesLost => self.stats.pages_lost,
        }
    }

    fn is_table(&self) -> bool {
        matches!(self.shape, Shape::Table(_))
    }

    fn damage(&mut self, visit: &mut dyn FnMut(SalvageItem<'_>), d: Damage) {
        self.stats.damage += 1;
        visit(SalvageItem::Damage(d));
    }

    /// Damage that cuts pages off the tree.
    fn lost(&mut self, visit: &mut dyn FnMut(SalvageItem<'_>), d: Damage) {
        self.stats.pages_lost = true;
        self.damage(visit, d);
    }

    /// Records that the subtree at `pgno` (rowids in `(lo, hi]`) could not be entered.
    fn lost_subtree(&mut self, pgno: u32, depth: u32, lo: Option<i64>, hi: Option<i64>) {
        self.stats.lost_subtrees.push(LostSubtree {
            pgno,
            depth,
            lo,
            hi,
        });
    }

    /// Claims and reads b-tree page `pgno`; `None` (damage reported) when it
    /// cannot be walked. A page that cannot be walked for any reason but
    /// having been walked already is recorded as a lost subtree.
    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        bounds: (Option<i64>, Option<i64>),
        from_suspect: bool,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) -> Option<Vec<u8>> {
        let damage = |kind, detail| Damage {
            pgno,
            parent,
            kind,
            detail,
        };
        if depth > MAX_DEPTH {
            let d = damage(
                DamageKind::TooDeep,
                format!("page {pgno} is at depth {depth}, deeper than {MAX_DEPTH}"),
            );
            self.lost(visit, d);
            self.lost_subtree(pgno, depth, bounds.0, bounds.1);
            return None;
        }
        let from = || parent.map_or("the root pointer".to_string(), |p| format!("page {p}"));
        let why = if pgno == 0 {
            Some("page number 0".to_string())
        } else if pgno > self.page_count {
            Some(format!(
                "page {pgno} is beyond the last page {}",
                self.page_count
            ))
        } else if from_suspect && self.claimed.contains(pgno) {
            Some(format!(
                "page {pgno} belongs to another object (and {} is damaged)",
                from()
            ))
        } else if !self.owned.insert(pgno) {
            Some(format!(
                "page {pgno} is reached twice in this tree (a cycle or a shared page)"
            ))
        } else {
            None
        };
        if why.is_some() && !self.owned.contains(pgno) {
            self.lost_subtree(pgno, depth, bounds.0, bounds.1);
        }
        if let Some(why) = why {
            let d = damage(
                DamageKind::BadChildPointer,
                format!("child pointer from {}: {why}", from()),
            );
            self.lost(visit, d);
            return None;
        }
        self.stats.pages.push(pgno);
        let mut buf = self.spare.pop().unwrap_or_default();
        match self.src.read_page(pgno, &mut buf) {
            Ok(()) => Some(buf),
            Err(e) => {
                self.spare.push(buf);
                let d = damage(
                    DamageKind::PageUnreadable,
                    format!("page {pgno} cannot be read: {e}"),
                );
                self.lost(visit, d);
                self.lost_subtree(pgno, depth, bounds.0, bounds.1);
                None
            }
        }
    }

    /// Parses a loaded tree page of the expected kind and checks its layout:
    /// the page and whether its layout is damaged (reported), or `None`
    /// (reported) when it cannot be walked.
    fn open<'b>(
        &mut self,
        buf: &'b [u8],
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) -> Option<(BtreePage<'b>, bool)> {
        let damage = |kind, detail| Damage {
            pgno,
            parent,
            kind,
            detail,
        };
        let page = match BtreePage::parse(buf, pgno, self.usable) {
            Ok(p) => p,
            Err(e) => {
                self.lost(
                    visit,
                    damage(DamageKind::BadPageHeader, format!("page {pgno}: {e}")),
                );
                return None;
            }
        };
        let table = self.is_table();
        if page.page_type().is_table() != table {
            let tree = if table { "table" } else { "index" };
            let d = damage(
                DamageKind::WrongPageType,
                format!(
                    "page {pgno} is a {:?} page inside a {tree} b-tree",
                    page.page_type()
                ),
            );
            self.lost(visit, d);
            return None;
        }
        if page.page_type().is_leaf() {
            match self.leaf_depth {
                None => self.leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    let d = damage(
                        DamageKind::WrongPageType,
                        format!(
                            "leaf page {pgno} is at depth {depth}, the first leaf of this b-tree at depth {d}"
                        ),
                    );
                    self.damage(visit, d);
                }
                Some(_) => {}
            }
        }
        page.check_layout_into(&mut self.regions, &mut self.layout_errors);
        if self.layout_errors.is_empty() {
            return Some((page, false));
        }
        let (kind, detail) = super::btree::layout_damage(&self.layout_errors);
        let d = damage(kind, detail);
        if page.page_type().is_leaf() {
            self.damage(visit, d);
        } else {
            // Child pointers of a damaged interior page may be lost.
            self.lost(visit, d);
        }
        Some((page, true))
    }

    /// [`Salvager::sound_cells`] of the cells `candidate` names (all when it
    /// is empty), where a cell whose record cannot fit claims no bytes (see
    /// [`Salvager::records_fit`]): a cell is sound when it is sound either
    /// way (a cell that does not fit but overlaps nothing is still read,
    /// and yielded as damaged, as before).
    fn sound_cells_weighing_records(&self, page: &BtreePage<'_>, candidate: &[bool]) -> Vec<bool> {
        let fits = self.records_fit(page);
        let weighed: Vec<bool> = fits
            .iter()
            .enumerate()
            .map(|(i, f)| *f && candidate.get(i) != Some(&false))
            .collect();
        let plain = Self::sound_cells(page, candidate);
        let kind = Self::sound_cells(page, &weighed);
        plain.iter().zip(&kind).map(|(a, b)| *a || *b).collect()
    }

    /// For a page with a damaged layout: whether each cell's record may fit
    /// the shape (false when its header, as far as the cell holds it,
    /// already shows it cannot). When two cells overlap and one of them
    /// cannot be a record of this shape, the overlap is that cell's doing:
    /// it claims no bytes, and the other stands.
    fn records_fit(&self, page: &BtreePage<'_>) -> Vec<bool> {
        (0..usize::from(page.cell_count()))
            .map(|i| match page.cell(i) {
                Ok(c) => c
                    .payload()
                    .is_none_or(|p| check_record(self.shape, p.local, p.total_len).is_ok()),
                // where the cell cannot be located, its bytes are unknown
                Err(_) => true,
            })
            .collect()
    }

    /// For a page with a damaged layout: which cells lie wholly inside the
    /// cell content area and share no byte with another cell. Only the cells
    /// `candidate` names (all when it is empty) are weighed: a cell already
    /// refused (its rowid out of place) claims no bytes.
    fn sound_cells(page: &BtreePage<'_>, candidate: &[bool]) -> Vec<bool> {
        let n = usize::from(page.cell_count());
        let usable = page.usable_size();
        let content = page.content_start() as usize;
        let lowest = if content <= usable {
            content.max(page.cell_pointers_end())
        } else {
            page.cell_pointers_end()
        };
        let mut ok = vec![false; n];
        let mut regions: Vec<(usize, usize, usize)> = Vec::with_capacity(n);
        for (i, flag) in ok.iter_mut().enumerate() {
            if candidate.get(i) == Some(&false) {
                continue;
            }
            let Ok(start) = page.cell_offset(i) else {
                continue;
            };
            let Some(size) = page.cell_size_at(start) else {
                continue;
            };
            if start < lowest || start + size > usable {
                continue;
            }
            *flag = true;
            regions.push((start, start + size, i));
        }
        regions.sort_unstable();
        let mut reach: Option<(usize, usize)> = None; // (end, cell) of the farthest-reaching region so far
        for &(start, end, i) in &regions {
            if let Some((far_end, far_cell)) = reach
                && start < far_end
            {
                // ok: `i` and `far_cell` are cell indexes below `n`, the length of `ok`.
                ok[i] = false;
                ok[far_cell] = false;
            }
            if reach.is_none_or(|(far_end, _)| end > far_end) {
                reach = Some((end, i));
            }
        }
        ok
    }

    /// A payload's record whole: the cell's own bytes, or the copy
    /// [`Self::assemble`] made of a spilled one.
    fn whole<'a>(&'a self, payload: &Payload<'a>) -> &'a [u8] {
        if payload.first_overflow.is_none() {
            payload.local
        } else {
            &self.assembled
        }
    }

    /// Copies a spilled payload into `self.assembled`. `Ok(Some(_))` when the
    /// payload is whole but the chain's last page points on; `Err` when the
    /// chain is broken. From a damaged or orphaned page (`strict`) the chain
    /// may not enter pages other objects own.
    fn assemble(
        &mut self,
        payload: &Payload<'_>,
        strict: bool,
        via: Via,
    ) -> Result<Option<String>, String> {
        self.assembled.clear();
        self.assembled.extend_from_slice(payload.local);
        let per_page = u64::from(self.usable)
            .saturating_sub(OVERFLOW_DATA_OFFSET as u64)
            .max(1);
        let mut remaining = payload.total_len.saturating_sub(payload.local.len() as u64);
        let needed = remaining.div_ceil(per_page);
        if needed > u64::from(self.page_count) {
            return Err(format!(
                "a payload of {} bytes needs {needed} overflow pages, more than the database's {}",
                payload.total_len, self.page_count
            ));
        }
        let mut next = payload.first_overflow.unwrap_or(0);
        let mut from: Option<u32> = None;
        let mut hops = 0u64;
        let after =
            |from: Option<u32>| from.map_or("the cell".to_string(), |p| format!("page {p}"));
        while remaining > 0 {
            if next == 0 {
                return Err(format!(
                    "the overflow chain ends after {hops} pages, {remaining} bytes short"
                ));
            }
            if next > self.page_count {
                return Err(format!(
                    "overflow page {hops} (after {}) is page {next}, beyond the last page {}",
                    after(from),
                    self.page_count
                ));
            }
            if strict && self.claimed.contains(next) {
                return Err(format!(
                    "overflow page {hops} (after {}) is page {next}, which belongs to another object",
                    after(from)
                ));
            }
            if !self.owned.insert(next) {
                return Err(format!(
                    "overflow page {hops} (after {}) is page {next}, already used",
                    after(from)
                ));
            }
            match via {
                Via::Tree => self.stats.pages.push(next),
                Via::OrphanLeaf => self.stats.orphan_overflow_pages.push(next),
            }
            if let Err(e) = self.src.read_page(next, &mut self.overflow_page) {
                return Err(format!("overflow page {next} cannot be read: {e}"));
            }
            let take = remaining.min(per_page) as usize;
            let Some(data) = self
                .overflow_page
                .get(OVERFLOW_DATA_OFFSET..OVERFLOW_DATA_OFFSET + take)
            else {
                return Err(format!(
                    "overflow page {next} is shorter than the usable size"
                ));
            };
            self.assembled.extend_from_slice(data);
            remaining -= take as u64;
            hops += 1;
            from = Some(next);
            // ok: the slice above is longer than OVERFLOW_NEXT_OFFSET + 4 bytes.
            next = be_u32(&self.overflow_page, OVERFLOW_NEXT_OFFSET).unwrap_or(0);
        }
        if next != 0 {
            return Ok(Some(format!(
                "the last overflow page {} points on to page {next}",
                after(from)
            )));
        }
        Ok(None)
    }

    /// Yields one row (table) or entry (index), or says why it cannot be
    /// (quietly, without a `Damage` of its own, on a page whose damage is
    /// summed up after its cells). Returns false when the record is not
    /// whole or does not fit.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        rowid: i64,
        payload: &Payload<'_>,
        pgno: u32,
        parent: Option<u32>,
        cell: usize,
        via: Via,
        strict: bool,
        quiet: bool,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) -> bool {
        let table = self.is_table();
        let repeat = table && self.seen.contains(rowid);
        if repeat && !self.keep_repeats {
            match via {
                Via::OrphanLeaf => self.stats.duplicate_rowids += 1,
                Via::Tree => {
                    let d = Damage {
                        pgno,
                        parent,
                        kind: DamageKind::KeyOrder,
                        detail: format!(
                            "page {pgno} cell {cell}: rowid {rowid} was already found elsewhere in this tree; this copy is kept aside"
                        ),
                    };
                    self.damage(visit, d);
                    return self.repeated(rowid, payload, pgno, cell, strict, visit);
                }
            }
            return true;
        }
        let what = || {
            if table {
                format!("page {pgno} cell {cell} (rowid {rowid})")
            } else {
                format!("page {pgno} cell {cell}")
            }
        };
        self.assembled.clear();
        let (rowid, extra) = match self.whole_record(rowid, payload, strict, via) {
            Ok(found) => found,
            Err((kind, why)) => {
                let reason = format!("{}: {why}", what());
                self.stats.rows_damaged += 1;
                if !quiet {
                    let d = Damage {
                        pgno,
                        parent,
                        kind,
                        detail: reason.clone(),
                    };
                    self.damage(visit, d);
                }
                if !matches!(self.shape, Shape::Index { .. }) {
                    // the overflow pages read before the chain broke, if any
                    let partial: &[u8] = if self.assembled.is_empty() {
                        payload.local
                    } else {
                        &self.assembled
                    };
                    visit(SalvageItem::RowDamaged {
                        rowid,
                        pgno,
                        via,
                        reason,
                        partial: Some(partial),
                    });
                }
                return false;
            }
        };
        if let Some(why) = extra {
            let d = Damage {
                pgno,
                parent,
                kind: DamageKind::OverflowChainBroken,
                detail: format!("{}: {why}", what()),
            };
            self.damage(visit, d);
        }
        let rows_without_rowid = matches!(
            self.shape,
            Shape::Rows(_) | Shape::Index { rowid: false, .. }
        );
        match (via, table) {
            _ if rows_without_rowid => match via {
                Via::Tree => self.stats.rows_tree += 1,
                Via::OrphanLeaf => self.stats.rows_orphan += 1,
            },
            (Via::Tree, true) => {
                self.stats.rows_tree += 1;
                if !repeat {
                    self.seen.insert_new(rowid);
                }
            }
            (Via::OrphanLeaf, true) => {
                self.stats.rows_orphan += 1;
                if !repeat {
                    self.seen.insert_new(rowid);
                }
            }
            (Via::Tree, false) => {
                self.stats.rows_tree += 1;
                self.index_rowids.push(rowid);
            }
            (Via::OrphanLeaf, false) => {
                if self.seen.contains(rowid) {
                    self.stats.duplicate_rowids += 1;
                    return true;
                }
                self.stats.rows_orphan += 1;
                self.seen.insert_new(rowid);
            }
        }
        let whole = self.whole(payload);
        visit(SalvageItem::Row {
            rowid,
            payload: whole,
            pgno,
            via,
        });
        true
    }

    /// Yields a tree cell whose rowid was yielded before as
    /// [`SalvageItem::RowRepeated`] when its record is whole and fits;
    /// false (counted as a damaged row) when it is not.
    fn repeated(
        &mut self,
        rowid: i64,
        payload: &Payload<'_>,
        pgno: u32,
        cell: usize,
        strict: bool,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) -> bool {
        self.assembled.clear();
        if self
            .whole_record(rowid, payload, strict, Via::Tree)
            .is_err()
        {
            self.stats.rows_damaged += 1;
            return false;
        }
        let whole = self.whole(payload);
        visit(SalvageItem::RowRepeated {
            rowid,
            payload: whole,
            pgno,
            cell,
        });
        true
    }

    /// The cells the walk set aside on damaged leaves (rowid out of key
    /// order or outside the parent's bounds), now that every cell in order
    /// has claimed its rowid: a cell lying inside its page's cell content
    /// area is a row (the new table is built by rowid, so its place in the
    /// order does not matter) — whole, in part, or, when another row has
    /// its rowid, kept aside as [`SalvageItem::RowRepeated`]. Cells in order
    /// with their page's others (bounds aside) are weighed first. The rest
    /// are refused, as before.
    fn misplaced_cells(&mut self, visit: &mut dyn FnMut(SalvageItem<'_>)) {
        let mut list = std::mem::take(&mut self.misplaced);
        list.sort_by_key(|m| !m.in_page_order); // stable: page order within
        let mut buf = self.spare.pop().unwrap_or_default();
        for m in list {
            if !self.misplaced_cell(&m, &mut buf, visit) {
                self.stats.cells_refused += 1;
            }
        }
        self.spare.push(buf);
    }

    /// One set-aside cell (see [`Salvager::misplaced_cells`]): false when
    /// it is refused.
    fn misplaced_cell(
        &mut self,
        m: &Misplaced,
        buf: &mut Vec<u8>,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) -> bool {
        if self.src.read_page(m.pgno, buf).is_err() {
            return false;
        }
        let Ok(page) = BtreePage::parse(buf, m.pgno, self.usable) else {
            return false;
        };
        let Ok(start) = page.cell_offset(m.cell) else {
            return false;
        };
        let usable = page.usable_size();
        let content = page.content_start() as usize;
        let lowest = content.max(page.cell_pointers_end());
        let inside = page
            .cell_size_at(start)
            .is_some_and(|size| content <= usable && start >= lowest && start + size <= usable);
        let Ok(Cell::TableLeaf { rowid, payload }) = page.cell(m.cell) else {
            return false;
        };
        // a rowid out of place is no evidence of a row: only a whole
        // record that fits the table is (garbage over a page's cells makes
        // rowids out of place too)
        // (the local part's header is checked here; the overflow, if any,
        // is followed once, below)
        let fits = check_record(self.shape, payload.local, payload.total_len);
        if !inside {
            return false;
        }
        if !matches!(fits, Ok(Some(_))) && m.among_rows {
            let why = fits.err().unwrap_or_else(|| {
                "its record header runs past the cell's local payload".to_string()
            });
            visit(SalvageItem::CellSetAside {
                rowid: Some(rowid),
                payload: payload.local,
                total_len: payload.total_len,
                pgno: m.pgno,
                cell: m.cell,
                reason: format!(
                    "page {} cell {}: rowid {rowid} is out of key order and its record does not decode ({why})",
                    m.pgno, m.cell
                ),
            });
            return false;
        }
        if !matches!(fits, Ok(Some(_))) {
            return false;
        }
        self.stats.rows_misplaced += 1;
        if self.seen.contains(rowid) {
            return self.repeated(rowid, &payload, m.pgno, m.cell, true, visit);
        }
        self.emit(
            rowid,
            &payload,
            m.pgno,
            m.parent,
            m.cell,
            Via::Tree,
            true,
            true,
            visit,
        )
    }

    /// Checks a cell's record against the shape, assembling its overflow
    /// into `self.assembled`: (rowid, a note when the chain runs on past the
    /// payload). For an index the rowid is the record's last field.
    fn whole_record(
        &mut self,
        rowid: i64,
        payload: &Payload<'_>,
        strict: bool,
        via: Via,
    ) -> Result<(i64, Option<String>), (DamageKind, String)> {
        let bad = |why: String| (DamageKind::BadRecord, why);
        let early = check_record(self.shape, payload.local, payload.total_len).map_err(bad)?;
        let mut extra = None;
        let info = if payload.first_overflow.is_none() {
            early.ok_or_else(|| bad("the record header runs past the payload".into()))?
        } else {
            extra = self
                .assemble(payload, strict, via)
                .map_err(|why| (DamageKind::OverflowChainBroken, why))?;
            match early {
                Some(info) => info,
                None => check_record(self.shape, &self.assembled, payload.total_len)
                    .map_err(bad)?
                    .ok_or_else(|| bad("the record header runs past the payload".into()))?,
            }
        };
        if !matches!(self.shape, Shape::Index { rowid: true, .. }) {
            return Ok((rowid, extra));
        }
        let whole = self.whole(payload);
        let (t, offset) = info.last.unwrap_or((SERIAL_NULL, 0));
        let rowid = integer_at(whole, t, offset)
            .ok_or_else(|| bad("the last field is not an integer".into()))?;
        Ok((rowid, extra))
    }

    /// Walks the table subtree at `pgno`, whose rowids should lie in `(lo, hi]`.
    #[allow(clippy::too_many_arguments)]
    fn table_page(
        &mut self,
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        lo: Option<i64>,
        hi: Option<i64>,
        from_suspect: bool,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) {
        let Some(buf) = self.load(pgno, parent, depth, (lo, hi), from_suspect, visit) else {
            return;
        };
        self.table_body(&buf, pgno, parent, depth, lo, hi, visit);
        self.spare.push(buf);
    }

    #[allow(clippy::too_many_arguments)]
    fn table_body(
        &mut self,
        buf: &[u8],
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        lo: Option<i64>,
        hi: Option<i64>,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) {
        let Some((page, suspect)) = self.open(buf, pgno, parent, depth, visit) else {
            self.lost_subtree(pgno, depth, lo, hi);
            return;
        };
        if page.page_type().is_leaf() {
            return self.tree_leaf(&page, pgno, parent, lo, hi, suspect, visit);
        }
        let mut prev: Option<i64> = None;
        let mut order_reported = false;
        for i in 0..usize::from(page.cell_count()) {
            let (left_child, key) = match page.cell(i) {
                Ok(Cell::TableInterior { left_child, rowid }) => (left_child, rowid),
                Ok(_) => continue,
                Err(e) => {
                    let d = Damage {
                        pgno,
                        parent,
                        kind: DamageKind::CellOutOfBounds,
                        detail: e.to_string(),
                    };
                    if suspect {
                        self.stats.pages_lost = true;
                    } else {
                        self.lost(visit, d);
                    }
                    continue;
                }
            };
            let out_of_order = prev.is_some_and(|p| key <= p)
                || lo.is_some_and(|l| key <= l)
                || hi.is_some_and(|h| key > h);
            if out_of_order && !order_reported {
                order_reported = true;
                let d = key_order_damage(pgno, parent, i, "divider", key, prev, lo, hi);
                self.damage(visit, d);
            }
            let child_lo = prev.or(lo);
            self.table_page(
                left_child,
                Some(pgno),
                depth + 1,
                child_lo,
                Some(key),
                suspect,
                visit,
            );
            prev = Some(key);
        }
        if let Some(right) = page.right_child() {
            self.table_page(
                right,
                Some(pgno),
                depth + 1,
                prev.or(lo),
                hi,
                suspect,
                visit,
            );
        }
    }

    /// The rows of a table leaf reached by the walk.
    #[allow(clippy::too_many_arguments)]
    fn tree_leaf(
        &mut self,
        page: &BtreePage<'_>,
        pgno: u32,
        parent: Option<u32>,
        lo: Option<i64>,
        hi: Option<i64>,
        suspect: bool,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) {
        let n = usize::from(page.cell_count());
        let in_bounds = |r: i64| lo.is_none_or(|l| r > l) && hi.is_none_or(|h| r <= h);
        // On a damaged page the cells whose rowids keep order with the most
        // others are the page's rows; the rest are refused, and claim no
        // bytes when the survivors' overlaps are weighed.
        let ordered = if suspect && !self.keep_repeats {
            let rowids: Vec<Option<i64>> = (0..n)
                .map(|i| match page.cell(i) {
                    Ok(Cell::TableLeaf { rowid, .. }) => Some(rowid),
                    Ok(_) => None,
                    Err(_) => page.table_leaf_rowid(i),
                })
                .map(|r| r.filter(|&r| in_bounds(r)))
                .collect();
            longest_ascending(&rowids)
        } else {
            Vec::new()
        };
        // the same, bounds aside: of two misplaced cells sharing a rowid,
        // the one in order with the page's others is weighed first
        let in_page_order = if suspect && !self.keep_repeats {
            let rowids: Vec<Option<i64>> = (0..n).map(|i| page.table_leaf_rowid(i)).collect();
            longest_ascending(&rowids)
        } else {
            Vec::new()
        };
        let sound = if suspect {
            self.sound_cells_weighing_records(page, &ordered)
        } else {
            Vec::new()
        };
        let mut prev: Option<i64> = None;
        let mut order_reported = false;
        let mut refused = 0usize;
        let mut damaged = 0usize;
        let mut deferred = 0usize;
        for i in 0..n {
            let cell = page.cell(i);
            let rowid = match &cell {
                Ok(Cell::TableLeaf { rowid, .. }) => Some(*rowid),
                Ok(_) => None,
                Err(_) => page.table_leaf_rowid(i),
            };
            let Some(rowid) = rowid else {
                if suspect {
                    refused += 1;
                } else if let Err(e) = &cell {
                    self.stats.cells_refused += 1;
                    let d = Damage {
                        pgno,
                        parent,
                        kind: DamageKind::CellOutOfBounds,
                        detail: e.to_string(),
                    };
                    self.damage(visit, d);
                }
                continue;
            };
            let plausible = self.keep_repeats
                || if suspect {
                    ordered.get(i) == Some(&true)
                } else {
                    in_bounds(rowid) && prev.is_none_or(|p| rowid > p)
                };
            if suspect && !plausible {
                // weighed after the walk, once every cell in key order has
                // claimed its rowid (`misplaced_cells`)
                self.misplaced.push(Misplaced {
                    pgno,
                    parent,
                    cell: i,
                    in_page_order: in_page_order.get(i) == Some(&true),
                    among_rows: false,
                });
                deferred += 1;
                continue;
            }
            if !suspect && !plausible && !order_reported {
                order_reported = true;
                let d = key_order_damage(pgno, parent, i, "rowid", rowid, prev, lo, hi);
                self.damage(visit, d);
            }
            prev = Some(rowid);
            let payload = match cell {
                Ok(Cell::TableLeaf { payload, .. }) if !suspect || sound.get(i) == Some(&true) => {
                    payload
                }
                Ok(cell) => {
                    damaged += 1;
                    self.stats.rows_damaged += 1;
                    visit(SalvageItem::RowDamaged {
                        rowid,
                        pgno,
                        via: Via::Tree,
                        reason: format!(
                            "page {pgno} cell {i} (rowid {rowid}): the cell overlaps another or lies outside the cell content area"
                        ),
                        partial: cell.payload().map(|p| p.local),
                    });
                    continue;
                }
                Err(e) => {
                    let reason = format!("page {pgno} cell {i} (rowid {rowid}): {e}");
                    if suspect {
                        damaged += 1;
                    } else {
                        let d = Damage {
                            pgno,
                            parent,
                            kind: DamageKind::CellOutOfBounds,
                            detail: reason.clone(),
                        };
                        self.damage(visit, d);
                    }
                    self.stats.rows_damaged += 1;
                    visit(SalvageItem::RowDamaged {
                        rowid,
                        pgno,
                        via: Via::Tree,
                        reason,
                        partial: cut_short_payload(page, i),
                    });
                    continue;
                }
            };
            if !self.emit(
                rowid,
                &payload,
                pgno,
                parent,
                i,
                Via::Tree,
                suspect,
                suspect,
                visit,
            ) {
                damaged += 1;
            }
        }
        let among_rows = deferred > 0 && mostly_rows(self.whole_records(page), n);
        let from = self.misplaced.len() - deferred;
        for m in &mut self.misplaced[from..] {
            m.among_rows = among_rows;
        }
        self.stats.cells_refused += refused as u64;
        if suspect && refused + damaged + deferred > 0 {
            let d = Damage {
                pgno,
                parent,
                kind: DamageKind::BadRecord,
                detail: format!(
                    "page {pgno}: {refused} of its {n} cells cannot be read at all, {damaged} hold a rowid but no usable record, and {deferred} hold a rowid outside the bounds ({}, {}] or out of key order (kept where their rowid is no other row's and their bytes lie in the cell content area)",
                    lo.map_or("-inf".into(), |v| v.to_string()),
                    hi.map_or("+inf".into(), |v| v.to_string())
                ),
            };
            self.damage(visit, d);
        }
    }

    /// Walks the index subtree at `pgno`.
    fn index_page(
        &mut self,
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        from_suspect: bool,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) {
        let Some(buf) = self.load(pgno, parent, depth, (None, None), from_suspect, visit) else {
            return;
        };
        self.index_body(&buf, pgno, parent, depth, visit);
        self.spare.push(buf);
    }

    fn index_body(
        &mut self,
        buf: &[u8],
        pgno: u32,
        parent: Option<u32>,
        depth: u32,
        visit: &mut dyn FnMut(SalvageItem<'_>),
    ) {
        let Some((page, suspect)) = self.open(buf, pgno, parent, depth, visit) else {
            self.lost_subtree(pgno, depth, None, None);
            return;
        };
        let n = usize::from(page.cell_count());
        let sound = if suspect {
            self.sound_cells_weighing_records(&page, &[])
        } else {
            Vec::new()
        };
        let interior = !page.page_type().is_leaf();
        let mut refused = 0usize;
        let mut aside = Vec::new();
        for i in 0..n {
            let (left_child, payload) = match page.cell(i) {
                Ok(Cell::IndexLeaf { payload }) => (None, payload),
                Ok(Cell::IndexInterior {
                    left_child,
                    payload,
                }) => (Some(left_child), payload),
                Ok(_) => continue,
                Err(e) => {
                    if suspect {
                        refused += 1;
                        self.stats.pages_lost |= interior;
                    } else {
                        self.stats.cells_refused += 1;
                        let d = Damage {
                            pgno,
                            parent,
                            kind: DamageKind::CellOutOfBounds,
                            detail: e.to_string(),
                        };
                        if interior {
                            self.lost(visit, d);
                        } else {
                            self.damage(visit, d);
                        }
                    }
                    continue;
                }
            };
            if let Some(child) = left_child {
                self.index_page(child, Some(pgno), depth + 1, suspect, visit);
            }
            if suspect && sound.get(i) != Some(&true) {
                refused += 1;
                aside.push(i);
                continue;
            }
            if !self.emit(
                0,
                &payload,
                pgno,
                parent,
                i,
                Via::Tree,
                suspect,
                suspect,
                visit,
            ) {
                refused += 1;
            }
        }
        if !aside.is_empty() && mostly_rows(self.whole_records(&page), n) {
            for i in aside {
                self.set_aside(&page, i, visit);
            }
        }
        if let Some(right) = page.right_child() {
            self.index_page(right, Some(pgno), depth + 1, suspect, visit);
        }
        self.stats.cells_refused += refused as u64;
        if suspect && refused > 0 {
            let d = Damage {
                pgno,
                parent,
                kind: DamageKind::BadRecord,
                detail: format!("page {pgno}: {refused} of its {n} cells cannot be read"),
            };
            self.damage(visit, d);
        }
    }

    /// A WITHOUT ROWID table's cell refused on a damaged page (its bytes
    /// overlap another cell's, or its record does not fit) is set aside
    /// whole when it lies inside the page's cell content area and most of
    /// the page's cells are rows (the caller asks [`mostly_rows`]); one
    /// pointing elsewhere (into the header, past the page) holds no cell's
    /// bytes.
    fn set_aside(&self, page: &BtreePage<'_>, i: usize, visit: &mut dyn FnMut(SalvageItem<'_>)) {
        if !matches!(self.shape, Shape::Rows(_)) || !page.page_type().is_leaf() {
            return;
        }
        let Ok(cell) = page.cell(i) else {
            return;
        };
        let Some(payload) = cell.payload() else {
            return;
        };
        let usable = page.usable_size();
        let content = page.content_start() as usize;
        if content > usable {
            return;
        }
        let lowest = content.max(page.cell_pointers_end());
        let Ok(start) = page.cell_offset(i) else {
            return;
        };
        if start < lowest || page.cell_size_at(start).is_none_or(|n| start + n > usable) {
            return;
        }
        let why = match check_record(self.shape, payload.local, payload.total_len) {
            Err(e) => e,
            Ok(_) => "its bytes overlap another cell's".to_string(),
        };
        let pgno = page.pgno();
        visit(SalvageItem::CellSetAside {
            rowid: None,
            payload: payload.local,
            total_len: payload.total_len,
            pgno,
            cell: i,
            reason: format!("page {pgno} cell {i}, on a damaged page: {why}"),
        });
    }

    /// How many of a page's cells hold a record whose local part fits the
    /// shape (read from the page, order and overlaps aside).
    fn whole_records(&self, page: &BtreePage<'_>) -> usize {
        (0..usize::from(page.cell_count()))
            .filter(|&i| {
                page.cell(i).ok().is_some_and(|c| {
                    c.payload().is_some_and(|p| {
                        matches!(check_record(self.shape, p.local, p.total_len), Ok(Some(_)))
                    })
                })
            })
            .count()
    }

    /// Whether an unclaimed page is an orphaned page of this object: every
    /// cell decodes, table rowids strictly ascend, and every record header
    /// fits the shape.
    fn page_fits(&self, page: &BtreePage<'_>) -> bool {
        let mut prev: Option<i64> = None;
        for i in 0..usize::from(page.cell_count()) {
            let payload = match page.cell(i) {
                Ok(Cell::TableLeaf { rowid, payload }) => {
                    if prev.is_some_and(|p| rowid <= p) {
                        return false;
                    }
                    prev = Some(rowid);
                    payload
                }
                Ok(Cell::IndexLeaf { payload }) | Ok(Cell::IndexInterior { payload, .. }) => {
                    payload
                }
                _ => return false,
            };
            if check_record(self.shape, payload.local, payload.total_len).is_err() {
                return false;
            }
        }
        true
    }

    /// Scans every page that neither another object nor this tree owns for
    /// orphaned pages of this object, and yields their rows.
    fn orphan_scan(&mut self, visit: &mut dyn FnMut(SalvageItem<'_>)) {
        self.stats.orphan_scan = true;
        if !self.is_table() {
            self.seen = RowidSet::from_sorted(std::mem::take(&mut self.index_rowids));
        }
        let table = self.is_table();
        let mut buf = Vec::new();
        let mut unreadable_run = 0u32;
        let mut unrecognized = Vec::new();
        // Page 1 is always sqlite_schema's root.
        for pgno in 2..=self.page_count {
            if self.claimed.contains(pgno) || self.owned.contains(pgno) {
                continue;
            }
            self.stats.pages_scanned += 1;
            if self.src.read_page(pgno, &mut buf).is_err() {
                self.stats.pages_unreadable += 1;
                unreadable_run += 1;
                if unreadable_run >= MAX_UNREADABLE_RUN {
                    let d = Damage {
                        pgno,
                        parent: None,
                        kind: DamageKind::PageUnreadable,
                        detail: format!(
                            "the orphan scan stopped at page {pgno}: the last {unreadable_run} pages it tried cannot be read"
                        ),
                    };
                    self.damage(visit, d);
                    break;
                }
                continue;
            }
            unreadable_run = 0;
            let kind_ok = match buf.first() {
                Some(&b) if table => b == PageType::LeafTable as u8,
                Some(&b) => b == PageType::LeafIndex as u8 || b == PageType::InteriorIndex as u8,
                None => false,
            };
            if !kind_ok {
                unrecognized.push(pgno);
                continue;
            }
            let Ok(page) = BtreePage::parse(&buf, pgno, self.usable) else {
                self.stats.pages_rejected += 1;
                continue;
            };
            if page.cell_count() == 0 {
                continue;
            }
            page.check_layout_into(&mut self.regions, &mut self.layout_errors);
            if !self.layout_errors.is_empty() || !self.page_fits(&page) {
                self.stats.pages_rejected += 1;
                continue;
            }
            self.owned.insert(pgno);
            self.stats.orphan_leaves.push(pgno);
            for i in 0..usize::from(page.cell_count()) {
                let (rowid, payload) = match page.cell(i) {
                    Ok(Cell::TableLeaf { rowid, payload }) => (rowid, payload),
                    Ok(Cell::IndexLeaf { payload }) | Ok(Cell::IndexInterior { payload, .. }) => {
                        (0, payload)
                    }
                    _ => continue,
                };
                self.emit(
                    rowid,
                    &payload,
                    pgno,
                    None,
                    i,
                    Via::OrphanLeaf,
                    true,
                    false,
                    visit,
                );
            }
        }
        // overflow pages of orphaned rows were seen before the leaf that took them
        self.stats.pages_unrecognized = unrecognized
            .iter()
            .filter(|&&p| !self.owned.contains(p))
            .count() as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::btree::MemoryPages;
    use crate::format::varint::write_varint;

    use crate::format::btree::test_image::{PS, image, interior_cell, leaf_cell, put_page};

    /// One rowid out of place on a damaged page costs its own cell only
    /// (SQLite's fts5corrupt3-34.db: rowid 6 of 36 reads 4355; the greedy
    /// rule kept 4355 and refused the 30 cells after it).
    #[test]
    fn the_longest_ascending_run_of_rowids_is_kept() {
        let keys = |v: &[i64]| v.iter().map(|&k| Some(k)).collect::<Vec<_>>();
        let kept = |keep: Vec<bool>, keys: &[Option<i64>]| {
            keep.iter()
                .zip(keys)
                .filter(|(k, _)| **k)
                .map(|(_, v)| v.unwrap())
                .collect::<Vec<_>>()
        };
        let k = keys(&[1, 2, 3, 4, 5, 4355, 7, 8, 9]);
        assert_eq!(kept(longest_ascending(&k), &k), [1, 2, 3, 4, 5, 7, 8, 9]);
        let k = keys(&[1, 2, 3, 20, 5, 6, 7, 8]);
        assert_eq!(kept(longest_ascending(&k), &k), [1, 2, 3, 5, 6, 7, 8]);
        // repeats and unknown keys are never kept twice / at all; of two
        // runs as long, the one ending lowest
        let k = vec![Some(3), None, Some(3), Some(0), Some(4), None, Some(4)];
        assert_eq!(kept(longest_ascending(&k), &k), [0, 4]);
        assert_eq!(longest_ascending(&[]), Vec::<bool>::new());
        assert_eq!(longest_ascending(&[None, None]), [false, false]);
    }

    /// A record of one TEXT value and one integer.
    fn record(text: &str, n: i64) -> Vec<u8> {
        let mut types = Vec::new();
        write_varint(13 + 2 * text.len() as u64, &mut types);
        types.push(6);
        let mut r = vec![1 + types.len() as u8];
        r.extend_from_slice(&types);
        r.extend_from_slice(text.as_bytes());
        r.extend_from_slice(&n.to_be_bytes());
        r
    }

    fn shape() -> TableShape {
        TableShape {
            columns: 2,
            min_columns: 2,
            rowid_alias: None,
            kinds: vec![KindSet::TEXT, KindSet::INTEGER],
        }
    }

    /// Root 2 -> interior 3 (leaves 4, 5) and interior 6 (leaves 7, 8);
    /// page 9 is a table leaf of another table (claimed), page 10 free.
    fn two_level() -> Vec<u8> {
        let mut img = image(10);
        put_page(&mut img, 2, 5, &[interior_cell(3, 4)], Some(6));
        put_page(&mut img, 3, 5, &[interior_cell(4, 2)], Some(5));
        put_page(&mut img, 6, 5, &[interior_cell(7, 6)], Some(8));
        for (pg, rows) in [(4, [1, 2]), (5, [3, 4]), (7, [5, 6]), (8, [7, 8])] {
            let cells: Vec<_> = rows
                .iter()
                .map(|&r| leaf_cell(r, &record(&format!("c{r}"), r * 10)))
                .collect();
            put_page(&mut img, pg, 13, &cells, None);
        }
        put_page(&mut img, 9, 13, &[leaf_cell(1, b"\x02\x01\x07")], None);
        img
    }

    /// (rows, damaged rows, damage, stats, repeated rows)
    type Got = (
        Vec<(i64, Via)>,
        Vec<i64>,
        Vec<Damage>,
        SalvageStats,
        Vec<i64>,
    );

    fn run(img: Vec<u8>, claimed: &PageSet, options: SalvageOptions) -> Got {
        let src = MemoryPages::new(img).unwrap();
        let (mut rows, mut damaged, mut damage) = (Vec::new(), Vec::new(), Vec::new());
        let mut repeated = Vec::new();
        let stats = salvage_table_with(
            &src,
            2,
            &shape(),
            claimed,
            options,
            &mut |item| match item {
                SalvageItem::Row { rowid, via, .. } => rows.push((rowid, via)),
                SalvageItem::RowDamaged { rowid, .. } => damaged.push(rowid),
                SalvageItem::RowRepeated { rowid, .. } => repeated.push(rowid),
                SalvageItem::Damage(d) => damage.push(d),
                SalvageItem::CellSetAside { .. } => {}
            },
        );
        (rows, damaged, damage, stats, repeated)
    }

    fn claimed(pages: &[u32]) -> PageSet {
        let mut s = PageSet::new();
        for &p in pages {
            s.insert(p);
        }
        s
    }

    #[test]
    fn kinds_from_declared_types() {
        let t = KindSet::for_declared_type("TEXT", false);
        assert!(t.contains(KindSet::TEXT) && t.contains(KindSet::NULL));
        assert!(!t.contains(KindSet::INTEGER) && !t.contains(KindSet::REAL));
        let t = KindSet::for_declared_type("varchar(20)", true);
        assert!(!t.contains(KindSet::NULL) && t.contains(KindSet::BLOB));
        assert_eq!(KindSet::for_declared_type("INTEGER", false), KindSet::ANY);
        assert_eq!(KindSet::for_declared_type("", false), KindSet::ANY);
        // "INT" wins over "CHAR" (SQLite checks it first).
        assert_eq!(KindSet::for_declared_type("CHARINT", false), KindSet::ANY);
        assert_eq!(KindSet::of_serial_type(9), KindSet::INTEGER);
        assert_eq!(KindSet::of_serial_type(13), KindSet::TEXT);
        assert_eq!(KindSet::of_serial_type(12), KindSet::BLOB);
        assert_eq!(KindSet::of_serial_type(10), KindSet(0));
    }

    #[test]
    fn shape_from_columns() {
        let col = |decl_type, not_null, has_default| ColumnSpec {
            decl_type,
            not_null,
            has_default,
        };
        let s = TableShape::from_columns(
            &[
                col("INTEGER", false, false),
                col("TEXT", true, false),
                col("TEXT", true, true),
                col("", false, false),
            ],
            Some(0),
        );
        assert_eq!((s.columns, s.min_columns, s.rowid_alias), (4, 2, Some(0)));
        assert_eq!(s.kinds[1], KindSet::TEXT.union(KindSet::BLOB));
        assert_eq!(
            TableShape::from_columns(&[col("TEXT", false, false)], None).min_columns,
            1
        );
    }

    #[test]
    fn records_must_fit_exactly() {
        let s = shape();
        let r = record("abc", 5);
        assert!(
            check_record(Shape::Table(&s), &r, r.len() as u64)
                .unwrap()
                .is_some()
        );
        // One byte too many or too few.
        assert!(check_record(Shape::Table(&s), &r, r.len() as u64 + 1).is_err());
        assert!(check_record(Shape::Table(&s), &r[..r.len() - 1], r.len() as u64 - 1).is_err());
        // Wrong kinds, too few columns.
        let swapped = [3u8, 6, 15, 0, 0, 0, 0, 0, 0, 0, 1, b'x'];
        assert!(check_record(Shape::Table(&s), &swapped, 12).is_err());
        assert!(check_record(Shape::Table(&s), &[2, 15, b'x'], 3).is_err());
        // A prefix holding the whole header is judged; a shorter one is not.
        assert!(
            check_record(Shape::Table(&s), &r[..4], r.len() as u64)
                .unwrap()
                .is_some()
        );
        assert!(
            check_record(Shape::Table(&s), &r[..2], r.len() as u64)
                .unwrap()
                .is_none()
        );
        // Index: fields and an integer last field.
        assert!(
            check_record(
                Shape::Index {
                    fields: 2,
                    rowid: true
                },
                &r,
                r.len() as u64
            )
            .unwrap()
            .is_some()
        );
        assert!(
            check_record(
                Shape::Index {
                    fields: 3,
                    rowid: true
                },
                &r,
                r.len() as u64
            )
            .is_err()
        );
        let info = check_record(
            Shape::Index {
                fields: 2,
                rowid: true,
            },
            &r,
            r.len() as u64,
        )
        .unwrap()
        .unwrap();
        let (t, off) = info.last.unwrap();
        assert_eq!(integer_at(&r, t, off), Some(5));
    }

    #[test]
    fn healthy_tree_no_scan() {
        let (rows, damaged, damage, stats, _) =
            run(two_level(), &claimed(&[9]), SalvageOptions::default());
        assert!(damage.is_empty() && damaged.is_empty(), "{damage:?}");
        assert_eq!(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
        assert!(!stats.orphan_scan);
        assert_eq!(stats.pages, vec![2, 3, 4, 5, 6, 7, 8]);
        // Scanning anyway finds nothing: page 9 is claimed, or does not fit.
        for c in [claimed(&[9]), PageSet::new()] {
            let options = SalvageOptions {
                orphan_scan: OrphanScan::Always,
            };
            let (rows, _, _, stats, _) = run(two_level(), &c, options);
            assert_eq!(rows.len(), 8);
            assert!(stats.orphan_leaves.is_empty());
        }
    }

    #[test]
    fn zeroed_interior_page_orphans_are_found() {
        let mut img = two_level();
        img[2 * PS..3 * PS].fill(0); // page 3
        let (rows, damaged, damage, stats, _) = run(img, &claimed(&[9]), SalvageOptions::default());
        assert!(damaged.is_empty());
        assert_eq!(damage[0].kind, DamageKind::BadPageHeader);
        assert!(stats.pages_lost && stats.orphan_scan);
        assert_eq!(stats.orphan_leaves, vec![4, 5]);
        let tree: Vec<i64> = rows
            .iter()
            .filter(|r| r.1 == Via::Tree)
            .map(|r| r.0)
            .collect();
        let orphan: Vec<i64> = rows
            .iter()
            .filter(|r| r.1 == Via::OrphanLeaf)
            .map(|r| r.0)
            .collect();
        assert_eq!(tree, vec![5, 6, 7, 8]);
        assert_eq!(orphan, vec![1, 2, 3, 4]);
        assert_eq!(stats.rows_orphan, 4);
        // Never: the tree only.
        let mut img = two_level();
        img[2 * PS..3 * PS].fill(0);
        let options = SalvageOptions {
            orphan_scan: OrphanScan::Never,
        };
        let (rows, _, _, _, _) = run(img, &claimed(&[9]), options);
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn orphans_duplicating_tree_rows_are_skipped() {
        let mut img = two_level();
        // Page 10: a stale copy of leaf 7 (rows 5, 6), plus an unknown row 9.
        let cells: Vec<_> = [5, 6, 9]
            .iter()
            .map(|&r| leaf_cell(r, &record("old", r)))
            .collect();
        put_page(&mut img, 10, 13, &cells, None);
        let options = SalvageOptions {
            orphan_scan: OrphanScan::Always,
        };
        let (rows, _, _, stats, _) = run(img, &claimed(&[9]), options);
        assert_eq!(stats.duplicate_rowids, 2);
        assert_eq!(rows.last(), Some(&(9, Via::OrphanLeaf)));
        assert_eq!(rows.len(), 9);
    }

    #[test]
    fn garbage_leaf_yields_no_rows() {
        let mut img = two_level();
        // Garbage over the cell content of leaf 5 (rows 3, 4); pointers intact.
        let base = 4 * PS;
        let content = u16::from_be_bytes([img[base + 5], img[base + 6]]) as usize;
        let mut x = 0x9E37_79B9u32;
        for b in &mut img[base + content..base + PS] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let (rows, damaged, _, stats, _) = run(img, &claimed(&[9]), SalvageOptions::default());
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![1, 2, 5, 6, 7, 8]);
        assert!(damaged.iter().all(|r| [3, 4].contains(r)), "{damaged:?}");
        assert!(!stats.orphan_scan, "leaf damage loses no pages");
    }

    #[test]
    fn broken_overflow_chain_is_row_damaged() {
        // A 1200-byte record in 512-byte pages: 184 bytes on the leaf, 508 on page 3, 508 on page 4.
        let text = "x".repeat(1188);
        let payload = record(&text, 1);
        let build = |next_of_3: u32| {
            let mut img = image(4);
            let total = payload.len();
            let local =
                crate::format::page::local_payload_size(total as u64, 512, PageType::LeafTable);
            let mut cell = Vec::new();
            write_varint(total as u64, &mut cell);
            write_varint(1, &mut cell);
            cell.extend_from_slice(&payload[..local]);
            cell.extend_from_slice(&3u32.to_be_bytes());
            put_page(&mut img, 2, 13, &[cell], None);
            let rest = &payload[local..];
            let first = rest.len().min(508);
            img[2 * PS..2 * PS + 4].copy_from_slice(&next_of_3.to_be_bytes());
            img[2 * PS + 4..2 * PS + 4 + first].copy_from_slice(&rest[..first]);
            if rest.len() > first {
                img[3 * PS + 4..3 * PS + 4 + rest.len() - first].copy_from_slice(&rest[first..]);
            }
            img
        };
        let (rows, damaged, _, stats, _) =
            run(build(4), &PageSet::new(), SalvageOptions::default());
        assert_eq!(rows, vec![(1, Via::Tree)]);
        assert!(damaged.is_empty());
        assert_eq!(stats.pages, vec![2, 3, 4]);
        for bad in [0, 99, 2, 3] {
            let (rows, damaged, damage, _, _) =
                run(build(bad), &PageSet::new(), SalvageOptions::default());
            assert!(rows.is_empty(), "next {bad}");
            assert_eq!(damaged, vec![1], "next {bad}");
            assert_eq!(damage[0].kind, DamageKind::OverflowChainBroken);
        }
    }

    #[test]
    fn index_salvage() {
        let mut img = image(6);
        let entry = |k: &str, r: i64| {
            let rec = record(k, r);
            let mut c = Vec::new();
            write_varint(rec.len() as u64, &mut c);
            c.extend_from_slice(&rec);
            c
        };
        let interior = |child: u32, k: &str, r: i64| {
            let mut c = child.to_be_bytes().to_vec();
            c.extend(entry(k, r));
            c
        };
        put_page(&mut img, 2, 2, &[interior(3, "b", 2)], Some(4));
        put_page(&mut img, 3, 10, &[entry("a", 1)], None);
        put_page(&mut img, 4, 10, &[entry("c", 3), entry("d", 4)], None);
        put_page(&mut img, 5, 10, &[entry("e", 5)], None); // orphan
        let src = MemoryPages::new(img.clone()).unwrap();
        let mut got = Vec::new();
        let options = SalvageOptions {
            orphan_scan: OrphanScan::Always,
        };
        let stats = salvage_index_with(&src, 2, 2, &PageSet::new(), options, &mut |e| {
            if let SalvageEntry::Entry { rowid, via, .. } = e {
                got.push((rowid, via));
            }
        });
        assert_eq!(
            got,
            vec![
                (1, Via::Tree),
                (2, Via::Tree),
                (3, Via::Tree),
                (4, Via::Tree),
                (5, Via::OrphanLeaf)
            ]
        );
        assert_eq!(stats.orphan_leaves, vec![5]);
        // Zero leaf 4: its entries are gone, the scan runs and finds only page 5.
        img[3 * PS..4 * PS].fill(0);
        let src = MemoryPages::new(img).unwrap();
        let mut got = Vec::new();
        let stats = salvage_index(&src, 2, 2, &PageSet::new(), &mut |e| {
            if let SalvageEntry::Entry { rowid, .. } = e {
                got.push(rowid);
            }
        });
        assert_eq!(got, vec![1, 2, 5]);
        assert!(stats.orphan_scan);
    }

    /// An index of a WITHOUT ROWID table: each entry is (key, primary key),
    /// both text. `salvage_index` refuses them (no integer rowid);
    /// `salvage_without_rowid_index` yields each with rowid 0, the orphaned
    /// leaf's too, and an orphan repeating a tree entry is yielded again.
    #[test]
    fn without_rowid_index_salvage() {
        let text_pair = |k: &str, pk: &str| {
            let mut types = Vec::new();
            write_varint(13 + 2 * k.len() as u64, &mut types);
            write_varint(13 + 2 * pk.len() as u64, &mut types);
            let mut rec = vec![1 + types.len() as u8];
            rec.extend_from_slice(&types);
            rec.extend_from_slice(k.as_bytes());
            rec.extend_from_slice(pk.as_bytes());
            let mut c = Vec::new();
            write_varint(rec.len() as u64, &mut c);
            c.extend_from_slice(&rec);
            c
        };
        let mut img = image(6);
        let mut divider = 4u32.to_be_bytes().to_vec();
        divider.extend(text_pair("b@x", "C2"));
        put_page(&mut img, 2, 2, &[divider], Some(3));
        put_page(&mut img, 3, 10, &[text_pair("c@x", "C3")], None);
        // leaf 4, (a@x, C1), is lost: zeroed
        // an orphaned leaf: C1 once more, and a copy of the tree's C3
        put_page(
            &mut img,
            5,
            10,
            &[text_pair("a@x", "C1"), text_pair("c@x", "C3")],
            None,
        );
        let src = MemoryPages::new(img).unwrap();
        let pk_of = |payload: &[u8]| {
            let mut rec = crate::format::record::Record::default();
            rec.parse(payload).unwrap();
            match rec.get(payload, 1).unwrap() {
                crate::format::record::ValueRef::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let mut got = Vec::new();
        let stats = salvage_without_rowid_index(&src, 2, 2, &PageSet::new(), &mut |e| {
            if let SalvageEntry::Entry {
                payload,
                rowid,
                via,
                ..
            } = e
            {
                assert_eq!(rowid, 0);
                got.push((pk_of(payload), via));
            }
        });
        assert_eq!(
            got,
            vec![
                ("C2".to_string(), Via::Tree),
                ("C3".to_string(), Via::Tree),
                ("C1".to_string(), Via::OrphanLeaf),
                ("C3".to_string(), Via::OrphanLeaf),
            ]
        );
        assert!(stats.orphan_scan);
        assert_eq!(stats.orphan_leaves, vec![5]);
        assert_eq!((stats.rows_tree, stats.rows_orphan), (2, 2));
        // the rowid index's reading refuses every entry: none ends with an integer
        let mut n = 0;
        salvage_index(&src, 2, 2, &PageSet::new(), &mut |e| {
            if let SalvageEntry::Entry { .. } = e {
                n += 1;
            }
        });
        assert_eq!(n, 0);
        // nor does a record of another field count pass
        let mut n = 0;
        salvage_without_rowid_index(&src, 2, 3, &PageSet::new(), &mut |e| {
            if let SalvageEntry::Entry { .. } = e {
                n += 1;
            }
        });
        assert_eq!(n, 0);
    }

    #[test]
    fn every_single_byte_corruption_terminates() {
        let img = two_level();
        let c = claimed(&[9]);
        let options = SalvageOptions {
            orphan_scan: OrphanScan::Always,
        };
        for at in PS..img.len() {
            for v in [0x00, 0xff, 0x02, 0x0d, 0x05] {
                let mut b = img.clone();
                b[at] = v;
                let (rows, _, _, _, _) = run(b.clone(), &c, options);
                // Never a row twice, never a row that does not fit.
                let mut ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
                ids.sort_unstable();
                let n = ids.len();
                ids.dedup();
                assert_eq!(ids.len(), n, "byte {at} = {v:#x}");
                let src = MemoryPages::new(b).unwrap();
                salvage_index_with(&src, 2, 2, &c, options, &mut |_| {});
                salvage_without_rowid_index(&src, 2, 2, &c, &mut |_| {});
            }
        }
    }
}
