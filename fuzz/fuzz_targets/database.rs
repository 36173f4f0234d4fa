//! The input as a whole database image in a `MemoryPages`: every page (up to
//! a bound) walked as a table root and as an index root, each row and entry
//! decoded as a record and consecutive index entries compared; the freelist
//! from the header and the pointer-map entry of every page.
//!
//! Oracles: nothing panics or loops, and each walk's `pages` lists every
//! page once, all in `1..=page_count` (as `WalkStats` documents).

#![no_main]

use custodian::format::btree::{
    IndexItem, MemoryPages, PageSet, PageSource, TableItem, WalkStats, walk_index, walk_table,
};
use custodian::format::freelist::{
    TrunkPage, is_ptrmap_page, parse_ptrmap_entry, ptrmap_entry_location, walk_freelist,
};
use custodian::format::header::DatabaseHeader;
use custodian::format::record::{Collation, Record, compare_values};
use libfuzzer_sys::fuzz_target;

/// Roots walked per input: all pages of a small image, else the first
/// `MAX_ROOTS / 2` and `MAX_ROOTS / 2` more spread over the rest (each walk
/// is linear in the pages it reaches, so the work per input stays bounded).
const MAX_ROOTS: u32 = 48;

fn roots(page_count: u32) -> Vec<u32> {
    if page_count <= MAX_ROOTS {
        return (1..=page_count).collect();
    }
    let half = MAX_ROOTS / 2;
    let mut r: Vec<u32> = (1..=half).collect();
    let step = (page_count - half) / half;
    r.extend(
        (1..=half)
            .map(|k| half + k * step.max(1))
            .filter(|&p| p <= page_count),
    );
    r
}

fn check_stats(stats: &WalkStats, page_count: u32) {
    let mut seen = PageSet::new();
    for &p in &stats.pages {
        assert!(
            p >= 1 && p <= page_count,
            "walk claims page {p} of {page_count}"
        );
        assert!(seen.insert(p), "walk lists page {p} twice");
    }
    assert!(stats.overflow_pages as usize <= stats.pages.len());
}

fuzz_target!(|data: &[u8]| {
    let Ok(header) = DatabaseHeader::parse(data) else {
        return;
    };
    let Ok(src) = MemoryPages::new(data.to_vec()) else {
        return;
    };
    let page_count = src.page_count();
    let enc = src.text_encoding();
    let mut record = Record::default();
    let mut previous: Vec<u8> = Vec::new();
    let mut prev_record = Record::default();

    for root in roots(page_count) {
        let stats = walk_table(&src, root, &mut |item| match item {
            TableItem::Row { payload, .. } => {
                if record.parse(payload).is_ok() {
                    for v in record.values(payload) {
                        let _ = v.text(enc);
                    }
                }
            }
            TableItem::RowDamaged { .. } => {}
            TableItem::Damage(d) => {
                let _ = d.detail.len();
            }
        });
        check_stats(&stats, page_count);

        previous.clear();
        let mut have_previous = false;
        let stats = walk_index(&src, root, &mut |item| match item {
            IndexItem::Entry { payload, .. } => {
                if record.parse(payload).is_ok() {
                    if have_previous {
                        for (x, y) in prev_record.values(&previous).zip(record.values(payload)) {
                            let _ = compare_values(&x, &y, Collation::NoCase, enc);
                        }
                    }
                    previous.clear();
                    previous.extend_from_slice(payload);
                    std::mem::swap(&mut prev_record, &mut record);
                    have_previous = true;
                }
            }
            IndexItem::Damage(d) => {
                let _ = d.detail.len();
            }
        });
        check_stats(&stats, page_count);
    }

    let walk = walk_freelist(&src, header.first_freelist_trunk, header.freelist_count);
    let _ = walk.page_count();

    let (usable, page_size) = (src.usable_size(), src.page_size());
    let mut buf = Vec::new();
    for pgno in roots(page_count) {
        let _ = is_ptrmap_page(pgno, usable, page_size);
        if let Some((map, offset)) = ptrmap_entry_location(pgno, usable, page_size)
            && src.read_page(map, &mut buf).is_ok()
        {
            let _ = parse_ptrmap_entry(&buf, offset);
        }
        if src.read_page(pgno, &mut buf).is_ok()
            && let Ok(t) = TrunkPage::parse(&buf, usable)
        {
            assert_eq!(t.leaves().count() as u32, t.leaf_count);
        }
    }
});
