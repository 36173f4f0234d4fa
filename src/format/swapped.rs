//! Pages that hold each other's content: two page images written each at
//! the other's place (a restore or a copy that mixed up two pages).
//!
//! Spec: <https://www.sqlite.org/fileformat2.html>, "B-tree Pages" and
//! "Cell Payload Overflow Pages". Every page is reached by a reference: a
//! b-tree root or child pointer, which expects a b-tree page (of the
//! tree's kind, table or index), or an overflow chain, which expects its
//! pages to hand on to each other by their next-page pointers and to end
//! (next pointer 0) exactly where the payload's stated size is used up.
//! A swap leaves two references that each find the wrong page: a child
//! pointer that finds an overflow page's bytes, a chain that finds a
//! b-tree page, ends too early or runs on past its payload. Two b-tree
//! pages of one kind swapped are told by depth: every leaf of a b-tree
//! lies at one depth, so the children of one interior page are all leaves
//! or all interior pages; a child pointer that finds an interior page where
//! most of its siblings find leaves (or the reverse) finds the wrong page,
//! and a tree's root, which may be either, is the usual other page of the
//! pair (an interior page swapped with a leaf that is another tree's root).
//! A reference to a page the file does not hold (it was cut short) is lost,
//! not misplaced: no swap can mend it, and it is not counted as broken.
//!
//! [`find_swaps`] reads every reference from the roots and, for the
//! references that find the wrong page, tries reading two pages each in the
//! other's place. A pair is taken only when that mends a reference and
//! every reference to either page then finds what it expects, when both
//! page images are then used (each is explained where it is read), and when
//! no other pair that mends references shares a page with it. Anything
//! less certain (a chain whose lost page could be any of several, a page
//! image nothing else explains) is left as it is, for salvage to judge.
//!
//! Work is bounded: one walk of the trees (each page read once), then at
//! most [`MAX_BROKEN`] broken references and [`MAX_TRIALS`] trial pairs.

use std::collections::{BTreeMap, BTreeSet};

use super::be_u32;
use super::btree::{PageSet, PageSource};
use super::header::pending_byte_page;
use super::page::{BtreePage, OVERFLOW_DATA_OFFSET, OVERFLOW_NEXT_OFFSET};

/// More references finding the wrong page than this: no swap is looked
/// for (the damage is of another kind).
pub const MAX_BROKEN: usize = 64;

/// At most this many page pairs are tried.
pub const MAX_TRIALS: usize = 200_000;

/// Pages no reference reaches are tried as the other page of a pair only
/// when there are at most this many.
const MAX_UNREACHED: usize = 10_000;

/// Two pages found holding each other's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    /// The lower page number.
    pub a: u32,
    /// The higher page number.
    pub b: u32,
    /// What each reference found, and what it finds with the two read in
    /// each other's place, one line.
    pub detail: String,
}

/// What a reference expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A b-tree page: of an index tree (`Some(true)`), of a table tree
    /// (`Some(false)`), or either (a root); a leaf (`leaf: Some(true)`), an
    /// interior page (`Some(false)`), or either (a root, or a child whose
    /// siblings do not agree).
    Btree {
        target: u32,
        index: Option<bool>,
        leaf: Option<bool>,
    },
    /// An overflow chain from `first` carrying `need` bytes.
    Chain { first: u32, need: u64 },
}

/// A reference and the page it was read on (0 for a root).
#[derive(Debug, Clone, Copy)]
struct Ref {
    want: Want,
    from: u32,
}

impl Ref {
    fn describe(&self) -> String {
        match self.want {
            Want::Btree { target, .. } if self.from == 0 => format!("root page {target}"),
            Want::Btree { target, .. } => format!("child page {target} of page {}", self.from),
            Want::Chain { first, .. } => {
                format!(
                    "the overflow chain from page {first} of a cell on page {}",
                    self.from
                )
            }
        }
    }
}

