//! Structural checks from custodian's own page reader: every b-tree walked,
//! its damage turned into typed findings, and every page accounted for.

use std::collections::BTreeMap;

use serde::Serialize;

use super::finding::{Code, Finding};
use crate::format::btree::{self, Damage, DamageKind, IndexItem, PageSource, TableItem};

/// The pages one b-tree claims, and those of them it found damaged.
#[derive(Debug, Clone, Default)]
pub struct TreePages {
    pub owner: String,
    pub pages: Vec<u32>,
    pub damaged: Vec<u32>,
}

impl TreePages {
    pub fn new(owner: &str, pages: Vec<u32>, damage: &[Damage]) -> TreePages {
        TreePages {
            owner: owner.to_string(),
            pages,
            damaged: damage.iter().map(|d| d.pgno).collect(),
        }
    }
}

/// What a page is, for the page map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    Healthy,
    Damaged,
    Free,
    Ptrmap,
    LockByte,
    /// Owned by nothing: unreachable (e.g. a lost b-tree).
    Unused,
    /// Counted by the header but not in the file (truncated).
    Lost,
}

/// Which page is used by what: a use count, owner and state per page, 1-based.
pub struct PageAccount {
    uses: Vec<u8>,
    owner: Vec<u16>,
    state: Vec<PageState>,
    owners: Vec<String>,
    reused: Vec<u32>,
}

const NO_OWNER: u16 = u16::MAX;

impl PageAccount {
    pub fn new(page_count: u32) -> PageAccount {
        let n = page_count as usize + 1;
        PageAccount {
            uses: vec![0; n],
            owner: vec![NO_OWNER; n],
            state: vec![PageState::Unused; n],
            owners: Vec::new(),
            reused: Vec::new(),
        }
    }

    fn mark_as(&mut self, pgno: u32, owner: u16, state: PageState) {
        let i = pgno as usize;
        if i == 0 || i >= self.uses.len() {
            return;
        }
        if self.uses[i] == 1 {
            self.reused.push(pgno);
        }
        self.uses[i] = self.uses[i].saturating_add(1);
        if self.owner[i] == NO_OWNER || state == PageState::Damaged {
            self.owner[i] = owner;
            self.state[i] = state;
        }
    }

    pub fn mark(&mut self, pgno: u32) {
        self.mark_as(pgno, NO_OWNER, PageState::LockByte);
    }

    pub fn mark_all(&mut self, pages: &[u32]) {
        for &p in pages {
            self.mark_as(p, NO_OWNER, PageState::Healthy);
        }
    }

    pub fn mark_special(&mut self, pages: &[u32], state: PageState) {
        for &p in pages {
            self.mark_as(p, NO_OWNER, state);
        }
    }

    /// The pages of one b-tree; its damaged pages are marked so.
    pub fn mark_tree(&mut self, tree: &TreePages) {
        let id = match self.owners.iter().position(|o| *o == tree.owner) {
            Some(i) => i as u16,
            None => {
                self.owners.push(tree.owner.clone());
                (self.owners.len() - 1).min(NO_OWNER as usize - 1) as u16
            }
        };
        for &p in &tree.pages {
            self.mark_as(p, id, PageState::Healthy);
        }
        for &p in &tree.damaged {
            let i = p as usize;
            if i > 0 && i < self.state.len() {
                self.owner[i] = id;
                self.state[i] = PageState::Damaged;
            }
        }
    }

    pub fn set_lost(&mut self, pages: &[u32]) {
        for &p in pages {
            if let Some(s) = self.state.get_mut(p as usize)
                && *s == PageState::Unused
            {
                *s = PageState::Lost;
            }
        }
    }

    pub fn unused(&self) -> Vec<u32> {
        (1..self.uses.len())
            .filter(|&p| self.uses[p] == 0 && self.state[p] == PageState::Unused)
            .map(|p| p as u32)
            .collect()
    }

    pub fn reused(&self) -> &[u32] {
        &self.reused
    }

