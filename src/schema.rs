//! What the database says about itself: tables, the customer table's
//! columns and indexes, from `sqlite_schema` and the table/index pragmas.

use std::collections::BTreeSet;

use anyhow::Result;
use rusqlite::Connection;

use crate::sql_bytes::{self, shown};

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

/// The root pages of `objects` that have one (a virtual table's is 0), in
/// schema order.
pub fn root_pages(objects: &[SchemaObject]) -> Vec<u32> {
    objects
        .iter()
        .filter_map(|o| u32::try_from(o.rootpage).ok())
        .filter(|&r| r > 0)
        .collect()
}

/// A value SQLite returned, as text that keeps its bytes where they are
/// not valid UTF-8 (`sql_bytes::name_text`: a name a Latin-1 client wrote
/// then reaches its object when SQL is built from it); None for NULL.
pub fn text(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Text(t) | V::Blob(t) => Some(crate::sql_bytes::name_text(t)),
        V::Integer(i) => Some(i.to_string()),
        V::Real(f) => Some(f.to_string()),
        V::Null => None,
    }
}

/// Reads `sqlite_schema` in rowid order. Text that is not valid UTF-8 (a
/// Latin-1 name, a damaged one) is kept byte for byte, never refused.
pub fn read_schema(conn: &Connection) -> rusqlite::Result<Vec<SchemaObject>> {
    use rusqlite::types::ValueRef as V;
    let mut stmt = conn
        .prepare("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema ORDER BY rowid")?;
    let rows = stmt.query_map([], |r| {
        Ok(SchemaObject {
            kind: text(r.get_ref(0)?).unwrap_or_default(),
            name: text(r.get_ref(1)?).unwrap_or_default(),
            tbl_name: text(r.get_ref(2)?).unwrap_or_default(),
            rootpage: match r.get_ref(3)? {
                V::Integer(i) => i,
                _ => 0,
            },
            sql: text(r.get_ref(4)?),
        })
    })?;
    rows.collect()
}

/// Reads `sqlite_schema` with custodian's page reader (`format::schema_table`),
/// for a file SQLite cannot read at all, with the text encoding its records
/// read in (`known`: the header's, when it can be trusted). `None` when
/// page 1 gives no schema row.
pub fn from_pages(
    src: &dyn crate::format::btree::PageSource,
    known: Option<crate::format::header::TextEncoding>,
) -> Option<(Vec<SchemaObject>, crate::format::header::TextEncoding)> {
    let found = crate::format::schema_table::read(src, known);
    let enc = found.encoding?;
    if found.rows.is_empty() {
        return None;
    }
    let objects = found
        .rows
        .into_iter()
        .map(|r| SchemaObject {
            kind: r.kind,
            name: r.name,
            tbl_name: r.tbl_name,
            rootpage: r.rootpage,
            sql: r.sql,
        })
        .collect();
    Some((objects, enc))
}

/// An in-memory database holding the tables and indexes of `objects` (no
/// rows): SQLite's own introspection (`PRAGMA table_xinfo`, `index_xinfo`)
/// then works on a schema that was read from the pages. Only single CREATE
/// TABLE / CREATE INDEX statements without a query in them are run (a
/// damaged text could hold anything; no table or index definition SQLite
/// stores contains SELECT); statements SQLite rejects are left out.
pub fn in_memory(objects: &[SchemaObject]) -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    for kind in ["table", "index"] {
        for o in objects.iter().filter(|o| o.kind == kind) {
            if o.name.to_ascii_lowercase().starts_with("sqlite_") || is_virtual_table(o) {
                continue;
            }
            let Some(sql) = &o.sql else { continue };
            let mut words = sql_words(sql);
            let create = words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("CREATE"));
            if !create || sql_words(sql).any(|w| w.eq_ignore_ascii_case("SELECT")) {
                continue;
            }
            // one statement only: `execute` refuses trailing statements
            let _ = conn.execute(sql, []);
        }
    }
    Ok(conn)
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
    /// The name, its bytes kept where they are not valid UTF-8 (a Latin-1
    /// client's `idx_customers_straße`, see `sql_bytes::name_text`).
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
    /// The PRIMARY KEY's columns in key order (a WITHOUT ROWID table's rows
    /// are named by them, and stored first in its records).
    pub pk_columns: Vec<usize>,
    /// A WITHOUT ROWID table's key order: per field of its primary key, the
    /// collation's name and whether it is descending (empty for a rowid
    /// table). Its b-tree is held to it, as SQLite's lookups by key assume.
    pub pk_order: Vec<(String, bool)>,
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
        let fks: Vec<(String, String)> = sql_bytes::query_map(
            conn,
            &format!("PRAGMA foreign_key_list({})", quote_ident(&o.name)),
            &[],
            |r| {
                Ok((
                    r.text(2)?.unwrap_or_default(),
                    r.text(3)?.unwrap_or_default(),
                ))
            },
        )?;
        for (target, from) in fks {
            if target.eq_ignore_ascii_case(customer_table) {
                out.insert((o.name.clone(), from));
            }
        }
        let cols: Vec<String> = sql_bytes::query_map(
            conn,
            &format!("PRAGMA table_info({})", quote_ident(&o.name)),
            &[],
            |r| Ok(r.text(1)?.unwrap_or_default()),
        )?;
        for c in cols {
            if c.eq_ignore_ascii_case(id_column) {
                out.insert((o.name.clone(), c));
            }
        }
    }
    Ok(out.into_iter().collect())
}

