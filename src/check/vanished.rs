//! Vanished customers: rows gone from both the customer table and its
//! indexes leave no trace there, but other tables still name them (a
//! transaction's customer_id). Both sides are read in key order from index
//! pages (the referencing column's index and the customer ID index) and
//! merged; candidates are confirmed against the table itself. The
//! referencing index is read once: the walk of every other tree
//! (`others.rs`) hands its entries to the merge as it checks them.
//!
//! Erasures: customers deleted on purpose while their transactions stay (a
//! right-to-erasure request) look the same from the references. With the
//! config's `"vanished": "erasure_by_evidence"`, [`classify_erasures`]
//! tells them apart by the evidence of the whole check: when no finding
//! says that anything of the file was lost or damaged (header, size, pages,
//! cells, records, key order, page accounting, freelist, quick_check, rows,
//! surviving index entries without their row), the rows were deleted by
//! SQL, not lost with a page: `customer_erased`, info.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::mpsc::{Receiver, SyncSender};

use rusqlite::Connection;

use super::canon;
use super::finding::{Code, Finding, Severity};
use super::tap::Tap;
use crate::config::VanishedPolicy;
use crate::format::btree::{self, IndexItem, PageSource};
use crate::format::record::{Record, ValueRef};
use crate::pager::Pager;
use crate::schema::{CustomerTable, IndexPart, SchemaObject};

/// Customer IDs per message from the ID index's reader to the merge.
const ID_BATCH: usize = 1024;
/// Messages the reader may be ahead of the merge (then it waits).
const ID_BATCHES_IN_FLIGHT: usize = 16;

/// Where vanished customers are looked for: the customer ID index (or a
/// WITHOUT ROWID table keyed by the ID first), and each column of another
/// table that names customers.
pub struct Search {
    id_root: u32,
    refs: Vec<Reference>,
}

/// One column that names customers, and the root of its index (first key,
/// BINARY), if it has one.
struct Reference {
    table: String,
    column: String,
    root: Option<u32>,
}

/// What merging one referencing index against the customer IDs found.
#[derive(Debug, Default)]
pub struct Merged {
    /// IDs the reference names that the ID index does not hold (not yet
    /// confirmed against the table).
    candidates: BTreeSet<String>,
    /// Both walks met no damage.
    complete: bool,
    /// The customer IDs came to their end (false when their reader stopped
    /// before it said so: the merge is then done again on its own).
    delivered: bool,
}

impl Search {
    /// Where to look, or None when vanished customers cannot be looked for
    /// (no customer ID index to read in order, a UTF-16 database, a schema
    /// SQLite cannot introspect). Asks the check's connection, so it runs
    /// before the passes start.
    pub fn new(
        pager: &Pager,
        conn: &Connection,
        objects: &[SchemaObject],
        table: &CustomerTable,
        references: &[String],
    ) -> Option<Search> {
        let id_name = &table.columns[table.id_column].name;
        let refs =
            crate::schema::reference_columns(conn, objects, &table.name, id_name, references)
                .ok()?;
        // the customer ID index, BINARY, ID alone
        let id_index = table.indexes.iter().find(|i| {
            let keys: Vec<_> = i.key_fields().collect();
            keys.len() == 1
                && matches!(keys[0].part, IndexPart::Column(c) if c == table.id_column)
                && keys[0].collation.eq_ignore_ascii_case("BINARY")
                && i.partial_where.is_none()
        });
        // A WITHOUT ROWID table keyed by the ID first is itself in ID order.
        let id_root = match id_index {
            Some(i) => i.rootpage,
            None if table.without_rowid && table.pk_columns.first() == Some(&table.id_column) => {
                table.rootpage
            }
            None => return None,
        };
        if pager.text_encoding() != crate::format::header::TextEncoding::Utf8 {
            return None;
        }
        let refs = refs
            .into_iter()
            .map(|(t, c)| {
                let root = reference_index(conn, objects, &t, &c);
                Reference {
                    table: t,
                    column: c,
                    root,
                }
            })
            .collect();
        Some(Search { id_root, refs })
    }

    /// The root of the customer ID index (or table) the IDs are read from.
    pub fn id_root(&self) -> u32 {
        self.id_root
    }

    /// Whether the index rooted at `root` is read for a reference: a walk
    /// of it that hands its entries to a [`Merge`] (through [`merge_fed`])
    /// spares the merge a walk of its own.
    pub fn reads(&self, root: u32) -> bool {
        self.refs.iter().any(|r| r.root == Some(root))
    }

