//! The rows a table lost with its damaged pages, accounted for.
//!
//! A row whose rowid a surviving index entry names (or whose record was
//! found damaged) but that no page holds whole is *named*: it is restored
//! from the snapshot when the snapshot's row with that rowid holds the ID
//! the index names, else listed as unrecoverable. An index whose b-tree
//! the page reader walked without any damage names every row of the table
//! (a partial index does not), so when one exists every lost row is named.
//! When none does and pages of the table's b-tree were lost, rows may be
//! gone that nothing names: the table's [`LostRows`] says so, and the
//! snapshot's rows that lie where the lost pages were (by the parent's
//! rowid bounds) and are not in the new table are counted — for the
//! customer table listed by ID — as possibly lost. They are not restored:
//! nothing in the live file says they still existed.
//!
//! A WITHOUT ROWID table has no rowid: its indexes' entries end with the
//! table's primary key, and a lost row is named, and restored from the
//! snapshot, by that key.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use rusqlite::Connection;
use rusqlite::types::Value;

use crate::format::record::{Record, encode_record};
use crate::format::salvage::{self, SalvageEntry};
use crate::schema::{SchemaObject, quote_ident};
use crate::sql_bytes;

use super::rows::{self, SqlValue};
use super::source::Source;
use super::table::TargetTable;
use super::{Copied, LostRows, RebuildOutcome, Request, TableProvenance, Trees};

/// What accounting one table needs.
pub(crate) struct Ctx<'a> {
    pub conn: &'a Connection,
    pub src: &'a Source,
    pub trees: &'a Trees,
    pub snap: Option<&'a Connection>,
    /// The ID column, for the customer table (its losses are named by ID).
    pub id_column: Option<&'a str>,
    pub stamp: &'a str,
}

/// The customer ID a row of `t` holds.
pub(crate) fn customer_id_of(
    t: &TargetTable,
    id_column: &str,
    rowid: Option<i64>,
    values: &[SqlValue],
) -> Option<String> {
    let alias_is_id = t
        .rowid_alias
        .is_some_and(|a| t.columns[a].name.eq_ignore_ascii_case(id_column));
    if alias_is_id {
        return rowid.map(|r| r.to_string());
    }
    t.field_of(id_column)
        .and_then(|f| values.get(f))
        .and_then(SqlValue::id_text)
}

/// Accounts for the rows `t` lost (see the module documentation) and
/// returns its provenance.
pub(crate) fn account(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    c: Copied,
    out: &mut RebuildOutcome,
) -> Result<TableProvenance> {
    let mut prov = c.prov;
    out.quarantined_customer_ids.extend(c.quarantined_ids);
    let Some(stats) = c.stats else {
        return Ok(prov);
    };
    let may_be_lost = stats.rows_may_be_lost(!t.without_rowid);
    // rows found twice: a page holds another's rows (a stale copy, a page
    // written at the wrong place), and the rows it held before may be
    // gone, though no page is damaged: the indexes name them
    if c.damaged.is_empty()
        && !may_be_lost
        && stats.rows_damaged == 0
        && c.keyless_partials.is_empty()
        && prov.repeated == 0
    {
        return Ok(prov);
    }
    let complete = if t.without_rowid {
        account_by_primary_key(ctx, t, &mut prov, out)?
    } else {
        let (mut named, complete) = match c.named {
            Some(n) => n,
            None => name_by_indexes(ctx, t, &c.have),
        };
        for r in &c.damaged {
            if !c.have.contains(r) {
                named.entry(*r).or_insert(None);
            }
        }
        account_by_rowid(ctx, t, named, c.partials, &mut prov, out)?;
        complete
    };
    let mut unnamed_damaged = 0;
    for p in &c.keyless_partials {
        if !keep_partial(ctx, t, None, p, &mut prov, out)? {
            unnamed_damaged += 1;
        }
    }
    if t.without_rowid {
        unnamed_damaged += stats
            .rows_damaged
            .saturating_sub(c.keyless_partials.len() as u64);
    }
    if (may_be_lost && !complete) || unnamed_damaged > 0 {
        prov.lost = Some(LostRows {
            subtrees: stats.lost_subtrees.len(),
            pages: stats.lost_subtrees.iter().map(|l| l.pgno).collect(),
            unnamed_damaged,
            in_snapshot: 0,
            cells_refused: stats.cells_refused,
            ranges: if t.without_rowid {
                Vec::new()
            } else {
                stats.lost_subtrees.iter().map(|l| (l.lo, l.hi)).collect()
            },
        });
    }
    Ok(prov)
}

