//! Statements whose text is not valid UTF-8: those that name an object by
//! the bytes SQLite stores for its name, where those bytes are not UTF-8
//! (an index a Latin-1 client created as `idx_customers_straße`, a table
//! `verkäufe`, a column `téléphone`). SQLite compares names byte for byte,
//! so only those bytes reach the object; the same name read as UTF-8 (with
//! U+FFFD) names nothing. rusqlite takes SQL text as `&str` only, so these
//! statements go through SQLite's C API (`sqlite3_prepare_v2` takes bytes),
//! here and nowhere else.
//!
//! Names travel through custodian as `String`s that keep their bytes: a
//! byte that is not part of valid UTF-8 is held as one private-use
//! character, U+10FF00 + the byte ([`name_text`]), so comparisons, maps
//! and SQL built with `format!` carry it unchanged. The functions that run
//! SQL here ([`for_each`], [`query_map`], [`query_row`], [`execute`],
//! [`execute_batch`]) turn those characters back into the bytes
//! ([`sql_of`]); text shown to a person shows U+FFFD for each ([`shown`],
//! applied where report/ and messages.rs write). SQL without such a
//! character runs through rusqlite's cached statements, as before.

use std::borrow::Cow;
use std::ffi::{CStr, c_int};

use rusqlite::types::{FromSql, FromSqlError, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, ffi};

/// The first of the 128 private-use characters that stand for the bytes
/// 0x80..=0xFF of a name that are not valid UTF-8 (U+10FF80..=U+10FFFF).
const ESCAPE_BASE: u32 = 0x10_FF00;

fn escaped_byte(c: char) -> Option<u8> {
    let v = u32::from(c);
    (v >= ESCAPE_BASE + 0x80)
        .then(|| u8::try_from(v - ESCAPE_BASE).ok())
        .flatten()
}

/// A name (or any schema text) SQLite returned, as a `String` that keeps
/// its bytes: valid UTF-8 as it is, each other byte as U+10FF00 + byte.
pub fn name_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            // ok: an invalid byte is never ASCII, so U+10FF80..=U+10FFFF
            out.push(char::from_u32(ESCAPE_BASE + u32::from(b)).unwrap_or('\u{FFFD}'));
        }
    }
    out
}

/// Whether `text` holds a byte that is not UTF-8 (see [`name_text`]).
pub fn has_raw_bytes(text: &str) -> bool {
    text.chars().any(|c| escaped_byte(c).is_some())
}

/// The bytes of `text` for SQLite: each held byte back as itself.
pub fn sql_of(text: &str) -> Cow<'_, [u8]> {
    if !has_raw_bytes(text) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match escaped_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// `text` as a person sees it: the bytes that are not UTF-8 as U+FFFD,
/// exactly as `String::from_utf8_lossy` shows them.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !has_raw_bytes(text) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(String::from_utf8_lossy(&sql_of(text)).into_owned())
}

/// `name` quoted as an SQL identifier: in backquotes, a backquote doubled.
/// Not in double quotes: SQLite reads a double-quoted name that names no
/// column as a string literal, so a misspelt name compares a constant
/// where a backquoted one is an error ("no such column"). The one place
/// that quotes a name; `schema::quote_ident` is this.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `text` as an SQL string literal (`'` doubled), e.g. a name given to a
/// pragma function: `pragma_index_xinfo('…')`.
pub fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A name (or any text from the schema) as a value to bind: TEXT of its
/// bytes, those that are not valid UTF-8 too (SQLite compares names, e.g.
/// `sqlite_schema.name = ?1`, byte for byte).
pub struct Param<'a>(Cow<'a, [u8]>);

pub fn param(text: &str) -> Param<'_> {
    Param(sql_of(text))
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

/// `values` as the parameters of a statement.
pub fn params<T: ToSql>(values: &[T]) -> Vec<&dyn ToSql> {
    values.iter().map(|v| v as &dyn ToSql).collect()
}

/// One row of a result, as SQLite gives it (rusqlite's `Row`, for a
/// statement that rusqlite cannot prepare).
pub struct Row<'r> {
    vals: &'r [ValueRef<'r>],
}