    /// The map as runs of consecutive pages with the same owner and state.
    pub fn page_map(&self) -> PageMap {
        let mut runs: Vec<PageRun> = Vec::new();
        for p in 1..self.uses.len() {
            let owner = (self.owner[p] != NO_OWNER).then_some(self.owner[p]);
            let state = self.state[p];
            match runs.last_mut() {
                Some(r) if r.2 == owner && r.3 == state && r.1 + 1 == p as u32 => r.1 = p as u32,
                _ => runs.push(PageRun(p as u32, p as u32, owner, state)),
            }
        }
        PageMap {
            owners: self.owners.clone(),
            runs,
        }
    }
}

/// `[first, last, owner index or null, state]`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageRun(pub u32, pub u32, pub Option<u16>, pub PageState);

/// For every page: which object owns it and whether it is healthy, compactly
/// as runs of pages.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PageMap {
    pub owners: Vec<String>,
    pub runs: Vec<PageRun>,
}

impl PageMap {
    /// Pages per (owner name or state, state): for the Markdown summary.
    pub fn summary(&self) -> Vec<(String, PageState, u64)> {
        let mut m: std::collections::BTreeMap<(String, PageState), u64> = Default::default();
        for r in &self.runs {
            let name = match r.2 {
                Some(o) => self.owners.get(o as usize).cloned().unwrap_or_default(),
                None => String::new(),
            };
            *m.entry((name, r.3)).or_default() += (r.1 - r.0 + 1) as u64;
        }
        m.into_iter().map(|((n, s), c)| (n, s, c)).collect()
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
            // the walker's details usually name the page already
            let detail = if first.detail.starts_with("page ") {
                first.detail.clone()
            } else {
                format!("page {}: {}", first.pgno, first.detail)
            };
            let msg = if ds.len() == 1 {
                detail
            } else {
                format!("{} problems, the first: {detail}", ds.len())
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

/// Pointer-map pages of an auto_vacuum database among pages 1..=page_count
/// (every (U/5 + 1)-th page from page 2, moved on past the pending-byte page).
pub fn ptrmap_pages(usable_size: u32, page_size: u32, page_count: u32) -> Vec<u32> {
    let per = crate::format::freelist::ptrmap_entries_per_page(usable_size);
    let mut out = Vec::new();
    let mut p = 2u32;
    while p <= page_count {
        let map = crate::format::freelist::ptrmap_page_for(p, usable_size, page_size);
        if map > page_count {
            break;
        }
        if out.last() != Some(&map) {
            out.push(map);
        }
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
        assert_eq!(ptrmap_pages(1024, 1024, 500), vec![2, 207, 412]);
        // Across the pending-byte page: the same pages as the format's rule.
        for (u, ps) in [(512u32, 512u32), (480, 512), (1024, 1024)] {
            let n = crate::format::header::pending_byte_page(ps) + 300;
            let want: Vec<u32> = (1..=n)
                .filter(|&p| crate::format::freelist::is_ptrmap_page(p, u, ps))
                .collect();
            assert_eq!(ptrmap_pages(u, ps, n), want, "usable {u}");
        }
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

    #[test]
    fn page_map_runs() {
        let mut a = PageAccount::new(7);
        a.mark_tree(&TreePages {
            owner: "t".into(),
            pages: vec![1, 2, 3, 6],
            damaged: vec![3],
        });
        a.mark_special(&[4], PageState::Free);
        a.set_lost(&[7]);
        let m = a.page_map();
        assert_eq!(m.owners, vec!["t".to_string()]);
        assert_eq!(
            m.runs,
            vec![
                PageRun(1, 2, Some(0), PageState::Healthy),
                PageRun(3, 3, Some(0), PageState::Damaged),
                PageRun(4, 4, None, PageState::Free),
                PageRun(5, 5, None, PageState::Unused),
                PageRun(6, 6, Some(0), PageState::Healthy),
                PageRun(7, 7, None, PageState::Lost),
            ]
        );
    }
}
