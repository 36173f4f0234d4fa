//! The rebuild strategy (the repair ladder's steps 4 and 5), for damage the
//! patched copy cannot mend: damaged table pages, a damaged header or
//! schema, damage only SQLite's own check sees. A new database is made from
//! the schema and every row that survives anywhere in the file; rows that
//! surviving index entries name but no page holds whole come from the
//! newest good snapshot. Every table's provenance is recorded, and so is
//! every loss.
//!
//! It needs nothing from SQLite on the damaged side: the pages are read by
//! custodian's page reader (under a header rebuilt from the pages when the
//! file's own is refused, `source.rs`), the schema comes from SQLite when
//! it can read it, else from page 1's b-tree, and every table's columns are
//! read back from the new database once its CREATE statement has run
//! (`table.rs`). Where SQLite does read a table whose pages are all sound,
//! SQLite copies it in bulk.
//!
//! The steps, in order (one transaction):
//!
//! 1. the new file gets the source's page size, encoding, auto-vacuum mode,
//!    user version and application id;
//! 2. tables, then UNIQUE indexes (so a row that breaks one is caught as it
//!    goes in), virtual tables declared as SQLite's recovery does (`vtab.rs`);
//! 3. each table's rows: SQLite's bulk copy for a sound table, else salvage;
//!    a row SQLite refuses goes to quarantine (`rows.rs`), never away;
//! 4. the other indexes;
//! 5. rows lost with damaged pages: named by surviving index entries and
//!    restored from the snapshot where it has them, or listed
//!    (`restore.rs`); where pages were lost and no intact index names every
//!    row, the loss is recorded as such (`accounting`), with the snapshot's
//!    rows that lie where the lost pages were;
//! 6. customers that other tables name, restored from the snapshot (or
//!    listed as unrecoverable);
//! 7. rows on pages no table owns (a definition lost), quarantined;
//! 8. views and triggers (last, so that no trigger fires on the rows put
//!    back); then, after the commit, every virtual table checked by its
//!    module, rebuilt or taken out (`vtab.rs`).
//!
//! Part of the applier: it writes only the new file, never the original.

mod in_place;
mod load;
mod lost_found;
mod restore;
mod rowids;
mod rows;
mod source;
mod table;
mod vtab;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;
use serde::Serialize;

use crate::format::btree::PageSet;
use crate::format::header::TextEncoding;
use crate::format::record::Record;
use crate::format::salvage::{self, SalvageItem, SalvageStats, Via};
use crate::schema::{SchemaObject, quote_ident};
use crate::sql_bytes;

pub use in_place::repair_in_place;
pub(crate) use rowids::Rowids;
pub use rows::SqlValue;
use source::{SchemaOrigin, Source};
use table::TargetTable;
use vtab::{Settled, VirtualTable};

/// What the rebuild is asked to do, beside the two files.
pub struct Request<'a> {
    /// The table whose lost rows are reported by customer ID.
    pub customer_table: &'a str,
    /// Its ID column.
    pub id_column: &'a str,
    /// The newest good snapshot.
    pub snapshot: Option<&'a Path>,
    /// `--config` references (`table.column`) to the customer IDs.
    pub references: &'a [String],
    /// The time stamp the quarantine records.
    pub stamp: &'a str,
    /// The one table the check placed all damage in, when the damage may
    /// be mended in place (`in_place.rs`).
    pub in_place: Option<InPlace<'a>>,
}

/// What the check of the live file says of a table that may be mended in
/// place: it found nothing beyond that table's pages, rows and indexes.
#[derive(Debug, Clone, Copy)]
pub struct InPlace<'a> {
    pub table: &'a str,
    /// Its indexes are wrong beyond entries whose row is gone (an entry
    /// missing, a key that differs from its row's, keys out of order or
    /// twice under a UNIQUE index): they are rebuilt from the rows.
    pub rebuild_indexes: bool,
}

/// Rows of one table that may be gone: pages of its b-tree were lost and
/// no intact index names every row it held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LostRows {
    /// Subtrees of the table the page reader could not enter.
    pub subtrees: usize,
    /// Their page numbers (0 where a child pointer was 0), in the order met.
    pub pages: Vec<u32>,
    /// Rows whose record could not be read and that nothing names (WITHOUT
    /// ROWID tables: they have no rowid to name them by).
    pub unnamed_damaged: u64,
    /// Rows of the snapshot that lie where the lost pages were and are not
    /// in the new table: the table may have lost them (or they were deleted
    /// since the snapshot; nothing tells which).
    pub in_snapshot: u64,
    /// The rowid ranges `(lo, hi]` the lost subtrees held (rowid tables).
    pub ranges: Vec<(Option<i64>, Option<i64>)>,
    /// Cells of the table's pages that could not be read at all.
    pub cells_refused: u64,
}

/// Where the rows of one table came from.
#[derive(Debug, Default, Clone)]
pub struct TableProvenance {
    pub table: String,
    pub from_tree: u64,
    pub from_orphan_pages: u64,
    pub from_snapshot: u64,
    /// Rowids that surviving index entries (or a damaged record) name but
    /// no source holds.
    pub unrecoverable_rowids: Vec<i64>,
    /// Rows of a WITHOUT ROWID table that surviving index entries name by
    /// primary key but no source holds.
    pub unrecoverable_keys: u64,
    pub quarantined: u64,
    /// Rows found twice (an orphaned page's copy of a row): kept once.
    pub repeated: u64,
    /// Rows whose record could be read only in part and that no other
    /// source has whole: kept with the unreadable columns NULL (or their
    /// defaults). Their rowids (none for a WITHOUT ROWID table).
    pub partial_rowids: Vec<i64>,
    /// How many such rows (WITHOUT ROWID ones included).
    pub partial: u64,
    /// Records read in part whose bytes that could be read are kept whole
    /// in the quarantine as `cell_payload` (beside the row kept in part,
    /// or the row's values quarantined).
    pub partial_bytes: u64,
    /// Set when rows may have been lost that no source can name.
    pub lost: Option<LostRows>,
    /// The salvaged rows went in through a plain twin and SQLite built the
    /// table's indexes after them (`load.rs`).
    pub loaded_in_bulk: bool,
}

