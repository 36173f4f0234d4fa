//! `custodian repair`: check → snapshots → plan → lock + fingerprint →
//! backup → build a repaired copy → verify it → swap it in atomically →
//! report. `repair` below reads as that list, one function per step. The
//! planner is pure (`plan.rs`); the appliers (`apply.rs`, `pages.rs`,
//! `rebuild/`) are the only code that writes a database (the work copy,
//! never the original); `build.rs` drives them and `verify.rs` decides
//! whether a copy may replace the original.

pub mod apply;
mod backup;
mod build;
mod fingerprint;
mod frame;
pub mod interrupt;
pub mod pages;
pub mod plan;
pub mod rebuild;
mod roots;
pub mod snapshot;
mod verify;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::check::{self, CheckOutcome};
use crate::cli::RepairArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::files::can_write;
use crate::progress::Progress;
use crate::report::{Report, Verdict};
use crate::schema;
use crate::sql_bytes;
use fingerprint::{Fingerprint, fingerprint, fingerprint_locked};
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
    /// No good snapshot was at hand: what one would have restored or
    /// decided (one sentence each; the IDs are in the lists above).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub without_snapshot: Vec<String>,
    /// Tables that may have lost rows no source names (a rebuild only).
    pub lost_rows: Vec<rebuild::TableLoss>,
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
    interrupt::install(&args.db)?;
    let db = &where_it_lives(&args.db)?;
    // SQLite makes a -wal and -shm to read a WAL database at rest, even
    // read-only; a repair that changes nothing must not leave them, nor
    // one that a signal ends outright.
    interrupt::sidecars(db, crate::db::Leftovers::note(db));
    crate::db::leaving_nothing(db, || repair_at(args, db, &settings, quiet))
}

/// What the repair knows before it changes anything: the check, the
/// report's fields so far, the good snapshots, and the plan made from them.
struct Planned {
    before: Report,
    fields: RepairFields,
    good: Vec<snapshot::Snapshot>,
    plan: Plan,
    table: Option<schema::CustomerTable>,
}

/// Checks the database, chooses the snapshots and plans; "nothing to do"
/// only on the evidence on which check says clean.
fn plan_repair(
    args: &RepairArgs,
    db: &Path,
    settings: &Settings,
    progress: Progress,
    t0: std::time::Instant,
) -> Result<Planned> {
    let mut before = check_before(db, settings, progress, false)?;
    before.database = args.db.display().to_string();
    check::timing("repair: check", t0);
    let mut fields = RepairFields {
        dry_run: args.dry_run,
        before: Some(Before::of(&before)),
        ..RepairFields::default()
    };
    if db != args.db {
        fields.actions.push(Action {
            kind: "symlink",
            object: None,
            detail: format!(
                "{} is a symbolic link to {}: the database is repaired where it lives; the link stays a link",
                args.db.display(),
                db.display()
            ),
        });
    }
    let (live, table) = live_schema(db, settings)?;
    let mut good = choose_snapshots(db, &before, &live, &args.snapshot, settings, &mut fields);
    let mut the_plan = make_plan(db, settings, &before, &live, table.as_ref(), &good)?;
    if matches!(
        the_plan.strategy,
        Strategy::Nothing | Strategy::LossesAccounted { .. }
    ) {
        // "nothing to do" only on the evidence on which check says clean
        // (DESIGN rule 9): with SQLite's quick_check as check runs it (and
        // for losses already accounted for, nothing beyond them)
        before = check_before(db, settings, Progress::hidden(), true)?;
        if before.verdict != Verdict::Clean {
            fields.before = Some(Before::of(&before));
            good = choose_snapshots(db, &before, &live, &args.snapshot, settings, &mut fields);
            the_plan = make_plan(db, settings, &before, &live, table.as_ref(), &good)?;
        }
    }
    Ok(Planned {
        before,
        fields,
        good,
        plan: the_plan,
        table,
    })
}

/// The repair of the database at `db` (the link resolved).
fn repair_at(
    args: &RepairArgs,
    db: &Path,
    settings: &Settings,
    quiet: bool,
) -> Result<RepairOutcome> {
    // a file that is no database (a -wal or journal given for it, a
    // directory) is refused before anything is looked at or written
    check::access::file_header(db)?;
    let backup_dir = args
        .backup_dir
        .clone()
        .unwrap_or_else(|| folder_of(db).to_path_buf());
    paths_usable(args, db, &backup_dir)?;
    // before the check: the -wal a killed repair set aside is the
    // database's own again (the check must read what SQLite reads)
    let restored = restore_wal_set_aside(db, &backup_dir, args.dry_run, quiet);
    let progress = Progress::new(quiet, args.opts.json.as_deref() == Some("-"));
    let t0 = std::time::Instant::now();
    let fp = fingerprint(db);
    let Planned {
        before,
        mut fields,
        good,
        plan: the_plan,
        table,
    } = plan_repair(args, db, settings, progress, t0)?;
    let st = stamp();
    fields.actions.extend(restored);
    fields.plan = Some(the_plan.clone());
    let framed = match mend_frame(db, &st, settings, &before, &the_plan, &good) {
        Ok(f) => f,
        Err(e) => {
            let why = format!("{e:#}; nothing was changed");
            return Ok(stopped(db, before, fields, &why));
        }
    };
    let (the_plan, table) = match &framed {
        Some(f) => (f.plan.clone(), f.table.clone()),
        None => (the_plan, table),
    };
    fields.plan = Some(the_plan.clone());

    let locks = matches!(
        the_plan.strategy,
        Strategy::PatchCopy | Strategy::Rebuild { .. }
    );
    if !args.dry_run && !locks {
        // a repair killed after its swap: its original becomes the backup
        // it was to be, even when this run has nothing to do (a locked run
        // does it with the other leftovers)
        name_originals(db, &backup_dir, &st, &mut fields);
    }
    if args.dry_run || !locks {
        name_leftovers(db, &backup_dir, quiet);
    }
    let (before, mut fields) = match settled(&the_plan, before, fields, db, args, &good) {
        Ok(done) => return Ok(done),
        Err(go_on) => *go_on,
    };
    let Some(table) = table else {
        let why = no_customer_table(&before, &settings.table, good.is_empty());
        return Ok(stopped(db, before, fields, &why));
    };
    if args.dry_run {
        fields.without_snapshot = without_snapshot(&the_plan, &fields, &args.snapshot, &good);
        return Ok(dry_run(before, fields));
    }

    // From here on: lock, then nothing before the backup.
    let lock = lock_unchanged(db, &fp)?;
    interrupt::writing();
    remove_leftovers(db, &backup_dir, &st, &mut fields);
    let planned_from = framed.as_ref().map_or(&before, |f| &f.report);
    let job = Job {
        db,
        source: framed.as_ref().map_or(db, |f| f.scratch.path()),
        mended: framed.as_ref().map_or(&[], |f| f.actions.as_slice()),
        dir: folder_of(db),
        stamp: &st,
        plan: &the_plan,
        table: &table,
        settings,
        lock: &lock,
        snapshot: good.first().map(|s| s.path.as_path()),
        before: planned_from,
    };
    let result = locked_steps(&job, &backup_dir, &mut fields, t0);
    interrupt::settle();
    interrupt::remove_work_files();
    match result {
        // after the swap the file the lock has open is no longer the
        // database: nothing is done to it, the lock is dropped (the
        // connection's close rolls its transaction back, then the descriptor)
        Ok(_) => drop(lock),
        Err(_) => lock.release(),
    }
    fields.without_snapshot = without_snapshot(&the_plan, &fields, &args.snapshot, &good);
    finish(db, before, fields, result, t0)
}

