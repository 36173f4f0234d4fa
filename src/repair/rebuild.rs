//! The rebuild strategy, for damaged table pages: a new database is made
//! from the schema, every row that survives anywhere in the file (the page
//! reader's salvage: tree walk and orphaned leaves), and — for rows that
//! surviving index entries name but no page holds whole — the row of the
//! newest good snapshot. Every restored row's provenance is recorded.
//!
//! Part of the applier: it writes only the new file, never the original.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use crate::check::canon;
use crate::format::btree::PageSource;
use crate::format::header::TextEncoding;
use crate::format::record::Record;
use crate::format::salvage::{self, ColumnSpec, SalvageEntry, SalvageItem, TableShape, Via};
use crate::pager::Pager;
use crate::schema::{SchemaObject, quote_ident};

use super::apply::QUARANTINE_TABLE;

/// Where the rows of one table came from.
#[derive(Debug, Default, Clone)]
pub struct TableProvenance {
    pub table: String,
    pub from_tree: u64,
    pub from_orphan_pages: u64,
    pub from_snapshot: u64,
    /// Rowids that surviving index entries name but no source holds.
    pub unrecoverable_rowids: Vec<i64>,
    pub quarantined: u64,
}

#[derive(Debug, Default)]
pub struct RebuildOutcome {
    pub tables: Vec<TableProvenance>,
    /// Customer IDs restored from the snapshot.
    pub restored_customer_ids: Vec<String>,
    /// Customer IDs named by surviving index entries that no source restores.
    pub unrecoverable_customer_ids: Vec<String>,
    pub quarantined_customer_ids: Vec<String>,
    /// Rows of the customer table in the new file.
    pub customers: i64,
}

