//! The b-tree roots a file's own pages show, for a file whose schema table
//! is lost: the schema says which page is the root of which table or index,
//! and without it the roots must be found from the pages.
//!
//! Spec, "B-tree Pages": every b-tree page but a root is the child of one
//! interior page of its tree. So a well-formed b-tree page that no
//! well-formed interior page points to (and that is not on the freelist, a
//! pointer map or an overflow chain) is the root of a tree: a
//! [`RootCandidate`]. Each candidate says its kind (table or index), how
//! many rows or entries its tree holds, and the first of them, so a caller
//! can tell which object of a known schema it is (record shape, values that
//! agree with a snapshot, index keys that match table rows). A tree whose
//! own root was lost shows up as several candidates (its subtrees): then no
//! single root can be told for it.

use super::be_u32;
use super::btree::{self, IndexItem, PageSet, PageSource, TableItem};
use super::page::{BtreePage, OVERFLOW_NEXT_OFFSET};

/// Rows (or entries) of each candidate kept for identification: the first
/// ones in key order (for a table the oldest rowids, those a snapshot most
/// likely has too).
pub const SAMPLE: usize = 64;

/// Which kind of b-tree a root starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    /// A table b-tree (rowid table).
    Table,
    /// An index b-tree (an index, or a WITHOUT ROWID table).
    Index,
}

/// A page that is the root of a tree in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCandidate {
    pub pgno: u32,
    pub kind: TreeKind,
    /// Rows (table) or entries (index) the walk of its tree read whole.
    pub entries: u64,
    /// Whether the walk met damage.
    pub damaged: bool,
    /// The first [`SAMPLE`] rows as (rowid, record), or entries as (0, record).
    pub sample: Vec<(i64, Vec<u8>)>,
}

/// Every root candidate among pages 2..=page_count, skipping `exclude`
/// (the freelist's and pointer-map pages, the lock-byte page: pages that
/// may hold stale b-tree bytes but belong to no tree). Page 1 is the schema
/// table's root and is never a candidate.
pub fn root_candidates(src: &dyn PageSource, exclude: &PageSet) -> Vec<RootCandidate> {
    let n = src.page_count();
    let usable = src.usable_size();
    let mut referenced = PageSet::new();
    let mut btree_pages: Vec<(u32, TreeKind)> = Vec::new();
    let mut buf = Vec::new();
    let mut overflow = Vec::new();
    for pgno in 2..=n {
        if exclude.contains(pgno) || src.read_page(pgno, &mut buf).is_err() {
            continue;
        }
        let Ok(page) = BtreePage::parse(&buf, pgno, usable) else {
            continue;
        };
        if !page.check_layout().is_empty() {
            continue;
        }
        let kind = if page.page_type().is_table() {
            TreeKind::Table
        } else {
            TreeKind::Index
        };
        btree_pages.push((pgno, kind));
        for i in 0..usize::from(page.cell_count()) {
            let Ok(cell) = page.cell(i) else { continue };
            if let Some(c) = cell.left_child() {
                referenced.insert(c);
            }
            if let Some(first) = cell.payload().and_then(|p| p.first_overflow) {
                overflow.push(first);
            }
        }
        if let Some(r) = page.right_child() {
            referenced.insert(r);
        }
    }
    // overflow chains: pages reached by one are no roots (a guarded walk)
    for first in overflow {
        let mut next = first;
        while next != 0 && next <= n && referenced.insert(next) {
            if src.read_page(next, &mut buf).is_err() {
                break;
            }
            next = be_u32(&buf, OVERFLOW_NEXT_OFFSET).unwrap_or(0);
        }
    }
    btree_pages
        .into_iter()
        .filter(|(p, _)| !referenced.contains(*p))
        .map(|(pgno, kind)| describe(src, pgno, kind))
        .collect()
}

/// Walks the tree of one candidate root.
fn describe(src: &dyn PageSource, pgno: u32, kind: TreeKind) -> RootCandidate {
    let mut sample = Vec::new();
    let mut damaged = false;
    let stats = match kind {
        TreeKind::Table => btree::walk_table(src, pgno, &mut |item| match item {
            TableItem::Row { rowid, payload, .. } => {
                if sample.len() < SAMPLE {
                    sample.push((rowid, payload.to_vec()));
                }
            }
            TableItem::RowDamaged { .. } | TableItem::Damage(_) => damaged = true,
        }),
        TreeKind::Index => btree::walk_index(src, pgno, &mut |item| match item {
            IndexItem::Entry { payload, .. } => {
                if sample.len() < SAMPLE {
                    sample.push((0, payload.to_vec()));
                }
            }
            IndexItem::Damage(_) => damaged = true,
        }),
    };
    RootCandidate {
        pgno,
        kind,
        entries: stats.cells,
        damaged,
        sample,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::btree::MemoryPages;
    use crate::format::btree::test_image::{image, interior_cell, leaf_cell, put_page};

    #[test]
    fn roots_are_the_pages_no_interior_page_points_to() {
        // page 1 schema; table: root 2 -> leaves 3, 4; a lone table leaf 5;
        // an index leaf 6; page 7 is free (excluded) and holds a stale leaf.
        let mut img = image(7);
        put_page(&mut img, 1, 0x0d, &[], None);
        put_page(&mut img, 2, 0x05, &[interior_cell(3, 10)], Some(4));
        put_page(&mut img, 3, 0x0d, &[leaf_cell(1, b"\x02\x01\x07")], None);
        put_page(&mut img, 4, 0x0d, &[leaf_cell(11, b"\x02\x01\x08")], None);
        put_page(&mut img, 5, 0x0d, &[leaf_cell(40, b"\x02\x01\x09")], None);
        put_page(
            &mut img,
            6,
            0x0a,
            &[b"\x05\x03\x01\x01\x07\x01".to_vec()],
            None,
        );
        put_page(&mut img, 7, 0x0d, &[leaf_cell(99, b"\x02\x01\x09")], None);
        let src = MemoryPages::new(img).unwrap();
        let mut exclude = PageSet::new();
        exclude.insert(7);
        let c = root_candidates(&src, &exclude);
        let got: Vec<(u32, TreeKind, u64)> =
            c.iter().map(|c| (c.pgno, c.kind, c.entries)).collect();
        assert_eq!(
            got,
            vec![
                (2, TreeKind::Table, 2),
                (5, TreeKind::Table, 1),
                (6, TreeKind::Index, 1)
            ]
        );
        assert_eq!(
            c[0].sample,
            vec![
                (1, b"\x02\x01\x07".to_vec()),
                (11, b"\x02\x01\x08".to_vec())
            ]
        );
        assert!(c.iter().all(|c| !c.damaged));
    }

    #[test]
    fn a_lost_root_leaves_its_subtrees_as_candidates() {
        let mut img = image(4);
        put_page(&mut img, 1, 0x0d, &[], None);
        // page 2 (the root) zeroed
        put_page(&mut img, 3, 0x0d, &[leaf_cell(1, b"\x02\x01\x07")], None);
        put_page(&mut img, 4, 0x0d, &[leaf_cell(11, b"\x02\x01\x08")], None);
        let src = MemoryPages::new(img).unwrap();
        let c = root_candidates(&src, &PageSet::new());
        assert_eq!(c.iter().map(|c| c.pgno).collect::<Vec<_>>(), vec![3, 4]);
    }
}