/// One thing the rebuild did that the report lists.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: &'static str,
    pub object: Option<String>,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct RebuildOutcome {
    pub tables: Vec<TableProvenance>,
    /// Customer IDs restored from the snapshot.
    pub restored_customer_ids: Vec<String>,
    /// Customer IDs known to have existed (named by a surviving index entry
    /// or page, or by the snapshot where pages were lost) that no source
    /// restores.
    pub unrecoverable_customer_ids: Vec<String>,
    pub quarantined_customer_ids: Vec<String>,
    /// Rows of the customer table in the new file.
    pub customers: i64,
    /// What was done beside copying rows (header rebuilt, schema read from
    /// the pages, virtual tables rebuilt).
    pub steps: Vec<Step>,
    /// What could not be carried over as it was and needs a person's look:
    /// objects not recreated, virtual tables taken out, rows quarantined
    /// from pages no table owns.
    pub needs_decision: Vec<String>,
    /// Pages the salvage of some table took beyond its tree (orphaned
    /// leaves and their overflow pages).
    taken: Vec<u32>,
}

/// A table that may have lost rows no source names, as the report gives it.
#[derive(Debug, Clone, Serialize)]
pub struct TableLoss {
    pub table: String,
    /// Pages of its b-tree that could not be read (0: a child pointer of 0).
    pub pages_lost: Vec<u32>,
    /// Cells of its pages that could not be read at all (not even a rowid).
    pub cells_refused: u64,
    /// Rows of the snapshot that lay where the lost pages were and are not
    /// in the repaired table (lost, or deleted since the snapshot).
    pub rows_in_snapshot: u64,
    /// Rows whose record could not be read and that have no rowid to name
    /// them by (WITHOUT ROWID tables).
    pub unnamed_damaged_rows: u64,
    pub message: String,
}

impl RebuildOutcome {
    /// The tables that may have lost rows no source names.
    pub fn lost_rows(&self) -> Vec<TableLoss> {
        self.tables
            .iter()
            .filter_map(|t| {
                let l = t.lost.as_ref()?;
                let mut what = Vec::new();
                if l.subtrees > 0 {
                    what.push(format!("{} page(s) of its b-tree could not be read", l.subtrees));
                }
                if l.cells_refused > 0 {
                    what.push(format!(
                        "{} cells of its pages could not be read at all",
                        l.cells_refused
                    ));
                }
                if l.unnamed_damaged > 0 {
                    what.push(format!(
                        "{} rows could not be read and have no rowid to name them by",
                        l.unnamed_damaged
                    ));
                }
                let mut message = format!(
                    "{}: {}, and no intact index names every row it held: rows may be lost without a trace",
                    t.table,
                    what.join(", ")
                );
                if l.in_snapshot > 0 {
                    message.push_str(&format!(
                        "; {} rows of the snapshot lay there and are not in the repaired table (not restored: nothing in the live file says they still existed)",
                        l.in_snapshot
                    ));
                }
                Some(TableLoss {
                    table: t.table.clone(),
                    pages_lost: l.pages.clone(),
                    cells_refused: l.cells_refused,
                    rows_in_snapshot: l.in_snapshot,
                    unnamed_damaged_rows: l.unnamed_damaged,
                    message,
                })
            })
            .collect()
    }

    /// What a person must look at: objects not carried over, rows kept
    /// aside, rows lost (named or not). Empty when every row of the file is
    /// accounted for in the new one.
    pub fn decisions(&self) -> Vec<String> {
        let mut out = self.needs_decision.clone();
        for t in &self.tables {
            if !t.unrecoverable_rowids.is_empty() {
                out.push(format!(
                    "{} rows of {} are named (by surviving index entries or a damaged record) but no source holds them: rowids {}",
                    t.unrecoverable_rowids.len(),
                    t.table,
                    short_list(&t.unrecoverable_rowids)
                ));
            }
            if t.unrecoverable_keys > 0 {
                out.push(format!(
                    "{} rows of {} are named by their primary key in surviving index entries but no source holds them",
                    t.unrecoverable_keys, t.table
                ));
            }
            if t.partial > 0 {
                out.push(format!(
                    "{} rows of {} could be read only in part (their record is cut short or damaged) and no source has them whole: kept with the unreadable columns empty{}",
                    t.partial,
                    t.table,
                    if t.partial_rowids.is_empty() {
                        String::new()
                    } else {
                        format!(": rowids {}", short_list(&t.partial_rowids))
                    }
                ));
            }
            if t.partial_bytes > 0 {
                out.push(format!(
                    "{} records of {} could be read only in part: the bytes of each that could be read (a value cut short by a broken overflow chain included) are kept whole in {} as cell_payload",
                    t.partial_bytes,
                    t.table,
                    crate::repair::apply::QUARANTINE_TABLE
                ));
            }
            if t.quarantined > 0 {
                out.push(format!(
                    "{} rows of {} were refused by the table's constraints and kept in {}",
                    t.quarantined,
                    t.table,
                    crate::repair::apply::QUARANTINE_TABLE
                ));
            }
        }
        out.extend(self.lost_rows().into_iter().map(|l| l.message));
        out
    }

