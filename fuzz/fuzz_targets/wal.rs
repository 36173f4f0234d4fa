//! `WalIndex::build` on arbitrary bytes, twice: as given, and after fixing
//! up the header checksum and every whole frame's salts and running checksum
//! (so that mutations reach the frame logic instead of dying at the first
//! checksum). The pages the index points at are then parsed as b-tree pages.
//!
//! Oracles: nothing panics; `max_frame <= frames_valid <= frames_total`;
//! `pages()` is sorted by page number, each newest frame is a valid
//! committed frame whose header names that page, and `newest_frame` agrees.

#![no_main]

use custodian::format::page::BtreePage;
use custodian::format::wal::{
    FRAME_HEADER_SIZE, FrameHeader, WAL_HEADER_SIZE, WalHeader, WalIndex, checksum, frame_offset,
    frame_page_offset,
};
use libfuzzer_sys::fuzz_target;

fn put(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn get(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
}

/// Rewrites checksums and salts so that every whole frame is valid.
fn fix_up(wal: &mut [u8]) {
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

fn exercise(wal: &[u8]) {
    let _ = WalHeader::parse(wal);
    let Ok(index) = WalIndex::build(wal) else {
        return;
    };
    assert!(index.max_frame <= index.frames_valid, "{index:?}");
    assert!(index.frames_valid <= index.frames_total, "{index:?}");
    assert_eq!(index.has_commits(), index.max_frame != 0);
    let page_size = index.page_size;
    let mut last = 0u32;
    for &(pgno, frame) in index.pages() {
        assert!(pgno > last, "pages() not sorted or repeated at page {pgno}");
        last = pgno;
        assert!(frame >= 1 && frame <= index.max_frame);
        assert_eq!(index.newest_frame(pgno), Some(frame));
        let at = frame_offset(frame, page_size) as usize;
        let fh = FrameHeader::parse(&wal[at..]).expect("an indexed frame is whole");
        assert_eq!(fh.pgno, pgno);
        let page_at = frame_page_offset(frame, page_size) as usize;
        assert_eq!(
            page_at,
            WalIndex::frame_page_offset(frame, page_size) as usize
        );
        let page = &wal[page_at..page_at + page_size as usize];
        if let Ok(p) = BtreePage::parse(page, pgno, page_size) {
            let _ = p.check_layout();
        }
    }
    assert_eq!(index.newest_frame(0), None);
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    let mut fixed = data.to_vec();
    fix_up(&mut fixed);
    exercise(&fixed);
});