/// The plans that need no lock (nothing to do, not built, losses already
/// accounted for) end here with their report; the others hand the check
/// and the fields back to go on.
fn settled(
    the_plan: &Plan,
    before: Report,
    mut fields: RepairFields,
    db: &Path,
    args: &RepairArgs,
    good: &[snapshot::Snapshot],
) -> std::result::Result<RepairOutcome, Box<(Report, RepairFields)>> {
    match &the_plan.strategy {
        Strategy::Nothing => {
            fields.after = fields.before.clone();
            return Ok(outcome(before, fields, Verdict::Clean, ExitStatus::Success));
        }
        Strategy::NotBuilt { reason } => {
            let why = format!("{reason}; nothing was changed");
            return Ok(stopped(db, before, fields, &why));
        }
        Strategy::LossesAccounted { customer_ids } => {
            // the same report as the repair that accounted for them: exit 1
            fields.unrecoverable_customer_ids = customer_ids.clone();
            fields.after = fields.before.clone();
            fields.without_snapshot = without_snapshot(the_plan, &fields, &args.snapshot, good);
            return Ok(outcome(
                before,
                fields,
                Verdict::RepairedWithLosses,
                ExitStatus::Problems,
            ));
        }
        Strategy::PatchCopy | Strategy::Rebuild { .. } => {}
    }
    Err(Box::new((before, fields)))
}

/// The report of a repair that ran its locked steps: swapped, interrupted,
/// or stopped with the original untouched; `Err` when the backup failed
/// (exit 2, nothing changed).
fn finish(
    db: &Path,
    before: Report,
    fields: RepairFields,
    result: Result<Report>,
    t0: std::time::Instant,
) -> Result<RepairOutcome> {
    match result {
        Ok(verified) => {
            check::timing("repair: swapped", t0);
            let out = report_swapped(db, before, fields, &verified);
            if let Some(sig) = interrupt::asked() {
                crate::messages::error(&format!(
                    "{}: interrupted by {sig} after the swap: the repaired database is in place",
                    db.display()
                ));
            }
            Ok(out)
        }
        Err(_) if interrupt::asked().is_some() => Ok(interrupted(db, before, fields)),
        // the backup failed: nothing was changed (exit 2)
        Err(e) if e.downcast_ref::<BackupFailed>().is_some() => Err(e),
        // SQLite may have begun the checkpoint: the rows are the original's,
        // the file's bytes may not be
        Err(e) if e.downcast_ref::<apply::LeavingWal>().is_some() => {
            let backup = fields
                .backup_path
                .as_deref()
                .map(|b| format!(": the backup {b} holds them as they were"))
                .unwrap_or_default();
            let why = format!(
                "{e:#}; the database's rows are as they were, but SQLite may have checkpointed \
                 its -wal into the file, so the file and its -wal may not be byte for byte the \
                 original's{backup}"
            );
            Ok(stopped(db, before, fields, &why))
        }
        Err(e) => {
            let why = format!("{e:#}; the original is untouched");
            Ok(stopped(db, before, fields, &why))
        }
    }
}

/// Why a repair that needs the customer table stops without it (exit 3).
fn no_customer_table(before: &Report, table: &str, no_snapshot: bool) -> String {
    let unreadable = before
        .findings
        .iter()
        .any(|f| f.code == check::finding::Code::SchemaUnreadable);
    if unreadable && no_snapshot {
        format!(
            "SQLite cannot read the schema table and no page of it still names table {table}: \
             without a good snapshot to take the schema from (--snapshot), its rows cannot be \
             told from the others'; nothing was changed"
        )
    } else {
        format!("no table {table} in the schema; nothing was changed")
    }
}

