//! Table repair in place: when the only damaged b-tree is one rowid table,
//! and its damage is confined to leaf pages whose parents are sound, the
//! work copy of the file is mended where it is instead of being built anew.
//! Every other table and index keeps its pages; the damaged table keeps
//! every row of its sound leaves where it is. Only the damaged leaves are
//! replaced, their readable rows put back, the lost rows named, restored or
//! listed exactly as the full rebuild does (`restore.rs`), and the table's
//! indexes rebuilt from its rows (`REINDEX`). On a 5,000,000-customer file
//! the full rebuild spends most of its time copying and indexing tables
//! that were never damaged.
//!
//! The steps, on the work copy (a fresh copy of the locked original):
//!
//! 1. read only: the trees walked; the table's rows salvaged, page by page,
//!    to learn which leaves are damaged and which rows those still hold,
//!    and every rowid the table holds; each damaged leaf's rowid bounds
//!    from its parent; the rows the table lost named by its indexes'
//!    entries (before anything is written, so that the names come from the
//!    file's own entries);
//! 2. each damaged leaf rewritten as a sound leaf (pages.rs) holding the
//!    rows it still had, byte for byte, and, for each lost row its indexes
//!    name, a stand-in row rebuilt from those index entries (each indexed
//!    column's value as the entries store it, NULL elsewhere) — or, where
//!    nothing is left, one placeholder row of NULL;
//! 3. in one transaction: the stand-in rows deleted as SQLite deletes any
//!    row, index entries and all — so the indexes lose exactly their stale
//!    entries and are not rebuilt; the placeholders deleted (SQLite's own
//!    b-tree code merges emptied leaves with their siblings); then the lost
//!    rows restored from the snapshot or listed, and the customers other
//!    tables name restored or listed (`restore.rs`), as the full rebuild
//!    does. Where stand-in rows cannot be made (an index on an expression,
//!    a partial index, an entry missing or two entries disagreeing) or
//!    SQLite does not find their entries, the table's indexes are rebuilt
//!    from its rows instead (`REINDEX`).
//!
//! Where any condition does not hold — another tree damaged, an interior
//! page, a page no tree owns, a damaged page another tree claims, overflow
//! pages hanging from a damaged leaf, a WITHOUT ROWID table, a trigger on
//! the table, a file SQLite would not read as it is — nothing is written
//! and the caller builds the new database as before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::format::btree::{DamageKind, PageSource};
use crate::format::page::{BtreePage, Cell, PageType};
use crate::format::record::{Record, encode_record};
use crate::format::salvage::{self, SalvageItem, SalvageStats, Via};
use crate::schema::{SchemaObject, quote_ident};

use super::rows;
use super::source::{SchemaOrigin, Source};
use super::table::TargetTable;
use crate::repair::pages::LeafRows;

use super::{Copied, InPlace, RebuildOutcome, Request, Rowids, TableProvenance, Trees, restore};

/// A leaf's rowid bounds `(lo, hi]` from its parent (None: unbounded).
type Bounds = (Option<i64>, Option<i64>);

/// What the read-only pass learned of the damaged table.
struct Salvaged {
    /// Rows of sound leaves: left where they are.
    in_place: u64,
    /// Rows of damaged leaves that could be read whole, by leaf: put back
    /// as they were stored (rowid, record).
    readable: BTreeMap<u32, Vec<(i64, Vec<u8>)>>,
    have: Rowids,
    damaged_rows: BTreeSet<i64>,
    partials: BTreeMap<i64, rows::Partial>,
    /// Leaves with damage.
    pages: BTreeSet<u32>,
    /// Leaves whose rows were left in place.
    kept: BTreeSet<u32>,
    stats: SalvageStats,
}

