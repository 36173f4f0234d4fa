//! The bulk load of a salvaged table. Rows inserted one at a time into a
//! table whose UNIQUE indexes already exist cost a random b-tree insert per
//! index and row; SQLite builds an index far faster by sorting the rows it
//! has (as `CREATE INDEX` and `REINDEX` do). So a salvaged rowid table's
//! rows go first into a plain twin — the same columns, declared types,
//! NOT NULL constraints and defaults, no index — which stores each record
//! exactly as the table would. Then the two tables trade b-trees in the
//! schema table (the twin's full one becomes the table's), and SQLite
//! rebuilds every index of the table from its rows (`REINDEX`); the twin,
//! now holding the table's empty b-tree, is dropped.
//!
//! The rows the twin refuses (NOT NULL) are quarantined as the table's,
//! with the same reason. Rows that break a UNIQUE index make the `REINDEX`
//! fail: the caller starts the rebuild over row by row, where the first row
//! of a key wins and the rest are quarantined. A table with anything that
//! acts on a row as it goes in — a CHECK constraint, STRICT types, an ON
//! CONFLICT clause, AUTOINCREMENT, a generated column — or with no index to
//! build is loaded row by row as before.

use anyhow::Result;
use rusqlite::Connection;

use crate::schema::{has_word, quote_ident};
use crate::sql_bytes;

use super::table::TargetTable;

/// Words of a CREATE TABLE statement that make a row's insert do more than
/// store its record (see the module documentation).
const ROW_BY_ROW: [&str; 5] = ["CHECK", "STRICT", "CONFLICT", "AUTOINCREMENT", "GENERATED"];

/// Creates the plain twin of `t` and returns its name, when `t` can be
/// loaded in bulk; `None`: load it row by row.
pub(crate) fn begin(conn: &Connection, t: &TargetTable) -> Result<Option<String>> {
    if t.without_rowid || t.columns.iter().any(|c| c.hidden != 0) {
        return Ok(None);
    }
    let sql: Option<String> = sql_bytes::query_row(
        conn,
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        &[&sql_bytes::param(&t.name)],
        |r| r.text(0),
    )?;
    let Some(sql) = sql else { return Ok(None) };
    if ROW_BY_ROW.iter().any(|w| has_word(&sql, w)) {
        return Ok(None);
    }
    let indexes: i64 = sql_bytes::query_row(
        conn,
        "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1",
        &[&sql_bytes::param(&t.name)],
        |r| r.get(0),
    )?;
    if indexes == 0 {
        return Ok(None);
    }
    let twin = free_name(conn)?;
    let columns: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut d = quote_ident(&c.name);
            if !c.decl_type.is_empty() {
                d.push(' ');
                d.push_str(&c.decl_type);
            }
            if t.rowid_alias == Some(i) {
                d.push_str(" PRIMARY KEY");
            }
            if c.not_null {
                d.push_str(" NOT NULL");
            }
            if let Some(e) = &c.default {
                d.push_str(&format!(" DEFAULT ({e})"));
            }
            d
        })
        .collect();
    let ddl = format!(
        "CREATE TABLE {}({})",
        quote_ident(&twin),
        columns.join(", ")
    );
    // a declaration the twin cannot repeat: row by row
    Ok(sql_bytes::execute_batch(conn, &ddl).is_ok().then_some(twin))
}

/// Ends the load of `t` through `twin` (see the module documentation).
pub(crate) fn finish(conn: &Connection, t: &TargetTable, twin: &str) -> Result<()> {
    conn.flush_prepared_statement_cache();
    let root = |name: &str| -> rusqlite::Result<i64> {
        sql_bytes::query_row(
            conn,
            "SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            &[&sql_bytes::param(name)],
            |r| r.get(0),
        )
    };
    let (table_root, twin_root) = (root(&t.name)?, root(twin)?);
    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let swapped = (|| -> rusqlite::Result<()> {
        let set = "UPDATE sqlite_schema SET rootpage = ?1 WHERE type = 'table' AND name = ?2";
        sql_bytes::execute(conn, set, &[&twin_root, &sql_bytes::param(&t.name)])?;
        sql_bytes::execute(conn, set, &[&table_root, &sql_bytes::param(twin)])?;
        // a new schema cookie: the connection reads the schema again
        conn.execute_batch(&format!("PRAGMA schema_version = {}", version + 1))
    })();
    conn.execute_batch("PRAGMA writable_schema = OFF")?;
    swapped?;
    sql_bytes::execute_batch(conn, &format!("REINDEX main.{}", quote_ident(&t.name)))?;
    conn.execute_batch(&format!("DROP TABLE main.{}", quote_ident(twin)))?;
    Ok(())
}

/// A table name the new database does not use.
fn free_name(conn: &Connection) -> Result<String> {
    let mut n = 0u64;
    loop {
        let name = format!("custodian_load_{n}");
        let used: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE",
            [&name],
            |r| r.get(0),
        )?;
        if used == 0 {
            return Ok(name);
        }
        n += 1;
    }
}
