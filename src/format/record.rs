//! The record format (rows and index keys) and SQLite's ordering of values.
//!
//! Spec, section "Record Format": a record is a header followed by a body.
//! The header starts with a varint giving the header's own size in bytes
//! (this varint included), followed by one "serial type" varint per column.
//! The body holds the values, in column order, each sized by its serial type.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::FormatError;
use super::header::TextEncoding;
use super::varint::{read_varint, varint_len, write_varint};

/// Serial type of NULL.
pub const SERIAL_NULL: u64 = 0;
/// Serial type of an 8-bit two's-complement integer.
pub const SERIAL_INT8: u64 = 1;
/// Serial type of a big-endian 16-bit two's-complement integer.
pub const SERIAL_INT16: u64 = 2;
/// Serial type of a big-endian 24-bit two's-complement integer.
pub const SERIAL_INT24: u64 = 3;
/// Serial type of a big-endian 32-bit two's-complement integer.
pub const SERIAL_INT32: u64 = 4;
/// Serial type of a big-endian 48-bit two's-complement integer.
pub const SERIAL_INT48: u64 = 5;
/// Serial type of a big-endian 64-bit two's-complement integer.
pub const SERIAL_INT64: u64 = 6;
/// Serial type of a big-endian IEEE 754 64-bit float.
pub const SERIAL_FLOAT64: u64 = 7;
/// Serial type of the integer 0 (no body bytes; schema format 4).
pub const SERIAL_ZERO: u64 = 8;
/// Serial type of the integer 1 (no body bytes; schema format 4).
pub const SERIAL_ONE: u64 = 9;
/// First of the two serial types reserved for internal use (10 and 11), invalid on disk.
pub const SERIAL_RESERVED_10: u64 = 10;
/// Second of the two serial types reserved for internal use, invalid on disk.
pub const SERIAL_RESERVED_11: u64 = 11;
/// Smallest BLOB serial type: even N >= 12 is a BLOB of (N-12)/2 bytes.
pub const SERIAL_BLOB_MIN: u64 = 12;
/// Smallest TEXT serial type: odd N >= 13 is a TEXT of (N-13)/2 bytes.
pub const SERIAL_TEXT_MIN: u64 = 13;

/// One value of a record, borrowing the payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// Text, as raw bytes in the database's text encoding.
    Text(&'a [u8]),
    /// A BLOB.
    Blob(&'a [u8]),
}

impl ValueRef<'_> {
    /// The text decoded to a Rust string (invalid sequences replaced), or
    /// `None` if this is not a `Text`.
    pub fn text(&self, enc: TextEncoding) -> Option<Cow<'_, str>> {
        match self {
            ValueRef::Text(b) => Some(decode_text(b, enc)),
            _ => None,
        }
    }
}

/// Decodes text stored in `enc`, replacing invalid sequences with U+FFFD.
pub fn decode_text(bytes: &[u8], enc: TextEncoding) -> Cow<'_, str> {
    match enc {
        TextEncoding::Utf8 => String::from_utf8_lossy(bytes),
        TextEncoding::Utf16le | TextEncoding::Utf16be => {
            Cow::Owned(utf16_chars(bytes, enc).collect())
        }
    }
}

/// The characters of UTF-16 text (a trailing odd byte is ignored, as SQLite does).
fn utf16_chars(bytes: &[u8], enc: TextEncoding) -> impl Iterator<Item = char> + '_ {
    let units = bytes.chunks_exact(2).map(move |c| match enc {
        TextEncoding::Utf16be => u16::from_be_bytes([c[0], c[1]]),
        _ => u16::from_le_bytes([c[0], c[1]]),
    });
    char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
}

/// Number of body bytes a value of serial type `t` occupies, or `None` for the
/// reserved types 10 and 11.
pub const fn serial_type_size(t: u64) -> Option<u64> {
    Some(match t {
        SERIAL_NULL | SERIAL_ZERO | SERIAL_ONE => 0,
        SERIAL_INT8 => 1,
        SERIAL_INT16 => 2,
        SERIAL_INT24 => 3,
        SERIAL_INT32 => 4,
        SERIAL_INT48 => 6,
        SERIAL_INT64 | SERIAL_FLOAT64 => 8,
        SERIAL_RESERVED_10 | SERIAL_RESERVED_11 => return None,
        t => (t - SERIAL_BLOB_MIN) / 2,
    })
}

