//! One b-tree page on arbitrary bytes: `BtreePage::parse`, every cell, every
//! accessor and `check_layout`, at several usable sizes derived from the input
//! (its length, the largest power of two that fits, and that minus a
//! "reserved bytes" count taken from the last byte), as page 1 (header at
//! offset 100) and as any other page.
//!
//! Oracles: nothing panics, and a page whose layout check is clean decodes
//! every one of its cells.

#![no_main]

use custodian::format::page::{BtreePage, Cell};
use custodian::format::record::{Record, ValueRef, parse_record};
use libfuzzer_sys::fuzz_target;

fn usable_sizes(data: &[u8]) -> Vec<u32> {
    let len = data.len().min(65536) as u32;
    let mut sizes = vec![len];
    if len > 0 {
        let pow2 = 1u32 << (31 - len.leading_zeros());
        sizes.push(pow2);
        let reserved = u32::from(*data.last().unwrap_or(&0));
        sizes.push(pow2.saturating_sub(reserved));
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn exercise(p: &BtreePage<'_>) {
    let _ = (
        p.pgno(),
        p.page_type(),
        p.right_child(),
        p.first_freeblock(),
        p.content_start(),
        p.fragmented_bytes(),
        p.header_offset(),
        p.cell_pointers_end(),
        p.usable_size(),
        p.data().len(),
    );
    let layout = p.check_layout();
    let mut values: Vec<ValueRef<'_>> = Vec::new();
    let mut record = Record::default();
    for i in 0..usize::from(p.cell_count()) + 1 {
        let _ = p.table_leaf_rowid(i);
        if let Ok(offset) = p.cell_offset(i) {
            let _ = p.cell_size_at(offset);
        }
        match p.cell(i) {
            Ok(cell) => {
                let _ = cell.left_child();
                if let Some(payload) = cell.payload() {
                    assert!(payload.local.len() as u64 <= payload.total_len);
                    let _ = payload.is_complete();
                    if payload.is_complete() {
                        let _ = parse_record(payload.local, &mut values);
                        if record.parse(payload.local).is_ok() {
                            let _ = record.values(payload.local).count();
                        }
                    }
                }
                if let Cell::TableInterior { .. } = cell {
                    assert!(!p.page_type().is_leaf());
                }
            }
            Err(e) => {
                let _ = e.to_string();
                // A page the layout check passes has every cell decodable.
                assert!(
                    !layout.is_empty() || i >= usize::from(p.cell_count()),
                    "clean layout but cell {i} fails: {e}"
                );
            }
        }
    }
    for e in &layout {
        let _ = e.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    for usable in usable_sizes(data) {
        for pgno in [1u32, 2] {
            if let Ok(p) = BtreePage::parse(data, pgno, usable) {
                exercise(&p);
            }
        }
    }
});
