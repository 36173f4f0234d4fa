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
//! one that still fails, or cannot be opened at all, is taken out of the
//! schema, its shadow tables — all the data it had — kept as plain tables,
//! and the report says so.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::schema::{SchemaObject, quote_ident};

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
    let r = conn.execute(
        "INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql) VALUES ('table', ?1, ?1, 0, ?2)",
        rusqlite::params![vt.name, vt.sql],
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
    /// Taken out of the schema (why); its shadow tables are kept.
    Removed(String),
}

/// Checks every virtual table of the new file at `path` (after the
/// rebuild's transaction is committed), rebuilding or removing what fails.
pub fn settle(path: &Path, tables: &[VirtualTable]) -> Result<Vec<(VirtualTable, Settled)>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let conn =
        Connection::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    crate::repair::interrupt::watch(&conn);
    // A CREATE VIRTUAL TABLE that cannot be parsed must not lock us out of
    // the schema we are repairing.
    conn.pragma_update(None, "writable_schema", true)?;
    let mut out = Vec::new();
    let ordered = tables
        .iter()
        .filter(|v| owns_data(&v.module))
        .chain(tables.iter().filter(|v| !owns_data(&v.module)));
    for vt in ordered {
        let s = settle_one(&conn, vt);
        if let Settled::Removed(_) = &s {
            remove(&conn, vt)?;
        }
        out.push((vt.clone(), s));
    }
    conn.pragma_update(None, "writable_schema", false)?;
    Ok(out)
}

/// Whether the module keeps its data in shadow tables and has an integrity
/// check of its own (checked first: a table over one, such as fts5vocab,
/// opens only when that one does).
fn owns_data(module: &str) -> bool {
    matches!(module, "fts3" | "fts4" | "fts5" | "rtree" | "rtree_i32")
}

fn settle_one(conn: &Connection, vt: &VirtualTable) -> Settled {
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
                let rebuilt = conn
                    .execute(
                        &format!(
                            "INSERT INTO {q}({q}) VALUES ('rebuild')",
                            q = quote_ident(&vt.name)
                        ),
                        [],
                    )
                    .map_err(|e| e.to_string())
                    .and_then(|_| check(conn, vt));
                match rebuilt {
                    Ok(()) => Settled::Rebuilt,
                    Err(e) => Settled::Removed(format!(
                        "its integrity check fails ({first}) and rebuilding its index from its content failed too ({e})"
                    )),
                }
            } else {
                Settled::Removed(format!("its integrity check fails ({first})"))
            }
        }
    }
}

/// Whether the table opens and reads.
fn open(conn: &Connection, vt: &VirtualTable) -> Result<(), String> {
    let q = quote_ident(&vt.name);
    conn.prepare(&format!("SELECT * FROM {q}"))
        .and_then(|mut s| {
            let mut r = s.query([])?;
            while r.next()?.is_some() {}
            Ok(())
        })
        .map_err(|e| e.to_string())
}

/// The module's own integrity check: `Err(why)` when it fails or the table
/// cannot be opened and read.
fn check(conn: &Connection, vt: &VirtualTable) -> Result<(), String> {
    let q = quote_ident(&vt.name);
    open(conn, vt)?;
    if vt.module.starts_with("fts") {
        conn.execute(
            &format!("INSERT INTO {q}({q}) VALUES ('integrity-check')"),
            [],
        )
        .map(drop)
        .map_err(|e| e.to_string())
    } else {
        let verdict: String = conn
            .query_row("SELECT rtreecheck(?1)", [&vt.name], |r| r.get(0))
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
    conn.execute(
        "DELETE FROM sqlite_schema WHERE type = 'table' AND name = ?1 AND rootpage = 0",
        [&vt.name],
    )
    .with_context(|| format!("removing virtual table {}", vt.name))?;
    let v: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.pragma_update(None, "schema_version", v + 1)?;
    Ok(())
}
