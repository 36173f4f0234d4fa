//! `custodian check`: read-only. The path of the data:
//!
//! file facts (header, size, -wal) → SQLite read transaction + schema →
//! page reader walks every b-tree (structure, page accounting) → the
//! customer table and each of its indexes compared by digests (both cores)
//! → exact diff of unequal buckets → the POS lookup probe for every customer
//! in doubt → data rules → report.

pub mod access;
pub mod canon;
pub mod compare;
pub mod finding;
pub mod others;
pub mod probe;
pub mod ptrmap;
pub mod rows;
pub mod sqlite_only;
pub mod structure;
pub mod tap;
pub mod vanished;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail};
use rusqlite::Connection;
use rusqlite::types::Value;

use crate::config::Settings;
use crate::db;
use crate::exit::ExitStatus;
use crate::format::btree::{self, IndexItem, PageSource, TableItem};
use crate::format::header::DatabaseHeader;
use crate::format::record::{Record, ValueRef};
use crate::pager::Pager;
use crate::progress::Progress;
use crate::report::{self, Coverage, Report, Tool, Verdict};
use crate::schema::{self, CustomerTable, IndexPart, SchemaObject};
use compare::{Collected, Plan};
use finding::{Code, EntryRef, Finding, Severity};
use probe::{Answer, Prober};

/// A customer ID, ordered as SQLite orders values (numbers before text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CustomerId {
    Int(i64),
    Text(String),
}

impl CustomerId {
    fn from_value(v: &Value) -> Option<CustomerId> {
        match v {
            Value::Integer(i) => Some(CustomerId::Int(*i)),
            other => report::id_text(other).map(CustomerId::Text),
        }
    }
    fn text(&self) -> String {
        match self {
            CustomerId::Int(i) => i.to_string(),
            CustomerId::Text(t) => t.clone(),
        }
    }
}

fn id_list(ids: &BTreeSet<CustomerId>) -> Vec<String> {
    ids.iter().map(CustomerId::text).collect()
}

pub struct CheckOutcome {
    pub report: Report,
    pub status: ExitStatus,
}

/// Runs the check (with SQLite's full quick_check only when the settings
/// ask for it). `Err` means it could not run (exit 2).
pub fn check(path: &Path, settings: &Settings, progress: Progress) -> Result<CheckOutcome> {
    check_with(path, settings, progress, false)
}

/// The check; `second_opinion` also runs SQLite's full quick_check beside
/// custodian's own checks (so does `settings.sqlite_quick_check`, the
/// `--sqlite-quick-check` flag). Without it, custodian's checks catch what
/// quick_check catches (the corpus parity test holds them to it), with
/// SQLite asked only what only SQLite can judge (`sqlite_only.rs`).
pub fn check_with(
    path: &Path,
    settings: &Settings,
    progress: Progress,
    second_opinion: bool,
) -> Result<CheckOutcome> {
    let second_opinion = second_opinion || settings.sqlite_quick_check;
    let mut ctx = Ctx::new();
    // What the POS gets decides whether the whole file is refused. Then the
    // check's own SQLite read transaction is opened and held to the end: in
    // rollback mode its shared lock keeps writers from changing the file
    // under the page reader; in WAL mode the reader's snapshot is at least
    // as new as SQLite's, and every finding about customers is confirmed by
    // a lookup inside SQLite's snapshot.
    let opened = access::open(path, settings)?;
    let Some((header, probe_all)) = header_findings(&opened.header, &mut ctx) else {
        ctx.coverage.complete = false;
        if let Some(reason) = &opened.refusal {
            refused_findings(reason, None, &settings.table, &mut ctx);
        }
        return Ok(ctx.finish(path, settings, false));
    };
    ctx.coverage.page_size = header.page_size;
    let access::Opened {
        refusal,
        pager,
        access,
        ..
    } = opened;
    let Some(pager) = pager else {
        bail!("{}: cannot read", path.display());
    };
    if refusal.is_some() {
        ctx.known_ids = Some(BTreeSet::new());
    } else if probe_all {
        ctx.every_row = Some(Vec::new());
        ctx.known_ids = Some(BTreeSet::new());
    }
    file_findings(&pager, &header, &mut ctx);
    ctx.coverage.pages = pager.page_count();
    ctx.coverage.wal_frames = pager.wal().map(|w| w.max_frame).unwrap_or(0);

    let Some(access) = access else {
        schema_unreadable(&pager, &mut ctx);
        if let Some(reason) = &refusal {
            refused_findings(reason, None, &settings.table, &mut ctx);
        }
        return Ok(ctx.finish(path, settings, false));
    };
    let table = match schema::customer_table(
        &access.conn,
        &access.objects,
        &settings.table,
        &settings.id_column,
    ) {
        Ok(Some(Ok(t))) => Some(t),
        Ok(Some(Err(msg))) => bail!("{}: {msg}", path.display()),
        Ok(None) => None,
        // SQLite refuses the file and cannot introspect the table: what the
        // page reader found is reported without it.
        Err(_) if refusal.is_some() => None,
        Err(e) => return Err(e),
    };
    let quick = passes(
        path,
        &pager,
        &header,
        &access,
        table.as_ref(),
        settings,
        progress,
        second_opinion,
        &mut ctx,
    )?;
    add_quick_check(&quick, &mut ctx);
    if let Some(t) = &table {
        swapped_pages(&pager, &access, t, &mut ctx);
    }

    let table_found = table.is_some();
    match &table {
        Some(t) => {
            ctx.coverage.table = Some(t.name.clone());
            ctx.coverage.id_column = Some(t.columns[t.id_column].name.clone());
        }
        None => table_missing(&access.objects, settings, &mut ctx),
    }
    if let Some(reason) = &refusal {
        refused_findings(
            reason,
            Some((&access, table.as_ref())),
            &settings.table,
            &mut ctx,
        );
    }
    vanished::classify_erasures(&mut ctx.findings, settings.vanished);
    drop(access);
    Ok(ctx.finish(path, settings, table_found))
}

/// The passes over the pages, on both cores: the customer table against
/// its indexes, every other b-tree, and what only SQLite can judge (with
/// SQLite's full quick_check when asked for); then the page accounting.
/// Returns quick_check's lines (`["ok"]` when it did not run).
#[allow(clippy::too_many_arguments)]
fn passes(
    path: &Path,
    pager: &Pager,
    header: &DatabaseHeader,
    access: &access::Access,
    table: Option<&CustomerTable>,
    settings: &Settings,
    progress: Progress,
    second_opinion: bool,
    ctx: &mut Ctx,
) -> Result<Vec<String>> {
    let objects = &access.objects;
    let customer_roots: BTreeSet<u32> = table
        .map(|t| {
            std::iter::once(t.rootpage)
                .chain(t.indexes.iter().map(|i| i.rootpage))
                .collect()
        })
        .unwrap_or_default();
    let (rules, needs) = row_rules(&access.conn, objects);
    let orders = key_orders(&access.conn, objects, &customer_roots);
    // Vanished customers are looked for only beside a customer table
    // that stores rows (see below).
    let search = table
        .filter(|t| t.rootpage > 0)
        .and_then(|t| vanished::Search::new(pager, &access.conn, objects, t, &settings.references));
    let ws = access.via == access::Via::WritableSchema;
    let ask_sqlite = access.via.reads_the_file();
    let t0 = std::time::Instant::now();
    let (quick, by_sqlite) = std::thread::scope(|s| -> Result<_> {
        // What only SQLite can judge (virtual tables, CHECK constraints),
        // and SQLite's full quick_check when asked for, on connections of
        // their own beside custodian's passes.
        let qc = s.spawn(move || -> Result<_> {
            if !ask_sqlite {
                return Ok((vec!["ok".to_string()], Vec::new()));
            }
            let by_sqlite = sqlite_only::findings(path, objects, &needs, ws)?;
            let quick = if second_opinion {
                quick_check(path, ws)?
            } else {
                vec!["ok".to_string()]
            };
            Ok((quick, by_sqlite))
        });
        // Every other b-tree is walked on its own thread; the walk of a
        // column naming customers feeds the vanished customers' merge, and
        // pass 1's walk of the customer ID index hands it the IDs.
        // (Not when the IDs are the table's own keys: pass 1 reads the table
        // by other means.)
        let fed = search.as_ref().and_then(|v| {
            let id_root = v.id_root();
            let id_index = table.is_some_and(|t| t.rootpage != id_root);
            v.fed_reference(&customer_roots)
                .filter(|_| id_index)
                .map(|r| (r, id_root))
        });
        let (feed, ids) = match fed {
            Some((fed, id_root)) => {
                let (feed, ids) = vanished::id_channel();
                (Some((id_root, feed)), Some((fed, ids)))
            }
            None => (None, None),
        };
        let (search, rules, customer_roots, orders) = (&search, &rules, &customer_roots, &orders);
        let others = s.spawn(move || {
            let r = other_trees(
                pager,
                objects,
                customer_roots,
                rules,
                search.as_ref(),
                ids,
                orders,
            );
            timing("other trees", t0);
            r
        });
        let mut trees = Vec::new();
        // A virtual customer table (root page 0: an FTS vocabulary, say)
        // stores no rows of its own; its module's own integrity check, in
        // what only SQLite can judge, is the check of it.
        if let Some(t) = table.filter(|t| t.rootpage > 0) {
            let pass = Pass {
                pager,
                conn: &access.conn,
                table: t,
                columns: rules.get(&t.name),
                settings,
                progress,
                via: access.via,
            };
            trees = customer_pass(&pass, feed, ctx)?;
        }
        timing("customer", t0);
        let ((findings, other_trees), merged) = others
            .join()
            .map_err(|_| anyhow::anyhow!("structure thread failed"))?;
        timing("structure", t0);
        ctx.findings.extend(findings);
        if let (Some(t), Some(v)) = (table, search) {
            let tv = std::time::Instant::now();
            ctx.findings.extend(v.findings(pager, t, merged));
            timing("vanished customers (own clock)", tv);
        }
        trees.extend(other_trees);
        let roots = schema::root_pages(objects);
        ctx.page_map = Some(account_pages(pager, header, &trees, &roots, ctx));
        let r = qc.join();
        timing("sqlite", t0);
        match r {
            Ok(r) => r,
            Err(_) => Ok((vec!["quick_check thread failed".into()], Vec::new())),
        }
    })?;
    ctx.findings.extend(by_sqlite);
    Ok(quick)
}