/// Sign-extends a big-endian two's-complement integer of 1..=8 bytes.
#[inline]
fn be_signed(bytes: &[u8]) -> i64 {
    let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &b in bytes {
        v = (v << 8) | i64::from(b);
    }
    v
}

/// Walks a record's header, calling `each(serial type, value bytes)` per
/// column in order; checks everything [`parse_record`] promises. Returns
/// (header size, offset where the last value ends).
fn decode<'a>(
    payload: &'a [u8],
    mut each: impl FnMut(u64, &'a [u8], usize),
) -> Result<(usize, usize), FormatError> {
    let bad = |detail: String| FormatError::BadRecord { detail };
    let (header_len, mut pos) = read_varint(payload).ok_or(FormatError::BadVarint)?;
    if header_len < pos as u64 || header_len > payload.len() as u64 {
        return Err(bad(format!(
            "header size {header_len} does not fit a payload of {} bytes",
            payload.len()
        )));
    }
    let header_end = header_len as usize;
    let mut body = header_end;
    let mut column = 0usize;
    while pos < header_end {
        let (t, n) = read_varint(&payload[pos..header_end]).ok_or_else(|| {
            bad(format!(
                "serial type at offset {pos} runs past the header end {header_end}"
            ))
        })?;
        pos += n;
        let size = serial_type_size(t)
            .ok_or_else(|| bad(format!("column {column} has the reserved serial type {t}")))?;
        let end = (body as u64)
            .checked_add(size)
            .filter(|&e| e <= payload.len() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "column {column} ({size} bytes at offset {body}) runs past the payload end {}",
                    payload.len()
                ))
            })? as usize;
        each(t, &payload[body..end], body);
        body = end;
        column += 1;
    }
    Ok((header_end, body))
}

/// Largest record header SQLite reads (vdbe.c, `OP_Column`); a larger
/// header size is corruption to SQLite.
pub const MAX_HEADER_SIZE: usize = 98_307;

/// Checks what SQLite's `OP_Column` demands of a stored record beyond
/// [`parse_record`] (quick_check reads the last column of every row, and so
/// does any query that reads a whole row): a header of 2 to
/// [`MAX_HEADER_SIZE`] bytes (b-tree check: "Bad cell header size"), and
/// values that end exactly where the payload ends. `header_len` and
/// `body_end` are what the decode found.
fn stored_shape(header_len: usize, body_end: usize, payload_len: usize) -> Result<(), FormatError> {
    let bad = |detail: String| FormatError::BadRecord { detail };
    if !(2..=MAX_HEADER_SIZE).contains(&header_len) {
        return Err(bad(format!(
            "header size {header_len} is outside 2..={MAX_HEADER_SIZE}"
        )));
    }
    if body_end != payload_len {
        return Err(bad(format!(
            "the values end at byte {body_end} of a {payload_len}-byte payload"
        )));
    }
    Ok(())
}

/// Checks a stored record as SQLite reads it: everything [`parse_record`]
/// checks, plus [`Record::check_stored`]'s rules. Returns the number of
/// columns.
pub fn check_stored(payload: &[u8]) -> Result<usize, FormatError> {
    let mut columns = 0usize;
    let (header_len, body_end) = decode(payload, |_, _, _| columns += 1)?;
    stored_shape(header_len, body_end, payload.len())?;
    Ok(columns)
}

/// The value of serial type `t` stored in `bytes` (exactly its size).
#[inline]
fn value_of(t: u64, bytes: &[u8]) -> ValueRef<'_> {
    match t {
        SERIAL_NULL => ValueRef::Null,
        SERIAL_INT8..=SERIAL_INT64 => ValueRef::Integer(be_signed(bytes)),
        SERIAL_FLOAT64 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[..8]);
            ValueRef::Real(f64::from_bits(u64::from_be_bytes(b)))
        }
        SERIAL_ZERO => ValueRef::Integer(0),
        SERIAL_ONE => ValueRef::Integer(1),
        t if t % 2 == 0 => ValueRef::Blob(bytes),
        _ => ValueRef::Text(bytes),
    }
}