    /// What the rebuild did, table by table, for the report's actions.
    pub fn actions(&self) -> Vec<Step> {
        let mut v = self.steps.clone();
        for t in &self.tables {
            v.push(Step {
                kind: "rows",
                object: Some(t.table.clone()),
                detail: format!(
                    "{} from the table's pages, {} from orphaned pages, {} from the snapshot, {} read only in part, {} named by index entries but in no source, {} quarantined{}{}{}",
                    t.from_tree,
                    t.from_orphan_pages,
                    t.from_snapshot,
                    t.partial,
                    t.unrecoverable_rowids.len() as u64 + t.unrecoverable_keys,
                    t.quarantined,
                    if t.partial_bytes > 0 {
                        format!(
                            ", the bytes of {} records read in part kept whole in quarantine",
                            t.partial_bytes
                        )
                    } else {
                        String::new()
                    },
                    if t.repeated > 0 {
                        format!(", {} found twice and kept once", t.repeated)
                    } else {
                        String::new()
                    },
                    if t.loaded_in_bulk {
                        "; loaded in bulk, its indexes built after the rows"
                    } else {
                        ""
                    }
                ),
            });
        }
        v
    }

    /// The customer ID lists sorted, each ID once.
    fn sort_ids(&mut self) {
        for v in [
            &mut self.restored_customer_ids,
            &mut self.unrecoverable_customer_ids,
            &mut self.quarantined_customer_ids,
        ] {
            v.sort();
            v.dedup();
        }
    }

    fn step(&mut self, kind: &'static str, object: Option<&str>, detail: String) {
        self.steps.push(Step {
            kind,
            object: object.map(String::from),
            detail,
        });
    }
}

/// Builds `new` (an empty file created by the caller) from `source` (a copy
/// of the original).
pub fn rebuild(source: &Path, new: &Path, req: &Request<'_>) -> Result<RebuildOutcome> {
    let src = Source::open_mended(source)?;
    let built = match build(&src, source, new, req, true) {
        Err(e) if e.downcast_ref::<BulkCopyFailed>().is_some() => {
            // SQLite refused a table custodian's page reader found sound:
            // start again, every table from the page reader
            std::fs::OpenOptions::new()
                .write(true)
                .open(new)
                .and_then(|f| f.set_len(0))
                .with_context(|| format!("{}: cannot empty it", new.display()))?;
            build(&src, source, new, req, false)?
        }
        other => other?,
    };
    let (mut out, vtabs) = built;
    let t0 = std::time::Instant::now();
    settle_virtual_tables(new, &vtabs, req.stamp, &mut out)
        .context("checking the virtual tables")?;
    crate::check::timing("rebuild: virtual tables settled", t0);
    schema_loads(new)?;
    crate::check::timing("rebuild: schema loads", t0);
    out.sort_ids();
    Ok(out)
}

/// The new file's schema loads as any SQLite connection loads it (no
/// writable_schema), and every ordinary table in it can be read: a new
/// file that SQLite would refuse is never handed on. (A virtual table whose
/// module this build lacks, or a view over one, loads and fails only when
/// used, in SQLite as in the original: those are kept as they were.)
fn schema_loads(new: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(new, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("{}: cannot open", new.display()))?;
    let objects = crate::schema::read_schema(&conn)
        .map_err(|e| anyhow::anyhow!("the rebuilt database's schema does not load: {e}"))?;
    let ordinary = objects
        .iter()
        .filter(|o| o.kind == "table" && !crate::schema::is_virtual_table(o));
    for o in ordinary {
        let n = &o.name;
        sql_bytes::for_each(
            &conn,
            &format!("SELECT * FROM {} LIMIT 0", quote_ident(n)),
            &[],
            |_| Ok(()),
        )
        .map_err(|e| anyhow::anyhow!("the rebuilt database cannot read {n}: {e}"))?;
    }
    Ok(())
}

/// SQLite's bulk copy of a table failed (after custodian's page reader had
/// found the table sound): the new file is abandoned and built again
/// without bulk copies.
#[derive(Debug)]
struct BulkCopyFailed(String);

impl std::fmt::Display for BulkCopyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SQLite could not copy table {}", self.0)
    }
}

impl std::error::Error for BulkCopyFailed {}

/// Steps 1 to 8 in one transaction (the virtual tables are checked after
/// the commit). `bulk`: whether SQLite may copy sound tables in bulk.
fn build(
    src: &Source,
    source: &Path,
    new: &Path,
    req: &Request<'_>,
    bulk: bool,
) -> Result<(RebuildOutcome, Vec<VirtualTable>)> {
    let mut out = RebuildOutcome::default();
    note_source(src, &mut out);
    let conn = create_target(new, src)?;
    // SQLite attaches only a file whose stored encoding is the new file's
    // (a value 0 counts as unset; other values by their two low bits)
    let raw = src.header.text_encoding_raw;
    let same_encoding = raw == 0 || raw & 3 == src.encoding.header_value();
    // salvaged tables loaded in bulk (`load.rs`)
    let load = bulk;
    let bulk = bulk && src.sqlite_readable && same_encoding;
    if bulk {
        conn.execute("ATTACH DATABASE ?1 AS src", [source.to_string_lossy()])?;
    }
    conn.execute_batch("BEGIN")?;
    let t0 = std::time::Instant::now();
    let tm = |what: &str| crate::check::timing(&format!("rebuild: {what}"), t0);
    let trees = Trees::walk(src);
    tm("trees walked");
    let (tables, vtabs) = create_tables(&conn, src, &mut out).context("creating the tables")?;
    create_indexes(&conn, src, IndexPass::Unique, &mut out);
    tm("tables and unique indexes created");
    let mut copied = Vec::new();
    for t in &tables {
        let id_column = t
            .name
            .eq_ignore_ascii_case(req.customer_table)
            .then_some(req.id_column);
        let how = CopyMode { bulk, load };
        let c = copy_table(&conn, src, &trees, t, id_column, req.stamp, how);
        copied.push(c.with_context(|| format!("copying the rows of {}", t.name))?);
        tm(&format!("rows of {}", t.name));
    }
    create_indexes(&conn, src, IndexPass::Rest, &mut out);
    tm("other indexes");
    account_losses(&conn, src, &trees, &tables, copied, req, &mut out)?;
    tm("losses accounted");
    let taken = std::mem::take(&mut out.taken);
    lost_and_found(&conn, src, &trees, &tables, &taken, req.stamp, &mut out)?;
    copy_sequence(&conn, src, &trees).context("copying sqlite_sequence")?;
    create_views_and_triggers(&conn, src, &mut out);
    tm("lost and found, sequence, views, triggers");
    if tables
        .iter()
        .any(|t| t.name.eq_ignore_ascii_case(req.customer_table))
    {
        out.customers = sql_bytes::query_row(
            &conn,
            &format!("SELECT count(*) FROM {}", quote_ident(req.customer_table)),
            &[],
            |r| r.get(0),
        )?;
    }
    conn.execute_batch("COMMIT")?;
    tm("committed");
    Ok((out, vtabs))
}

