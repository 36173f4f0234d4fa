//! Which page of a damaged file is the root of which table and index of
//! the snapshot's schema, when the file's own schema table is lost.
//!
//! The candidates are the pages no other page points to
//! (`format::roots`). A table's root is the one candidate whose rows fit
//! the table's record shape (column count and the storage classes its
//! declared types allow) and agree with the snapshot's rows of the same
//! rowid; an index's root is the one candidate whose entries have the
//! index's field count and whose keys equal the columns of the row they
//! name, in the table just found. A WITHOUT ROWID table's root is the one
//! index b-tree whose records fit its shape (primary key first) and agree
//! with the snapshot's rows of the same primary key; its indexes are not
//! looked for (they start empty and are rebuilt from it). Where no single
//! candidate stands out (a
//! table whose own root page was lost shows several subtrees, two tables of
//! one shape agree with neither), the root is "not told" and the caller
//! falls back: rows salvaged by shape for a table, a rebuild from the
//! table for an index.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use rusqlite::Connection;

use crate::check::canon;
use crate::format::btree::{self, PageSource, TableItem};
use crate::format::header::TextEncoding;
use crate::format::record::Record;
use crate::format::roots::{RootCandidate, TreeKind};
use crate::format::salvage::{ColumnSpec, KindSet, TableShape};
use crate::schema::{SchemaObject, quote_ident};
use crate::sql_bytes;

/// A share of sampled rows (or entries) this large must agree for a
/// candidate to count as the object's.
const AGREE: f64 = 0.5;

/// What was found for the snapshot's schema.
#[derive(Debug, Clone, Default)]
pub struct FoundRoots {
    /// Object name → its root page in the damaged file.
    pub roots: BTreeMap<String, u32>,
    /// Objects whose root could not be told, with the reason.
    pub untold: Vec<(String, String)>,
    /// Candidate roots that no object of the snapshot's schema claimed
    /// (trees made after the snapshot, or stale pages), with their entries.
    pub unclaimed: Vec<(u32, u64)>,
}

/// One column of a table as stored in its records.
struct StoredColumn {
    name: String,
    decl_type: String,
    not_null: bool,
    has_default: bool,
    /// Its place in the primary key (1 for the first column), 0 if none.
    pk: i64,
}

/// A table of the snapshot.
struct TableSpec {
    name: String,
    /// In record order: table order for a rowid table, the primary key's
    /// columns first for a WITHOUT ROWID table.
    columns: Vec<StoredColumn>,
    /// A WITHOUT ROWID table's primary-key columns, first in each record
    /// (0 for a rowid table).
    key_columns: usize,
    /// The INTEGER PRIMARY KEY column (stored as NULL), by stored position.
    rowid_alias: Option<usize>,
    shape: TableShape,
}

/// An index of the snapshot on a rowid table.
struct IndexSpec {
    name: String,
    table: String,
    /// For each field of an entry: the table column (stored position) it
    /// holds, or None (an expression, or the trailing rowid).
    fields: Vec<Option<usize>>,
}