/// The rows of one leaf as the salvage meets them.
#[derive(Default)]
struct Leaf {
    pgno: u32,
    rows: Vec<(i64, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
}

impl Leaf {
    /// The leaf is done: its rows stay where they are, or — on a damaged
    /// leaf — are kept to be put back (a record that does not decode is a
    /// damaged row).
    fn flush(&mut self, s: &mut Salvaged, src: &Source) {
        if s.pages.contains(&self.pgno) {
            let mut rec = Record::default();
            for (rowid, r) in self.rows.drain(..) {
                let bytes = &self.bytes[r];
                match rows::record_values(&mut rec, bytes, src.encoding) {
                    Some(_) => {
                        s.readable
                            .entry(self.pgno)
                            .or_default()
                            .push((rowid, bytes.to_vec()));
                    }
                    None => {
                        s.damaged_rows.insert(rowid);
                    }
                }
            }
        } else {
            s.in_place += self.rows.len() as u64;
            s.kept.insert(self.pgno);
            self.rows.clear();
        }
        self.bytes.clear();
    }
}

/// What step 1 read, everything steps 2 and 3 need (with the source).
struct Found {
    trees: Trees,
    t: TargetTable,
    s: Salvaged,
    bounds: BTreeMap<u32, Bounds>,
    /// The lost rows the indexes name, and whether one names every row.
    named: (BTreeMap<i64, Option<String>>, bool),
    /// The stand-in rows' records, when they can be made.
    stand_ins: Option<BTreeMap<i64, Vec<u8>>>,
    /// How many indexes the table has.
    indexes: usize,
}

/// What step 2 wrote.
struct Rewrite {
    leaves: Vec<(u32, LeafRows)>,
    /// Rowids of the stand-in rows and of the placeholders, to delete.
    stand_ins: Vec<i64>,
    placeholders: Vec<i64>,
}

/// Mends `work` in place when the damage allows it (see the module
/// documentation). `Ok(None)`: it does not; nothing was written. An error
/// after the first write leaves `work` changed: the caller discards it.
pub fn repair_in_place(work: &Path, req: &Request<'_>) -> Result<Option<RebuildOutcome>> {
    let t0 = std::time::Instant::now();
    let snap = match req.snapshot {
        Some(p) => Some(crate::db::open_read_only(p)?),
        None => None,
    };
    // the page reader's descriptor of the work copy stays open until
    // SQLite is done with the file (closing it would drop SQLite's locks)
    let src = Source::open(work)?;
    let Some(f) = find(&src, work, req, snap.as_ref())? else {
        return Ok(None);
    };
    crate::check::timing("in place: damage read", t0);
    // from here on the work copy changes
    let Some(w) = rewrite(work, &f)? else {
        return Ok(None);
    };
    crate::check::timing("in place: damaged leaves rewritten", t0);
    let conn =
        Connection::open(work).with_context(|| format!("{}: cannot open", work.display()))?;
    crate::repair::interrupt::watch(&conn);
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN")?;
    let out = mend(&conn, &src, f, &w, snap.as_ref(), req)?;
    conn.execute_batch("COMMIT")?;
    drop(conn);
    crate::check::timing("in place: committed", t0);
    Ok(Some(out))
}

/// Step 1, read only: `None` when the damage is not the kind mended in
/// place.
fn find(
    src: &Source,
    work: &Path,
    req: &Request<'_>,
    snap: Option<&Connection>,
) -> Result<Option<Found>> {
    let Some(obj) = damaged_table(src, req) else {
        return Ok(None);
    };
    let trees = Trees::walk(src);
    if !only_damaged(src, &trees, &obj) || has_unowned_pages(src, &trees) {
        return Ok(None);
    }
    let root = u32::try_from(obj.rootpage).unwrap_or(0);
    let read = crate::db::open_read_only(work)?;
    let t = TargetTable::read(&read, &obj.name, obj.sql.as_deref().unwrap_or(""), root)?;
    if t.without_rowid {
        return Ok(None);
    }
    let claimed = trees.claimed_by_others(src, root);
    let Some(mut s) = salvage_by_page(src, &t, &claimed) else {
        return Ok(None);
    };
    let walked: BTreeSet<u32> = s.stats.pages.iter().copied().collect();
    let Some(bounds) = leaf_bounds(src, root, &s.pages, &claimed, &walked) else {
        return Ok(None);
    };
    s.have.seal();
    let indexes = super::indexes_of(src, &t.name).count();
    let mut stand_ins = StandIns {
        usable: !t.columns.iter().any(|c| c.hidden != 0)
            && !super::indexes_of(src, &t.name).any(crate::schema::is_partial_index),
        rows: BTreeMap::new(),
    };
    let ctx = restore::Ctx {
        conn: &read,
        src,
        trees: &trees,
        snap,
        id_column: customer_id_column(&t, req),
        stamp: req.stamp,
    };
    let named = restore::name_by_indexes_with(&ctx, &t, &s.have, |e| stand_ins.take(&t, &e));
    drop(read);
    Ok(Some(Found {
        trees,
        t,
        s,
        bounds,
        named,
        stand_ins: stand_ins.records(indexes),
        indexes,
    }))
}

fn customer_id_column<'r>(t: &TargetTable, req: &Request<'r>) -> Option<&'r str> {
    t.name
        .eq_ignore_ascii_case(req.customer_table)
        .then_some(req.id_column)
}