/// The rows of a rowid table that index entries or damaged records name
/// (rowid → the customer ID an entry holds) and the table lacks: each
/// restored from the snapshot, else kept as far as it could be read, else
/// listed as unrecoverable.
fn account_by_rowid(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    named: BTreeMap<i64, Option<String>>,
    mut partials: BTreeMap<i64, rows::Partial>,
    prov: &mut TableProvenance,
    out: &mut RebuildOutcome,
) -> Result<()> {
    for (rowid, id) in named {
        if let Some(restored_id) = restore_from_snapshot(ctx, t, rowid, id.as_deref())? {
            prov.from_snapshot += 1;
            if ctx.id_column.is_some() {
                out.restored_customer_ids.extend(restored_id.or(id));
            }
            continue;
        }
        let kept = match partials.remove(&rowid) {
            Some(p) => keep_partial(ctx, t, Some(rowid), &p, prov, out)?,
            None => false,
        };
        if !kept {
            prov.unrecoverable_rowids.push(rowid);
            if ctx.id_column.is_some() {
                out.unrecoverable_customer_ids.extend(id);
            }
        }
    }
    Ok(())
}

/// The rows of a WITHOUT ROWID table that its indexes' entries name by
/// primary key and the table lacks ([`name_by_primary_keys`]): each
/// restored from the snapshot's row with that key (when it holds the
/// customer ID the entry names), else listed as unrecoverable. Whether some
/// intact, non-partial index names every row.
fn account_by_primary_key(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    prov: &mut TableProvenance,
    out: &mut RebuildOutcome,
) -> Result<bool> {
    let (named, complete) = name_by_primary_keys(ctx, t)?;
    for lost in named.into_values() {
        if let Some(restored_id) = restore_key_from_snapshot(ctx, t, &lost)? {
            prov.from_snapshot += 1;
            if ctx.id_column.is_some() {
                out.restored_customer_ids.extend(restored_id.or(lost.id));
            }
            continue;
        }
        prov.unrecoverable_keys += 1;
        if ctx.id_column.is_some() {
            out.unrecoverable_customer_ids.extend(lost.id);
        }
    }
    Ok(complete)
}

/// A row of a WITHOUT ROWID table that index entries name but the new
/// table lacks.
struct NamedKey {
    /// Its primary key's values, in the key's order.
    key: Vec<SqlValue>,
    /// The customer ID an entry holds (customer table).
    id: Option<String>,
}

/// Where each of a WITHOUT ROWID table's primary-key columns is in an entry
/// of index `index` (key columns, then the primary-key columns not among
/// them, as `PRAGMA index_xinfo` lists them), and the entry's field names.
/// None when the new database has no such index or an entry does not hold
/// the whole key.
fn primary_key_fields(
    conn: &Connection,
    t: &TargetTable,
    index: &str,
) -> Option<(Vec<usize>, Vec<String>)> {
    let xinfo: Vec<(i64, String)> = sql_bytes::query_map(
        conn,
        &format!("PRAGMA index_xinfo({})", quote_ident(index)),
        &[],
        |r| Ok((r.get(1)?, r.text(2)?.unwrap_or_default())),
    )
    .ok()?;
    let mut pk: Vec<(i64, usize)> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.pk > 0)
        .map(|(i, c)| (c.pk, i))
        .collect();
    pk.sort_unstable();
    // a key column repeated after the index's own key (another collation)
    // is stored again there, as the table's key compares it: the last one
    let positions = pk
        .iter()
        .map(|&(_, col)| {
            let cid = i64::try_from(col).ok()?;
            xinfo.iter().rposition(|(c, _)| *c == cid)
        })
        .collect::<Option<Vec<usize>>>()?;
    (!positions.is_empty()).then(|| (positions, xinfo.into_iter().map(|(_, n)| n).collect()))
}