/// Every tree but the customer table's, walked for structure, records and
/// column rules (`others.rs`); the walk of an index of a column naming
/// customers also feeds the vanished customers' merge, with the IDs from
/// `ids` for the index it names (pass 1's walk of the customer ID index
/// sends them), else from a reader of its own. Returns the findings, the
/// trees' pages and the merges by root page.
fn other_trees(
    pager: &Pager,
    objects: &[SchemaObject],
    customer_roots: &BTreeSet<u32>,
    rules: &BTreeMap<String, rows::RowRules>,
    search: Option<&vanished::Search>,
    mut ids: Option<(u32, vanished::IdSource)>,
    orders: &others::KeyOrders,
) -> (
    (Vec<Finding>, Vec<structure::TreePages>),
    BTreeMap<u32, vanished::Merged>,
) {
    let mut merged = BTreeMap::new();
    let mut tapper = |root: u32, walk: &mut dyn FnMut(Option<&mut dyn tap::Tap>)| match search {
        Some(v) if v.reads(root) => {
            let walk = |m: &mut vanished::Merge| walk(Some(m));
            let ((), m) = match ids.take_if(|(fed, _)| *fed == root) {
                Some((_, source)) => vanished::merge_fed(source, walk),
                None => v.merge_beside(pager, walk),
            };
            merged.insert(root, m);
        }
        _ => walk(None),
    };
    let r = others::walk_other_trees(pager, objects, customer_roots, rules, orders, &mut tapper);
    (r, merged)
}

/// The key order of every index b-tree but the customer table's (those are
/// compared entry for entry), from SQLite's `PRAGMA index_xinfo`: an index
/// sorts on all its fields (the rowid or primary key last), a WITHOUT ROWID
/// table on its primary key. A tree SQLite gives no order for, or with a
/// collation custodian does not have, is left out.
fn key_orders(
    conn: &Connection,
    objects: &[SchemaObject],
    customer_roots: &BTreeSet<u32>,
) -> others::KeyOrders {
    let mut out = others::KeyOrders::new();
    for o in objects {
        let Ok(root) = u32::try_from(o.rootpage) else {
            continue;
        };
        let keys_only = match o.kind.as_str() {
            "index" => false,
            "table" if o.sql.as_deref().is_some_and(schema::is_without_rowid) => true,
            _ => continue,
        };
        if root == 0 || customer_roots.contains(&root) {
            continue;
        }
        // the object named by its bytes (a name that is not UTF-8, read
        // with U+FFFD, names nothing)
        let sql = "SELECT desc, coll, key FROM pragma_index_xinfo(?1)";
        let fields =
            crate::sql_bytes::query_map(conn, sql, &[&crate::sql_bytes::param(&o.name)], |r| {
                let desc = r.get::<i64>(0)? != 0;
                let coll = r.get::<Option<String>>(1)?;
                let key = r.get::<i64>(2)? != 0;
                Ok((coll, desc, key))
            });
        let Ok(fields) = fields else { continue };
        let order: Option<Vec<_>> = fields
            .into_iter()
            .filter(|&(_, _, key)| key || !keys_only)
            .map(|(coll, desc, _)| {
                let c = coll.map_or(Some(crate::format::record::Collation::Binary), |c| {
                    crate::format::record::Collation::from_name(&c)
                });
                c.map(|c| (c, desc))
            })
            .collect();
        if let Some(order) = order.filter(|o| !o.is_empty()) {
            out.insert(root, order);
        }
    }
    out
}

/// The customer table is not in the schema: say so, with the tables there are.
fn table_missing(objects: &[SchemaObject], settings: &Settings, ctx: &mut Ctx) {
    ctx.findings.push(
        Finding::error(
            Code::TableMissing,
            schema::no_such_table(objects, &settings.table),
        )
        .object(&settings.table),
    );
    ctx.coverage.complete = false;
}

/// Neither SQLite nor the page reader can read the schema: say so, with the
/// damage the page reader finds on the schema's pages.
fn schema_unreadable(pager: &Pager, ctx: &mut Ctx) {
    ctx.findings.push(
        Finding::error(
            Code::SchemaUnreadable,
            "neither SQLite nor custodian's page reader can read the schema (sqlite_schema, page 1)",
        )
        .object("sqlite_schema")
        .pages(vec![1]),
    );
    let (damage, _) = structure::walk_structure(pager, 1, false);
    ctx.findings.extend(structure::damage_findings(
        "sqlite_schema",
        "sqlite_schema",
        &damage,
    ));
    ctx.coverage.complete = false;
}

/// SQLite refuses the whole file: every customer is rejected by the POS.
/// The finding says why; `affected_customer_ids` holds every customer the
/// customer table and its indexes still name (rows read from the pages, and
/// the IDs the comparison names, such as index entries whose rows are lost;
/// customers only other tables name are in `customer_vanished`, as always);
/// beside it, an info finding says what the page reader still reads whole.
fn refused_findings(
    reason: &str,
    access: Option<(&access::Access, Option<&CustomerTable>)>,
    table_name: &str,
    ctx: &mut Ctx,
) {
    let known = ctx.known_ids.take().unwrap_or_default();
    let mut all = known.clone();
    let table = access.and_then(|(_, t)| t);
    if let Some(t) = table {
        for f in ctx.findings.iter().filter(|f| {
            f.table.as_deref() == Some(t.name.as_str()) && f.code != Code::CustomerVanished
        }) {
            all.extend(
                f.customer_ids
                    .iter()
                    .filter_map(|s| CustomerId::from_value(&t.id_value(s))),
            );
        }
    }
    all.extend(ctx.affected.iter().cloned());
    let n = all.len();
    ctx.findings.push(
        Finding::error(
            Code::DatabaseRefused,
            format!(
                "SQLite refuses the whole file ({reason}): the POS cannot look up any customer, \
                 so every customer is rejected ({n} known from the pages)"
            ),
        )
        .count(n as u64)
        .customer_ids(id_list(&all)),
    );
    let reading = match access {
        None => format!(
            "custodian's page reader cannot read the schema either: which pages hold {table_name} \
             cannot be told without a snapshot's schema (custodian repair --snapshot)"
        ),
        Some((_, None)) => format!(
            "the schema custodian could read has no table {table_name:?}: no customer can be read from the pages"
        ),
        Some((a, Some(t))) => format!(
            "custodian's page reader still reads {} customers of {} whole from the pages{}",
            known.len(),
            t.name,
            if a.via == access::Via::Pages {
                ", with the schema read from page 1 by the page reader"
            } else {
                ""
            }
        ),
    };
    ctx.findings.push(
        Finding::new(Code::PageLevelReading, Severity::Info, reading)
            .count(known.len() as u64)
            .customer_ids(id_list(&known)),
    );
    ctx.affected = all;
}