/// Step 2: the damaged leaves rewritten, with the stand-in rows where they
/// can be made and fit (else without). `None` (nothing written) when a
/// leaf's bounds leave no rowid for a placeholder.
fn rewrite(work: &Path, f: &Found) -> Result<Option<Rewrite>> {
    // a stand-in row outside every damaged leaf: none are used
    let with = leaf_rows(&f.s, &f.bounds, f.stand_ins.as_ref());
    let Some(w) = with.or_else(|| leaf_rows(&f.s, &f.bounds, None)) else {
        return Ok(None);
    };
    match crate::repair::pages::table_leaves(work, &w.leaves) {
        Ok(()) => Ok(Some(w)),
        // the stand-in rows do not fit beside the rows a leaf still has
        // (nothing was written): without them
        Err(_) if !w.stand_ins.is_empty() => {
            let Some(w) = leaf_rows(&f.s, &f.bounds, None) else {
                return Ok(None);
            };
            crate::repair::pages::table_leaves(work, &w.leaves)?;
            Ok(Some(w))
        }
        Err(e) => Err(e),
    }
}

/// Step 3, in the transaction: the stand-ins and placeholders deleted (or
/// the indexes rebuilt), the lost rows restored or listed, the customers
/// other tables name restored or listed; the table's account.
fn mend(
    conn: &Connection,
    src: &Source,
    f: Found,
    w: &Rewrite,
    snap: Option<&Connection>,
    req: &Request<'_>,
) -> Result<RebuildOutcome> {
    let Found {
        trees,
        t,
        s,
        named,
        indexes,
        ..
    } = f;
    let mut out = RebuildOutcome::default();
    let pages: Vec<u32> = s.pages.iter().copied().collect();
    let in_place = s.in_place;
    let deletions = Deletions {
        stand_ins: &w.stand_ins,
        placeholders: &w.placeholders,
        reindex: req.in_place.is_some_and(|p| p.rebuild_indexes),
    };
    let (copied, reindexed) = put_back(conn, &t, s, named, &deletions)?;
    let ctx = restore::Ctx {
        conn,
        src,
        trees: &trees,
        snap,
        id_column: customer_id_column(&t, req),
        stamp: req.stamp,
    };
    let mut prov = restore::account(&ctx, &t, copied, &mut out)
        .with_context(|| format!("accounting for the rows of {}", t.name))?;
    let tables: Vec<SchemaObject> = src
        .schema
        .iter()
        .filter(|o| o.kind == "table")
        .cloned()
        .collect();
    restore::restore_referenced(conn, snap, &tables, req, &mut out)
        .context("restoring the customers other tables name")?;
    if let Some(mut lost) = prov.lost.take() {
        restore::lost_in_snapshot(&ctx, &t, &mut lost, &mut out)?;
        prov.lost = Some(lost);
    }
    out.tables.insert(0, prov);
    let indexes_done = if reindexed {
        "the table's indexes rebuilt from its rows".to_string()
    } else {
        format!(
            "the {} index entries of its {} lost rows removed by deleting stand-in rows made from them (the indexes were not rebuilt)",
            w.stand_ins.len() * indexes,
            w.stand_ins.len()
        )
    };
    let list: Vec<String> = pages.iter().map(u32::to_string).collect();
    out.step(
        "patch_table_pages",
        Some(&t.name),
        format!(
            "damage confined to {} leaf page(s) of the table ({}): each was replaced in a copy of the file, the rows it still held put back as they were; \
             the table's {in_place} rows on sound pages and every other table and index kept as they were; {indexes_done}",
            pages.len(),
            list.join(", "),
        ),
    );
    if t.name.eq_ignore_ascii_case(req.customer_table) {
        out.customers = crate::sql_bytes::query_row(
            conn,
            &format!("SELECT count(*) FROM {}", quote_ident(&t.name)),
            &[],
            |r| r.get(0),
        )?;
    }
    out.sort_ids();
    Ok(out)
}