/// The rows of WITHOUT ROWID table `t` that surviving entries of its
/// indexes name, by primary key (an entry ends with the table's key where a
/// rowid index's ends with the rowid), but that the new table does not
/// hold; keyed by the key's record bytes (each row once, whichever index
/// named it). And whether some index whose b-tree was walked without damage,
/// and that is not partial, names every row.
fn name_by_primary_keys(
    ctx: &Ctx<'_>,
    t: &TargetTable,
) -> Result<(BTreeMap<Vec<u8>, NamedKey>, bool)> {
    let mut named: BTreeMap<Vec<u8>, NamedKey> = BTreeMap::new();
    let mut complete = false;
    let present_sql = format!(
        "SELECT count(*) FROM {} WHERE {}",
        quote_ident(&t.name),
        primary_key_match(t)
    );
    let source_indexes: Vec<&SchemaObject> = super::indexes_of(ctx.src, &t.name).collect();
    let rows = rows_now(ctx, t);
    for ix in source_indexes {
        let Some((pk_fields, names)) = primary_key_fields(ctx.conn, t, &ix.name) else {
            continue;
        };
        let mut entries = 0u64;
        let id_field = ctx
            .id_column
            .and_then(|c| names.iter().rposition(|n| n.eq_ignore_ascii_case(c)));
        let root = u32::try_from(ix.rootpage).unwrap_or(0);
        let claimed = ctx.trees.claimed_by_others(ctx.src, root);
        let mut rec = Record::default();
        let mut err: Option<anyhow::Error> = None;
        let stats = salvage::salvage_without_rowid_index(
            &ctx.src.pager,
            root,
            names.len(),
            &claimed,
            &mut |e| {
                let SalvageEntry::Entry { payload, .. } = e else {
                    return;
                };
                entries += 1;
                if err.is_some() || rec.parse(payload).is_err() {
                    return;
                }
                let Some(raw) = pk_fields
                    .iter()
                    .map(|&f| rec.raw(payload, f))
                    .collect::<Option<Vec<_>>>()
                else {
                    return;
                };
                let bytes = encode_record(&raw);
                if named.contains_key(&bytes) {
                    return;
                }
                let Some(key) = pk_fields
                    .iter()
                    .map(|&f| {
                        Some(SqlValue::from_record(
                            &rec.get(payload, f)?,
                            ctx.src.encoding,
                        ))
                    })
                    .collect::<Option<Vec<SqlValue>>>()
                else {
                    return;
                };
                match sql_bytes::query_row(ctx.conn, &present_sql, &sql_bytes::params(&key), |r| {
                    r.get::<i64>(0)
                }) {
                    Ok(0) => {}
                    Ok(_) => return,
                    Err(e) => {
                        err = Some(e.into());
                        return;
                    }
                }
                let id = id_field.and_then(|f| {
                    SqlValue::from_record(&rec.get(payload, f)?, ctx.src.encoding).id_text()
                });
                named.insert(bytes, NamedKey { key, id });
            },
        );
        if let Some(e) = err {
            return Err(e.context(format!("naming the rows index {} holds", ix.name)));
        }
        if stats.damage == 0
            && !stats.pages_lost
            && !crate::schema::is_partial_index(ix)
            && names_every_row(entries, rows)
        {
            complete = true;
        }
    }
    Ok((named, complete))
}