/// Finds the roots of the snapshot's tables and indexes among `cands`.
pub fn find(
    src: &dyn PageSource,
    cands: &[RootCandidate],
    snapshot: &Connection,
    schema: &[SchemaObject],
) -> Result<FoundRoots> {
    let enc = src.text_encoding();
    let mut out = FoundRoots::default();
    let mut tables = Vec::new();
    let mut keyed = Vec::new();
    for o in schema
        .iter()
        .filter(|o| o.kind == "table" && o.rootpage > 0)
    {
        if crate::schema::is_without_rowid(o.sql.as_deref().unwrap_or("")) {
            keyed.push(table_spec(snapshot, &o.name, true)?);
        } else {
            tables.push(table_spec(snapshot, &o.name, false)?);
        }
    }
    let mut claimed: BTreeSet<u32> = BTreeSet::new();
    for t in &tables {
        place_table(&mut out, cands, t, TreeKind::Table, |c| {
            table_agreement(snapshot, t, c, enc)
        });
    }
    // a WITHOUT ROWID table's b-tree is an index b-tree whose records are
    // its rows, primary key first
    for t in &keyed {
        place_table(&mut out, cands, t, TreeKind::Index, |c| {
            keyed_agreement(snapshot, t, c, enc)
        });
    }
    // a candidate two tables chose is neither's
    undo_shared(&mut out);
    claimed.extend(out.roots.values().copied());
    let indexes = index_specs(snapshot, schema, &tables)?;
    let rows = rows_for_indexes(src, snapshot, cands, &indexes, &tables, &out.roots);
    for ix in &indexes {
        let Some(t) = tables.iter().find(|t| t.name == ix.table) else {
            continue;
        };
        let table_rows = rows.get(&t.name);
        let scored: Vec<(u32, f64)> = cands
            .iter()
            .filter(|c| c.kind == TreeKind::Index && !claimed.contains(&c.pgno))
            .filter(|c| {
                c.entries == 0
                    || c.sample
                        .iter()
                        .all(|(_, r)| field_count(r) == Some(ix.fields.len()))
            })
            .filter(|c| !c.sample.is_empty())
            .map(|c| (c.pgno, key_agreement(ix, c, table_rows, enc)))
            .collect();
        match choose(&scored) {
            Ok(p) => {
                out.roots.insert(ix.name.clone(), p);
            }
            Err(why) => out.untold.push((ix.name.clone(), why)),
        }
    }
    // the indexes of a WITHOUT ROWID table start empty and are rebuilt
    // from its rows
    for o in schema
        .iter()
        .filter(|o| o.kind == "index" && o.rootpage > 0)
    {
        if !indexes.iter().any(|ix| ix.name == o.name) && !out.roots.contains_key(&o.name) {
            out.untold.push((
                o.name.clone(),
                format!(
                    "an index of {}, whose entries are not matched to rows",
                    o.tbl_name
                ),
            ));
        }
    }
    undo_shared(&mut out);
    // trees of no object's shape: made after the snapshot, or stale
    let found: BTreeSet<u32> = out.roots.values().copied().collect();
    out.unclaimed = cands
        .iter()
        .filter(|c| c.entries > 0 && !found.contains(&c.pgno))
        .filter(|c| match c.kind {
            TreeKind::Table => !tables
                .iter()
                .any(|t| c.sample.iter().all(|(_, rec)| fits(&t.shape, rec))),
            TreeKind::Index => {
                !indexes.iter().any(|ix| {
                    c.sample
                        .iter()
                        .all(|(_, r)| field_count(r) == Some(ix.fields.len()))
                }) && !keyed
                    .iter()
                    .any(|t| c.sample.iter().all(|(_, rec)| fits(&t.shape, rec)))
            }
        })
        .map(|c| (c.pgno, c.entries))
        .collect();
    Ok(out)
}

/// Table `t`'s root: among the candidates of b-tree `kind` whose sampled
/// records all fit its shape, the one that agrees with the snapshot
/// (`agreement`) as no other does ([`choose`]); else why it cannot be told.
fn place_table(
    out: &mut FoundRoots,
    cands: &[RootCandidate],
    t: &TableSpec,
    kind: TreeKind,
    agreement: impl Fn(&RootCandidate) -> f64,
) {
    let scored: Vec<(u32, f64)> = cands
        .iter()
        .filter(|c| c.kind == kind && !c.sample.is_empty())
        .filter(|c| c.sample.iter().all(|(_, rec)| fits(&t.shape, rec)))
        .map(|c| (c.pgno, agreement(c)))
        .collect();
    match choose(&scored) {
        Ok(p) => {
            out.roots.insert(t.name.clone(), p);
        }
        Err(why) => out.untold.push((t.name.clone(), why)),
    }
}