/// The one table whose tree the check of the live file placed damage in,
/// when the file reads as it is: `req.in_place` names it.
fn damaged_table(src: &Source, req: &Request<'_>) -> Option<SchemaObject> {
    let InPlace { table: name, .. } = req.in_place?;
    let sound_frame = src.header_rebuilt.is_none()
        && src.schema_origin == SchemaOrigin::Sqlite
        && src.sqlite_readable
        // no pointer maps to follow the pages that move
        && src.header.largest_root_page == 0;
    if !sound_frame {
        return None;
    }
    let obj = src.schema.iter().find(|o| {
        o.kind == "table" && o.name.eq_ignore_ascii_case(name) && o.rootpage > 1 && o.sql.is_some()
    })?;
    let sql = obj.sql.as_deref().unwrap_or("");
    let plain = !crate::schema::is_without_rowid(sql)
        && !crate::schema::is_virtual_table(obj)
        && !obj.name.to_ascii_lowercase().starts_with("sqlite_");
    // a trigger would fire on the rows deleted and put back
    let triggers = src
        .schema
        .iter()
        .any(|o| o.kind == "trigger" && o.tbl_name.eq_ignore_ascii_case(&obj.name));
    (plain && !triggers).then(|| obj.clone())
}

/// Whether every tree but `obj`'s is sound, its indexes' included (its own
/// may be sound as a structure, with damaged records: the salvage tells).
fn only_damaged(src: &Source, trees: &Trees, obj: &SchemaObject) -> bool {
    let root = u32::try_from(obj.rootpage).unwrap_or(0);
    crate::schema::root_pages(&src.schema)
        .iter()
        .all(|r| *r == root || trees.sound.contains(r))
}

/// Whether some page of the file belongs to no tree, list or map: a lost
/// interior page's subtree, a damaged leaf's overflow pages, a dropped
/// object's pages. Those are the full rebuild's to read.
fn has_unowned_pages(src: &Source, trees: &Trees) -> bool {
    let used = trees.used_by(src, |_, _| true);
    (1..=src.pager.page_count()).any(|p| !used.contains(p))
}