/// `k1 = ?1 AND k2 = ?2 …`: a row of `t` by its primary key's values, in
/// the key's order (each column compared by its own collation, as the key
/// is).
fn primary_key_match(t: &TargetTable) -> String {
    t.columns
        .iter()
        .filter(|c| c.pk > 0)
        .map(|c| format!("{} = ?{}", quote_ident(&c.name), c.pk))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Restores the row `lost` names from the snapshot's row with its primary
/// key, when the snapshot has it and (when an entry named an ID) it holds
/// that ID: `Some(the snapshot's ID)`; `None` when not.
fn restore_key_from_snapshot(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    lost: &NamedKey,
) -> Result<Option<Option<String>>> {
    let Some(snap) = ctx.snap else {
        return Ok(None);
    };
    let names = t.stored_names();
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        names.join(", "),
        quote_ident(&t.name),
        primary_key_match(t)
    );
    let row = sql_bytes::query_row(snap, &sql, &sql_bytes::params(&lost.key), |r| {
        (0..names.len())
            .map(|i| r.get::<Value>(i).map(SqlValue::from_value))
            .collect::<rusqlite::Result<Vec<_>>>()
    });
    let Ok(values) = row else {
        return Ok(None);
    };
    let snap_id = ctx
        .id_column
        .and_then(|c| customer_id_of(t, c, None, &values));
    let holds_it = match (&lost.id, &snap_id) {
        (Some(n), Some(s)) => n == s,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if !holds_it {
        return Ok(None);
    }
    match rows::insert(ctx.conn, t, None, &values, "the snapshot", ctx.stamp)? {
        rows::Placed::Inserted => Ok(Some(snap_id)),
        _ => Ok(None),
    }
}

/// Where a table may have lost rows no source names: the snapshot's rows
/// that lay where the lost pages were and that the new table does not hold
/// (once every restore is done), counted — and for the customer table
/// listed by ID as unrecoverable.
pub(crate) fn lost_in_snapshot(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    lost: &mut LostRows,
    out: &mut RebuildOutcome,
) -> Result<()> {
    let ids = snapshot_rows_in(ctx, t, &lost.ranges)?;
    lost.in_snapshot = ids.len() as u64;
    if ctx.id_column.is_some() {
        out.unrecoverable_customer_ids
            .extend(ids.into_iter().flatten());
    }
    Ok(())
}

/// Keeps what could be read of a damaged row: into the table when its
/// constraints take it (the rest of the columns empty; a rowid table's row
/// is kept even when only its rowid could be read), else — or when it has
/// more fields than the table has columns — quarantined (a customer's ID,
/// where it could be read, listed among the quarantined). Beside it, the
/// record's bytes that could be read go to the quarantine whole, as
/// `cell_payload` (as salvage's set-aside cells do): the values hold only
/// the fields that could be read whole, the bytes also the first part of
/// the field that could not (a value behind a broken overflow chain).
/// False when nothing could be read.
fn keep_partial(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    rowid: Option<i64>,
    p: &rows::Partial,
    prov: &mut TableProvenance,
    out: &mut RebuildOutcome,
) -> Result<bool> {
    let values = &p.values[..];
    if values.is_empty() && rowid.is_none() && p.bytes.is_empty() {
        return Ok(false);
    }
    if !p.bytes.is_empty() {
        let reason = format!(
            "{}; the record could not be read whole: the {} bytes of it that could be read (the cell's own part and the overflow pages that could be followed) kept whole as cell_payload",
            p.reason,
            p.bytes.len()
        );
        rows::quarantine(
            ctx.conn,
            ctx.stamp,
            &reason,
            &t.name,
            rowid.unwrap_or(0),
            &["cell_payload".to_string()],
            &[SqlValue::Blob(p.bytes.clone())],
        )?;
        prov.partial_bytes += 1;
    }
    if values.is_empty() && rowid.is_none() {
        return Ok(true);
    }
    let mut quarantined = || {
        prov.quarantined += 1;
        if let Some(idc) = ctx.id_column {
            out.quarantined_customer_ids
                .extend(customer_id_of(t, idc, rowid, values));
        }
    };
    let via = "a damaged record, read in part";
    if values.len() > t.fields.len() {
        let names: Vec<String> = (0..values.len()).map(|i| format!("c{i}")).collect();
        let reason = format!(
            "{via}: {} fields, more than the table's {} columns",
            values.len(),
            t.fields.len()
        );
        rows::quarantine(
            ctx.conn,
            ctx.stamp,
            &reason,
            &t.name,
            rowid.unwrap_or(0),
            &names,
            values,
        )?;
        quarantined();
        return Ok(true);
    }
    match rows::insert(ctx.conn, t, rowid, values, via, ctx.stamp)? {
        rows::Placed::Inserted => {
            prov.partial += 1;
            prov.partial_rowids.extend(rowid);
        }
        rows::Placed::Quarantined => quarantined(),
        rows::Placed::Repeated => prov.repeated += 1,
    }
    Ok(true)
}

/// Rows that surviving index entries name but that are not in the new
/// table (rowid → the customer ID the entry holds, when it holds one), and
/// whether some intact, non-partial index names every row.
pub(crate) fn name_by_indexes(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    have: &super::Rowids,
) -> (BTreeMap<i64, Option<String>>, bool) {
    name_by_indexes_with(ctx, t, have, |_| {})
}

/// One index entry whose row is not in the table, as [`name_by_indexes_with`]
/// hands it on.
pub(crate) struct Stale<'a> {
    /// The index's record fields (key columns, then the rowid), by name.
    pub fields: &'a [String],
    pub record: &'a Record,
    pub payload: &'a [u8],
    pub rowid: i64,
}

