//! The lookup probe: do the POS's own lookup through an index, with SQLite,
//! and compare what comes back with the table. This is what confirms that a
//! customer is rejected; nothing is inferred from error text.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

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

    fn lookup_uncached(&self, index: &Index, key: &[Value]) -> Result<Vec<i64>, String> {
        let keys = key_positions(index);
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
        let sql = format!(
            "SELECT rowid FROM {} INDEXED BY {} WHERE {}{filter}",
            self.tq,
            quote_ident(&index.name),
            conds.join(" AND ")
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params_from_iter(key.iter()), |r| r.get::<_, i64>(0))
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<i64>, _>>()
            .map_err(|e| e.to_string())
    }

    /// Whether row `rowid` exists and holds `key` in `index`'s terms.
    /// The whole row is read, as the POS reads the customer's record after
    /// the lookup: a row whose overflow pages are damaged is an error here.
    fn row_holds(&self, index: &Index, rowid: i64, key: &[Value]) -> Result<bool, String> {
        let keys = key_positions(index);
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

    fn one(&self, sql: &str, params: &[Value]) -> Result<Option<Vec<Value>>, String> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| e.to_string())?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(params_from_iter(params.iter()))
            .map_err(|e| e.to_string())?;
        match rows.next().map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(r) => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(r.get::<_, Value>(i).map_err(|e| e.to_string())?);
                }
                Ok(Some(v))
            }
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

    /// The POS lookup by customer ID alone, through every index whose first
    /// key is the ID column: for an ID named by an index entry whose row is
    /// gone, unreadable or holds another key. Wrong if the lookup errors,
    /// finds nothing, or finds a row that does not hold that ID.
    pub fn probe_id(&self, id: &Value) -> BTreeMap<String, Answer> {
        let mut out = BTreeMap::new();
        for index in &self.table.indexes {
            let first = key_positions(index).first().copied();
            let Some(first) = first else { continue };
            if !matches!(index.fields[first].part, IndexPart::Column(c) if c == self.table.id_column)
            {
                continue;
            }
            if key_positions(index).len() != 1 {
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
    /// found through that index (for re-registered duplicates).
    pub fn same_key_rows(&self, index: &Index, rowid: i64) -> Vec<i64> {
        let Ok(Some(key)) = self.row_key(index, rowid) else {
            return Vec::new();
        };
        if key.iter().any(|v| matches!(v, Value::Null)) {
            return Vec::new();
        }
        self.lookup(index, &key)
            .map(|v| v.iter().copied().filter(|&s| s != rowid).collect())
            .unwrap_or_default()
    }
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
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| e.to_string())?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(params_from_iter(params.iter()))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(r.get::<_, Value>(i).map_err(|e| e.to_string())?);
            }
            out.push(v);
        }
        Ok(out)
    }

    /// The probe of customer `id` in a WITHOUT ROWID table. Under the
    /// table's name, the POS's own lookup by ID (SQLite's plan: through the
    /// primary key when the ID leads it): wrong when it fails or finds no
    /// row. Under each index's name, for every row holding the ID, the
    /// lookup through that index by the row's own key: wrong when it fails,
    /// misses the row (told by its primary key), or — through an index
    /// whose key holds the ID — finds a row that does not hold that key.
    pub fn probe_id_keyed(&self, id: &Value) -> BTreeMap<String, Answer> {
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
            let a = self.keyed_answer(index, &idc, id);
            if let Some(a) = a {
                out.insert(index.name.clone(), a);
            }
        }
        out
    }

    /// One index's answer for the rows holding `id` (None: no such row in
    /// the index, e.g. outside a partial index's WHERE).
    fn keyed_answer(&self, index: &Index, idc: &str, id: &Value) -> Option<Answer> {
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
            Err(e) => return Some(Answer::Error(e)),
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
        let sql = format!(
            "SELECT {} FROM {} INDEXED BY {} WHERE {}{filter}",
            self.pk_sql(),
            self.tq,
            quote_ident(&index.name),
            conds.join(" AND ")
        );
        let found: Vec<PkValues> = match self.all_rows(&sql, key) {
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