/// Phase times on stderr when CUSTODIAN_TIMING is set (for benchmarks).
pub(crate) fn timing(what: &str, since: std::time::Instant) {
    if std::env::var_os("CUSTODIAN_TIMING").is_some() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let hwm = status
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?");
        crate::messages::error(&format!(
            "timing: {what}: {:.3} s (peak {hwm} KiB)",
            since.elapsed().as_secs_f64()
        ));
    }
}

struct Ctx {
    page_map: Option<structure::PageMap>,
    findings: Vec<Finding>,
    coverage: Coverage,
    affected: BTreeSet<CustomerId>,
    /// When SQLite refuses the file, or reads it under a header that does
    /// not describe it: the customers read from the pages.
    known_ids: Option<BTreeSet<CustomerId>>,
    /// When SQLite reads the file under a header that does not describe it
    /// (`HeaderState::Damaged { accepted: true }`): every rowid of the
    /// customer table, each probed, as every ID in `known_ids` is.
    every_row: Option<Vec<i64>>,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            page_map: None,
            findings: Vec::new(),
            coverage: Coverage {
                complete: true,
                ..Coverage::default()
            },
            affected: BTreeSet::new(),
            known_ids: None,
            every_row: None,
        }
    }

    fn finish(mut self, path: &Path, settings: &Settings, table_found: bool) -> CheckOutcome {
        let errors = self
            .findings
            .iter()
            .any(|f| f.severity == Severity::Error && f.code != Code::TableMissing);
        let warnings = self
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning);
        let missing_table =
            !table_found && self.findings.iter().any(|f| f.code == Code::TableMissing);
        let (verdict, status) = if errors || !self.affected.is_empty() {
            (Verdict::Corrupt, ExitStatus::Problems)
        } else if missing_table {
            (Verdict::Failed, ExitStatus::CouldNotRun)
        } else if warnings && settings.strict {
            (Verdict::Clean, ExitStatus::Problems)
        } else {
            (Verdict::Clean, ExitStatus::Success)
        };
        self.findings.sort_by(|a, b| {
            (a.severity, a.code, &a.object, &a.message)
                .cmp(&(b.severity, b.code, &b.object, &b.message))
        });
        CheckOutcome {
            report: Report {
                schema_version: report::SCHEMA_VERSION,
                tool: Tool::this(),
                command: "check",
                database: path.display().to_string(),
                verdict,
                findings: self.findings,
                affected_customer_ids: id_list(&self.affected),
                coverage: self.coverage,
                page_map: self.page_map,
                repair: None,
                diagnoses: None,
            },
            status,
        }
    }
}

/// The header's state as findings: `None` when no page can be read; else
/// the header to read the pages with, and whether every customer must be
/// probed (SQLite reads the file under a header that does not describe it).
fn header_findings(state: &access::HeaderState, ctx: &mut Ctx) -> Option<(DatabaseHeader, bool)> {
    match state {
        access::HeaderState::Sound(h) => Some((h.clone(), false)),
        access::HeaderState::TooShort { len } => {
            ctx.findings.push(Finding::error(
                Code::FileTruncated,
                format!("the file is {len} bytes, shorter than the 100-byte database header"),
            ));
            None
        }
        access::HeaderState::Unreadable { problem } => {
            ctx.findings.push(
                Finding::error(
                    Code::HeaderInvalid,
                    format!(
                        "database header: {problem}; no page shows the page size either, so no page could be read"
                    ),
                )
                .pages(vec![1]),
            );
            None
        }
        access::HeaderState::Damaged {
            problem,
            header,
            accepted: true,
            ..
        } => {
            ctx.findings.push(
                Finding::error(
                    Code::HeaderInvalid,
                    format!(
                        "database header: {problem}; the pages were read as they are laid out, \
                         and every customer's lookups were probed through SQLite"
                    ),
                )
                .pages(vec![1]),
            );
            Some((header.clone(), true))
        }
        access::HeaderState::Damaged {
            problem, header, ..
        } => {
            ctx.findings.push(
                Finding::error(
                    Code::HeaderInvalid,
                    format!(
                        "database header: {problem}; the pages show {}-byte pages with {} reserved bytes, and they were read so",
                        header.page_size, header.reserved_bytes
                    ),
                )
                .pages(vec![1]),
            );
            Some((header.clone(), false))
        }
    }
}

fn file_findings(pager: &Pager, header: &DatabaseHeader, ctx: &mut Ctx) {
    let ps = header.page_size as u64;
    let len = pager.file_len();
    if !len.is_multiple_of(ps) {
        ctx.findings.push(Finding::new(
            Code::FileSizeOdd,
            Severity::Warning,
            format!("the file is {len} bytes, not a whole number of {ps}-byte pages"),
        ));
    }
    let n = pager.page_count();
    let in_file = (len / ps) as u32;
    if n > in_file && n - in_file > 1_000_000 {
        // Too many to list page by page: say the range (no page is hidden).
        ctx.findings.push(
            Finding::error(
                Code::FileTruncated,
                format!(
                    "the database has {n} pages but the file holds {in_file}: pages {} to {n} are lost",
                    in_file + 1
                ),
            )
            .count((n - in_file) as u64),
        );
    } else if n > in_file {
        let missing: Vec<u32> = (in_file + 1..=n)
            .filter(|&p| pager.wal().and_then(|w| w.newest_frame(p)).is_none())
            .collect();
        if !missing.is_empty() {
            ctx.findings.push(
                Finding::error(
                    Code::FileTruncated,
                    format!(
                        "the database has {n} pages but the file holds {in_file}: {} pages are lost",
                        missing.len()
                    ),
                )
                .count(missing.len() as u64)
                .pages(missing),
            );
        }
    }
    if let Some(w) = pager.wal()
        && w.max_frame > 0
    {
        ctx.findings.push(
            Finding::new(
                Code::WalUncheckpointed,
                Severity::Info,
                format!(
                    "the -wal holds {} committed frames not yet checkpointed; they were read as part of the database",
                    w.max_frame
                ),
            )
            .count(w.max_frame as u64),
        );
    }
    if let Some(w) = pager.wal()
        && w.lost_commits > 0
    {
        ctx.findings.push(
            Finding::error(
                Code::WalInvalid,
                format!(
                    "frame {} of the -wal is damaged: {} transactions committed after it are ignored, as SQLite ignores every frame after a damaged one; their changes are lost (the database is read as of frame {})",
                    w.frames_valid + 1,
                    w.lost_commits,
                    w.max_frame
                ),
            )
            .count(u64::from(w.lost_commits)),
        );
    }
    if let Some(w) = pager.wal()
        && let Some(t) = &w.torn_last
    {
        let wal = format!("{}-wal", pager.path().display());
        ctx.findings.push(
            Finding::new(
                Code::WalLastTransactionTorn,
                Severity::Info,
                format!(
                    "the -wal ends in a transaction SQLite discards: its commit frame {} fails its checksum (a write torn by a crash, or the frame damaged since), so frames {} to {}, holding {} pages, were never committed; what they changed (a customer registered in them, say) is not in the database, which is read as of frame {}",
                    t.commit_frame,
                    t.first_frame,
                    t.commit_frame,
                    t.pages.len(),
                    w.max_frame
                ),
            )
            .object(&wal)
            .count(t.pages.len() as u64)
            .pages(t.pages.clone()),
        );
    }
    if let Some(e) = pager.wal_error() {
        ctx.findings.push(Finding::new(
            Code::WalInvalid,
            Severity::Warning,
            format!("the -wal file cannot be used: {e}"),
        ));
    }
}

/// The column rules of every ordinary table SQLite can introspect (a table
/// it cannot is left to the structural checks), sqlite_schema's among them;
/// and the tables whose rules only SQLite can apply (CHECK constraints,
/// NOT NULL or STRICT VIRTUAL generated columns), for `sqlite_only.rs`.
fn row_rules(
    conn: &Connection,
    objects: &[SchemaObject],
) -> (BTreeMap<String, rows::RowRules>, Vec<sqlite_only::Needs>) {
    let mut rules = BTreeMap::new();
    let mut needs = Vec::new();
    let infos = objects
        .iter()
        .filter(|o| o.kind == "table" && o.rootpage > 0 && !schema::is_virtual_table(o))
        .filter_map(|o| schema::table_info(conn, o).ok().map(|i| (o, i)));
    for (o, info) in infos {
        if let Some(n) = o
            .sql
            .as_deref()
            .and_then(|sql| sqlite_only::Needs::of(&info.name, sql, &info))
        {
            needs.push(n);
        }
        if let Some(r) = rows::RowRules::new(&info) {
            rules.insert(info.name.clone(), r);
        }
    }
    if let Some(r) = rows::RowRules::new(&schema::schema_table_info()) {
        rules.insert("sqlite_schema".to_string(), r);
    }
    (rules, needs)
}