/// [`name_by_indexes`], handing every entry that names a row not in the
/// table to `visit` as well.
pub(crate) fn name_by_indexes_with(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    have: &super::Rowids,
    mut visit: impl FnMut(Stale<'_>),
) -> (BTreeMap<i64, Option<String>>, bool) {
    let mut named: BTreeMap<i64, Option<String>> = BTreeMap::new();
    let mut complete = false;
    let source_indexes: Vec<&SchemaObject> = super::indexes_of(ctx.src, &t.name).collect();
    let rows = rows_now(ctx, t);
    for ix in source_indexes {
        let Some(fields) = index_fields(ctx.conn, &ix.name) else {
            continue;
        };
        let mut entries = 0u64;
        let id_field = ctx
            .id_column
            .and_then(|c| fields.iter().position(|n| n.eq_ignore_ascii_case(c)));
        let root = u32::try_from(ix.rootpage).unwrap_or(0);
        let claimed = ctx.trees.claimed_by_others(ctx.src, root);
        let mut rec = Record::default();
        let stats =
            salvage::salvage_index(&ctx.src.pager, root, fields.len(), &claimed, &mut |e| {
                if let SalvageEntry::Entry { .. } = e {
                    entries += 1;
                }
                if let SalvageEntry::Entry { payload, rowid, .. } = e
                    && !have.contains(&rowid)
                {
                    let parsed = rec.parse(payload).is_ok();
                    let id = id_field.filter(|_| parsed).and_then(|f| {
                        SqlValue::from_record(&rec.get(payload, f)?, ctx.src.encoding).id_text()
                    });
                    let slot = named.entry(rowid).or_insert(None);
                    if slot.is_none() {
                        *slot = id;
                    }
                    if parsed {
                        visit(Stale {
                            fields: &fields,
                            record: &rec,
                            payload,
                            rowid,
                        });
                    }
                }
            });
        // a partial index need not name every row
        let partial = crate::schema::is_partial_index(ix);
        if stats.damage == 0 && !stats.pages_lost && !partial && names_every_row(entries, rows) {
            complete = true;
        }
    }
    (named, complete)
}

/// The rows the new table holds so far (those read from the damaged file's
/// pages); None when SQLite cannot count them.
fn rows_now(ctx: &Ctx<'_>, t: &TargetTable) -> Option<u64> {
    sql_bytes::query_row(
        ctx.conn,
        &format!("SELECT count(*) FROM {}", quote_ident(&t.name)),
        &[],
        |r| r.get::<i64>(0),
    )
    .ok()
    .map(|n| n.max(0) as u64)
}

/// Whether an index of `entries` entries can name every row of a table
/// that holds `rows` read from the same file: an empty index of a table
/// that holds rows names none of them. (An index whose root was not found
/// when the schema was mended from the snapshot starts as an empty leaf:
/// its walk is sound, and it names nothing.) More rows than entries is no
/// sign: rows from orphaned pages, or kept under a new rowid, are rows no
/// index ever named.
fn names_every_row(entries: u64, rows: Option<u64>) -> bool {
    entries > 0 || rows == Some(0)
}

/// The names of an index's record fields (key columns, then the rowid), as
/// the new database has the index; None when it has no such index.
pub(crate) fn index_fields(conn: &Connection, index: &str) -> Option<Vec<String>> {
    let fields: Vec<String> = sql_bytes::query_map(
        conn,
        &format!("PRAGMA index_xinfo({})", quote_ident(index)),
        &[],
        |r| Ok(r.text(2)?.unwrap_or_default()),
    )
    .ok()?;
    (!fields.is_empty()).then_some(fields)
}

/// The snapshot's row `rowid` of `t`, in record order, if the snapshot has it.
fn snapshot_row(snap: &Connection, t: &TargetTable, rowid: i64) -> Option<Vec<SqlValue>> {
    let names = t.stored_names();
    sql_bytes::query_row(
        snap,
        &format!(
            "SELECT {} FROM {} NOT INDEXED WHERE rowid = ?1",
            names.join(", "),
            quote_ident(&t.name)
        ),
        &[&rowid],
        |r| {
            (0..names.len())
                .map(|i| r.get::<Value>(i).map(SqlValue::from_value))
                .collect()
        },
    )
    .ok()
}

/// Restores row `rowid` from the snapshot when it has it and (when the index
/// named an ID) holds that ID: `Some(the snapshot's ID)`; `None` when not.
fn restore_from_snapshot(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    rowid: i64,
    named_id: Option<&str>,
) -> Result<Option<Option<String>>> {
    let Some(snap) = ctx.snap else {
        return Ok(None);
    };
    let Some(values) = snapshot_row(snap, t, rowid) else {
        return Ok(None);
    };
    let snap_id = ctx
        .id_column
        .and_then(|c| customer_id_of(t, c, Some(rowid), &values));
    let holds_it = match (named_id, &snap_id) {
        (Some(n), Some(s)) => n == s,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if !holds_it {
        return Ok(None);
    }
    match rows::insert(ctx.conn, t, Some(rowid), &values, "the snapshot", ctx.stamp)? {
        rows::Placed::Inserted => Ok(Some(snap_id)),
        _ => Ok(None),
    }
}

/// The snapshot's rows of `t` whose rowid lies in one of `ranges` (each
/// `(lo, hi]`) and that the new table does not hold: their customer IDs
/// (None for other tables, or a row without one).
fn snapshot_rows_in(
    ctx: &Ctx<'_>,
    t: &TargetTable,
    ranges: &[(Option<i64>, Option<i64>)],
) -> Result<Vec<Option<String>>> {
    let Some(snap) = ctx.snap else {
        return Ok(Vec::new());
    };
    let names = t.stored_names();
    let tq = quote_ident(&t.name);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for &(lo, hi) in ranges {
        let sql = format!(
            "SELECT rowid, {} FROM {tq} NOT INDEXED WHERE rowid > ?1 AND rowid <= ?2",
            names.join(", ")
        );
        let (lo, hi) = (lo.unwrap_or(i64::MIN), hi.unwrap_or(i64::MAX));
        // rows that cannot be read are left out, as a failed statement is
        let mut found: Vec<(i64, Vec<SqlValue>)> = Vec::new();
        let _ = sql_bytes::for_each(snap, &sql, &[&lo, &hi], |r| {
            let values = (1..=names.len())
                .map(|i| r.get::<Value>(i).map(SqlValue::from_value))
                .collect::<rusqlite::Result<Vec<_>>>();
            if let (Ok(values), Ok(rowid)) = (values, r.get::<i64>(0)) {
                found.push((rowid, values));
            }
            Ok(())
        });
        for (rowid, values) in found {
            if !seen.insert(rowid) {
                continue;
            }
            // a customer is there when its ID is: another row may have
            // its rowid (a cell out of key order kept under it)
            let id_value = ctx
                .id_column
                .filter(|c| {
                    t.rowid_alias
                        .is_none_or(|a| !t.columns[a].name.eq_ignore_ascii_case(c))
                })
                .and_then(|c| Some((c, values.get(t.field_of(c)?)?)));
            let present: i64 = match id_value {
                Some((c, v)) => sql_bytes::query_row(
                    ctx.conn,
                    &format!("SELECT count(*) FROM {tq} WHERE {} = ?1", quote_ident(c)),
                    &[v],
                    |r| r.get(0),
                )?,
                None => sql_bytes::query_row(
                    ctx.conn,
                    &format!("SELECT count(*) FROM {tq} WHERE {} = ?1", t.rowid_name),
                    &[&rowid],
                    |r| r.get(0),
                )?,
            };
            if present == 0 {
                out.push(
                    ctx.id_column
                        .and_then(|c| customer_id_of(t, c, Some(rowid), &values)),
                );
            }
        }
    }
    Ok(out)
}

/// Whether `EXCEPT` tells the IDs a reference column holds from the
/// customer table's IDs exactly as `=` does (the lookup it replaces): both
/// columns of the same declared type (so of one affinity: `=` converts
/// neither side) and neither table declaring a collation (`=` would use the
/// customer column's, `EXCEPT` the reference's).
fn merge_compares_alike(conn: &Connection, refers: (&str, &str), ids: (&str, &str)) -> bool {
    let declared = |(table, column): (&str, &str)| -> Option<(String, String)> {
        let sql: String = sql_bytes::query_row(
            conn,
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            &[&sql_bytes::param(table)],
            |r| r.text(0),
        )
        .ok()??;
        let decl = sql_bytes::query_map(
            conn,
            &format!("PRAGMA table_info({})", quote_ident(table)),
            &[],
            |r| {
                Ok((
                    r.text(1)?.unwrap_or_default(),
                    r.text(2)?.unwrap_or_default(),
                ))
            },
        )
        .ok()?
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(column))
        .map(|(_, decl)| decl.to_ascii_uppercase())?;
        Some((sql, decl))
    };
    match (declared(refers), declared(ids)) {
        (Some((a_sql, a)), Some((b_sql, b))) => {
            a == b
                && !crate::schema::has_word(&a_sql, "COLLATE")
                && !crate::schema::has_word(&b_sql, "COLLATE")
        }
        _ => false,
    }
}

/// Customers gone from both the table and its indexes are still named by
/// the rows that refer to them (a transaction's customer_id): those the
/// snapshot has are restored, the others listed as unrecoverable.
pub(crate) fn restore_referenced(
    conn: &Connection,
    snap: Option<&Connection>,
    schema: &[SchemaObject],
    req: &Request<'_>,
    out: &mut RebuildOutcome,
) -> Result<()> {
    let exists: i64 = sql_bytes::query_row(
        conn,
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
        &[&sql_bytes::param(req.customer_table)],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(());
    }
    let refs = crate::schema::reference_columns(
        conn,
        schema,
        req.customer_table,
        req.id_column,
        req.references,
    )?;
    let ct = quote_ident(req.customer_table);
    let idc = quote_ident(req.id_column);
    let cols: Vec<String> =
        sql_bytes::query_map(conn, &format!("PRAGMA table_info({ct})"), &[], |r| {
            Ok(r.text(1)?.unwrap_or_default())
        })?;
    let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let mut prov = TableProvenance {
        table: format!("{} (named by references)", req.customer_table),
        ..TableProvenance::default()
    };
    let mut missing: BTreeSet<String> = BTreeSet::new();
    for (t, c) in &refs {
        let sql = if merge_compares_alike(conn, (t, c), (req.customer_table, req.id_column)) {
            // both sides in key order (from their indexes when they have
            // them), walked side by side: a merge, not a lookup per row
            format!(
                "SELECT {c} FROM {t} WHERE {c} IS NOT NULL EXCEPT SELECT {idc} FROM {ct} ORDER BY 1",
                c = quote_ident(c),
                t = quote_ident(t),
            )
        } else {
            format!(
                "SELECT DISTINCT r.{c} FROM {t} AS r WHERE r.{c} IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM {ct} AS k WHERE k.{idc} = r.{c})",
                c = quote_ident(c),
                t = quote_ident(t),
            )
        };
        // an ID whose bytes are not UTF-8 (a damaged reference) is named
        // as check names it: decoded lossily
        let ids = sql_bytes::query_map(conn, &sql, &[], |r| {
            use rusqlite::types::ValueRef;
            let v = match r.get_ref(0)? {
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                ValueRef::Null => Value::Null,
            };
            Ok(crate::report::id_text(&v))
        });
        let Ok(ids) = ids else { continue };
        missing.extend(ids.into_iter().flatten());
    }
    // a WITHOUT ROWID table's rows have no rowid to keep: its primary key
    // is what names them
    let without_rowid = sql_bytes::query_row(
        conn,
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
        &[&sql_bytes::param(req.customer_table)],
        |r| r.text(0),
    )?
    .is_some_and(|sql| crate::schema::is_without_rowid(&sql));
    let rowid = if without_rowid { "NULL" } else { "rowid" };
    for id in missing {
        let row: Option<(Option<i64>, Vec<Value>)> = snap.and_then(|snap| {
            sql_bytes::query_row(
                snap,
                &format!(
                    "SELECT {rowid}, {} FROM {ct} NOT INDEXED WHERE {idc} = ?1",
                    names.join(", ")
                ),
                &[&id],
                |r| {
                    Ok((
                        r.get(0)?,
                        (1..=names.len())
                            .map(|i| r.get::<Value>(i))
                            .collect::<rusqlite::Result<_>>()?,
                    ))
                },
            )
            .ok()
        });
        let Some((rowid, values)) = row else {
            out.unrecoverable_customer_ids.push(id);
            continue;
        };
        let taken: bool = match rowid {
            Some(r) => {
                sql_bytes::query_row(
                    conn,
                    &format!("SELECT count(*) FROM {ct} WHERE rowid = ?1"),
                    &[&r],
                    |r| r.get::<i64>(0),
                )? > 0
            }
            None => true,
        };
        let mut sql = format!("INSERT INTO {ct}({}", names.join(", "));
        if !taken {
            sql.push_str(", rowid");
        }
        sql.push_str(") VALUES (");
        sql.push_str(
            &(1..=names.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let (false, Some(r)) = (taken, rowid) {
            sql.push_str(&format!(", {r}"));
        }
        sql.push(')');
        match sql_bytes::execute(conn, &sql, &sql_bytes::params(&values)) {
            Ok(_) => {
                prov.from_snapshot += 1;
                out.restored_customer_ids.push(id);
            }
            // another row holds one of its unique values (the rest of the
            // file was damaged too): not restored, never a reason to stop
            Err(rusqlite::Error::SqliteFailure(f, m))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let row = rowid.map_or_else(|| "row".to_string(), |r| format!("row {r}"));
                out.needs_decision.push(format!(
                    "customer {id}: the snapshot's {row} could not be restored ({}): another \
                     row holds one of its unique values; listed as unrecoverable, a person decides",
                    m.unwrap_or_else(|| f.to_string())
                ));
                out.unrecoverable_customer_ids.push(id);
            }
            Err(e) => bail!("restoring customer {id} from the snapshot: {e}"),
        }
    }
    if prov.from_snapshot > 0 {
        out.tables.push(prov);
    }
    Ok(())
}