/// Steps 5 to 8, with the lock held: backup, build, verify, swap. Returns
/// the check of the repaired database now in place.
fn locked_steps(
    job: &Job,
    backup_dir: &Path,
    fields: &mut RepairFields,
    t0: std::time::Instant,
) -> Result<Report> {
    let mut bk = take_backup(job, backup_dir, fields)?;
    check::timing("repair: lock + backup", t0);
    // a linked backup's action goes here, first, once it is named
    let at = fields.actions.len();
    // the frame was mended on the scratch copy the build starts from
    fields.actions.extend(job.mended.iter().cloned());
    let built = std::thread::scope(|s| -> Result<Report> {
        // a linked backup's checksum, read from the original while the
        // repair builds
        let original = job.lock.file();
        let hash = bk
            .linked
            .is_some()
            .then(|| s.spawn(move || apply::sha256_of(original)));
        interrupt::stop_if_asked()?;
        let (copy, verified) = build_and_verify(job, fields)?;
        check::timing("repair: built and verified", t0);
        if let Some(h) = hash {
            let sha = h
                .join()
                .map_err(|_| anyhow::anyhow!("checksum thread failed"))?
                .with_context(|| {
                    format!("{}: reading it for the backup's checksum", job.db.display())
                })?;
            bk.sha256 = Some(sha);
        }
        apply::drop_sidecars(&copy)?;
        interrupt::stop_if_asked()?;
        // the original changes from here on (a WAL database is checkpointed
        // before the rename): a copied backup is kept whatever happens next
        bk.keep();
        // what the -wal commits, read before leaving WAL mode removes it: a
        // WAL database at rest has none (or only the empty -wal the lock's
        // open made), and then nothing is checkpointed
        let committed = apply::committed_wal(job.db).map(|w| w.max_frame);
        if job
            .lock
            .leave_wal(job.db)
            .map_err(|e| e.context(apply::LeavingWal))?
            && let Some(frames) = committed
        {
            fields.actions.push(Action {
                kind: "checkpoint",
                object: None,
                detail: format!(
                    "the -wal's {frames} committed frame{} {} checkpointed into the database (its content is unchanged) so the swap is a single rename",
                    if frames == 1 { "" } else { "s" },
                    if frames == 1 { "was" } else { "were" }
                ),
            });
        }
        let aside = bk
            .wal_aside
            .as_ref()
            .map(|(w, a)| (w.as_path(), a.as_path()));
        apply::swap(&copy, job.db, aside)?;
        if let Some((w, _)) = aside {
            fields.actions.push(Action {
                kind: "wal_set_aside",
                object: None,
                detail: format!(
                    "{} was set aside before the swap (SQLite, which refused the database or opened it read-only, could not checkpoint it, and would have replayed it over the repaired file); its frames are in the repaired file, and it is kept with the backup",
                    w.display()
                ),
            });
        }
        Ok(verified)
    });
    if bk.linked.is_none() && !bk.kept() {
        drop_copied_backup(fields);
    }
    if bk.linked.is_some() {
        name_linked_backup(&mut bk, built.is_ok(), at, fields);
    }
    built
}

/// A copied backup of a repair that stopped before the original was
/// changed: removed with the work files, as a linked backup is (nothing
/// changed, so there is nothing to restore from it); the report says so.
fn drop_copied_backup(fields: &mut RepairFields) {
    let Some(path) = fields.backup_path.take() else {
        return;
    };
    fields.backup_sha256 = None;
    if let Some(a) = fields.actions.iter_mut().find(|a| a.kind == "backup") {
        a.detail = format!(
            "none kept: the repair stopped before the original was changed, so the copy made at {path} was removed with the work files"
        );
    }
}

/// A linked backup, once the repair has ended: after the swap the original
/// file's second name becomes the backup; a repair that stopped before it
/// changed nothing and keeps none (the second name was a work file).
fn name_linked_backup(
    bk: &mut backup::Backup,
    swapped: bool,
    at: usize,
    fields: &mut RepairFields,
) {
    let Some(second) = bk.linked.clone() else {
        return;
    };
    let action = |detail: String| Action {
        kind: "backup",
        object: None,
        detail,
    };
    if !swapped {
        fields.actions.insert(
            at,
            action("none kept: the repair stopped before the swap, so the database is the original, untouched (the second name it was given for the backup was removed)".into()),
        );
        return;
    }
    let sha = bk.sha256.clone().unwrap_or_default();
    match bk.name(sha.clone()) {
        Ok(()) => {
            fields.backup_path = Some(bk.path.display().to_string());
            fields.backup_sha256 = Some(sha.clone());
            fields.actions.insert(
                at,
                action(format!(
                    "the original file itself, byte for byte: given a second name before any change, never written, and named {} (sha256 {sha}) once the verified copy had replaced it",
                    bk.path.display()
                )),
            );
        }
        Err(e) => {
            let why = format!(
                "the original file is kept as {} but could not be named {} ({e:#}); the next repair names it",
                second.display(),
                bk.path.display()
            );
            crate::messages::error(&format!("warning: {why}"));
            fields.actions.insert(at, action(why));
        }
    }
}

/// A repair stopped by SIGINT, SIGTERM or SIGHUP before the swap: its work
/// files are removed, the original is as it was (exit 3).
fn interrupted(db: &Path, before: Report, mut fields: RepairFields) -> RepairOutcome {
    let sig = interrupt::asked().unwrap_or("a signal");
    let kept = fields
        .backup_path
        .as_deref()
        .map(|b| format!("; the backup {b} is kept"))
        .unwrap_or_default();
    crate::messages::error(&format!(
        "{}: interrupted by {sig}, nothing changed: the original is untouched and the work files were removed{kept}",
        db.display()
    ));
    fields.actions.push(Action {
        kind: "interrupted",
        object: None,
        detail: format!(
            "by {sig}, before the swap: the work files were removed, the original is untouched"
        ),
    });
    outcome(before, fields, Verdict::Failed, ExitStatus::RepairFailed)
}