/// Step 5 and 6: each table's lost rows named, restored or listed
/// (`restore.rs`), then the customers other tables name.
fn account_losses(
    conn: &Connection,
    src: &Source,
    trees: &Trees,
    tables: &[TargetTable],
    copied: Vec<Copied>,
    req: &Request<'_>,
    out: &mut RebuildOutcome,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    let snap = match req.snapshot {
        Some(p) => Some(crate::db::open_read_only(p)?),
        None => None,
    };
    for (t, c) in tables.iter().zip(copied) {
        let is_customers = t.name.eq_ignore_ascii_case(req.customer_table);
        let ctx = restore::Ctx {
            conn,
            src,
            trees,
            snap: snap.as_ref(),
            id_column: is_customers.then_some(req.id_column),
            stamp: req.stamp,
        };
        out.taken.extend(c.pages_taken());
        let prov = restore::account(&ctx, t, c, out)
            .with_context(|| format!("accounting for the rows of {}", t.name))?;
        out.tables.push(prov);
        crate::check::timing(&format!("rebuild: losses of {}", t.name), t0);
    }
    // the tables that refer to customers are among those rebuilt (never a
    // virtual table, whose module may not open)
    let rebuilt: Vec<SchemaObject> = tables
        .iter()
        .map(|t| SchemaObject {
            kind: "table".into(),
            name: t.name.clone(),
            tbl_name: t.name.clone(),
            rootpage: 0,
            sql: None,
        })
        .collect();
    restore::restore_referenced(conn, snap.as_ref(), &rebuilt, req, out)
        .context("restoring the customers other tables name")?;
    crate::check::timing("rebuild: customers other tables name", t0);
    if snap.is_none() {
        return Ok(());
    }
    for t in tables {
        let Some(i) = out.tables.iter().position(|p| p.table == t.name) else {
            continue;
        };
        let Some(mut lost) = out.tables[i].lost.take() else {
            continue;
        };
        let is_customers = t.name.eq_ignore_ascii_case(req.customer_table);
        let ctx = restore::Ctx {
            conn,
            src,
            trees,
            snap: snap.as_ref(),
            id_column: is_customers.then_some(req.id_column),
            stamp: req.stamp,
        };
        restore::lost_in_snapshot(&ctx, t, &mut lost, out)?;
        out.tables[i].lost = Some(lost);
    }
    Ok(())
}

/// Step 7: rows on pages that neither a rebuilt table's tree nor its
/// orphan scan took (`lost_found.rs`).
fn lost_and_found(
    conn: &Connection,
    src: &Source,
    trees: &Trees,
    tables: &[TargetTable],
    taken: &[u32],
    stamp: &str,
    out: &mut RebuildOutcome,
) -> Result<()> {
    let created: BTreeSet<u32> = tables.iter().map(|t| t.source_root).collect();
    let mut used = trees.used_by(src, |root, is_table| !is_table || created.contains(&root));
    for &p in taken {
        used.insert(p);
    }
    lost_found::quarantine_unowned(conn, src, &used, stamp, out)
        .context("keeping the rows of pages no table owns")
}

/// Records how the source had to be read.
fn note_source(src: &Source, out: &mut RebuildOutcome) {
    if let Some(h) = &src.header_rebuilt {
        out.step("rebuild_header", None, h.clone());
    }
    for s in &src.pages_swapped {
        out.step("swap_pages", None, s.clone());
    }
    if src.schema_origin == SchemaOrigin::Pages {
        out.step(
            "read_schema",
            Some("sqlite_schema"),
            format!(
                "SQLite cannot read the schema ({}); {} entries were read from page 1's b-tree by the page reader{}",
                src.schema_error.as_deref().unwrap_or("unknown"),
                src.schema.len(),
                if src.schema_rows_refused > 0 {
                    format!(", {} rows of it could not be read as entries", src.schema_rows_refused)
                } else {
                    String::new()
                }
            ),
        );
    }
}

fn encoding_name(e: TextEncoding) -> &'static str {
    match e {
        TextEncoding::Utf8 => "UTF-8",
        TextEncoding::Utf16le => "UTF-16le",
        TextEncoding::Utf16be => "UTF-16be",
    }
}

