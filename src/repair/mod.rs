//! `custodian repair`: check → plan → lock → backup → build a repaired copy
//! → verify it → swap it in atomically. The planner is pure (`plan.rs`); the
//! appliers (`apply.rs`, `pages.rs`, `rebuild.rs`) are the only code that
//! writes a database (the work copy, never the original).

pub mod apply;
pub mod pages;
pub mod plan;
pub mod rebuild;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::check::{self, CheckOutcome};
use crate::cli::RepairArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::progress::Progress;
use crate::report::{Report, Verdict};
use crate::schema;
use plan::{Plan, Strategy};

/// One thing repair did, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub kind: &'static str,
    pub object: Option<String>,
    pub detail: String,
}

/// The repair-only fields of the JSON report (DESIGN.md).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RepairFields {
    pub dry_run: bool,
    pub plan: Option<Plan>,
    pub actions: Vec<Action>,
    pub snapshot_used: Option<String>,
    pub snapshots: Vec<snapshot::SnapshotStatus>,
    pub backup_path: Option<String>,
    pub backup_sha256: Option<String>,
    pub restored_customer_ids: Vec<String>,
    pub quarantined_customer_ids: Vec<String>,
    pub unrecoverable_customer_ids: Vec<String>,
    pub before: Option<Before>,
    pub after: Option<Before>,
}

/// A verdict at one moment: before the repair, and of the verified result.
#[derive(Debug, Clone, Serialize)]
pub struct Before {
    pub verdict: Verdict,
    pub affected_customer_ids: usize,
    pub errors: usize,
}

impl Before {
    fn of(r: &Report) -> Before {
        Before {
            verdict: r.verdict,
            affected_customer_ids: r.affected_customer_ids.len(),
            errors: r.count(check::finding::Severity::Error),
        }
    }
}

/// What the file looked like when it was checked: if any of it differs once
/// the lock is held, someone wrote in between and the plan is stale.
#[derive(Debug, PartialEq)]
struct Fingerprint(Vec<(u64, Option<SystemTime>)>, Vec<u8>);

fn fingerprint(db: &Path) -> Fingerprint {
    let mut parts = Vec::new();
    for suffix in ["", "-wal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let m = std::fs::metadata(PathBuf::from(p));
        parts.push(match m {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(_) => (0, None),
        });
    }
    let mut head = Vec::new();
    if let Ok(f) = std::fs::File::open(db) {
        use std::io::Read;
        let _ = f.take(100).read_to_end(&mut head);
    }
    Fingerprint(parts, head)
}

fn stamp() -> String {
    crate::time::compact_utc(SystemTime::now())
}

pub struct RepairOutcome {
    pub report: Report,
    pub status: ExitStatus,
}

fn outcome(
    mut report: Report,
    fields: RepairFields,
    verdict: Verdict,
    status: ExitStatus,
) -> RepairOutcome {
    report.command = "repair";
    report.verdict = verdict;
    report.repair = Some(fields);
    RepairOutcome { report, status }
}

/// A repair that stopped (exit 3): one line on stderr, the report says failed.
fn stopped(db: &Path, before: Report, fields: RepairFields, why: &str) -> RepairOutcome {
    crate::messages::error(&format!("{}: repair stopped: {why}", db.display()));
    outcome(before, fields, Verdict::Failed, ExitStatus::RepairFailed)
}

