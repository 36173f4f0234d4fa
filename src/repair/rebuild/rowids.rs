//! The rowids each rebuilt table was given (see [`Rowids`]).

/// The rowids a table was given, as salvage met them. Naming a table's
/// lost rows (`restore.rs`) asks about every entry of every index — rowids
/// in random order, millions of them — so once the last row is in, the set
/// becomes a bitmap over its range when that is dense (a bit per rowid:
/// 125 KiB for a million, within the processor's cache), else a sorted
/// list searched by bisection.
#[derive(Debug, Default)]
pub(crate) struct Rowids {
    v: Vec<i64>,
    unsorted: bool,
    /// After `seal`, for a dense set: the smallest rowid and one bit per
    /// rowid from it.
    bits: Option<(i64, Vec<u64>)>,
}

impl Rowids {
    /// At most this many bits of bitmap per rowid held.
    const DENSE: u64 = 64;

    pub(super) fn extend(&mut self, rowid: Option<i64>) {
        let Some(r) = rowid else { return };
        if self.v.last().is_some_and(|&last| r <= last) {
            self.unsorted = true;
        }
        self.v.push(r);
    }

    /// Called once after the last row.
    pub(super) fn seal(&mut self) {
        if self.unsorted {
            self.v.sort_unstable();
            self.v.dedup();
            self.unsorted = false;
        }
        let (Some(&lo), Some(&hi)) = (self.v.first(), self.v.last()) else {
            return;
        };
        let span = hi.abs_diff(lo);
        if span / Self::DENSE > self.v.len() as u64 {
            return;
        }
        let mut bits = vec![0u64; (span / 64 + 1) as usize];
        for &r in &self.v {
            let k = r.abs_diff(lo);
            bits[(k / 64) as usize] |= 1 << (k % 64);
        }
        self.bits = Some((lo, bits));
        self.v = Vec::new();
    }

    pub(crate) fn contains(&self, rowid: &i64) -> bool {
        if let Some((lo, bits)) = &self.bits {
            if rowid < lo {
                return false;
            }
            let k = rowid.abs_diff(*lo);
            return bits
                .get((k / 64) as usize)
                .is_some_and(|w| w & (1 << (k % 64)) != 0);
        }
        if self.unsorted {
            return self.v.contains(rowid);
        }
        self.v.binary_search(rowid).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Rowids;

    fn set(rowids: &[i64]) -> Rowids {
        let mut s = Rowids::default();
        for &r in rowids {
            s.extend(Some(r));
        }
        s.seal();
        s
    }

    #[test]
    fn dense_and_sparse_sets_answer_alike() {
        let dense = set(&[5, 3, 4, 9, 70, 64, 63, -2]);
        assert!(dense.bits.is_some());
        let sparse = set(&[1, i64::MAX, i64::MIN, 1 << 40]);
        assert!(sparse.bits.is_none());
        for r in [-3, -2, -1, 3, 4, 5, 6, 9, 10, 62, 63, 64, 65, 70, 71, 1000] {
            let want = [5, 3, 4, 9, 70, 64, 63, -2].contains(&r);
            assert_eq!(dense.contains(&r), want, "{r}");
        }
        for r in [
            i64::MIN,
            i64::MIN + 1,
            0,
            1,
            2,
            1 << 40,
            i64::MAX - 1,
            i64::MAX,
        ] {
            let want = [1, i64::MAX, i64::MIN, 1 << 40].contains(&r);
            assert_eq!(sparse.contains(&r), want, "{r}");
        }
        assert!(!set(&[]).contains(&0));
    }
}