/// The one candidate that stands out: the only one whose sample agrees
/// (at least [`AGREE`]), or the only one that fits at all.
fn choose(scored: &[(u32, f64)]) -> std::result::Result<u32, String> {
    let strong: Vec<u32> = scored
        .iter()
        .filter(|(_, s)| *s >= AGREE)
        .map(|(p, _)| *p)
        .collect();
    match (strong.as_slice(), scored) {
        ([p], _) => Ok(*p),
        ([], [(p, _)]) => Ok(*p),
        ([], []) => Err("no page of the file holds a tree of its shape".into()),
        ([], many) => Err(format!(
            "{} trees of its shape, none agreeing with the snapshot",
            many.len()
        )),
        (many, _) => Err(format!(
            "{} trees of its shape agree with the snapshot (pages {}): its own root is lost",
            many.len(),
            many.iter()
                .take(8)
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Objects that chose the same page: neither gets it.
fn undo_shared(out: &mut FoundRoots) {
    let mut by_page: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (name, p) in &out.roots {
        by_page.entry(*p).or_default().push(name.clone());
    }
    for (p, names) in by_page.into_iter().filter(|(_, n)| n.len() > 1) {
        for n in names {
            out.roots.remove(&n);
            out.untold
                .push((n, format!("page {p} fits it and another object alike")));
        }
    }
}

fn table_spec(snapshot: &Connection, name: &str, without_rowid: bool) -> Result<TableSpec> {
    let mut columns: Vec<StoredColumn> = sql_bytes::query_map(
        snapshot,
        &format!("PRAGMA table_xinfo({})", quote_ident(name)),
        &[],
        |r| {
            Ok((
                StoredColumn {
                    name: r.text(1)?.unwrap_or_default(),
                    decl_type: r.text(2)?.unwrap_or_default(),
                    not_null: r.get::<i64>(3)? != 0,
                    has_default: r.text(4)?.is_some(),
                    pk: r.get::<i64>(5)?,
                },
                r.get::<i64>(6)?,
            ))
        },
    )?
    .into_iter()
    // virtual generated columns are not stored
    .filter_map(|(c, hidden)| (hidden != 2).then_some(c))
    .collect();
    let key_columns = if without_rowid {
        // SQLite stores the primary key's columns first, in key order,
        // then the others in table order
        columns.sort_by_key(|c| if c.pk > 0 { (0, c.pk) } else { (1, 0) });
        columns.iter().filter(|c| c.pk > 0).count()
    } else {
        0
    };
    let pks: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].pk > 0).collect();
    let rowid_alias = match pks.as_slice() {
        [i] if !without_rowid && columns[*i].decl_type.eq_ignore_ascii_case("INTEGER") => Some(*i),
        _ => None,
    };
    let specs: Vec<ColumnSpec<'_>> = columns
        .iter()
        .map(|c| ColumnSpec {
            decl_type: &c.decl_type,
            not_null: c.not_null,
            has_default: c.has_default,
        })
        .collect();
    let shape = TableShape::from_columns(&specs, rowid_alias);
    Ok(TableSpec {
        name: name.to_string(),
        columns,
        key_columns,
        rowid_alias,
        shape,
    })
}

fn index_specs(
    snapshot: &Connection,
    schema: &[SchemaObject],
    tables: &[TableSpec],
) -> Result<Vec<IndexSpec>> {
    let mut out = Vec::new();
    for o in schema
        .iter()
        .filter(|o| o.kind == "index" && o.rootpage > 0)
    {
        let Some(t) = tables.iter().find(|t| t.name == o.tbl_name) else {
            continue;
        };
        let fields: Vec<Option<usize>> = sql_bytes::query_map(
            snapshot,
            &format!("PRAGMA index_xinfo({})", quote_ident(&o.name)),
            &[],
            |r| Ok((r.get::<i64>(1)?, r.text(2)?)),
        )?
        .into_iter()
        .map(|(cid, name)| {
            (cid >= 0)
                .then(|| name.and_then(|n| t.columns.iter().position(|c| c.name == n)))
                .flatten()
        })
        .collect();
        out.push(IndexSpec {
            name: o.name.clone(),
            table: o.tbl_name.clone(),
            fields,
        });
    }
    Ok(out)
}

/// The canonical bytes of each value of a parsed record (`check::canon`),
/// so a value on a page compares with the same value from SQLite.
fn canonical(rec: &Record, payload: &[u8], enc: TextEncoding) -> Vec<Vec<u8>> {
    rec.values(payload)
        .map(|v| {
            let mut b = Vec::new();
            canon::push_raw(&mut b, &v, enc);
            b
        })
        .collect()
}

/// The storage class of each value of a record, or None if it does not parse.
fn kinds_of(rec: &[u8]) -> Option<Vec<KindSet>> {
    let mut r = Record::default();
    r.parse(rec).ok()?;
    Some(
        r.values(rec)
            .map(|v| match v {
                crate::format::record::ValueRef::Null => KindSet::NULL,
                crate::format::record::ValueRef::Integer(_) => KindSet::INTEGER,
                crate::format::record::ValueRef::Real(_) => KindSet::REAL,
                crate::format::record::ValueRef::Text(_) => KindSet::TEXT,
                crate::format::record::ValueRef::Blob(_) => KindSet::BLOB,
            })
            .collect(),
    )
}

fn field_count(rec: &[u8]) -> Option<usize> {
    kinds_of(rec).map(|k| k.len())
}

/// Whether a row's record fits a table's shape.
fn fits(shape: &TableShape, rec: &[u8]) -> bool {
    let Some(kinds) = kinds_of(rec) else {
        return false;
    };
    if kinds.len() > shape.columns || kinds.len() < shape.min_columns.max(1) {
        return false;
    }
    kinds.iter().enumerate().all(|(i, k)| {
        if shape.rowid_alias == Some(i) {
            *k == KindSet::NULL
        } else {
            shape
                .kinds
                .get(i)
                .is_none_or(|allowed| allowed.contains(*k))
        }
    })
}

/// The share of a candidate's sampled rows that equal the snapshot's row
/// of the same rowid (every stored column but the rowid alias).
fn table_agreement(
    snapshot: &Connection,
    t: &TableSpec,
    c: &RootCandidate,
    enc: TextEncoding,
) -> f64 {
    let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE rowid = ?1",
        cols.join(", "),
        quote_ident(&t.name)
    );
    if sql_bytes::prepare_only(snapshot, &sql).is_err() {
        return 0.0;
    }
    let mut rec = Record::default();
    let mut agree = 0usize;
    for (rowid, payload) in &c.sample {
        if rec.parse(payload).is_err() {
            continue;
        }
        let page = canonical(&rec, payload, enc);
        let same = sql_bytes::query_row(snapshot, &sql, &[rowid], |r| {
            Ok((0..cols.len()).all(|i| {
                if t.rowid_alias == Some(i) {
                    return true;
                }
                let mut b = Vec::new();
                match r.get_ref(i) {
                    Ok(v) => canon::push_sql(&mut b, v),
                    Err(_) => return false,
                }
                // a row written before an ADD COLUMN is shorter
                page.get(i).is_none_or(|p| *p == b)
            }))
        })
        .unwrap_or(false);
        agree += usize::from(same);
    }
    agree as f64 / c.sample.len().max(1) as f64
}

/// The share of a candidate's sampled records that are a WITHOUT ROWID
/// table's rows in the snapshot: the row with the same primary key holds
/// the same values.
fn keyed_agreement(
    snapshot: &Connection,
    t: &TableSpec,
    c: &RootCandidate,
    enc: TextEncoding,
) -> f64 {
    if t.key_columns == 0 {
        return 0.0;
    }
    let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let keys: Vec<String> = (0..t.key_columns)
        .map(|i| format!("{} = ?{}", cols[i], i + 1))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        cols.join(", "),
        quote_ident(&t.name),
        keys.join(" AND ")
    );
    if sql_bytes::prepare_only(snapshot, &sql).is_err() {
        return 0.0;
    }
    let mut rec = Record::default();
    let mut agree = 0usize;
    for (_, payload) in &c.sample {
        if rec.parse(payload).is_err() {
            continue;
        }
        let key: Vec<rusqlite::types::Value> = rec
            .values(payload)
            .take(t.key_columns)
            .map(|v| canon::to_owned(&v, enc))
            .collect();
        if key.len() < t.key_columns {
            continue;
        }
        let params: Vec<&dyn rusqlite::ToSql> =
            key.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        let page = canonical(&rec, payload, enc);
        let same = sql_bytes::query_row(snapshot, &sql, &params, |r| {
            Ok((0..cols.len()).all(|i| {
                let mut b = Vec::new();
                match r.get_ref(i) {
                    Ok(v) => canon::push_sql(&mut b, v),
                    Err(_) => return false,
                }
                page.get(i).is_none_or(|p| *p == b)
            }))
        })
        .unwrap_or(false);
        agree += usize::from(same);
    }
    agree as f64 / c.sample.len().max(1) as f64
}