/// The table's rows, page by page: those of a leaf with any damage (a row
/// that cannot be read, a damaged layout, the page itself unreadable) are
/// kept to be put back; the others are only counted. `None` when rows come
/// from pages outside the tree, when a cell's rowid is out of key order on
/// its damaged leaf, or when a tree rowid repeats.
fn salvage_by_page(
    src: &Source,
    t: &TargetTable,
    claimed: &crate::format::btree::PageSet,
) -> Option<Salvaged> {
    let mut s = Salvaged {
        in_place: 0,
        readable: BTreeMap::new(),
        have: Rowids::default(),
        damaged_rows: BTreeSet::new(),
        partials: BTreeMap::new(),
        pages: BTreeSet::new(),
        kept: BTreeSet::new(),
        stats: SalvageStats::default(),
    };
    // the rows of the leaf being read, their records one after the other:
    // whether they stay depends on damage met anywhere on that leaf, before
    // or after them, and only a damaged leaf's rows are decoded
    let mut leaf = Leaf::default();
    let mut outside = false;
    let shape = t.shape();
    let stats = salvage::salvage_table(&src.pager, t.source_root, &shape, claimed, &mut |item| {
        let pg = match &item {
            // a second cell under a taken rowid goes to quarantine: the
            // full rebuild's to do
            SalvageItem::RowRepeated { .. } | SalvageItem::CellSetAside { .. } => {
                outside = true;
                return;
            }
            SalvageItem::Row { pgno, .. } | SalvageItem::RowDamaged { pgno, .. } => *pgno,
            SalvageItem::Damage(d) => {
                if matches!(d.kind, DamageKind::BadChildPointer | DamageKind::TooDeep) {
                    outside = true;
                }
                s.pages.insert(d.pgno);
                return;
            }
        };
        if pg != leaf.pgno {
            leaf.flush(&mut s, src);
            leaf.pgno = pg;
        }
        match item {
            SalvageItem::Row {
                rowid,
                payload,
                via,
                ..
            } => {
                if via == Via::OrphanLeaf {
                    outside = true;
                    return;
                }
                s.have.extend(Some(rowid));
                let start = leaf.bytes.len();
                leaf.bytes.extend_from_slice(payload);
                leaf.rows.push((rowid, start..leaf.bytes.len()));
            }
            SalvageItem::RowDamaged {
                rowid,
                partial,
                reason,
                ..
            } => {
                s.damaged_rows.insert(rowid);
                s.pages.insert(pg);
                if let Some(bytes) = partial {
                    s.partials
                        .insert(rowid, rows::Partial::read(bytes, src.encoding, reason));
                }
            }
            SalvageItem::Damage(_)
            | SalvageItem::RowRepeated { .. }
            | SalvageItem::CellSetAside { .. } => {}
        }
    });
    leaf.flush(&mut s, src);
    // damage named after a leaf's rows were taken as sound (never expected:
    // a page's damage comes before the next page's rows)
    let late = s.pages.iter().any(|p| s.kept.contains(p));
    // (a cell out of key order may hold a rowid outside its page's bounds,
    // where a page mended in place cannot hold it: the full rebuild's)
    if outside || late || stats.rows_orphan > 0 || stats.rows_misplaced > 0 || s.pages.is_empty() {
        return None;
    }
    s.stats = stats;
    Some(s)
}

/// Each damaged page's rowid bounds `(lo, hi]` from its parent, walking the
/// table's interior pages from the root. `None` unless every damaged page
/// is a leaf's place (no interior page, not the root, met once) below a
/// sound interior page, holds no cell whose overflow pages the table's walk
/// followed (`walked`: the pages it claimed), and is no other tree's page.
fn leaf_bounds(
    src: &Source,
    root: u32,
    damaged: &BTreeSet<u32>,
    claimed: &crate::format::btree::PageSet,
    walked: &BTreeSet<u32>,
) -> Option<BTreeMap<u32, Bounds>> {
    if damaged.contains(&root) {
        return None;
    }
    let count = src.pager.page_count();
    let usable = src.pager.usable_size();
    let mut found: BTreeMap<u32, Bounds> = BTreeMap::new();
    let mut buf = Vec::new();
    // (page, lo, hi, depth)
    let mut stack = vec![(root, None::<i64>, None::<i64>, 0u32)];
    while let Some((pg, lo, hi, depth)) = stack.pop() {
        if depth > 40 {
            return None;
        }
        src.pager.read_page(pg, &mut buf).ok()?;
        let page = BtreePage::parse(&buf, pg, usable).ok()?;
        match page.page_type() {
            PageType::InteriorTable => {}
            PageType::LeafTable => continue,
            _ => return None,
        }
        if damaged.contains(&pg) {
            return None;
        }
        let mut prev = lo;
        let mut children = Vec::new();
        for i in 0..usize::from(page.cell_count()) {
            let Ok(Cell::TableInterior { left_child, rowid }) = page.cell(i) else {
                return None;
            };
            children.push((left_child, prev, Some(rowid)));
            prev = Some(rowid);
        }
        children.push((page.right_child()?, prev, hi));
        for (child, clo, chi) in children {
            if damaged.contains(&child) {
                if found.insert(child, (clo, chi)).is_some() {
                    return None;
                }
            } else {
                stack.push((child, clo, chi, depth + 1));
            }
        }
    }
    let every = damaged
        .iter()
        .all(|&p| found.contains_key(&p) && p >= 2 && p <= count && !claimed.contains(p));
    if !every {
        return None;
    }
    for &p in damaged {
        if leaf_with_overflow(src, p, usable, &mut buf, walked) {
            return None;
        }
    }
    Some(found)
}