    /// The referencing index that pass 1's walk of the customer ID index
    /// hands its IDs to: the first one the walk of the other trees reads
    /// (not one of `customer_roots`, the customer table's trees).
    pub fn fed_reference(&self, customer_roots: &BTreeSet<u32>) -> Option<u32> {
        self.refs
            .iter()
            .filter_map(|r| r.root)
            .find(|r| !customer_roots.contains(r))
    }

    /// Runs `walk`, which walks a referencing index and hands each entry to
    /// the merge it is given, beside a reader of the customer ID index on a
    /// second thread (for a merge no walk of the ID index feeds).
    pub fn merge_beside<R>(
        &self,
        pager: &Pager,
        walk: impl FnOnce(&mut Merge) -> R,
    ) -> (R, Merged) {
        let (feed, ids) = id_channel();
        std::thread::scope(|s| {
            s.spawn(move || read_ids(pager, self.id_root, feed));
            merge_fed(ids, walk)
        })
    }

    /// The findings: for each reference, the IDs its index names that
    /// neither the ID index nor the table holds, or a note when it has no
    /// index to read in order. `merged` holds what walks of the referencing
    /// indexes already merged (by root page); any other reference's index
    /// is walked here.
    pub fn findings(
        &self,
        pager: &Pager,
        table: &CustomerTable,
        mut merged: BTreeMap<u32, Merged>,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        for r in &self.refs {
            let (t, c) = (&r.table, &r.column);
            let Some(root) = r.root else {
                findings.push(
                    Finding::new(
                        Code::IndexNotCompared,
                        Severity::Info,
                        format!("{t}.{c} refers to customers but has no index to read it in order: vanished customers were not looked for there"),
                    )
                    .table(t),
                );
                continue;
            };
            let Merged {
                mut candidates,
                complete,
                ..
            } = match merged.remove(&root) {
                Some(m) if m.delivered => m,
                _ => {
                    self.merge_beside(pager, |m| walk_reference(pager, root, m))
                        .1
                }
            };
            if candidates.is_empty() {
                continue;
            }
            confirm(pager, table, &mut candidates);
            if candidates.is_empty() {
                continue;
            }
            let ids: Vec<String> = candidates.into_iter().collect();
            let mut f = Finding::error(
                Code::CustomerVanished,
                format!(
                    "{} customer IDs are named by {t}.{c} but no customer row or index entry has them: vanished{}; `custodian repair` restores those a snapshot has",
                    ids.len(),
                    if complete { "" } else { " (some index pages were damaged: the list may be incomplete)" }
                ),
            )
            .table(&table.name)
            .object(&format!("{t}.{c}"))
            .count(ids.len() as u64);
            f.customer_ids = ids;
            findings.push(f);
        }
        findings
    }
}

/// The root of an index on `t.c`, `c` its first key, BINARY.
fn reference_index(conn: &Connection, objects: &[SchemaObject], t: &str, c: &str) -> Option<u32> {
    let ix = objects.iter().find(|o| {
        o.kind == "index"
            && o.tbl_name.eq_ignore_ascii_case(t)
            && o.rootpage > 0
            && crate::sql_bytes::query_row(
                conn,
                "SELECT name, coll FROM pragma_index_xinfo(?1) WHERE seqno = 0",
                &[&crate::sql_bytes::param(&o.name)],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )
            .is_ok_and(|(n, coll)| {
                n.is_some_and(|n| n.eq_ignore_ascii_case(c))
                    && coll.is_none_or(|x| x.eq_ignore_ascii_case("BINARY"))
            })
    })?;
    Some(u32::try_from(ix.rootpage).unwrap_or(0))
}

/// What travels from the customer ID index's reader to the merge.
enum Ids {
    /// The next IDs, in index order.
    Batch(Vec<Vec<u8>>),
    /// No more IDs; `complete` when their walk met no damage.
    End { complete: bool },
}

/// The customer IDs (the distinct text values of the ID index's first
/// field), handed over by a walk of that index ([`Tap`]) and sent to the
/// merge in batches through a small bounded channel, so memory stays
/// constant whatever the table's size. [`IdFeed::finish`] says the IDs
/// ended; a feed dropped without it tells the merge nothing was delivered.
pub struct IdFeed {
    tx: SyncSender<Ids>,
    batch: Vec<Vec<u8>>,
    prev: Vec<u8>,
    have_prev: bool,
    damaged: bool,
    /// The merge still listens.
    open: bool,
}

/// The merge's end of an [`IdFeed`].
pub struct IdSource {
    rx: Receiver<Ids>,
}