/// A page source that reads each pair of [`Swap`]s in each other's place:
/// the file as it was before the pages were swapped, without writing it.
pub struct PutBack<'s> {
    src: &'s dyn PageSource,
    pairs: Vec<(u32, u32)>,
}

impl<'s> PutBack<'s> {
    pub fn new(src: &'s dyn PageSource, swaps: &[Swap]) -> Self {
        PutBack {
            src,
            pairs: swaps.iter().map(|s| (s.a, s.b)).collect(),
        }
    }
}

impl PageSource for PutBack<'_> {
    fn page_size(&self) -> u32 {
        self.src.page_size()
    }
    fn usable_size(&self) -> u32 {
        self.src.usable_size()
    }
    fn page_count(&self) -> u32 {
        self.src.page_count()
    }
    fn text_encoding(&self) -> crate::format::header::TextEncoding {
        self.src.text_encoding()
    }
    fn read_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), super::FormatError> {
        let at = self
            .pairs
            .iter()
            .find_map(|&(a, b)| match pgno {
                p if p == a => Some(b),
                p if p == b => Some(a),
                _ => None,
            })
            .unwrap_or(pgno);
        self.src.read_page(at, buf)
    }
}

/// The pages as read with two of them, maybe, in each other's place.
struct View<'s> {
    src: &'s dyn PageSource,
    swap: Option<(u32, u32)>,
    page_count: u32,
    usable: u32,
    buf: Vec<u8>,
}

impl View<'_> {
    fn read(&mut self, pgno: u32) -> bool {
        let at = match self.swap {
            Some((a, b)) if pgno == a => b,
            Some((a, b)) if pgno == b => a,
            _ => pgno,
        };
        self.src.read_page(at, &mut self.buf).is_ok()
    }

    /// Whether `r` finds what it expects, and the pages it read; None when
    /// it reaches a page the file does not hold (lost, not misplaced).
    fn judge(&mut self, r: &Ref, pages: &mut Vec<u32>) -> Option<bool> {
        pages.clear();
        match r.want {
            Want::Btree {
                target,
                index,
                leaf,
            } => {
                if target == 0 || target > self.page_count {
                    return Some(false);
                }
                pages.push(target);
                if !self.read(target) {
                    return None;
                }
                Some(match BtreePage::parse(&self.buf, target, self.usable) {
                    Ok(p) => {
                        let t = p.page_type();
                        index.is_none_or(|i| i != t.is_table())
                            && leaf.is_none_or(|l| l == t.is_leaf())
                    }
                    Err(_) => false,
                })
            }
            Want::Chain { first, need } => self.chain(first, need, pages),
        }
    }

    /// An overflow chain: each page's next pointer in range, no page twice,
    /// the last page's next pointer 0 once `need` bytes are read (None when
    /// a page of it is not in the file).
    fn chain(&mut self, first: u32, need: u64, pages: &mut Vec<u32>) -> Option<bool> {
        let per_page = u64::from(self.usable)
            .saturating_sub(OVERFLOW_DATA_OFFSET as u64)
            .max(1);
        if need.div_ceil(per_page) > u64::from(self.page_count) {
            return Some(false);
        }
        let (mut next, mut remaining) = (first, need);
        while remaining > 0 {
            if next == 0 || next > self.page_count || pages.contains(&next) {
                if next != 0 && next <= self.page_count {
                    pages.push(next);
                }
                return Some(false);
            }
            pages.push(next);
            if !self.read(next) {
                return None;
            }
            remaining -= remaining.min(per_page);
            next = be_u32(&self.buf, OVERFLOW_NEXT_OFFSET).unwrap_or(u32::MAX);
        }
        Some(next == 0)
    }
}