/// Parses `payload` as a record into `out` (cleared first). Every value must
/// lie inside the payload; serial types 10 and 11 are an error.
///
/// `out` borrows `payload`; to decode many payloads without allocating, use
/// [`Record`], which keeps no borrow between calls.
pub fn parse_record<'a>(payload: &'a [u8], out: &mut Vec<ValueRef<'a>>) -> Result<(), FormatError> {
    out.clear();
    decode(payload, |t, bytes, _| out.push(value_of(t, bytes))).map(|_| ())
}

/// The values of a damaged record as far as they can be read, for keeping
/// what can be kept of a row that no source has whole (SQLite's recovery
/// reads cut-short records the same way): the serial types up to the end of
/// the header or of the bytes, whichever comes first, stopping at a reserved
/// type; a value whose bytes are not all there is NULL.
pub fn readable_values(payload: &[u8]) -> Vec<ValueRef<'_>> {
    let mut out = Vec::new();
    let Some((header_len, mut pos)) = read_varint(payload) else {
        return out;
    };
    let header_end = usize::try_from(header_len)
        .unwrap_or(usize::MAX)
        .min(payload.len());
    let mut body = usize::try_from(header_len).unwrap_or(usize::MAX);
    while pos < header_end {
        let Some((t, n)) = read_varint(&payload[pos..header_end]) else {
            break;
        };
        pos += n;
        let Some(size) = serial_type_size(t).and_then(|z| usize::try_from(z).ok()) else {
            break;
        };
        let end = body.saturating_add(size);
        out.push(match payload.get(body..end) {
            Some(bytes) => value_of(t, bytes),
            None => ValueRef::Null,
        });
        body = end;
    }
    out
}

/// [`SHORT_SERIAL_SIZE`]'s mark for a byte that is not a whole serial type
/// of a known size (a varint's first byte, or a reserved type).
const NOT_SHORT: u8 = u8::MAX;

/// Body bytes of each one-byte serial type (0..=255), [`NOT_SHORT`] where
/// the byte starts a longer varint or is reserved.
const SHORT_SERIAL_SIZE: [u8; 256] = {
    let mut table = [NOT_SHORT; 256];
    let mut t = 0;
    while t < 0x80 {
        table[t] = match serial_type_size(t as u64) {
            Some(n) => n as u8,
            None => NOT_SHORT,
        };
        t += 1;
    }
    table
};

/// A reusable decoder: remembers where each column of the last parsed
/// payload is, so a walk can decode every row into one buffer.
///
/// ```
/// # use custodian::format::record::{Record, ValueRef};
/// let mut rec = Record::default();
/// let payload = [3u8, 1, 15, 42, b'x']; // header (3 bytes): int8, 1-byte text
/// rec.parse(&payload)?;
/// assert_eq!(rec.get(&payload, 0), Some(ValueRef::Integer(42)));
/// assert_eq!(rec.get(&payload, 1), Some(ValueRef::Text(b"x")));
/// # Ok::<(), custodian::format::FormatError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// (serial type, value start, value end) per column.
    columns: Vec<(u64, u32, u32)>,
    /// Header size and the end of the last value, of the last payload parsed.
    header_len: u32,
    body_end: u32,
    payload_len: u32,
}

impl Record {
    /// Parses `payload`'s header (with the checks of [`parse_record`]).
    pub fn parse(&mut self, payload: &[u8]) -> Result<(), FormatError> {
        if self.parse_short(payload) {
            return Ok(());
        }
        self.columns.clear();
        let columns = &mut self.columns;
        let result = decode(payload, |t, bytes, start| {
            columns.push((t, start as u32, (start + bytes.len()) as u32));
        });
        match result {
            Ok((header_len, body_end)) => {
                self.header_len = header_len as u32;
                self.body_end = body_end as u32;
                self.payload_len = payload.len() as u32;
                Ok(())
            }
            Err(e) => {
                self.columns.clear();
                Err(e)
            }
        }
    }

    /// The common record, parsed without the general decoder: a header
    /// under 128 bytes whose serial types are one byte each, none reserved,
    /// every value inside the payload. Returns false, having decided
    /// nothing, for any other payload; the general decoder then reads it
    /// (and says what is wrong).
    #[inline]
    fn parse_short(&mut self, payload: &[u8]) -> bool {
        let Some(&first) = payload.first() else {
            return false;
        };
        let header_end = usize::from(first);
        if first >= 0x80 || header_end == 0 || header_end > payload.len() {
            return false;
        }
        self.columns.clear();
        let mut body = header_end;
        for &t in &payload[1..header_end] {
            let size = SHORT_SERIAL_SIZE[usize::from(t)];
            let end = body + usize::from(size);
            if size == NOT_SHORT || end > payload.len() {
                self.columns.clear();
                return false;
            }
            self.columns.push((u64::from(t), body as u32, end as u32));
            body = end;
        }
        self.header_len = header_end as u32;
        self.body_end = body as u32;
        self.payload_len = payload.len() as u32;
        true
    }