pub fn repair(args: &RepairArgs, quiet: bool) -> Result<RepairOutcome> {
    let settings = Settings::from_opts(&args.opts)?;
    let db = &args.db;
    let progress = Progress::new(quiet, args.opts.json.as_deref() == Some("-"));
    let t0 = std::time::Instant::now();
    let fp = fingerprint(db);
    let CheckOutcome {
        report: before,
        status,
    } = check::check_with(db, &settings, progress, false)?;
    if status == ExitStatus::CouldNotRun {
        let msg = before
            .findings
            .iter()
            .find(|f| f.code == check::finding::Code::TableMissing)
            .map(|f| f.message.clone())
            .unwrap_or_else(|| "the check could not run".into());
        bail!("{}: {msg}; nothing was changed", db.display());
    }
    check::timing("repair: check", t0);
    let mut fields = RepairFields {
        dry_run: args.dry_run,
        before: Some(Before::of(&before)),
        ..RepairFields::default()
    };

    let conn = crate::db::open_read_only(db)?;
    let live = schema::read_schema_tolerant(&conn).unwrap_or_default();
    let table = match schema::customer_table(&conn, &live, &settings.table, &settings.id_column)? {
        Some(Ok(t)) => Some(t),
        _ => None,
    };
    drop(conn);

    // Snapshots are verified only when the plan may need one: pages no
    // object owns (a lost index definition) or duplicates to settle.
    let needs_snapshot = before.findings.iter().any(|f| {
        f.severity == check::finding::Severity::Error
            && !matches!(
                f.code,
                check::finding::Code::IndexEntryMissing
                    | check::finding::Code::IndexEntrySurplus
                    | check::finding::Code::LookupWrong
            )
    });
    let cands = snapshot::candidates(&args.snapshot);
    let mut good = Vec::new();
    if needs_snapshot {
        let live_cols = snapshot::columns_of(db, &settings.table).unwrap_or_default();
        let (g, statuses) = snapshot::verify(&cands, &settings, &live_cols);
        good = g;
        fields.snapshots = statuses;
    } else {
        fields.snapshots = cands
            .iter()
            .map(|p| snapshot::SnapshotStatus {
                path: p.display().to_string(),
                status: "not_needed",
                reason: "the live table holds every row: indexes are rebuilt from it".into(),
            })
            .collect();
    }
    let snap_schema = match good.first() {
        Some(s) => {
            let c = crate::db::open_read_only(&s.path)?;
            Some((
                s.path.display().to_string(),
                schema::read_schema(&c).unwrap_or_default(),
            ))
        }
        None => None,
    };
    let auto_vacuum = crate::pager::Pager::open(db)
        .map(|p| p.header().largest_root_page != 0)
        .unwrap_or(false);
    // The snapshot's ID of a row, to decide which side of a mismatch is damaged.
    let snap_conn = match good.first() {
        Some(s) => Some(crate::db::open_read_only(&s.path)?),
        None => None,
    };
    let id_col = table
        .as_ref()
        .map(|t| schema::quote_ident(&t.columns[t.id_column].name))
        .unwrap_or_default();
    let tq = schema::quote_ident(&settings.table);
    let snapshot_id_of = |rowid: i64| -> Option<String> {
        let c = snap_conn.as_ref()?;
        c.query_row(
            &format!("SELECT {id_col} FROM {tq} NOT INDEXED WHERE rowid = ?1"),
            [rowid],
            |r| r.get::<_, rusqlite::types::Value>(0),
        )
        .ok()
        .and_then(|v| crate::report::id_text(&v))
    };
    let id_indexes: Vec<String> = table
        .as_ref()
        .map(|t| {
            t.indexes
                .iter()
                .filter(|i| {
                    let keys: Vec<&schema::IndexField> = i.key_fields().collect();
                    keys.len() == 1
                        && matches!(keys[0].part, schema::IndexPart::Column(c) if c == t.id_column)
                })
                .map(|i| i.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let ref_conn = crate::db::open_read_only(db)?;
    let refs = table
        .as_ref()
        .and_then(|t| {
            crate::schema::reference_columns(
                &ref_conn,
                &live,
                &t.name,
                &t.columns[t.id_column].name,
                &settings.references,
            )
            .ok()
        })
        .unwrap_or_default();
    let referenced = |id: &str| -> Option<String> {
        refs.iter().find_map(|(t, c)| {
            let q = format!(
                "SELECT 1 FROM {} WHERE {} = ?1 LIMIT 1",
                schema::quote_ident(t),
                schema::quote_ident(c)
            );
            ref_conn
                .query_row(&q, [id], |_| Ok(()))
                .ok()
                .map(|_| format!("{t}.{c}"))
        })
    };
    let evidence = plan::Evidence {
        snapshot_id_of: &snapshot_id_of,
        id_rule: settings.id_rule.as_ref(),
        referenced: &referenced,
        id_indexes: &id_indexes,
    };
    let the_plan = plan::plan(
        &before,
        &live,
        snap_schema
            .as_ref()
            .map(|(p, s)| (p.as_str(), s.as_slice())),
        auto_vacuum,
        &evidence,
    );
    // every connection of ours is closed before the exclusive lock is taken
    drop(ref_conn);
    drop(snap_conn);
    fields.plan = Some(the_plan.clone());
    let affected_before: Vec<String> = before.affected_customer_ids.clone();

    match &the_plan.strategy {
        Strategy::Nothing => {
            fields.after = fields.before.clone();
            return Ok(outcome(before, fields, Verdict::Clean, ExitStatus::Success));
        }
        Strategy::NotBuilt { reason } => {
            return Ok(stopped(
                db,
                before,
                fields,
                &format!("{reason}; nothing was changed"),
            ));
        }
        Strategy::PatchCopy | Strategy::Rebuild { .. } => {}
    }
    if args.dry_run {
        let v = before.verdict;
        let st = if v == Verdict::Clean {
            ExitStatus::Success
        } else {
            ExitStatus::Problems
        };
        return Ok(outcome(before, fields, v, st));
    }
    let Some(table) = table else {
        bail!("{}: no customer table; nothing was changed", db.display());
    };

    // From here on: lock, then nothing before the backup.
    let lock = apply::lock(db)?;
    if fingerprint(db) != fp {
        lock.release();
        bail!(
            "{}: the database changed while the repair was being planned (busy); nothing was changed, try again",
            db.display()
        );
    }
    let st = stamp();
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let backup_dir = args.backup_dir.clone().unwrap_or_else(|| dir.to_path_buf());
    let bk = match apply::backup(db, &backup_dir, &st) {
        Ok(b) => b,
        Err(e) => {
            lock.release();
            return Err(e.context(format!(
                "{}: backup failed; nothing was changed",
                db.display()
            )));
        }
    };
    apply::pause_point("backup");
    check::timing("repair: lock + backup", t0);
    fields.backup_path = Some(bk.path.display().to_string());
    fields.backup_sha256 = Some(bk.sha256.clone());
    fields.actions.push(Action {
        kind: "backup",
        object: None,
        detail: format!(
            "copied byte for byte to {} (sha256 {})",
            bk.path.display(),
            bk.sha256
        ),
    });
    let result = build_and_verify(
        db,
        dir,
        &st,
        &the_plan,
        &table,
        &settings,
        &lock,
        &good,
        &affected_before,
        &before,
        &mut fields,
    );
    let swapped = result.and_then(|(copy, verified)| {
        check::timing("repair: built and verified", t0);
        apply::swap(&copy, db).map(|_| verified)
    });
    lock.release();
    let verified = match swapped {
        Ok(v) => v,
        Err(e) => {
            return Ok(stopped(
                db,
                before,
                fields,
                &format!("{e:#}; the original is untouched"),
            ));
        }
    };
    fields.actions.push(Action {
        kind: "swap",
        object: None,
        detail: format!("the verified copy was renamed over {}", db.display()),
    });
    fields.after = Some(Before::of(&verified));
    let undecided = fields
        .plan
        .as_ref()
        .is_some_and(|p| !p.needs_decision.is_empty());
    let losses = !fields.quarantined_customer_ids.is_empty()
        || !fields.unrecoverable_customer_ids.is_empty()
        || undecided;
    let (v, status) = if losses {
        (Verdict::RepairedWithLosses, ExitStatus::Problems)
    } else {
        (Verdict::Repaired, ExitStatus::Success)
    };
    Ok(outcome(before, fields, v, status))
}

#[allow(clippy::too_many_arguments)]
fn build_and_verify(
    db: &Path,
    dir: &Path,
    st: &str,
    the_plan: &Plan,
    table: &schema::CustomerTable,
    settings: &Settings,
    lock: &apply::Lock,
    good: &[snapshot::Snapshot],
    affected_before: &[String],
    before: &Report,
    fields: &mut RepairFields,
) -> Result<(PathBuf, Report)> {
    lock.leave_wal(db)?;
    if lock.was_wal {
        fields.actions.push(Action {
            kind: "checkpoint",
            object: None,
            detail: "the -wal was checkpointed into the database (its content is unchanged) so the swap is a single rename".into(),
        });
    }
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = dir.join(format!(
        ".{name}.{st}.{}.custodian-repair",
        std::process::id()
    ));
    if let Strategy::Rebuild { reasons } = &the_plan.strategy {
        return rebuild_and_verify(
            db,
            dir,
            &name,
            st,
            reasons,
            table,
            settings,
            lock,
            good,
            affected_before,
            fields,
        );
    }
    let t0 = std::time::Instant::now();
    apply::copy_file(db, &copy, false)?;
    apply::match_owner_and_mode(&copy, db)?;
    check::timing("repair: copy", t0);
    apply::pause_point("build");
    pages::empty_and_free(&copy, the_plan)?;
    for i in &the_plan.rebuild_indexes {
        fields.actions.push(Action {
            kind: "rebuild_index",
            object: Some(i.clone()),
            detail: "emptied page by page, then rebuilt from the table".into(),
        });
    }
    let freed = the_plan.free_pages.len();
    if freed > 0 {
        fields.actions.push(Action {
            kind: "free_pages",
            object: None,
            detail: format!("{freed} pages (the rebuilt indexes' old pages and pages no object owned) zeroed and put on the freelist"),
        });
    }
    let snap = good.first().map(|s| s.path.clone());
    check::timing("repair: empty and free", t0);
    let sql = apply::sql_steps(&copy, the_plan, table, snap.as_deref(), lock.was_wal, st)?;
    check::timing("repair: sql steps", t0);
    for (index, keep, moved, key) in &sql.quarantined {
        fields.actions.push(Action {
            kind: "quarantine",
            object: Some(index.clone()),
            detail: format!(
                "customer {key}: kept row {keep}, moved rows {moved:?} to {}",
                apply::QUARANTINE_TABLE
            ),
        });
    }
    for rv in &the_plan.restore_values {
        fields.actions.push(Action {
            kind: "restore_value",
            object: Some(table.name.clone()),
            detail: format!(
                "row {}: customer ID {} (damaged) restored to {}: {}",
                rv.rowid, rv.stored, rv.restored, rv.evidence
            ),
        });
        fields.restored_customer_ids.push(rv.restored.clone());
        if rv.evidence.starts_with("the snapshot") {
            fields.snapshot_used = snap.as_ref().map(|p| p.display().to_string());
        }
    }
    let mut q: Vec<String> = sql.quarantined_ids.clone();
    q.sort();
    q.dedup();
    fields.quarantined_customer_ids = q;
    for r in &the_plan.recreate_indexes {
        fields.actions.push(Action {
            kind: "recreate_index",
            object: Some(r.name.clone()),
            detail: format!("definition taken from snapshot {}", r.snapshot),
        });
        fields.snapshot_used = Some(r.snapshot.clone());
    }
    if !sql.quarantined.is_empty() && fields.snapshot_used.is_none() {
        fields.snapshot_used = snap.as_ref().map(|p| p.display().to_string());
    }

    let verified = verify_copy(
        &copy,
        settings,
        table,
        affected_before,
        &fields.restored_customer_ids,
    )?;
    check::timing("repair: verify", t0);
    let conn = crate::db::open_read_only(&copy)?;
    // rows accounted for: every row read before is there, but those moved
    let rows: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM {} NOT INDEXED",
            schema::quote_ident(&table.name)
        ),
        [],
        |r| r.get(0),
    )?;
    let moved: usize = sql.quarantined.iter().map(|q| q.2.len()).sum();
    let expected = before.coverage.customers_read as i64 - moved as i64;
    drop(conn);
    if rows != expected {
        keep_failed(&copy);
        bail!("the repaired copy holds {rows} customers, expected {expected}");
    }
    fields.actions.push(Action {
        kind: "verify",
        object: None,
        detail: format!(
            "the repaired copy is clean; {} previously rejected customers are found through every index; {rows} customers accounted for",
            affected_before.len()
        ),
    });
    Ok((copy, verified))
}

#[allow(clippy::too_many_arguments)]
fn rebuild_and_verify(
    db: &Path,
    dir: &Path,
    name: &str,
    st: &str,
    reasons: &[String],
    table: &schema::CustomerTable,
    settings: &Settings,
    lock: &apply::Lock,
    good: &[snapshot::Snapshot],
    affected_before: &[String],
    fields: &mut RepairFields,
) -> Result<(PathBuf, Report)> {
    let pid = std::process::id();
    let source = dir.join(format!(".{name}.{st}.{pid}.custodian-source"));
    let copy = dir.join(format!(".{name}.{st}.{pid}.custodian-repair"));
    apply::copy_file(db, &source, false)?;
    let live = {
        let c = rusqlite::Connection::open_with_flags(
            &source,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        c.pragma_update(None, "writable_schema", true)?;
        schema::read_schema(&c)?
    };
    apply::create_empty(&copy)?;
    apply::match_owner_and_mode(&copy, db)?;
    apply::pause_point("build");
    let snap = good.first().map(|s| s.path.clone());
    let out = rebuild::rebuild(
        &source,
        &copy,
        &live,
        &table.name,
        &table.columns[table.id_column].name,
        snap.as_deref(),
        &settings.references,
        st,
    );
    // the source copy is ours, made a moment ago from the locked original
    // (whose byte-for-byte backup exists): it is not kept
    let _ = std::fs::remove_file(&source);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            keep_failed(&copy);
            return Err(e);
        }
    };
    apply::finish_journal_mode(&copy, lock.was_wal)?;
    fields.actions.push(Action {
        kind: "rebuild_database",
        object: None,
        detail: format!(
            "table pages are damaged ({}): a new database was built from the schema, the rows salvaged page by page and the snapshot's rows for the rest",
            reasons.join("; ")
        ),
    });
    for t in &out.tables {
        fields.actions.push(Action {
            kind: "rows",
            object: Some(t.table.clone()),
            detail: format!(
                "{} from the table's pages, {} from orphaned pages, {} from the snapshot, {} named by index entries but in no source, {} quarantined",
                t.from_tree,
                t.from_orphan_pages,
                t.from_snapshot,
                t.unrecoverable_rowids.len(),
                t.quarantined
            ),
        });
    }
    if out.tables.iter().any(|t| t.from_snapshot > 0) {
        fields.snapshot_used = snap.as_ref().map(|p| p.display().to_string());
    }
    fields.restored_customer_ids = out.restored_customer_ids.clone();
    fields.unrecoverable_customer_ids = out.unrecoverable_customer_ids.clone();
    fields.quarantined_customer_ids = out.quarantined_customer_ids.clone();
    let verified = verify_copy(
        &copy,
        settings,
        table,
        affected_before,
        &out.restored_customer_ids,
    )?;
    fields.actions.push(Action {
        kind: "verify",
        object: None,
        detail: format!(
            "the rebuilt database is clean; {} customers; {} restored from the snapshot are found through every index; {} could not be restored",
            out.customers,
            out.restored_customer_ids.len(),
            out.unrecoverable_customer_ids.len()
        ),
    });
    Ok((copy, verified))
}

