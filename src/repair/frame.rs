//! Step 3a of a repair, for a file SQLite refuses as a whole: its frame —
//! the database header, the schema table — mended on a copy from the
//! newest good snapshot, so that the copy can be checked and the rest of
//! the repair planned from it. Every page after the frame stays as it was:
//! the rows are the damaged file's own, never the snapshot's.
//!
//! * The header is the snapshot's, once a sample of the pages reads as
//!   well-formed b-tree pages under its page size and reserved bytes; the
//!   page count is the file's length.
//! * The schema table is written anew (by SQLite, with writable_schema)
//!   from the snapshot's schema, each object pointing at the root page
//!   found for it in the damaged file (`roots.rs`). A table whose root
//!   cannot be told points at an appended zeroed page, so that the check of
//!   the copy sees its pages as lost and the rebuild salvages its rows by
//!   record shape; an index whose root cannot be told points at an appended
//!   empty leaf and is rebuilt from its table.
//! * The freelist (and pointer maps) are written anew from the b-trees when
//!   every tree walks whole; otherwise the freelist is left empty and the
//!   pages no tree uses are freed by the rest of the plan.
//!
//! Part of the applier: it writes only the copy it is given.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, OpenFlags};

use super::Action;
use super::pages::WorkCopy;
use super::plan::FrameStep;
use crate::format::btree::{PageSet, PageSource};
use crate::format::freelist::{is_ptrmap_page, walk_freelist};
use crate::format::geometry;
use crate::format::header::{
    DatabaseHeader, FILE_CHANGE_COUNTER_OFFSET, FIRST_FREELIST_TRUNK_OFFSET, FREELIST_COUNT_OFFSET,
    HEADER_SIZE, MAGIC, PAGE_COUNT_OFFSET, PAGE_SIZE_OFFSET, RESERVED_BYTES_OFFSET,
    SCHEMA_COOKIE_OFFSET, VERSION_VALID_FOR_OFFSET, pending_byte_page,
};
use crate::format::page::BtreePage;
use crate::format::roots::root_candidates;
use crate::schema::SchemaObject;

/// Pages read to see whether a page size fits the file.
const GEOMETRY_SAMPLE: u32 = 64;

/// A scratch copy of the database, ours alone: removed (with any journal
/// SQLite left beside it) when dropped.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    pub fn new(path: std::path::PathBuf) -> Scratch {
        Scratch(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in super::interrupt::with_sidecars(&self.0) {
            let _ = std::fs::remove_file(p);
        }
        super::interrupt::forget(&self.0);
    }
}

/// Copies `db` (with its -wal's committed frames) to `copy` and mends its
/// frame by `steps`; returns what was done, as actions. The schema table is mended whenever SQLite cannot read
/// it once the header is sound (a damaged header may hide a damaged schema).
pub fn mend(db: &Path, copy: &Path, steps: &[FrameStep], snapshot: &Path) -> Result<Vec<Action>> {
    let mut actions = copy_with_wal(db, copy)?;
    if steps.iter().any(|s| matches!(s, FrameStep::Header { .. })) {
        actions.push(mend_header(copy, snapshot)?);
    }
    if let Err(why) = sqlite_reads_schema(copy) {
        actions.push(mend_schema(copy, snapshot, &why)?);
    }
    actions.push(relist(copy)?);
    Ok(actions)
}

/// `db` copied to `copy`, the -wal's committed frames first: they are the
/// newest content, and SQLite replays them over the file (the original's
/// -wal is set aside at the swap, `interrupt::swap`). What was done.
fn copy_with_wal(db: &Path, copy: &Path) -> Result<Vec<Action>> {
    super::apply::copy_file(db, copy, super::apply::Durable::Never)?;
    let mut actions = Vec::new();
    if let Some(applied) = super::apply::wal_into_copy(db, copy)? {
        actions.push(Action {
            kind: "wal_frames",
            object: None,
            detail: applied.detail(db),
        });
    }
    Ok(actions)
}