/// Whether page `p` reads as a page with a cell whose overflow chain the
/// table's walk followed (those pages would be left to no tree once the
/// page is replaced) or as an interior page (its subtree would be). A cell
/// of garbage naming a page the walk never took owns nothing.
fn leaf_with_overflow(
    src: &Source,
    p: u32,
    usable: u32,
    buf: &mut Vec<u8>,
    walked: &BTreeSet<u32>,
) -> bool {
    if src.pager.read_page(p, buf).is_err() {
        return false;
    }
    let Ok(page) = BtreePage::parse(buf, p, usable) else {
        return false;
    };
    if !page.page_type().is_leaf() {
        return true;
    }
    (0..usize::from(page.cell_count())).any(|i| {
        page.cell(i)
            .ok()
            .and_then(|c| c.payload().and_then(|p| p.first_overflow))
            .is_some_and(|ov| walked.contains(&ov))
    })
}

/// A rowid within a damaged leaf's bounds for its placeholder row: the
/// upper bound where there is one, else one past the lower.
fn placeholder_rowid((lo, hi): Bounds) -> Option<i64> {
    let r = match (lo, hi) {
        (_, Some(h)) => h,
        (Some(l), None) => l.checked_add(1)?,
        (None, None) => 1,
    };
    lo.is_none_or(|l| r > l).then_some(r)
}

/// The rows each damaged leaf is rewritten with: those it still held, as
/// stored, and the stand-in rows whose rowid lies within its bounds — or a
/// placeholder row of one NULL when that leaves none. Also the stand-ins'
/// and the placeholders' rowids (to delete). `None` when a stand-in lies in
/// no damaged leaf, or a leaf's bounds leave no rowid for a placeholder.
fn leaf_rows(
    s: &Salvaged,
    bounds: &BTreeMap<u32, Bounds>,
    stand_ins: Option<&BTreeMap<i64, Vec<u8>>>,
) -> Option<Rewrite> {
    let mut leaves = Vec::new();
    let (mut stand, mut placeholders) = (Vec::new(), Vec::new());
    for (&pg, &(lo, hi)) in bounds {
        let mut rows: BTreeMap<i64, Vec<u8>> = s
            .readable
            .get(&pg)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        for (&r, record) in stand_ins.into_iter().flatten() {
            let inside = lo.is_none_or(|l| r > l) && hi.is_none_or(|h| r <= h);
            if inside && !rows.contains_key(&r) {
                rows.insert(r, record.clone());
                stand.push(r);
            }
        }
        if rows.is_empty() {
            let r = placeholder_rowid((lo, hi))?;
            rows.insert(r, encode_record(&[(0, &[])]));
            placeholders.push(r);
        }
        leaves.push((pg, rows.into_iter().collect()));
    }
    if stand_ins.is_some_and(|m| m.len() != stand.len()) {
        return None;
    }
    Some(Rewrite {
        leaves,
        stand_ins: stand,
        placeholders,
    })
}

/// Index entries whose row the table lost, gathered into the rows that
/// would have given exactly those entries (see the module documentation).
struct StandIns {
    /// False once an entry cannot be given back: an index key that is no
    /// column of the table, two entries of a row that disagree.
    usable: bool,
    rows: BTreeMap<i64, StandIn>,
}

/// One stand-in row as its index entries give it.
struct StandIn {
    /// Each record field as stored (None: no index holds it).
    fields: Vec<Option<(u64, Vec<u8>)>>,
    /// How many index entries named the row.
    entries: usize,
}

impl StandIns {
    fn take(&mut self, t: &TargetTable, e: &restore::Stale<'_>) {
        if self.usable && !self.add(t, e) {
            self.usable = false;
        }
    }

