//! `sqlite_schema` read page by page, for a file whose schema SQLite cannot
//! read (a damaged header, a malformed entry, a damaged schema page).
//!
//! Spec: https://www.sqlite.org/fileformat2.html, "Storage Of The SQL
//! Database Schema": page 1 is the root of a table b-tree whose rows are
//! `(type, name, tbl_name, rootpage, sql)`. The rows are salvaged like any
//! table's (every row that survives anywhere, see [`super::salvage`]), and a
//! row is kept only when it reads as a schema entry: a type of `table`,
//! `index`, `view` or `trigger`, text names, an integer root page and SQL
//! text that starts with `CREATE` (or no SQL, for an automatic index). Rows
//! of other tables that an orphan scan might offer do not pass.
//!
//! The text encoding comes with the answer: the records are decoded in each
//! of the three encodings and the one under which the most rows read as
//! schema entries wins (the header's wins ties), so a damaged encoding
//! field does not garble every name.

use super::btree::{PageSet, PageSource};
use super::header::TextEncoding;
use super::record::{Record, ValueRef, decode_text};
use super::salvage::{KindSet, SalvageItem, TableShape, salvage_table_keeping_repeats};

/// One entry of the schema as found on the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRow {
    /// `table`, `index`, `view` or `trigger`.
    pub kind: String,
    pub name: String,
    pub tbl_name: String,
    /// 0 for views, triggers and virtual tables.
    pub rootpage: i64,
    pub sql: Option<String>,
    /// The row's rowid in sqlite_schema (the order objects were created in).
    pub rowid: i64,
}

/// What [`read`] found.
#[derive(Debug, Clone, Default)]
pub struct SchemaPages {
    /// The entries, in rowid order.
    pub rows: Vec<SchemaRow>,
    /// The encoding the text was read in.
    pub encoding: Option<TextEncoding>,
    /// Rows of the schema b-tree that do not read as schema entries, or
    /// whose record is damaged.
    pub rows_refused: u64,
}

/// The shape of a sqlite_schema record.
fn schema_shape() -> TableShape {
    let text = KindSet::TEXT.union(KindSet::BLOB);
    TableShape {
        columns: 5,
        min_columns: 5,
        rowid_alias: None,
        kinds: vec![
            text,
            text,
            text,
            KindSet::INTEGER.union(KindSet::NULL),
            text.union(KindSet::NULL),
        ],
    }
}

const KINDS: [&str; 4] = ["table", "index", "view", "trigger"];

/// A schema row from a record, when it reads as one in `enc`.
fn entry(rec: &Record, payload: &[u8], rowid: i64, enc: TextEncoding) -> Option<SchemaRow> {
    // SQLite reads a BLOB stored in a text column as text
    let text = |i: usize| match rec.get(payload, i)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(decode_text(t, enc).into_owned()),
        _ => None,
    };
    let kind = text(0)?;
    if !KINDS.contains(&kind.as_str()) {
        return None;
    }
    let name = text(1)?;
    let tbl_name = text(2)?;
    let rootpage = match rec.get(payload, 3)? {
        ValueRef::Integer(i) => i,
        ValueRef::Null => 0,
        _ => return None,
    };
    let sql = match rec.get(payload, 4)? {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let s = decode_text(t, enc).into_owned();
            if !s.trim_start().get(..6)?.eq_ignore_ascii_case("create") {
                return None;
            }
            Some(s)
        }
        _ => return None,
    };
    if name.is_empty() || (sql.is_none() && kind != "index") {
        return None;
    }
    Some(SchemaRow {
        kind,
        name,
        tbl_name,
        rootpage,
        sql,
        rowid,
    })
}

