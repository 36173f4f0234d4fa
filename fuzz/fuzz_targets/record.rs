//! Records on arbitrary payloads: `parse_record`, `Record`, `decode_text`,
//! and `compare_values` between the values of two decoded records.
//!
//! Input: byte 0 is the length `k` of the first payload; the next `k` bytes
//! (or fewer, if the input is shorter) are payload A, the rest payload B.
//!
//! Oracles: nothing panics; `parse_record` and `Record` agree; and under
//! every collation and encoding `compare_values` is reflexive,
//! antisymmetric and transitive (an index walk relies on a total order).

#![no_main]

use std::cmp::Ordering;

use custodian::format::header::TextEncoding;
use custodian::format::record::{
    Collation, Record, ValueRef, compare_values, decode_text, parse_record,
};
use libfuzzer_sys::fuzz_target;

const COLLATIONS: [Collation; 3] = [Collation::Binary, Collation::NoCase, Collation::Rtrim];
const ENCODINGS: [TextEncoding; 3] = [
    TextEncoding::Utf8,
    TextEncoding::Utf16le,
    TextEncoding::Utf16be,
];
/// Values taken from each record into the order checks (bounds the triples).
const MAX_VALUES: usize = 6;

/// Equality that treats two NaNs with the same bits as equal.
fn same(a: &ValueRef<'_>, b: &ValueRef<'_>) -> bool {
    match (a, b) {
        (ValueRef::Real(x), ValueRef::Real(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn decode<'a>(payload: &'a [u8], record: &mut Record) -> Vec<ValueRef<'a>> {
    let mut values = Vec::new();
    let a = parse_record(payload, &mut values);
    let b = record.parse(payload);
    assert_eq!(a, b, "parse_record and Record disagree");
    if a.is_err() {
        assert!(record.is_empty());
        return Vec::new();
    }
    assert_eq!(record.len(), values.len());
    let via_record: Vec<_> = record.values(payload).collect();
    assert_eq!(via_record.len(), values.len());
    for (i, (x, y)) in values.iter().zip(&via_record).enumerate() {
        assert!(same(x, y), "column {i}: {x:?} vs {y:?}");
        assert!(same(&record.get(payload, i).unwrap(), x));
    }
    assert!(record.get(payload, values.len()).is_none());
    for v in &values {
        for enc in ENCODINGS {
            if let Some(t) = v.text(enc) {
                let _ = t.len();
            }
            if let ValueRef::Text(b) | ValueRef::Blob(b) = v {
                let _ = decode_text(b, enc);
            }
        }
    }
    values
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let (a, b) = rest.split_at(usize::from(k).min(rest.len()));
    let mut record = Record::default();
    let va = decode(a, &mut record);
    let vb = decode(b, &mut record);
    let mut all: Vec<ValueRef<'_>> = va.iter().take(MAX_VALUES).copied().collect();
    all.extend(vb.iter().take(MAX_VALUES).copied());
    for collation in COLLATIONS {
        for enc in ENCODINGS {
            let cmp = |x: &ValueRef<'_>, y: &ValueRef<'_>| compare_values(x, y, collation, enc);
            for x in &all {
                assert_eq!(cmp(x, x), Ordering::Equal, "{x:?} is not equal to itself");
                for y in &all {
                    let xy = cmp(x, y);
                    assert_eq!(
                        xy,
                        cmp(y, x).reverse(),
                        "{x:?} vs {y:?} is not antisymmetric"
                    );
                    for z in &all {
                        let yz = cmp(y, z);
                        if xy == yz && xy != Ordering::Equal {
                            assert_eq!(cmp(x, z), xy, "{x:?}, {y:?}, {z:?} not transitive");
                        }
                        if xy == Ordering::Equal {
                            assert_eq!(cmp(x, z), yz, "{x:?} = {y:?} but not vs {z:?}");
                        }
                    }
                }
            }
        }
    }
});
