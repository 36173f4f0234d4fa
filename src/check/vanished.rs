//! Vanished customers: rows gone from both the customer table and its
//! indexes leave no trace there, but other tables still name them (a
//! transaction's customer_id). Both sides are read in key order from index
//! pages (the referencing column's index and the customer ID index) and
//! merged; candidates are confirmed against the table itself.
//!
//! Erasures: customers deleted on purpose while their transactions stay (a
//! right-to-erasure request) look the same from the references. With the
//! config's `"vanished": "erasure_by_evidence"`, [`classify_erasures`]
//! tells them apart by the evidence of the whole check: when no finding
//! says that anything of the file was lost or damaged (header, size, pages,
//! cells, records, key order, page accounting, freelist, quick_check, rows,
//! surviving index entries without their row), the rows were deleted by
//! SQL, not lost with a page: `customer_erased`, info.

use std::collections::BTreeSet;

use rusqlite::Connection;

use super::canon;
use super::finding::{Code, Finding, Severity};
use crate::config::VanishedPolicy;
use crate::format::btree::{self, IndexItem, PageSource};
use crate::format::record::{Record, ValueRef};
use crate::pager::Pager;
use crate::schema::{CustomerTable, IndexPart, SchemaObject, quote_ident};

/// Customer IDs per message from the ID index's reader to the merge.
const ID_BATCH: usize = 1024;

/// Distinct text values of the first field of an index, in index order.
fn first_fields(pager: &Pager, root: u32, out: &mut dyn FnMut(&[u8])) -> bool {
    let mut rec = Record::default();
    let mut prev: Vec<u8> = Vec::new();
    let mut have = false;
    let mut damaged = false;
    btree::walk_index(pager, root, &mut |item| match item {
        IndexItem::Entry { payload, .. } => {
            if rec.parse(payload).is_err() {
                return;
            }
            if let Some(ValueRef::Text(t)) = rec.get(payload, 0)
                && (!have || prev.as_slice() != t)
            {
                out(t);
                prev.clear();
                prev.extend_from_slice(t);
                have = true;
            }
        }
        IndexItem::Damage(_) => damaged = true,
    });
    !damaged
}

/// Returns a finding naming the vanished customers, if any, or a note when
/// a reference could not be checked.
pub fn vanished(
    pager: &Pager,
    conn: &Connection,
    objects: &[SchemaObject],
    table: &CustomerTable,
    references: &[String],
) -> Vec<Finding> {
    let id_name = table.columns[table.id_column].name.clone();
    let Ok(refs) =
        crate::schema::reference_columns(conn, objects, &table.name, &id_name, references)
    else {
        return Vec::new();
    };
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
        None => return Vec::new(),
    };
    if pager.text_encoding() != crate::format::header::TextEncoding::Utf8 {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for (t, c) in refs {
        // an index on the referencing column, first key, BINARY
        let Some(ix) = objects.iter().find(|o| {
            o.kind == "index"
                && o.tbl_name.eq_ignore_ascii_case(&t)
                && o.rootpage > 0
                && conn
                    .query_row(
                        &format!(
                            "SELECT name, coll FROM pragma_index_xinfo({}) WHERE seqno = 0",
                            quote_ident(&o.name)
                        ),
                        [],
                        |r| {
                            Ok((
                                r.get::<_, Option<String>>(0)?,
                                r.get::<_, Option<String>>(1)?,
                            ))
                        },
                    )
                    .is_ok_and(|(n, coll)| {
                        n.is_some_and(|n| n.eq_ignore_ascii_case(&c))
                            && coll.is_none_or(|x| x.eq_ignore_ascii_case("BINARY"))
                    })
        }) else {
            findings.push(
                Finding::new(
                    Code::IndexNotCompared,
                    Severity::Info,
                    format!("{t}.{c} refers to customers but has no index to read it in order: vanished customers were not looked for there"),
                )
                .table(&t),
            );
            continue;
        };
        // Both sides in order: a streaming merge. The customer IDs come from
        // a second thread through a small bounded channel, so memory stays
        // constant whatever the table's size.
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        let ix_root = u32::try_from(ix.rootpage).unwrap_or(0);
        let ok = std::thread::scope(|s| {
            // IDs travel in batches: one wake-up per batch, not per ID
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(8);
            let producer = s.spawn(move || {
                let mut batch = Vec::with_capacity(ID_BATCH);
                let ok = first_fields(pager, id_root, &mut |v| {
                    batch.push(v.to_vec());
                    if batch.len() == ID_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(ID_BATCH));
                        let _ = tx.send(full);
                    }
                });
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                ok
            });
            let mut pending = Vec::new().into_iter();
            let mut next_id = move || loop {
                if let Some(id) = pending.next() {
                    return Some(id);
                }
                pending = rx.recv().ok()?.into_iter();
            };
            let mut cur: Option<Vec<u8>> = next_id();
            let ok_refs = first_fields(pager, ix_root, &mut |v| {
                while cur.as_deref().is_some_and(|c| c < v) {
                    cur = next_id();
                }
                if cur.as_deref() != Some(v) {
                    candidates.insert(String::from_utf8_lossy(v).into_owned());
                }
            });
            drop(next_id);
            let ok_ids = producer.join().unwrap_or(false);
            ok_refs && ok_ids
        });
        if candidates.is_empty() {
            continue;
        }
        // confirm against the table: a candidate with a row is not vanished
        // (its index entry is lost: the comparison reports that)
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
        if candidates.is_empty() {
            continue;
        }
        let ids: Vec<String> = candidates.into_iter().collect();
        let mut f = Finding::error(
            Code::CustomerVanished,
            format!(
                "{} customer IDs are named by {t}.{c} but no customer row or index entry has them: vanished{}; `custodian repair` restores those a snapshot has",
                ids.len(),
                if ok { "" } else { " (some index pages were damaged: the list may be incomplete)" }
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