pub use crate::sql_bytes::quote_ident;

/// What a name typed by a person (`--table`, `--id-column`: UTF-8) picks.
pub enum Picked<T> {
    One(T),
    None,
    /// Several names that are not valid UTF-8 read alike (as shown).
    Ambiguous(Vec<String>),
}

/// The one of `items` whose name is `wanted` (ASCII case ignored, as
/// SQLite compares names); else the one name that is not valid UTF-8 and
/// is shown as `wanted` (its bytes as U+FFFD: how a DBA reads it in
/// custodian's reports and can type it); several such: ambiguous.
pub fn pick_name<T>(
    items: impl Iterator<Item = T> + Clone,
    name: impl Fn(&T) -> &String,
    wanted: &str,
) -> Picked<T> {
    if let Some(exact) = items.clone().find(|i| name(i).eq_ignore_ascii_case(wanted)) {
        return Picked::One(exact);
    }
    let mut alike: Vec<T> = items
        .filter(|i| {
            sql_bytes::has_raw_bytes(name(i)) && shown(name(i)).eq_ignore_ascii_case(wanted)
        })
        .collect();
    match alike.len() {
        0 => Picked::None,
        1 => Picked::One(alike.remove(0)),
        _ => Picked::Ambiguous(alike.iter().map(|i| shown(name(i)).into_owned()).collect()),
    }
}

/// One field of a WITHOUT ROWID table's record, from its primary key's
/// `index_xinfo`.
struct RecordField {
    cid: i64,
    desc: bool,
    collation: String,
    /// A field of the primary key (the rest follow it).
    key: bool,
}

/// The record order of a WITHOUT ROWID table (`q` its quoted name): the
/// table is its primary key's b-tree, whose records hold the key's columns,
/// then the others (from the key's `index_xinfo`; a column the key repeats
/// with another collation is listed again).
fn without_rowid_order(conn: &Connection, q: &str) -> rusqlite::Result<Vec<RecordField>> {
    let pk_index: Option<String> =
        sql_bytes::query_map(conn, &format!("PRAGMA index_list({q})"), &[], |r| {
            Ok((
                r.text(1)?.unwrap_or_default(),
                r.text(3)?.unwrap_or_default(),
            ))
        })?
        .into_iter()
        .find(|(_, origin)| origin == "pk")
        .map(|(name, _)| name);
    let Some(pk) = pk_index else {
        return Ok(Vec::new());
    };
    sql_bytes::query_map(
        conn,
        &format!("PRAGMA index_xinfo({})", quote_ident(&pk)),
        &[],
        |r| {
            Ok(RecordField {
                cid: r.get(1)?,
                desc: r.get::<i64>(3)? != 0,
                collation: r.get::<Option<String>>(4)?.unwrap_or_default(),
                key: r.get::<i64>(5)? != 0,
            })
        },
    )
}

/// "no table NAME; tables: …": what check says (and snapshot refuses)
/// when the schema has no table `name`, with the tables it does have.
pub fn no_such_table(objects: &[SchemaObject], name: &str) -> String {
    let tables: Vec<&str> = objects
        .iter()
        .filter(|o| o.kind == "table" && !o.name.starts_with("sqlite_"))
        .map(|o| o.name.as_str())
        .collect();
    format!(
        "no table {name:?}; tables: {} (use --table)",
        if tables.is_empty() {
            "none".to_string()
        } else {
            tables.join(", ")
        }
    )
}

