//! Rows into the new database, one at a time. A row SQLite refuses (a
//! UNIQUE or NOT NULL or CHECK constraint, a STRICT type) is never dropped:
//! it goes, whole, to the quarantine table with SQLite's reason. A row that
//! repeats one already inserted byte for byte (an orphaned page holding a
//! copy) is counted, not quarantined.

use std::rc::Rc;

use anyhow::{Result, anyhow};
use rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ErrorCode};

use crate::format::header::TextEncoding;
use crate::format::record::{self, Record};
use crate::repair::apply::QUARANTINE_TABLE;
use crate::schema::quote_ident;

use super::table::TargetTable;

/// One value of a row, owned. Text is kept as the bytes SQLite binds (UTF-8,
/// exactly as stored in a UTF-8 database, even where it is not valid UTF-8).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(t) => ValueRef::Text(t),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl SqlValue {
    /// A value read from a page of a database in `enc`.
    pub fn from_record(v: &record::ValueRef<'_>, enc: TextEncoding) -> SqlValue {
        match *v {
            record::ValueRef::Null => SqlValue::Null,
            record::ValueRef::Integer(i) => SqlValue::Integer(i),
            record::ValueRef::Real(f) => SqlValue::Real(f),
            record::ValueRef::Text(t) if enc == TextEncoding::Utf8 => SqlValue::Text(t.to_vec()),
            record::ValueRef::Text(t) => {
                SqlValue::Text(record::decode_text(t, enc).into_owned().into_bytes())
            }
            record::ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
        }
    }

    /// A value SQLite returned.
    pub fn from_value(v: Value) -> SqlValue {
        match v {
            Value::Null => SqlValue::Null,
            Value::Integer(i) => SqlValue::Integer(i),
            Value::Real(f) => SqlValue::Real(f),
            Value::Text(t) => SqlValue::Text(t.into_bytes()),
            Value::Blob(b) => SqlValue::Blob(b),
        }
    }

    /// The value as a report shows a customer ID: integers and text.
    pub fn id_text(&self) -> Option<String> {
        match self {
            SqlValue::Integer(i) => Some(i.to_string()),
            SqlValue::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            _ => None,
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            SqlValue::Null => serde_json::Value::Null,
            SqlValue::Integer(i) => serde_json::json!(i),
            SqlValue::Real(f) => serde_json::json!(f),
            SqlValue::Text(t) => serde_json::json!(String::from_utf8_lossy(t)),
            SqlValue::Blob(b) => {
                serde_json::json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            }
        }
    }
}

/// The values of a whole record.
pub fn record_values(rec: &mut Record, payload: &[u8], enc: TextEncoding) -> Option<Vec<SqlValue>> {
    rec.parse(payload).ok()?;
    Some(
        rec.values(payload)
            .map(|v| SqlValue::from_record(&v, enc))
            .collect(),
    )
}

/// What could be read of a damaged record (its first fields, as far as they
/// can be read), as values to insert or quarantine.
pub fn readable_record_values(bytes: &[u8], enc: TextEncoding) -> Vec<SqlValue> {
    record::readable_values(bytes)
        .iter()
        .map(|v| SqlValue::from_record(v, enc))
        .collect()
}

/// What could be read of a damaged record: its first fields as values, and
/// (when it does not decode whole) every byte of it that could be read (the cell's own part and the
/// overflow pages that could be followed), kept whole beside the values so
/// that nothing read is lost — a value cut short by a broken overflow chain
/// has no value to go in, but its first bytes are there.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub values: Vec<SqlValue>,
    pub bytes: Vec<u8>,
    /// Why the record could not be read whole, one line.
    pub reason: String,
}

impl Partial {
    /// `bytes` are kept only when the record does not decode whole (cut
    /// short, a broken overflow chain, a header that does not fit): a whole
    /// record that the table's shape refuses is all in `values` already.
    pub fn read(bytes: &[u8], enc: TextEncoding, reason: String) -> Partial {
        let whole = Record::default().parse(bytes).is_ok();
        Partial {
            values: readable_record_values(bytes, enc),
            bytes: if whole { Vec::new() } else { bytes.to_vec() },
            reason,
        }
    }
}

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Inserted,
    /// An identical row is already there (the same rowid and values, or for
    /// a WITHOUT ROWID table the same values).
    Repeated,
    Quarantined,
}

/// Errors that are about the row, not about the new database as a whole.
fn row_level(e: &rusqlite::Error) -> bool {
    !matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
        )
    )
}

/// The SQL that creates the quarantine table (the same columns as the
/// index repair's quarantine).
pub fn quarantine_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE}(quarantined_at TEXT NOT NULL, reason TEXT NOT NULL, \
         source_table TEXT NOT NULL, original_rowid INTEGER NOT NULL, kept_rowid INTEGER, row_json TEXT NOT NULL)"
    )
}