impl Row<'_> {
    /// How many columns the row has.
    pub fn len(&self) -> usize {
        self.vals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }

    pub fn get_ref(&self, i: usize) -> rusqlite::Result<ValueRef<'_>> {
        self.vals
            .get(i)
            .copied()
            .ok_or(rusqlite::Error::InvalidColumnIndex(i))
    }

    /// Column `i` as text that keeps its bytes ([`name_text`]; a number as
    /// its decimal text); None for NULL.
    pub fn text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        Ok(match self.get_ref(i)? {
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(name_text(t)),
            ValueRef::Integer(x) => Some(x.to_string()),
            ValueRef::Real(x) => Some(x.to_string()),
            ValueRef::Null => None,
        })
    }

    /// Column `i` converted as rusqlite's `Row::get` converts it.
    pub fn get<T: FromSql>(&self, i: usize) -> rusqlite::Result<T> {
        let v = self.get_ref(i)?;
        T::column_result(v).map_err(|e| match e {
            FromSqlError::InvalidType => {
                rusqlite::Error::InvalidColumnType(i, i.to_string(), v.data_type())
            }
            FromSqlError::OutOfRange(x) => rusqlite::Error::IntegralValueOutOfRange(i, x),
            other => rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(other)),
        })
    }
}

/// A prepared statement, finalized when dropped.
struct Stmt(*mut ffi::sqlite3_stmt);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sqlite3_prepare_v2 (or is NULL,
        // which sqlite3_finalize accepts) and is finalized once, here.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

/// SQLite's last error on `db`, as rusqlite reports errors.
fn error(db: *mut ffi::sqlite3) -> rusqlite::Error {
    // SAFETY: `db` is an open connection; sqlite3_errmsg always returns a
    // NUL-terminated string SQLite owns (never NULL), read before the next
    // call on the connection.
    let (code, msg) = unsafe {
        (
            ffi::sqlite3_extended_errcode(db),
            CStr::from_ptr(ffi::sqlite3_errmsg(db))
                .to_string_lossy()
                .into_owned(),
        )
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(msg))
}

fn len_of(n: usize) -> rusqlite::Result<c_int> {
    c_int::try_from(n).map_err(|_| rusqlite::Error::ToSqlConversionFailure(Box::new(TooLong(n))))
}

#[derive(Debug)]
struct TooLong(usize);

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes is too long for SQLite", self.0)
    }
}

impl std::error::Error for TooLong {}

/// Binds `v` as parameter `n` of `stmt`.
fn bind(db: *mut ffi::sqlite3, stmt: &Stmt, n: c_int, v: ValueRef<'_>) -> rusqlite::Result<()> {
    // SAFETY: a live statement; SQLITE_TRANSIENT makes SQLite copy the
    // bytes before the call returns.
    let rc = unsafe {
        match v {
            ValueRef::Null => ffi::sqlite3_bind_null(stmt.0, n),
            ValueRef::Integer(x) => ffi::sqlite3_bind_int64(stmt.0, n, x),
            ValueRef::Real(x) => ffi::sqlite3_bind_double(stmt.0, n, x),
            ValueRef::Text(t) => ffi::sqlite3_bind_text(
                stmt.0,
                n,
                t.as_ptr().cast(),
                len_of(t.len())?,
                ffi::SQLITE_TRANSIENT(),
            ),
            ValueRef::Blob(b) => ffi::sqlite3_bind_blob(
                stmt.0,
                n,
                b.as_ptr().cast(),
                len_of(b.len())?,
                ffi::SQLITE_TRANSIENT(),
            ),
        }
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(error(db))
    }
}

/// The first statement of `text` prepared on `db` (a NULL statement when
/// it holds only whitespace or a comment), and how many bytes it used.
fn prepare(db: *mut ffi::sqlite3, text: &[u8]) -> rusqlite::Result<(Stmt, usize)> {
    let mut raw = std::ptr::null_mut();
    let mut tail: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: `db` is an open connection; `text` is valid for its length;
    // SQLite copies what it keeps, and `tail` points into `text` (or is
    // NULL).
    let rc = unsafe {
        ffi::sqlite3_prepare_v2(
            db,
            text.as_ptr().cast(),
            len_of(text.len())?,
            &mut raw,
            &mut tail,
        )
    };
    let stmt = Stmt(raw);
    if rc != ffi::SQLITE_OK {
        return Err(error(db));
    }
    let used = if tail.is_null() {
        text.len()
    } else {
        // SAFETY: `tail` points into `text`, at or after its start
        usize::try_from(unsafe { tail.cast::<u8>().offset_from(text.as_ptr()) })
            .unwrap_or(text.len())
            .clamp(1, text.len().max(1))
    };
    Ok((stmt, used.min(text.len())))
}

