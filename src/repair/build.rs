//! Step 6 of a repair: the repaired copy, built beside the original by the
//! plan's strategy. `patch` copies the file and mends it in place (page-level
//! edits, then SQL); `rebuild` makes a new database from the schema, the
//! salvaged rows and the snapshot's. Both record what they did as actions;
//! neither decides anything (the plan did) nor verifies (verify.rs does).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Action, Job, RepairFields, apply, pages, plan, rebuild, verify};
use crate::check;
use crate::check::finding::{Code, Severity};

/// Copies the file the build starts from into the new work file `to`: the
/// locked database through the lock's own descriptor (see `apply::Lock`),
/// with the committed frames of its -wal written into the copy
/// (`apply::wal_into_copy`: the original's own checkpoint waits for the
/// swap, and a header SQLite refuses has none), or the scratch copy whose
/// header or schema table was mended (frame.rs), which has them already.
/// A header write version that would leave the copy read-only to SQLite is
/// mended (`apply::writable_copy`). What was done is said in `fields`, once
/// (the whole rebuild after a failed in-place mend copies again).
fn copy_source(
    job: &Job,
    to: &Path,
    durable: apply::Durable,
    fields: &mut RepairFields,
) -> Result<()> {
    let applied = if job.source == job.db {
        apply::copy_open(job.lock.file(), job.db, to, durable)?;
        apply::wal_into_copy(job.db, to)?
    } else {
        let f = std::fs::File::open(job.source)
            .with_context(|| format!("{}: cannot read", job.source.display()))?;
        apply::copy_open(&f, job.source, to, durable)?;
        None
    };
    record_wal(job, applied, fields);
    // a WAL database's too: SQLite opening it read-only, its -wal is set
    // aside at the swap, not checkpointed (`apply::lock`)
    let mended = apply::writable_copy(to)?;
    if let Some(was) = mended {
        let said = fields
            .actions
            .iter()
            .any(|a| a.kind == "mend_header" && a.detail.contains("write version"));
        if !said {
            fields.actions.push(Action {
                kind: "mend_header",
                object: None,
                detail: format!(
                    "the header's file format write version was {was}, which SQLite does not write (it opens such a file read-only): set to the read version's"
                ),
            });
        }
    }
    Ok(())
}

/// The report's account of the -wal's frames written into the work copy
/// (once).
fn record_wal(job: &Job, applied: Option<apply::WalApplied>, fields: &mut RepairFields) {
    if let Some(a) = applied {
        if fields.actions.iter().any(|x| x.kind == "wal_frames") {
            return;
        }
        fields.actions.push(Action {
            kind: "wal_frames",
            object: None,
            detail: a.detail(job.db),
        });
    }
}

/// The patched copy, and what its SQL steps did.
pub(super) fn patch(job: &Job, fields: &mut RepairFields) -> Result<(PathBuf, apply::SqlOutcome)> {
    let t0 = std::time::Instant::now();
    let copy = job.work_file("repair");
    copy_source(job, &copy, apply::Durable::Later, fields)?;
    apply::match_owner_and_mode(&copy, job.db)?;
    check::timing("repair: copy", t0);
    apply::step("build")?;
    let relisted = pages::empty_and_free(&copy, job.plan)?;
    for i in &job.plan.rebuild_indexes {
        fields.actions.push(Action {
            kind: "rebuild_index",
            object: Some(i.clone()),
            detail: "emptied page by page, then rebuilt from the table".into(),
        });
    }
    let freed = job.plan.free_pages.len();
    if freed > 0 {
        fields.actions.push(Action {
            kind: "free_pages",
            object: None,
            detail: format!("{freed} pages (the rebuilt indexes' old pages and pages no object owned) zeroed and put on the freelist"),
        });
    }
    if let (Some(r), plan::PageLists::Rebuild { reasons }) = (relisted, &job.plan.page_lists) {
        let maps = match r.ptrmap_pages {
            0 => String::new(),
            1 => " and the pointer-map page".into(),
            n => format!(" and the {n} pointer-map pages"),
        };
        fields.actions.push(Action {
            kind: "rebuild_page_lists",
            object: None,
            detail: format!(
                "the freelist ({} pages){maps} written anew from the b-trees ({})",
                r.free_pages,
                reasons.join("; ")
            ),
        });
    }
    check::timing("repair: empty and free", t0);
    let sql = apply::sql_steps(
        &copy,
        job.plan,
        job.table,
        job.snapshot,
        job.lock.was_wal,
        job.stamp,
    )?;
    check::timing("repair: sql steps", t0);
    record_sql_steps(job, &sql, fields);
    Ok((copy, sql))
}