/// Puts a row into the quarantine table. `names` are the values' column
/// names; `rowid` 0 where the row has none (WITHOUT ROWID, a page no table
/// owns that is no rowid table's).
pub fn quarantine(
    conn: &Connection,
    stamp: &str,
    reason: &str,
    source_table: &str,
    rowid: i64,
    names: &[String],
    values: &[SqlValue],
) -> Result<()> {
    conn.execute_batch(&quarantine_ddl())?;
    let obj: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .cloned()
        .zip(values.iter().map(SqlValue::json))
        .collect();
    let row = crate::sql_bytes::shown(&serde_json::Value::Object(obj).to_string()).into_owned();
    crate::sql_bytes::execute(
        conn,
        &format!("INSERT INTO {QUARANTINE_TABLE} VALUES (?1, ?2, ?3, ?4, NULL, ?5)"),
        &[
            &stamp,
            &crate::sql_bytes::param(reason),
            &crate::sql_bytes::param(source_table),
            &rowid,
            &row,
        ],
    )?;
    Ok(())
}

/// Inserts a row of `t` (`values`: the record's fields, in record order,
/// possibly fewer than the table's when the row predates an ADD COLUMN;
/// `rowid`: None for WITHOUT ROWID). `via` says where the row came from,
/// for the quarantine's reason.
pub fn insert(
    conn: &Connection,
    t: &TargetTable,
    rowid: Option<i64>,
    values: &[SqlValue],
    via: &str,
    stamp: &str,
) -> Result<Placed> {
    insert_into(conn, t, None, rowid, values, via, stamp)
}

/// [`insert`], into `load` — a plain twin of `t` the bulk load fills
/// (`load.rs`) — when given. A row refused there is quarantined as a row of
/// `t`, with SQLite's reason naming `t`.
pub fn insert_into(
    conn: &Connection,
    t: &TargetTable,
    load: Option<&str>,
    rowid: Option<i64>,
    values: &[SqlValue],
    via: &str,
    stamp: &str,
) -> Result<Placed> {
    let n = values.len().min(t.fields.len());
    let fields: Vec<usize> = (0..n).filter(|&i| t.field_inserted(i)).collect();
    let with_rowid = rowid.is_some() && !t.without_rowid;
    let mut params: Vec<&dyn ToSql> = Vec::with_capacity(fields.len() + 1);
    if let (Some(r), true) = (&rowid, with_rowid) {
        params.push(r);
    }
    for &i in &fields {
        params.push(&values[i]);
    }
    let sql = insert_sql(t, load, with_rowid, n, &fields);
    let err = match crate::sql_bytes::execute(conn, &sql, &params) {
        Ok(_) => return Ok(Placed::Inserted),
        Err(e) if row_level(&e) => e,
        Err(e) => return Err(anyhow!("inserting a row of {}: {e}", t.name)),
    };
    if t.without_rowid && already_there(conn, t, &fields, values)? {
        return Ok(Placed::Repeated);
    }
    let stored: Vec<String> = t
        .fields
        .iter()
        .take(values.len())
        .map(|&c| t.columns[c].name.clone())
        .collect();
    let mut reason = err.to_string();
    if let Some(twin) = load {
        // SQLite names the table it refused the row in: the twin
        reason = reason.replace(&format!("{twin}."), &format!("{}.", t.name));
    }
    quarantine(
        conn,
        stamp,
        &format!("{reason} (row from {via})"),
        &t.name,
        rowid.unwrap_or(0),
        &stored,
        values,
    )?;
    Ok(Placed::Quarantined)
}

/// The INSERT of a row of `t` (into `load`, its twin, when given) giving
/// the rowid (when `with_rowid`) and the inserted ones, `fields`, of the
/// record's first `n` fields — built once per shape: a salvaged table's
/// rows nearly all share one.
fn insert_sql(
    t: &TargetTable,
    load: Option<&str>,
    with_rowid: bool,
    n: usize,
    fields: &[usize],
) -> Rc<str> {
    let key = (load.is_some(), with_rowid, n);
    let mut cache = t.insert_sql.borrow_mut();
    if let Some(sql) = cache.get(&key) {
        return sql.clone();
    }
    let into = load.unwrap_or(&t.name);
    let mut names: Vec<String> = Vec::new();
    if with_rowid {
        names.push(t.rowid_name.clone());
    }
    for &i in fields {
        names.push(quote_ident(&t.columns[t.fields[i]].name));
    }
    let slots: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let sql = if names.is_empty() {
        format!("INSERT INTO {} DEFAULT VALUES", quote_ident(into))
    } else {
        format!(
            "INSERT INTO {}({}) VALUES ({})",
            quote_ident(into),
            names.join(", "),
            slots.join(", ")
        )
    };
    let sql: Rc<str> = sql.into();
    cache.insert(key, sql.clone());
    sql
}

/// Whether a row with exactly these values is in `t` already.
fn already_there(
    conn: &Connection,
    t: &TargetTable,
    fields: &[usize],
    values: &[SqlValue],
) -> Result<bool> {
    if fields.is_empty() {
        return Ok(false);
    }
    let conds: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            format!(
                "{} COLLATE BINARY IS ?{}",
                quote_ident(&t.columns[t.fields[i]].name),
                k + 1
            )
        })
        .collect();
    let params: Vec<&dyn ToSql> = fields.iter().map(|&i| &values[i] as &dyn ToSql).collect();
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {}",
        quote_ident(&t.name),
        conds.join(" AND ")
    );
    let n: i64 = crate::sql_bytes::query_row(conn, &sql, &params, |r| r.get(0))?;
    Ok(n > 0)
}