/// Page 1's image found at another page: where, and the page size the
/// pages are read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageOne {
    pub at: u32,
    pub page_size: u32,
}

/// Page 1's image at another page, as two pages swapped by a restore or a
/// copy leave it: where page 1 does not begin with the magic string, the
/// one page after it that does, with a header SQLite accepts for the page
/// size and reserved bytes the pages show, and a table b-tree page (the
/// schema table's root) after it. None where no page, or more than one,
/// is such.
pub fn page_one_elsewhere(db: &Path) -> Option<PageOne> {
    let f = File::open(db).ok()?;
    let len = f.metadata().ok()?.len();
    let mut magic = [0u8; MAGIC.len()];
    f.read_exact_at(&mut magic, 0).ok()?;
    if &magic == MAGIC {
        return None;
    }
    let g = own_geometry(&f, len)?;
    let ps = u64::from(g.page_size);
    let usable = g.page_size - u32::from(g.reserved);
    let mut page = vec![0u8; g.page_size as usize];
    let mut found = None;
    for p in 2..=u32::try_from(len / ps).ok()? {
        let at = u64::from(p - 1) * ps;
        if f.read_exact_at(&mut magic, at).is_err() || &magic != MAGIC {
            continue;
        }
        f.read_exact_at(&mut page, at).ok()?;
        let header = DatabaseHeader::parse(&page)
            .is_ok_and(|h| h.page_size == g.page_size && h.reserved_bytes == g.reserved);
        let schema_root = BtreePage::parse(&page, 1, usable)
            .is_ok_and(|b| b.page_type().is_table() && b.check_layout().is_empty());
        if header && schema_root {
            if found.is_some() {
                return None;
            }
            found = Some(PageOne {
                at: p,
                page_size: g.page_size,
            });
        }
    }
    found
}

/// Copies `db` (with its -wal's committed frames) to `copy` and puts page
/// 1's image, found at another page (`page_one_elsewhere`), and the image
/// at page 1 back each in its place; what was done, as actions. Needs no
/// snapshot: the header and the schema table are the file's own.
pub fn put_back_page_one(db: &Path, copy: &Path, found: PageOne) -> Result<Vec<Action>> {
    let mut actions = copy_with_wal(db, copy)?;
    if page_one_elsewhere(copy) != Some(found) {
        bail!(
            "page 1's image is no longer at page {} once the -wal's frames are in",
            found.at
        );
    }
    super::pages::put_back_page_one(copy, found.page_size, found.at)?;
    File::open(copy)?.sync_all()?;
    actions.push(Action {
        kind: "swap_pages",
        object: None,
        detail: format!(
            "page 1's image (the database header and the root of the schema table) was at page {at}, and page {at}'s at page 1: the two were put back each in its place",
            at = found.at
        ),
    });
    Ok(actions)
}

/// The page geometry a mended header gets, and how many of the first
/// pages read as b-tree pages under it.
struct Fitted {
    page_size: u32,
    reserved: u8,
    fit: u32,
    read: u32,
    /// Found from the pages: the snapshot's did not fit.
    own: bool,
}