/// Introspects table `name`. Ok(None) when there is no such table.
pub fn customer_table(
    conn: &Connection,
    objects: &[SchemaObject],
    name: &str,
    id_column: &str,
) -> Result<Option<Result<CustomerTable, String>>> {
    let tables = objects.iter().filter(|o| o.kind == "table");
    let obj = match pick_name(tables, |o| &o.name, name) {
        Picked::One(o) => o,
        Picked::None => return Ok(None),
        Picked::Ambiguous(names) => {
            return Ok(Some(Err(format!(
                "--table {name:?} could be any of the tables {}, whose names are not valid UTF-8 \
                 and read alike; custodian cannot tell which is meant",
                names.join(", ")
            ))));
        }
    };
    let q = quote_ident(&obj.name);
    let mut columns = Vec::new();
    let mut pk_cols: Vec<(i64, usize)> = Vec::new();
    {
        let mut record_pos = 0usize;
        sql_bytes::for_each(conn, &format!("PRAGMA table_xinfo({q})"), &[], |r| {
            let cid: i64 = r.get(0)?;
            let name: String = r.text(1)?.unwrap_or_default();
            let decl_type: String = r.text(2)?.unwrap_or_default();
            let default_sql: Option<String> = r.text(4)?;
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
            Ok(())
        })?;
    }
    let sql = obj.sql.clone().unwrap_or_default();
    let without_rowid = is_without_rowid(&sql);
    pk_cols.sort();
    let pk_columns: Vec<usize> = pk_cols.iter().map(|&(_, c)| c).collect();
    let mut pk_order = Vec::new();
    if without_rowid {
        for c in columns.iter_mut() {
            c.record_pos = None;
        }
        for (pos, f) in without_rowid_order(conn, &q)?.iter().enumerate() {
            if let Some(c) = columns.iter_mut().find(|c| c.cid == f.cid)
                && c.record_pos.is_none()
            {
                c.record_pos = Some(pos);
            }
            if f.key {
                pk_order.push((f.collation.clone(), f.desc));
            }
        }
    }
    let rowid_alias = if !without_rowid && pk_cols.len() == 1 {
        let c = &columns[pk_cols[0].1];
        (c.decl_type.eq_ignore_ascii_case("INTEGER") && !pk_desc_quirk(&sql))
            .then_some(pk_cols[0].1)
    } else {
        None
    };
    let id_col = match pick_name(columns.iter().enumerate(), |(_, c)| &c.name, id_column) {
        Picked::One((i, _)) => i,
        Picked::None => {
            let names: Vec<String> = columns
                .iter()
                .map(|c| shown(&c.name).into_owned())
                .collect();
            return Ok(Some(Err(format!(
                "table {} has no column {:?}; its columns: {} (use --id-column)",
                shown(&obj.name),
                id_column,
                names.join(", ")
            ))));
        }
        Picked::Ambiguous(names) => {
            return Ok(Some(Err(format!(
                "--id-column {id_column:?} could be any of the columns {} of table {}, whose \
                 names are not valid UTF-8 and read alike; custodian cannot tell which is meant",
                names.join(", "),
                shown(&obj.name)
            ))));
        }
    };
    let mut indexes = Vec::new();
    let list: Vec<(String, bool, String, bool)> =
        sql_bytes::query_map(conn, &format!("PRAGMA index_list({q})"), &[], |r| {
            Ok((
                r.text(1)?.unwrap_or_default(),
                r.get::<i64>(2)? != 0,
                r.text(3)?.unwrap_or_default(),
                r.get::<i64>(4)? != 0,
            ))
        })?;
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
        let xinfo = format!(
            "SELECT seqno, cid, name, desc, coll, key FROM pragma_index_xinfo({})",
            sql_bytes::quote_text(&iname)
        );
        for r in sql_bytes::query_map(conn, &xinfo, &[], |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<i64>(1)?,
                r.get::<i64>(3)? != 0,
                r.text(4)?.unwrap_or_else(|| "BINARY".into()),
                r.get::<i64>(5)? != 0,
            ))
        })? {
            let (seqno, cid, desc, coll, key) = r;
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
        pk_columns,
        pk_order,
        rowid_alias,
        id_column: id_col,
        indexes,
    })))
}

/// SQLite's column affinity (datatype3.html, "Determination Of Column
/// Affinity"; build.c `sqlite3AffinityType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Blob,
    Text,
    Numeric,
    Integer,
    Real,
}

