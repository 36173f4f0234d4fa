//! The rules SQLite's quick_check holds every row of an ordinary table to
//! (pragma.c, "Verify datatypes for all columns"), applied to the page
//! reader's records:
//!
//! 1. a NOT NULL column holds no NULL (a NaN REAL reads as NULL);
//! 2. a STRICT table's column holds its declared type (REAL also takes
//!    integers; ANY takes anything);
//! 3. in other tables a TEXT-affinity column holds no INTEGER or REAL;
//! 4. in other tables a numeric-affinity column holds no text that reads as
//!    a number (SQLite would have stored it as the number).
//!
//! The INTEGER PRIMARY KEY column is skipped (the rowid holds it), as are
//! VIRTUAL generated columns (only SQLite can compute them). A column beyond
//! a short record (written before ALTER TABLE ADD COLUMN) takes its DEFAULT,
//! which SQLite made fit the column when it was added. CHECK constraints are
//! SQL expressions: SQLite evaluates them (`sqlite_only.rs`).

use std::collections::BTreeMap;

use super::finding::{Code, Finding};
use crate::format::header::TextEncoding;
use crate::format::record::{Record, ValueRef};
use crate::schema::{Affinity, TableInfo, affinity};

/// What a value's type may be, as SQLite's `OP_IsType` masks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeRule {
    /// No type check.
    Any,
    /// A STRICT column: the storage classes allowed, and the type's name.
    Strict { mask: u8, name: &'static str },
    /// TEXT affinity in an ordinary table: NULL, TEXT or BLOB.
    Text,
    /// INTEGER, REAL or NUMERIC affinity in an ordinary table: no text that
    /// reads as a number.
    Numeric,
}

const NULL: u8 = 0x10;
const INT: u8 = 0x01;
const FLOAT: u8 = 0x02;
const TEXT: u8 = 0x04;
const BLOB: u8 = 0x08;

/// The rules of one column.
#[derive(Debug, Clone)]
struct ColumnRule {
    name: String,
    pos: usize,
    not_null: bool,
    types: TypeRule,
    has_default: bool,
}

/// What is wrong with one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// NULL in a NOT NULL column.
    Null,
    /// A STRICT column holding another type (the declared type's name).
    NotStrictType(&'static str),
    /// A number in a TEXT-affinity column.
    Numeric,
    /// Text that reads as a number in a numeric-affinity column.
    Text,
}

/// The row rules of one table; `None` from [`RowRules::new`] when the table
/// has nothing to check.
#[derive(Debug, Clone)]
pub struct RowRules {
    table: String,
    columns: Vec<ColumnRule>,
}

fn strict_rule(decl_type: &str) -> TypeRule {
    let (mask, name) = match decl_type.trim().to_ascii_uppercase().as_str() {
        "INT" => (NULL | INT, "INT"),
        "INTEGER" => (NULL | INT, "INTEGER"),
        "REAL" => (NULL | INT | FLOAT, "REAL"),
        "TEXT" => (NULL | TEXT, "TEXT"),
        "BLOB" => (NULL | BLOB, "BLOB"),
        _ => return TypeRule::Any,
    };
    TypeRule::Strict { mask, name }
}

impl RowRules {
    pub fn new(info: &TableInfo) -> Option<RowRules> {
        let columns: Vec<ColumnRule> = info
            .columns
            .iter()
            .filter(|c| !c.rowid_alias)
            .filter_map(|c| {
                let pos = c.record_pos?;
                let types = if info.strict {
                    strict_rule(&c.decl_type)
                } else {
                    match affinity(&c.decl_type) {
                        Affinity::Blob => TypeRule::Any,
                        Affinity::Text => TypeRule::Text,
                        Affinity::Numeric | Affinity::Integer | Affinity::Real => TypeRule::Numeric,
                    }
                };
                (c.not_null || types != TypeRule::Any).then(|| ColumnRule {
                    name: c.name.clone(),
                    pos,
                    not_null: c.not_null,
                    types,
                    has_default: c.has_default,
                })
            })
            .collect();
        (!columns.is_empty()).then(|| RowRules {
            table: info.name.clone(),
            columns,
        })
    }

    /// Calls `found(column index, violation)` for each rule the parsed
    /// record breaks.
    pub fn check(
        &self,
        rec: &Record,
        payload: &[u8],
        enc: TextEncoding,
        found: &mut dyn FnMut(usize, Violation),
    ) {
        for (i, c) in self.columns.iter().enumerate() {
            let v = match rec.get(payload, c.pos) {
                Some(v) => v,
                // past a short record: the DEFAULT, else NULL
                None if c.has_default => continue,
                None => ValueRef::Null,
            };
            let is_null = match v {
                ValueRef::Null => true,
                ValueRef::Real(f) => f.is_nan(),
                _ => false,
            };
            if c.not_null && is_null {
                found(i, Violation::Null);
                continue;
            }
            let class = match v {
                ValueRef::Null => NULL,
                ValueRef::Integer(_) => INT,
                ValueRef::Real(_) => FLOAT,
                ValueRef::Text(_) => TEXT,
                ValueRef::Blob(_) => BLOB,
            };
            match c.types {
                TypeRule::Any => {}
                TypeRule::Strict { mask, name } => {
                    if class & mask == 0 {
                        found(i, Violation::NotStrictType(name));
                    }
                }
                TypeRule::Text => {
                    if class & (INT | FLOAT) != 0 {
                        found(i, Violation::Numeric);
                    }
                }
                TypeRule::Numeric => {
                    if let ValueRef::Text(t) = v
                        && reads_as_number(&crate::check::canon::decode_text(t, enc))
                    {
                        found(i, Violation::Text);
                    }
                }
            }
        }
    }
}