/// The folders where work files of this database may be: its own and the
/// backup folder.
fn work_folders<'a>(db: &'a Path, backup_dir: &'a Path) -> Vec<&'a Path> {
    let mut dirs = vec![folder_of(db)];
    if !same_folder(backup_dir, folder_of(db)) {
        dirs.push(backup_dir);
    }
    dirs
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn leftovers(db: &Path, backup_dir: &Path) -> Vec<(PathBuf, u64)> {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    work_folders(db, backup_dir)
        .into_iter()
        .flat_map(|d| interrupt::leftovers(d, &name))
        .collect()
}

fn shown(files: &[(PathBuf, u64)]) -> String {
    files
        .iter()
        .map(|(p, n)| format!("{} ({n} bytes)", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The second name of the original of a repair killed between its swap
/// and naming its backup: its file is no longer the database (one stopped
/// before the swap left the database's own second name, a mere leftover).
fn unnamed_original(p: &Path, db: &Path) -> bool {
    p.to_string_lossy()
        .ends_with(&format!(".custodian-{}", interrupt::ORIGINAL))
        && !backup::same_file(p, db)
}

/// The second name of a -wal that a repair set aside right before its
/// swap (`interrupt::swap`): `.NAME.STAMP.PID.custodian-original-wal`,
/// beside the original file's second name. Never removed as a leftover:
/// put back, or named as a backup's -wal.
fn wal_set_aside(p: &Path) -> bool {
    p.to_string_lossy()
        .ends_with(&format!(".custodian-{}-wal", interrupt::ORIGINAL))
}

/// Whether the process that made a work file (its name holds the PID) is
/// still running: its files are its own, not a killed run's leftovers.
fn maker_alive(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = name
        .rsplit(".custodian-")
        .nth(1)
        .and_then(|head| head.rsplit('.').next())
        .and_then(|pid| pid.parse::<i32>().ok());
    match pid {
        Some(pid) if pid > 0 && pid != std::process::id() as i32 => {
            // ok: kill with signal 0 only asks whether the process exists
            let rc = unsafe { libc::kill(pid, 0) };
            rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
        _ => false,
    }
}

/// A repair killed between setting its -wal aside and its swap left the
/// database as it was, but without its -wal (kept as the -wal's second
/// name, beside the original's, which is still the database): the -wal is
/// put back, before anything reads the database. A set-aside -wal whose
/// original is no longer the database was set aside by a swap that
/// happened: it is named with that backup, under the lock
/// (`name_originals`). A dry run changes nothing: it names the -wal (its
/// check reads the file without it). What was done, as actions.
fn restore_wal_set_aside(db: &Path, backup_dir: &Path, dry_run: bool, quiet: bool) -> Vec<Action> {
    let wal = apply::sidecar(db, "-wal");
    let mut actions = Vec::new();
    for (p, _) in leftovers(db, backup_dir) {
        let os = p.as_os_str().to_string_lossy();
        let Some(second) = os.strip_suffix("-wal").map(PathBuf::from) else {
            continue;
        };
        if !wal_set_aside(&p) || maker_alive(&p) || !backup::same_file(&second, db) {
            continue;
        }
        let detail = if dry_run {
            format!(
                "the -wal a repair killed before its swap set aside is kept as {}; a repair puts it back as {} (this dry run read the database without it)",
                p.display(),
                wal.display()
            )
        } else if std::fs::symlink_metadata(&wal).is_ok() {
            format!(
                "the -wal a repair killed before its swap set aside is kept as {}: it could not be put back, since {} exists",
                p.display(),
                wal.display()
            )
        } else {
            match std::fs::rename(&p, &wal).and_then(|()| {
                crate::files::fsync_dir(folder_of(db)).map_err(std::io::Error::other)
            }) {
                Ok(()) => format!(
                    "the -wal a repair killed before its swap had set aside ({}) was put back as {}: the database is as it was before that repair",
                    p.display(),
                    wal.display()
                ),
                Err(e) => format!(
                    "the -wal a repair killed before its swap set aside is kept as {}: it could not be put back ({e})",
                    p.display()
                ),
            }
        };
        crate::messages::warn(quiet, &format!("{}: {detail}", db.display()));
        actions.push(Action {
            kind: "leftovers",
            object: None,
            detail,
        });
    }
    actions
}

/// Without the lock (a dry run, nothing to do): work files of a killed
/// repair are named, not removed.
fn name_leftovers(db: &Path, backup_dir: &Path, quiet: bool) {
    let (originals, found): (Vec<_>, Vec<_>) = leftovers(db, backup_dir)
        .into_iter()
        .partition(|(p, _)| unnamed_original(p, db) || wal_set_aside(p));
    if !found.is_empty() {
        crate::messages::warn(
            quiet,
            &format!(
                "{}: work files left by a repair that was killed: {}; the next repair removes them",
                db.display(),
                shown(&found)
            ),
        );
    }
    if !originals.is_empty() {
        crate::messages::warn(
            quiet,
            &format!(
                "{}: the original file of a repair killed after its swap is kept as {}; the next repair names it as a backup",
                db.display(),
                shown(&originals)
            ),
        );
    }
}

/// The original files of repairs killed between their swap and naming
/// their backup: each is named as the backup it was to become.
fn name_originals(db: &Path, backup_dir: &Path, st: &str, fields: &mut RepairFields) {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (p, _) in leftovers(db, backup_dir) {
        if !unnamed_original(&p, db) {
            continue;
        }
        let detail = match backup::promote(&p, &name, st) {
            Ok((bk, sha)) => format!(
                "the original file of a repair killed after its swap ({}) was named {} (sha256 {sha})",
                p.display(),
                bk.display()
            ),
            Err(e) => format!(
                "the original file of a repair killed after its swap is kept as {}; it could not be named as a backup: {e:#}",
                p.display()
            ),
        };
        fields.actions.push(Action {
            kind: "leftovers",
            object: None,
            detail,
        });
    }
    name_lone_wals(db, backup_dir, st, fields);
}

/// Set-aside -wals whose original's second name is gone (a repair killed
/// after its swap, while naming its backup): each is named as a backup's
/// -wal of its own, with its checksum.
fn name_lone_wals(db: &Path, backup_dir: &Path, st: &str, fields: &mut RepairFields) {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (p, _) in leftovers(db, backup_dir) {
        let os = p.as_os_str().to_string_lossy();
        let lone = os
            .strip_suffix("-wal")
            .is_some_and(|second| std::fs::symlink_metadata(second).is_err());
        if !wal_set_aside(&p) || !lone {
            continue;
        }
        let detail = match backup::name_lone_wal(&p, &name, st) {
            Ok((bk, sha)) => format!(
                "the -wal a repair killed after its swap had set aside ({}) was named {} (sha256 {sha})",
                p.display(),
                bk.display()
            ),
            Err(e) => format!(
                "the -wal a repair killed after its swap set aside is kept as {}; it could not be named as a backup: {e:#}",
                p.display()
            ),
        };
        fields.actions.push(Action {
            kind: "leftovers",
            object: None,
            detail,
        });
    }
}

/// With the lock held, before this run makes any file: work files left by
/// a repair that was killed outright (SIGKILL, power loss) are removed.
/// They are custodian's own hidden files, never the database or a backup;
/// the lock means no other repair of this database is running. The one
/// exception is the original file of a repair killed after its swap: it
/// is named as the backup it was to become.
fn remove_leftovers(db: &Path, backup_dir: &Path, st: &str, fields: &mut RepairFields) {
    name_originals(db, backup_dir, st, fields);
    let (removed, failed): (Vec<_>, Vec<_>) = leftovers(db, backup_dir)
        .into_iter()
        .filter(|(p, _)| !unnamed_original(p, db) && !wal_set_aside(p))
        .partition(|(p, _)| std::fs::remove_file(p).is_ok());
    let mut say = |detail: String| {
        fields.actions.push(Action {
            kind: "leftovers",
            object: None,
            detail,
        })
    };
    if !removed.is_empty() {
        say(format!(
            "removed the work files left by a repair that was killed: {}",
            shown(&removed)
        ));
    }
    if !failed.is_empty() {
        say(format!(
            "work files left by a repair that was killed could not be removed: {}",
            shown(&failed)
        ));
    }
}

/// The file a database path names: a symbolic link's target (every link
/// resolved), so that it is repaired where it lives and the link stays a
/// link; any other path as given.
fn where_it_lives(given: &Path) -> Result<PathBuf> {
    match std::fs::symlink_metadata(given) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(given).with_context(|| {
            format!(
                "{}: a symbolic link whose target cannot be found; nothing was changed",
                given.display()
            )
        }),
        _ => Ok(given.to_path_buf()),
    }
}

/// Step 0, before any work: the paths given can be used. Every
/// `--snapshot` path must be readable, and every place repair writes must
/// be writable (a dry run is refused the same way: the repair it shows
/// could not run). A database that cannot be opened at all is left to the
/// check, which says why.
fn paths_usable(args: &RepairArgs, db: &Path, backup_dir: &Path) -> Result<()> {
    let db_opens = std::fs::File::open(db)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file());
    if !db_opens {
        return Ok(());
    }
    snapshot::readable(&args.snapshot)
        .map_err(|e| anyhow::anyhow!("{e:#}; nothing was changed"))?;
    let refuse = |what: &str, p: &Path, e: std::io::Error| {
        anyhow::anyhow!(
            "{}: {what} is not writable ({e}); repair must write there: nothing was changed",
            p.display()
        )
    };
    can_write(db).map_err(|e| refuse("the database", db, e))?;
    let folder = folder_of(db);
    can_write(folder).map_err(|e| refuse("the database's folder", folder, e))?;
    backup_folder_usable(backup_dir)?;
    let reports = [
        args.opts
            .json
            .as_deref()
            .filter(|j| *j != "-")
            .map(Path::new),
        args.opts.report.as_deref(),
        args.opts.html.as_deref(),
    ];
    for target in reports.into_iter().flatten() {
        report_target_usable(target)?;
    }
    Ok(())
}

/// The backup folder: one that is there and writable, or one that can be
/// made in the folder above it, which is there and writable. A folder whose
/// parent is missing too is a mistyped path: refused, never made (a chain of
/// folders made from a typo would hide the backup where nobody looks).
fn backup_folder_usable(dir: &Path) -> Result<()> {
    let d = dir.display();
    let parent = folder_of(dir);
    let p = parent.display();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => can_write(dir).map_err(|e| {
            anyhow::anyhow!(
                "{d}: the backup folder is not writable ({e}); repair must write there: nothing was changed"
            )
        }),
        Ok(_) => bail!("{d}: the backup folder is a file, not a folder: nothing was changed"),
        // (a file where a folder above it should be: the parent's turn)
        Err(e)
            if !matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            bail!("{d}: the backup folder cannot be read ({e}): nothing was changed")
        }
        Err(_) => match std::fs::metadata(parent) {
            Ok(m) if m.is_dir() => can_write(parent).map_err(|e| {
                anyhow::anyhow!(
                    "{d}: the backup folder does not exist, and {p}, where it would be made, is not writable ({e}): nothing was changed"
                )
            }),
            Ok(_) => bail!(
                "{d}: the backup folder does not exist, and {p}, where it would be made, is a file: nothing was changed"
            ),
            Err(_) => bail!(
                "{d}: the backup folder does not exist, nor does {p}, the folder it would be made in: give a folder that exists (or one inside it); nothing was changed"
            ),
        },
    }
}

/// A report is written to a new file or over a writable one, never through
/// a symbolic link.
fn report_target_usable(target: &Path) -> Result<()> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "{}: the report cannot be written there ({why}); nothing was changed",
            target.display()
        )
    };
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => Err(refuse(
            "a symbolic link: custodian never writes through one".into(),
        )),
        Ok(_) => can_write(target).map_err(|e| refuse(e.to_string())),
        Err(_) => {
            let folder = folder_of(target);
            can_write(folder).map_err(|e| refuse(format!("its folder: {e}")))
        }
    }
}