/// The schema entries on the pages of `src` (root page 1), with the
/// encoding they read best in; `header` is the encoding the header names,
/// if it names one.
pub fn read(src: &dyn PageSource, header: Option<TextEncoding>) -> SchemaPages {
    let mut payloads: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut refused = 0u64;
    salvage_table_keeping_repeats(
        src,
        1,
        &schema_shape(),
        &PageSet::new(),
        &mut |item| match item {
            // (keeping repeats, every whole cell comes as a `Row`)
            SalvageItem::Row { rowid, payload, .. }
            | SalvageItem::RowRepeated { rowid, payload, .. } => {
                payloads.push((rowid, payload.to_vec()))
            }
            SalvageItem::RowDamaged { .. } => refused += 1,
            // (a cell out of key order whose record does not decode was
            // never counted here)
            SalvageItem::Damage(_) | SalvageItem::CellSetAside { .. } => {}
        },
    );
    let mut candidates = vec![];
    candidates.extend(header);
    for e in [
        TextEncoding::Utf8,
        TextEncoding::Utf16le,
        TextEncoding::Utf16be,
    ] {
        if !candidates.contains(&e) {
            candidates.push(e);
        }
    }
    let mut best: Option<(TextEncoding, Vec<SchemaRow>)> = None;
    let mut rec = Record::default();
    for enc in candidates {
        let rows: Vec<SchemaRow> = payloads
            .iter()
            .filter_map(|(rowid, p)| {
                rec.parse(p).ok()?;
                entry(&rec, p, *rowid, enc)
            })
            .collect();
        if rows.len() > best.as_ref().map_or(0, |b| b.1.len()) {
            best = Some((enc, rows));
        }
    }
    let (encoding, mut rows) = match best {
        Some((e, r)) => (Some(e), r),
        None => (None, Vec::new()),
    };
    rows.sort_by_key(|r| r.rowid);
    SchemaPages {
        rows_refused: refused + (payloads.len() - rows.len()) as u64,
        rows,
        encoding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::btree::MemoryPages;
    use crate::format::btree::test_image::{image, leaf_cell, put_page};
    use crate::format::varint::write_varint;

    /// A schema record; texts encoded by `enc`.
    fn schema_record(fields: [&str; 3], root: u8, sql: &str, enc: TextEncoding) -> Vec<u8> {
        let encode = |s: &str| -> Vec<u8> {
            match enc {
                TextEncoding::Utf8 => s.as_bytes().to_vec(),
                TextEncoding::Utf16le => s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
                TextEncoding::Utf16be => s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(),
            }
        };
        let mut texts: Vec<Vec<u8>> = fields.iter().map(|f| encode(f)).collect();
        let sql = encode(sql);
        let mut types = Vec::new();
        for t in &texts {
            write_varint(13 + 2 * t.len() as u64, &mut types);
        }
        types.push(1);
        write_varint(13 + 2 * sql.len() as u64, &mut types);
        let mut r = vec![1 + types.len() as u8];
        r.extend_from_slice(&types);
        for t in texts.iter_mut() {
            r.append(t);
        }
        r.push(root);
        r.extend_from_slice(&sql);
        r
    }

    fn image_with(enc: TextEncoding) -> Vec<u8> {
        let mut img = image(3);
        let cells = vec![
            leaf_cell(
                1,
                &schema_record(["table", "t", "t"], 2, "CREATE TABLE t(a)", enc),
            ),
            leaf_cell(
                2,
                &schema_record(["index", "i", "t"], 3, "CREATE INDEX i ON t(a)", enc),
            ),
        ];
        put_page(&mut img, 1, 13, &cells, None);
        img
    }

    #[test]
    fn entries_are_read_from_page_1() {
        let img = image_with(TextEncoding::Utf8);
        let src = MemoryPages::new(img).unwrap();
        let s = read(&src, Some(TextEncoding::Utf8));
        assert_eq!(s.encoding, Some(TextEncoding::Utf8));
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].name, "t");
        assert_eq!(s.rows[0].rootpage, 2);
        assert_eq!(s.rows[1].sql.as_deref(), Some("CREATE INDEX i ON t(a)"));
        assert_eq!(s.rows_refused, 0);
    }

    #[test]
    fn the_encoding_is_told_from_the_records() {
        let img = image_with(TextEncoding::Utf16be);
        let src = MemoryPages::new(img).unwrap();
        // the header says UTF-8; the records say otherwise
        let s = read(&src, Some(TextEncoding::Utf8));
        assert_eq!(s.encoding, Some(TextEncoding::Utf16be));
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].sql.as_deref(), Some("CREATE TABLE t(a)"));
    }

    #[test]
    fn rows_that_are_no_schema_entry_are_refused() {
        let mut img = image(2);
        let cells = vec![leaf_cell(
            1,
            &schema_record(
                ["tabel", "t", "t"],
                2,
                "CREATE TABLE t(a)",
                TextEncoding::Utf8,
            ),
        )];
        put_page(&mut img, 1, 13, &cells, None);
        let src = MemoryPages::new(img).unwrap();
        let s = read(&src, None);
        assert!(s.rows.is_empty());
        assert_eq!(s.rows_refused, 1);
    }
}
