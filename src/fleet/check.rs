//! `custodian check DB|DIR... [--list FILE|-] [--jobs N] [--out-dir DIR]`:
//! the same read-only check as for one database, on each database.

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::Result;

use super::inputs::{self, Inputs};
use super::{OutDir, emit_summary, jobs, run_each};
use crate::cli::CheckArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::report::fleet::{Entry, FleetSummary};
use crate::report::{self, Report};

/// One database's outcome: its summary entry and its metrics.
struct Checked {
    entry: Entry,
    metrics: Metrics,
}

pub fn run(args: &CheckArgs, quiet: bool) -> Result<ExitStatus> {
    let settings = Settings::from_opts(&args.opts)?;
    let inputs = Inputs::gather(&args.dbs, args.fleet.list.as_deref())?;
    inputs::require_some(&inputs)?;
    for f in &inputs.empty_folders {
        crate::messages::warn(quiet, &format!("{}: no SQLite database in it", f.display()));
    }
    let out = match &args.fleet.out_dir {
        Some(dir) => Some(OutDir::prepare(dir, &args.opts, &inputs.paths)?),
        None => None,
    };
    let progress = Progress::new(quiet, args.opts.json.as_deref() == Some("-"));
    // memory: a database's report lives only inside its worker
    let results = run_each(&inputs.paths, jobs(args.fleet.jobs), progress, |i, path| {
        check_one(path, &settings, |report, entry| {
            if let Some(o) = &out {
                o.write(i, report, entry);
            }
        })
    });
    let mut metrics = Metrics::new("check");
    let mut entries = Vec::with_capacity(results.len());
    for c in results {
        if let Some(e) = &c.entry.error {
            crate::messages::error(e);
        }
        metrics.absorb(c.metrics);
        entries.push(c.entry);
    }
    let summary = FleetSummary::new("check", entries, Vec::new());
    emit_summary(&summary, &args.opts, quiet)?;
    if let Some(p) = &args.metrics {
        metrics.write(p)?;
    }
    Ok(summary.status())
}

/// The check of one database, as a single run does it; a database that
/// cannot be checked gets the "failed" report a single run writes. `write`
/// writes its reports.
fn check_one(path: &Path, settings: &Settings, write: impl Fn(&Report, &mut Entry)) -> Checked {
    let started = Instant::now();
    let checked = crate::db::leaving_nothing(path, || {
        crate::check::check(path, settings, Progress::hidden())
    });
    let (report, status) = match checked {
        Ok(o) => (o.report, o.status),
        Err(e) => (
            report::failed_report("check", path, &e),
            ExitStatus::CouldNotRun,
        ),
    };
    let took = started.elapsed();
    let mut entry = Entry::from_report(&report, status);
    write(&report, &mut entry);
    let mut metrics = Metrics::new("check");
    metrics.check(&entry.path, &report, status, took, SystemTime::now());
    Checked { entry, metrics }
}