/// Step 1: the read-only check of the live file; first without the
/// quick_check second opinion (the verification of the result runs it),
/// then — when custodian's own checks find nothing to do — with it.
fn check_before(
    db: &Path,
    settings: &Settings,
    progress: Progress,
    quick_check: bool,
) -> Result<Report> {
    let CheckOutcome { report, status } = check::check_with(db, settings, progress, quick_check)?;
    if status == ExitStatus::CouldNotRun {
        let msg = report
            .findings
            .iter()
            .find(|f| f.code == check::finding::Code::TableMissing)
            .map(|f| f.message.clone())
            .unwrap_or_else(|| "the check could not run".into());
        bail!("{}: {msg}; nothing was changed", db.display());
    }
    Ok(report)
}

/// The live schema (read leniently) and the customer table in it.
fn live_schema(
    db: &Path,
    settings: &Settings,
) -> Result<(Vec<schema::SchemaObject>, Option<schema::CustomerTable>)> {
    let conn = crate::db::open_read_only(db)?;
    let live = schema::read_schema_tolerant(&conn).unwrap_or_default();
    let mut table = match schema::customer_table(&conn, &live, &settings.table, &settings.id_column)
    {
        Ok(Some(Ok(t))) => Some(t),
        _ => None,
    };
    if table.is_none() {
        // SQLite cannot read the schema, or not this table's part of it: the
        // page reader's (the rebuild reads it so too)
        table = rebuild::customer_table_from_pages(db, &settings.table, &settings.id_column)
            .ok()
            .flatten()
            .and_then(|r| r.ok());
    }
    Ok((live, table))
}