struct Col {
    name: String,
    decl_type: String,
    not_null: bool,
    has_default: bool,
    /// 0 ordinary, 2 virtual generated, 3 stored generated
    hidden: i64,
    pk: i64,
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<Col>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_xinfo({})", quote_ident(table)))?;
    let cols = stmt
        .query_map([], |r| {
            Ok(Col {
                name: r.get(1)?,
                decl_type: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                not_null: r.get::<_, i64>(3)? != 0,
                has_default: r.get::<_, Option<String>>(4)?.is_some(),
                pk: r.get(5)?,
                hidden: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(cols)
}

fn encoding_name(e: TextEncoding) -> &'static str {
    match e {
        TextEncoding::Utf8 => "UTF-8",
        TextEncoding::Utf16le => "UTF-16le",
        TextEncoding::Utf16be => "UTF-16be",
    }
}

/// Builds `new` (an empty file created by the caller) from `source` (a copy
/// of the original). `customer_table` names the table whose lost rows are
/// reported by customer ID, `id_column` its ID column.
#[allow(clippy::too_many_arguments)]
pub fn rebuild(
    source: &Path,
    new: &Path,
    live: &[SchemaObject],
    customer_table: &str,
    id_column: &str,
    snapshot: Option<&Path>,
    references: &[String],
    stamp: &str,
) -> Result<RebuildOutcome> {
    let pager = Pager::open(source)?;
    let h = pager.header().clone();
    let src_sql = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    src_sql.pragma_update(None, "writable_schema", true)?;
    let snap = match snapshot {
        Some(p) => Some(Connection::open_with_flags(
            p,
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?),
        None => None,
    };
    let conn = Connection::open(new).with_context(|| format!("{}: cannot open", new.display()))?;
    super::interrupt::watch(&conn);
    conn.execute_batch(&format!(
        "PRAGMA page_size = {}; PRAGMA encoding = '{}'; PRAGMA auto_vacuum = {}; \
         PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
         PRAGMA user_version = {}; PRAGMA application_id = {};",
        h.page_size,
        encoding_name(h.text_encoding),
        if h.largest_root_page == 0 {
            0
        } else if h.incremental_vacuum != 0 {
            2
        } else {
            1
        },
        h.user_version as i32,
        h.application_id as i32,
    ))?;
    // The source copy, attached so that tables whose pages are all sound
    // are copied by SQLite in bulk (when SQLite can read the copy at all).
    // (An attached file SQLite refuses would make every statement fail,
    // so it is tried on a connection of its own first.)
    let src_readable = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .is_ok();
    if src_readable {
        conn.execute("ATTACH DATABASE ?1 AS src", [source.to_string_lossy()])?;
    }
    conn.execute_batch("BEGIN")?;
    // tables first, in schema order
    for o in live
        .iter()
        .filter(|o| o.kind == "table" && !o.name.starts_with("sqlite_"))
    {
        let Some(sql) = &o.sql else { continue };
        let exists: bool = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [&o.name],
            |r| r.get::<_, i64>(0),
        )? > 0;
        if !exists {
            conn.execute_batch(sql)
                .with_context(|| format!("creating table {}", o.name))?;
        }
    }
    // every index's pages are known to the tree walk; the orphan scan must
    // not take another tree's pages for lost rows
    let roots: Vec<(u32, bool)> = live
        .iter()
        .filter(|o| o.rootpage > 0)
        .map(|o| (u32::try_from(o.rootpage).unwrap_or(0), o.kind == "index"))
        .collect();
    let mut out = RebuildOutcome::default();
    let enc = pager.text_encoding();
    for o in live.iter().filter(|o| {
        o.kind == "table"
            && o.rootpage > 0
            && (!o.name.starts_with("sqlite_") || o.name == "sqlite_sequence")
    }) {
        let root = u32::try_from(o.rootpage).unwrap_or(0);
        let cols = columns(&src_sql, &o.name)?;
        let is_customers = o.name.eq_ignore_ascii_case(customer_table);
        let sql_up = o.sql.clone().unwrap_or_default().to_ascii_uppercase();
        if sql_up.contains("WITHOUT ROWID") {
            bail!(
                "table {} is WITHOUT ROWID: rebuilding it from pages is not built yet",
                o.name
            );
        }
        let pk_cols: Vec<usize> = (0..cols.len()).filter(|&i| cols[i].pk > 0).collect();
        let rowid_alias = (pk_cols.len() == 1
            && cols[pk_cols[0]].decl_type.eq_ignore_ascii_case("INTEGER"))
        .then_some(pk_cols[0]);
        let stored: Vec<usize> = (0..cols.len()).filter(|&i| cols[i].hidden != 2).collect();
        let specs: Vec<ColumnSpec<'_>> = stored
            .iter()
            .map(|&i| ColumnSpec {
                decl_type: &cols[i].decl_type,
                not_null: cols[i].not_null,
                has_default: cols[i].has_default,
            })
            .collect();
        let alias_pos = rowid_alias.and_then(|a| stored.iter().position(|&i| i == a));
        let shape = TableShape::from_columns(&specs, alias_pos);
        let mut claimed_roots = roots.clone();
        claimed_roots.retain(|(r, _)| *r != root);
        let claimed = salvage::claimed_pages(&pager, &claimed_roots);
        let tq = quote_ident(&o.name);
        let mut prov = TableProvenance {
            table: o.name.clone(),
            ..TableProvenance::default()
        };
        if src_readable && !is_customers {
            let (damage, _) = crate::check::structure::walk_structure(&pager, root, false);
            if damage.is_empty() {
                let names: Vec<String> = stored
                    .iter()
                    .filter(|&&i| cols[i].hidden != 3 && Some(i) != rowid_alias)
                    .map(|&i| quote_ident(&cols[i].name))
                    .collect();
                let list: String = names.iter().map(|n| format!(", {n}")).collect();
                let n = conn
                    .execute(
                        &format!(
                            "INSERT INTO main.{tq}(rowid{list}) SELECT rowid{list} FROM src.{tq}"
                        ),
                        [],
                    )
                    .with_context(|| format!("copying table {}", o.name))?;
                prov.from_tree = n as u64;
                out.tables.push(prov);
                continue;
            }
        }
        let mut have: BTreeSet<i64> = BTreeSet::new();
        let mut damaged: BTreeSet<i64> = BTreeSet::new();
        let mut rec = Record::default();
        let mut err: Option<anyhow::Error> = None;
        let mut quarantined_ids = Vec::new();
        {
            let insert = |rowid: i64, values: Vec<Value>, via: &str| -> Result<bool> {
                // values are the stored columns, in order; fewer when the row
                // predates an ADD COLUMN (the rest take their defaults)
                let names: Vec<String> = stored
                    .iter()
                    .take(values.len())
                    .filter(|&&i| cols[i].hidden != 3 && Some(i) != rowid_alias)
                    .map(|&i| quote_ident(&cols[i].name))
                    .collect();
                let vals: Vec<&Value> = stored
                    .iter()
                    .zip(values.iter())
                    .filter(|(i, _)| cols[**i].hidden != 3 && Some(**i) != rowid_alias)
                    .map(|(_, v)| v)
                    .collect();
                let mut sql = format!("INSERT INTO {tq}(rowid");
                for n in &names {
                    sql.push_str(", ");
                    sql.push_str(n);
                }
                sql.push_str(") VALUES (?1");
                for i in 0..vals.len() {
                    sql.push_str(&format!(", ?{}", i + 2));
                }
                sql.push(')');
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&rowid];
                params.extend(vals.iter().map(|v| *v as &dyn rusqlite::ToSql));
                let r = conn.prepare_cached(&sql)?.execute(params.as_slice());
                match r {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.sqlite_error_code()
                            == Some(rusqlite::ErrorCode::ConstraintViolation) =>
                    {
                        // a duplicate key (or a violated constraint): kept aside, never dropped
                        conn.execute_batch(&format!(
                            "CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE}(quarantined_at TEXT NOT NULL, reason TEXT NOT NULL, \
                             source_table TEXT NOT NULL, original_rowid INTEGER NOT NULL, kept_rowid INTEGER, row_json TEXT NOT NULL)"
                        ))?;
                        let obj: serde_json::Map<String, serde_json::Value> = stored
                            .iter()
                            .zip(values.iter())
                            .map(|(&i, v)| (cols[i].name.clone(), json_of(v)))
                            .collect();
                        conn.execute(
                            &format!(
                                "INSERT INTO {QUARANTINE_TABLE} VALUES (?1, ?2, ?3, ?4, NULL, ?5)"
                            ),
                            rusqlite::params![
                                stamp,
                                format!("{e} (row from {via})"),
                                o.name,
                                rowid,
                                serde_json::Value::Object(obj).to_string()
                            ],
                        )?;
                        Ok(false)
                    }
                    Err(e) => Err(anyhow!("inserting row {rowid} of {}: {e}", o.name)),
                }
            };
            let id_pos = cols
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(id_column))
                .and_then(|i| stored.iter().position(|&s| s == i));
            salvage::salvage_table(&pager, root, &shape, &claimed, &mut |item| {
                if err.is_some() {
                    return;
                }
                match item {
                    SalvageItem::Row {
                        rowid,
                        payload,
                        via,
                        ..
                    } => {
                        if rec.parse(payload).is_err() {
                            damaged.insert(rowid);
                            return;
                        }
                        let values: Vec<Value> = rec
                            .values(payload)
                            .map(|v| canon::to_owned(&v, enc))
                            .collect();
                        let id = id_pos
                            .and_then(|p| values.get(p))
                            .and_then(crate::report::id_text);
                        let via_s = match via {
                            Via::Tree => "the table's pages",
                            Via::OrphanLeaf => "an orphaned page",
                        };
                        match insert(rowid, values, via_s) {
                            Ok(true) => {
                                have.insert(rowid);
                                match via {
                                    Via::Tree => prov.from_tree += 1,
                                    Via::OrphanLeaf => prov.from_orphan_pages += 1,
                                }
                            }
                            Ok(false) => {
                                have.insert(rowid);
                                prov.quarantined += 1;
                                if is_customers && let Some(i) = id {
                                    quarantined_ids.push(i);
                                }
                            }
                            Err(e) => err = Some(e),
                        }
                    }
                    SalvageItem::RowDamaged { rowid, .. } => {
                        damaged.insert(rowid);
                    }
                    SalvageItem::Damage(_) => {}
                }
            });
            if let Some(e) = err.take() {
                return Err(e);
            }
            // Rows that surviving index entries name (rowid → ID when the
            // index holds the ID) but no page holds whole.
            let mut named: BTreeMap<i64, Option<String>> = BTreeMap::new();
            for ix in live
                .iter()
                .filter(|x| x.kind == "index" && x.tbl_name == o.name && x.rootpage > 0)
            {
                let ix_cols: Vec<(i64, String)> = src_sql
                    .prepare(&format!("PRAGMA index_xinfo({})", quote_ident(&ix.name)))?
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, i64>(1)?,
                            r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        ))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let id_field = ix_cols
                    .iter()
                    .position(|(_, n)| n.eq_ignore_ascii_case(id_column));
                let iroot = u32::try_from(ix.rootpage).unwrap_or(0);
                let mut iclaimed_roots = roots.clone();
                iclaimed_roots.retain(|(r, _)| *r != iroot);
                let iclaimed = salvage::claimed_pages(&pager, &iclaimed_roots);
                let mut irec = Record::default();
                salvage::salvage_index(&pager, iroot, ix_cols.len(), &iclaimed, &mut |e| {
                    if let SalvageEntry::Entry { payload, rowid, .. } = e
                        && !have.contains(&rowid)
                    {
                        let id = if is_customers && irec.parse(payload).is_ok() {
                            id_field
                                .and_then(|f| irec.get(payload, f))
                                .and_then(|v| crate::report::id_text(&canon::to_owned(&v, enc)))
                        } else {
                            None
                        };
                        let slot = named.entry(rowid).or_insert(None);
                        if slot.is_none() {
                            *slot = id;
                        }
                    }
                });
            }
            for r in &damaged {
                if !have.contains(r) {
                    named.entry(*r).or_insert(None);
                }
            }
            // From the snapshot: the row with that rowid, if it holds the ID
            // the index names.
            for (rowid, id) in named {
                let from_snap: Option<Vec<Value>> = match &snap {
                    Some(s) => {
                        let names: Vec<String> =
                            stored.iter().map(|&i| quote_ident(&cols[i].name)).collect();
                        s.query_row(
                            &format!(
                                "SELECT {} FROM {tq} NOT INDEXED WHERE rowid = ?1",
                                names.join(", ")
                            ),
                            [rowid],
                            |r| (0..names.len()).map(|i| r.get::<_, Value>(i)).collect(),
                        )
                        .ok()
                    }
                    None => None,
                };
                let snap_id = from_snap
                    .as_ref()
                    .and_then(|v| id_pos.and_then(|p| v.get(p)))
                    .and_then(crate::report::id_text);
                let usable = match (&from_snap, &id, &snap_id) {
                    (Some(_), Some(named_id), Some(sid)) => named_id == sid,
                    (Some(_), None, _) => true,
                    _ => false,
                };
                if usable && let Some(values) = from_snap {
                    if insert(rowid, values, "the snapshot")? {
                        prov.from_snapshot += 1;
                        if is_customers && let Some(i) = snap_id.or(id) {
                            out.restored_customer_ids.push(i);
                        }
                    }
                } else {
                    prov.unrecoverable_rowids.push(rowid);
                    if is_customers && let Some(i) = id {
                        out.unrecoverable_customer_ids.push(i);
                    }
                }
            }
        }
        out.quarantined_customer_ids.extend(quarantined_ids);
        if is_customers {
            out.customers =
                conn.query_row(&format!("SELECT count(*) FROM {tq}"), [], |r| r.get(0))?;
        }
        out.tables.push(prov);
    }
    // then indexes, views and triggers, in schema order
    for o in live.iter().filter(|o| o.kind != "table") {
        let Some(sql) = &o.sql else { continue };
        conn.execute_batch(sql)
            .with_context(|| format!("creating {} {}", o.kind, o.name))?;
    }
    // Customers gone from both the table and its indexes are still named by
    // the rows that refer to them (a transaction's customer_id): those the
    // snapshot has are restored, the rest are unrecoverable.
    restore_referenced(
        &conn,
        snap.as_ref(),
        live,
        customer_table,
        id_column,
        references,
        &mut out,
    )?;
    conn.execute_batch("COMMIT")?;
    for v in [
        &mut out.restored_customer_ids,
        &mut out.unrecoverable_customer_ids,
        &mut out.quarantined_customer_ids,
    ] {
        v.sort();
        v.dedup();
    }
    drop(conn);
    Ok(out)
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => serde_json::json!(i),
        Value::Real(f) => serde_json::json!(f),
        Value::Text(t) => serde_json::json!(t),
        Value::Blob(b) => {
            serde_json::json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
    }
}