/// A feed of customer IDs and the merge's end of it.
pub fn id_channel() -> (IdFeed, IdSource) {
    let (tx, rx) = std::sync::mpsc::sync_channel(ID_BATCHES_IN_FLIGHT);
    (
        IdFeed {
            tx,
            batch: Vec::with_capacity(ID_BATCH),
            prev: Vec::new(),
            have_prev: false,
            damaged: false,
            open: true,
        },
        IdSource { rx },
    )
}

impl IdFeed {
    fn send(&mut self, ids: Ids) {
        self.open = self.open && self.tx.send(ids).is_ok();
    }

    /// The walk of the ID index is over: the last batch, then the end.
    pub fn finish(mut self) {
        let last = std::mem::take(&mut self.batch);
        if !last.is_empty() {
            self.send(Ids::Batch(last));
        }
        let complete = !self.damaged;
        self.send(Ids::End { complete });
    }
}

impl Tap for IdFeed {
    fn entry(&mut self, rec: &Record, payload: &[u8]) {
        let Some(ValueRef::Text(t)) = rec.get(payload, 0) else {
            return;
        };
        if !self.open || (self.have_prev && self.prev.as_slice() == t) {
            return;
        }
        self.batch.push(t.to_vec());
        self.prev.clear();
        self.prev.extend_from_slice(t);
        self.have_prev = true;
        if self.batch.len() == ID_BATCH {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(ID_BATCH));
            self.send(Ids::Batch(full));
        }
    }

    fn damage(&mut self) {
        self.damaged = true;
    }
}

/// Reads the customer IDs from the index (or WITHOUT ROWID table) rooted
/// at `root` into `feed`, for a merge whose IDs no other walk hands over.
fn read_ids(pager: &Pager, root: u32, mut feed: IdFeed) {
    let mut rec = Record::default();
    btree::walk_index(pager, root, &mut |item| match item {
        IndexItem::Entry { payload, .. } => {
            if rec.parse(payload).is_ok() {
                feed.entry(&rec, payload);
            }
        }
        IndexItem::Damage(_) => feed.damage(),
    });
    feed.finish();
}

/// Runs `walk`, which walks a referencing index and hands each entry to
/// the merge it is given, against the customer IDs coming from `ids`: a
/// streaming merge, both sides in key order.
pub fn merge_fed<R>(ids: IdSource, walk: impl FnOnce(&mut Merge) -> R) -> (R, Merged) {
    let mut merge = Merge {
        ids,
        pending: Vec::new().into_iter(),
        ids_end: None,
        cur: None,
        prev: Vec::new(),
        have_prev: false,
        damaged: false,
        candidates: BTreeSet::new(),
    };
    merge.cur = merge.next_id();
    let r = walk(&mut merge);
    // The rest of the IDs: their end says whether their walk was whole.
    while merge.next_id().is_some() {}
    let Merge {
        ids_end,
        damaged,
        candidates,
        ..
    } = merge;
    (
        r,
        Merged {
            candidates,
            complete: ids_end == Some(true) && !damaged,
            delivered: ids_end.is_some(),
        },
    )
}

/// The merge of a referencing index's entries, in key order, against the
/// customer IDs: fed by whichever walk reads that index.
pub struct Merge {
    ids: IdSource,
    pending: std::vec::IntoIter<Vec<u8>>,
    /// Whether the IDs' walk was whole, once their end came.
    ids_end: Option<bool>,
    /// The smallest customer ID not yet passed.
    cur: Option<Vec<u8>>,
    /// The previous distinct referenced value.
    prev: Vec<u8>,
    have_prev: bool,
    damaged: bool,
    candidates: BTreeSet<String>,
}

impl Merge {
    fn next_id(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(id) = self.pending.next() {
                return Some(id);
            }
            if self.ids_end.is_some() {
                return None;
            }
            match self.ids.rx.recv() {
                Ok(Ids::Batch(b)) => self.pending = b.into_iter(),
                Ok(Ids::End { complete }) => self.ids_end = Some(complete),
                Err(_) => return None,
            }
        }
    }
}

impl Tap for Merge {
    /// One entry of the referencing index (its record parsed): its first
    /// field, when it is text and differs from the previous entry's, is
    /// looked for among the customer IDs.
    fn entry(&mut self, rec: &Record, payload: &[u8]) {
        let Some(ValueRef::Text(v)) = rec.get(payload, 0) else {
            return;
        };
        if self.have_prev && self.prev.as_slice() == v {
            return;
        }
        while self.cur.as_deref().is_some_and(|c| c < v) {
            self.cur = self.next_id();
        }
        if self.cur.as_deref() != Some(v) {
            self.candidates
                .insert(String::from_utf8_lossy(v).into_owned());
        }
        self.prev.clear();
        self.prev.extend_from_slice(v);
        self.have_prev = true;
    }

