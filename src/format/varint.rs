//! SQLite's variable-length integers ("varints").
//!
//! Spec, section "B-tree Pages": a varint is 1 to 9 bytes, big-endian. In each
//! of the first eight bytes the high bit says whether another byte follows and
//! the low seven bits are data; a ninth byte contributes all eight of its bits.
//! So a varint holds any 64-bit value.

/// Largest number of bytes a varint occupies.
pub const MAX_VARINT_LEN: usize = 9;

/// Decodes the varint at the start of `buf`: `(value, bytes used)`, or `None`
/// when `buf` ends before the varint does.
#[inline]
pub fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    // Fast path: the one-byte varints that dominate record headers.
    let first = *buf.first()?;
    if first < 0x80 {
        return Some((u64::from(first), 1));
    }
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        if i == MAX_VARINT_LEN - 1 {
            return Some(((value << 8) | u64::from(byte), MAX_VARINT_LEN));
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte < 0x80 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Number of bytes [`write_varint`] uses for `value`.
pub fn varint_len(value: u64) -> usize {
    if value > 0x00ff_ffff_ffff_ffff {
        return MAX_VARINT_LEN;
    }
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Encodes `value` as a varint into `out` (appending); returns the bytes written.
///
/// Used by tests and fixtures that build pages by hand, and by repair for
/// the placeholder rows it writes into a work copy (`repair/pages.rs`).
pub fn write_varint(value: u64, out: &mut Vec<u8>) -> usize {
    let n = varint_len(value);
    if n == MAX_VARINT_LEN {
        // Eight 7-bit groups carry the high 56 bits, the ninth byte the low 8.
        let high = value >> 8;
        for i in (0..8).rev() {
            out.push(((high >> (7 * i)) & 0x7f) as u8 | 0x80);
        }
        out.push(value as u8);
        return n;
    }
    for i in (0..n).rev() {
        let group = ((value >> (7 * i)) & 0x7f) as u8;
        out.push(if i == 0 { group } else { group | 0x80 });
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte() {
        assert_eq!(read_varint(&[0x00]), Some((0, 1)));
        assert_eq!(read_varint(&[0x7f, 0xff]), Some((127, 1)));
    }

    #[test]
    fn two_bytes() {
        assert_eq!(read_varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(read_varint(&[0xff, 0x7f]), Some((0x3fff, 2)));
    }

    #[test]
    fn nine_bytes_use_all_bits_of_the_last() {
        let all_ones = [0xffu8; 9];
        assert_eq!(read_varint(&all_ones), Some((u64::MAX, 9)));
        // The ninth byte's high bit is data, not a continuation flag.
        let mut b = [0x80u8; 9];
        b[8] = 0x80;
        assert_eq!(read_varint(&b), Some((0x80, 9)));
        // Bytes after the ninth are never read.
        let mut long = vec![0xffu8; 12];
        long[11] = 0;
        assert_eq!(read_varint(&long), Some((u64::MAX, 9)));
    }

    #[test]
    fn too_short_is_none() {
        assert_eq!(read_varint(&[]), None);
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_varint(&[0xff; 8]), None);
    }

    #[test]
    fn round_trip() {
        let values = [
            0u64,
            1,
            127,
            128,
            240,
            2287,
            16383,
            16384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 56) - 1,
            1 << 56,
            i64::MAX as u64,
            (-1i64) as u64,
            u64::MAX - 1,
        ];
        for v in values {
            let mut buf = Vec::new();
            let n = write_varint(v, &mut buf);
            assert_eq!(n, buf.len());
            assert_eq!(n, varint_len(v));
            assert_eq!(read_varint(&buf), Some((v, n)), "value {v}");
        }
    }
}