/// The actions and ID lists of the SQL steps: quarantined duplicates,
/// restored ID values, recreated indexes, and the snapshot they came from.
fn record_sql_steps(job: &Job, sql: &apply::SqlOutcome, fields: &mut RepairFields) {
    let snap = job.snapshot.map(|p| p.display().to_string());
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
    for rv in &job.plan.restore_values {
        fields.actions.push(Action {
            kind: "restore_value",
            object: Some(job.table.name.clone()),
            detail: format!(
                "row {}: customer ID {} (damaged) restored to {}: {}",
                rv.rowid, rv.stored, rv.restored, rv.evidence
            ),
        });
        fields.restored_customer_ids.push(rv.restored.clone());
        if rv.evidence.starts_with("the snapshot") {
            fields.snapshot_used = snap.clone();
        }
    }
    let mut q: Vec<String> = sql.quarantined_ids.clone();
    q.sort();
    q.dedup();
    fields.quarantined_customer_ids = q;
    for r in &job.plan.recreate_indexes {
        fields.actions.push(Action {
            kind: "recreate_index",
            object: Some(r.name.clone()),
            detail: format!("definition taken from snapshot {}", r.snapshot),
        });
        fields.snapshot_used = Some(r.snapshot.clone());
    }
    if !sql.quarantined.is_empty() && fields.snapshot_used.is_none() {
        fields.snapshot_used = snap;
    }
}

/// Whether a table repair may first try to mend the damage in place
/// (`rebuild/in_place.rs`): with [`Rebuild::InPlaceFirst`] it does where
/// the check confined the damage to the customer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rebuild {
    InPlaceFirst,
    Whole,
}

/// The customer table, when every error the check of the live file found
/// lies in its pages, its rows or its indexes (or is a customer other
/// tables name that it lacks): the one table a repair in place may mend.
/// Anything else — another object, the header, the schema, the page lists,
/// damage only SQLite's own check sees — needs the whole rebuild.
fn in_place_table<'j>(job: &'j Job) -> Option<rebuild::InPlace<'j>> {
    let t = &job.table;
    let ours = |o: &str| {
        o.eq_ignore_ascii_case(&t.name) || t.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(o))
    };
    let errors = || {
        job.before
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    };
    // the codes that put a page or an index in doubt (a bad child pointer
    // among them: the page reader then declines to mend in place)
    let confined = errors().all(|f| match f.code {
        c if plan::is_index_level(c) => f.object.as_deref().is_some_and(ours),
        Code::RowsUnreadable | Code::CustomerVanished => f
            .table
            .as_deref()
            .is_none_or(|n| n.eq_ignore_ascii_case(&t.name)),
        _ => false,
    });
    let index_wrong = errors().any(|f| {
        matches!(
            f.code,
            Code::IndexEntryMissing | Code::IndexKeyMismatch | Code::DuplicateKey | Code::KeyOrder
        ) && !f
            .object
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(&t.name))
    });
    (confined && !t.without_rowid).then_some(rebuild::InPlace {
        table: t.name.as_str(),
        rebuild_indexes: index_wrong,
    })
}

fn request<'j>(job: &'j Job, in_place: Option<rebuild::InPlace<'j>>) -> rebuild::Request<'j> {
    rebuild::Request {
        customer_table: &job.table.name,
        id_column: &job.table.columns[job.table.id_column].name,
        snapshot: job.snapshot,
        references: &job.settings.references,
        stamp: job.stamp,
        in_place,
    }
}

