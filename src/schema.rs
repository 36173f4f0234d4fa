//! What the database says about itself: tables, the customer table's
//! columns and indexes, from `sqlite_schema` and the table/index pragmas.

use std::collections::BTreeSet;

use anyhow::Result;
use rusqlite::Connection;

/// Reads the schema; if SQLite refuses the file as a whole (a header that
/// counts more pages than the file holds), retries with writable_schema,
/// under which SQLite trusts the file size. Nothing is written either way.
pub fn read_schema_tolerant(conn: &Connection) -> rusqlite::Result<Vec<SchemaObject>> {
    match read_schema(conn) {
        Err(e) if crate::db::is_corrupt(&e) => {
            conn.pragma_update(None, "writable_schema", true)?;
            read_schema(conn)
        }
        other => other,
    }
}

/// One row of `sqlite_schema`.
#[derive(Debug, Clone)]
pub struct SchemaObject {
    pub kind: String,
    pub name: String,
    pub tbl_name: String,
    pub rootpage: i64,
    pub sql: Option<String>,
}

pub fn read_schema(conn: &Connection) -> rusqlite::Result<Vec<SchemaObject>> {
    let mut stmt = conn
        .prepare("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema ORDER BY rowid")?;
    let rows = stmt.query_map([], |r| {
        Ok(SchemaObject {
            kind: r.get(0)?,
            name: r.get(1)?,
            tbl_name: r.get(2)?,
            rootpage: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            sql: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// A column of the customer table.
#[derive(Debug, Clone)]
pub struct Column {
    pub cid: i64,
    pub name: String,
    pub decl_type: String,
    /// Position in the stored record, or None for a VIRTUAL generated column.
    pub record_pos: Option<usize>,
    /// The DEFAULT expression as SQL text, used for records written before
    /// an `ALTER TABLE ADD COLUMN`.
    pub default_sql: Option<String>,
}

/// One column of an index record (`PRAGMA index_xinfo`), key or auxiliary.
#[derive(Debug, Clone)]
pub enum IndexPart {
    /// A table column, by position in [`CustomerTable::columns`].
    Column(usize),
    /// The rowid (the trailing field of an index on a rowid table).
    Rowid,
    /// An expression, as SQL text.
    Expr(String),
}

#[derive(Debug, Clone)]
pub struct IndexField {
    pub part: IndexPart,
    pub desc: bool,
    pub collation: String,
    /// Part of the key (false for the trailing rowid / primary key fields).
    pub key: bool,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub name: String,
    pub rootpage: u32,
    pub unique: bool,
    /// "c" (CREATE INDEX), "u" (UNIQUE constraint), "pk" (PRIMARY KEY).
    pub origin: String,
    /// The WHERE clause of a partial index, as SQL text.
    pub partial_where: Option<String>,
    pub fields: Vec<IndexField>,
}

impl Index {
    pub fn key_fields(&self) -> impl Iterator<Item = &IndexField> {
        self.fields.iter().filter(|f| f.key)
    }

    /// Whether the record can be predicted from stored columns alone
    /// (no expressions, not partial): then the page reader does both sides.
    pub fn is_plain(&self) -> bool {
        self.partial_where.is_none()
            && self
                .fields
                .iter()
                .all(|f| !matches!(f.part, IndexPart::Expr(_)))
    }
}

/// The customer table, as the checks need it.
#[derive(Debug, Clone)]
pub struct CustomerTable {
    pub name: String,
    pub rootpage: u32,
    pub without_rowid: bool,
    pub columns: Vec<Column>,
    /// The column that is an alias of the rowid (INTEGER PRIMARY KEY).
    pub rowid_alias: Option<usize>,
    pub id_column: usize,
    pub indexes: Vec<Index>,
}

impl CustomerTable {
    /// The ID column is an alias of the rowid (INTEGER PRIMARY KEY).
    pub fn id_is_rowid(&self) -> bool {
        self.rowid_alias == Some(self.id_column)
    }

    /// A customer ID typed by a person, as the SQL value to look up: an
    /// integer when the ID column is an integer one, else text.
    pub fn id_value(&self, id: &str) -> rusqlite::types::Value {
        let int_column = self.id_is_rowid()
            || self.columns[self.id_column]
                .decl_type
                .to_ascii_uppercase()
                .contains("INT");
        match id.parse::<i64>() {
            Ok(i) if int_column => rusqlite::types::Value::Integer(i),
            _ => rusqlite::types::Value::Text(id.to_string()),
        }
    }

    /// The record position of the column named `name` (any case), if stored.
    pub fn record_pos_of(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .and_then(|c| c.record_pos)
    }
}

/// The columns of other tables that hold customer IDs: declared foreign
/// keys to the customer table, `--config` references (`table.column`), and
/// columns named like the ID column.
pub fn reference_columns(
    conn: &Connection,
    live: &[SchemaObject],
    customer_table: &str,
    id_column: &str,
    references: &[String],
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut out: BTreeSet<(String, String)> = BTreeSet::new();
    for r in references {
        if let Some((t, c)) = r.split_once('.') {
            out.insert((t.to_string(), c.to_string()));
        }
    }
    for o in live.iter().filter(|o| {
        o.kind == "table"
            && !o.name.starts_with("sqlite_")
            && !o.name.eq_ignore_ascii_case(customer_table)
    }) {
        let fks: Vec<(String, String)> = conn
            .prepare(&format!(
                "PRAGMA foreign_key_list({})",
                quote_ident(&o.name)
            ))?
            .query_map([], |r| Ok((r.get::<_, String>(2)?, r.get::<_, String>(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (target, from) in fks {
            if target.eq_ignore_ascii_case(customer_table) {
                out.insert((o.name.clone(), from));
            }
        }
        let cols: Vec<String> = conn
            .prepare(&format!("PRAGMA table_info({})", quote_ident(&o.name)))?
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<_>>()?;
        for c in cols {
            if c.eq_ignore_ascii_case(id_column) {
                out.insert((o.name.clone(), c));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Quotes an identifier for SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Introspects table `name`. Ok(None) when there is no such table.
pub fn customer_table(
    conn: &Connection,
    objects: &[SchemaObject],
    name: &str,
    id_column: &str,
) -> Result<Option<Result<CustomerTable, String>>> {
    let Some(obj) = objects
        .iter()
        .find(|o| o.kind == "table" && o.name.eq_ignore_ascii_case(name))
    else {
        return Ok(None);
    };
    let q = quote_ident(&obj.name);
    let mut columns = Vec::new();
    let mut pk_cols: Vec<(i64, usize)> = Vec::new();
    {
        let mut stmt = conn.prepare(&format!("PRAGMA table_xinfo({q})"))?;
        let mut rows = stmt.query([])?;
        let mut record_pos = 0usize;
        while let Some(r) = rows.next()? {
            let cid: i64 = r.get(0)?;
            let name: String = r.get(1)?;
            let decl_type: String = r.get::<_, Option<String>>(2)?.unwrap_or_default();
            let default_sql: Option<String> = r.get(4)?;
            let pk: i64 = r.get(5)?;
            let hidden: i64 = r.get(6)?;
            // hidden: 0 ordinary, 1 hidden (virtual tables), 2 virtual generated, 3 stored generated
            let pos = if hidden == 2 {
                None
            } else {
                record_pos += 1;
                Some(record_pos - 1)
            };
            if pk > 0 {
                pk_cols.push((pk, columns.len()));
            }
            columns.push(Column {
                cid,
                name,
                decl_type,
                record_pos: pos,
                default_sql,
            });
        }
    }
    let sql = obj.sql.clone().unwrap_or_default();
    let without_rowid = is_without_rowid(&sql);
    let rowid_alias = if !without_rowid && pk_cols.len() == 1 {
        let c = &columns[pk_cols[0].1];
        (c.decl_type.eq_ignore_ascii_case("INTEGER") && !pk_desc_quirk(&sql))
            .then_some(pk_cols[0].1)
    } else {
        None
    };
    let Some(id_col) = columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(id_column))
    else {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        return Ok(Some(Err(format!(
            "table {} has no column {:?}; its columns: {} (use --id-column)",
            obj.name,
            id_column,
            names.join(", ")
        ))));
    };
    let mut indexes = Vec::new();
    let mut stmt = conn.prepare(&format!("PRAGMA index_list({q})"))?;
    let list: Vec<(String, bool, String, bool)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(1)?,
                r.get::<_, i64>(2)? != 0,
                r.get(3)?,
                r.get::<_, i64>(4)? != 0,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (iname, unique, origin, partial) in list {
        let Some(iobj) = objects
            .iter()
            .find(|o| o.kind == "index" && o.name == iname)
        else {
            continue; // the implicit index of a WITHOUT ROWID primary key is the table itself
        };
        let isql = iobj.sql.clone().unwrap_or_default();
        let exprs = index_term_texts(&isql);
        let mut fields = Vec::new();
        let mut xs = conn.prepare(&format!("PRAGMA index_xinfo({})", quote_ident(&iname)))?;
        let mut rows = xs.query([])?;
        while let Some(r) = rows.next()? {
            let seqno: i64 = r.get(0)?;
            let cid: i64 = r.get(1)?;
            let desc: bool = r.get::<_, i64>(3)? != 0;
            let coll: String = r
                .get::<_, Option<String>>(4)?
                .unwrap_or_else(|| "BINARY".into());
            let key: bool = r.get::<_, i64>(5)? != 0;
            let part = match cid {
                -1 => IndexPart::Rowid,
                -2 => IndexPart::Expr(
                    exprs
                        .get(seqno as usize)
                        .cloned()
                        .unwrap_or_else(|| "NULL".into()),
                ),
                c => match columns.iter().position(|col| col.cid == c) {
                    Some(p) => IndexPart::Column(p),
                    None => continue,
                },
            };
            fields.push(IndexField {
                part,
                desc,
                collation: coll,
                key,
            });
        }
        indexes.push(Index {
            name: iname,
            rootpage: u32::try_from(iobj.rootpage).unwrap_or(0),
            unique,
            origin,
            partial_where: if partial { partial_where(&isql) } else { None },
            fields,
        });
    }
    indexes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(Ok(CustomerTable {
        name: obj.name.clone(),
        rootpage: u32::try_from(obj.rootpage).unwrap_or(0),
        without_rowid,
        columns,
        rowid_alias,
        id_column: id_col,
        indexes,
    })))
}

pub(crate) fn is_without_rowid(sql: &str) -> bool {
    let tail: String = sql
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    tail.contains("WITHOUT ROWID")
}

/// `INTEGER PRIMARY KEY DESC` on a column is, for historical reasons, not a
/// rowid alias. Detect the column-constraint form.
pub(crate) fn pk_desc_quirk(sql: &str) -> bool {
    let up = sql.to_ascii_uppercase();
    let words: Vec<&str> = up.split_whitespace().collect();
    words.windows(4).any(|w| {
        w[0] == "INTEGER" && w[1] == "PRIMARY" && w[2] == "KEY" && w[3].starts_with("DESC")
    })
}

/// Splits the parenthesised term list of a CREATE INDEX statement into the
/// text of each term with any COLLATE / ASC / DESC suffix removed.
pub fn index_term_texts(sql: &str) -> Vec<String> {
    let Some(open) = find_top_level(sql, b'(') else {
        return Vec::new();
    };
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = open + 1;
    let bytes = sql.as_bytes();
    let mut i = open + 1;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\'' | b'"' | b'`' => quote = Some(b),
                b'[' => quote = Some(b']'),
                b'(' => depth += 1,
                b')' if depth == 0 => {
                    terms.push(strip_term_suffix(&sql[start..i]));
                    break;
                }
                b')' => depth -= 1,
                b',' if depth == 0 => {
                    terms.push(strip_term_suffix(&sql[start..i]));
                    start = i + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    terms
}

fn find_top_level(sql: &str, what: u8) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, &b) in sql.as_bytes().iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == what => return Some(i),
            None if matches!(b, b'\'' | b'"' | b'`') => quote = Some(b),
            None if b == b'[' => quote = Some(b']'),
            None => {}
        }
    }
    None
}

fn strip_term_suffix(term: &str) -> String {
    let mut t = term.trim().to_string();
    loop {
        let up = t.to_ascii_uppercase();
        if up.ends_with(" ASC") {
            t.truncate(t.len() - 4);
        } else if up.ends_with(" DESC") {
            t.truncate(t.len() - 5);
        } else if let Some(pos) = up.rfind(" COLLATE ") {
            // only when what follows is a single word
            if !up[pos + 9..].trim().contains([' ', ')', '(']) {
                t.truncate(pos);
            } else {
                break;
            }
        } else {
            break;
        }
        t = t.trim_end().to_string();
    }
    t
}

/// The WHERE clause of a partial CREATE INDEX, as SQL text.
fn partial_where(sql: &str) -> Option<String> {
    let up = sql.to_ascii_uppercase();
    let close = up.rfind(')')?;
    let _ = close;
    // the WHERE that follows the term list: find the term list's closing paren
    let open = find_top_level(sql, b'(')?;
    let mut depth = 0;
    let mut end = None;
    for (i, b) in sql.bytes().enumerate().skip(open) {
        if b == b'(' {
            depth += 1;
        } else if b == b')' {
            depth -= 1;
            if depth == 0 {
                end = Some(i);
                break;
            }
        }
    }
    let rest = &sql[end? + 1..];
    let up_rest = rest.to_ascii_uppercase();
    let w = up_rest.find("WHERE")?;
    Some(rest[w + 5..].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_terms_and_suffixes() {
        assert_eq!(
            index_term_texts(
                "CREATE INDEX i ON t(a, lower(b) COLLATE NOCASE DESC, substr(c,1,2) ASC)"
            ),
            vec!["a", "lower(b)", "substr(c,1,2)"]
        );
        assert_eq!(
            index_term_texts("CREATE INDEX \"x(\" ON t(\"we,ird\" DESC)"),
            vec!["\"we,ird\""]
        );
    }

    #[test]
    fn partial_where_clause() {
        assert_eq!(
            partial_where("CREATE INDEX i ON t(a) WHERE status = 'active'").as_deref(),
            Some("status = 'active'")
        );
        assert_eq!(partial_where("CREATE INDEX i ON t(a)"), None);
    }

    #[test]
    fn without_rowid_detection() {
        assert!(is_without_rowid(
            "CREATE TABLE t(a PRIMARY KEY) WITHOUT ROWID"
        ));
        assert!(!is_without_rowid("CREATE TABLE t(a PRIMARY KEY)"));
    }
}