/// Rows (canonical values by stored position) of each table with indexes,
/// for the rowids that the index candidates' samples name: from the
/// table's tree in the damaged file when its root was found, else from the
/// snapshot's table.
fn rows_for_indexes(
    src: &dyn PageSource,
    snapshot: &Connection,
    cands: &[RootCandidate],
    indexes: &[IndexSpec],
    tables: &[TableSpec],
    roots: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeMap<i64, Vec<Vec<u8>>>> {
    let enc = src.text_encoding();
    let mut wanted: BTreeSet<i64> = BTreeSet::new();
    let mut rec = Record::default();
    for c in cands.iter().filter(|c| c.kind == TreeKind::Index) {
        for (_, payload) in &c.sample {
            if rec.parse(payload).is_ok()
                && let Some(crate::format::record::ValueRef::Integer(r)) =
                    rec.values(payload).last()
            {
                wanted.insert(r);
            }
        }
    }
    let mut out = BTreeMap::new();
    for t in tables
        .iter()
        .filter(|t| indexes.iter().any(|i| i.table == t.name))
    {
        let Some(&root) = roots.get(&t.name) else {
            out.insert(t.name.clone(), snapshot_rows(snapshot, t, &wanted));
            continue;
        };
        let mut rows: BTreeMap<i64, Vec<Vec<u8>>> = BTreeMap::new();
        btree::walk_table(src, root, &mut |item| {
            if let TableItem::Row { rowid, payload, .. } = item
                && wanted.contains(&rowid)
                && rec.parse(payload).is_ok()
            {
                let mut values = canonical(&rec, payload, enc);
                if let Some(a) = t.rowid_alias
                    && let Some(slot) = values.get_mut(a)
                {
                    let mut b = Vec::new();
                    canon::push_raw(
                        &mut b,
                        &crate::format::record::ValueRef::Integer(rowid),
                        enc,
                    );
                    *slot = b;
                }
                rows.insert(rowid, values);
            }
        });
        out.insert(t.name.clone(), rows);
    }
    out
}

/// The snapshot's rows of `t` with the rowids `wanted`, as canonical
/// values by stored position (the rowid alias holds the rowid).
fn snapshot_rows(
    snapshot: &Connection,
    t: &TableSpec,
    wanted: &BTreeSet<i64>,
) -> BTreeMap<i64, Vec<Vec<u8>>> {
    let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE rowid = ?1",
        cols.join(", "),
        quote_ident(&t.name)
    );
    let mut out = BTreeMap::new();
    if sql_bytes::prepare_only(snapshot, &sql).is_err() {
        return out;
    }
    for &rowid in wanted {
        let row = sql_bytes::query_row(snapshot, &sql, &[&rowid], |r| {
            (0..cols.len())
                .map(|i| {
                    let mut b = Vec::new();
                    canon::push_sql(&mut b, r.get_ref(i)?);
                    Ok(b)
                })
                .collect::<rusqlite::Result<Vec<Vec<u8>>>>()
        });
        if let Ok(values) = row {
            out.insert(rowid, values);
        }
    }
    out
}