/// Whether SQLite's numeric affinity would turn this text into a number
/// (util.c `sqlite3AtoF` accepts it whole): optional surrounding whitespace,
/// a sign, digits with at most one decimal point and at least one digit,
/// and an optional exponent with digits. The text ends at a NUL, as the C
/// string SQLite parses does.
pub fn reads_as_number(text: &str) -> bool {
    let text = text.split('\0').next().unwrap_or("");
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return false;
        }
        i = j + exp_digits;
    }
    b[i..].iter().all(|&c| is_space(c))
}

/// Violations of one table, counted per (column, violation), with the first
/// few rows as examples.
#[derive(Debug, Default)]
pub struct Tally {
    counts: BTreeMap<(usize, Violation), (u64, Vec<String>)>,
}

/// Rows named in a finding's message (the count is always exact).
const EXAMPLES: usize = 5;

impl Tally {
    /// Counts one violation; `row` names the row (a rowid, or a key).
    pub fn add(&mut self, column: usize, v: Violation, row: impl FnOnce() -> String) {
        let e = self.counts.entry((column, v)).or_default();
        e.0 += 1;
        if e.1.len() < EXAMPLES {
            e.1.push(row());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// One `column_constraint` finding per (column, violation).
    pub fn findings(&self, rules: &RowRules) -> Vec<Finding> {
        self.counts
            .iter()
            .map(|(&(col, v), (n, examples))| {
                let c = &rules.columns[col].name;
                let t = &rules.table;
                let what = match v {
                    Violation::Null => format!("NULL in the NOT NULL column {t}.{c}"),
                    Violation::NotStrictType(name) => {
                        format!("a non-{name} value in the STRICT column {t}.{c}")
                    }
                    Violation::Numeric => format!("a number in the TEXT column {t}.{c}"),
                    Violation::Text => {
                        format!("text that reads as a number in the numeric column {t}.{c}")
                    }
                };
                let more = if *n as usize > examples.len() {
                    ", …"
                } else {
                    ""
                };
                Finding::error(
                    Code::ColumnConstraint,
                    format!("{n} rows hold {what} (rows {}{more})", examples.join(", ")),
                )
                .object(t)
                .table(t)
                .count(*n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::StoredColumn;

    #[test]
    fn numbers_as_sqlite_reads_them() {
        for t in [
            "0", "12", "-5", "+7", " 42 ", "\t3\n", "1.5", ".5", "5.", "-.5", "+.5", "1e5", "1E-3",
            "2.5e+10", "12\0abc",
        ] {
            assert!(reads_as_number(t), "{t:?}");
        }
        for t in [
            "", " ", "-", "+", ".", "abc", "12abc", "1e", "1e+", "0x10", "1.2.3", "1 2", "inf",
            "NaN", "\u{0}12",
        ] {
            assert!(!reads_as_number(t), "{t:?}");
        }
    }

    fn col(name: &str, decl: &str, not_null: bool, pos: usize) -> StoredColumn {
        StoredColumn {
            name: name.into(),
            decl_type: decl.into(),
            not_null,
            has_default: false,
            record_pos: Some(pos),
            rowid_alias: false,
        }
    }

    fn violations(info: &TableInfo, payload: &[u8]) -> Vec<(usize, Violation)> {
        let rules = RowRules::new(info).unwrap();
        let mut rec = Record::default();
        rec.parse(payload).unwrap();
        let mut out = Vec::new();
        rules.check(&rec, payload, TextEncoding::Utf8, &mut |c, v| {
            out.push((c, v))
        });
        out
    }

    #[test]
    fn ordinary_table_rules() {
        let info = TableInfo {
            name: "t".into(),
            strict: false,
            without_rowid: false,
            columns: vec![
                col("a", "TEXT", true, 0),
                col("b", "INTEGER", false, 1),
                col("c", "TEXT", false, 2),
                col("d", "", true, 3),
            ],
        };
        // a NULL, b = '12' (text that reads as a number), c = 5, d = 'x'
        let payload = [5u8, 0, 17, 1, 15, b'1', b'2', 5, b'x'];
        assert_eq!(
            violations(&info, &payload),
            vec![
                (0, Violation::Null),
                (1, Violation::Text),
                (2, Violation::Numeric)
            ]
        );
        // a short record: d (NOT NULL, no default) reads as NULL
        let short = [2u8, 15, b'y'];
        assert_eq!(violations(&info, &short), vec![(3, Violation::Null)]);
    }

    #[test]
    fn strict_table_rules() {
        let info = TableInfo {
            name: "s".into(),
            strict: true,
            without_rowid: false,
            columns: vec![
                col("i", "INTEGER", false, 0),
                col("r", "REAL", false, 1),
                col("x", "ANY", false, 2),
            ],
        };
        // i = 'q' (text), r = 3 (an integer: fine for REAL), x = 'z'
        let payload = [4u8, 15, 1, 15, b'q', 3, b'z'];
        assert_eq!(
            violations(&info, &payload),
            vec![(0, Violation::NotStrictType("INTEGER"))]
        );
    }
}
