//! Page-level edits of the repair's work copy (never of the original): a
//! damaged index's root rewritten as an empty leaf, pages zeroed and put on
//! the freelist, the freelist and pointer maps written anew. Afterwards the
//! copy is a sound database that SQLite can rebuild indexes in without
//! reading a damaged page (ARCHITECTURE.md, "Why repair works on a copy
//! page by page").
//!
//! Offsets and page images come from `format/` (the file-format constants,
//! `format::accounting`); this module only does the I/O on the copy.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use super::plan::{PageLists, Plan};
use crate::format::FormatError;
use crate::format::accounting;
use crate::format::btree::{self, PageSource, TableItem};
use crate::format::header::{
    DatabaseHeader, FIRST_FREELIST_TRUNK_OFFSET, FREELIST_COUNT_OFFSET, HEADER_SIZE,
    INCREMENTAL_VACUUM_OFFSET, LARGEST_ROOT_PAGE_OFFSET, PAGE_COUNT_OFFSET, TextEncoding,
};
use crate::format::record::{Record, ValueRef};
use crate::format::varint::write_varint;

/// Column of `rootpage` in a sqlite_schema row (type, name, tbl_name,
/// rootpage, sql).
const SCHEMA_ROOTPAGE_COLUMN: usize = 3;

/// The work copy, opened for page writes (never through a symbolic link),
/// with its header as read when opened.
pub struct WorkCopy {
    file: File,
    /// The 100 header bytes; edited in memory, written by [`Self::write_header`].
    head: Vec<u8>,
    header: DatabaseHeader,
    pages: u32,
}

/// A work copy opened for reading and writing pages, never through a
/// symbolic link.
fn open_for_pages(copy: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(copy)
        .with_context(|| format!("{}: cannot open", copy.display()))
}

