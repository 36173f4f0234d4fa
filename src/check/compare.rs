//! Index ↔ table comparison by digests: one pass over the table and one over
//! each index, no per-row lookups.
//!
//! Every expected index entry (from a table row) and every actual entry (from
//! the index's pages) is hashed over its canonical bytes and added into a
//! bucket chosen by its rowid. Equal buckets mean equal multisets (with
//! overwhelming probability); only the rows of unequal buckets are collected
//! in a second pass and diffed exactly. Memory is a fixed 32 KiB per index
//! (4,096 buckets of 64-bit sums: small enough to stay in the CPU cache)
//! plus the rows of unequal buckets.

use std::cmp::Ordering;

use rusqlite::types::Value;
use xxhash_rust::xxh3::xxh3_64;

use super::canon;
use super::others::{ORDER_DAMAGE_KEPT, OrderCheck};
use super::tap::Tap;
use crate::format::btree::{self, Damage, DamageKind, IndexItem, PageSource, TableItem};
use crate::format::header::TextEncoding;
use crate::format::page::{BtreePage, Cell};
use crate::format::record::{self, Collation, Record, ValueRef};
use crate::schema::{CustomerTable, Index, IndexPart};

pub const BUCKET_BITS: u32 = 12;
pub const BUCKETS: usize = 1 << BUCKET_BITS;
/// The finer grain of the second digest pass, for the indexes whose coarse
/// buckets differ: 2^20 buckets (8 MiB a side), so that only the rows near
/// the damage are collected even when it touches every coarse bucket.
pub const FINE_BITS: u32 = 20;