/// The share of a candidate's sampled entries whose key fields equal the
/// columns of the row they name. Without the table's rows (its root not
/// found) or without a column field (an expression index), nothing can be
/// compared: 0.
fn key_agreement(
    ix: &IndexSpec,
    c: &RootCandidate,
    rows: Option<&BTreeMap<i64, Vec<Vec<u8>>>>,
    enc: TextEncoding,
) -> f64 {
    let Some(rows) = rows else { return 0.0 };
    if ix.fields.iter().all(Option::is_none) {
        return 0.0;
    }
    let mut rec = Record::default();
    let mut agree = 0usize;
    for (_, payload) in &c.sample {
        if rec.parse(payload).is_err() {
            continue;
        }
        let values = canonical(&rec, payload, enc);
        let Some(crate::format::record::ValueRef::Integer(rowid)) = rec.values(payload).last()
        else {
            continue;
        };
        let Some(row) = rows.get(&rowid) else {
            continue;
        };
        let same = ix.fields.iter().zip(&values).all(|(f, v)| match f {
            Some(col) => row.get(*col).is_some_and(|r| r == v),
            None => true,
        });
        agree += usize::from(same);
    }
    agree as f64 / c.sample.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_candidate_must_stand_out() {
        assert_eq!(choose(&[(7, 0.9), (8, 0.1)]), Ok(7));
        assert_eq!(choose(&[(7, 0.0)]), Ok(7), "the only tree of its shape");
        assert!(
            choose(&[(7, 0.9), (8, 0.8)])
                .unwrap_err()
                .contains("own root is lost")
        );
        assert!(
            choose(&[(7, 0.1), (8, 0.2)])
                .unwrap_err()
                .contains("none agreeing")
        );
        assert!(choose(&[]).is_err());
    }
}
