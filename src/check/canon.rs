//! A canonical byte encoding of SQL values, so that a value read from an
//! index page and the same value read from a table page hash alike.
//!
//! Text is encoded as UTF-8 whatever the database encoding; a REAL with an
//! exact integer value is encoded as that integer (SQLite stores such REALs
//! as integers in records and converts back on reading).

use rusqlite::types::Value;

use crate::format::header::TextEncoding;
use crate::format::record::ValueRef;

const TAG_NULL: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;

/// Appends the canonical encoding of a value read from a page.
pub fn push_raw(buf: &mut Vec<u8>, v: &ValueRef<'_>, enc: TextEncoding) {
    match *v {
        ValueRef::Null => buf.push(TAG_NULL),
        ValueRef::Integer(i) => push_int(buf, i),
        ValueRef::Real(f) => push_real(buf, f),
        ValueRef::Text(t) => match enc {
            TextEncoding::Utf8 => push_bytes(buf, TAG_TEXT, t),
            _ => push_bytes(buf, TAG_TEXT, decode_text(t, enc).as_bytes()),
        },
        ValueRef::Blob(b) => push_bytes(buf, TAG_BLOB, b),
    }
}

/// Appends the canonical encoding of an owned SQL value.
pub fn push_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.push(TAG_NULL),
        Value::Integer(i) => push_int(buf, *i),
        Value::Real(f) => push_real(buf, *f),
        Value::Text(t) => push_bytes(buf, TAG_TEXT, t.as_bytes()),
        Value::Blob(b) => push_bytes(buf, TAG_BLOB, b),
    }
}

/// Appends the canonical encoding of a value SQLite returned.
pub fn push_sql(buf: &mut Vec<u8>, v: rusqlite::types::ValueRef<'_>) {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Null => buf.push(TAG_NULL),
        V::Integer(i) => push_int(buf, i),
        V::Real(f) => push_real(buf, f),
        V::Text(t) => push_bytes(buf, TAG_TEXT, t),
        V::Blob(b) => push_bytes(buf, TAG_BLOB, b),
    }
}

fn push_int(buf: &mut Vec<u8>, i: i64) {
    buf.push(TAG_INT);
    buf.extend_from_slice(&i.to_le_bytes());
}

fn push_real(buf: &mut Vec<u8>, f: f64) {
    // ok: the range check makes the cast exact
    if f.fract() == 0.0 && (-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&f) {
        push_int(buf, f as i64);
    } else {
        buf.push(TAG_REAL);
        buf.extend_from_slice(&f.to_bits().to_le_bytes());
    }
}

fn push_bytes(buf: &mut Vec<u8>, tag: u8, b: &[u8]) {
    buf.push(tag);
    buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
    buf.extend_from_slice(b);
}

/// Text bytes in the database encoding, as a Rust string (lossy on damage).
pub fn decode_text(t: &[u8], enc: TextEncoding) -> String {
    match enc {
        TextEncoding::Utf8 => String::from_utf8_lossy(t).into_owned(),
        TextEncoding::Utf16le | TextEncoding::Utf16be => {
            let units = t.chunks_exact(2).map(|c| {
                if matches!(enc, TextEncoding::Utf16le) {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            });
            char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
    }
}

/// An owned copy of a value read from a page.
pub fn to_owned(v: &ValueRef<'_>, enc: TextEncoding) -> Value {
    match *v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(decode_text(t, enc)),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc_raw(v: ValueRef<'_>) -> Vec<u8> {
        let mut b = Vec::new();
        push_raw(&mut b, &v, TextEncoding::Utf8);
        b
    }

    #[test]
    fn integral_real_encodes_as_integer() {
        assert_eq!(enc_raw(ValueRef::Real(3.0)), enc_raw(ValueRef::Integer(3)));
        assert_ne!(enc_raw(ValueRef::Real(3.5)), enc_raw(ValueRef::Integer(3)));
    }

    #[test]
    fn text_and_blob_differ() {
        assert_ne!(
            enc_raw(ValueRef::Text(b"ab")),
            enc_raw(ValueRef::Blob(b"ab"))
        );
        let mut a = Vec::new();
        push_value(&mut a, &Value::Text("ab".into()));
        assert_eq!(a, enc_raw(ValueRef::Text(b"ab")));
    }

    #[test]
    fn utf16_text_matches_utf8() {
        let mut a = Vec::new();
        push_raw(
            &mut a,
            &ValueRef::Text(&[b'h', 0, b'i', 0]),
            TextEncoding::Utf16le,
        );
        assert_eq!(a, enc_raw(ValueRef::Text(b"hi")));
    }
}