    fn damage(&mut self) {
        self.damaged = true;
    }
}

/// A walk of the referencing index rooted at `root` for the merge alone
/// (when no other walk reads it).
fn walk_reference(pager: &Pager, root: u32, merge: &mut Merge) {
    let mut rec = Record::default();
    btree::walk_index(pager, root, &mut |item| match item {
        IndexItem::Entry { payload, .. } => {
            if rec.parse(payload).is_ok() {
                merge.entry(&rec, payload);
            }
        }
        IndexItem::Damage(_) => merge.damage(),
    });
}

/// Confirms candidates against the table: a candidate with a row is not
/// vanished (its index entry is lost: the comparison reports that). In a
/// WITHOUT ROWID table, whose ID index is the table itself, neither is a
/// candidate an entry of another index still names: every entry ends with
/// the primary key, and the comparison reports it (`index_entry_surplus`),
/// as it reports a rowid table's ID index entry whose row is lost.
fn confirm(pager: &Pager, table: &CustomerTable, candidates: &mut BTreeSet<String>) {
    if table.without_rowid {
        named_by_other_indexes(pager, table, candidates);
    }
    let mut rec = Record::default();
    let pos = table.columns[table.id_column].record_pos;
    let mut row = |payload: &[u8]| {
        if rec.parse(payload).is_ok()
            && let Some(p) = pos
            && let Some(ValueRef::Text(t)) = rec.get(payload, p)
        {
            let s = canon::decode_text(t, pager.text_encoding());
            candidates.remove(&s);
        }
    };
    if table.without_rowid {
        btree::walk_index(pager, table.rootpage, &mut |item| {
            if let IndexItem::Entry { payload, .. } = item {
                row(payload)
            }
        });
    } else {
        btree::walk_table(pager, table.rootpage, &mut |item| {
            if let btree::TableItem::Row { payload, .. } = item {
                row(payload)
            }
        });
    }
}

/// Removes from `candidates` the IDs that entries of the WITHOUT ROWID
/// table's indexes hold (read from their pages).
fn named_by_other_indexes(pager: &Pager, table: &CustomerTable, candidates: &mut BTreeSet<String>) {
    let mut rec = Record::default();
    for index in &table.indexes {
        let Some(pos) = index
            .fields
            .iter()
            .position(|f| matches!(f.part, IndexPart::Column(c) if c == table.id_column))
        else {
            continue;
        };
        btree::walk_index(pager, index.rootpage, &mut |item| {
            if let IndexItem::Entry { payload, .. } = item
                && rec.parse(payload).is_ok()
                && let Some(ValueRef::Text(t)) = rec.get(payload, pos)
            {
                candidates.remove(&canon::decode_text(t, pager.text_encoding()));
            }
        });
        if candidates.is_empty() {
            return;
        }
    }
}

/// Findings that are evidence of lost or damaged content.
const LOSS: &[Code] = &[
    Code::HeaderInvalid,
    Code::FileTruncated,
    Code::FileSizeOdd,
    Code::WalInvalid,
    Code::SchemaUnreadable,
    Code::PageDamaged,
    Code::CellDamaged,
    Code::ChildPointerInvalid,
    Code::RecordDamaged,
    Code::KeyOrder,
    Code::PageUnused,
    Code::PageReused,
    Code::PagesSwapped,
    Code::FreelistDamaged,
    Code::SqliteQuickCheck,
    Code::RowsUnreadable,
    Code::IndexEntrySurplus,
    Code::IndexEntryMissing,
    Code::IndexKeyMismatch,
    Code::LookupWrong,
];

/// Under `erasure_by_evidence`, turns `customer_vanished` into
/// `customer_erased` (info) when no other finding is evidence of loss.
pub fn classify_erasures(findings: &mut [Finding], policy: VanishedPolicy) {
    if policy != VanishedPolicy::ErasureByEvidence
        || findings.iter().any(|f| LOSS.contains(&f.code))
    {
        return;
    }
    for f in findings
        .iter_mut()
        .filter(|f| f.code == Code::CustomerVanished)
    {
        f.code = Code::CustomerErased;
        f.severity = Severity::Info;
        f.message = format!(
            "{} customer IDs are named by {} but were deleted from the table and its indexes \
             on purpose, by the evidence: nothing in the file is lost or damaged and no index \
             entry survives for them (config \"vanished\": \"erasure_by_evidence\")",
            f.customer_ids.len(),
            f.object.as_deref().unwrap_or("another table")
        );
    }
}