/// Step 2: the snapshots, verified only when the plan may need one: pages
/// no object owns (a lost index definition), rows to restore, duplicates
/// or mismatches to settle. Damage confined to indexes (missing or surplus
/// entries, wrong lookups, an index's own pages damaged) needs none: the
/// indexes are rebuilt from the live table. Their statuses go into the
/// report; the good ones come back newest first.
fn choose_snapshots(
    db: &Path,
    before: &Report,
    live: &[schema::SchemaObject],
    paths: &[PathBuf],
    settings: &Settings,
    fields: &mut RepairFields,
) -> Vec<snapshot::Snapshot> {
    let needs_snapshot = before
        .findings
        .iter()
        .any(|f| f.severity == check::finding::Severity::Error && !index_only(f, live));
    let cands = snapshot::candidates(paths);
    if needs_snapshot {
        // a live file SQLite refuses as a whole has no columns to compare
        let live_cols = snapshot::columns_of(db, &settings.table).unwrap_or_default();
        let (good, statuses) = snapshot::verify_with(&cands, settings, &live_cols, |snap, live| {
            live.is_empty() || snap == live
        });
        fields.snapshots = statuses;
        return good;
    }
    fields.snapshots = cands
        .iter()
        .map(|p| snapshot::SnapshotStatus {
            path: p.display().to_string(),
            status: "not_needed",
            reason: "the live table holds every row: indexes are rebuilt from it".into(),
        })
        .collect();
    Vec::new()
}

/// Whether finding `f` is damage an index rebuilt from the live table
/// repairs: missing or surplus entries, wrong lookups, or the pages of an
/// index (by the live schema) damaged. A page of an index holds only
/// entries: whatever it held, the rebuild from the table restores.
fn index_only(f: &check::finding::Finding, live: &[schema::SchemaObject]) -> bool {
    use check::finding::Code;
    match f.code {
        Code::IndexEntryMissing | Code::IndexEntrySurplus | Code::LookupWrong => true,
        Code::PageDamaged
        | Code::CellDamaged
        | Code::ChildPointerInvalid
        | Code::RecordDamaged
        | Code::KeyOrder => f.object.as_deref().is_some_and(|o| {
            live.iter()
                .any(|s| s.kind == "index" && s.name == o && s.rootpage > 0)
        }),
        _ => false,
    }
}