    /// Whether the last payload parsed is a record SQLite reads without
    /// calling it corrupt: a header of 2 to [`MAX_HEADER_SIZE`] bytes and
    /// values that end exactly at the payload's end (see [`check_stored`]).
    pub fn check_stored(&self) -> Result<(), FormatError> {
        stored_shape(
            self.header_len as usize,
            self.body_end as usize,
            self.payload_len as usize,
        )
    }

    /// Number of columns of the last parsed payload.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the last parsed payload had no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Column `i` of `payload`, which must be the payload last parsed.
    #[inline]
    pub fn get<'a>(&self, payload: &'a [u8], i: usize) -> Option<ValueRef<'a>> {
        let &(t, start, end) = self.columns.get(i)?;
        let bytes = payload.get(start as usize..end as usize)?;
        Some(value_of(t, bytes))
    }

    /// Column `i` of `payload` (the payload last parsed) as stored: its
    /// serial type and its bytes.
    pub fn raw<'a>(&self, payload: &'a [u8], i: usize) -> Option<(u64, &'a [u8])> {
        let &(t, start, end) = self.columns.get(i)?;
        Some((t, payload.get(start as usize..end as usize)?))
    }

    /// All columns of `payload`, which must be the payload last parsed.
    pub fn values<'a>(&'a self, payload: &'a [u8]) -> impl Iterator<Item = ValueRef<'a>> + 'a {
        (0..self.columns.len()).filter_map(move |i| self.get(payload, i))
    }
}

/// A record of `fields`, each given as stored (a serial type and its
/// bytes, as [`Record::raw`] reads them): the header (its own size, then
/// the serial types), then the bytes. Repair writes the rows it puts on a
/// replaced page with it (`repair/pages.rs`).
pub fn encode_record(fields: &[(u64, &[u8])]) -> Vec<u8> {
    let types: usize = fields.iter().map(|(t, _)| varint_len(*t)).sum();
    // the header's size counts the varint that gives it
    let mut header_len = types + 1;
    while varint_len(header_len as u64) + types > header_len {
        header_len += 1;
    }
    let mut out =
        Vec::with_capacity(header_len + fields.iter().map(|(_, b)| b.len()).sum::<usize>());
    write_varint(header_len as u64, &mut out);
    for (t, _) in fields {
        write_varint(*t, &mut out);
    }
    for (_, b) in fields {
        out.extend_from_slice(b);
    }
    out
}

/// A built-in collating sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collation {
    /// Byte comparison of the stored text (memcmp).
    Binary,
    /// Like BINARY after folding the 26 ASCII upper-case letters to lower case.
    NoCase,
    /// Like BINARY, ignoring trailing spaces.
    Rtrim,
}

impl Collation {
    /// The collation for a name in a schema (case-insensitive), if built in.
    pub fn from_name(name: &str) -> Option<Collation> {
        if name.eq_ignore_ascii_case("binary") {
            Some(Collation::Binary)
        } else if name.eq_ignore_ascii_case("nocase") {
            Some(Collation::NoCase)
        } else if name.eq_ignore_ascii_case("rtrim") {
            Some(Collation::Rtrim)
        } else {
            None
        }
    }
}

/// Rank of a value's storage class in SQLite's ordering.
fn class_rank(v: &ValueRef) -> u8 {
    match v {
        ValueRef::Null => 0,
        ValueRef::Integer(_) | ValueRef::Real(_) => 1,
        ValueRef::Text(_) => 2,
        ValueRef::Blob(_) => 3,
    }
}