/// Runs the statements of `sql` (bytes, see [`sql_of`]) in turn through
/// SQLite's C API, `params` bound to each, and hands every row of each to
/// `f`.
fn each_raw(
    conn: &Connection,
    sql: &[u8],
    params: &[&dyn ToSql],
    f: &mut dyn FnMut(&Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    // SAFETY: the handle stays valid while `conn` is borrowed; the
    // statements made from it are used and finalized within this call.
    let db = unsafe { conn.handle() };
    let mut rest = sql;
    while !rest.is_empty() {
        let (stmt, used) = prepare(db, rest)?;
        rest = &rest[used..];
        if stmt.0.is_null() {
            continue; // only whitespace or a comment
        }
        for (i, p) in params.iter().enumerate() {
            let out = p.to_sql()?;
            let v = match &out {
                ToSqlOutput::Borrowed(v) => *v,
                ToSqlOutput::Owned(v) => ValueRef::from(v),
                _ => return Err(rusqlite::Error::InvalidParameterCount(i + 1, params.len())),
            };
            bind(db, &stmt, len_of(i + 1)?, v)?;
        }
        // SAFETY: a live statement
        let ncol = unsafe { ffi::sqlite3_column_count(stmt.0) };
        loop {
            // SAFETY: a live statement, stepped on this thread only
            match unsafe { ffi::sqlite3_step(stmt.0) } {
                ffi::SQLITE_ROW => {
                    let vals: Vec<ValueRef<'_>> = (0..ncol).map(|c| column(&stmt, c)).collect();
                    f(&Row { vals: &vals })?;
                }
                ffi::SQLITE_DONE => break,
                _ => return Err(error(db)),
            }
        }
    }
    Ok(())
}

/// Runs `sql` (whose names may hold bytes that are not UTF-8, see
/// [`name_text`]) with `params` bound as ?1, ?2, … and hands each row to
/// `f`. Without such bytes, through rusqlite's statement cache.
pub fn for_each(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    mut f: impl FnMut(&Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    if has_raw_bytes(sql) {
        return each_raw(conn, &sql_of(sql), params, &mut f);
    }
    let mut stmt = conn.prepare_cached(sql)?;
    let n = stmt.column_count();
    let mut rows = stmt.query(params)?;
    while let Some(r) = rows.next()? {
        let vals = (0..n)
            .map(|i| r.get_ref(i))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        f(&Row { vals: &vals })?;
    }
    Ok(())
}

/// Whether SQLite can prepare `sql` (nothing is run).
pub fn prepare_only(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    if !has_raw_bytes(sql) {
        return conn.prepare(sql).map(|_| ());
    }
    // SAFETY: the handle stays valid while `conn` is borrowed; the
    // statement is finalized (dropped) before this call returns.
    let db = unsafe { conn.handle() };
    prepare(db, &sql_of(sql)).map(|_| ())
}

/// Every row of `sql` mapped by `f` (see [`for_each`]).
pub fn query_map<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    mut f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    for_each(conn, sql, params, |r| {
        out.push(f(r)?);
        Ok(())
    })?;
    Ok(out)
}

/// The first row of `sql` mapped by `f`; `QueryReturnedNoRows` when none.
pub fn query_row<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut f = Some(f);
    let mut out = None;
    for_each(conn, sql, params, |r| {
        if let Some(f) = f.take() {
            out = Some(f(r)?);
        }
        Ok(())
    })?;
    out.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Runs `sql` to its end (rows it returns are read and dropped); the number
/// of rows it changed.
pub fn execute(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    if !has_raw_bytes(sql) {
        return conn.prepare_cached(sql)?.execute(params);
    }
    each_raw(conn, &sql_of(sql), params, &mut |_| Ok(()))?;
    Ok(usize::try_from(conn.changes()).unwrap_or(usize::MAX))
}

/// Runs every statement of `sql`, none with parameters.
pub fn execute_batch(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    if !has_raw_bytes(sql) {
        return conn.execute_batch(sql);
    }
    each_raw(conn, &sql_of(sql), &[], &mut |_| Ok(()))
}

/// Column `c` of the row `stmt` stands on, borrowed until the next step.
fn column<'s>(stmt: &'s Stmt, c: c_int) -> ValueRef<'s> {
    // SAFETY: `stmt` stands on a row (sqlite3_step returned SQLITE_ROW) and
    // `c` is below its column count; the bytes stay valid until the next
    // call on the statement, which the borrow of `stmt` outlives only
    // within one row's callback.
    unsafe {
        let bytes = |p: *const u8| -> &'s [u8] {
            let n = usize::try_from(ffi::sqlite3_column_bytes(stmt.0, c)).unwrap_or(0);
            if p.is_null() || n == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(p, n)
            }
        };
        match ffi::sqlite3_column_type(stmt.0, c) {
            ffi::SQLITE_INTEGER => ValueRef::Integer(ffi::sqlite3_column_int64(stmt.0, c)),
            ffi::SQLITE_FLOAT => ValueRef::Real(ffi::sqlite3_column_double(stmt.0, c)),
            ffi::SQLITE_TEXT => ValueRef::Text(bytes(ffi::sqlite3_column_text(stmt.0, c))),
            ffi::SQLITE_BLOB => ValueRef::Blob(bytes(ffi::sqlite3_column_blob(stmt.0, c).cast())),
            _ => ValueRef::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::Value;

    /// An index whose name is not UTF-8 is reached by its bytes, and by
    /// nothing else: its name read as UTF-8 (with U+FFFD) names no index.
    /// Rows, types and errors come back as SQLite gives them. Truth: the
    /// rows this test inserted.
    #[test]
    fn an_index_is_reached_by_the_bytes_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(a TEXT, b);
             CREATE INDEX idx_x ON t(a);
             INSERT INTO t VALUES ('k', 1), ('k', 2.5), ('m', x'00ff'), ('k', NULL);
             PRAGMA writable_schema = ON;",
        )
        .unwrap();
        let name = b"idx_stra\xdfe".to_vec();
        let sql = b"CREATE INDEX idx_stra\xdfe ON t(a)".to_vec();
        conn.execute(
            "UPDATE sqlite_schema SET name = CAST(?1 AS TEXT), sql = CAST(?2 AS TEXT) \
             WHERE name = 'idx_x'",
            [Value::Blob(name.clone()), Value::Blob(sql)],
        )
        .unwrap();
        drop(conn);
        let conn = Connection::open(&path).unwrap();
        let held = name_text(&name);
        assert_eq!(held, "idx_stra\u{10FFDF}e");
        assert_eq!(sql_of(&held).as_ref(), name.as_slice());
        assert_eq!(shown(&held), "idx_stra\u{FFFD}e");
        let lookup = format!(
            "SELECT rowid, b FROM t INDEXED BY {} WHERE a = ?1 ORDER BY rowid",
            quote_ident(&held)
        );
        let rows = query_map(&conn, &lookup, &[&"k"], |r| {
            Ok((r.get::<i64>(0)?, r.get::<Value>(1)?))
        })
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, Value::Integer(1)),
                (2, Value::Real(2.5)),
                (4, Value::Null),
            ]
        );
        let blob = query_row(&conn, "SELECT b FROM t WHERE a = 'm'", &[], |r| {
            r.get::<Vec<u8>>(0)
        })
        .unwrap();
        assert_eq!(blob, vec![0, 0xff]);
        let lossy = format!(
            "SELECT rowid FROM t INDEXED BY {} WHERE a = 'k'",
            quote_ident(&shown(&held))
        );
        let e = query_map(&conn, &lossy, &[], |r| r.get::<i64>(0)).unwrap_err();
        assert!(e.to_string().contains("no such index"), "{e}");
        // the name itself comes back as the bytes it is
        let names = query_map(
            &conn,
            "SELECT name FROM sqlite_schema WHERE type = 'index'",
            &[],
            |r| Ok(r.get_ref(0)?.as_bytes().unwrap().to_vec()),
        )
        .unwrap();
        assert_eq!(names, vec![name.clone()]);
        execute_batch(&conn, &format!("REINDEX {}; SELECT 1;", quote_ident(&held))).unwrap();
        assert_eq!(
            execute(
                &conn,
                &format!(
                    "DELETE FROM t INDEXED BY {} WHERE a = 'm'",
                    quote_ident(&held)
                ),
                &[]
            )
            .unwrap(),
            1
        );
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }

    /// A name misspelt (here: shown with U+FFFD) in backquotes is an error,
    /// never the string constant a double-quoted one becomes.
    #[test]
    fn a_column_that_is_not_there_is_an_error_not_a_constant() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
            .unwrap();
        let q = format!("SELECT count(*) FROM t WHERE {} = 'b'", quote_ident("b"));
        let e = query_row(&conn, &q, &[], |r| r.get::<i64>(0)).unwrap_err();
        assert!(e.to_string().contains("no such column"), "{e}");
        let dq = query_row(
            &conn,
            "SELECT count(*) FROM t WHERE \"b\" = 'b'",
            &[],
            |r| r.get::<i64>(0),
        )
        .unwrap();
        assert_eq!(
            dq, 1,
            "SQLite's double-quote fallback, which backquotes avoid"
        );
    }
}