/// The bucket of a row: both sides agree on it because both know the rowid.
pub fn bucket_of(rowid: i64, bits: u32) -> usize {
    ((rowid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// Where one field of an index record comes from in a table row.
#[derive(Debug, Clone)]
enum FieldSrc {
    /// A stored column: its position in the record, and the value to use
    /// when the record is shorter (written before ALTER TABLE ADD COLUMN).
    Stored { pos: usize, default: Value },
    /// The rowid itself (the trailing field, or an INTEGER PRIMARY KEY column).
    Rowid,
}

/// How to predict the entries of one plain index from table rows.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Position in `CustomerTable::indexes`.
    pub index: usize,
    fields: Vec<FieldSrc>,
    collations: Vec<Option<Collation>>,
    desc: Vec<bool>,
    key_len: usize,
    unique: bool,
    /// For an index of a WITHOUT ROWID table: where its entries hold the
    /// table's primary key (positions in the index record, in key order).
    /// Its rows are named and bucketed by that key instead of a rowid.
    pk: Option<Vec<usize>>,
}

impl Plan {
    /// None when the index is not plain (expression or partial).
    pub fn new(table: &CustomerTable, index_pos: usize, defaults: &[Value]) -> Option<Plan> {
        let index: &Index = &table.indexes[index_pos];
        if !index.is_plain() {
            return None;
        }
        let pk = match table.without_rowid {
            false => None,
            true => Some(pk_positions(table, index)?),
        };
        let mut fields = Vec::new();
        for f in &index.fields {
            fields.push(match &f.part {
                IndexPart::Rowid => FieldSrc::Rowid,
                IndexPart::Column(c) if Some(*c) == table.rowid_alias => FieldSrc::Rowid,
                IndexPart::Column(c) => FieldSrc::Stored {
                    pos: table.columns[*c].record_pos?,
                    default: defaults.get(*c).cloned().unwrap_or(Value::Null),
                },
                IndexPart::Expr(_) => return None,
            });
        }
        Some(Plan {
            index: index_pos,
            collations: index
                .fields
                .iter()
                .map(|f| collation(&f.collation))
                .collect(),
            desc: index.fields.iter().map(|f| f.desc).collect(),
            key_len: index.fields.iter().filter(|f| f.key).count(),
            unique: index.unique,
            fields,
            pk,
        })
    }

    /// Which row an index entry belongs to: its rowid (the trailing field),
    /// or for a WITHOUT ROWID table None and its primary key's canonical
    /// bytes in `pk`; with the number its bucket is chosen by. None when
    /// the entry holds no such thing (a damaged record).
    fn entry_row(
        &self,
        rec: &Record,
        payload: &[u8],
        enc: TextEncoding,
        pk: &mut Vec<u8>,
    ) -> Option<(Option<i64>, i64)> {
        pk.clear();
        match &self.pk {
            None => match rec.get(payload, self.fields.len().checked_sub(1)?) {
                Some(ValueRef::Integer(r)) => Some((Some(r), r)),
                _ => None,
            },
            Some(positions) => {
                for &p in positions {
                    canon::push_raw(pk, &rec.get(payload, p)?, enc);
                }
                Some((None, pk_bucket_key(pk)))
            }
        }
    }
}

/// Where the entries of `index`, on a WITHOUT ROWID table, hold the
/// table's primary key (SQLite appends the key's columns an index does not
/// already hold): positions in the index record, in key order.
fn pk_positions(table: &CustomerTable, index: &Index) -> Option<Vec<usize>> {
    table
        .pk_columns
        .iter()
        .map(|&c| {
            index
                .fields
                .iter()
                .position(|f| matches!(f.part, IndexPart::Column(x) if x == c))
        })
        .collect()
}

/// The number a WITHOUT ROWID row's bucket is chosen by: a hash of its
/// primary key's canonical bytes (both sides know the key, as both know a
/// rowid).
pub fn pk_bucket_key(pk: &[u8]) -> i64 {
    xxh3_64(pk) as i64
}

fn collation(name: &str) -> Option<Collation> {
    match name.to_ascii_uppercase().as_str() {
        "BINARY" => Some(Collation::Binary),
        "NOCASE" => Some(Collation::NoCase),
        "RTRIM" => Some(Collation::Rtrim),
        _ => None,
    }
}

/// Bitmaps of the buckets to collect in the second pass, one per plan.
pub type Wanted = Vec<Vec<bool>>;

/// An entry (expected or actual) collected in the second pass.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub bytes: Vec<u8>,
    pub rowid: Option<i64>,
    /// A WITHOUT ROWID table's row: its primary key's canonical bytes
    /// (empty for a rowid table).
    pub pk: Vec<u8>,
    pub values: Vec<Value>,
}

/// What a pass over the table found.
#[derive(Debug, Default)]
pub struct TableScan {
    pub digests: Vec<Vec<u64>>,
    pub rows: u64,
    /// Rows the walker saw but could not read whole (broken overflow chain).
    pub damaged_rows: Vec<i64>,
    /// Rows of a WITHOUT ROWID table that cannot be read whole (they have
    /// no rowid to name them by; the comparison names their index entries).
    pub damaged_keyed: u64,
    pub damage: Vec<Damage>,
    pub pages: Vec<u32>,
    pub collected: Vec<Vec<Collected>>,
    /// The customer IDs of a WITHOUT ROWID table's rows next to damage in
    /// key order: its b-tree is an index b-tree, whose interior cells are
    /// rows, and a lookup of the row that bounds a lost page from above
    /// steps into that page (SQLite's seek for a key goes left of an equal
    /// divider). For a rowid table: the IDs of the rows on a leaf whose
    /// rowids are out of key order (see `rows_on_leaves`).
    pub beside_damage: Vec<Value>,
    /// Those rows whole, as the page reader read them: SQLite's seek cannot
    /// reach some of them (the seek by ID steps into the damage, or a
    /// rowid out of place sends the seek by rowid the wrong way), so their
    /// index keys come from here ([`crate::check::probe::Prober::probe_page_row`]).
    pub beside_rows: Vec<PageRow>,
}

/// A row of the customer table as the page reader read it: its rowid (None
/// in a WITHOUT ROWID table) and each column's value by the table's column
/// order (None where the record does not hold it: a VIRTUAL generated
/// column, a column added after the row was written, a value on overflow
/// pages not read).
#[derive(Debug, Clone, PartialEq)]
pub struct PageRow {
    pub rowid: Option<i64>,
    pub values: Vec<Option<Value>>,
}

impl PageRow {
    /// The row `rec` (parsed from `payload`) of `table`, at `rowid`.
    pub fn read(
        table: &CustomerTable,
        rowid: Option<i64>,
        rec: &Record,
        payload: &[u8],
        enc: TextEncoding,
    ) -> PageRow {
        let values = (0..table.columns.len())
            .map(|c| match (rowid, table.rowid_alias == Some(c)) {
                (Some(r), true) => Some(Value::Integer(r)),
                _ => table.columns[c]
                    .record_pos
                    .and_then(|pos| rec.get(payload, pos))
                    .map(|v| canon::to_owned(&v, enc)),
            })
            .collect();
        PageRow { rowid, values }
    }

    /// The customer ID the row holds (None when it is NULL or not read).
    pub fn id(&self, table: &CustomerTable) -> Option<&Value> {
        self.values
            .get(table.id_column)
            .and_then(Option::as_ref)
            .filter(|v| !matches!(v, Value::Null))
    }
}

/// The rows on the table leaves among `pages` (leaves whose rowids are out
/// of key order), read from the pages (each cell's local payload): SQLite's
/// seek on such a page is a binary search, which a rowid out of place sends
/// the wrong way for its neighbours too, so each of them is probed
/// ([`TableScan::beside_damage`], [`TableScan::beside_rows`]).
fn rows_on_leaves(
    src: &dyn PageSource,
    table: &CustomerTable,
    pages: &std::collections::BTreeSet<u32>,
    enc: TextEncoding,
) -> Vec<PageRow> {
    let (mut rec, mut out) = (Record::default(), Vec::new());
    cells_of(src, pages, |cell| {
        let Cell::TableLeaf { rowid, payload } = cell else {
            return;
        };
        if rec.parse(payload.local).is_ok() {
            out.push(PageRow::read(table, Some(rowid), &rec, payload.local, enc));
        } else if table.id_is_rowid() {
            // the record unreadable, the ID is the rowid all the same
            let mut values = vec![None; table.columns.len()];
            values[table.id_column] = Some(Value::Integer(rowid));
            out.push(PageRow {
                rowid: Some(rowid),
                values,
            });
        }
    });
    out
}

/// The rows of a WITHOUT ROWID table on `pages` (pages of its b-tree,
/// leaves or interior: both hold rows), read from each cell's local
/// payload.
fn rows_on_index_pages(
    src: &dyn PageSource,
    table: &CustomerTable,
    pages: &std::collections::BTreeSet<u32>,
    enc: TextEncoding,
) -> Vec<PageRow> {
    let (mut rec, mut out) = (Record::default(), Vec::new());
    cells_of(src, pages, |cell| {
        if let Cell::IndexLeaf { payload } | Cell::IndexInterior { payload, .. } = cell
            && rec.parse(payload.local).is_ok()
        {
            out.push(PageRow::read(table, None, &rec, payload.local, enc));
        }
    });
    out
}

/// Every cell of `pages` that can be located, page by page; a page that
/// cannot be read or parsed gives none.
fn cells_of(
    src: &dyn PageSource,
    pages: &std::collections::BTreeSet<u32>,
    mut each: impl FnMut(Cell<'_>),
) {
    let mut buf = Vec::new();
    for &pgno in pages {
        if src.read_page(pgno, &mut buf).is_err() {
            continue;
        }
        let Ok(page) = BtreePage::parse(&buf, pgno, src.usable_size()) else {
            continue;
        };
        for i in 0..usize::from(page.cell_count()) {
            if let Ok(cell) = page.cell(i) {
                each(cell);
            }
        }
    }
}

/// A WITHOUT ROWID table's key order, per primary key field its
/// collation and direction; `None` when a collation is not one custodian
/// compares by (then the order is not held, as for any such tree).
fn key_order(table: &CustomerTable) -> Option<Vec<(Collation, bool)>> {
    let order: Vec<(Collation, bool)> = table
        .pk_order
        .iter()
        .map(|(c, desc)| collation(c).map(|c| (c, *desc)))
        .collect::<Option<_>>()?;
    (!order.is_empty()).then_some(order)
}

/// The customer IDs `rows` hold.
fn ids_of(table: &CustomerTable, rows: &[PageRow]) -> Vec<Value> {
    rows.iter().filter_map(|r| r.id(table).cloned()).collect()
}

/// Walks the table, predicting every plan's entries from each row.
/// `row_hook` sees every readable row (rowid, 0 for a WITHOUT ROWID table;
/// parsed record; payload) once.
pub fn scan_table(
    src: &dyn PageSource,
    table: &CustomerTable,
    plans: &[Plan],
    wanted: Option<&Wanted>,
    row_hook: &mut dyn FnMut(i64, &Record, &[u8]),
    tick: &dyn Fn(u64),
    bits: u32,
) -> TableScan {
    let enc = src.text_encoding();
    let mut out = TableScan {
        digests: vec![vec![0u64; 1 << bits]; if wanted.is_some() { 0 } else { plans.len() }],
        collected: vec![Vec::new(); plans.len()],
        ..TableScan::default()
    };
    // A WITHOUT ROWID table's rows are named by their primary key, stored
    // first in the record.
    let pk_pos: Option<Vec<Option<usize>>> = table.without_rowid.then(|| {
        table
            .pk_columns
            .iter()
            .map(|&c| table.columns[c].record_pos)
            .collect()
    });
    let mut rec = Record::default();
    let mut buf = Vec::with_capacity(256);
    let mut pk = Vec::with_capacity(64);
    // One readable row: its expected entries, hashed or collected.
    let mut row = |out: &mut TableScan, rowid: Option<i64>, payload: &[u8]| {
        out.rows += 1;
        if out.rows.is_multiple_of(65536) {
            tick(out.rows);
        }
        // A row SQLite cannot read whole is damaged, even where the
        // record parses (values that end before the payload does).
        let parsed = rec.parse(payload).and_then(|()| rec.check_stored());
        let key = match (&pk_pos, parsed) {
            (_, Err(_)) => None,
            (None, Ok(())) => rowid,
            (Some(positions), Ok(())) => {
                pk.clear();
                positions
                    .iter()
                    .try_for_each(|p| {
                        canon::push_raw(&mut pk, &rec.get(payload, (*p)?)?, enc);
                        Some(())
                    })
                    .map(|()| pk_bucket_key(&pk))
            }
        };
        let Some(key) = key else {
            match rowid {
                Some(r) => out.damaged_rows.push(r),
                None => out.damaged_keyed += 1,
            }
            return;
        };
        row_hook(rowid.unwrap_or(0), &rec, payload);
        let b = bucket_of(key, bits);
        for (p, plan) in plans.iter().enumerate() {
            if let Some(w) = wanted
                && !w[p][b]
            {
                continue;
            }
            let rowid_value = ValueRef::Integer(rowid.unwrap_or(0));
            buf.clear();
            for f in &plan.fields {
                match f {
                    FieldSrc::Rowid => canon::push_raw(&mut buf, &rowid_value, enc),
                    FieldSrc::Stored { pos, default } => match rec.get(payload, *pos) {
                        Some(v) => canon::push_raw(&mut buf, &v, enc),
                        None => canon::push_value(&mut buf, default),
                    },
                }
            }
            if wanted.is_some() {
                let values = plan
                    .fields
                    .iter()
                    .map(|f| match f {
                        FieldSrc::Rowid => canon::to_owned(&rowid_value, enc),
                        FieldSrc::Stored { pos, default } => rec
                            .get(payload, *pos)
                            .map(|v| canon::to_owned(&v, enc))
                            .unwrap_or_else(|| default.clone()),
                    })
                    .collect();
                out.collected[p].push(Collected {
                    bytes: buf.clone(),
                    rowid,
                    pk: pk_pos.as_ref().map(|_| pk.clone()).unwrap_or_default(),
                    values,
                });
            } else {
                let d = &mut out.digests[p][b];
                *d = d.wrapping_add(xxh3_64(&buf));
            }
        }
    };
    let stats = if table.without_rowid {
        let mut damage = Vec::new();
        let mut id_rec = Record::default();
        let mut id_of = |payload: &[u8]| -> Option<PageRow> {
            id_rec.parse(payload).ok()?;
            Some(PageRow::read(table, None, &id_rec, payload, enc))
        };
        // the row before, kept until the next: its ID is read only when
        // damage follows
        let mut prev: Option<Vec<u8>> = None;
        let mut after_damage = false;
        let mut beside = Vec::new();
        // the rows held to the primary key's order, as SQLite's seek by
        // key assumes (two leaves swapped break it and nothing else)
        let order = key_order(table);
        let mut order_check = order.as_deref().map(|f| OrderCheck::new(f, enc));
        let (mut n, mut misordered) = (0u64, 0usize);
        let mut prev_pgno = None;
        let mut misordered_pages = std::collections::BTreeSet::new();
        let stats = btree::walk_index(src, table.rootpage, &mut |item| match item {
            IndexItem::Entry { payload, pgno, .. } => {
                n += 1;
                row(&mut out, None, payload);
                if after_damage {
                    after_damage = false;
                    beside.extend(id_of(payload));
                }
                if let Some(d) = order_check.as_mut().and_then(|o| o.entry(payload, pgno, n)) {
                    misordered += 1;
                    misordered_pages.insert(pgno);
                    misordered_pages.extend(prev_pgno);
                    if misordered <= ORDER_DAMAGE_KEPT {
                        damage.push(d);
                    }
                }
                prev_pgno = Some(pgno);
                let p = prev.get_or_insert_with(Vec::new);
                p.clear();
                p.extend_from_slice(payload);
            }
            IndexItem::Damage(d) => {
                damage.push(d);
                if let Some(p) = prev.take() {
                    beside.extend(id_of(&p));
                }
                after_damage = true;
                prev_pgno = None;
                if let Some(o) = order_check.as_mut() {
                    o.break_chain();
                }
            }
        });
        // every row on a page where the order breaks, and on the page
        // before the break: a seek by key for any of them may land on
        // another page, so each is probed
        beside.extend(rows_on_index_pages(src, table, &misordered_pages, enc));
        out.damage = damage;
        out.beside_damage = ids_of(table, &beside);
        out.beside_rows = beside;
        stats
    } else {
        let mut damage = Vec::new();
        let mut damaged = Vec::new();
        let stats = btree::walk_table(src, table.rootpage, &mut |item| match item {
            TableItem::Row { rowid, payload, .. } => row(&mut out, Some(rowid), payload),
            TableItem::RowDamaged { rowid, .. } => damaged.push(rowid),
            TableItem::Damage(d) => damage.push(d),
        });
        let out_of_order: std::collections::BTreeSet<u32> = damage
            .iter()
            .filter(|d| d.kind == DamageKind::KeyOrder)
            .map(|d| d.pgno)
            .collect();
        out.beside_rows = rows_on_leaves(src, table, &out_of_order, enc);
        out.beside_damage = ids_of(table, &out.beside_rows);
        out.damage = damage;
        out.damaged_rows.extend(damaged);
        stats
    };
    out.pages = stats.pages;
    out
}

/// What a pass over one index found.
#[derive(Debug, Default)]
pub struct IndexScan {
    pub digests: Vec<u64>,
    pub entries: u64,
    pub damage: Vec<Damage>,
    pub pages: Vec<u32>,
    /// Entries that are out of key order (rowid, values).
    pub out_of_order: Vec<Collected>,
    /// Adjacent entries with equal keys under a UNIQUE index.
    pub duplicates: Vec<(Collected, Collected)>,
    /// Entries whose record does not parse or has the wrong shape.
    pub bad_records: Vec<u32>,
    /// Entries next to damage in key order (the parent's divider keys that
    /// bound a damaged page): a lookup for them may step into the damage.
    pub beside_damage: Vec<Collected>,
    pub collected: Vec<Collected>,
}

/// Walks one index, hashing its entries and checking their order.
pub fn scan_index(
    src: &dyn PageSource,
    root: u32,
    plan: &Plan,
    wanted: Option<&[bool]>,
    tick: &dyn Fn(u64),
    bits: u32,
) -> IndexScan {
    scan_index_tapped(src, root, plan, wanted, tick, bits, None)
}

/// [`scan_index`], handing every entry whose record parses (and every
/// damage) to `tap` as well.
pub fn scan_index_tapped(
    src: &dyn PageSource,
    root: u32,
    plan: &Plan,
    wanted: Option<&[bool]>,
    tick: &dyn Fn(u64),
    bits: u32,
    mut tap: Option<&mut dyn Tap>,
) -> IndexScan {
    let enc = src.text_encoding();
    let mut out = IndexScan {
        digests: if wanted.is_some() {
            Vec::new()
        } else {
            vec![0u64; 1 << bits]
        },
        ..IndexScan::default()
    };
    let n = plan.fields.len();
    let mut buf = Vec::with_capacity(256);
    // the previous entry: its bytes and its parsed header
    let mut prev: Vec<u8> = Vec::new();
    let mut prev_rec = Record::default();
    let mut cur = Record::default();
    let mut have_prev = false;
    let mut after_damage = false;
    // the row of the current and of the previous entry
    let mut pk = Vec::new();
    let mut prev_row: (Option<i64>, Vec<u8>) = (None, Vec::new());
    // the pages where the key order breaks, and the page of the entry
    // before each break
    let mut prev_pgno = None;
    let mut misordered_pages = std::collections::BTreeSet::new();
    let owned = |rec: &Record, payload: &[u8]| -> Vec<Value> {
        rec.values(payload)
            .map(|v| canon::to_owned(&v, enc))
            .collect()
    };
    let mut visit = |item: IndexItem<'_>| match item {
        IndexItem::Entry { payload, pgno, .. } => {
            out.entries += 1;
            if out.entries.is_multiple_of(65536) {
                tick(out.entries);
            }
            let parsed = cur.parse(payload);
            if parsed.is_ok()
                && let Some(t) = tap.as_mut()
            {
                t.entry(&cur, payload);
            }
            if parsed.and_then(|()| cur.check_stored()).is_err() || cur.len() != n {
                out.bad_records.push(pgno);
                have_prev = false;
                return;
            }
            let Some((rowid, bucket_key)) = plan.entry_row(&cur, payload, enc, &mut pk) else {
                out.bad_records.push(pgno);
                have_prev = false;
                return;
            };
            buf.clear();
            for v in cur.values(payload) {
                canon::push_raw(&mut buf, &v, enc);
            }
            // order and uniqueness against the previous entry
            if have_prev {
                let (ord, key_equal) = compare_entries(&prev_rec, &prev, &cur, payload, plan, enc);
                if ord != Ordering::Less {
                    misordered_pages.insert(pgno);
                    misordered_pages.extend(prev_pgno);
                    out.out_of_order.push(Collected {
                        bytes: buf.clone(),
                        rowid,
                        pk: pk.clone(),
                        values: owned(&cur, payload),
                    });
                }
                let has_null = || {
                    (0..plan.key_len).any(|i| matches!(cur.get(payload, i), Some(ValueRef::Null)))
                };
                if plan.unique && key_equal && !has_null() {
                    out.duplicates.push((
                        Collected {
                            bytes: Vec::new(),
                            rowid: prev_row.0,
                            pk: prev_row.1.clone(),
                            values: owned(&prev_rec, &prev),
                        },
                        Collected {
                            bytes: buf.clone(),
                            rowid,
                            pk: pk.clone(),
                            values: owned(&cur, payload),
                        },
                    ));
                }
            }
            if after_damage {
                after_damage = false;
                out.beside_damage.push(Collected {
                    bytes: Vec::new(),
                    rowid,
                    pk: pk.clone(),
                    values: owned(&cur, payload),
                });
            }
            prev.clear();
            prev.extend_from_slice(payload);
            std::mem::swap(&mut prev_rec, &mut cur);
            prev_row.0 = rowid;
            prev_row.1.clone_from(&pk);
            prev_pgno = Some(pgno);
            have_prev = true;
            let b = bucket_of(bucket_key, bits);
            match wanted {
                Some(w) => {
                    if w[b] {
                        out.collected.push(Collected {
                            bytes: buf.clone(),
                            rowid,
                            pk: pk.clone(),
                            values: owned(&prev_rec, &prev),
                        });
                    }
                }
                None => {
                    let d = &mut out.digests[b];
                    *d = d.wrapping_add(xxh3_64(&buf));
                }
            }
        }
        IndexItem::Damage(d) => {
            if let Some(t) = tap.as_mut() {
                t.damage();
            }
            out.damage.push(d);
            if have_prev {
                out.beside_damage.push(Collected {
                    bytes: Vec::new(),
                    rowid: prev_row.0,
                    pk: prev_row.1.clone(),
                    values: owned(&prev_rec, &prev),
                });
            }
            have_prev = false;
            prev_pgno = None;
            after_damage = true;
        }
    };
    let stats = btree::walk_index(src, root, &mut visit);
    // every entry of a page where the order breaks, and of the page before
    // the break (two leaves swapped): SQLite's seek for any of them may
    // land on the other leaf, so each is probed, not only the entry at
    // the break
    let around = entries_on_pages(src, plan, &misordered_pages, enc);
    out.beside_damage.extend(around);
    out.pages = stats.pages;
    out
}

/// The entries of an index on `pages` (leaves or interior: both hold
/// entries), each with its row, read from the cells' local payloads.
fn entries_on_pages(
    src: &dyn PageSource,
    plan: &Plan,
    pages: &std::collections::BTreeSet<u32>,
    enc: TextEncoding,
) -> Vec<Collected> {
    let (mut rec, mut pk, mut out) = (Record::default(), Vec::new(), Vec::new());
    cells_of(src, pages, |cell| {
        let (Cell::IndexLeaf { payload } | Cell::IndexInterior { payload, .. }) = cell else {
            return;
        };
        if rec.parse(payload.local).is_err() || rec.len() != plan.fields.len() {
            return;
        }
        let Some((rowid, _)) = plan.entry_row(&rec, payload.local, enc, &mut pk) else {
            return;
        };
        out.push(Collected {
            bytes: Vec::new(),
            rowid,
            pk: pk.clone(),
            values: rec
                .values(payload.local)
                .map(|v| canon::to_owned(&v, enc))
                .collect(),
        });
    });
    out
}

/// Compares two index records field by field with the index's collations
/// and sort directions. Returns the order and whether the key fields (all
/// but the trailing rowid) are equal.
fn compare_entries(
    a: &Record,
    a_payload: &[u8],
    b: &Record,
    b_payload: &[u8],
    plan: &Plan,
    enc: TextEncoding,
) -> (Ordering, bool) {
    for i in 0..a.len().min(b.len()) {
        let (Some(x), Some(y)) = (a.get(a_payload, i), b.get(b_payload, i)) else {
            break;
        };
        let coll = match plan.collations.get(i).copied().flatten() {
            Some(c) => c,
            // an unknown collation: order cannot be judged, call it in order
            None => return (Ordering::Less, false),
        };
        let mut o = record::compare_values(&x, &y, coll, enc);
        if plan.desc.get(i).copied().unwrap_or(false) {
            o = o.reverse();
        }
        if o != Ordering::Equal {
            return (o, i >= plan.key_len);
        }
    }
    (Ordering::Equal, true)
}

/// The exact difference between expected and actual entries of one index.
#[derive(Debug, Default)]
pub struct Diff {
    /// Expected (from the table) but not in the index.
    pub missing: Vec<Collected>,
    /// In the index but not expected.
    pub surplus: Vec<Collected>,
}

pub fn diff(mut expected: Vec<Collected>, mut actual: Vec<Collected>) -> Diff {
    expected.sort_by(|a, b| a.bytes.cmp(&b.bytes));
    actual.sort_by(|a, b| a.bytes.cmp(&b.bytes));
    let mut d = Diff::default();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        let o = match (expected.get(i), actual.get(j)) {
            (Some(e), Some(a)) => e.bytes.cmp(&a.bytes),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match o {
            Ordering::Equal => {
                i += 1;
                j += 1;
            }
            Ordering::Less => {
                d.missing.push(expected[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                d.surplus.push(actual[j].clone());
                j += 1;
            }
        }
    }
    d
}

/// The table side of one index that the page reader cannot predict
/// (expression or partial index): SQLite evaluates the terms and the WHERE.
pub fn scan_table_sql(
    conn: &rusqlite::Connection,
    table: &CustomerTable,
    index: &Index,
    wanted: Option<&[bool]>,
) -> Result<(Vec<u64>, Vec<Collected>, u64), String> {
    use crate::schema::quote_ident;
    let terms: Vec<String> = index
        .fields
        .iter()
        .map(|f| match &f.part {
            IndexPart::Column(c) => quote_ident(&table.columns[*c].name),
            IndexPart::Rowid => "rowid".to_string(),
            IndexPart::Expr(e) => format!("({e})"),
        })
        .collect();
    let filter = match &index.partial_where {
        Some(w) => format!(" WHERE ({w})"),
        None => String::new(),
    };
    let sql = format!(
        "SELECT rowid, {} FROM {} NOT INDEXED{filter}",
        terms.join(", "),
        quote_ident(&table.name)
    );
    let n = terms.len();
    let mut digests = if wanted.is_some() {
        Vec::new()
    } else {
        vec![0u64; BUCKETS]
    };
    let mut collected = Vec::new();
    let mut count = 0u64;
    let mut buf = Vec::new();
    crate::sql_bytes::for_each(conn, &sql, &[], |r| {
        count += 1;
        let rowid: i64 = r.get(0)?;
        let b = bucket_of(rowid, BUCKET_BITS);
        if let Some(w) = wanted
            && !w[b]
        {
            return Ok(());
        }
        buf.clear();
        for i in 0..n {
            canon::push_sql(&mut buf, r.get_ref(i + 1)?);
        }
        match wanted {
            Some(_) => {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(r.get::<Value>(i + 1)?);
                }
                collected.push(Collected {
                    bytes: buf.clone(),
                    rowid: Some(rowid),
                    pk: Vec::new(),
                    values,
                });
            }
            None => digests[b] = digests[b].wrapping_add(xxh3_64(&buf)),
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok((digests, collected, count))
}

impl Plan {
    /// A plan for reading the index side only (its table side comes from SQL).
    pub fn index_side(table: &CustomerTable, index_pos: usize) -> Plan {
        let index = &table.indexes[index_pos];
        Plan {
            index: index_pos,
            fields: index.fields.iter().map(|_| FieldSrc::Rowid).collect(),
            collations: index
                .fields
                .iter()
                .map(|f| collation(&f.collation))
                .collect(),
            desc: index.fields.iter().map(|f| f.desc).collect(),
            key_len: index.fields.iter().filter(|f| f.key).count(),
            unique: index.unique,
            pk: if table.without_rowid {
                pk_positions(table, index)
            } else {
                None
            },
        }
    }
}

/// Canonical bytes of the key fields (all but the trailing rowid).
pub fn key_bytes(values: &[Value], key_len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for v in values.iter().take(key_len) {
        canon::push_value(&mut b, v);
    }
    b
}

/// Every entry of an index whose key equals one of `keys` (key bytes as
/// from [`key_bytes`]): the entries a lookup of those keys walks over.
pub fn entries_with_keys(
    src: &dyn PageSource,
    root: u32,
    plan: &Plan,
    keys: &std::collections::BTreeSet<Vec<u8>>,
) -> Vec<Collected> {
    let enc = src.text_encoding();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    btree::walk_index(src, root, &mut |item| {
        if let IndexItem::Entry { payload, .. } = item {
            let mut vals = Vec::new();
            if record::parse_record(payload, &mut vals).is_err() || vals.len() != plan.fields.len()
            {
                return;
            }
            buf.clear();
            for v in vals.iter().take(plan.key_len) {
                canon::push_raw(&mut buf, v, enc);
            }
            if keys.contains(&buf) {
                let rowid = match (&plan.pk, vals.last()) {
                    (None, Some(ValueRef::Integer(r))) => Some(*r),
                    _ => None,
                };
                out.push(Collected {
                    bytes: Vec::new(),
                    rowid,
                    pk: Vec::new(),
                    values: vals.iter().map(|v| canon::to_owned(v, enc)).collect(),
                });
            }
        }
    });
    out
}

impl Plan {
    pub fn key_len(&self) -> usize {
        self.key_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(b: &[u8], r: i64) -> Collected {
        Collected {
            bytes: b.to_vec(),
            rowid: Some(r),
            pk: Vec::new(),
            values: vec![],
        }
    }

    #[test]
    fn diff_is_a_multiset_difference() {
        let d = diff(
            vec![c(b"a", 1), c(b"b", 2), c(b"b", 2), c(b"d", 4)],
            vec![c(b"b", 2), c(b"c", 3), c(b"d", 4)],
        );
        assert_eq!(
            d.missing.iter().map(|x| x.rowid).collect::<Vec<_>>(),
            vec![Some(1), Some(2)]
        );
        assert_eq!(
            d.surplus.iter().map(|x| x.rowid).collect::<Vec<_>>(),
            vec![Some(3)]
        );
    }

    #[test]
    fn buckets_spread() {
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..1000 {
            seen.insert(bucket_of(r, BUCKET_BITS));
        }
        assert!(seen.len() > 990);
    }
}
