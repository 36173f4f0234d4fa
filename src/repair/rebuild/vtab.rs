//! Virtual tables (FTS3/4/5, R-Tree, ...): as SQLite's own recovery does,
//! the `CREATE VIRTUAL TABLE` entry is written into the new schema as it
//! stood (running the statement would create fresh, empty shadow tables),
//! and the shadow tables — ordinary tables holding the virtual table's
//! content — are rebuilt like every other table, row by row.
//!
//! The content of a damaged virtual table may not hang together even when
//! every shadow row was saved (an index segment lost, a node of the tree
//! gone). So once the new file is written, each virtual table is checked
//! with its module's own integrity check; a full-text index that fails is
//! rebuilt from its content (`'rebuild'`, the module's documented repair);
//! an R-Tree, which has no such command, is made anew from the entries its
//! nodes still give (`rebuild_rtree`); one that still fails, or cannot be
//! opened at all, is taken out of the
//! schema, its shadow tables — all the data it had — kept as plain tables,
//! and the report says so.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::schema::{SchemaObject, quote_ident};
use crate::sql_bytes::{self, param};

/// A virtual table of the schema.
#[derive(Debug, Clone)]
pub struct VirtualTable {
    pub name: String,
    /// The module, lower case (`fts5`, `fts4`, `rtree`, ...).
    pub module: String,
    pub sql: String,
}

