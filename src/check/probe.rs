//! The lookup probe: do the POS's own lookup through an index, with SQLite,
//! and compare what comes back with the table. This is what confirms that a
//! customer is rejected; nothing is inferred from error text.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::sql_bytes;

/// A value bound as SQLite holds it: text whose bytes are not all UTF-8
/// (held as [`whole_row`] reads it) is bound as those bytes
/// ([`sql_bytes::param`]).
enum Bound<'a> {
    Value(&'a Value),
    Text(sql_bytes::Param<'a>),
}

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Bound::Value(v) => v.to_sql(),
            Bound::Text(t) => t.to_sql(),
        }
    }
}

/// `values` as the parameters of a statement (pass them on with
/// [`sql_bytes::params`]).
fn bound(values: &[Value]) -> Vec<Bound<'_>> {
    values
        .iter()
        .map(|v| match v {
            Value::Text(t) if sql_bytes::has_raw_bytes(t) => Bound::Text(sql_bytes::param(t)),
            v => Bound::Value(v),
        })
        .collect()
}

/// Every column of a row. Text that is not valid UTF-8 (a Latin-1 client's
/// `Müller`, bytes a damaged overflow page put into a name) keeps its bytes
/// ([`sql_bytes::name_text`]): SQLite serves such a row as it is, so the
/// probe compares it as it is, never failing on its conversion.
fn whole_row(r: &sql_bytes::Row<'_>) -> rusqlite::Result<Vec<Value>> {
    (0..r.len())
        .map(|i| {
            Ok(match r.get_ref(i)? {
                ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(t) => Value::Text(t.to_owned()),
                    Err(_) => Value::Text(sql_bytes::name_text(t)),
                },
                ValueRef::Null => Value::Null,
                ValueRef::Integer(x) => Value::Integer(x),
                ValueRef::Real(x) => Value::Real(x),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            })
        })
        .collect()
}

use super::compare::PageRow;
use crate::schema::{CustomerTable, Index, IndexPart, quote_ident};

/// The answer of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The lookup returned the right rows.
    Right,
    /// The row is not among those returned.
    Missing,
    /// A returned row does not hold the looked-up key (or is gone).
    WrongRow,
    /// SQLite raised an error (usually "database disk image is malformed").
    Error(String),
    /// The lookup could not be formed (e.g. an unknown collation).
    NotProbed(String),
}

impl Answer {
    pub fn is_wrong(&self) -> bool {
        matches!(self, Answer::Missing | Answer::WrongRow | Answer::Error(_))
    }
}

pub struct Prober<'c> {
    conn: &'c Connection,
    table: &'c CustomerTable,
    tq: String,
    /// Answers of lookups that return many rows (a shared status, a NULL
    /// phone), so that probing many customers with the same key scans the
    /// range once. Bounded by [`CACHE_MAX_ROWIDS`].
    cache: RefCell<HashMap<LookupKey, Lookup>>,
    cached_rowids: Cell<usize>,
}

/// (index name, canonical key bytes)
type LookupKey = (String, Vec<u8>);
/// Sorted rowids found, or SQLite's error.
type Lookup = Result<Rc<Vec<i64>>, String>;

/// A lookup returning at least this many rows is remembered.
const CACHE_MIN_ROWS: usize = 64;
/// At most this many rowids are remembered (8 bytes each: 32 MiB).
const CACHE_MAX_ROWIDS: usize = 4 << 20;

fn term_sql(table: &CustomerTable, index: &Index, i: usize) -> String {
    let f = &index.fields[i];
    let expr = match &f.part {
        IndexPart::Column(c) => quote_ident(&table.columns[*c].name),
        IndexPart::Rowid => "rowid".to_string(),
        IndexPart::Expr(e) => format!("({e})"),
    };
    format!("{expr} COLLATE {}", quote_ident(&f.collation))
}