impl WorkCopy {
    pub fn open(copy: &Path) -> Result<WorkCopy> {
        let file = open_for_pages(copy)?;
        let mut head = vec![0u8; HEADER_SIZE];
        file.read_exact_at(&mut head, 0)
            .with_context(|| format!("{}: reading the header", copy.display()))?;
        let header =
            DatabaseHeader::parse(&head).map_err(|e| anyhow!("{}: {e}", copy.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("{}: cannot stat", copy.display()))?
            .len();
        // the work copy is whole: the file's own length decides
        let pages = (len / u64::from(header.page_size)).min(u64::from(u32::MAX)) as u32;
        Ok(WorkCopy {
            file,
            head,
            header,
            pages,
        })
    }

    fn write_page(&self, pgno: u32, page: &[u8]) -> Result<()> {
        self.file
            .write_all_at(
                page,
                (u64::from(pgno) - 1) * u64::from(self.header.page_size),
            )
            .with_context(|| format!("writing page {pgno} of the work copy"))
    }

    /// Rewrites `root` as an empty leaf index b-tree page.
    fn empty_index_root(&self, root: u32) -> Result<()> {
        self.write_page(root, &self.empty_index_leaf())
    }

    fn zero(&self, pages: &[u32]) -> Result<()> {
        let zero = vec![0u8; self.header.page_size as usize];
        for &p in pages {
            self.write_page(p, &zero)?;
        }
        Ok(())
    }

    fn set_u32(&mut self, offset: usize, value: u32) {
        self.head[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
    }

    /// Chains `pages` onto the freelist as new trunks; the header's first
    /// trunk and count are updated in memory.
    fn append_to_freelist(&mut self, pages: &[u32]) -> Result<()> {
        let (first, trunks) =
            accounting::freelist_images(pages, self.header.page_size, self.header.usable_size());
        if trunks.is_empty() {
            return Ok(());
        }
        // the last new trunk continues with the old freelist
        let old = self.header.first_freelist_trunk;
        let last = trunks.len() - 1;
        for (k, (pgno, mut img)) in trunks.into_iter().enumerate() {
            if k == last {
                img[0..4].copy_from_slice(&old.to_be_bytes());
            }
            self.write_page(pgno, &img)?;
        }
        let count = self.header.freelist_count + pages.len() as u32;
        self.set_u32(FIRST_FREELIST_TRUNK_OFFSET, first);
        self.set_u32(FREELIST_COUNT_OFFSET, count);
        self.header.first_freelist_trunk = first;
        self.header.freelist_count = count;
        Ok(())
    }

    /// The root pages the schema table (page 1) names, read page by page.
    fn schema_roots(&self) -> Result<Vec<u32>> {
        let mut roots = Vec::new();
        let mut rec = Record::default();
        let mut bad = None;
        btree::walk_table(self, 1, &mut |item| match item {
            TableItem::Row { payload, .. } => {
                if rec.parse(payload).is_ok()
                    && let Some(ValueRef::Integer(r)) = rec.get(payload, SCHEMA_ROOTPAGE_COLUMN)
                    && let Ok(r) = u32::try_from(r)
                    && r > 0
                {
                    roots.push(r);
                }
            }
            TableItem::RowDamaged { rowid, .. } => bad = Some(format!("row {rowid} is damaged")),
            TableItem::Damage(d) => bad = Some(d.detail),
        });
        if let Some(why) = bad {
            bail!("the schema table of the work copy cannot be read whole: {why}");
        }
        Ok(roots)
    }

    /// Writes the freelist (and, in an auto_vacuum file, every pointer-map
    /// page) anew from the b-trees of the copy: every page no tree uses is
    /// free. Refused when a tree cannot be walked whole: its pages would be
    /// taken for free ones. Whether the file has pointer maps is the pages'
    /// word where they give one (`accounting::pointer_maps_shown`), else the
    /// header's; the header's vacuum fields are then set to match: the
    /// largest root page exactly the schema's (SQLite's integrity_check
    /// demands it), or, without pointer maps, 0 and no incremental flag.
    pub(super) fn rebuild_page_lists(&mut self) -> Result<RelistOutcome> {
        let roots = self.schema_roots()?;
        let mut roles = accounting::page_roles(self, &roots);
        if let Some(d) = roles.damage.first() {
            bail!(
                "the freelist cannot be rebuilt: a b-tree of the work copy is damaged ({})",
                d.detail
            );
        }
        let (ps, usable) = (self.header.page_size, self.header.usable_size());
        let auto_vacuum = accounting::pointer_maps_shown(self, &roles)
            .unwrap_or(self.header.largest_root_page != 0);
        let free = roles.unused(ps, usable, auto_vacuum);
        roles.mark_free(&free);
        let (first, trunks) = accounting::freelist_images(&free, ps, usable);
        for (pgno, img) in &trunks {
            self.write_page(*pgno, img)?;
        }
        self.set_u32(FIRST_FREELIST_TRUNK_OFFSET, first);
        self.set_u32(FREELIST_COUNT_OFFSET, free.len() as u32);
        self.header.first_freelist_trunk = first;
        self.header.freelist_count = free.len() as u32;
        let mut maps = 0;
        // SQLite puts new roots after the largest one, and its
        // integrity_check wants the header to name exactly that page
        let largest = if auto_vacuum {
            roots.iter().copied().max().unwrap_or(1).max(1)
        } else {
            0
        };
        if auto_vacuum {
            for (pgno, img) in accounting::ptrmap_images(&roles, self.pages, ps, usable) {
                self.write_page(pgno, &img)?;
                maps += 1;
            }
        } else if self.header.incremental_vacuum != 0 {
            // the incremental-vacuum flag means nothing without pointer
            // maps (SQLite sets it only with them): a damaged byte there
            self.set_u32(INCREMENTAL_VACUUM_OFFSET, 0);
            self.header.incremental_vacuum = 0;
        }
        if self.header.largest_root_page != largest {
            self.set_u32(LARGEST_ROOT_PAGE_OFFSET, largest);
            self.header.largest_root_page = largest;
        }
        Ok(RelistOutcome {
            free_pages: free.len(),
            ptrmap_pages: maps,
        })
    }

    /// The header as it stands (with the edits made in memory).
    pub(super) fn header(&self) -> &DatabaseHeader {
        &self.header
    }

    /// Rewrites page 1 after the header as an empty table leaf: the schema
    /// table with no rows.
    pub(super) fn empty_schema_page(&self) -> Result<()> {
        let ps = self.header.page_size as usize;
        let mut page = vec![0u8; ps];
        page[..HEADER_SIZE].copy_from_slice(&self.head);
        page[HEADER_SIZE] = 0x0d; // leaf table b-tree page
        let usable = self.header.usable_size();
        let start = if usable >= 65536 { 0 } else { usable as u16 };
        page[HEADER_SIZE + 5..HEADER_SIZE + 7].copy_from_slice(&start.to_be_bytes());
        self.write_page(1, &page)
    }

    /// Appends `page` (one page image) to the file; the header's page count
    /// follows (in memory). Returns its page number.
    pub(super) fn append_page(&mut self, page: &[u8]) -> Result<u32> {
        let pgno = self.pages + 1;
        self.write_page(pgno, page)?;
        self.pages = pgno;
        self.set_u32(PAGE_COUNT_OFFSET, pgno);
        self.header.page_count = pgno;
        Ok(pgno)
    }

    /// An empty leaf page image of an index b-tree.
    pub(super) fn empty_index_leaf(&self) -> Vec<u8> {
        let mut page = vec![0u8; self.header.page_size as usize];
        page[0] = 0x0a; // leaf index b-tree page
        let usable = self.header.usable_size();
        let start = if usable >= 65536 { 0 } else { usable as u16 };
        page[5..7].copy_from_slice(&start.to_be_bytes());
        page
    }

    /// A leaf page image of a table b-tree holding `rows` (rowid and
    /// record, in rowid order), laid out as SQLite lays out a leaf: cell
    /// pointers after the header, cells packed from the end. An error when
    /// a record would need overflow pages or the rows do not fit.
    fn table_leaf(&self, rows: &[(i64, Vec<u8>)]) -> Result<Vec<u8>> {
        let usable = self.header.usable_size() as usize;
        let mut page = vec![0u8; self.header.page_size as usize];
        page[0] = 0x0d; // leaf table b-tree page
        let mut end = usable;
        for (i, (rowid, record)) in rows.iter().enumerate() {
            // a table leaf keeps at most usable - 35 bytes of a payload
            if record.len() + 35 > usable {
                bail!(
                    "row {rowid}: a record of {} bytes needs overflow pages",
                    record.len()
                );
            }
            let mut cell = Vec::with_capacity(record.len() + 18);
            write_varint(record.len() as u64, &mut cell);
            write_varint(*rowid as u64, &mut cell);
            cell.extend_from_slice(record);
            let pointers_end = 8 + 2 * (i + 1);
            if end < pointers_end + cell.len() {
                bail!("{} rows do not fit in one page", rows.len());
            }
            end -= cell.len();
            page[end..end + cell.len()].copy_from_slice(&cell);
            page[8 + 2 * i..pointers_end].copy_from_slice(&(end as u16).to_be_bytes());
        }
        page[3..5].copy_from_slice(&(rows.len() as u16).to_be_bytes());
        // a content area starting at 65536 is written as 0
        page[5..7].copy_from_slice(&((end % 65536) as u16).to_be_bytes());
        Ok(page)
    }

    /// An empty freelist in the header (in memory): its pages are unlisted
    /// until the page lists are written anew.
    pub(super) fn clear_freelist(&mut self) {
        self.set_u32(FIRST_FREELIST_TRUNK_OFFSET, 0);
        self.set_u32(FREELIST_COUNT_OFFSET, 0);
        self.header.first_freelist_trunk = 0;
        self.header.freelist_count = 0;
    }

    /// Page 1 holds the header: rewrites just those 100 bytes.
    pub(super) fn write_header(&self) -> Result<()> {
        self.file
            .write_all_at(&self.head, 0)
            .context("writing the header of the work copy")
    }

    pub(super) fn sync(&self) -> Result<()> {
        self.file.sync_all().context("syncing the work copy")
    }
}

impl PageSource for WorkCopy {
    fn page_size(&self) -> u32 {
        self.header.page_size
    }

    fn usable_size(&self) -> u32 {
        self.header.usable_size()
    }

    fn page_count(&self) -> u32 {
        self.pages
    }

    fn text_encoding(&self) -> TextEncoding {
        self.header.text_encoding
    }

    fn read_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), FormatError> {
        if pgno == 0 || pgno > self.pages {
            return Err(FormatError::OutOfBounds {
                what: format!("page {pgno} of {}", self.pages),
            });
        }
        buf.resize(self.header.page_size as usize, 0);
        self.file
            .read_exact_at(
                buf,
                (u64::from(pgno) - 1) * u64::from(self.header.page_size),
            )
            .map_err(|e| FormatError::Io {
                detail: e.to_string(),
            })
    }
}

/// The rows a rewritten table leaf holds: (rowid, record), in rowid order.
pub type LeafRows = Vec<(i64, Vec<u8>)>;

/// Rewrites each page of `leaves` as a table leaf holding the rows given
/// (see `WorkCopy::table_leaf`): the pages `rebuild/in_place.rs` puts where
/// damaged leaves were. Every image is made before the first is written.
pub fn table_leaves(copy: &Path, leaves: &[(u32, LeafRows)]) -> Result<()> {
    let work = WorkCopy::open(copy)?;
    let mut images = Vec::with_capacity(leaves.len());
    for (pgno, rows) in leaves {
        if *pgno < 2 || *pgno > work.pages {
            bail!("page {pgno} is not a page of the work copy");
        }
        images.push((
            *pgno,
            work.table_leaf(rows)
                .with_context(|| format!("page {pgno}"))?,
        ));
    }
    for (pgno, image) in images {
        work.write_page(pgno, &image)?;
    }
    Ok(())
}

/// Puts back in its place each pair of pages found holding each other's
/// content (`format::swapped`): page `a`'s image written at `b` and `b`'s
/// at `a`, in the rebuild's own copy of the original (never the original:
/// the copy is the rebuild's source). `page_size` is the one the pages are
/// read under (a damaged header's may differ). Both images are read before
/// either is written.
pub fn swap_pages(copy: &Path, page_size: u32, pairs: &[(u32, u32)]) -> Result<()> {
    if let Some(&(a, b)) = pairs.iter().find(|&&(a, b)| a < 2 || b < 2) {
        bail!("page {} cannot be moved", a.min(b));
    }
    exchange(copy, page_size, pairs)
}

/// Page 1's image, found at page `at` while page 1 holds `at`'s (a file
/// SQLite refuses for it, `frame::page_one_elsewhere`), and `at`'s put
/// back each in its place, in a scratch copy of the original.
pub fn put_back_page_one(copy: &Path, page_size: u32, at: u32) -> Result<()> {
    exchange(copy, page_size, &[(1, at)])
}

/// Each pair's two page images written each at the other's place (both
/// read before either is written).
fn exchange(copy: &Path, page_size: u32, pairs: &[(u32, u32)]) -> Result<()> {
    let file = open_for_pages(copy)?;
    let at = |p: u32| (u64::from(p) - 1) * u64::from(page_size);
    let mut a_img = vec![0u8; page_size as usize];
    let mut b_img = vec![0u8; page_size as usize];
    for &(a, b) in pairs {
        file.read_exact_at(&mut a_img, at(a))
            .with_context(|| format!("{}: reading page {a}", copy.display()))?;
        file.read_exact_at(&mut b_img, at(b))
            .with_context(|| format!("{}: reading page {b}", copy.display()))?;
        file.write_all_at(&b_img, at(a))
            .with_context(|| format!("{}: writing page {a}", copy.display()))?;
        file.write_all_at(&a_img, at(b))
            .with_context(|| format!("{}: writing page {b}", copy.display()))?;
    }
    Ok(())
}

/// What writing the page lists anew did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelistOutcome {
    pub free_pages: usize,
    pub ptrmap_pages: usize,
}

/// Every index to rebuild is emptied (its root rewritten as an empty leaf)
/// and its other pages, with the pages no object owns, are zeroed and put
/// on the freelist — appended to it, or with the freelist and pointer maps
/// written anew when the plan says so. Afterwards SQLite can rebuild those
/// indexes without reading a damaged page.
pub fn empty_and_free(copy: &Path, plan: &Plan) -> Result<Option<RelistOutcome>> {
    let mut work = WorkCopy::open(copy)?;
    for &root in &plan.empty_roots {
        if root >= 2 {
            work.empty_index_root(root)?;
        }
    }
    let freed: Vec<u32> = plan
        .free_pages
        .iter()
        .copied()
        .filter(|&p| p >= 2 && !plan.empty_roots.contains(&p))
        .collect();
    work.zero(&freed)?;
    let relisted = match &plan.page_lists {
        PageLists::Append => {
            work.append_to_freelist(&freed)?;
            None
        }
        PageLists::Rebuild { .. } => Some(work.rebuild_page_lists()?),
    };
    work.write_header()?;
    work.sync()?;
    Ok(relisted)
}