/// The affinity of a declared column type, by SQLite's rules: "INT"
/// anywhere gives INTEGER; else "CHAR", "CLOB" or "TEXT" gives TEXT; else
/// "BLOB" or no type gives BLOB; else "REAL", "FLOA" or "DOUB" gives REAL;
/// else NUMERIC. Like SQLite, it scans once, left to right, and the first
/// rule to match in that order wins.
pub fn affinity(decl_type: &str) -> Affinity {
    if decl_type.trim().is_empty() {
        return Affinity::Blob;
    }
    let mut aff = Affinity::Numeric;
    let mut h: u32 = 0;
    let tag = |s: &[u8; 4]| u32::from_be_bytes(*s);
    for b in decl_type.bytes() {
        h = (h << 8) | u32::from(b.to_ascii_lowercase());
        if h == tag(b"char") || h == tag(b"clob") || h == tag(b"text") {
            aff = Affinity::Text;
        } else if h == tag(b"blob") && matches!(aff, Affinity::Numeric | Affinity::Real) {
            aff = Affinity::Blob;
        } else if (h == tag(b"real") || h == tag(b"floa") || h == tag(b"doub"))
            && aff == Affinity::Numeric
        {
            aff = Affinity::Real;
        } else if h & 0x00ff_ffff == u32::from_be_bytes([0, b'i', b'n', b't']) {
            return Affinity::Integer;
        }
    }
    aff
}

/// A stored column of any ordinary table, as the row checks need it.
#[derive(Debug, Clone)]
pub struct StoredColumn {
    pub name: String,
    pub decl_type: String,
    pub not_null: bool,
    pub has_default: bool,
    /// Position in the stored record (for a WITHOUT ROWID table, in the
    /// primary-key b-tree's record); None for a VIRTUAL generated column.
    pub record_pos: Option<usize>,
    /// The INTEGER PRIMARY KEY column (stored as NULL: the rowid holds it).
    pub rowid_alias: bool,
}

/// What the row checks need of one ordinary table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub strict: bool,
    pub without_rowid: bool,
    pub columns: Vec<StoredColumn>,
}

/// Introspects an ordinary table with SQLite's pragmas (`table_xinfo`,
/// `table_list`, and for a WITHOUT ROWID table the primary key's
/// `index_xinfo`, which gives the order of its record).
pub fn table_info(conn: &Connection, obj: &SchemaObject) -> rusqlite::Result<TableInfo> {
    let q = quote_ident(&obj.name);
    let sql = obj.sql.clone().unwrap_or_default();
    let without_rowid = is_without_rowid(&sql);
    let mut columns = Vec::new();
    let mut cids = Vec::new();
    let mut pk_cols = Vec::new();
    {
        let mut pos = 0usize;
        sql_bytes::for_each(conn, &format!("PRAGMA table_xinfo({q})"), &[], |r| {
            let hidden: i64 = r.get(6)?;
            let record_pos = (hidden != 2).then(|| {
                pos += 1;
                pos - 1
            });
            if r.get::<i64>(5)? > 0 {
                pk_cols.push(columns.len());
            }
            cids.push(r.get::<i64>(0)?);
            columns.push(StoredColumn {
                name: r.text(1)?.unwrap_or_default(),
                decl_type: r.text(2)?.unwrap_or_default(),
                not_null: r.get::<i64>(3)? != 0,
                has_default: r.text(4)?.is_some(),
                record_pos,
                rowid_alias: false,
            });
            Ok(())
        })?;
    }
    if !without_rowid
        && let [pk] = pk_cols[..]
        && columns[pk].decl_type.eq_ignore_ascii_case("INTEGER")
        && !pk_desc_quirk(&sql)
    {
        columns[pk].rowid_alias = true;
    }
    if without_rowid {
        for c in columns.iter_mut() {
            c.record_pos = None;
        }
        for (pos, f) in without_rowid_order(conn, &q)?.iter().enumerate() {
            if let Some(i) = cids.iter().position(|c| *c == f.cid)
                && columns[i].record_pos.is_none()
            {
                columns[i].record_pos = Some(pos);
            }
        }
    }
    let strict = sql_bytes::query_row(
        conn,
        "SELECT strict FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
        &[&sql_bytes::param(&obj.name)],
        |r| r.get::<i64>(0),
    )
    .map(|v| v != 0)
    .unwrap_or(false);
    Ok(TableInfo {
        name: obj.name.clone(),
        strict,
        without_rowid,
        columns,
    })
}