/// The virtual table an entry declares, if it declares one.
pub fn of(o: &SchemaObject) -> Option<VirtualTable> {
    let sql = o.sql.as_deref()?;
    let words: Vec<String> = sql
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    if o.kind != "table" || words != ["CREATE", "VIRTUAL", "TABLE"] {
        return None;
    }
    let up = sql.to_ascii_uppercase();
    let module = up
        .find(" USING ")
        .map(|at| {
            sql[at + 7..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    Some(VirtualTable {
        name: o.name.clone(),
        module,
        sql: sql.to_string(),
    })
}

/// Writes the virtual table's entry into the new schema (inside the
/// rebuild's transaction; the connection does not read it back).
pub fn declare(conn: &Connection, vt: &VirtualTable) -> Result<()> {
    conn.pragma_update(None, "writable_schema", true)?;
    let r = sql_bytes::execute(
        conn,
        "INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql) VALUES ('table', ?1, ?1, 0, ?2)",
        &[&param(&vt.name), &param(&vt.sql)],
    );
    conn.pragma_update(None, "writable_schema", false)?;
    r.with_context(|| format!("declaring virtual table {}", vt.name))?;
    Ok(())
}

/// What became of a virtual table once the new file was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Its module's integrity check passes.
    Sound,
    /// The module is not part of custodian's SQLite: kept as found, unchecked.
    Unchecked,
    /// Its index was rebuilt from its content.
    Rebuilt,
    /// An R-Tree made anew from the entries its nodes gave: how many were
    /// read, and how many of them the new tree refused (quarantined).
    RebuiltRtree { entries: u64, quarantined: u64 },
    /// Taken out of the schema (why); its shadow tables are kept.
    Removed(String),
}

/// Checks every virtual table of the new file at `path` (after the
/// rebuild's transaction is committed), rebuilding or removing what fails.
pub fn settle(
    path: &Path,
    tables: &[VirtualTable],
    stamp: &str,
) -> Result<Vec<(VirtualTable, Settled)>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = open_schema(path)?;
    let mut out = Vec::new();
    let ordered = tables
        .iter()
        .filter(|v| owns_data(&v.module))
        .chain(tables.iter().filter(|v| !owns_data(&v.module)));
    for vt in ordered {
        let s = settle_one(&conn, vt, stamp);
        if let Settled::Removed(_) = &s
            && remove(&conn, vt).is_err()
        {
            // what the module cached on this connection before its
            // rebuild was rolled back can stand in the way: a fresh one
            conn = open_schema(path)?;
            remove(&conn, vt)?;
        }
        out.push((vt.clone(), s));
    }
    conn.pragma_update(None, "writable_schema", false)?;
    Ok(out)
}

/// A connection to the rebuilt file that may change its schema.
fn open_schema(path: &Path) -> Result<Connection> {
    let conn =
        Connection::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    crate::repair::interrupt::watch(&conn);
    // A CREATE VIRTUAL TABLE that cannot be parsed must not lock us out of
    // the schema we are repairing.
    conn.pragma_update(None, "writable_schema", true)?;
    Ok(conn)
}

/// Whether the module keeps its data in shadow tables and has an integrity
/// check of its own (checked first: a table over one, such as fts5vocab,
/// opens only when that one does).
fn owns_data(module: &str) -> bool {
    matches!(module, "fts3" | "fts4" | "fts5" | "rtree" | "rtree_i32")
}

fn settle_one(conn: &Connection, vt: &VirtualTable, stamp: &str) -> Settled {
    if !owns_data(&vt.module) {
        return match open(conn, vt) {
            Ok(()) => Settled::Sound,
            Err(e) if e.contains("no such module") => Settled::Unchecked,
            Err(e) => Settled::Removed(format!("it cannot be opened ({e})")),
        };
    }
    match check(conn, vt) {
        Ok(()) => Settled::Sound,
        Err(first) => {
            if vt.module.starts_with("fts") {
                match rebuild_fts(conn, vt) {
                    Ok(()) => Settled::Rebuilt,
                    Err(e) => Settled::Removed(format!(
                        "its integrity check fails ({first}) and rebuilding its index from its content failed too ({e})"
                    )),
                }
            } else if vt.module.starts_with("rtree") {
                match rebuild_rtree(conn, vt, stamp) {
                    Ok((entries, quarantined)) => Settled::RebuiltRtree {
                        entries,
                        quarantined,
                    },
                    Err(e) => Settled::Removed(format!(
                        "its integrity check fails ({first}) and making it anew from the entries its nodes give failed too ({e})"
                    )),
                }
            } else {
                Settled::Removed(format!("its integrity check fails ({first})"))
            }
        }
    }
}

/// Rebuilds a full-text index from its content (the module's `'rebuild'`)
/// and checks it again, inside a savepoint: when either fails, the index's
/// shadow tables are rolled back to the rows salvaged from the file, which
/// the table taken out of the schema keeps (a rebuild that wrote its index
/// and then failed its check replaced them: fts3corrupt4-17's two segment
/// rows became ten rebuilt ones).
fn rebuild_fts(conn: &Connection, vt: &VirtualTable) -> Result<(), String> {
    in_savepoint(conn, "custodian_fts_rebuild", || {
        let q = quote_ident(&vt.name);
        sql_bytes::execute(
            conn,
            &format!("INSERT INTO {q}({q}) VALUES ('rebuild')"),
            &[],
        )
        .map_err(|e| e.to_string())?;
        check(conn, vt)
    })
}

/// Runs `work` inside savepoint `name`: kept when it succeeds, rolled back
/// when it fails (what the rebuild of a virtual table must not leave half
/// done).
fn in_savepoint<T>(
    conn: &Connection,
    name: &str,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    conn.execute_batch(&format!("SAVEPOINT {name}"))
        .map_err(|e| e.to_string())?;
    let done = work();
    let end = match &done {
        Ok(_) => format!("RELEASE {name}"),
        Err(_) => format!("ROLLBACK TO {name}; RELEASE {name}"),
    };
    match (conn.execute_batch(&end), done) {
        (Ok(()), done) => done,
        (Err(e), Ok(_)) => Err(format!("ending its savepoint failed ({e})")),
        (Err(e), Err(w)) => Err(format!("{w}; ending its savepoint failed ({e})")),
    }
}

/// The temporary table holding an R-Tree's entries while it is made anew.
const RTREE_ENTRIES: &str = "custodian_rtree_entries";

/// Makes a damaged R-Tree anew (R-Tree has no `'rebuild'`): every entry a
/// scan of the virtual table gives (the scan walks the nodes from the root;
/// the auxiliary columns come from its rowid table) is put into a fresh
/// tree of the same definition. An entry the fresh tree refuses (a lower
/// bound above its upper bound, a rowid twice) goes to quarantine whole,
/// with SQLite's reason. Refused (nothing changed) when the old rowid
/// table names an entry the scan did not give: that entry's coordinates
/// are in a node the scan cannot reach, and would go with the old tree.
/// Returns (entries read, entries quarantined).
fn rebuild_rtree(conn: &Connection, vt: &VirtualTable, stamp: &str) -> Result<(u64, u64), String> {
    in_savepoint(conn, "custodian_rtree", || {
        let n = rtree_anew(conn, vt, stamp)?;
        check(conn, vt)?;
        conn.execute_batch(&format!("DROP TABLE temp.{RTREE_ENTRIES}"))
            .map_err(|e| e.to_string())?;
        Ok(n)
    })
}

/// [`rebuild_rtree`]'s steps, inside its savepoint.
fn rtree_anew(conn: &Connection, vt: &VirtualTable, stamp: &str) -> Result<(u64, u64), String> {
    let e = |e: rusqlite::Error| e.to_string();
    let q = quote_ident(&vt.name);
    let rowids = format!("{}_rowid", vt.name);
    let qt = crate::repair::apply::QUARANTINE_TABLE;
    sql_bytes::execute_batch(
        conn,
        &format!("CREATE TEMP TABLE {RTREE_ENTRIES} AS SELECT * FROM main.{q}"),
    )
    .map_err(e)?;
    let (entry_json, id) = row_json(conn, "temp", RTREE_ENTRIES)?;
    // the nodes must give every entry the rowid table names: else entries
    // are in nodes the scan cannot reach, and dropping the old tree would
    // lose their coordinates
    let unreached: i64 = sql_bytes::query_row(
        conn,
        &format!(
            "SELECT count(*) FROM main.{} WHERE rowid NOT IN (SELECT {id} FROM temp.{RTREE_ENTRIES})",
            quote_ident(&rowids)
        ),
        &[],
        |r| r.get(0),
    )
    .map_err(e)?;
    if unreached > 0 {
        return Err(format!(
            "{unreached} entries its rowid table names are in no node a scan reaches"
        ));
    }
    conn.execute_batch(&super::rows::quarantine_ddl())
        .map_err(e)?;
    let mut quarantined = 0u64;
    sql_bytes::execute_batch(conn, &format!("DROP TABLE main.{q}")).map_err(e)?;
    sql_bytes::execute_batch(conn, &vt.sql).map_err(e)?;
    let entries: Vec<i64> = conn
        .prepare(&format!("SELECT rowid FROM temp.{RTREE_ENTRIES}"))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(e)?;
    let insert =
        format!("INSERT INTO main.{q} SELECT * FROM temp.{RTREE_ENTRIES} WHERE rowid = ?1");
    let keep = format!(
        "INSERT INTO {qt} SELECT ?1, ?2, ?3, {id}, NULL, {entry_json} FROM temp.{RTREE_ENTRIES} WHERE rowid = ?4"
    );
    for at in &entries {
        let Err(refused) = sql_bytes::execute(conn, &insert, &[at]) else {
            continue;
        };
        let reason =
            format!("{refused} (an entry read from the R-Tree's nodes when it was made anew)");
        sql_bytes::execute(conn, &keep, &[&stamp, &reason, &param(&vt.name), at]).map_err(e)?;
        quarantined += 1;
    }
    Ok((entries.len() as u64, quarantined))
}

/// The `json_object(...)` of a row of `schema.table` (its columns by
/// name), and its first column, quoted.
fn row_json(conn: &Connection, schema: &str, table: &str) -> Result<(String, String), String> {
    let columns: Vec<String> = sql_bytes::query_map(
        conn,
        "SELECT name FROM pragma_table_info(?1, ?2)",
        &[&param(table), &param(schema)],
        |r| Ok(r.text(0)?.unwrap_or_default()),
    )
    .map_err(|e| e.to_string())?;
    let Some(first) = columns.first() else {
        return Err(format!("{table} has no columns"));
    };
    let members: Vec<String> = columns
        .iter()
        .map(|c| format!("'{}', {}", c.replace('\'', "''"), quote_ident(c)))
        .collect();
    Ok((
        format!("json_object({})", members.join(", ")),
        quote_ident(first),
    ))
}

/// Whether the table opens and reads.
fn open(conn: &Connection, vt: &VirtualTable) -> Result<(), String> {
    let q = quote_ident(&vt.name);
    let read = sql_bytes::for_each(conn, &format!("SELECT * FROM {q}"), &[], |_| Ok(()))
        .map_err(|e| e.to_string());
    let_go(conn);
    read
}

/// Finalizes the statements `sql_bytes` cached on `conn`: a statement that
/// names a virtual table holds it until finalized, and a held one cannot be
/// dropped ("database table is locked"), as `rtree_anew` and `remove` must.
fn let_go(conn: &Connection) {
    conn.flush_prepared_statement_cache();
}

/// The module's own integrity check: `Err(why)` when it fails or the table
/// cannot be opened and read.
fn check(conn: &Connection, vt: &VirtualTable) -> Result<(), String> {
    let q = quote_ident(&vt.name);
    open(conn, vt)?;
    if vt.module.starts_with("fts") {
        let done = sql_bytes::execute(
            conn,
            &format!("INSERT INTO {q}({q}) VALUES ('integrity-check')"),
            &[],
        )
        .map(drop)
        .map_err(|e| e.to_string());
        let_go(conn);
        done
    } else {
        let verdict: String =
            sql_bytes::query_row(conn, "SELECT rtreecheck(?1)", &[&param(&vt.name)], |r| {
                r.get(0)
            })
            .map_err(|e| e.to_string())?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(verdict.lines().next().unwrap_or("").to_string())
        }
    }
}

/// Takes the virtual table's entry out of the schema (its shadow tables
/// stay, with their rows).
fn remove(conn: &Connection, vt: &VirtualTable) -> Result<()> {
    sql_bytes::execute(
        conn,
        "DELETE FROM sqlite_schema WHERE type = 'table' AND name = ?1 AND rootpage = 0",
        &[&param(&vt.name)],
    )
    .with_context(|| format!("removing virtual table {}", vt.name))?;
    let v: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.pragma_update(None, "schema_version", v + 1)?;
    Ok(())
}