/// Opens the new file and gives it the source's settings.
fn create_target(new: &Path, src: &Source) -> Result<Connection> {
    let h = &src.header;
    let conn = Connection::open(new).with_context(|| format!("{}: cannot open", new.display()))?;
    crate::repair::interrupt::watch(&conn);
    conn.execute_batch(&format!(
        "PRAGMA page_size = {}; PRAGMA encoding = '{}'; PRAGMA auto_vacuum = {}; \
         PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
         PRAGMA user_version = {}; PRAGMA application_id = {};",
        h.page_size,
        encoding_name(src.encoding),
        if !src.pointer_maps() {
            0
        } else if h.incremental_vacuum != 0 {
            2
        } else {
            1
        },
        h.user_version as i32,
        h.application_id as i32,
    ))?;
    Ok(conn)
}

/// Every b-tree of the source walked once: the pages each owns, and the
/// pages the schema's trees, the freelist, pointer maps and lock byte page
/// take, so that each table's orphan scan leaves other objects' pages alone.
struct Trees {
    /// (root, is a table, pages) of every b-tree the schema names.
    pages: Vec<(u32, bool, Vec<u32>)>,
    /// The roots of those the walk found without damage.
    sound: BTreeSet<u32>,
}

impl Trees {
    fn walk(src: &Source) -> Trees {
        let mut pages = Vec::new();
        let mut sound = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for o in src.schema.iter().filter(|o| o.rootpage > 0) {
            let Ok(root) = u32::try_from(o.rootpage) else {
                continue;
            };
            if !seen.insert(root) {
                continue;
            }
            let index_tree = o.kind == "index"
                || crate::schema::is_without_rowid(o.sql.as_deref().unwrap_or(""));
            let (damage, p) = crate::check::structure::walk_structure(&src.pager, root, index_tree);
            if damage.is_empty() {
                sound.insert(root);
            }
            pages.push((root, o.kind == "table", p));
        }
        Trees { pages, sound }
    }

    /// The pages of the trees `keep(root, is a table)` accepts, with page
    /// 1's tree, the freelist, the pointer maps and the lock-byte page.
    fn used_by(&self, src: &Source, keep: impl Fn(u32, bool) -> bool) -> PageSet {
        let mut set = salvage::claimed_pages(&src.pager, &[]);
        for (root, is_table, p) in &self.pages {
            if keep(*root, *is_table) {
                for &pg in p {
                    set.insert(pg);
                }
            }
        }
        set
    }

    /// The pages every tree but the one rooted at `root` owns (with page
    /// 1's tree, the freelist, the pointer maps and the lock-byte page).
    fn claimed_by_others(&self, src: &Source, root: u32) -> PageSet {
        self.used_by(src, |r, _| r != root)
    }
}

/// Creates the tables in schema order (their rows come later) and declares
/// the virtual tables. A table whose CREATE fails is listed; its rows go to
/// quarantine with the unowned pages'.
fn create_tables(
    conn: &Connection,
    src: &Source,
    out: &mut RebuildOutcome,
) -> Result<(Vec<TargetTable>, Vec<VirtualTable>)> {
    let mut tables = Vec::new();
    let mut vtabs = Vec::new();
    for o in src.schema.iter().filter(|o| o.kind == "table") {
        if let Some(vt) = vtab::of(o) {
            match vtab::declare(conn, &vt) {
                Ok(()) => vtabs.push(vt),
                Err(e) => out
                    .needs_decision
                    .push(format!("virtual table {} was not recreated: {e:#}", o.name)),
            }
            continue;
        }
        if o.name.to_ascii_lowercase().starts_with("sqlite_") {
            continue;
        }
        let Some(sql) = &o.sql else { continue };
        let root = u32::try_from(o.rootpage).unwrap_or(0);
        match create_table(conn, sql, root) {
            Ok(t) => tables.push(t),
            Err(e) => out.needs_decision.push(format!(
                "table {} was not recreated ({e:#}); its rows are kept in {} as rows of pages no table owns",
                o.name,
                crate::repair::apply::QUARANTINE_TABLE
            )),
        }
    }
    Ok((tables, vtabs))
}

/// The tables of the new database.
fn table_names(conn: &Connection) -> rusqlite::Result<BTreeSet<String>> {
    sql_bytes::query_map(
        conn,
        "SELECT name FROM sqlite_schema WHERE type = 'table'",
        &[],
        |r| Ok(r.text(0)?.unwrap_or_default()),
    )
    .map(|v| v.into_iter().collect())
}