/// Every page must be used exactly once: by a b-tree (with its overflow
/// pages), the freelist, a pointer map or the lock-byte page.
fn account_pages(
    pager: &Pager,
    header: &DatabaseHeader,
    trees: &[structure::TreePages],
    roots: &[u32],
    ctx: &mut Ctx,
) -> structure::PageMap {
    // Only pages that exist are accounted (a damaged header may claim
    // billions); pages the header counts beyond them are reported as lost.
    let in_file = pager.file_len().div_ceil(pager.page_size() as u64);
    let in_wal = pager.wal().map(|w| w.db_pages as u64).unwrap_or(0);
    let n = (pager.page_count() as u64).min(in_file.max(in_wal)) as u32;
    let mut account = structure::PageAccount::new(n);
    for t in trees {
        account.mark_tree(t);
    }
    let (free, err) =
        structure::freelist_pages(pager, header.first_freelist_trunk, header.freelist_count);
    account.mark_special(&free, structure::PageState::Free);
    if let Some(e) = err {
        ctx.findings.push(Finding::error(Code::FreelistDamaged, e));
    }
    // the pages decide whether pointer maps are there, where the header's
    // largest root page says otherwise
    let page2_used = free.contains(&2)
        || trees
            .iter()
            .any(|t| t.pages.contains(&2) || t.damaged.contains(&2));
    let (maps, roles) = ptrmap::pointer_maps(pager, header, roots, page2_used);
    if let (true, Some(roles)) = (maps, roles) {
        account.mark_special(
            &structure::ptrmap_pages(pager.usable_size(), pager.page_size(), n),
            structure::PageState::Ptrmap,
        );
        ctx.findings.extend(ptrmap::check(pager, roles, &free));
    }
    ctx.findings
        .extend(ptrmap::header_findings(header, roots, maps));
    if let Some(p) = structure::lock_byte_page(pager.page_size(), pager.page_count()) {
        account.mark(p);
    }
    let truncated: BTreeSet<u32> = ctx
        .findings
        .iter()
        .filter(|f| f.code == Code::FileTruncated)
        .flat_map(|f| f.pages.iter().copied())
        .collect();
    account.set_lost(&truncated.iter().copied().collect::<Vec<_>>());
    let unused: Vec<u32> = account
        .unused()
        .into_iter()
        .filter(|p| !truncated.contains(p))
        .collect();
    if !unused.is_empty() {
        ctx.findings.push(
            Finding::error(
                Code::PageUnused,
                format!(
                    "{} pages belong to no table, index or the freelist (a lost b-tree, e.g. an index whose definition is gone from the schema)",
                    unused.len()
                ),
            )
            .count(unused.len() as u64)
            .pages(unused),
        );
    }
    if !account.reused().is_empty() {
        let r = account.reused().to_vec();
        ctx.findings.push(
            Finding::error(
                Code::PageReused,
                format!("{} pages are used more than once", r.len()),
            )
            .count(r.len() as u64)
            .pages(r),
        );
    }
    account.page_map()
}

/// Two pages holding each other's content (`format::swapped`), looked for
/// where a walk found a page of the wrong kind or a broken child pointer:
/// named as such, and the customer table's rows on them, read with the two
/// put back, probed. A row of a customer leaf written at another tree's
/// place is reached by no reference, and where its ID index entry was on
/// the other page of the pair, nothing else names it: SQLite's lookup of
/// it fails all the same. Not in a file read through a -wal (its frames
/// shadow the pages).
fn swapped_pages(pager: &Pager, access: &access::Access, table: &CustomerTable, ctx: &mut Ctx) {
    let walk_broken = ctx.findings.iter().any(|f| {
        f.severity == Severity::Error
            && matches!(f.code, Code::PageDamaged | Code::ChildPointerInvalid)
    });
    if !walk_broken || pager.wal().is_some() || table.rootpage == 0 {
        return;
    }
    let swaps = crate::format::swapped::find_swaps(pager, &schema::root_pages(&access.objects));
    if swaps.is_empty() {
        return;
    }
    let on_pages = customers_on_swapped_pages(pager, table, &swaps);
    let prober = Prober::new(&access.conn, table);
    for (s, ids) in swaps.iter().zip(on_pages) {
        let rejected: BTreeSet<CustomerId> = ids
            .into_iter()
            .filter(|id| {
                probe_customer(&prober, table, id, &[])
                    .values()
                    .any(Answer::is_wrong)
            })
            .collect();
        ctx.findings.push(
            Finding::error(Code::PagesSwapped, s.detail.clone())
                .pages(vec![s.a, s.b])
                .count(rejected.len() as u64)
                .customer_ids(id_list(&rejected)),
        );
        ctx.affected.extend(rejected);
    }
}

/// The customer IDs of the table's rows on each pair of `swaps`, read
/// with every pair put back (nothing written): one set per pair.
fn customers_on_swapped_pages(
    pager: &Pager,
    table: &CustomerTable,
    swaps: &[crate::format::swapped::Swap],
) -> Vec<BTreeSet<CustomerId>> {
    let view = crate::format::swapped::PutBack::new(pager, swaps);
    let enc = pager.text_encoding();
    let pair_of = |pgno: u32| swaps.iter().position(|s| s.a == pgno || s.b == pgno);
    let mut out = vec![BTreeSet::new(); swaps.len()];
    let mut rec = Record::default();
    let mut take = |pgno: u32, payload: &[u8], rowid: i64| {
        let Some(pair) = pair_of(pgno) else { return };
        if rec.parse(payload).is_ok()
            && let Some(id) = row_customer_id(
                rowid,
                &rec,
                payload,
                table.columns[table.id_column].record_pos,
                table.id_is_rowid(),
                enc,
            )
        {
            out[pair].insert(id);
        }
    };
    if table.without_rowid {
        btree::walk_index(&view, table.rootpage, &mut |item| {
            if let IndexItem::Entry { payload, pgno, .. } = item {
                take(pgno, payload, 0);
            }
        });
    } else {
        btree::walk_table(&view, table.rootpage, &mut |item| {
            if let TableItem::Row {
                rowid,
                payload,
                pgno,
            } = item
            {
                take(pgno, payload, rowid);
            }
        });
    }
    out
}

/// SQLite's answers to the lookup of customer `id`, by ID and through
/// every index: in a WITHOUT ROWID table by its primary key, each index by
/// the key of its row as `page_rows` hold it where the seek by ID cannot
/// read it.
fn probe_customer(
    prober: &Prober,
    table: &CustomerTable,
    id: &CustomerId,
    page_rows: &[compare::PageRow],
) -> BTreeMap<String, Answer> {
    let v = match id {
        CustomerId::Int(i) => Value::Integer(*i),
        CustomerId::Text(t) => Value::Text(t.clone()),
    };
    if table.without_rowid {
        prober.probe_id_keyed(&v, page_rows)
    } else {
        prober.probe_id(&v)
    }
}

/// SQLite's full quick_check (the opt-in second opinion): its lines, or its
/// error as a line (its verdict too); only a busy database stops the check.
fn quick_check(path: &Path, writable_schema: bool) -> Result<Vec<String>> {
    let conn = db::open_read_only(path)?;
    if writable_schema {
        conn.pragma_update(None, "writable_schema", true)?;
    }
    Ok(
        match sqlite_only::pragma_lines(&conn, path, "PRAGMA quick_check(1000000)")? {
            Ok(lines) => lines,
            Err(e) => vec![e],
        },
    )
}