/// The page size and reserved bytes under which the file's pages read as
/// b-tree pages: the pages' own (`own_geometry`) where they disagree with
/// the snapshot's and more pages read under them, else the snapshot's if
/// they fit; an error where neither does.
fn fitted_geometry(f: &File, len: u64, snap: &DatabaseHeader) -> Result<Fitted> {
    let try_fit = |page_size: u32, reserved: u8| {
        let pages = u32::try_from(len / u64::from(page_size)).unwrap_or(u32::MAX);
        let usable = page_size.saturating_sub(u32::from(reserved));
        let (fit, read) = pages_that_fit(f, pages, page_size, usable);
        Fitted {
            page_size,
            reserved,
            fit,
            read,
            own: false,
        }
    };
    let theirs = try_fit(snap.page_size, snap.reserved_bytes);
    let own = own_geometry(f, len)
        .filter(|g| (g.page_size, g.reserved) != (snap.page_size, snap.reserved_bytes))
        .map(|g| try_fit(g.page_size, g.reserved))
        .filter(|o| fits(o.fit, o.read));
    // the pages' own geometry wins where more of the pages read under it
    // (a page of 1,024 bytes may read as the start of a 4,096-byte one)
    match own {
        Some(o) if !fits(theirs.fit, theirs.read) || o.fit * theirs.read > theirs.fit * o.read => {
            Ok(Fitted { own: true, ..o })
        }
        _ if fits(theirs.fit, theirs.read) => Ok(theirs),
        _ => bail!(
            "the snapshot's page size {} ({} reserved bytes) does not fit this file's pages ({} of {} read as b-tree pages), and no other page size does",
            snap.page_size,
            snap.reserved_bytes,
            theirs.fit,
            theirs.read
        ),
    }
}

/// Whether `fit` of `read` pages is enough to take a page geometry as the
/// file's: at least a third of those read.
fn fits(fit: u32, read: u32) -> bool {
    read > 0 && fit * 3 >= read
}

