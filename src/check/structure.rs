//! Structural checks from custodian's own page reader: every b-tree walked,
//! its damage turned into typed findings, and every page accounted for.

use std::collections::BTreeMap;

use super::finding::{Code, Finding};
use crate::format::btree::{self, Damage, DamageKind, IndexItem, PageSource, TableItem};

/// Which page is used by what: a count per page, 1-based.
pub struct PageAccount {
    uses: Vec<u8>,
    reused: Vec<u32>,
}

impl PageAccount {
    pub fn new(page_count: u32) -> PageAccount {
        PageAccount {
            uses: vec![0; page_count as usize + 1],
            reused: Vec::new(),
        }
    }

    pub fn mark(&mut self, pgno: u32) {
        if let Some(u) = self.uses.get_mut(pgno as usize) {
            if *u == 1 {
                self.reused.push(pgno);
            }
            *u = u.saturating_add(1);
        }
    }

    pub fn mark_all(&mut self, pages: &[u32]) {
        for &p in pages {
            self.mark(p);
        }
    }

    pub fn unused(&self) -> Vec<u32> {
        (1..self.uses.len())
            .filter(|&p| self.uses[p] == 0)
            .map(|p| p as u32)
            .collect()
    }

    pub fn reused(&self) -> &[u32] {
        &self.reused
    }
}

/// Walks a b-tree only for its structure (records are not decoded here).
pub fn walk_structure(src: &dyn PageSource, root: u32, is_index: bool) -> (Vec<Damage>, Vec<u32>) {
    let mut damage = Vec::new();
    let stats = if is_index {
        btree::walk_index(src, root, &mut |item| {
            if let IndexItem::Damage(d) = item {
                damage.push(d);
            }
        })
    } else {
        btree::walk_table(src, root, &mut |item| {
            if let TableItem::Damage(d) = item {
                damage.push(d);
            }
        })
    };
    (damage, stats.pages)
}

fn code_of(kind: &DamageKind) -> Code {
    match kind {
        DamageKind::PageUnreadable
        | DamageKind::BadPageHeader
        | DamageKind::WrongPageType
        | DamageKind::TooDeep => Code::PageDamaged,
        DamageKind::CellOutOfBounds | DamageKind::CellOverlap => Code::CellDamaged,
        DamageKind::BadChildPointer => Code::ChildPointerInvalid,
        DamageKind::BadRecord | DamageKind::OverflowChainBroken => Code::RecordDamaged,
        DamageKind::KeyOrder => Code::KeyOrder,
    }
}

/// One finding per (object, kind of damage), listing every page and the
/// first detail; nothing is capped.
pub fn damage_findings(object: &str, table: &str, damage: &[Damage]) -> Vec<Finding> {
    let mut groups: BTreeMap<Code, Vec<&Damage>> = BTreeMap::new();
    for d in damage {
        groups.entry(code_of(&d.kind)).or_default().push(d);
    }
    groups
        .into_iter()
        .map(|(code, ds)| {
            let first = ds[0];
            let msg = if ds.len() == 1 {
                format!("page {}: {}", first.pgno, first.detail)
            } else {
                format!(
                    "{} problems, first on page {}: {}",
                    ds.len(),
                    first.pgno,
                    first.detail
                )
            };
            Finding::error(code, msg)
                .object(object)
                .table(table)
                .count(ds.len() as u64)
                .pages(ds.iter().map(|d| d.pgno).collect())
        })
        .collect()
}

/// Freelist trunk and leaf pages, guarded against cycles and bad numbers.
pub fn freelist_pages(
    src: &dyn PageSource,
    first_trunk: u32,
    expected: u32,
) -> (Vec<u32>, Option<String>) {
    let n = src.page_count();
    let mut pages = Vec::new();
    let mut seen = vec![false; n as usize + 1];
    let mut trunk = first_trunk;
    let mut buf = Vec::new();
    while trunk != 0 {
        if trunk > n || seen[trunk as usize] {
            return (
                pages,
                Some(format!(
                    "freelist trunk page {trunk} is out of range or repeated"
                )),
            );
        }
        seen[trunk as usize] = true;
        pages.push(trunk);
        if let Err(e) = src.read_page(trunk, &mut buf) {
            return (pages, Some(format!("freelist trunk page {trunk}: {e}")));
        }
        if buf.len() < 8 {
            return (
                pages,
                Some(format!("freelist trunk page {trunk} is too short")),
            );
        }
        let next = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let count = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if count > (src.usable_size() as usize / 4).saturating_sub(2) {
            return (
                pages,
                Some(format!("freelist trunk page {trunk} claims {count} leaves")),
            );
        }
        for i in 0..count {
            let o = 8 + i * 4;
            let Some(b) = buf.get(o..o + 4) else { break };
            let leaf = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            if leaf == 0 || leaf > n || seen[leaf as usize] {
                return (
                    pages,
                    Some(format!(
                        "freelist leaf {leaf} on trunk {trunk} is out of range or repeated"
                    )),
                );
            }
            seen[leaf as usize] = true;
            pages.push(leaf);
        }
        trunk = next;
    }
    if pages.len() as u32 != expected {
        let found = pages.len();
        return (
            pages,
            Some(format!(
                "the header counts {expected} freelist pages, the list holds {found}"
            )),
        );
    }
    (pages, None)
}

/// Pointer-map pages of an auto_vacuum database.
pub fn ptrmap_pages(usable_size: u32, page_count: u32) -> Vec<u32> {
    let per = usable_size / 5;
    let mut out = Vec::new();
    let mut p = 2u32;
    while p <= page_count {
        out.push(p);
        p = match p.checked_add(per + 1) {
            Some(x) => x,
            None => break,
        };
    }
    out
}

/// The page that holds the lock bytes at offset 2^30, if the file reaches it.
pub fn lock_byte_page(page_size: u32, page_count: u32) -> Option<u32> {
    let p = (1u64 << 30) / page_size as u64 + 1;
    (p <= page_count as u64).then_some(p as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptrmap_and_lock_byte_positions() {
        assert_eq!(ptrmap_pages(1024, 500), vec![2, 207, 412]);
        assert_eq!(lock_byte_page(4096, 262_144), None);
        assert_eq!(lock_byte_page(4096, 262_145), Some(262_145));
    }

    #[test]
    fn account_flags_unused_and_reused() {
        let mut a = PageAccount::new(5);
        a.mark_all(&[1, 2, 2, 4]);
        assert_eq!(a.unused(), vec![3, 5]);
        assert_eq!(a.reused(), &[2]);
    }
}