/// The repaired database for damaged table pages, and how many customers
/// it holds: mended in place where the damage allows it (and `how` asks
/// for it), else built anew. A build that fails keeps its copy as
/// `*.failed`. Also returns whether it was mended in place.
pub(super) fn rebuild(
    job: &Job,
    reasons: &[String],
    fields: &mut RepairFields,
    how: Rebuild,
) -> Result<(PathBuf, i64, bool)> {
    let t0 = std::time::Instant::now();
    let source = job.work_file("source");
    let copy = job.work_file("repair");
    // read and removed within the run: never synced (a copy mended in place
    // has its writeback started once it is done)
    copy_source(job, &copy, apply::Durable::Never, fields)?;
    apply::match_owner_and_mode(&copy, job.db)?;
    check::timing("repair: copied", t0);
    let in_place = match how {
        Rebuild::InPlaceFirst => in_place_table(job),
        Rebuild::Whole => None,
    };
    // the copy becomes the whole rebuild's source when nothing was written
    let to_source = || {
        std::fs::rename(&copy, &source)
            .with_context(|| format!("renaming {} to {}", copy.display(), source.display()))
    };
    match in_place {
        Some(in_place) => {
            apply::step("build")?;
            match rebuild::repair_in_place(&copy, &request(job, Some(in_place))) {
                Ok(Some(out)) => {
                    apply::finish_journal_mode(&copy, job.lock.was_wal)?;
                    check::timing("repair: mended in place", t0);
                    record_rebuild(job, &out, None, fields);
                    return Ok((copy, out.customers, true));
                }
                Ok(None) => to_source()?,
                Err(e) => {
                    let _ = std::fs::remove_file(&copy);
                    fields.actions.push(Action {
                        kind: "patch_table_pages",
                        object: Some(in_place.table.to_string()),
                        detail: format!("mending the table in place failed ({e:#}); the whole database is built anew instead"),
                    });
                    copy_source(job, &source, apply::Durable::Never, fields)?;
                }
            }
        }
        None => to_source()?,
    }
    check::timing("repair: source ready", t0);
    apply::create_empty(&copy)?;
    apply::match_owner_and_mode(&copy, job.db)?;
    if in_place.is_none() {
        apply::step("build")?;
    }
    let out = rebuild::rebuild(&source, &copy, &request(job, None));
    // the source copy is ours, made a moment ago from the locked original
    // (whose byte-for-byte backup exists): it is not kept
    let _ = std::fs::remove_file(&source);
    check::timing("repair: source removed", t0);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            verify::keep_failed(&copy);
            return Err(e);
        }
    };
    apply::finish_journal_mode(&copy, job.lock.was_wal)?;
    check::timing("repair: rebuilt", t0);
    record_rebuild(job, &out, Some(reasons), fields);
    Ok((copy, out.customers, false))
}

/// The report's account of a rebuild (`reasons`: why the whole database
/// was built anew; None when it was mended in place).
fn record_rebuild(
    job: &Job,
    out: &rebuild::RebuildOutcome,
    reasons: Option<&[String]>,
    fields: &mut RepairFields,
) {
    if let Some(reasons) = reasons {
        fields.actions.push(Action {
            kind: "rebuild_database",
            object: None,
            detail: format!(
                "table pages are damaged ({}): a new database was built from the schema, the rows salvaged page by page and the snapshot's rows for the rest",
                reasons.join("; ")
            ),
        });
    }
    for s in out.actions() {
        fields.actions.push(Action {
            kind: s.kind,
            object: s.object,
            detail: s.detail,
        });
    }
    fields.lost_rows = out.lost_rows();
    if let Some(p) = fields.plan.as_mut() {
        p.needs_decision.extend(out.decisions());
    }
    if out.tables.iter().any(|t| t.from_snapshot > 0) {
        fields.snapshot_used = job.snapshot.map(|p| p.display().to_string());
    }
    fields.restored_customer_ids = out.restored_customer_ids.clone();
    fields.unrecoverable_customer_ids = out.unrecoverable_customer_ids.clone();
    fields.quarantined_customer_ids = out.quarantined_customer_ids.clone();
}