fn add_quick_check(lines: &[String], ctx: &mut Ctx) {
    if lines.len() == 1 && lines[0] == "ok" {
        return;
    }
    let typed_structure = ctx.findings.iter().any(|f| {
        f.severity == Severity::Error
            && !matches!(
                f.code,
                Code::TableMissing | Code::WalInvalid | Code::WalUncheckpointed
            )
    });
    let sev = if typed_structure {
        Severity::Info
    } else {
        Severity::Error
    };
    let mut f = Finding::new(
        Code::SqliteQuickCheck,
        sev,
        format!(
            "PRAGMA quick_check: {}",
            lines.first().map(String::as_str).unwrap_or("")
        ),
    )
    .count(lines.len() as u64);
    let mut pages = Vec::new();
    for l in lines {
        // "Page 25140: …", "On tree page 7 cell 0: …", "Tree 5 page 7 …"
        let words: Vec<&str> = l.split([' ', ':']).collect();
        for w in words.windows(2) {
            if w[0].eq_ignore_ascii_case("page")
                && let Ok(p) = w[1].parse::<u32>()
            {
                pages.push(p);
            }
        }
    }
    f = f.pages(pages);
    if lines.len() > 1 {
        f.message = format!("{} (and {} more lines)", f.message, lines.len() - 1);
    }
    ctx.findings.push(f);
}

/// Rows in doubt, gathered from every comparison.
#[derive(Default)]
struct Suspects {
    rows: BTreeSet<i64>,
    ids: BTreeSet<CustomerId>,
    /// Rows beside damage as the page reader read them, by the ID they
    /// hold (`TableScan::beside_rows`): probed by their own keys, which
    /// SQLite's seek may not reach.
    page_rows: BTreeMap<CustomerId, Vec<compare::PageRow>>,
}

/// What the pass over the customer table works with.
#[derive(Clone, Copy)]
struct Pass<'a> {
    pager: &'a Pager,
    /// The check's connection (see `access.rs`).
    conn: &'a Connection,
    table: &'a CustomerTable,
    /// The table's column rules (NOT NULL, types), if it has any.
    columns: Option<&'a rows::RowRules>,
    settings: &'a Settings,
    progress: Progress,
    via: access::Via,
}

/// The customer table against each of its indexes: pass 1 (digests), the
/// exact diff where they differ, the expression and partial indexes, then
/// the lookup probe for every customer in doubt. Returns the trees' pages.
fn customer_pass(
    pass: &Pass<'_>,
    ids: Option<(u32, vanished::IdFeed)>,
    ctx: &mut Ctx,
) -> Result<Vec<structure::TreePages>> {
    let Pass {
        pager,
        conn,
        table,
        columns,
        settings,
        progress,
        via,
    } = *pass;
    let tname = table.name.as_str();
    let mut trees: Vec<structure::TreePages> = Vec::new();
    let defaults = column_defaults(conn, table);
    let mut plans = Vec::new();
    let mut sql_side = Vec::new();
    for i in 0..table.indexes.len() {
        match Plan::new(table, i, &defaults) {
            Some(p) => plans.push(p),
            None => sql_side.push(i),
        }
    }

    let t1 = std::time::Instant::now();
    let (tscan, iscans, rules, tally) = pass_one(pass, &plans, ids, ctx)?;
    timing("customer table ⇄ indexes, pass 1 (own clock)", t1);
    ctx.coverage.customers_read = tscan.rows;
    trees.push(structure::TreePages::new(
        tname,
        tscan.pages.clone(),
        &tscan.damage,
    ));
    for (p, i) in iscans.iter().enumerate() {
        let name = &table.indexes[plans[p].index].name;
        trees.push(structure::TreePages::new(name, i.pages.clone(), &i.damage));
    }
    rules.into_findings(tname, settings, &mut ctx.findings);
    if let Some(c) = columns {
        ctx.findings.extend(tally.findings(c));
    }

    ctx.findings
        .extend(structure::damage_findings(tname, tname, &tscan.damage));
    let unreadable = tscan.damaged_rows.len() as u64 + tscan.damaged_keyed;
    if unreadable > 0 {
        ctx.findings.push(
            Finding::error(
                Code::RowsUnreadable,
                format!("{unreadable} rows of {tname} cannot be read whole"),
            )
            .table(tname)
            .count(unreadable),
        );
    }
    let mut suspects = Suspects::default();
    if let Some(all) = ctx.every_row.take() {
        // SQLite reads the file under a header that does not describe it:
        // any lookup may go wrong, and each is asked
        suspects.rows.extend(all);
        suspects
            .ids
            .extend(ctx.known_ids.take().unwrap_or_default());
    }
    suspects.rows.extend(tscan.damaged_rows.iter().copied());
    suspects.ids.extend(
        tscan
            .beside_damage
            .iter()
            .filter_map(CustomerId::from_value),
    );
    for r in &tscan.beside_rows {
        if let Some(id) = r.id(table).and_then(CustomerId::from_value) {
            suspects.page_rows.entry(id).or_default().push(r.clone());
        }
    }

    let mut wanted: compare::Wanted = Vec::new();
    for (p, plan) in plans.iter().enumerate() {
        let index = &table.indexes[plan.index];
        ctx.findings.extend(structure::damage_findings(
            &index.name,
            tname,
            &iscans[p].damage,
        ));
        let w: Vec<bool> = (0..compare::BUCKETS)
            .map(|b| tscan.digests[p][b] != iscans[p].digests[b])
            .collect();
        wanted.push(w);
        ctx.coverage.indexes_compared.push(index.name.clone());
    }
    pass_two(
        pager,
        table,
        &plans,
        &wanted,
        tscan.rows,
        &mut suspects,
        ctx,
    )?;
    for (p, plan) in plans.iter().enumerate() {
        order_findings(table, plan.index, &iscans[p], &mut suspects, ctx);
        beside_damage_suspects(pager, table, plan, &iscans[p], &mut suspects);
    }
    for &i in &sql_side {
        trees.push(sql_side_index(pass, i, &mut suspects, ctx));
    }
    ctx.coverage.indexes_compared.sort();

    // The lookup probe does the POS's lookups; where SQLite refuses the
    // file, the POS gets no answer at all (every customer is affected).
    if via == access::Via::Sqlite {
        probe_suspects(conn, table, &suspects, progress, ctx);
    }
    Ok(trees)
}

/// Pass 1: every row's expected index entries and every index's actual
/// entries hashed into digests; each row held to the column rules and the
/// data rules on the way. The table is read on this thread and the indexes
/// on a second one; once the table is read, this thread takes indexes too,
/// so that both cores stay busy to the end. The walk of the index rooted
/// at `ids`' root (the customer ID index, taken first) hands the IDs to
/// the vanished customers' merge.
fn pass_one(
    pass: &Pass<'_>,
    plans: &[Plan],
    ids: Option<(u32, vanished::IdFeed)>,
    ctx: &mut Ctx,
) -> Result<(
    compare::TableScan,
    Vec<compare::IndexScan>,
    RuleHits,
    rows::Tally,
)> {
    let Pass {
        pager,
        table,
        columns,
        settings,
        progress,
        ..
    } = *pass;
    let mut rules = RuleHits::default();
    let id_pos = table.columns[table.id_column].record_pos;
    let id_is_rowid = table.id_is_rowid();
    let status_pos = settings
        .status_column
        .as_ref()
        .and_then(|s| table.record_pos_of(s));
    let enc = pager.text_encoding();
    let bar = progress.counter("reading the customer table");
    let mut tally = rows::Tally::default();
    let mut known = ctx.known_ids.take();
    // (a WITHOUT ROWID table's rows are probed by their IDs alone)
    let mut every = ctx.every_row.take();
    let rowids = !table.without_rowid;
    // The indexes still to read, taken one at a time by either thread, the
    // one that feeds the merge first (the merge waits for it).
    let id_root = ids.as_ref().map(|(root, _)| *root);
    let root_of = |p: usize| table.indexes[plans[p].index].rootpage;
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&p| Some(root_of(p)) != id_root);
    let ids = std::sync::Mutex::new(ids.map(|(_, feed)| feed));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let scan_indexes = || {
        let mut done = Vec::new();
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&p) = order.get(k) else {
                return done;
            };
            let root = root_of(p);
            let feed = match Some(root) == id_root {
                true => ids.lock().ok().and_then(|mut f| f.take()),
                false => None,
            };
            let scan = match feed {
                Some(mut feed) => {
                    let tap: &mut dyn tap::Tap = &mut feed;
                    let scan = compare::scan_index_tapped(
                        pager,
                        root,
                        &plans[p],
                        None,
                        &|_| {},
                        compare::BUCKET_BITS,
                        Some(tap),
                    );
                    feed.finish();
                    scan
                }
                None => {
                    compare::scan_index(pager, root, &plans[p], None, &|_| {}, compare::BUCKET_BITS)
                }
            };
            done.push((p, scan));
        }
    };
    let (tscan, iscans) = std::thread::scope(|s| {
        let ih = s.spawn(scan_indexes);
        let any_rule = settings.id_rule.is_some() || status_pos.is_some();
        let mut hook = |rowid: i64, rec: &Record, payload: &[u8]| {
            if rowids && let Some(e) = every.as_mut() {
                e.push(rowid);
            }
            if let Some(k) = known.as_mut()
                && let Some(id) = row_customer_id(rowid, rec, payload, id_pos, id_is_rowid, enc)
            {
                k.insert(id);
            }
            if let Some(c) = columns {
                c.check(rec, payload, enc, &mut |col, v| {
                    tally.add(col, v, || format!("row {rowid}"))
                });
            }
            if any_rule {
                rules.observe(
                    rowid,
                    rec,
                    payload,
                    id_pos,
                    id_is_rowid,
                    status_pos,
                    settings,
                    enc,
                );
            } else if id_is_rowid {
            } else if matches!(
                id_pos.and_then(|p| rec.get(payload, p)),
                None | Some(ValueRef::Null)
            ) {
                rules.empty += 1;
            } else if let Some(ValueRef::Text(t)) = id_pos.and_then(|p| rec.get(payload, p))
                && t.iter().all(|b| b.is_ascii_whitespace() || *b == 0)
            {
                rules.empty += 1;
            }
        };
        let t = compare::scan_table(
            pager,
            table,
            plans,
            None,
            &mut hook,
            &|n| bar.set_position(n),
            compare::BUCKET_BITS,
        );
        let mine = scan_indexes();
        (t, ih.join().map(|theirs| (theirs, mine)))
    });
    bar.finish_and_clear();
    ctx.known_ids = known;
    ctx.every_row = every;
    let (theirs, mine) = iscans.map_err(|_| anyhow::anyhow!("index scan thread failed"))?;
    let mut iscans: Vec<(usize, compare::IndexScan)> = theirs.into_iter().chain(mine).collect();
    iscans.sort_by_key(|(p, _)| *p);
    let iscans = iscans.into_iter().map(|(_, i)| i).collect();
    Ok((tscan, iscans, rules, tally))
}

