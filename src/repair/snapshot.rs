//! Snapshots: found, verified before they are trusted, newest first.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::check;
use crate::commands::snapshot as snapshot_cmd;
use crate::config::Settings;
use crate::format::header::MAGIC;
use crate::progress::Progress;
use crate::report::Verdict;

/// What became of one snapshot candidate.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotStatus {
    pub path: String,
    /// "good", "skipped"
    pub status: &'static str,
    pub reason: String,
}

/// A verified snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub path: PathBuf,
    pub modified: SystemTime,
}

fn is_sqlite_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| &head == MAGIC)
}

/// Every path given with `--snapshot` must be readable: a file that opens,
/// a folder that lists. A mistyped path is an error (exit 2), never a
/// silent repair (or diagnosis) without the snapshot meant.
pub fn readable(paths: &[PathBuf]) -> anyhow::Result<()> {
    for p in paths {
        let opened = match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p).map(drop),
            Ok(_) => std::fs::File::open(p).map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = opened {
            anyhow::bail!("{}: the --snapshot path cannot be read ({e})", p.display());
        }
    }
    Ok(())
}

/// Every candidate named by `--snapshot`: files as given, and the SQLite
/// files directly inside directories (not the hidden temporary file of an
/// unfinished `custodian snapshot`), newest first by the time recorded in
/// the snapshot's manifest, else by modification time.
pub fn candidates(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut files: Vec<(SystemTime, PathBuf)> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.is_file() && !snapshot_cmd::is_temporary(f) && is_sqlite_file(f))
                    .map(|f| (snapshot_time(&f).unwrap_or(SystemTime::UNIX_EPOCH), f))
                    .collect();
                files.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                out.extend(files.into_iter().map(|(_, f)| f));
            }
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// The time a snapshot was taken: its manifest's `created_at` when a
/// manifest is beside it, else the file's modification time.
pub fn snapshot_time(path: &Path) -> std::io::Result<SystemTime> {
    match snapshot_cmd::recorded_time(path) {
        Some(t) => Ok(t),
        None => std::fs::metadata(path).and_then(|m| m.modified()),
    }
}

/// Whether a snapshot's customer columns serve for the live table's shared
/// columns: the same, a subset (the live table gained columns, e.g. an
/// upgrade's `ADD COLUMN`) or a superset (it lost some). Used by
/// `preflight`; repair keeps the exact gate (it copies whole rows).
pub fn shares_columns(snap: &[String], live: &[String]) -> bool {
    let within = |a: &[String], b: &[String]| {
        a.iter()
            .all(|c| b.iter().any(|d| d.eq_ignore_ascii_case(c)))
    };
    within(snap, live) || within(live, snap)
}

/// Verifies every candidate with the same check as the live database:
/// only a clean snapshot whose customer table passes the column gate
/// `accept(snapshot columns, live columns)` is trusted (repair: the same
/// columns, or any when the live file has none to compare; preflight:
/// [`shares_columns`]). Returns the good ones, newest first, and a status
/// for each.
pub fn verify_with(
    cands: &[PathBuf],
    settings: &Settings,
    live_columns: &[String],
    accept: impl Fn(&[String], &[String]) -> bool,
) -> (Vec<Snapshot>, Vec<SnapshotStatus>) {
    let mut good = Vec::new();
    let mut statuses = Vec::new();
    for p in cands {
        let shown = p.display().to_string();
        let skip = |reason: String| SnapshotStatus {
            path: shown.clone(),
            status: "skipped",
            reason,
        };
        let modified = match snapshot_time(p) {
            Ok(m) => m,
            Err(e) => {
                statuses.push(skip(format!("cannot read: {e}")));
                continue;
            }
        };
        let outcome = match check::check(p, settings, Progress::hidden()) {
            Ok(o) => o,
            Err(e) => {
                statuses.push(skip(format!("{e:#}")));
                continue;
            }
        };
        if outcome.report.verdict != Verdict::Clean {
            let first = outcome
                .report
                .findings
                .iter()
                .find(|f| f.severity == check::finding::Severity::Error)
                .map(|f| f.message.clone())
                .unwrap_or_default();
            statuses.push(skip(format!("damaged itself: {first}")));
            continue;
        }
        match columns_of(p, &settings.table) {
            Ok(cols) if accept(&cols, live_columns) => {}
            Ok(cols) => {
                statuses.push(skip(format!(
                    "its {} table has other columns ({})",
                    settings.table,
                    cols.join(", ")
                )));
                continue;
            }
            Err(e) => {
                statuses.push(skip(e));
                continue;
            }
        }
        statuses.push(SnapshotStatus {
            path: shown,
            status: "good",
            reason: "clean, same customer table".into(),
        });
        good.push(Snapshot {
            path: p.clone(),
            modified,
        });
    }
    good.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.path.cmp(&b.path)));
    (good, statuses)
}

/// Column names of `table` in the database at `path`.
pub fn columns_of(path: &Path, table: &str) -> Result<Vec<String>, String> {
    let conn = crate::db::open_read_only(path).map_err(|e| format!("{e:#}"))?;
    // a truncated live file is readable only this way (read-only: no write)
    let _ = crate::schema::read_schema_tolerant(&conn);
    let cols: Vec<String> = crate::sql_bytes::query_map(
        &conn,
        &format!("PRAGMA table_info({})", crate::schema::quote_ident(table)),
        &[],
        |r| Ok(r.text(1)?.unwrap_or_default()),
    )
    .map_err(|e| e.to_string())?;
    if cols.is_empty() {
        return Err(format!("no table {table}"));
    }
    Ok(cols)
}