/// Step 3: the plan. The planner is pure; the evidence it weighs (the
/// snapshot's ID of a row, the tables that name an ID) is looked up here
/// and handed to it as functions. Every connection opened here is closed
/// before the exclusive lock is taken.
fn make_plan(
    db: &Path,
    settings: &Settings,
    before: &Report,
    live: &[schema::SchemaObject],
    table: Option<&schema::CustomerTable>,
    good: &[snapshot::Snapshot],
) -> Result<Plan> {
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
    let pager = crate::pager::Pager::open(db).ok();
    let auto_vacuum = pager
        .as_ref()
        .is_some_and(|p| p.header().largest_root_page != 0);
    // pages no object owns that hold a table's rows: kept, never freed
    let unowned_rows = match &pager {
        Some(p) => {
            let unused: Vec<u32> = before
                .findings
                .iter()
                .filter(|f| f.code == check::finding::Code::PageUnused)
                .flat_map(|f| f.pages.iter().copied())
                .collect();
            crate::format::salvage::leaves_with_rows(p, &unused)
        }
        None => Vec::new(),
    };
    // The snapshot's ID of a row, to decide which side of a mismatch is damaged.
    let snap_conn = match good.first() {
        Some(s) => Some(crate::db::open_read_only(&s.path)?),
        None => None,
    };
    let id_col = table
        .map(|t| schema::quote_ident(&t.columns[t.id_column].name))
        .unwrap_or_default();
    let tq = schema::quote_ident(table.map_or(&settings.table, |t| &t.name));
    let snapshot_id_of = |rowid: i64| -> Option<String> {
        let c = snap_conn.as_ref()?;
        sql_bytes::query_row(
            c,
            &format!("SELECT {id_col} FROM {tq} NOT INDEXED WHERE rowid = ?1"),
            &[&rowid],
            |r| r.get::<rusqlite::types::Value>(0),
        )
        .ok()
        .and_then(|v| crate::report::id_text(&v))
    };
    let id_indexes = table.map(id_indexes).unwrap_or_default();
    let ref_conn = crate::db::open_read_only(db)?;
    let refs = table
        .and_then(|t| {
            schema::reference_columns(
                &ref_conn,
                live,
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
            sql_bytes::query_row(&ref_conn, &q, &[&id], |_| Ok(()))
                .ok()
                .map(|_| format!("{t}.{c}"))
        })
    };
    // A customer the snapshot has can be put back unless a live row holds
    // one of its unique values (a restore would fail on it, run after run).
    // The snapshot is verified sound: its ID index may be used.
    let unique: Vec<String> = table
        .map(|t| {
            t.indexes
                .iter()
                .filter(|i| i.unique && i.partial_where.is_none())
                .filter_map(|i| match i.key_fields().collect::<Vec<_>>()[..] {
                    [f] => match f.part {
                        schema::IndexPart::Column(c) if c != t.id_column => {
                            Some(schema::quote_ident(&t.columns[c].name))
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let restorable = |id: &str| -> bool {
        let Some(c) = snap_conn.as_ref() else {
            return false;
        };
        let mut sel = vec!["1".to_string()];
        sel.extend(unique.iter().cloned());
        let Ok(values) = sql_bytes::query_row(
            c,
            &format!(
                "SELECT {} FROM {tq} WHERE {id_col} = ?1 LIMIT 1",
                sel.join(", ")
            ),
            &[&id],
            |r| {
                (1..sel.len())
                    .map(|i| r.get::<rusqlite::types::Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            },
        ) else {
            return false;
        };
        !unique.iter().zip(&values).any(|(col, v)| {
            *v != rusqlite::types::Value::Null
                && sql_bytes::query_row(
                    &ref_conn,
                    &format!("SELECT 1 FROM {tq} WHERE {col} = ?1 LIMIT 1"),
                    &[v],
                    |_| Ok(()),
                )
                .is_ok()
        })
    };
    let evidence = plan::Evidence {
        snapshot_id_of: &snapshot_id_of,
        id_rule: settings.id_rule.as_ref(),
        referenced: &referenced,
        id_indexes: &id_indexes,
        restorable: &restorable,
        unowned_rows: &unowned_rows,
    };
    Ok(plan::plan(
        before,
        live,
        snap_schema
            .as_ref()
            .map(|(p, s)| (p.as_str(), s.as_slice())),
        auto_vacuum,
        &evidence,
    ))
}

/// The indexes whose only key is the customer ID.
fn id_indexes(t: &schema::CustomerTable) -> Vec<String> {
    t.indexes
        .iter()
        .filter(|i| {
            let keys: Vec<&schema::IndexField> = i.key_fields().collect();
            keys.len() == 1
                && matches!(keys[0].part, schema::IndexPart::Column(c) if c == t.id_column)
        })
        .map(|i| i.name.clone())
        .collect()
}

/// Without a good snapshot: what one would have restored (rows that index
/// entries or other tables name but no page holds) or decided (which of
/// several duplicate rows is the original). Empty when a snapshot was used
/// or none was needed.
fn without_snapshot(
    the_plan: &Plan,
    fields: &RepairFields,
    given: &[PathBuf],
    good: &[snapshot::Snapshot],
) -> Vec<String> {
    if !good.is_empty() {
        return Vec::new();
    }
    let none = if given.is_empty() {
        "no snapshot was given"
    } else {
        "no good snapshot"
    };
    let mut out = Vec::new();
    let lost = fields.unrecoverable_customer_ids.len();
    if lost > 0 {
        out.push(format!(
            "{none}: {lost} customer{} that index entries or other tables name but no page holds could not be restored (unrecoverable_customer_ids); a snapshot that has them would restore them",
            if lost == 1 { "" } else { "s" }
        ));
    } else if fields.dry_run && matches!(the_plan.strategy, Strategy::Rebuild { .. }) {
        out.push(format!(
            "{none}: rows that index entries or other tables name but no page holds cannot be restored; they will be listed as unrecoverable (a snapshot that has them would restore them)"
        ));
    }
    let unowned = &the_plan.unowned_pages;
    if !unowned.is_empty()
        && the_plan.recreate_indexes.is_empty()
        && the_plan.strategy == Strategy::PatchCopy
    {
        out.push(format!(
            "{none}: {} page{} that no object owns (pages {}: a b-tree whose definition is gone from the schema, such as an index's) {} freed; an index's entries come back from its table, but its definition only from a snapshot that has it",
            unowned.len(),
            if unowned.len() == 1 { "" } else { "s" },
            crate::report::html::ranges(unowned),
            if fields.dry_run { "will be" } else { "were" },
        ));
    }
    if !the_plan.dedupe.is_empty()
        && (fields.dry_run || !fields.quarantined_customer_ids.is_empty())
    {
        out.push(format!(
            "{none}: of each customer's duplicate rows the oldest is kept; a snapshot would show which row is the original"
        ));
    }
    out
}

/// `--dry-run`: the plan is in the report; the verdict is the check's.
fn dry_run(before: Report, fields: RepairFields) -> RepairOutcome {
    let v = before.verdict;
    let st = if v == Verdict::Clean {
        ExitStatus::Success
    } else {
        ExitStatus::Problems
    };
    outcome(before, fields, v, st)
}

/// Step 4: SQLite's exclusive lock, and the file as it was when checked:
/// if it changed in between, the plan is stale (busy, exit 2).
fn lock_unchanged(db: &Path, fp: &Fingerprint) -> Result<apply::Lock> {
    let lock = apply::lock(db)?;
    if fingerprint_locked(db, lock.file()) != *fp {
        lock.release();
        bail!(
            "{}: the database changed while the repair was being planned (busy); nothing was changed, try again",
            db.display()
        );
    }
    Ok(lock)
}

/// The folder the database is in (work files are made there, so the swap
/// is a rename within one file system).
fn folder_of(db: &Path) -> &Path {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The backup could not be made: nothing was changed (exit 2).
#[derive(Debug)]
struct BackupFailed(String);

impl std::fmt::Display for BackupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Step 5: the byte-for-byte backup before anything else (`backup.rs`):
/// the original file itself under a second name, or a copy. A copy's
/// action is recorded now; a linked backup's once it is named.
fn take_backup(job: &Job, dir: &Path, fields: &mut RepairFields) -> Result<backup::Backup> {
    let bk = backup::take(job.db, job.lock, dir, job.stamp).map_err(|e| {
        e.context(BackupFailed(format!(
            "{}: backup failed; nothing was changed",
            job.db.display()
        )))
    })?;
    apply::step("backup")?;
    if let Some(sha) = &bk.sha256 {
        fields.backup_path = Some(bk.path.display().to_string());
        fields.backup_sha256 = Some(sha.clone());
        fields.actions.push(Action {
            kind: "backup",
            object: None,
            detail: format!(
                "copied byte for byte to {} (sha256 {sha})",
                bk.path.display()
            ),
        });
    }
    Ok(bk)
}

/// Step 3a: a file SQLite refuses as a whole (a damaged header, a schema
/// table it cannot read) has its frame mended on a scratch copy from the
/// newest good snapshot (`frame.rs`) or, without one, page 1's image
/// found at another page put back (`frame::page_one_elsewhere`); the copy
/// is checked and the repair planned from that check. The original is not
/// touched: the build starts from the scratch copy once the original is
/// locked and backed up (and unchanged since it was checked). `None` when
/// the frame is sound.
fn mend_frame(
    db: &Path,
    st: &str,
    settings: &Settings,
    before: &Report,
    the_plan: &Plan,
    good: &[snapshot::Snapshot],
) -> Result<Option<Framed>> {
    let snap = good.first().filter(|_| !the_plan.frame.is_empty());
    // without a snapshot, a header SQLite refuses may be page 1's image
    // swapped with another page's: the file's own frame, put back
    let page_one = (good.is_empty() && refused_header(before))
        .then(|| frame::page_one_elsewhere(db))
        .flatten();
    let scratch = || frame::Scratch::new(work_file(db, folder_of(db), st, "frame"));
    let (scratch, actions) = match (snap, page_one) {
        (Some(snap), _) => {
            let s = scratch();
            let a = frame::mend(db, s.path(), &the_plan.frame, &snap.path)?;
            (s, a)
        }
        (None, Some(found)) => {
            let s = scratch();
            let a = frame::put_back_page_one(db, s.path(), found)?;
            (s, a)
        }
        (None, None) => return Ok(None),
    };
    let mut report = check_before(scratch.path(), settings, Progress::hidden(), false)?;
    // what only the original's -wal shows: the copy has its committed
    // frames, never the transactions committed after a damaged frame, so
    // the copy's check cannot name them; the plan must (needs_decision)
    report.findings.extend(
        before
            .findings
            .iter()
            .filter(|f| {
                f.code == check::finding::Code::WalInvalid
                    && f.severity == check::finding::Severity::Error
            })
            .cloned(),
    );
    if let Some(f) = report.findings.iter().find(|f| {
        matches!(
            f.code,
            check::finding::Code::HeaderInvalid | check::finding::Code::SchemaUnreadable
        )
    }) {
        bail!("the mended copy is still refused: {}", f.message);
    }
    let (live, table) = live_schema(scratch.path(), settings)?;
    let mut plan = make_plan(
        scratch.path(),
        settings,
        &report,
        &live,
        table.as_ref(),
        good,
    )?;
    plan.frame = the_plan.frame.clone();
    if plan.strategy == Strategy::Nothing {
        // the mended copy is the repair: it is verified and swapped in
        plan.strategy = Strategy::PatchCopy;
    }
    plan.frame_mended = actions.iter().map(|a| a.detail.clone()).collect();
    Ok(Some(Framed {
        scratch,
        actions,
        report,
        table,
        plan,
    }))
}

/// Whether check found the database header damaged (SQLite refuses it).
fn refused_header(before: &Report) -> bool {
    before.findings.iter().any(|f| {
        f.code == check::finding::Code::HeaderInvalid
            && f.severity == check::finding::Severity::Error
    })
}

/// A file whose frame was mended: the scratch copy (removed when this is
/// dropped), what mending did, its check, and the plan made from it.
struct Framed {
    scratch: frame::Scratch,
    actions: Vec<Action>,
    report: Report,
    table: Option<schema::CustomerTable>,
    plan: Plan,
}

/// A hidden work file beside the database, `.NAME.STAMP.PID.custodian-KIND`,
/// registered so that a stop before the swap removes it.
fn work_file(db: &Path, dir: &Path, stamp: &str, kind: &str) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = dir.join(interrupt::work_name(&name, stamp, std::process::id(), kind));
    interrupt::work_file(&path);
    path
}

/// What every step after the lock needs.
struct Job<'a> {
    db: &'a Path,
    /// The file the repaired copy is made from: the database, or the
    /// scratch copy whose frame was mended.
    source: &'a Path,
    /// What mending the frame did (reported after the backup).
    mended: &'a [Action],
    /// Where the work files are made: the database's folder.
    dir: &'a Path,
    stamp: &'a str,
    plan: &'a Plan,
    table: &'a schema::CustomerTable,
    settings: &'a Settings,
    lock: &'a apply::Lock,
    /// The newest good snapshot.
    snapshot: Option<&'a Path>,
    /// The check of the live file.
    before: &'a Report,
}

impl Job<'_> {
    /// A hidden work file beside the database, `.NAME.STAMP.PID.custodian-KIND`,
    /// registered so that a stop before the swap removes it.
    fn work_file(&self, kind: &str) -> PathBuf {
        work_file(self.db, self.dir, self.stamp, kind)
    }
}

/// Steps 6 and 7: the repaired copy, built by the plan's strategy (a patched
/// copy, or a rebuilt database), then verified. Returns the copy and the
/// check of it.
fn build_and_verify(job: &Job, fields: &mut RepairFields) -> Result<(PathBuf, Report)> {
    if let Strategy::Rebuild { reasons } = &job.plan.strategy {
        let before = fields.clone();
        let (copy, customers, in_place) =
            build::rebuild(job, reasons, fields, build::Rebuild::InPlaceFirst)?;
        let verified = synced_while(&copy, || verify::rebuilt(job, &copy, customers, fields));
        let why = match (verified, in_place) {
            (Ok(v), _) => return Ok((copy, v)),
            (Err(e), false) => return Err(e),
            (Err(e), true) => e,
        };
        // the copy mended in place did not pass: it is discarded (it was
        // kept as *.failed) and the whole database built anew, from the
        // locked original as before
        verify::discard_failed(&copy);
        *fields = before;
        fields.actions.push(Action {
            kind: "patch_table_pages",
            object: Some(job.table.name.clone()),
            detail: format!(
                "the copy mended in place failed its verification ({why:#}); the whole database is built anew instead"
            ),
        });
        let (copy, customers, _) = build::rebuild(job, reasons, fields, build::Rebuild::Whole)?;
        let verified = synced_while(&copy, || verify::rebuilt(job, &copy, customers, fields))?;
        return Ok((copy, verified));
    }
    let (copy, sql) = build::patch(job, fields)?;
    let verified = synced_while(&copy, || verify::patched(job, &copy, &sql, fields))?;
    Ok((copy, verified))
}

/// Runs `verify` while the copy is synced to disk on another thread: the
/// copy is complete (verifying it only reads it), so the wait for the disk
/// and the verification's work overlap. Both must succeed.
fn synced_while(copy: &Path, verify: impl FnOnce() -> Result<Report>) -> Result<Report> {
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        let sync = s.spawn(|| {
            std::fs::File::open(copy)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("{}: cannot sync", copy.display()))
        });
        let verified = verify();
        check::timing("repair: verified", t0);
        let synced = sync
            .join()
            .map_err(|_| anyhow::anyhow!("sync thread failed"))?;
        check::timing("repair: synced", t0);
        let verified = verified?;
        synced?;
        Ok(verified)
    })
}

/// Step 9: the report of a repair whose verified copy is in place.
fn report_swapped(
    db: &Path,
    before: Report,
    mut fields: RepairFields,
    verified: &Report,
) -> RepairOutcome {
    fields.actions.push(Action {
        kind: "swap",
        object: None,
        detail: format!("the verified copy was renamed over {}", db.display()),
    });
    fields.after = Some(Before::of(verified));
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
    outcome(before, fields, v, status)
}