/// sqlite_schema itself, as SQLite declares it: type, name, tbl_name and
/// sql are TEXT, rootpage INT (quick_check holds its rows to that too).
pub fn schema_table_info() -> TableInfo {
    let col = |i: usize, name: &str, t: &str| StoredColumn {
        name: name.into(),
        decl_type: t.into(),
        not_null: false,
        has_default: false,
        record_pos: Some(i),
        rowid_alias: false,
    };
    TableInfo {
        name: "sqlite_schema".into(),
        strict: false,
        without_rowid: false,
        columns: vec![
            col(0, "type", "text"),
            col(1, "name", "text"),
            col(2, "tbl_name", "text"),
            col(3, "rootpage", "int"),
            col(4, "sql", "text"),
        ],
    }
}

/// Whether a CREATE TABLE statement declares a CHECK constraint (the word
/// CHECK outside string literals, quoted names and comments).
pub fn has_check_constraint(sql: &str) -> bool {
    sql_words(sql).any(|w| w.eq_ignore_ascii_case("CHECK"))
}

/// The expression of every CHECK constraint of a CREATE TABLE statement, as
/// SQL text: what follows the word CHECK in balanced parentheses.
pub fn check_expressions(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    // skips a quoted span starting at b[i]; returns the index after it
    let skip_quoted = |i: usize| -> Option<usize> {
        let close = match b[i] {
            b'\'' => b'\'',
            b'"' => b'"',
            b'`' => b'`',
            b'[' => b']',
            _ => return None,
        };
        let mut j = i + 1;
        while j < b.len() && b[j] != close {
            j += 1;
        }
        Some(j + 1)
    };
    while i < b.len() {
        if let Some(j) = skip_quoted(i) {
            i = j;
            continue;
        }
        let word = b[i].is_ascii_alphabetic()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if word
            && sql
                .get(i..i + 5)
                .is_some_and(|w| w.eq_ignore_ascii_case("CHECK"))
            && b.get(i + 5)
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        {
            let mut j = i + 5;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if b.get(j) == Some(&b'(') {
                let start = j + 1;
                let mut depth = 1;
                j += 1;
                while j < b.len() && depth > 0 {
                    if let Some(k) = skip_quoted(j) {
                        j = k;
                        continue;
                    }
                    match b[j] {
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth == 0 {
                    out.push(sql[start..j - 1].trim().to_string());
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Whether a schema statement creates a virtual table.
pub fn is_virtual_table(obj: &SchemaObject) -> bool {
    obj.kind == "table"
        && obj.sql.as_deref().is_some_and(|s| {
            let mut w = sql_words(s);
            w.next().is_some_and(|x| x.eq_ignore_ascii_case("CREATE"))
                && w.next().is_some_and(|x| x.eq_ignore_ascii_case("VIRTUAL"))
        })
}

/// Whether an index has a WHERE clause (a partial index).
pub fn is_partial_index(obj: &SchemaObject) -> bool {
    obj.kind == "index"
        && obj
            .sql
            .as_deref()
            .is_some_and(|s| partial_where(s).is_some())
}

/// The bare words of SQL text, skipping string literals, quoted names and
/// comments.
fn sql_words(sql: &str) -> impl Iterator<Item = &str> {
    let b = sql.as_bytes();
    let mut i = 0usize;
    std::iter::from_fn(move || {
        while i < b.len() {
            let c = b[i];
            let close = match c {
                b'\'' => Some(b'\''),
                b'"' => Some(b'"'),
                b'`' => Some(b'`'),
                b'[' => Some(b']'),
                _ => None,
            };
            if let Some(q) = close {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                return sql.get(start..i);
            } else {
                i += 1;
            }
        }
        None
    })
}

/// Whether `sql` holds `word` (upper case) as a word of its own, in any case.
pub(crate) fn has_word(sql: &str, word: &str) -> bool {
    let up = sql.to_ascii_uppercase();
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    up.match_indices(word).any(|(i, _)| {
        let b = up.as_bytes();
        let before = i == 0 || !is_word(b[i - 1]);
        let after = b.get(i + word.len()).is_none_or(|&c| !is_word(c));
        before && after
    })
}

/// Whether a CREATE TABLE statement ends in WITHOUT ROWID.
pub fn is_without_rowid(sql: &str) -> bool {
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
    // the WHERE that follows the term list: find the term list's closing
    // paren (a parenthesis in a string or a quoted name does not count)
    let open = find_top_level(sql, b'(')?;
    let mut depth = 0;
    let mut quote: Option<u8> = None;
    let mut end = None;
    for (i, b) in sql.bytes().enumerate().skip(open) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' | b'`' => quote = Some(b),
                b'[' => quote = Some(b']'),
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            },
        }
    }
    let rest = &sql[end? + 1..];
    let up_rest = rest.to_ascii_uppercase();
    let w = up_rest.find("WHERE")?;
    Some(rest[w + 5..].trim().to_string())
}

#[cfg(test)]
mod has_word_tests {
    use super::has_word;

    #[test]
    fn words_are_told_from_parts_of_names() {
        assert!(has_word("CREATE TABLE t(a INT CHECK(a>0))", "CHECK"));
        assert!(has_word("create table t(a) strict", "STRICT"));
        assert!(!has_word(
            "CREATE TABLE t(check_no INT, rechecked)",
            "CHECK"
        ));
        assert!(!has_word("CREATE TABLE t(a)", "CHECK"));
    }
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
        // a parenthesis inside a string or a quoted name is not the end of
        // the term list
        assert_eq!(
            partial_where("CREATE INDEX i ON t(instr(name, '(')) WHERE status = 'active'")
                .as_deref(),
            Some("status = 'active'")
        );
        assert_eq!(
            partial_where("CREATE INDEX i ON t(\"a)\", [b(]) WHERE a > 0").as_deref(),
            Some("a > 0")
        );
        assert_eq!(partial_where("CREATE INDEX i ON t(instr(name, ')'))"), None);
    }

    #[test]
    fn affinity_rules() {
        for (t, a) in [
            ("INTEGER", Affinity::Integer),
            ("BIGINT", Affinity::Integer),
            ("POINT", Affinity::Integer),
            ("CHARINT", Affinity::Integer),
            ("VARCHAR(20)", Affinity::Text),
            ("nchar", Affinity::Text),
            ("CLOB", Affinity::Text),
            ("TEXT", Affinity::Text),
            ("BLOB", Affinity::Blob),
            ("", Affinity::Blob),
            ("REAL", Affinity::Real),
            ("DOUBLE PRECISION", Affinity::Real),
            ("FLOAT", Affinity::Real),
            ("NUMERIC", Affinity::Numeric),
            ("DECIMAL(10,2)", Affinity::Numeric),
            ("DATETIME", Affinity::Numeric),
            ("ANY", Affinity::Numeric),
            // CHAR wins over a later BLOB or REAL, INT over everything.
            ("CHARBLOB", Affinity::Text),
            ("TEXTREAL", Affinity::Text),
            ("BLOBINT", Affinity::Integer),
        ] {
            assert_eq!(affinity(t), a, "{t:?}");
        }
    }

    #[test]
    fn check_constraints_and_virtual_tables_are_found_by_word() {
        assert!(has_check_constraint(
            "CREATE TABLE t(a INT CHECK (a > 0), b)"
        ));
        assert!(has_check_constraint(
            "CREATE TABLE t(a, b, CONSTRAINT c check(a<b))"
        ));
        assert!(!has_check_constraint(
            "CREATE TABLE t(check_date TEXT, \"check\" INT, note DEFAULT 'check')"
        ));
        assert!(!has_check_constraint("CREATE TABLE t(a) -- check later"));
        assert_eq!(
            check_expressions(
                "CREATE TABLE t(a INT CHECK (a > 0), b TEXT check(length(b) < 5 AND b <> ')'), \
                 check_date, CONSTRAINT c CHECK(a<b))"
            ),
            vec!["a > 0", "length(b) < 5 AND b <> ')'", "a<b"]
        );
        let v = |sql: &str| SchemaObject {
            kind: "table".into(),
            name: "t".into(),
            tbl_name: "t".into(),
            rootpage: 0,
            sql: Some(sql.into()),
        };
        assert!(is_virtual_table(&v(
            "create  virtual table t using fts5(x)"
        )));
        assert!(!is_virtual_table(&v("CREATE TABLE virtual(x)")));
    }

    #[test]
    fn without_rowid_detection() {
        assert!(is_without_rowid(
            "CREATE TABLE t(a PRIMARY KEY) WITHOUT ROWID"
        ));
        assert!(!is_without_rowid("CREATE TABLE t(a PRIMARY KEY)"));
    }
}