/// Pass 2, only for the indexes whose buckets differ: collect both sides
/// of the differing buckets and diff them exactly. Where the damage is
/// spread over many coarse buckets, a pass 1b first narrows it down with
/// the same digests at a finer grain, so that only the rows near the
/// damage are collected (memory stays small whatever the damage).
fn pass_two(
    pager: &Pager,
    table: &CustomerTable,
    plans: &[Plan],
    wanted: &compare::Wanted,
    rows: u64,
    suspects: &mut Suspects,
    ctx: &mut Ctx,
) -> Result<()> {
    let mismatched: Vec<usize> = (0..plans.len())
        .filter(|&p| wanted[p].iter().any(|&b| b))
        .collect();
    let (dense, sparse): (Vec<usize>, Vec<usize>) = mismatched.into_iter().partition(|&p| {
        // rows a coarse pass 2 would hold: bounded, whatever the size
        let buckets = wanted[p].iter().filter(|&&b| b).count() as u64;
        buckets * rows.div_ceil(compare::BUCKETS as u64) > 50_000
    });
    if !sparse.is_empty() {
        let sp: Vec<Plan> = sparse.iter().map(|&p| plans[p].clone()).collect();
        let w: compare::Wanted = sparse.iter().map(|&p| wanted[p].clone()).collect();
        collect_and_diff(pager, table, &sp, &w, compare::BUCKET_BITS, suspects, ctx)?;
    }
    if !dense.is_empty() {
        let fine: Vec<Plan> = dense.iter().map(|&p| plans[p].clone()).collect();
        let bits = compare::FINE_BITS;
        let (tf, ifs) = both_sides(pager, table, &fine, None, bits)?;
        let wanted_fine: compare::Wanted = (0..fine.len())
            .map(|f| {
                (0..1usize << bits)
                    .map(|b| tf.digests[f][b] != ifs[f].digests[b])
                    .collect()
            })
            .collect();
        drop((tf, ifs));
        collect_and_diff(pager, table, &fine, &wanted_fine, bits, suspects, ctx)?;
    }
    Ok(())
}

/// An expression or partial index: SQLite computes the table side (not
/// when the file is read through an in-memory schema: see `access.rs`),
/// the page reader the index side. Returns the index's pages.
fn sql_side_index(
    pass: &Pass<'_>,
    i: usize,
    suspects: &mut Suspects,
    ctx: &mut Ctx,
) -> structure::TreePages {
    let Pass {
        pager,
        conn,
        table,
        via,
        ..
    } = *pass;
    let tname = table.name.as_str();
    let index = &table.indexes[i];
    let plan = Plan::index_side(table, i);
    let iscan = compare::scan_index(
        pager,
        index.rootpage,
        &plan,
        None,
        &|_| {},
        compare::BUCKET_BITS,
    );
    ctx.findings.extend(structure::damage_findings(
        &index.name,
        tname,
        &iscan.damage,
    ));
    let expected = if via.reads_the_file() {
        compare::scan_table_sql(conn, table, index, None)
    } else {
        Err("SQLite cannot read the file".to_string())
    };
    match expected {
        Err(e) => {
            ctx.findings.push(
                Finding::new(
                    Code::IndexNotCompared,
                    Severity::Warning,
                    format!("could not compute the expected entries with SQLite: {e}"),
                )
                .object(&index.name)
                .table(tname),
            );
            ctx.coverage.complete = false;
        }
        Ok((digests, _, _)) => {
            ctx.coverage.indexes_compared.push(index.name.clone());
            let w: Vec<bool> = (0..compare::BUCKETS)
                .map(|b| digests[b] != iscan.digests[b])
                .collect();
            if w.iter().any(|&b| b) {
                let i2 = compare::scan_index(
                    pager,
                    index.rootpage,
                    &plan,
                    Some(&w),
                    &|_| {},
                    compare::BUCKET_BITS,
                );
                if let Ok((_, expected, _)) = compare::scan_table_sql(conn, table, index, Some(&w))
                {
                    let d = compare::diff(expected.clone(), i2.collected);
                    diff_findings(table, i, &d, &expected, suspects, ctx);
                }
            }
            order_findings(table, i, &iscan, suspects, ctx);
            beside_damage_suspects(pager, table, &plan, &iscan, suspects);
        }
    }
    structure::TreePages::new(&index.name, iscan.pages, &iscan.damage)
}

/// One pass over the table and the given indexes at `bits` bucket grain:
/// digests (`wanted` None) or the entries of the wanted buckets.
fn both_sides(
    pager: &Pager,
    table: &CustomerTable,
    plans: &[Plan],
    wanted: Option<&compare::Wanted>,
    bits: u32,
) -> Result<(compare::TableScan, Vec<compare::IndexScan>)> {
    let (t, i) = std::thread::scope(|s| {
        let ih = s.spawn(|| {
            plans
                .iter()
                .enumerate()
                .map(|(f, plan)| {
                    compare::scan_index(
                        pager,
                        table.indexes[plan.index].rootpage,
                        plan,
                        wanted.map(|w| w[f].as_slice()),
                        &|_| {},
                        bits,
                    )
                })
                .collect::<Vec<_>>()
        });
        let t = compare::scan_table(
            pager,
            table,
            plans,
            wanted,
            &mut |_, _, _| {},
            &|_| {},
            bits,
        );
        (t, ih.join())
    });
    Ok((
        t,
        i.map_err(|_| anyhow::anyhow!("index scan thread failed"))?,
    ))
}

/// Collects both sides of the wanted buckets and reports their exact diff.
fn collect_and_diff(
    pager: &Pager,
    table: &CustomerTable,
    plans: &[Plan],
    wanted: &compare::Wanted,
    bits: u32,
    suspects: &mut Suspects,
    ctx: &mut Ctx,
) -> Result<()> {
    let (t2, i2) = both_sides(pager, table, plans, Some(wanted), bits)?;
    for (f, plan) in plans.iter().enumerate() {
        let d = compare::diff(t2.collected[f].clone(), i2[f].collected.clone());
        diff_findings(table, plan.index, &d, &t2.collected[f], suspects, ctx);
    }
    Ok(())
}

/// A lookup of a key that borders a damaged page may step into it: every
/// entry with such a key is in doubt (for a non-unique key such as a status,
/// that can be many customers).
fn beside_damage_suspects(
    pager: &Pager,
    table: &CustomerTable,
    plan: &Plan,
    scan: &compare::IndexScan,
    suspects: &mut Suspects,
) {
    if scan.beside_damage.is_empty() {
        return;
    }
    let keys: BTreeSet<Vec<u8>> = scan
        .beside_damage
        .iter()
        .map(|c| compare::key_bytes(&c.values, plan.key_len()))
        .collect();
    let root = table.indexes[plan.index].rootpage;
    for c in compare::entries_with_keys(pager, root, plan, &keys) {
        if let Some(r) = c.rowid {
            suspects.rows.insert(r);
        }
        if let Some(i) = id_of_values(table, plan.index, &c.values) {
            suspects.ids.insert(i);
        }
    }
}

