//! What only SQLite can judge, asked of SQLite table by table:
//!
//! * a virtual table's shadow content (FTS3/4/5 indexes, R-Tree nodes) is
//!   judged by the module's own integrity method, which
//!   `PRAGMA quick_check(<virtual table>)` runs for that table alone;
//! * a CHECK constraint is an SQL expression, and so is a VIRTUAL generated
//!   column (its NOT NULL and STRICT type rules need its value): one SELECT
//!   per such table counts the rows that break each.
//!
//! Everything else quick_check reports, custodian's own checks find (the
//! corpus parity test holds them to it). SQLite's full `PRAGMA quick_check`
//! over the whole file is the opt-in second opinion (`--sqlite-quick-check`).

use std::path::Path;

use anyhow::Result;

use super::finding::{Code, Finding};
use crate::db;
use crate::schema::{self, SchemaObject, quote_ident};

/// The lines an integrity pragma (`sql`) returns, without the "*** in
/// database main ***" heading (one row may hold several lines), or SQLite's
/// error. `Err` only for a busy database.
pub fn pragma_lines(
    conn: &rusqlite::Connection,
    path: &Path,
    sql: &str,
) -> Result<std::result::Result<Vec<String>, String>> {
    // through sql_bytes: a virtual table named by bytes that are not UTF-8
    // is reached by those bytes
    let mut lines = Vec::new();
    let run = crate::sql_bytes::for_each(conn, sql, &[], |r| {
        lines.extend(
            r.text(0)?
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with("*** in database"))
                .map(str::to_string),
        );
        Ok(())
    });
    match run {
        Ok(()) => Ok(Ok(lines)),
        Err(e) if db::is_busy(&e) => Err(db::busy_error(path)),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// A table whose rules only SQLite can apply, as SQL conditions a row
/// breaking the rule meets.
#[derive(Debug, Clone)]
pub struct Needs {
    pub table: String,
    /// (what the rule is, the condition a row that breaks it meets)
    pub rules: Vec<(String, String)>,
}

impl Needs {
    /// The rules of table `table` that need SQLite: each CHECK constraint
    /// (broken when its expression is false: NULL passes), and the NOT NULL
    /// or STRICT type of each VIRTUAL generated column (a computed value).
    pub fn of(table: &str, sql: &str, info: &crate::schema::TableInfo) -> Option<Needs> {
        let mut rules: Vec<(String, String)> = schema::check_expressions(sql)
            .into_iter()
            .map(|e| (format!("CHECK ({e})"), format!("({e}) IS FALSE")))
            .collect();
        for c in info.columns.iter().filter(|c| c.record_pos.is_none()) {
            let q = quote_ident(&c.name);
            if c.not_null {
                rules.push((
                    format!("{}.{} NOT NULL", table, c.name),
                    format!("{q} IS NULL"),
                ));
            }
            let allowed = match c.decl_type.to_ascii_uppercase().as_str() {
                "INT" | "INTEGER" => Some("'integer','null'"),
                "REAL" => Some("'integer','real','null'"),
                "TEXT" => Some("'text','null'"),
                "BLOB" => Some("'blob','null'"),
                _ => None,
            };
            if info.strict
                && let Some(allowed) = allowed
            {
                rules.push((
                    format!("{}.{} {}", table, c.name, c.decl_type),
                    format!("typeof({q}) NOT IN ({allowed})"),
                ));
            }
        }
        (!rules.is_empty()).then(|| Needs {
            table: table.to_string(),
            rules,
        })
    }
}

/// Runs the module checks of every virtual table, and the rules only SQLite
/// can apply of the tables in `needs`, on a connection of its own.
pub fn findings(
    path: &Path,
    objects: &[SchemaObject],
    needs: &[Needs],
    writable_schema: bool,
) -> Result<Vec<Finding>> {
    let vtabs: Vec<&SchemaObject> = objects
        .iter()
        .filter(|o| schema::is_virtual_table(o))
        .collect();
    if vtabs.is_empty() && needs.is_empty() {
        return Ok(Vec::new());
    }
    let conn = db::open_read_only(path)?;
    if writable_schema {
        conn.pragma_update(None, "writable_schema", true)?;
    }
    let mut out = Vec::new();
    for v in vtabs {
        let sql = format!("PRAGMA quick_check({})", quote_ident(&v.name));
        let problem = match pragma_lines(&conn, path, &sql)? {
            Ok(lines) if lines == ["ok"] || lines.is_empty() => continue,
            Ok(lines) => {
                let n = lines.len();
                let first = lines.into_iter().next().unwrap_or_default();
                if n > 1 {
                    format!("{first} (and {} more lines)", n - 1)
                } else {
                    first
                }
            }
            // A module the POS registers itself (not built into SQLite)
            // cannot be judged here: that is not damage.
            Err(e) if e.contains("no such module") => continue,
            Err(e) => e,
        };
        out.push(
            Finding::error(
                Code::VirtualTableDamaged,
                format!("virtual table {}: {problem}", v.name),
            )
            .object(&v.name)
            .table(&v.name),
        );
    }
    for t in needs {
        // One pass over the table: how many rows break each rule. (Not
        // PRAGMA quick_check(<table>): on a read-only connection SQLite does
        // not even load CHECK constraints.)
        let sums: Vec<String> = t
            .rules
            .iter()
            .map(|(_, cond)| format!("coalesce(sum(({cond}) IS TRUE), 0)"))
            .collect();
        let sql = format!("SELECT {} FROM {}", sums.join(", "), quote_ident(&t.table));
        let counts = crate::sql_bytes::query_row(&conn, &sql, &[], |r| {
            (0..t.rules.len())
                .map(|i| r.get::<i64>(i))
                .collect::<rusqlite::Result<Vec<i64>>>()
        });
        let counts = match counts {
            Ok(c) => c,
            Err(e) if db::is_busy(&e) => return Err(db::busy_error(path)),
            // SQLite could not read the table: the damage that stopped it
            // is custodian's own checks' to name.
            Err(_) => continue,
        };
        for ((what, _), n) in t.rules.iter().zip(counts) {
            if n > 0 {
                out.push(
                    Finding::error(
                        Code::ColumnConstraint,
                        format!("{n} rows of {} break {what}", t.table),
                    )
                    .object(&t.table)
                    .table(&t.table)
                    .count(n as u64),
                );
            }
        }
    }
    Ok(out)
}