    fn add(&mut self, t: &TargetTable, e: &restore::Stale<'_>) -> bool {
        let row = self.rows.entry(e.rowid).or_insert_with(|| StandIn {
            fields: vec![None; t.fields.len()],
            entries: 0,
        });
        row.entries += 1;
        // the fields before the last (the rowid) are the key's columns
        let key = e.fields.len().saturating_sub(1);
        for (k, name) in e.fields[..key].iter().enumerate() {
            let Some(col) = t
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
            else {
                return false;
            };
            // the rowid's alias is stored as NULL: the rowid is its value
            if Some(col) == t.rowid_alias {
                continue;
            }
            let (Some(pos), Some((st, bytes))) = (
                t.fields.iter().position(|&f| f == col),
                e.record.raw(e.payload, k),
            ) else {
                return false;
            };
            match &row.fields[pos] {
                Some((t0, b0)) if (*t0, b0.as_slice()) != (st, bytes) => return false,
                Some(_) => {}
                None => row.fields[pos] = Some((st, bytes.to_vec())),
            }
        }
        true
    }

    /// The stand-in rows' records by rowid, when each of the table's
    /// `indexes` named every row once and no two entries disagreed.
    fn records(self, indexes: usize) -> Option<BTreeMap<i64, Vec<u8>>> {
        if !self.usable || self.rows.values().any(|r| r.entries != indexes) {
            return None;
        }
        Some(
            self.rows
                .into_iter()
                .map(|(r, row)| {
                    let f: Vec<(u64, &[u8])> = row
                        .fields
                        .iter()
                        .map(|f| f.as_ref().map_or((0, &[][..]), |(t, b)| (*t, b.as_slice())))
                        .collect();
                    (r, encode_record(&f))
                })
                .collect(),
        )
    }
}

/// The rows step 3 deletes.
struct Deletions<'a> {
    stand_ins: &'a [i64],
    placeholders: &'a [i64],
    /// The check found the table's indexes wrong beyond stale entries: they
    /// are rebuilt whatever the stand-ins do.
    reindex: bool,
}

/// Step 3's first half: the stand-in rows deleted with their index entries
/// (else, or where the indexes need it, the indexes rebuilt), the
/// placeholders deleted. Returns the table's account as the full rebuild's
/// copy of it would give it, and whether the indexes were rebuilt.
fn put_back(
    conn: &Connection,
    t: &TargetTable,
    s: Salvaged,
    named: (BTreeMap<i64, Option<String>>, bool),
    d: &Deletions<'_>,
) -> Result<(Copied, bool)> {
    let tq = quote_ident(&t.name);
    let delete = |rowids: &[i64]| -> rusqlite::Result<()> {
        let del = format!("DELETE FROM {tq} WHERE {} = ?1", t.rowid_name);
        for r in rowids {
            crate::sql_bytes::execute(conn, &del, &[r])?;
        }
        Ok(())
    };
    // a stand-in's index entries must all be there: SQLite says so
    let exact = !d.stand_ins.is_empty() && delete(d.stand_ins).is_ok();
    // the placeholders have no index entries (nor, when the stand-ins
    // failed, some of theirs): SQLite deletes a row whose entries are
    // missing only under writable_schema
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let mut deleted = delete(d.placeholders);
    if !exact && deleted.is_ok() {
        deleted = delete(d.stand_ins);
    }
    conn.execute_batch("PRAGMA writable_schema = OFF")?;
    deleted?;
    let reindex = !exact || d.reindex;
    if reindex {
        crate::sql_bytes::execute_batch(conn, &format!("REINDEX main.{tq}"))?;
    }
    let readable: u64 = s.readable.values().map(|v| v.len() as u64).sum();
    let c = Copied {
        prov: TableProvenance {
            table: t.name.clone(),
            from_tree: s.in_place + readable,
            ..TableProvenance::default()
        },
        have: s.have,
        damaged: s.damaged_rows,
        partials: s.partials,
        keyless_partials: Vec::new(),
        stats: Some(s.stats),
        quarantined_ids: Vec::new(),
        named: Some(named),
    };
    Ok((c, reindex))
}