/// Values of DEFAULT clauses, for records written before ADD COLUMN.
fn column_defaults(conn: &Connection, table: &CustomerTable) -> Vec<Value> {
    table
        .columns
        .iter()
        .map(|c| match &c.default_sql {
            None => Value::Null,
            Some(sql) => {
                crate::sql_bytes::query_row(conn, &format!("SELECT {sql}"), &[], |r| r.get(0))
                    .unwrap_or(Value::Null)
            }
        })
        .collect()
}

fn id_of_values(table: &CustomerTable, index_pos: usize, values: &[Value]) -> Option<CustomerId> {
    let index = &table.indexes[index_pos];
    index
        .fields
        .iter()
        .position(|f| matches!(f.part, IndexPart::Column(c) if c == table.id_column))
        .and_then(|i| values.get(i))
        .and_then(CustomerId::from_value)
}

fn entry_ref(
    table: &CustomerTable,
    index_pos: usize,
    c: &Collected,
    id: Option<&CustomerId>,
) -> EntryRef {
    let index = &table.indexes[index_pos];
    let key = index
        .fields
        .iter()
        .zip(c.values.iter())
        .filter(|(f, _)| f.key)
        .map(|(f, v)| match &f.part {
            IndexPart::Column(col) if *col == table.id_column => report::id_text(v)
                .map(serde_json::Value::String)
                .unwrap_or(serde_json::Value::Null),
            IndexPart::Column(col) => report::mask(&table.columns[*col].name, v),
            IndexPart::Rowid => serde_json::json!(c.rowid),
            IndexPart::Expr(e) => report::mask(e, v),
        })
        .collect();
    EntryRef {
        rowid: c.rowid,
        customer_id: id.map(CustomerId::text),
        key,
    }
}

