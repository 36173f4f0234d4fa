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
use custodian::format::wal::{FrameHeader, WalHeader, WalIndex, frame_offset, frame_page_offset};
use libfuzzer_sys::fuzz_target;

#[path = "../common/wal_fixup.rs"]
mod wal_fixup;
use wal_fixup::fix_up;

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
