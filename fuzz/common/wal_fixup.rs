//! Shared by the `wal` and `pager` targets: make arbitrary bytes into a
//! -wal whose checksums and salts are valid, so mutations reach the frame
//! logic instead of dying at the first checksum.

use custodian::format::wal::{FRAME_HEADER_SIZE, WAL_HEADER_SIZE, checksum};

pub fn put(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

pub fn get(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
}

/// Rewrites checksums and salts so that every whole frame is valid.
pub fn fix_up(wal: &mut [u8]) {
    if wal.len() < WAL_HEADER_SIZE {
        return;
    }
    let big_endian = wal[3] & 1 == 1;
    let (c1, c2) = checksum(big_endian, &wal[..24], (0, 0));
    put(wal, 24, c1);
    put(wal, 28, c2);
    let page_size = get(wal, 8);
    if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
        return;
    }
    let (salt1, salt2) = (get(wal, 16), get(wal, 20));
    let frame_size = FRAME_HEADER_SIZE + page_size as usize;
    let mut sum = (c1, c2);
    let mut start = WAL_HEADER_SIZE;
    while start + frame_size <= wal.len() {
        let frame = &mut wal[start..start + frame_size];
        put(frame, 8, salt1);
        put(frame, 12, salt2);
        sum = checksum(big_endian, &frame[..8], sum);
        sum = checksum(big_endian, &frame[FRAME_HEADER_SIZE..], sum);
        put(frame, 16, sum.0);
        put(frame, 20, sum.1);
        start += frame_size;
    }
}