/// Every reference of the trees rooted at `roots` (page 1 always): each
/// root and child pointer, and each cell's overflow chain. A page that is
/// not a b-tree page of its tree's kind is not walked further. A child
/// pointer expects what most of its siblings find, a leaf or an interior
/// page ([`expect_siblings_depth`]).
fn references(src: &dyn PageSource, roots: &[u32]) -> Vec<Ref> {
    let n = src.page_count();
    let usable = src.usable_size();
    let mut refs = Vec::new();
    let mut seen = PageSet::new();
    let mut todo: Vec<Ref> = std::iter::once(1)
        .chain(roots.iter().copied())
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .map(|r| Ref {
            want: Want::Btree {
                target: r,
                index: None,
                leaf: None,
            },
            from: 0,
        })
        .collect();
    let mut buf = Vec::new();
    let mut leaves: BTreeMap<u32, bool> = BTreeMap::new();
    while let Some(r) = todo.pop() {
        refs.push(r);
        let Want::Btree { target, index, .. } = r.want else {
            continue;
        };
        if target == 0 || target > n || !seen.insert(target) {
            continue;
        }
        if src.read_page(target, &mut buf).is_err() {
            continue;
        }
        let Ok(page) = BtreePage::parse(&buf, target, usable) else {
            continue;
        };
        let is_index = !page.page_type().is_table();
        if index.is_some_and(|i| i != is_index) {
            continue;
        }
        leaves.insert(target, page.page_type().is_leaf());
        let child = |c: u32| Ref {
            want: Want::Btree {
                target: c,
                index: Some(is_index),
                leaf: None,
            },
            from: target,
        };
        for i in 0..usize::from(page.cell_count()) {
            let Ok(cell) = page.cell(i) else { continue };
            if let Some(c) = cell.left_child() {
                todo.push(child(c));
            }
            if let Some(p) = cell.payload()
                && let Some(first) = p.first_overflow
            {
                refs.push(Ref {
                    want: Want::Chain {
                        first,
                        need: p.total_len.saturating_sub(p.local.len() as u64),
                    },
                    from: target,
                });
            }
        }
        if let Some(c) = page.right_child() {
            todo.push(child(c));
        }
    }
    expect_siblings_depth(&mut refs, &leaves);
    refs
}

/// Sets what each child pointer expects, a leaf or an interior page: what
/// most of its siblings (the children of the same page) find, of those
/// found as b-tree pages of their tree's kind (`leaves`: page → whether it
/// is a leaf). No expectation where they are even.
fn expect_siblings_depth(refs: &mut [Ref], leaves: &BTreeMap<u32, bool>) {
    // parent → (children found leaves, children found interior pages)
    let mut votes: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for r in refs.iter() {
        if let Want::Btree { target, .. } = r.want
            && r.from != 0
            && let Some(&leaf) = leaves.get(&target)
        {
            let v = votes.entry(r.from).or_default();
            if leaf {
                v.0 += 1;
            } else {
                v.1 += 1;
            }
        }
    }
    for r in refs.iter_mut() {
        if let Want::Btree { leaf, .. } = &mut r.want
            && r.from != 0
            && let Some(&(l, i)) = votes.get(&r.from)
            && l != i
        {
            *leaf = Some(l > i);
        }
    }
}

