//! A table of the new database as the rebuild fills it: its columns as
//! SQLite created them, how the fields of a stored record map onto them,
//! and the shape salvage checks records against. Everything comes from the
//! new database (where the table was just created from its CREATE
//! statement), so nothing here needs SQLite to read the damaged file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::Result;
use rusqlite::Connection;

use crate::format::salvage::{KindSet, TableShape};
use crate::schema::quote_ident;
use crate::sql_bytes;

/// `PRAGMA table_xinfo`'s `hidden`: a VIRTUAL generated column (not stored).
const HIDDEN_VIRTUAL: i64 = 2;
/// `PRAGMA table_xinfo`'s `hidden`: a STORED generated column (stored, not insertable).
const HIDDEN_STORED: i64 = 3;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub decl_type: String,
    pub not_null: bool,
    pub has_default: bool,
    /// The default's expression as written in the CREATE statement.
    pub default: Option<String>,
    pub hidden: i64,
    /// Position in the primary key (1-based), 0 when not part of it.
    pub pk: i64,
}

#[derive(Debug, Clone)]
pub struct TargetTable {
    /// The name SQLite created the table under.
    pub name: String,
    /// Its root page in the damaged file (0 when it has none there).
    pub source_root: u32,
    pub without_rowid: bool,
    pub columns: Vec<Column>,
    /// For each field of a stored record, the column it holds (an index
    /// into `columns`). Rowid tables store every column but VIRTUAL
    /// generated ones, in table order; WITHOUT ROWID tables the primary
    /// key columns first.
    pub fields: Vec<usize>,
    /// The INTEGER PRIMARY KEY column: stored as NULL, its value is the rowid.
    pub rowid_alias: Option<usize>,
    /// The name the rowid goes by in an INSERT (`rowid`, `_rowid_` or `oid`:
    /// the first that is no column's name).
    pub rowid_name: String,
    /// The INSERT statements `rows::insert` has built, by shape.
    pub insert_sql: RefCell<HashMap<InsertShape, Rc<str>>>,
}

/// What an INSERT of a row gives: into the bulk load's twin or the table
/// itself, the rowid or not, and how many of the record's fields (which
/// fields those are follows from the table).
pub type InsertShape = (bool, bool, usize);

impl TargetTable {
    /// Reads the table `name` back from the new database `conn`.
    pub fn read(conn: &Connection, name: &str, sql: &str, source_root: u32) -> Result<TargetTable> {
        let q = quote_ident(name);
        let columns: Vec<Column> =
            sql_bytes::query_map(conn, &format!("PRAGMA table_xinfo({q})"), &[], |r| {
                let default = r.text(4)?;
                Ok(Column {
                    name: r.text(1)?.unwrap_or_default(),
                    decl_type: r.text(2)?.unwrap_or_default(),
                    not_null: r.get::<i64>(3)? != 0,
                    has_default: default.is_some(),
                    default,
                    pk: r.get(5)?,
                    hidden: r.get(6)?,
                })
            })?;
        let without_rowid = crate::schema::is_without_rowid(sql);
        let fields: Vec<usize> = if without_rowid {
            // the primary key's own index lists every column in record order
            sql_bytes::query_map(conn, &format!("PRAGMA index_xinfo({q})"), &[], |r| {
                r.get::<i64>(1)
            })?
            .into_iter()
            .filter_map(|cid| usize::try_from(cid).ok())
            .filter(|&c| c < columns.len() && columns[c].hidden != HIDDEN_VIRTUAL)
            .collect()
        } else {
            (0..columns.len())
                .filter(|&i| columns[i].hidden != HIDDEN_VIRTUAL)
                .collect()
        };
        let pk: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].pk > 0).collect();
        let rowid_alias = match pk.as_slice() {
            [one]
                if !without_rowid
                    && columns[*one].decl_type.eq_ignore_ascii_case("INTEGER")
                    && !crate::schema::pk_desc_quirk(sql) =>
            {
                Some(*one)
            }
            _ => None,
        };
        let rowid_name = ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|n| !columns.iter().any(|c| c.name.eq_ignore_ascii_case(n)))
            .unwrap_or("rowid")
            .to_string();
        Ok(TargetTable {
            name: name.to_string(),
            source_root,
            without_rowid,
            columns,
            fields,
            rowid_alias,
            rowid_name,
            insert_sql: RefCell::default(),
        })
    }

    /// What a stored record of this table must look like.
    pub fn shape(&self) -> TableShape {
        let cols: Vec<&Column> = self.fields.iter().map(|&c| &self.columns[c]).collect();
        // ALTER TABLE ADD COLUMN cannot add a NOT NULL column without a
        // default: every record has the columns up to the last such one
        let min_columns = cols
            .iter()
            .rposition(|c| c.not_null && !c.has_default)
            .map_or(1, |i| i + 1);
        TableShape {
            columns: cols.len(),
            min_columns,
            rowid_alias: self
                .rowid_alias
                .and_then(|a| self.fields.iter().position(|&f| f == a)),
            kinds: cols
                .iter()
                .map(|c| KindSet::for_declared_type(&c.decl_type, c.not_null))
                .collect(),
        }
    }

    /// Whether record field `i` is given in an INSERT (a STORED generated
    /// column is computed by SQLite; the rowid alias goes in as the rowid).
    pub fn field_inserted(&self, i: usize) -> bool {
        self.fields.get(i).is_some_and(|&c| {
            self.columns[c].hidden != HIDDEN_STORED && Some(c) != self.rowid_alias
        })
    }

    /// The record field holding the column named `name` (any case).
    pub fn field_of(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|&c| self.columns[c].name.eq_ignore_ascii_case(name))
    }

    /// The columns stored in a record, in record order, quoted.
    pub fn stored_names(&self) -> Vec<String> {
        self.fields
            .iter()
            .map(|&c| quote_ident(&self.columns[c].name))
            .collect()
    }
}
