//! Statements whose text is not valid UTF-8: those that name an object by
//! the bytes SQLite stores for its name, where those bytes are not UTF-8
//! (an index a Latin-1 client created as `idx_customers_straße`). SQLite
//! compares names byte for byte, so only those bytes reach the object; the
//! same name read as UTF-8 (with U+FFFD) names nothing. rusqlite takes SQL
//! text as `&str` only, so these statements go through SQLite's C API
//! (`sqlite3_prepare_v2` takes bytes), here and nowhere else.

use std::ffi::{CStr, c_int};

use rusqlite::types::Value;
use rusqlite::{Connection, ffi};

/// `name` quoted as an SQL identifier (`"` doubled), as bytes.
pub fn quote_ident(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    out.push(b'"');
    for &b in name {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// The SQL text `head`, then `name` quoted, then `tail`.
pub fn with_name(head: &str, name: &[u8], tail: &str) -> Vec<u8> {
    let mut sql = head.as_bytes().to_vec();
    sql.extend_from_slice(&quote_ident(name));
    sql.extend_from_slice(tail.as_bytes());
    sql
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

/// SQLite's message for the last error on `db`.
fn errmsg(db: *mut ffi::sqlite3) -> String {
    // SAFETY: `db` is an open connection; sqlite3_errmsg always returns a
    // NUL-terminated string SQLite owns (never NULL), read before the next
    // call on the connection.
    unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned()
}

fn len_of(n: usize) -> Result<c_int, String> {
    c_int::try_from(n).map_err(|_| format!("{n} bytes is too long for SQLite"))
}

/// Runs `sql` on `conn` with `params` bound as ?1, ?2, … and returns every
/// row's values; SQLite's error message when it fails. Text that is not
/// valid UTF-8 comes back as a blob of its bytes.
pub fn query(conn: &Connection, sql: &[u8], params: &[Value]) -> Result<Vec<Vec<Value>>, String> {
    // SAFETY: the handle stays valid while `conn` is borrowed; the
    // statement made from it is used and finalized within this call.
    let db = unsafe { conn.handle() };
    let mut raw = std::ptr::null_mut();
    // SAFETY: `sql` is valid for `len` bytes; SQLite copies what it keeps.
    let rc = unsafe {
        ffi::sqlite3_prepare_v2(
            db,
            sql.as_ptr().cast(),
            len_of(sql.len())?,
            &mut raw,
            std::ptr::null_mut(),
        )
    };
    let stmt = Stmt(raw);
    if rc != ffi::SQLITE_OK {
        return Err(errmsg(db));
    }
    if stmt.0.is_null() {
        return Ok(Vec::new()); // no statement in the text
    }
    for (i, v) in params.iter().enumerate() {
        let n = len_of(i + 1)?;
        // SAFETY: a live statement; SQLITE_TRANSIENT makes SQLite copy the
        // bytes before the call returns.
        let rc = unsafe {
            match v {
                Value::Null => ffi::sqlite3_bind_null(stmt.0, n),
                Value::Integer(x) => ffi::sqlite3_bind_int64(stmt.0, n, *x),
                Value::Real(x) => ffi::sqlite3_bind_double(stmt.0, n, *x),
                Value::Text(t) => ffi::sqlite3_bind_text(
                    stmt.0,
                    n,
                    t.as_ptr().cast(),
                    len_of(t.len())?,
                    ffi::SQLITE_TRANSIENT(),
                ),
                Value::Blob(b) => ffi::sqlite3_bind_blob(
                    stmt.0,
                    n,
                    b.as_ptr().cast(),
                    len_of(b.len())?,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(errmsg(db));
        }
    }
    // SAFETY: a live statement
    let ncol = unsafe { ffi::sqlite3_column_count(stmt.0) };
    let mut rows = Vec::new();
    loop {
        // SAFETY: a live statement, stepped on this thread only
        match unsafe { ffi::sqlite3_step(stmt.0) } {
            ffi::SQLITE_ROW => rows.push((0..ncol).map(|c| column(&stmt, c)).collect()),
            ffi::SQLITE_DONE => return Ok(rows),
            _ => return Err(errmsg(db)),
        }
    }
}

/// Runs `sql` on `conn` to its end (e.g. `REINDEX "…"`).
pub fn execute(conn: &Connection, sql: &[u8]) -> Result<(), String> {
    query(conn, sql, &[]).map(|_| ())
}

/// Column `c` of the row `stmt` stands on.
fn column(stmt: &Stmt, c: c_int) -> Value {
    // SAFETY: `stmt` stands on a row (sqlite3_step returned SQLITE_ROW) and
    // `c` is below its column count; the bytes are copied out before the
    // next call on the statement.
    unsafe {
        let bytes = |p: *const u8| -> Vec<u8> {
            let n = usize::try_from(ffi::sqlite3_column_bytes(stmt.0, c)).unwrap_or(0);
            if p.is_null() || n == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(p, n).to_vec()
            }
        };
        match ffi::sqlite3_column_type(stmt.0, c) {
            ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_column_int64(stmt.0, c)),
            ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(stmt.0, c)),
            ffi::SQLITE_TEXT => {
                let b = bytes(ffi::sqlite3_column_text(stmt.0, c));
                match String::from_utf8(b) {
                    Ok(t) => Value::Text(t),
                    Err(e) => Value::Blob(e.into_bytes()),
                }
            }
            ffi::SQLITE_BLOB => Value::Blob(bytes(ffi::sqlite3_column_blob(stmt.0, c).cast())),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let lookup = with_name(
            "SELECT rowid, b FROM t INDEXED BY ",
            &name,
            " WHERE a = ?1 ORDER BY rowid",
        );
        let rows = query(&conn, &lookup, &[Value::Text("k".into())]).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Value::Integer(1), Value::Integer(1)],
                vec![Value::Integer(2), Value::Real(2.5)],
                vec![Value::Integer(4), Value::Null],
            ]
        );
        let blob = query(&conn, b"SELECT b FROM t WHERE a = 'm'", &[]).unwrap();
        assert_eq!(blob, vec![vec![Value::Blob(vec![0, 0xff])]]);
        let shown = String::from_utf8_lossy(&name).into_owned();
        let e = query(
            &conn,
            format!("SELECT rowid FROM t INDEXED BY \"{shown}\" WHERE a = 'k'").as_bytes(),
            &[],
        )
        .unwrap_err();
        assert!(e.contains("no such index"), "{e}");
        // the name itself comes back as the bytes it is
        let names = query(
            &conn,
            b"SELECT name FROM sqlite_schema WHERE type = 'index'",
            &[],
        )
        .unwrap();
        assert_eq!(names, vec![vec![Value::Blob(name.clone())]]);
        execute(&conn, &with_name("REINDEX ", &name, "")).unwrap();
        assert_eq!(quote_ident(b"a\"b"), b"\"a\"\"b\"".to_vec());
    }
}