/// The pairs of pages that hold each other's content (see the module
/// documentation), in page order. Page 1 and the pending-byte page are
/// never among them.
pub fn find_swaps(src: &dyn PageSource, roots: &[u32]) -> Vec<Swap> {
    let refs = references(src, roots);
    let mut view = View {
        src,
        swap: None,
        page_count: src.page_count(),
        usable: src.usable_size(),
        buf: Vec::new(),
    };
    // which references read each page, and which find the wrong page
    let mut readers: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    let mut broken = Vec::new();
    let mut reached = PageSet::new();
    let mut pages = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        // a page the file does not hold: lost, no swap mends it
        let ok = view.judge(r, &mut pages).unwrap_or(true);
        for &p in &pages {
            reached.insert(p);
            readers.entry(p).or_default().push(i);
        }
        if !ok {
            broken.push(i);
            if broken.len() > MAX_BROKEN {
                return Vec::new();
            }
        }
    }
    if broken.is_empty() {
        return Vec::new();
    }
    let excluded = |p: u32| p <= 1 || p == pending_byte_page(src.page_size());
    let suspects: BTreeSet<u32> = broken
        .iter()
        .flat_map(|&i| readers.iter().filter(move |(_, v)| v.contains(&i)))
        .map(|(&p, _)| p)
        .filter(|&p| !excluded(p))
        .collect();
    let unreached: Vec<u32> = (2..=view.page_count)
        .filter(|&p| !reached.contains(p) && !excluded(p))
        .take(MAX_UNREACHED + 1)
        .collect();
    // a root may be a leaf or an interior page: the other page of a pair
    // whose child pointer finds the wrong one of the two
    let mut others: BTreeSet<u32> = suspects.clone();
    others.extend(roots.iter().copied().filter(|&r| !excluded(r)));
    if unreached.len() <= MAX_UNREACHED {
        others.extend(unreached);
    }
    let mut found: Vec<(u32, u32, Vec<usize>)> = Vec::new();
    let mut trials = 0usize;
    for &p in &suspects {
        for &q in &others {
            if q == p || (suspects.contains(&q) && q < p) {
                continue;
            }
            trials += 1;
            if trials > MAX_TRIALS {
                return Vec::new();
            }
            if let Some(mended) = trial(&mut view, &refs, &readers, p, q) {
                found.push((p.min(q), p.max(q), mended));
            }
        }
    }
    // a page in two pairs that would each mend references: neither is sure
    let mut uses: BTreeMap<u32, usize> = BTreeMap::new();
    for (a, b, _) in &found {
        *uses.entry(*a).or_default() += 1;
        *uses.entry(*b).or_default() += 1;
    }
    let mut out: Vec<Swap> = found
        .into_iter()
        .filter(|(a, b, _)| uses[a] == 1 && uses[b] == 1)
        .map(|(a, b, mended)| {
            let what: Vec<String> = mended.iter().map(|&i| refs[i].describe()).collect();
            Swap {
                a,
                b,
                detail: format!(
                    "pages {a} and {b} hold each other's content: read in each other's place, they mend {} (each then finds what it expects), and every other reference to either page still finds what it expects",
                    what.join(" and ")
                ),
            }
        })
        .collect();
    out.sort_by_key(|s| (s.a, s.b));
    out
}