/// Runs one CREATE TABLE and reads the table back under the name SQLite
/// gave it (the statement's, which a damaged schema row may not repeat;
/// sqlite_sequence comes along with the first AUTOINCREMENT table).
fn create_table(conn: &Connection, sql: &str, root: u32) -> Result<TargetTable> {
    conn.execute_batch("SAVEPOINT create_table")?;
    let before = table_names(conn)?;
    let made = sql_bytes::execute_batch(conn, sql).and_then(|()| table_names(conn));
    let name = made.map(|after| {
        let new: Vec<&String> = after.difference(&before).collect();
        new.iter()
            .find(|n| n.as_str() != "sqlite_sequence")
            .or(new.first())
            .map(|n| n.to_string())
    });
    // a table SQLite creates but cannot read back (a generated column over
    // a column that does not exist) would make the whole new schema
    // unreadable once reopened
    let name = name.and_then(|n| match n {
        Some(n) => sql_bytes::for_each(
            conn,
            &format!("SELECT * FROM {} LIMIT 0", quote_ident(&n)),
            &[],
            |_| Ok(()),
        )
        .map(|_| Some(n)),
        None => Ok(None),
    });
    match name {
        Ok(Some(name)) => {
            conn.execute_batch("RELEASE create_table")?;
            TargetTable::read(conn, &name, sql, root)
        }
        Ok(None) => {
            conn.execute_batch("ROLLBACK TO create_table; RELEASE create_table")?;
            anyhow::bail!("the statement created no table")
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO create_table; RELEASE create_table")?;
            Err(e.into())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexPass {
    /// UNIQUE indexes, before the rows.
    Unique,
    /// The others, after them (and a UNIQUE one the first pass could not make).
    Rest,
}

fn is_unique_index(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    words == ["CREATE", "UNIQUE"]
}

/// Creates the schema's explicit indexes of one pass; one that cannot be
/// created (its table is gone, an unknown function) is listed.
fn create_indexes(conn: &Connection, src: &Source, pass: IndexPass, out: &mut RebuildOutcome) {
    for o in src.schema.iter().filter(|o| o.kind == "index") {
        let Some(sql) = &o.sql else { continue };
        let unique = is_unique_index(sql);
        if pass == IndexPass::Unique && !unique {
            continue;
        }
        let exists: bool = sql_bytes::query_row(
            conn,
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?1",
            &[&sql_bytes::param(&o.name)],
            |r| r.get::<i64>(0),
        )
        .is_ok_and(|n| n > 0);
        if exists {
            continue;
        }
        if let Err(e) = sql_bytes::execute_batch(conn, sql)
            && pass == IndexPass::Rest
        {
            out.needs_decision
                .push(format!("index {} was not recreated: {e}", o.name));
        }
    }
}

/// Views and triggers, in schema order.
fn create_views_and_triggers(conn: &Connection, src: &Source, out: &mut RebuildOutcome) {
    for o in src
        .schema
        .iter()
        .filter(|o| o.kind == "view" || o.kind == "trigger")
    {
        let Some(sql) = &o.sql else { continue };
        if let Err(e) = sql_bytes::execute_batch(conn, sql) {
            out.needs_decision
                .push(format!("{} {} was not recreated: {e}", o.kind, o.name));
        }
    }
}

/// One table's rows as copied: what was read, and what is known of the rest.
pub(crate) struct Copied {
    prov: TableProvenance,
    /// Rowids now in the table (rowid tables read page by page).
    have: Rowids,
    /// Rowids whose record could not be read.
    damaged: BTreeSet<i64>,
    /// What could be read of those records (rowid tables), by rowid.
    partials: std::collections::BTreeMap<i64, rows::Partial>,
    /// What could be read of damaged rows of a WITHOUT ROWID table.
    keyless_partials: Vec<rows::Partial>,
    /// The salvage's account (None for a bulk copy of a sound table).
    stats: Option<SalvageStats>,
    quarantined_ids: Vec<String>,
    /// The lost rows the table's indexes name, and whether one names every
    /// row, when read before the indexes were rebuilt (`in_place.rs`);
    /// else `restore.rs` reads them.
    named: Option<(std::collections::BTreeMap<i64, Option<String>>, bool)>,
}

impl Copied {
    /// Pages salvage took beyond the tree's own (orphaned leaves and their
    /// overflow pages).
    fn pages_taken(&self) -> Vec<u32> {
        self.stats
            .as_ref()
            .map(|s| {
                s.orphan_leaves
                    .iter()
                    .chain(s.orphan_overflow_pages.iter())
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Copies one table's rows: in bulk by SQLite when SQLite reads the source
/// and the table's pages are all sound, else row by row from the salvage.
fn copy_table(
    conn: &Connection,
    src: &Source,
    trees: &Trees,
    t: &TargetTable,
    id_column: Option<&str>,
    stamp: &str,
    how: CopyMode,
) -> Result<Copied> {
    let is_customers = id_column.is_some();
    let mut c = Copied {
        prov: TableProvenance {
            table: t.name.clone(),
            ..TableProvenance::default()
        },
        have: Rowids::default(),
        damaged: BTreeSet::new(),
        partials: std::collections::BTreeMap::new(),
        keyless_partials: Vec::new(),
        stats: None,
        quarantined_ids: Vec::new(),
        named: None,
    };
    if t.source_root == 0 {
        return Ok(c);
    }
    if how.bulk && !is_customers && trees.sound.contains(&t.source_root) {
        let n = bulk_copy(conn, t)?;
        c.prov.from_tree = n;
        return Ok(c);
    }
    let claimed = trees.claimed_by_others(src, t.source_root);
    let twin = match how.load {
        true => load::begin(conn, t)?,
        false => None,
    };
    let shape = t.shape();
    let mut rec = Record::default();
    let mut err: Option<anyhow::Error> = None;
    let mut visit = |item: SalvageItem<'_>| {
        if err.is_some() {
            return;
        }
        match item {
            SalvageItem::Row {
                rowid,
                payload,
                via,
                ..
            } => {
                let Some(values) = rows::record_values(&mut rec, payload, src.encoding) else {
                    if !t.without_rowid {
                        c.damaged.insert(rowid);
                    }
                    return;
                };
                let via_s = match via {
                    Via::Tree => "the table's pages",
                    Via::OrphanLeaf => "an orphaned page",
                };
                let rowid = (!t.without_rowid).then_some(rowid);
                match rows::insert_into(conn, t, twin.as_deref(), rowid, &values, via_s, stamp) {
                    Ok(rows::Placed::Inserted) => {
                        match via {
                            Via::Tree => c.prov.from_tree += 1,
                            Via::OrphanLeaf => c.prov.from_orphan_pages += 1,
                        }
                        c.have.extend(rowid);
                    }
                    Ok(rows::Placed::Repeated) => c.prov.repeated += 1,
                    Ok(rows::Placed::Quarantined) => {
                        c.prov.quarantined += 1;
                        c.have.extend(rowid);
                        if let Some(idc) = id_column {
                            c.quarantined_ids
                                .extend(restore::customer_id_of(t, idc, rowid, &values));
                        }
                    }
                    Err(e) => err = Some(e),
                }
            }
            SalvageItem::RowRepeated {
                rowid,
                payload,
                pgno,
                cell,
            } => {
                // a second whole cell under a rowid the table has
                let Some(values) = rows::record_values(&mut rec, payload, src.encoding) else {
                    return;
                };
                if t.rowid_alias.is_none() && !t.without_rowid {
                    // no column holds the rowid, so nothing can name the row
                    // by it: the row goes in under a new one (a row its
                    // UNIQUE keys make a duplicate is quarantined by SQLite)
                    let via_s = "a cell whose rowid another row has";
                    match rows::insert_into(conn, t, twin.as_deref(), None, &values, via_s, stamp) {
                        Ok(rows::Placed::Inserted) => c.prov.from_tree += 1,
                        Ok(rows::Placed::Repeated) => c.prov.repeated += 1,
                        Ok(rows::Placed::Quarantined) => {
                            c.prov.quarantined += 1;
                            if let Some(idc) = id_column {
                                c.quarantined_ids
                                    .extend(restore::customer_id_of(t, idc, None, &values));
                            }
                        }
                        Err(e) => err = Some(e),
                    }
                    return;
                }
                // the rowid is a column: the cell in key order keeps it, this
                // one is kept aside, whole, never dropped
                let reason = format!(
                    "a second cell with rowid {rowid} (page {pgno} cell {cell}, out of key order or on a second page of the table); the row kept under that rowid is the cell in key order"
                );
                let names: Vec<String> = t
                    .fields
                    .iter()
                    .take(values.len())
                    .map(|&f| t.columns[f].name.clone())
                    .collect();
                match rows::quarantine(conn, stamp, &reason, &t.name, rowid, &names, &values) {
                    Ok(()) => {
                        c.prov.quarantined += 1;
                        if let Some(idc) = id_column {
                            c.quarantined_ids.extend(restore::customer_id_of(
                                t,
                                idc,
                                Some(rowid),
                                &values,
                            ));
                        }
                    }
                    Err(e) => err = Some(e),
                }
            }
            SalvageItem::RowDamaged {
                rowid,
                partial,
                reason,
                ..
            } => {
                if !t.without_rowid {
                    c.damaged.insert(rowid);
                }
                // what of the record could be read (a row of a rowid table
                // whose cell was found is kept even with no readable field:
                // its rowid is data too), and its bytes
                let Some(bytes) = partial else { return };
                let p = rows::Partial::read(bytes, src.encoding, reason);
                if !t.without_rowid {
                    c.partials.insert(rowid, p);
                } else if !p.values.is_empty() || !p.bytes.is_empty() {
                    c.keyless_partials.push(p);
                }
            }
            SalvageItem::CellSetAside {
                rowid,
                payload,
                total_len,
                reason,
                ..
            } => {
                // bytes that may be a row: kept whole, never dropped
                let whole = if payload.len() as u64 == total_len {
                    format!("its {total_len}-byte payload")
                } else {
                    format!(
                        "the {} bytes of its {total_len}-byte payload that the cell holds",
                        payload.len()
                    )
                };
                let reason = format!("{reason}; kept whole as cell_payload: {whole}");
                let names = ["cell_payload".to_string()];
                let values = [SqlValue::Blob(payload.to_vec())];
                let stored = rows::quarantine(
                    conn,
                    stamp,
                    &reason,
                    &t.name,
                    rowid.unwrap_or(0),
                    &names,
                    &values,
                );
                match stored {
                    Ok(()) => c.prov.quarantined += 1,
                    Err(e) => err = Some(e),
                }
            }
            SalvageItem::Damage(_) => {}
        }
    };
    let stats = if t.without_rowid {
        salvage::salvage_without_rowid(&src.pager, t.source_root, &shape, &claimed, &mut visit)
    } else {
        salvage::salvage_table(&src.pager, t.source_root, &shape, &claimed, &mut visit)
    };
    if let Some(e) = err {
        return Err(e);
    }
    if let Some(twin) = twin {
        // SQLite refused to index the rows (two share a UNIQUE key): the
        // caller starts over row by row
        load::finish(conn, t, &twin).map_err(|_| BulkCopyFailed(t.name.clone()))?;
        c.prov.loaded_in_bulk = true;
    }
    c.have.seal();
    c.stats = Some(stats);
    Ok(c)
}

/// How a table's rows may be copied.
#[derive(Debug, Clone, Copy)]
struct CopyMode {
    /// SQLite copies a sound table in bulk from the attached source.
    bulk: bool,
    /// A salvaged table is loaded in bulk (`load.rs`).
    load: bool,
}

/// SQLite's bulk copy of a table whose pages the walk found all sound
/// ([`BulkCopyFailed`] when SQLite refuses the copy).
fn bulk_copy(conn: &Connection, t: &TargetTable) -> Result<u64> {
    let mut names: Vec<String> = (0..t.fields.len())
        .filter(|&i| t.field_inserted(i))
        .map(|i| quote_ident(&t.columns[t.fields[i]].name))
        .collect();
    if !t.without_rowid {
        names.insert(0, t.rowid_name.clone());
    }
    let list = names.join(", ");
    let tq = quote_ident(&t.name);
    // An error here may leave the transaction unusable (SQLite finds the
    // attached source corrupt): the caller starts over without bulk copies.
    sql_bytes::execute(
        conn,
        &format!("INSERT INTO main.{tq}({list}) SELECT {list} FROM src.{tq}"),
        &[],
    )
    .map(|n| n as u64)
    .map_err(|_| BulkCopyFailed(t.name.clone()).into())
}

/// sqlite_sequence: the AUTOINCREMENT tables' high-water marks, kept where
/// they are above what the copied rows set.
fn copy_sequence(conn: &Connection, src: &Source, trees: &Trees) -> Result<()> {
    let Some(seq) = src
        .schema
        .iter()
        .find(|o| o.kind == "table" && o.name == "sqlite_sequence" && o.rootpage > 0)
    else {
        return Ok(());
    };
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'",
        [],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(());
    }
    let root = u32::try_from(seq.rootpage).unwrap_or(0);
    let claimed = trees.claimed_by_others(src, root);
    let mut marks: Vec<(Vec<u8>, i64)> = Vec::new();
    let mut rec = Record::default();
    salvage::salvage_table(
        &src.pager,
        root,
        &salvage::TableShape::new(2),
        &claimed,
        &mut |item| {
            if let SalvageItem::Row { payload, .. } = item
                && let Some(v) = rows::record_values(&mut rec, payload, src.encoding)
                && let [SqlValue::Text(name), SqlValue::Integer(n)] = v.as_slice()
            {
                marks.push((name.clone(), *n));
            }
        },
    );
    for (name, n) in marks {
        let name = SqlValue::Text(name);
        let updated = conn.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
            rusqlite::params![name, n],
        )?;
        if updated == 0 {
            conn.execute(
                "INSERT INTO sqlite_sequence(name, seq) SELECT ?1, ?2 WHERE EXISTS \
                 (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
                rusqlite::params![name, n],
            )?;
        }
    }
    Ok(())
}

/// Checks the virtual tables of the committed new file (`vtab.rs`).
fn settle_virtual_tables(
    new: &Path,
    vtabs: &[VirtualTable],
    stamp: &str,
    out: &mut RebuildOutcome,
) -> Result<()> {
    for (vt, s) in vtab::settle(new, vtabs, stamp)? {
        match s {
            Settled::Sound => {}
            Settled::Unchecked => out.step(
                "virtual_table",
                Some(&vt.name),
                format!(
                    "recreated as it stood; its module {} is not part of custodian's SQLite, so it was not checked",
                    vt.module
                ),
            ),
            Settled::Rebuilt => out.step(
                "rebuild_virtual_table",
                Some(&vt.name),
                "its index did not match its content and was rebuilt from the content".into(),
            ),
            Settled::RebuiltRtree {
                entries,
                quarantined,
            } => {
                out.step(
                    "rebuild_virtual_table",
                    Some(&vt.name),
                    format!(
                        "its R-Tree failed its integrity check and was made anew from the {entries} entries its nodes gave ({quarantined} of them, refused by the new tree, kept in {})",
                        crate::repair::apply::QUARANTINE_TABLE
                    ),
                );
                if quarantined > 0 {
                    out.needs_decision.push(format!(
                        "{quarantined} entries of R-Tree {} were refused by the new tree when it was made anew (e.g. a lower bound above its upper bound) and kept in {}",
                        vt.name,
                        crate::repair::apply::QUARANTINE_TABLE
                    ));
                }
            }
            Settled::Removed(why) => out.needs_decision.push(format!(
                "virtual table {} was taken out of the schema: {why}; its data is kept in its shadow tables ({}_*)",
                vt.name, vt.name
            )),
        }
    }
    Ok(())
}

/// The customer table of a file whose schema SQLite cannot read, as the
/// page reader finds it: its CREATE statement and its indexes' run in a
/// database in memory and read back as the checks read a table, with the
/// root pages the file has. `None` when the pages hold no such table.
pub fn customer_table_from_pages(
    db: &Path,
    table: &str,
    id_column: &str,
) -> Result<Option<std::result::Result<crate::schema::CustomerTable, String>>> {
    let src = Source::open(db)?;
    let mem = Connection::open_in_memory()?;
    let own: Vec<&SchemaObject> = src
        .schema
        .iter()
        .filter(|o| match o.kind.as_str() {
            // a damaged schema row may garble tbl_name; a table's name is its own
            "table" => o.name.eq_ignore_ascii_case(table),
            "index" => o.tbl_name.eq_ignore_ascii_case(table),
            _ => false,
        })
        .collect();
    for o in &own {
        if let Some(sql) = &o.sql {
            // an index that cannot be made is not one the checks can compare
            let _ = sql_bytes::execute_batch(&mem, sql);
        }
    }
    let objects = crate::schema::read_schema(&mem)?;
    let found = crate::schema::customer_table(&mem, &objects, table, id_column)?;
    let root_of = |name: &str| {
        own.iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
            .and_then(|o| u32::try_from(o.rootpage).ok())
            .unwrap_or(0)
    };
    Ok(found.map(|r| {
        r.map(|mut t| {
            t.rootpage = root_of(&t.name);
            for i in &mut t.indexes {
                i.rootpage = root_of(&i.name);
            }
            t
        })
    }))
}

/// At most 10 numbers, then how many more.
fn short_list(v: &[i64]) -> String {
    let shown: Vec<String> = v.iter().take(10).map(|r| r.to_string()).collect();
    if v.len() > 10 {
        format!("{}, … and {} more", shown.join(", "), v.len() - 10)
    } else {
        shown.join(", ")
    }
}

/// The schema objects of `src` on table `name`.
pub(crate) fn indexes_of<'s>(
    src: &'s Source,
    name: &str,
) -> impl Iterator<Item = &'s SchemaObject> {
    let name = name.to_string();
    src.schema.iter().filter(move |o| {
        o.kind == "index" && o.tbl_name.eq_ignore_ascii_case(&name) && o.rootpage > 0
    })
}