/// The repaired copy must pass the full check, and every customer who was
/// rejected before (or was restored) must be served right by its ID through
/// every index: found if restored, never a wrong row or an error. A copy
/// that fails is kept as `*.failed`.
fn verify_copy(
    copy: &Path,
    settings: &Settings,
    table: &schema::CustomerTable,
    affected_before: &[String],
    restored: &[String],
) -> Result<Report> {
    apply::test_damage_copy(copy)?;
    apply::pause_point("verify");
    let verified = check::check(copy, settings, Progress::hidden())
        .with_context(|| "verifying the repaired copy".to_string())?
        .report;
    let first_error = verified
        .findings
        .iter()
        .find(|f| f.severity == check::finding::Severity::Error)
        .map(|f| f.message.clone());
    if verified.verdict != Verdict::Clean || first_error.is_some() {
        keep_failed(copy);
        bail!(
            "the repaired copy failed its verification: {}",
            first_error.as_deref().unwrap_or("not clean")
        );
    }
    let conn = crate::db::open_read_only(copy)?;
    let prober = check::probe::Prober::new(&conn, table);
    for id in affected_before.iter().chain(restored.iter()) {
        let v = table.id_value(id);
        // The copy has passed the check, so its ID index agrees with its
        // table: "missing" means the customer is not in the table (a stale
        // entry of a deleted customer), right unless it was restored.
        let must_find = restored.contains(id);
        let wrong = prober.probe_id(&v).values().any(|a| {
            matches!(
                a,
                check::probe::Answer::WrongRow | check::probe::Answer::Error(_)
            ) || (must_find && a.is_wrong())
        });
        if wrong {
            drop(conn);
            keep_failed(copy);
            bail!("customer {id} is still not served correctly by the repaired copy");
        }
    }
    Ok(verified)
}

/// A copy that failed verification is kept for inspection, never deleted.
fn keep_failed(copy: &Path) {
    let mut failed = copy.as_os_str().to_owned();
    failed.push(".failed");
    let _ = std::fs::rename(copy, PathBuf::from(failed));
}