fn diff_findings(
    table: &CustomerTable,
    index_pos: usize,
    d: &compare::Diff,
    expected: &[Collected],
    suspects: &mut Suspects,
    ctx: &mut Ctx,
) {
    let index = &table.indexes[index_pos];
    let tname = table.name.as_str();
    let expected_rowids: BTreeSet<i64> = expected.iter().filter_map(|c| c.rowid).collect();
    let expected_pks: BTreeSet<&[u8]> = expected
        .iter()
        .filter(|c| !c.pk.is_empty())
        .map(|c| c.pk.as_slice())
        .collect();

    if !d.missing.is_empty() {
        let mut entries = Vec::new();
        let mut ids = BTreeSet::new();
        for c in &d.missing {
            let id = id_of_values(table, index_pos, &c.values);
            match (c.rowid, &id) {
                (Some(r), _) => {
                    suspects.rows.insert(r);
                }
                // a WITHOUT ROWID row is probed by its customer ID
                (None, Some(i)) => {
                    suspects.ids.insert(i.clone());
                }
                (None, None) => {}
            }
            entries.push(entry_ref(table, index_pos, c, id.as_ref()));
            if let Some(i) = id {
                ids.insert(i);
            }
        }
        entries.sort_by_key(EntryRef::sort_key);
        let mut f = Finding::error(
            Code::IndexEntryMissing,
            format!("{} rows have no entry in {}", d.missing.len(), index.name),
        )
        .object(&index.name)
        .table(tname)
        .count(d.missing.len() as u64);
        f.entries = entries;
        f.customer_ids = id_list(&ids);
        ctx.findings.push(f);
    }
    let (mismatch, surplus): (Vec<&Collected>, Vec<&Collected>) = d.surplus.iter().partition(|c| {
        c.rowid.is_some_and(|r| expected_rowids.contains(&r))
            || (!c.pk.is_empty() && expected_pks.contains(c.pk.as_slice()))
    });
    for (code, list, what) in [
        (
            Code::IndexEntrySurplus,
            surplus,
            "entries whose row is gone or unreadable",
        ),
        (
            Code::IndexKeyMismatch,
            mismatch,
            "entries whose row holds a different key",
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut entries = Vec::new();
        let mut ids = BTreeSet::new();
        for c in &list {
            if let Some(r) = c.rowid {
                suspects.rows.insert(r);
            }
            let id = id_of_values(table, index_pos, &c.values);
            if let Some(i) = &id {
                suspects.ids.insert(i.clone());
                ids.insert(i.clone());
            }
            entries.push(entry_ref(table, index_pos, c, id.as_ref()));
        }
        entries.sort_by_key(EntryRef::sort_key);
        let mut f = Finding::error(code, format!("{} has {} {what}", index.name, list.len()))
            .object(&index.name)
            .table(tname)
            .count(list.len() as u64);
        f.entries = entries;
        f.customer_ids = id_list(&ids);
        ctx.findings.push(f);
    }
}

fn order_findings(
    table: &CustomerTable,
    index_pos: usize,
    scan: &compare::IndexScan,
    suspects: &mut Suspects,
    ctx: &mut Ctx,
) {
    let index = &table.indexes[index_pos];
    let tname = table.name.as_str();
    if !scan.out_of_order.is_empty() {
        let mut f = Finding::error(
            Code::KeyOrder,
            format!(
                "{} entries of {} are out of key order (lookups can miss them)",
                scan.out_of_order.len(),
                index.name
            ),
        )
        .object(&index.name)
        .table(tname)
        .count(scan.out_of_order.len() as u64);
        for c in &scan.out_of_order {
            if let Some(r) = c.rowid {
                suspects.rows.insert(r);
            }
            let id = id_of_values(table, index_pos, &c.values);
            if let Some(i) = &id {
                suspects.ids.insert(i.clone());
            }
            f.entries.push(entry_ref(table, index_pos, c, id.as_ref()));
        }
        f.entries.sort_by_key(EntryRef::sort_key);
        ctx.findings.push(f);
    }
    if !scan.duplicates.is_empty() {
        let mut f = Finding::error(
            Code::DuplicateKey,
            format!(
                "{} keys appear twice in UNIQUE index {}",
                scan.duplicates.len(),
                index.name
            ),
        )
        .object(&index.name)
        .table(tname)
        .count(scan.duplicates.len() as u64);
        let mut ids = BTreeSet::new();
        for (a, b) in &scan.duplicates {
            for c in [a, b] {
                if let Some(r) = c.rowid {
                    suspects.rows.insert(r);
                }
                let id = id_of_values(table, index_pos, &c.values);
                if let Some(i) = &id {
                    ids.insert(i.clone());
                }
                f.entries.push(entry_ref(table, index_pos, c, id.as_ref()));
            }
        }
        f.entries.sort_by_key(EntryRef::sort_key);
        f.customer_ids = id_list(&ids);
        ctx.findings.push(f);
    }
    for c in &scan.beside_damage {
        if let Some(r) = c.rowid {
            suspects.rows.insert(r);
        }
        if let Some(i) = id_of_values(table, index_pos, &c.values) {
            suspects.ids.insert(i);
        }
    }
    if !scan.bad_records.is_empty() {
        ctx.findings.push(
            Finding::error(
                Code::RecordDamaged,
                format!(
                    "{} entries of {} do not parse as index records",
                    scan.bad_records.len(),
                    index.name
                ),
            )
            .object(&index.name)
            .table(tname)
            .count(scan.bad_records.len() as u64)
            .pages(scan.bad_records.clone()),
        );
    }
}

/// The lookup probe for every row and ID in doubt; the affected customers.
fn probe_suspects(
    conn: &Connection,
    table: &CustomerTable,
    suspects: &Suspects,
    progress: Progress,
    ctx: &mut Ctx,
) {
    if suspects.rows.is_empty() && suspects.ids.is_empty() {
        return;
    }
    let prober = Prober::new(conn, table);
    let tname = table.name.as_str();
    let bar = progress.bar(
        (suspects.rows.len() + suspects.ids.len()) as u64,
        "probing lookups",
    );
    // index name → (customers with a wrong answer, one example of the answer)
    let mut wrong: BTreeMap<String, (BTreeSet<CustomerId>, String)> = BTreeMap::new();
    let mut not_probed: BTreeMap<String, String> = BTreeMap::new();
    let mut dups: BTreeMap<String, Vec<(CustomerId, i64, Vec<i64>)>> = BTreeMap::new();
    let mut probed = 0u64;
    let mut unreadable_rows = Vec::new();
    let mut record = |id: &CustomerId,
                      answers: &BTreeMap<String, Answer>,
                      wrong: &mut BTreeMap<String, (BTreeSet<CustomerId>, String)>,
                      affected: &mut BTreeSet<CustomerId>| {
        for (name, a) in answers {
            match a {
                Answer::NotProbed(e) => {
                    not_probed.insert(name.clone(), e.clone());
                }
                a if a.is_wrong() => {
                    let e = wrong
                        .entry(name.clone())
                        .or_insert_with(|| (BTreeSet::new(), describe(a)));
                    e.0.insert(id.clone());
                    affected.insert(id.clone());
                }
                _ => {}
            }
        }
    };
    for &rowid in &suspects.rows {
        bar.inc(1);
        let id = match prober.row_id(rowid) {
            Ok(Some(v)) => CustomerId::from_value(&v),
            Ok(None) => continue, // no such row: its index entries are named by ID below
            Err(_) => {
                unreadable_rows.push(rowid);
                continue;
            }
        };
        let Some(answers) = prober.probe_row(rowid) else {
            unreadable_rows.push(rowid);
            continue;
        };
        probed += 1;
        let Some(id) = id else { continue };
        record(&id, &answers, &mut wrong, &mut ctx.affected);
        for index in table.indexes.iter().filter(|i| i.unique) {
            if answers.get(&index.name).is_some_and(Answer::is_wrong) {
                let others = prober.same_key_rows(index, rowid);
                if !others.is_empty() {
                    dups.entry(index.name.clone())
                        .or_default()
                        .push((id.clone(), rowid, others));
                }
            }
        }
    }
    for id in &suspects.ids {
        bar.inc(1);
        let page_rows = suspects.page_rows.get(id).map_or(&[][..], Vec::as_slice);
        let answers = probe_customer(&prober, table, id, page_rows);
        probed += 1;
        record(id, &answers, &mut wrong, &mut ctx.affected);
        // a rowid table's rows on a leaf out of key order, each by its own
        // key (SQLite's seek by rowid may not reach it, or reach another
        // row holding the same rowid)
        if !table.without_rowid {
            for row in page_rows {
                record(
                    id,
                    &prober.probe_page_row(row),
                    &mut wrong,
                    &mut ctx.affected,
                );
            }
        }
    }
    bar.finish_and_clear();
    ctx.coverage.customers_probed = probed;
    for (name, (ids, example)) in wrong {
        ctx.findings.push(
            Finding::error(
                Code::LookupWrong,
                format!(
                    "lookup through {name} gives a wrong answer for {} customers (e.g. {example})",
                    ids.len()
                ),
            )
            .object(&name)
            .table(tname)
            .count(ids.len() as u64)
            .customer_ids(id_list(&ids)),
        );
    }
    for (name, err) in not_probed {
        ctx.findings.push(
            Finding::new(
                Code::IndexNotCompared,
                Severity::Warning,
                format!("lookups through {name} could not be done: {err}"),
            )
            .object(&name)
            .table(tname),
        );
        ctx.coverage.complete = false;
    }
    for (name, list) in dups {
        let ids: BTreeSet<CustomerId> = list.iter().map(|(i, _, _)| i.clone()).collect();
        let mut f = Finding::error(
            Code::DuplicateKey,
            format!(
                "{} customers have more than one row under UNIQUE index {name} (re-registered while the index was broken)",
                ids.len()
            ),
        )
        .object(&name)
        .table(tname)
        .count(ids.len() as u64)
        .customer_ids(id_list(&ids));
        for (id, r, others) in list {
            f.entries.push(EntryRef {
                rowid: Some(r),
                customer_id: Some(id.text()),
                key: others.iter().map(|o| serde_json::json!(o)).collect(),
            });
        }
        f.entries.sort_by_key(EntryRef::sort_key);
        f.message.push_str("; entries list each row not found through the index, with the rowids the index finds instead");
        ctx.findings.push(f);
    }
    if !unreadable_rows.is_empty() {
        ctx.findings.push(
            Finding::error(
                Code::RowsUnreadable,
                format!(
                    "{} rows in doubt cannot be read by SQLite",
                    unreadable_rows.len()
                ),
            )
            .table(tname)
            .count(unreadable_rows.len() as u64),
        );
    }
}

fn describe(a: &Answer) -> String {
    match a {
        Answer::Missing => "the row is not found".into(),
        Answer::WrongRow => "it leads to a row holding another key".into(),
        Answer::Error(e) => format!("the lookup fails: {e}"),
        Answer::Right => "right".into(),
        Answer::NotProbed(e) => e.clone(),
    }
}

/// The customer ID a row of `table` holds, as reports show it (None for NULL).
pub fn row_id_text(
    rowid: i64,
    rec: &Record,
    payload: &[u8],
    table: &CustomerTable,
    enc: crate::format::header::TextEncoding,
) -> Option<String> {
    let id_pos = table.columns[table.id_column].record_pos;
    row_customer_id(rowid, rec, payload, id_pos, table.id_is_rowid(), enc).map(|id| id.text())
}

/// The customer ID a row of the table holds (None for NULL).
fn row_customer_id(
    rowid: i64,
    rec: &Record,
    payload: &[u8],
    id_pos: Option<usize>,
    id_is_rowid: bool,
    enc: crate::format::header::TextEncoding,
) -> Option<CustomerId> {
    if id_is_rowid {
        return Some(CustomerId::Int(rowid));
    }
    match id_pos.and_then(|p| rec.get(payload, p)) {
        None | Some(ValueRef::Null) => None,
        Some(ValueRef::Integer(i)) => Some(CustomerId::Int(i)),
        Some(v) => report::id_text(&canon::to_owned(&v, enc)).map(CustomerId::Text),
    }
}

/// Data rules: empty IDs, IDs breaking the format rule, disabled customers.
#[derive(Default)]
struct RuleHits {
    empty: u64,
    format: BTreeMap<String, BTreeSet<CustomerId>>,
    status: [BTreeSet<CustomerId>; 3],
}

impl RuleHits {
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        rowid: i64,
        rec: &Record,
        payload: &[u8],
        id_pos: Option<usize>,
        id_is_rowid: bool,
        status_pos: Option<usize>,
        settings: &Settings,
        enc: crate::format::header::TextEncoding,
    ) {
        let id = row_customer_id(rowid, rec, payload, id_pos, id_is_rowid, enc);
        let id = match id {
            Some(CustomerId::Text(t)) if t.trim().is_empty() => None,
            other => other,
        };
        let Some(id) = id else {
            self.empty += 1;
            return;
        };
        if let Some(rule) = &settings.id_rule
            && let Some(why) = rule.violation(&id.text())
        {
            self.format.entry(why).or_default().insert(id.clone());
        }
        if let Some(p) = status_pos
            && let Some(ValueRef::Text(t)) = rec.get(payload, p)
        {
            let s = canon::decode_text(t, enc);
            let sv = &settings.status_values;
            for (k, list) in [&sv.disabled, &sv.frozen, &sv.closed]
                .into_iter()
                .enumerate()
            {
                if list.iter().any(|x| x.eq_ignore_ascii_case(&s)) {
                    self.status[k].insert(id.clone());
                }
            }
        }
    }

    fn into_findings(self, table: &str, _settings: &Settings, out: &mut Vec<Finding>) {
        if self.empty > 0 {
            out.push(
                Finding::new(
                    Code::IdEmpty,
                    Severity::Warning,
                    format!("{} customers have an empty or NULL ID", self.empty),
                )
                .table(table)
                .count(self.empty),
            );
        }
        for (why, ids) in self.format {
            out.push(
                Finding::new(
                    Code::IdFormat,
                    Severity::Warning,
                    format!("{} customer IDs are {why}", ids.len()),
                )
                .table(table)
                .count(ids.len() as u64)
                .customer_ids(id_list(&ids)),
            );
        }
        for (k, ids) in self.status.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let (code, what) = [
                (Code::CustomerDisabled, "disabled"),
                (Code::CustomerFrozen, "frozen"),
                (Code::CustomerClosed, "closed"),
            ][k];
            out.push(
                Finding::new(
                    code,
                    Severity::Warning,
                    format!(
                        "{} customers are {what}: the POS refuses them on purpose",
                        ids.len()
                    ),
                )
                .table(table)
                .count(ids.len() as u64)
                .customer_ids(id_list(&ids)),
            );
        }
    }
}