/// The header: the snapshot's, fitted to this file. Where the snapshot's
/// page size or reserved bytes do not fit the file's pages (a snapshot
/// taken by VACUUM INTO at another page size, say), the geometry under
/// which the file's own pages read as b-tree pages is put in its place
/// (`format::geometry::infer`, as the rebuild without a snapshot finds it).
fn mend_header(copy: &Path, snapshot: &Path) -> Result<Action> {
    let snap_head = read_head(snapshot)?;
    let snap =
        DatabaseHeader::parse(&snap_head).map_err(|e| anyhow!("{}: {e}", snapshot.display()))?;
    let f = File::options()
        .read(true)
        .write(true)
        .open(copy)
        .with_context(|| format!("{}: cannot open", copy.display()))?;
    let len = f.metadata()?.len();
    let fitted = fitted_geometry(&f, len, &snap)?;
    let (page_size, reserved, fit, read) =
        (fitted.page_size, fitted.reserved, fitted.fit, fitted.read);
    let mut head = snap_head.clone();
    if fitted.own {
        let stored: u16 = if page_size == 65536 {
            1
        } else {
            page_size as u16
        };
        head[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 2].copy_from_slice(&stored.to_be_bytes());
        head[RESERVED_BYTES_OFFSET] = reserved;
    }
    let from_pages = fitted.own.then(|| {
        format!(
            "; the snapshot's page size {} ({} reserved bytes) does not fit the file's pages, so the page size and reserved bytes are the pages' own",
            snap.page_size, snap.reserved_bytes
        )
    });
    let pages_under = |ps: u32| u32::try_from(len / u64::from(ps)).unwrap_or(u32::MAX);
    let ps = u64::from(page_size);
    let pages = pages_under(page_size);
    let counter = snap.file_change_counter.wrapping_add(1);
    for (off, v) in [
        (PAGE_COUNT_OFFSET, pages),
        (FILE_CHANGE_COUNTER_OFFSET, counter),
        (VERSION_VALID_FOR_OFFSET, counter),
        (FIRST_FREELIST_TRUNK_OFFSET, 0),
        (FREELIST_COUNT_OFFSET, 0),
        (SCHEMA_COOKIE_OFFSET, snap.schema_cookie.wrapping_add(1)),
    ] {
        head[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    f.write_all_at(&head, 0)
        .with_context(|| format!("{}: writing the header", copy.display()))?;
    f.sync_all()?;
    let odd = len % ps;
    Ok(Action {
        kind: "mend_header",
        object: None,
        detail: format!(
            "the database header was rebuilt from snapshot {}'s (page size {}, {} reserved bytes, text encoding {:?}, {}, user_version {}, application_id {:#x}) — {fit} of the first {read} pages read as b-tree pages under it — with the page count from the file's length ({pages} pages{}) and the freelist listed anew{}",
            snapshot.display(),
            page_size,
            reserved,
            snap.text_encoding,
            match (snap.largest_root_page, snap.incremental_vacuum) {
                (0, _) => "no auto_vacuum",
                (_, 0) => "auto_vacuum full",
                _ => "auto_vacuum incremental",
            },
            snap.user_version,
            snap.application_id,
            if odd == 0 {
                String::new()
            } else {
                format!("; the last {odd} bytes are not a whole page and are left out")
            },
            from_pages.unwrap_or_default()
        ),
    })
}

/// The page size and reserved bytes under which the most of the file's
/// first pages read as b-tree pages (the damaged header's reserved bytes
/// tried first).
fn own_geometry(f: &File, len: u64) -> Option<geometry::Geometry> {
    let mut head = vec![0u8; len.min(geometry::PROBE_BYTES as u64) as usize];
    f.read_exact_at(&mut head, 0).ok()?;
    let hint = head.get(RESERVED_BYTES_OFFSET).copied().unwrap_or(0);
    geometry::infer(&head, hint)
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut head = vec![0u8; HEADER_SIZE];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .with_context(|| format!("{}: cannot read the header", path.display()))?;
    Ok(head)
}

/// Of the first pages after page 1, how many read as well-formed b-tree
/// pages under a page size and usable size: (fit, read).
fn pages_that_fit(f: &File, pages: u32, page_size: u32, usable: u32) -> (u32, u32) {
    let mut buf = vec![0u8; page_size as usize];
    let (mut fit, mut read) = (0, 0);
    for pgno in 2..=pages.min(GEOMETRY_SAMPLE + 1) {
        if f.read_exact_at(&mut buf, u64::from(pgno - 1) * u64::from(page_size))
            .is_err()
        {
            break;
        }
        read += 1;
        if BtreePage::parse(&buf, pgno, usable).is_ok_and(|p| p.check_layout().is_empty()) {
            fit += 1;
        }
    }
    (fit, read)
}

/// Whether SQLite reads the whole schema of `path` (the error if not).
fn sqlite_reads_schema(path: &Path) -> std::result::Result<(), String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    crate::schema::read_schema(&conn)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The schema table: the snapshot's objects, at the roots found.
fn mend_schema(copy: &Path, snapshot: &Path, why: &str) -> Result<Action> {
    let snap = Connection::open_with_flags(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("{}: cannot open", snapshot.display()))?;
    let schema = crate::schema::read_schema(&snap)
        .with_context(|| format!("{}: reading its schema", snapshot.display()))?;
    let mut work = WorkCopy::open(copy)?;
    let exclude = pages_of_no_tree(&work);
    let cands = root_candidates(&work, &exclude);
    let found = super::roots::find(&work, &cands, &snap, &schema)?;
    drop(snap);
    // the found roots; the rest point at appended pages
    let mut roots = found.roots.clone();
    let mut appended = Vec::new();
    for (name, _) in &found.untold {
        let Some(o) = schema.iter().find(|o| &o.name == name) else {
            continue;
        };
        let page = if o.kind == "index" {
            work.empty_index_leaf()
        } else {
            vec![0u8; work.page_size() as usize]
        };
        let p = work.append_page(&page)?;
        roots.insert(name.clone(), p);
        appended.push(p);
    }
    work.clear_freelist();
    work.write_header()?;
    work.empty_schema_page()?;
    work.sync()?;
    drop(work);
    write_schema(copy, &schema, &roots)?;
    let told: Vec<String> = schema
        .iter()
        .filter_map(|o| {
            found
                .roots
                .get(&o.name)
                .map(|p| format!("{} page {p}", o.name))
        })
        .collect();
    let untold: Vec<String> = found
        .untold
        .iter()
        .map(|(n, why)| {
            let fallback = if schema.iter().any(|o| &o.name == n && o.kind == "index") {
                "rebuilt from its table"
            } else {
                "rows salvaged by record shape"
            };
            format!("{n}: {why} — {fallback}")
        })
        .collect();
    let mut detail = format!(
        "SQLite cannot read the schema ({why}): the schema table was written anew from snapshot {} ({} objects); roots found from the pages: {}",
        snapshot.display(),
        schema.len(),
        if told.is_empty() {
            "none".into()
        } else {
            told.join(", ")
        }
    );
    if !untold.is_empty() {
        detail.push_str(&format!("; roots not told: {}", untold.join("; ")));
    }
    if !found.unclaimed.is_empty() {
        let n: u64 = found.unclaimed.iter().map(|u| u.1).sum();
        detail.push_str(&format!(
            "; {} trees that no object of the snapshot's schema has ({n} rows or entries, pages {}) are left unused (made after the snapshot?); the backup keeps them",
            found.unclaimed.len(),
            found
                .unclaimed
                .iter()
                .map(|u| u.0.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Action {
        kind: "mend_schema",
        object: Some("sqlite_schema".into()),
        detail,
    })
}

/// Pages that may hold stale b-tree bytes but belong to no tree: the
/// freelist's (as far as the header's freelist can be walked), the pointer
/// maps, the lock-byte page.
fn pages_of_no_tree(work: &WorkCopy) -> PageSet {
    let h = work.header();
    let mut set = PageSet::new();
    let free = walk_freelist(work, h.first_freelist_trunk, h.freelist_count);
    for p in free.trunks.iter().chain(&free.leaves) {
        set.insert(*p);
    }
    let (ps, usable) = (work.page_size(), work.usable_size());
    if h.largest_root_page != 0 {
        for p in 2..=work.page_count() {
            if is_ptrmap_page(p, usable, ps) {
                set.insert(p);
            }
        }
    }
    set.insert(pending_byte_page(ps));
    set
}

/// SQLite writes the schema rows (writable_schema), in the snapshot's
/// order, each at its root; the schema cookie moves on.
fn write_schema(
    copy: &Path,
    schema: &[SchemaObject],
    roots: &std::collections::BTreeMap<String, u32>,
) -> Result<()> {
    let conn = Connection::open_with_flags(
        copy,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; PRAGMA writable_schema = ON; BEGIN IMMEDIATE;",
    )?;
    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    for o in schema {
        let root = if o.rootpage > 0 {
            roots.get(&o.name).copied().map(i64::from).unwrap_or(0)
        } else {
            0
        };
        conn.execute(
            "INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![o.kind, o.name, o.tbl_name, root, o.sql],
        )
        .with_context(|| format!("writing the schema entry of {}", o.name))?;
    }
    conn.execute_batch(&format!(
        "PRAGMA schema_version = {}; COMMIT; PRAGMA writable_schema = OFF;",
        version + 1
    ))?;
    drop(conn);
    sqlite_reads_schema(copy).map_err(|e| anyhow!("the written schema does not read back: {e}"))
}

/// The freelist and pointer maps from the b-trees, or an empty freelist
/// when a tree cannot be walked whole.
fn relist(copy: &Path) -> Result<Action> {
    let mut work = WorkCopy::open(copy)?;
    let detail = match work.rebuild_page_lists() {
        Ok(r) => format!(
            "the freelist ({} pages){} written anew from the b-trees",
            r.free_pages,
            if r.ptrmap_pages > 0 {
                format!(" and {} pointer-map page(s)", r.ptrmap_pages)
            } else {
                String::new()
            }
        ),
        Err(e) => {
            work.clear_freelist();
            format!(
                "the freelist is left empty for now ({e:#}); the pages no tree uses are freed by the rest of the repair"
            )
        }
    };
    work.write_header()?;
    work.sync()?;
    Ok(Action {
        kind: "rebuild_page_lists",
        object: None,
        detail,
    })
}
