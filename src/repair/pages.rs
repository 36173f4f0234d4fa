//! Page-level edits of the repair's work copy (never of the original): a
//! damaged index's root rewritten as an empty leaf, pages zeroed and put on
//! the freelist. Afterwards the copy is a sound database that SQLite can
//! rebuild indexes in without reading a damaged page (ARCHITECTURE.md, "Why
//! repair works on a copy page by page").
//!
//! Offsets come from `format/` (the file-format constants); this module only
//! does the I/O on the copy.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result, anyhow};

use super::plan::Plan;
use crate::format::header::{
    DatabaseHeader, FIRST_FREELIST_TRUNK_OFFSET, FREELIST_COUNT_OFFSET, HEADER_SIZE,
};

/// The work copy, opened for page writes (never through a symbolic link),
/// with its header as read when opened.
pub struct WorkCopy {
    file: File,
    /// The 100 header bytes; edited in memory, written by [`Self::write_header`].
    head: Vec<u8>,
    header: DatabaseHeader,
}

impl WorkCopy {
    pub fn open(copy: &Path) -> Result<WorkCopy> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(copy)
            .with_context(|| format!("{}: cannot open", copy.display()))?;
        let mut head = vec![0u8; HEADER_SIZE];
        file.read_exact_at(&mut head, 0)
            .with_context(|| format!("{}: reading the header", copy.display()))?;
        let header =
            DatabaseHeader::parse(&head).map_err(|e| anyhow!("{}: {e}", copy.display()))?;
        Ok(WorkCopy { file, head, header })
    }

    fn page_size(&self) -> u64 {
        u64::from(self.header.page_size)
    }

    fn write_page(&self, pgno: u32, page: &[u8]) -> Result<()> {
        self.file
            .write_all_at(page, (u64::from(pgno) - 1) * self.page_size())
            .with_context(|| format!("writing page {pgno} of the work copy"))
    }

    /// Rewrites `root` as an empty leaf index b-tree page.
    fn empty_index_root(&self, root: u32) -> Result<()> {
        let mut page = vec![0u8; self.page_size() as usize];
        page[0] = 0x0a; // leaf index b-tree page
        // cell content starts at the end of the usable area (0 means 65536)
        let usable = self.header.usable_size();
        let start = if usable >= 65536 { 0 } else { usable as u16 };
        page[5..7].copy_from_slice(&start.to_be_bytes());
        self.write_page(root, &page)
    }

    /// Zeroes `pages` and chains them onto the freelist as new trunks (each
    /// holding at most usable/4 - 8 leaves, what SQLite itself writes); the
    /// header's first trunk and count are updated in memory.
    fn free(&mut self, pages: &[u32]) -> Result<()> {
        let ps = self.page_size() as usize;
        let zero = vec![0u8; ps];
        for &p in pages {
            self.write_page(p, &zero)?;
        }
        let per_trunk = (self.header.usable_size() as usize / 4)
            .saturating_sub(8)
            .max(1);
        let mut next = self.header.first_freelist_trunk;
        for chunk in pages.chunks(per_trunk + 1) {
            let trunk = chunk[0];
            let leaves = &chunk[1..];
            let mut page = vec![0u8; ps];
            page[0..4].copy_from_slice(&next.to_be_bytes());
            page[4..8].copy_from_slice(&(leaves.len() as u32).to_be_bytes());
            for (i, l) in leaves.iter().enumerate() {
                page[8 + i * 4..12 + i * 4].copy_from_slice(&l.to_be_bytes());
            }
            self.write_page(trunk, &page)?;
            next = trunk;
        }
        let count = self.header.freelist_count + pages.len() as u32;
        self.head[FIRST_FREELIST_TRUNK_OFFSET..FIRST_FREELIST_TRUNK_OFFSET + 4]
            .copy_from_slice(&next.to_be_bytes());
        self.head[FREELIST_COUNT_OFFSET..FREELIST_COUNT_OFFSET + 4]
            .copy_from_slice(&count.to_be_bytes());
        self.header.first_freelist_trunk = next;
        self.header.freelist_count = count;
        Ok(())
    }

    /// Page 1 holds the header: rewrites just those 100 bytes.
    fn write_header(&self) -> Result<()> {
        self.file
            .write_all_at(&self.head, 0)
            .context("writing the header of the work copy")
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_all().context("syncing the work copy")
    }
}

/// Every index to rebuild is emptied (its root rewritten as an empty leaf)
/// and its other pages, with the pages no object owns, are zeroed and put on
/// the freelist. Afterwards SQLite can rebuild those indexes without reading
/// a damaged page.
pub fn empty_and_free(copy: &Path, plan: &Plan) -> Result<()> {
    let mut work = WorkCopy::open(copy)?;
    for &root in &plan.empty_roots {
        if root >= 2 {
            work.empty_index_root(root)?;
        }
    }
    let pages: Vec<u32> = plan
        .free_pages
        .iter()
        .copied()
        .filter(|&p| p >= 2 && !plan.empty_roots.contains(&p))
        .collect();
    if !pages.is_empty() {
        work.free(&pages)?;
        work.write_header()?;
    }
    work.sync()
}