/// Compares an integer with a float exactly (no rounding of the integer).
fn int_real_cmp(i: i64, r: f64) -> Ordering {
    if r.is_nan() {
        return Ordering::Greater;
    }
    // 2^63 as f64; every float at or beyond it exceeds every i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if r >= TWO_63 {
        return Ordering::Less;
    }
    if r < -TWO_63 {
        return Ordering::Greater;
    }
    let t = r.trunc();
    // |t| < 2^63 here (or t == -2^63), so the cast is exact.
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            if r > t {
                Ordering::Less
            } else if r < t {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

/// Compares two floats; NaN (never written by SQLite) sorts below every number.
fn real_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // ok: neither is NaN, so partial_cmp is total here.
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Folds an ASCII upper-case byte to lower case, as SQLite's NOCASE does.
#[inline]
fn fold(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

fn trim_trailing_spaces(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
    &b[..end]
}

/// Compares two texts stored in `enc` under `collation`, as SQLite does.
///
/// BINARY is registered for every encoding, so it compares the stored bytes
/// (for UTF-16 that is the UTF-16 byte order, not code-point order). NOCASE
/// and RTRIM exist only for UTF-8: SQLite converts UTF-16 text to UTF-8 first,
/// which here means comparing the decoded characters (UTF-8 byte order equals
/// code-point order).
pub fn compare_text(a: &[u8], b: &[u8], collation: Collation, enc: TextEncoding) -> Ordering {
    match (collation, enc) {
        (Collation::Binary, _) => a.cmp(b),
        (Collation::NoCase, TextEncoding::Utf8) => {
            a.iter().map(|&c| fold(c)).cmp(b.iter().map(|&c| fold(c)))
        }
        (Collation::Rtrim, TextEncoding::Utf8) => {
            trim_trailing_spaces(a).cmp(trim_trailing_spaces(b))
        }
        (Collation::NoCase, _) => {
            let f = |c: char| c.to_ascii_lowercase();
            utf16_chars(a, enc).map(f).cmp(utf16_chars(b, enc).map(f))
        }
        (Collation::Rtrim, _) => {
            let ta = utf16_trim_len(a, enc);
            let tb = utf16_trim_len(b, enc);
            utf16_chars(&a[..ta], enc).cmp(utf16_chars(&b[..tb], enc))
        }
    }
}

/// Length of UTF-16 text without its trailing spaces (U+0020) and odd byte.
fn utf16_trim_len(b: &[u8], enc: TextEncoding) -> usize {
    let mut end = b.len() - b.len() % 2;
    let space: [u8; 2] = if enc == TextEncoding::Utf16be {
        [0, 0x20]
    } else {
        [0x20, 0]
    };
    while end >= 2 && b[end - 2..end] == space {
        end -= 2;
    }
    end
}

/// Orders two values as SQLite does in indexes and ORDER BY: NULL < INTEGER
/// and REAL (compared numerically, integer against float exactly) < TEXT (by
/// `collation`) < BLOB (memcmp, then length).
pub fn compare_values(
    a: &ValueRef,
    b: &ValueRef,
    collation: Collation,
    enc: TextEncoding,
) -> Ordering {
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => x.cmp(y),
        (ValueRef::Integer(x), ValueRef::Real(y)) => int_real_cmp(*x, *y),
        (ValueRef::Real(x), ValueRef::Integer(y)) => int_real_cmp(*y, *x).reverse(),
        (ValueRef::Real(x), ValueRef::Real(y)) => real_cmp(*x, *y),
        (ValueRef::Text(x), ValueRef::Text(y)) => compare_text(x, y, collation, enc),
        (ValueRef::Blob(x), ValueRef::Blob(y)) => x.cmp(y),
        _ => class_rank(a).cmp(&class_rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_values_of_a_record_cut_short() {
        // header: int8, 3-byte text, int8; the text's last byte and the
        // second integer are missing
        let payload = [4u8, 1, 19, 1, 7, b'a', b'b'];
        assert_eq!(
            readable_values(&payload),
            vec![ValueRef::Integer(7), ValueRef::Null, ValueRef::Null]
        );
        // a header that claims more than there is: the types that are there
        assert_eq!(readable_values(&[9u8, 1]), vec![ValueRef::Null]);
        assert!(readable_values(&[]).is_empty());
        // a reserved serial type ends it
        assert_eq!(
            readable_values(&[3u8, 1, 10, 5]),
            vec![ValueRef::Integer(5)]
        );
    }
    use crate::format::varint::write_varint;

    /// Builds a record from (serial type, body bytes) pairs.
    fn record(cols: &[(u64, &[u8])]) -> Vec<u8> {
        let mut header = Vec::new();
        for (t, _) in cols {
            write_varint(*t, &mut header);
        }
        // Header size includes its own varint (1 byte for these small tests).
        let mut out = Vec::new();
        write_varint(header.len() as u64 + 1, &mut out);
        out.extend_from_slice(&header);
        for (_, body) in cols {
            out.extend_from_slice(body);
        }
        out
    }

    #[test]
    fn stored_records_as_sqlite_reads_them() {
        let good = record(&[(1, &[7]), (15, b"x")]);
        assert_eq!(check_stored(&good), Ok(2));
        let mut rec = Record::default();
        rec.parse(&good).unwrap();
        assert_eq!(rec.check_stored(), Ok(()));
        // Bytes after the last value: SQLite's OP_Column calls it corrupt.
        let mut long = good.clone();
        long.push(0);
        assert!(parse_record(&long, &mut Vec::new()).is_ok());
        assert!(check_stored(&long).is_err());
        rec.parse(&long).unwrap();
        assert!(rec.check_stored().is_err());
        // A header that holds only its own size ("Bad cell header size").
        assert!(check_stored(&[1]).is_err());
        // A header size beyond what SQLite reads.
        let mut huge = Vec::new();
        write_varint(100_000, &mut huge);
        huge.resize(100_000, 0);
        assert!(check_stored(&huge).is_err());
        // The corpus's fts5corrupt3-26 row: header size 12 in a 2-byte payload.
        assert!(check_stored(&[0x0c, 0xe9]).is_err());
    }

    #[test]
    fn every_serial_type() {
        let rec = record(&[
            (0, b""),
            (1, &[0xff]),
            (2, &[0x01, 0x00]),
            (3, &[0x80, 0x00, 0x00]),
            (4, &[0x7f, 0xff, 0xff, 0xff]),
            (5, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]),
            (6, &i64::MIN.to_be_bytes()),
            (7, &1.5f64.to_bits().to_be_bytes()),
            (8, b""),
            (9, b""),
            (12, b""),
            (13, b""),
            (16, b"ab"),
            (17, b"xyz"[..2].as_ref()),
        ]);
        let mut out = Vec::new();
        parse_record(&rec, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                ValueRef::Null,
                ValueRef::Integer(-1),
                ValueRef::Integer(256),
                ValueRef::Integer(-8_388_608),
                ValueRef::Integer(i32::MAX as i64),
                ValueRef::Integer(-2),
                ValueRef::Integer(i64::MIN),
                ValueRef::Real(1.5),
                ValueRef::Integer(0),
                ValueRef::Integer(1),
                ValueRef::Blob(b""),
                ValueRef::Text(b""),
                ValueRef::Blob(b"ab"),
                ValueRef::Text(b"xy"),
            ]
        );
    }

    #[test]
    fn reserved_serial_types_are_errors() {
        for t in [10u64, 11] {
            let rec = record(&[(t, b"")]);
            let mut out = Vec::new();
            assert!(matches!(
                parse_record(&rec, &mut out),
                Err(FormatError::BadRecord { .. })
            ));
        }
    }

    #[test]
    fn values_must_fit() {
        let rec = record(&[(6, &[0, 0, 0, 0, 0, 0, 0])]);
        assert!(parse_record(&rec, &mut Vec::new()).is_err());
        let rec = record(&[(23, b"abcd")]);
        assert!(parse_record(&rec, &mut Vec::new()).is_err());
        // Header size larger than the payload.
        assert!(parse_record(&[5, 1], &mut Vec::new()).is_err());
        // Header size smaller than its own varint.
        assert!(parse_record(&[0], &mut Vec::new()).is_err());
        // Serial type varint cut by the header end.
        assert!(parse_record(&[2, 0x81, 0x00], &mut Vec::new()).is_err());
        assert_eq!(
            parse_record(&[], &mut Vec::new()),
            Err(FormatError::BadVarint)
        );
        // A huge blob size does not overflow.
        let mut rec = vec![10u8];
        write_varint(u64::MAX - 1, &mut rec);
        rec.resize(10, 0);
        assert!(parse_record(&rec, &mut Vec::new()).is_err());
    }

    /// Record::parse (with its fast path for one-byte serial types) agrees
    /// with the general decoder on every payload: the same verdict, the
    /// same values, the same stored-record verdict. Seeded random payloads,
    /// most of them shaped like records (a header size, serial types, a
    /// body), the rest random bytes.
    #[test]
    fn fast_parse_agrees_with_the_general_decoder() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut rec = Record::default();
        let mut fast_taken = 0;
        for case in 0..200_000 {
            let mut p: Vec<u8> = Vec::new();
            if case % 4 == 0 {
                let len = (next() % 40) as usize;
                p.extend((0..len).map(|_| next() as u8));
            } else {
                let cols = (next() % 8) as usize;
                let types: Vec<u8> = (0..cols)
                    .map(|_| match next() % 4 {
                        0 => (next() % 14) as u8,
                        1 => 13 + 2 * (next() % 10) as u8,
                        2 => (next() % 256) as u8,
                        _ => 12 + 2 * (next() % 6) as u8,
                    })
                    .collect();
                let header = 1 + cols as u64 + next() % 3 - 1;
                p.push(header as u8);
                p.extend(&types);
                let body: usize = types
                    .iter()
                    .map(|&t| serial_type_size(u64::from(t)).unwrap_or(0) as usize)
                    .sum();
                let body = (body as i64 + (next() % 5) as i64 - 2).max(0) as usize;
                p.extend((0..body).map(|_| next() as u8));
            }
            let mut general = Vec::new();
            let want = parse_record(&p, &mut general);
            let got = rec.parse(&p);
            assert_eq!(got.is_ok(), want.is_ok(), "payload {p:?}");
            if got.is_ok() {
                fast_taken +=
                    usize::from(p[0] < 0x80 && p[1..usize::from(p[0])].iter().all(|&b| b < 0x80));
                assert_eq!(rec.values(&p).collect::<Vec<_>>(), general, "payload {p:?}");
                assert_eq!(
                    rec.check_stored().is_ok(),
                    check_stored(&p).is_ok(),
                    "payload {p:?}"
                );
            } else {
                assert!(rec.is_empty());
            }
        }
        assert!(fast_taken > 30_000, "the fast path ran {fast_taken} times");
    }

    #[test]
    fn reusable_record() {
        let one = record(&[(1, &[5]), (15, b"a")]);
        let two = record(&[(0, b""), (7, &2.5f64.to_bits().to_be_bytes()), (14, b"z")]);
        let mut rec = Record::default();
        rec.parse(&one).unwrap();
        assert_eq!(
            rec.values(&one).collect::<Vec<_>>(),
            vec![ValueRef::Integer(5), ValueRef::Text(b"a")]
        );
        rec.parse(&two).unwrap();
        assert_eq!(rec.len(), 3);
        assert_eq!(
            rec.values(&two).collect::<Vec<_>>(),
            vec![ValueRef::Null, ValueRef::Real(2.5), ValueRef::Blob(b"z")]
        );
        assert!(rec.parse(&[9]).is_err());
        assert!(rec.is_empty());
    }

    #[test]
    fn clears_out() {
        let rec = record(&[(1, &[5])]);
        let mut out = vec![ValueRef::Null; 3];
        parse_record(&rec, &mut out).unwrap();
        assert_eq!(out, vec![ValueRef::Integer(5)]);
        parse_record(&[1], &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn ordering_across_classes() {
        let e = TextEncoding::Utf8;
        let b = Collation::Binary;
        let ordered = [
            ValueRef::Null,
            ValueRef::Real(f64::NEG_INFINITY),
            ValueRef::Integer(i64::MIN),
            ValueRef::Real(-1.5),
            ValueRef::Integer(-1),
            ValueRef::Real(0.5),
            ValueRef::Integer(1),
            ValueRef::Real(1.000_000_1),
            ValueRef::Integer(i64::MAX),
            ValueRef::Real(9.3e18),
            ValueRef::Text(b""),
            ValueRef::Text(b"A"),
            ValueRef::Text(b"a"),
            ValueRef::Text(b"ab"),
            ValueRef::Blob(b""),
            ValueRef::Blob(b"\x00"),
        ];
        for (i, x) in ordered.iter().enumerate() {
            for (j, y) in ordered.iter().enumerate() {
                assert_eq!(compare_values(x, y, b, e), i.cmp(&j), "{x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn int_and_real_compare_exactly() {
        let c = |a, b| compare_values(&a, &b, Collation::Binary, TextEncoding::Utf8);
        assert_eq!(
            c(ValueRef::Integer(3), ValueRef::Real(3.0)),
            Ordering::Equal
        );
        // 2^53 + 1 is not representable as f64; it must still compare above 2^53.
        let big = (1i64 << 53) + 1;
        assert_eq!(
            c(ValueRef::Integer(big), ValueRef::Real((1i64 << 53) as f64)),
            Ordering::Greater
        );
        assert_eq!(
            c(ValueRef::Real(i64::MAX as f64), ValueRef::Integer(i64::MAX)),
            Ordering::Greater
        );
        assert_eq!(
            c(ValueRef::Integer(-3), ValueRef::Real(-2.5)),
            Ordering::Less
        );
        assert_eq!(
            c(ValueRef::Real(-3.5), ValueRef::Integer(-3)),
            Ordering::Less
        );
    }

    #[test]
    fn collations_utf8() {
        let e = TextEncoding::Utf8;
        let t = ValueRef::Text;
        assert_eq!(
            compare_values(&t(b"ABC"), &t(b"abc"), Collation::NoCase, e),
            Ordering::Equal
        );
        assert_eq!(
            compare_values(&t(b"ABC"), &t(b"abc"), Collation::Binary, e),
            Ordering::Less
        );
        // NOCASE folds ASCII only.
        assert_ne!(
            compare_values(&t("É".as_bytes()), &t("é".as_bytes()), Collation::NoCase, e),
            Ordering::Equal
        );
        // "_" (0x5f) sorts after "B" (0x42) in BINARY but before its folded "b" (0x62) in NOCASE.
        assert_eq!(
            compare_values(&t(b"_"), &t(b"B"), Collation::NoCase, e),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&t(b"abc  "), &t(b"abc"), Collation::Rtrim, e),
            Ordering::Equal
        );
        assert_eq!(
            compare_values(&t(b"ab "), &t(b"ab!"), Collation::Rtrim, e),
            Ordering::Less
        );
    }

    #[test]
    fn collations_utf16() {
        let le = |s: &str| {
            s.encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let be = |s: &str| {
            s.encode_utf16()
                .flat_map(|u| u.to_be_bytes())
                .collect::<Vec<u8>>()
        };
        let e = TextEncoding::Utf16le;
        // BINARY is memcmp of the stored UTF-16le bytes: "Ā" (00 01) < "a" (61 00).
        assert_eq!(
            compare_text(&le("Ā"), &le("a"), Collation::Binary, e),
            Ordering::Less
        );
        assert_eq!(
            compare_text(&le("Ā"), &le("a"), Collation::NoCase, e),
            Ordering::Greater
        );
        assert_eq!(
            compare_text(&le("HeLLo  "), &le("hello"), Collation::NoCase, e),
            Ordering::Greater
        );
        assert_eq!(
            compare_text(&le("Hi  "), &le("Hi"), Collation::Rtrim, e),
            Ordering::Equal
        );
        let e = TextEncoding::Utf16be;
        assert_eq!(
            compare_text(&be("Hi  "), &be("Hi"), Collation::Rtrim, e),
            Ordering::Equal
        );
        assert_eq!(
            compare_text(&be("b"), &be("A"), Collation::NoCase, e),
            Ordering::Greater
        );
        assert_eq!(decode_text(&le("héllo"), TextEncoding::Utf16le), "héllo");
    }

    #[test]
    fn an_encoded_record_parses_back_to_its_fields() {
        let long = [b'x'; 200];
        for fields in [
            vec![(0u64, &b""[..])],
            vec![(1, &b"\x07"[..]), (0, &b""[..]), (19, &b"abc"[..])],
            // 130 serial types: a header whose size takes two bytes
            (0..130).map(|_| (0u64, &b""[..])).collect(),
            vec![(13 + 2 * 200, &long[..]), (9, &b""[..])],
        ] {
            let payload = encode_record(&fields);
            let mut rec = Record::default();
            rec.parse(&payload).unwrap();
            rec.check_stored().unwrap();
            assert_eq!(rec.len(), fields.len());
            for (i, (t, b)) in fields.iter().enumerate() {
                assert_eq!(rec.raw(&payload, i), Some((*t, *b)));
            }
        }
    }
}