fn restore_referenced(
    conn: &Connection,
    snap: Option<&Connection>,
    live: &[SchemaObject],
    customer_table: &str,
    id_column: &str,
    references: &[String],
    out: &mut RebuildOutcome,
) -> Result<()> {
    let refs = crate::schema::reference_columns(conn, live, customer_table, id_column, references)?;
    let ct = quote_ident(customer_table);
    let idc = quote_ident(id_column);
    let cols: Vec<String> = conn
        .prepare(&format!("PRAGMA table_info({ct})"))?
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<_>>()?;
    let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let mut prov = TableProvenance {
        table: format!("{customer_table} (named by references)"),
        ..TableProvenance::default()
    };
    let mut missing: BTreeSet<String> = BTreeSet::new();
    for (t, c) in &refs {
        let sql = format!(
            "SELECT DISTINCT r.{c} FROM {t} AS r WHERE r.{c} IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM {ct} AS k WHERE k.{idc} = r.{c})",
            c = quote_ident(c),
            t = quote_ident(t),
        );
        let ids: Vec<Value> = conn
            .prepare(&sql)?
            .query_map([], |r| r.get::<_, Value>(0))?
            .collect::<rusqlite::Result<_>>()?;
        missing.extend(ids.iter().filter_map(crate::report::id_text));
    }
    for id in missing {
        let row: Option<(i64, Vec<Value>)> = snap.and_then(|snap| {
            snap.query_row(
                &format!(
                    "SELECT rowid, {} FROM {ct} NOT INDEXED WHERE {idc} = ?1",
                    names.join(", ")
                ),
                [&id],
                |r| {
                    Ok((
                        r.get(0)?,
                        (1..=names.len())
                            .map(|i| r.get::<_, Value>(i))
                            .collect::<rusqlite::Result<_>>()?,
                    ))
                },
            )
            .ok()
        });
        match row {
            Some((rowid, values)) => {
                let taken: bool = conn.query_row(
                    &format!("SELECT count(*) FROM {ct} WHERE rowid = ?1"),
                    [rowid],
                    |r| r.get::<_, i64>(0),
                )? > 0;
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
                if !taken {
                    sql.push_str(&format!(", {rowid}"));
                }
                sql.push(')');
                match conn.execute(&sql, rusqlite::params_from_iter(values.iter())) {
                    Ok(_) => {
                        prov.from_snapshot += 1;
                        out.restored_customer_ids.push(id);
                    }
                    Err(e) => bail!("restoring customer {id} from the snapshot: {e}"),
                }
            }
            None => out.unrecoverable_customer_ids.push(id),
        }
    }
    if prov.from_snapshot > 0 {
        out.customers = conn.query_row(&format!("SELECT count(*) FROM {ct}"), [], |r| r.get(0))?;
        out.tables.push(prov);
    }
    Ok(())
}