/// Reads `p` and `q` each in the other's place: the broken references it
/// mends, when every reference to either page then finds what it expects,
/// at least one was broken, and both page images are read by some
/// reference; else None.
fn trial(
    view: &mut View<'_>,
    refs: &[Ref],
    readers: &BTreeMap<u32, Vec<usize>>,
    p: u32,
    q: u32,
) -> Option<Vec<usize>> {
    let mut affected: Vec<usize> = [p, q]
        .iter()
        .filter_map(|x| readers.get(x))
        .flatten()
        .copied()
        .collect();
    affected.sort_unstable();
    affected.dedup();
    let mut before = Vec::new();
    let mut was_broken = Vec::new();
    view.swap = None;
    for &i in &affected {
        if view.judge(&refs[i], &mut before) == Some(false) {
            was_broken.push(i);
        }
    }
    if was_broken.is_empty() {
        return None;
    }
    view.swap = Some((p, q));
    let (mut read_p, mut read_q) = (false, false);
    let mut pages = Vec::new();
    let mut ok = true;
    for &i in &affected {
        if view.judge(&refs[i], &mut pages) != Some(true) {
            ok = false;
            break;
        }
        read_p |= pages.contains(&p);
        read_q |= pages.contains(&q);
    }
    view.swap = None;
    (ok && read_p && read_q).then_some(was_broken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::btree::MemoryPages;
    use crate::format::btree::test_image::{PS, image as blank, put_page};

    /// A table leaf (page 2) with one row whose payload spills onto pages
    /// 3 and 4, and an index (root 5, an interior page) whose children are
    /// leaves 6 and 7. Page 1 is the schema's leaf.
    fn image() -> Vec<u8> {
        let mut img = blank(7);
        put_page(&mut img, 1, 13, &[], None);
        // a 1000-byte payload: local part per the spec's formulas
        let usable = PS;
        let total = 1000usize;
        let m = (usable - 12) * 32 / 255 - 23;
        let k = m + (total - m) % (usable - 4);
        let local = if k <= usable - 35 { k } else { m };
        let mut cell = Vec::new();
        crate::format::varint::write_varint(total as u64, &mut cell);
        crate::format::varint::write_varint(1, &mut cell);
        cell.extend(std::iter::repeat_n(b'a', local));
        cell.extend_from_slice(&3u32.to_be_bytes());
        put_page(&mut img, 2, 13, &[cell], None);
        let rest = total - local;
        let per = usable - 4;
        assert!(rest > per && rest <= 2 * per, "two overflow pages");
        let at = |p: usize| (p - 1) * PS;
        img[at(3)..at(3) + 4].copy_from_slice(&4u32.to_be_bytes());
        img[at(3) + 4..at(3) + PS].fill(b'b');
        img[at(4)..at(4) + 4].copy_from_slice(&0u32.to_be_bytes());
        img[at(4) + 4..at(4) + 4 + rest - per].fill(b'c');
        let mut divider = 6u32.to_be_bytes().to_vec();
        divider.extend_from_slice(&[4, 3, 1, 9, 5]);
        put_page(&mut img, 5, 2, &[divider], Some(7));
        put_page(&mut img, 6, 10, &[vec![4, 3, 1, 9, 1]], None);
        put_page(&mut img, 7, 10, &[vec![4, 3, 1, 9, 9]], None);
        img
    }

    fn swapped(mut img: Vec<u8>, a: usize, b: usize) -> Vec<u8> {
        let (x, y) = ((a - 1) * PS, (b - 1) * PS);
        let pa = img[x..x + PS].to_vec();
        let pb = img[y..y + PS].to_vec();
        img[x..x + PS].copy_from_slice(&pb);
        img[y..y + PS].copy_from_slice(&pa);
        img
    }

    fn swaps(img: Vec<u8>) -> Vec<(u32, u32)> {
        swaps_from(img, &[2, 5])
    }

    /// The pairs found in `img` from the trees rooted at `roots`.
    fn swaps_from(img: Vec<u8>, roots: &[u32]) -> Vec<(u32, u32)> {
        let src = MemoryPages::new(img).unwrap();
        find_swaps(&src, roots).iter().map(|s| (s.a, s.b)).collect()
    }

    #[test]
    fn a_sound_file_has_no_swaps() {
        assert_eq!(swaps(image()), vec![]);
    }

    #[test]
    fn an_overflow_page_swapped_with_an_index_leaf_is_found() {
        assert_eq!(swaps(swapped(image(), 4, 7)), vec![(4, 7)]);
        assert_eq!(swaps(swapped(image(), 3, 6)), vec![(3, 6)]);
    }

    #[test]
    fn two_pages_of_one_chain_swapped_are_found() {
        assert_eq!(swaps(swapped(image(), 3, 4)), vec![(3, 4)]);
    }

    /// Two indexes: A (root 5, an interior page over leaves 6, 7 and 8)
    /// and B (root 9, an interior page over leaves 10 and 11); page 2 a
    /// table leaf, page 1 the schema's leaf.
    fn two_indexes() -> Vec<u8> {
        let mut img = blank(11);
        put_page(&mut img, 1, 13, &[], None);
        put_page(&mut img, 2, 13, &[], None);
        let divider = |child: u32, key: u8| {
            let mut c = child.to_be_bytes().to_vec();
            c.extend_from_slice(&[4, 3, 1, 9, key]);
            c
        };
        let leaf = |key: u8| vec![4, 3, 1, 9, key];
        put_page(&mut img, 5, 2, &[divider(6, 2), divider(7, 4)], Some(8));
        put_page(&mut img, 6, 10, &[leaf(1)], None);
        put_page(&mut img, 7, 10, &[leaf(3)], None);
        put_page(&mut img, 8, 10, &[leaf(5)], None);
        put_page(&mut img, 9, 2, &[divider(10, 2)], Some(11));
        put_page(&mut img, 10, 10, &[leaf(1)], None);
        put_page(&mut img, 11, 10, &[leaf(3)], None);
        img
    }

    fn two_index_swaps(img: Vec<u8>) -> Vec<(u32, u32)> {
        swaps_from(img, &[2, 5, 9])
    }

    #[test]
    fn a_leaf_swapped_with_another_trees_interior_root_is_found() {
        assert_eq!(two_index_swaps(two_indexes()), vec![]);
        // index A's child 8 finds B's interior page where its siblings
        // find leaves; B's root finds a leaf
        assert_eq!(two_index_swaps(swapped(two_indexes(), 8, 9)), vec![(8, 9)]);
        assert_eq!(two_index_swaps(swapped(two_indexes(), 6, 9)), vec![(6, 9)]);
    }

    #[test]
    fn siblings_that_do_not_agree_expect_nothing() {
        // B's root over one leaf and one interior page (A's root): even,
        // so neither child is wrong by depth, and no swap is taken
        assert_eq!(two_index_swaps(swapped(two_indexes(), 5, 10)), vec![]);
    }

    /// The pages of `inner`, in a file cut short: `count` pages counted,
    /// those past the image's end unreadable.
    struct Cut {
        inner: MemoryPages,
        count: u32,
    }

    impl PageSource for Cut {
        fn page_size(&self) -> u32 {
            self.inner.page_size()
        }
        fn usable_size(&self) -> u32 {
            self.inner.usable_size()
        }
        fn page_count(&self) -> u32 {
            self.count
        }
        fn text_encoding(&self) -> crate::format::header::TextEncoding {
            self.inner.text_encoding()
        }
        fn read_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), super::super::FormatError> {
            self.inner.read_page(pgno, buf)
        }
    }

    #[test]
    fn references_to_pages_cut_off_are_lost_not_broken() {
        // a table (root 12) whose 70 leaves lay past the cut: more than
        // MAX_BROKEN references that no swap could mend, beside A and B's
        // swap
        let mut img = swapped(two_indexes(), 8, 9);
        img.extend(std::iter::repeat_n(0, PS));
        let cells: Vec<Vec<u8>> = (0..70u32)
            .map(|i| crate::format::btree::test_image::interior_cell(100 + i, i64::from(i)))
            .collect();
        put_page(&mut img, 12, 5, &cells, Some(170));
        let src = Cut {
            inner: MemoryPages::new(img).unwrap(),
            count: 200,
        };
        let found: Vec<(u32, u32)> = find_swaps(&src, &[2, 5, 9, 12])
            .iter()
            .map(|s| (s.a, s.b))
            .collect();
        assert_eq!(found, vec![(8, 9)]);
    }

    #[test]
    fn a_lost_page_that_nothing_else_explains_is_left_alone() {
        // page 3 zeroed: the chain ends a page early, and no page holds
        // what page 3 held
        let mut img = image();
        img[2 * PS..3 * PS].fill(0);
        assert_eq!(swaps(img), vec![]);
        // page 4 overwritten, its image found on two pages no reference
        // reaches: either would end the chain, and neither is read in
        // the other's place by anything, so neither is taken
        let mut img = image();
        img.extend_from_within(3 * PS..4 * PS);
        img.extend_from_within(3 * PS..4 * PS);
        img[3 * PS..4 * PS].fill(0xff);
        assert_eq!(swaps(img), vec![]);
    }
}