/// The SQL of each key term of `index`, in key order.
fn key_terms(table: &CustomerTable, index: &Index) -> Vec<String> {
    key_positions(index)
        .into_iter()
        .map(|i| term_sql(table, index, i))
        .collect()
}

/// ` AND (WHERE clause)` of a partial index, else nothing: a lookup's SQL
/// covers exactly the rows the index covers.
fn partial_filter(index: &Index) -> String {
    match &index.partial_where {
        Some(w) => format!(" AND ({w})"),
        None => String::new(),
    }
}

fn key_positions(index: &Index) -> Vec<usize> {
    (0..index.fields.len())
        .filter(|&i| index.fields[i].key)
        .collect()
}

impl<'c> Prober<'c> {
    pub fn new(conn: &'c Connection, table: &'c CustomerTable) -> Prober<'c> {
        Prober {
            conn,
            table,
            tq: quote_ident(&table.name),
            cache: RefCell::new(HashMap::new()),
            cached_rowids: Cell::new(0),
        }
    }

    fn key_holds_id(&self, index: &Index) -> bool {
        index
            .fields
            .iter()
            .any(|f| f.key && matches!(f.part, IndexPart::Column(c) if c == self.table.id_column))
    }

    /// The customer ID held by row `rowid`, read straight from the table.
    pub fn row_id(&self, rowid: i64) -> Result<Option<Value>, String> {
        let sql = format!(
            "SELECT {} FROM {} NOT INDEXED WHERE rowid = ?1",
            quote_ident(&self.table.columns[self.table.id_column].name),
            self.tq
        );
        self.one(&sql, &[Value::Integer(rowid)])
            .map(|o| o.map(|mut v| v.swap_remove(0)))
    }

    /// Key values of `index` for row `rowid` (as SQLite evaluates them), or
    /// None when the row does not exist or the index does not cover it.
    fn row_key(&self, index: &Index, rowid: i64) -> Result<Option<Vec<Value>>, String> {
        let cols = key_terms(self.table, index);
        let filter = partial_filter(index);
        let sql = format!(
            "SELECT {} FROM {} NOT INDEXED WHERE rowid = ?1{filter}",
            cols.join(", "),
            self.tq
        );
        self.one(&sql, &[Value::Integer(rowid)])
    }

    /// Rowids returned by looking `key` up through `index` (sorted).
    fn lookup(&self, index: &Index, key: &[Value]) -> Lookup {
        let mut kb = Vec::new();
        for v in key {
            super::canon::push_value(&mut kb, v);
        }
        let ck = (index.name.clone(), kb);
        if let Some(hit) = self.cache.borrow().get(&ck) {
            return hit.clone();
        }
        let r = self.lookup_uncached(index, key).map(|mut v| {
            v.sort_unstable();
            Rc::new(v)
        });
        let big = match &r {
            Ok(v) => v.len() >= CACHE_MIN_ROWS,
            Err(_) => true,
        };
        let n = r.as_ref().map(|v| v.len()).unwrap_or(0);
        if big && self.cached_rowids.get() + n <= CACHE_MAX_ROWIDS {
            self.cached_rowids.set(self.cached_rowids.get() + n);
            self.cache.borrow_mut().insert(ck, r.clone());
        }
        r
    }

    /// `key` may be shorter than the index's key: the lookup is then by
    /// that leading part (the POS's lookup by ID through an index whose key
    /// starts with the ID).
    fn lookup_uncached(&self, index: &Index, key: &[Value]) -> Result<Vec<i64>, String> {
        let keys: Vec<usize> = key_positions(index).into_iter().take(key.len()).collect();
        // The POS compares with `=`; only a NULL key needs `IS`. (At the
        // border of a damaged page the two can differ: `IS` may step on
        // into the damaged page where `=` stops at the first match.)
        let conds: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                let op = if matches!(key.get(n), Some(Value::Null)) {
                    "IS"
                } else {
                    "="
                };
                format!("{} {op} ?{}", term_sql(self.table, index, i), n + 1)
            })
            .collect();
        let filter = partial_filter(index);
        let tail = format!(" WHERE {}{filter}", conds.join(" AND "));
        let sql = format!(
            "SELECT rowid FROM {} INDEXED BY {}{tail}",
            self.tq,
            quote_ident(&index.name),
        );
        sql_bytes::query_map(self.conn, &sql, &sql_bytes::params(&bound(key)), |r| {
            r.get::<i64>(0)
        })
        .map_err(|e| e.to_string())
    }

    /// Whether row `rowid` exists and holds `key` in `index`'s terms (its
    /// leading terms, when `key` is shorter than the index's key).
    /// The whole row is read, as the POS reads the customer's record after
    /// the lookup: a row whose overflow pages are damaged is an error here.
    fn row_holds(&self, index: &Index, rowid: i64, key: &[Value]) -> Result<bool, String> {
        let keys: Vec<usize> = key_positions(index).into_iter().take(key.len()).collect();
        let mut conds = vec!["rowid = ?1".to_string()];
        for (n, &i) in keys.iter().enumerate() {
            conds.push(format!("{} IS ?{}", term_sql(self.table, index, i), n + 2));
        }
        let all: Vec<String> = self
            .table
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} NOT INDEXED WHERE {}",
            all.join(", "),
            self.tq,
            conds.join(" AND ")
        );
        let mut params = vec![Value::Integer(rowid)];
        params.extend(key.iter().cloned());
        self.one(&sql, &params).map(|o| o.is_some())
    }

    /// The rows of `head`, `index`'s name, `tail`.
    fn rows_through(
        &self,
        index: &Index,
        head: &str,
        tail: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, String> {
        self.all_rows(&format!("{head}{}{tail}", quote_ident(&index.name)), params)
    }

    fn one(&self, sql: &str, params: &[Value]) -> Result<Option<Vec<Value>>, String> {
        match sql_bytes::query_row(
            self.conn,
            sql,
            &sql_bytes::params(&bound(params)),
            whole_row,
        ) {
            Ok(v) => Ok(Some(v)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Does every index of the table find row `rowid` by its own key, and
    /// only rows that hold that key? One answer per index name; None when
    /// the row itself cannot be read.
    pub fn probe_row(&self, rowid: i64) -> Option<BTreeMap<String, Answer>> {
        let mut out = BTreeMap::new();
        let mut readable = false;
        for index in &self.table.indexes {
            let key = match self.row_key(index, rowid) {
                Ok(Some(k)) => k,
                Ok(None) => continue, // not in a partial index, or no such row
                Err(e) if is_planner_error(&e) => {
                    out.insert(index.name.clone(), Answer::NotProbed(e));
                    continue;
                }
                Err(_) => return None,
            };
            readable = true;
            out.insert(index.name.clone(), self.answer(index, rowid, &key));
        }
        readable.then_some(out)
    }

    fn answer(&self, index: &Index, rowid: i64, key: &[Value]) -> Answer {
        match self.lookup(index, key) {
            Err(e) if is_planner_error(&e) => Answer::NotProbed(e),
            Err(e) => Answer::Error(e),
            Ok(found) => {
                if found.binary_search(&rowid).is_err() {
                    return Answer::Missing;
                }
                // Through an index whose key holds the customer ID, every row
                // returned must hold this key, else the POS gets another
                // customer. Through other indexes (phone, status) the other
                // rows returned belong to other customers: only this row decides.
                if !self.key_holds_id(index) {
                    return Answer::Right;
                }
                for &s in found.iter() {
                    match self.row_holds(index, s, key) {
                        Ok(true) => {}
                        Ok(false) => return Answer::WrongRow,
                        Err(e) => return Answer::Error(e),
                    }
                }
                Answer::Right
            }
        }
    }

    /// Does every index find `row`, a row the page reader read, by its own
    /// key? Its rowid may be one SQLite's seek does not reach (a leaf whose
    /// rowids are out of key order sends the binary search the wrong way),
    /// or one another row also holds, so its key comes from the page, not
    /// from SQLite. An index whose key cannot be formed from the stored
    /// values (an expression, a partial index, a value not read) gives no
    /// answer here; the row's ID is probed by [`Prober::probe_id`] too.
    pub fn probe_page_row(&self, row: &PageRow) -> BTreeMap<String, Answer> {
        let mut out = BTreeMap::new();
        let Some(rowid) = row.rowid else {
            return out;
        };
        for index in &self.table.indexes {
            if let Some(key) = page_key(index, row) {
                out.insert(index.name.clone(), self.answer(index, rowid, &key));
            }
        }
        out
    }

    /// The POS lookup by customer ID alone (`id = ?`), through every index
    /// whose first key is the ID column, whatever follows it (an index on
    /// (customer_id, store_id) answers that lookup too): for an ID named by
    /// an index entry whose row is gone, unreadable or holds another key.
    /// Wrong if the lookup errors, finds nothing, or finds a row that does
    /// not hold that ID. A WITHOUT ROWID table's rows have no rowid to
    /// look up: there this is [`Prober::probe_id_keyed`].
    pub fn probe_id(&self, id: &Value) -> BTreeMap<String, Answer> {
        if self.table.without_rowid {
            return self.probe_id_keyed(id, &[]);
        }
        let mut out = BTreeMap::new();
        for index in &self.table.indexes {
            let first = key_positions(index).first().copied();
            let Some(first) = first else { continue };
            if !matches!(index.fields[first].part, IndexPart::Column(c) if c == self.table.id_column)
            {
                continue;
            }
            let key = [id.clone()];
            let ans = match self.lookup(index, &key) {
                Err(e) if is_planner_error(&e) => Answer::NotProbed(e),
                Err(e) => Answer::Error(e),
                Ok(found) if found.is_empty() => Answer::Missing,
                Ok(found) => {
                    let mut a = Answer::Right;
                    for &s in found.iter() {
                        match self.row_holds(index, s, &key) {
                            Ok(true) => {}
                            Ok(false) => {
                                a = Answer::WrongRow;
                                break;
                            }
                            Err(e) => {
                                a = Answer::Error(e);
                                break;
                            }
                        }
                    }
                    a
                }
            };
            out.insert(index.name.clone(), ans);
        }
        out
    }

    /// Other rows holding the same key as `rowid` under a UNIQUE index,
    /// found through that index (for re-registered duplicates). A row the
    /// lookup gives that holds another key is not one: an index whose
    /// leaves are out of key order can send SQLite's seek to another
    /// customer's entry.
    pub fn same_key_rows(&self, index: &Index, rowid: i64) -> Vec<i64> {
        let Ok(Some(key)) = self.row_key(index, rowid) else {
            return Vec::new();
        };
        if key.iter().any(|v| matches!(v, Value::Null)) {
            return Vec::new();
        }
        self.lookup(index, &key)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&s| s != rowid)
                    .filter(|&s| {
                        self.row_key(index, s)
                            .is_ok_and(|k| k.as_ref() == Some(&key))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The key of `index` for `row` as the page reader read it, where SQLite
/// can form it from stored values alone: None for an expression or the
/// rowid of a row without one, a partial index (whether it covers the row
/// is SQLite's to say), or a value the record does not hold.
fn page_key(index: &Index, row: &PageRow) -> Option<Vec<Value>> {
    if index.partial_where.is_some() {
        return None;
    }
    key_positions(index)
        .into_iter()
        .map(|i| match &index.fields[i].part {
            IndexPart::Column(c) => row.values.get(*c).cloned().flatten(),
            IndexPart::Rowid => row.rowid.map(Value::Integer),
            IndexPart::Expr(_) => None,
        })
        .collect()
}

fn is_planner_error(e: &str) -> bool {
    e.contains("no query solution")
        || e.contains("no such collation")
        || e.contains("no such index")
}

/// A WITHOUT ROWID table's rows are named by their primary key: a row
/// found by a lookup is the same row when its key values are equal.
type PkValues = Vec<Value>;

impl Prober<'_> {
    fn pk_sql(&self) -> String {
        let cols: Vec<String> = self
            .table
            .pk_columns
            .iter()
            .map(|&c| quote_ident(&self.table.columns[c].name))
            .collect();
        cols.join(", ")
    }

    fn all_rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, String> {
        sql_bytes::query_map(
            self.conn,
            sql,
            &sql_bytes::params(&bound(params)),
            whole_row,
        )
        .map_err(|e| e.to_string())
    }

    /// The probe of customer `id` in a WITHOUT ROWID table. Under the
    /// table's name, the POS's own lookup by ID (SQLite's plan: through the
    /// primary key when the ID leads it): wrong when it fails or finds no
    /// row. Under each index's name, for every row holding the ID, the
    /// lookup through that index by the row's own key: wrong when it fails,
    /// misses the row (told by its primary key), or — through an index
    /// whose key holds the ID — finds a row that does not hold that key.
    ///
    /// `rows` are the rows holding the ID as the page reader read them
    /// (none where it read none): where SQLite's read of the row by its
    /// key fails (its seek for the ID steps into a lost page, as for the
    /// row that bounds that page from above on its parent), each index is
    /// asked with their keys. That read is no lookup of the POS's through
    /// the index: its failure is the table's answer, given under the
    /// table's name.
    pub fn probe_id_keyed(&self, id: &Value, rows: &[PageRow]) -> BTreeMap<String, Answer> {
        let mut out = BTreeMap::new();
        let idc = quote_ident(&self.table.columns[self.table.id_column].name);
        let all: Vec<String> = self
            .table
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let pos = format!(
            "SELECT {} FROM {} WHERE {idc} = ?1",
            all.join(", "),
            self.tq
        );
        let pos_answer = match self.all_rows(&pos, std::slice::from_ref(id)) {
            Err(e) => Answer::Error(e),
            Ok(rows) if rows.is_empty() => Answer::Missing,
            Ok(_) => Answer::Right,
        };
        out.insert(self.table.name.clone(), pos_answer);
        for index in &self.table.indexes {
            let a = self.keyed_answer(index, &idc, id, rows);
            if let Some(a) = a {
                out.insert(index.name.clone(), a);
            }
        }
        out
    }

    /// One index's answer for the rows holding `id` (None: no such row in
    /// the index, e.g. outside a partial index's WHERE). The rows' keys are
    /// read by SQLite, or from `page_rows` where that read fails.
    fn keyed_answer(
        &self,
        index: &Index,
        idc: &str,
        id: &Value,
        page_rows: &[PageRow],
    ) -> Option<Answer> {
        let npk = self.table.pk_columns.len();
        let terms = key_terms(self.table, index);
        let filter = partial_filter(index);
        let sql = format!(
            "SELECT {}, {} FROM {} NOT INDEXED WHERE {idc} = ?1{filter}",
            self.pk_sql(),
            terms.join(", "),
            self.tq
        );
        let rows = match self.all_rows(&sql, std::slice::from_ref(id)) {
            Err(e) if is_planner_error(&e) => return Some(Answer::NotProbed(e)),
            Err(e) => match self.page_keys(index, page_rows) {
                Some(r) => r,
                None => return Some(Answer::Error(e)),
            },
            Ok(r) if r.is_empty() => return None,
            Ok(r) => r,
        };
        for row in rows {
            let (pk, key) = row.split_at(npk.min(row.len()));
            let a = self.keyed_lookup(index, &terms, pk, key);
            if a != Answer::Right {
                return Some(a);
            }
        }
        Some(Answer::Right)
    }

    /// Each of `rows`' primary key followed by its key in `index`, as
    /// `keyed_answer` reads them from SQLite; None when there is no row or
    /// one of them cannot give both.
    fn page_keys(&self, index: &Index, rows: &[PageRow]) -> Option<Vec<Vec<Value>>> {
        if rows.is_empty() {
            return None;
        }
        rows.iter()
            .map(|r| {
                let mut v: Vec<Value> = self
                    .table
                    .pk_columns
                    .iter()
                    .map(|&c| r.values.get(c).cloned().flatten())
                    .collect::<Option<_>>()?;
                v.extend(page_key(index, r)?);
                Some(v)
            })
            .collect()
    }

    /// Looks `key` up through `index` and judges the rows found against the
    /// row whose primary key is `pk`.
    fn keyed_lookup(&self, index: &Index, terms: &[String], pk: &[Value], key: &[Value]) -> Answer {
        let conds: Vec<String> = terms
            .iter()
            .enumerate()
            .map(|(n, t)| {
                let op = if matches!(key.get(n), Some(Value::Null)) {
                    "IS"
                } else {
                    "="
                };
                format!("{t} {op} ?{}", n + 1)
            })
            .collect();
        let filter = partial_filter(index);
        let head = format!("SELECT {} FROM {} INDEXED BY ", self.pk_sql(), self.tq);
        let tail = format!(" WHERE {}{filter}", conds.join(" AND "));
        let found: Vec<PkValues> = match self.rows_through(index, &head, &tail, key) {
            Err(e) if is_planner_error(&e) => return Answer::NotProbed(e),
            Err(e) => return Answer::Error(e),
            Ok(f) => f,
        };
        if !found.iter().any(|f| f.as_slice() == pk) {
            return Answer::Missing;
        }
        if !self.key_holds_id(index) {
            return Answer::Right;
        }
        // every row found must hold the key, read whole as the POS reads it
        let all: Vec<String> = self
            .table
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let mut conds: Vec<String> = self
            .table
            .pk_columns
            .iter()
            .enumerate()
            .map(|(n, &c)| format!("{} IS ?{}", quote_ident(&self.table.columns[c].name), n + 1))
            .collect();
        let npk = pk.len();
        conds.extend(
            terms
                .iter()
                .enumerate()
                .map(|(n, t)| format!("{t} IS ?{}", npk + n + 1)),
        );
        let sql = format!(
            "SELECT {} FROM {} NOT INDEXED WHERE {}",
            all.join(", "),
            self.tq,
            conds.join(" AND ")
        );
        for f in &found {
            let mut params = f.clone();
            params.extend(key.iter().cloned());
            match self.one(&sql, &params) {
                Ok(Some(_)) => {}
                Ok(None) => return Answer::WrongRow,
                Err(e) => return Answer::Error(e),
            }
        }
        Answer::Right
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{customer_table, read_schema};

    /// The lookup cache: a lookup of many rows (a shared status) is
    /// remembered and answered again without SQLite, a lookup of a few rows
    /// is not, and the bound is the 32 MiB of rowids its comment promises.
    /// Truth: the rows this test inserted, counted by SQLite.
    #[test]
    fn only_lookups_of_many_rows_are_remembered() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE customers(customer_id TEXT PRIMARY KEY, status TEXT NOT NULL);
             CREATE INDEX idx_customers_status ON customers(status);",
        )
        .unwrap();
        for i in 0..103 {
            let status = if i % 40 == 7 { "closed" } else { "active" };
            conn.execute(
                "INSERT INTO customers VALUES (?1, ?2)",
                rusqlite::params![format!("C{i:04}"), status],
            )
            .unwrap();
        }
        let count = |s: &str| -> usize {
            conn.query_row(
                "SELECT count(*) FROM customers NOT INDEXED WHERE status = ?1",
                [s],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as usize
        };
        assert_eq!((count("active"), count("closed")), (100, 3));
        let objects = read_schema(&conn).unwrap();
        let table = customer_table(&conn, &objects, "customers", "customer_id")
            .unwrap()
            .unwrap()
            .unwrap();
        let status = table
            .indexes
            .iter()
            .find(|i| i.name == "idx_customers_status")
            .unwrap();
        let p = Prober::new(&conn, &table);

        let closed = p.lookup(status, &[Value::Text("closed".into())]).unwrap();
        assert_eq!(closed.len(), 3);
        assert!(p.cache.borrow().is_empty(), "3 rows are not remembered");
        assert_eq!(p.cached_rowids.get(), 0);

        let active = p.lookup(status, &[Value::Text("active".into())]).unwrap();
        assert_eq!(active.len(), 100);
        assert_eq!(p.cache.borrow().len(), 1, "100 rows are remembered");
        assert_eq!(p.cached_rowids.get(), 100);
        let again = p.lookup(status, &[Value::Text("active".into())]).unwrap();
        assert!(Rc::ptr_eq(&active, &again), "answered from the cache");
        assert_eq!(p.cached_rowids.get(), 100);

        assert_eq!(CACHE_MAX_ROWIDS * std::mem::size_of::<i64>(), 32 << 20);
    }

    /// A database made by `sql` in `dir`, then every `NOCASE` in its index
    /// definitions renamed `POSNAME`: a collation the POS registers in its
    /// own code, which SQLite (and custodian) does not know.
    fn with_pos_collation(dir: &std::path::Path, sql: &str) -> Connection {
        let path = dir.join("pos.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(sql).unwrap();
        conn.execute_batch(
            "PRAGMA writable_schema = ON;
             UPDATE sqlite_schema SET sql = replace(sql, 'NOCASE', 'POSNAME') WHERE type = 'index';",
        )
        .unwrap();
        drop(conn);
        Connection::open(&path).unwrap()
    }

    /// The customer table of `conn` as custodian reads it, but for the
    /// WHERE clause of partial index `index`, left unread (as when
    /// custodian reads a definition otherwise than SQLite does).
    fn with_where_unread(conn: &Connection, index: &str) -> CustomerTable {
        let objects = read_schema(conn).unwrap();
        let mut table = customer_table(conn, &objects, "customers", "customer_id")
            .unwrap()
            .unwrap()
            .unwrap();
        let partial = table.indexes.iter_mut().find(|i| i.name == index).unwrap();
        assert!(partial.partial_where.is_some());
        partial.partial_where = None;
        table
    }

    /// SQLite's own refusal to prepare `sql` on `conn`.
    fn refusal(conn: &Connection, sql: &str) -> String {
        conn.prepare(sql).err().unwrap().to_string()
    }

    /// Each answer in `answers` is NotProbed with SQLite's reason `why`.
    fn not_probed(answers: &BTreeMap<String, Answer>, want: &[(&str, &str)]) {
        let names: Vec<&str> = answers
            .iter()
            .filter(|(_, a)| **a != Answer::Right)
            .map(|(n, _)| n.as_str())
            .collect();
        let want_names: Vec<&str> = want.iter().map(|w| w.0).collect();
        assert_eq!(names, want_names, "{answers:?}");
        for (name, why) in want {
            match &answers[*name] {
                Answer::NotProbed(e) => assert!(e.contains(why), "{name}: {e}"),
                a => panic!("{name}: {a:?}"),
            }
        }
    }

    /// A lookup SQLite cannot form is not probed, never a wrong answer, by
    /// row and by ID: through a partial index whose WHERE clause was not
    /// read (as when custodian reads an index definition otherwise than
    /// SQLite does: SQLite cannot plan the lookup), and through a partial
    /// index whose WHERE clause names a collation SQLite does not know (it
    /// cannot even read the row's key). Truth: SQLite's own refusals.
    #[test]
    fn a_lookup_sqlite_cannot_form_is_not_probed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = with_pos_collation(
            dir.path(),
            "CREATE TABLE customers(customer_id TEXT NOT NULL, status TEXT NOT NULL,
               name TEXT NOT NULL);
             CREATE INDEX idx_active_id ON customers(customer_id) WHERE status = 'active';
             CREATE INDEX idx_ann_status ON customers(status) WHERE name COLLATE NOCASE = 'ann';
             INSERT INTO customers(rowid, customer_id, status, name)
               VALUES (1, 'C0001', 'active', 'Ann');",
        );
        assert!(
            refusal(
                &conn,
                "SELECT rowid FROM customers INDEXED BY idx_active_id WHERE customer_id = ?1"
            )
            .contains("no query solution")
        );
        assert!(
            refusal(
                &conn,
                "SELECT status FROM customers NOT INDEXED \
                 WHERE rowid = 1 AND (name COLLATE POSNAME = 'ann')"
            )
            .contains("no such collation sequence: POSNAME")
        );
        let table = with_where_unread(&conn, "idx_active_id");
        let p = Prober::new(&conn, &table);
        not_probed(
            &p.probe_row(1).unwrap(),
            &[
                ("idx_active_id", "no query solution"),
                ("idx_ann_status", "no such collation sequence: POSNAME"),
            ],
        );
        not_probed(
            &p.probe_id(&Value::Text("C0001".into())),
            &[("idx_active_id", "no query solution")],
        );
    }

    /// The same for a WITHOUT ROWID table, by ID, where the POS's own
    /// lookup by ID is right: the partial index whose WHERE clause was not
    /// read, an index with the unknown collation on its key (SQLite cannot
    /// look the key up) and one with it in its WHERE clause (SQLite cannot
    /// read the row's key); a partial index that does not cover the row
    /// gives no answer. Truth: SQLite's own refusals.
    #[test]
    fn a_keyed_lookup_sqlite_cannot_form_is_not_probed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = with_pos_collation(
            dir.path(),
            "CREATE TABLE customers(customer_id TEXT PRIMARY KEY, status TEXT NOT NULL,
               name TEXT NOT NULL) WITHOUT ROWID;
             CREATE INDEX idx_active ON customers(status) WHERE status = 'active';
             CREATE INDEX idx_name_pos ON customers(name COLLATE NOCASE);
             CREATE INDEX idx_ann_status ON customers(status) WHERE name COLLATE NOCASE = 'ann';
             CREATE INDEX idx_closed ON customers(name) WHERE status = 'closed';
             INSERT INTO customers VALUES ('C0001', 'active', 'Ann');",
        );
        assert!(
            refusal(
                &conn,
                "SELECT 1 FROM customers INDEXED BY idx_active WHERE status = ?1"
            )
            .contains("no query solution")
        );
        for sql in [
            "SELECT 1 FROM customers INDEXED BY idx_name_pos WHERE name COLLATE POSNAME = ?1",
            "SELECT status FROM customers NOT INDEXED \
             WHERE customer_id = 'C0001' AND (name COLLATE POSNAME = 'ann')",
        ] {
            assert!(refusal(&conn, sql).contains("no such collation sequence: POSNAME"));
        }
        let table = with_where_unread(&conn, "idx_active");
        let p = Prober::new(&conn, &table);
        let answers = p.probe_id_keyed(&Value::Text("C0001".into()), &[]);
        // idx_closed does not cover the row: no answer under its name
        let names: Vec<&str> = answers.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["customers", "idx_active", "idx_ann_status", "idx_name_pos"]
        );
        assert_eq!(answers["customers"], Answer::Right);
        not_probed(
            &answers,
            &[
                ("idx_active", "no query solution"),
                ("idx_ann_status", "no such collation sequence: POSNAME"),
                ("idx_name_pos", "no such collation sequence: POSNAME"),
            ],
        );
    }
}
