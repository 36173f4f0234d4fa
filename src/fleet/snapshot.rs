//! `custodian snapshot DB|DIR... --out DIR`: a verified snapshot of each
//! database, as for one, into the one snapshot folder.

use anyhow::{Result, bail};

use super::inputs::{self, Inputs};
use super::{OutDir, emit_summary, jobs, run_each};
use crate::cli::SnapshotArgs;
use crate::commands::snapshot::{prepare_out, refuse_keep, take};
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::report::fleet::{Entry, FleetSummary};
use crate::report::{self};

pub fn run(args: &SnapshotArgs, quiet: bool) -> Result<ExitStatus> {
    let settings = Settings::from_opts(&args.opts)?;
    let inputs = Inputs::gather(&args.dbs, args.fleet.list.as_deref())?;
    inputs::require_some(&inputs)?;
    refuse_shared_names(&inputs.paths)?;
    refuse_keep(args.keep)?;
    prepare_out(&args.out)?;
    let out = match &args.fleet.out_dir {
        Some(dir) => Some(OutDir::prepare(dir, &args.opts, &inputs.paths)?),
        None => None,
    };
    let progress = Progress::new(quiet, args.opts.json.as_deref() == Some("-"));
    let results = run_each(&inputs.paths, jobs(args.fleet.jobs), progress, |i, db| {
        let (report, status, metrics) = match take(db, &args.out, args.keep, &settings) {
            Ok(t) => {
                let m = t.metrics(db, &args.out);
                (t.report, t.status, m)
            }
            Err(e) => {
                let mut m = Metrics::new("snapshot");
                let name = db.display().to_string();
                m.run(
                    &name,
                    "failed",
                    ExitStatus::CouldNotRun,
                    std::time::SystemTime::now(),
                );
                (
                    report::failed_report("snapshot", db, &e),
                    ExitStatus::CouldNotRun,
                    m,
                )
            }
        };
        let mut entry = Entry::from_report(&report, status);
        if let Some(o) = &out {
            o.write(i, &report, &mut entry);
        }
        (entry, metrics)
    });
    let mut metrics = Metrics::new("snapshot");
    let mut entries = Vec::with_capacity(results.len());
    for (entry, m) in results {
        if let Some(e) = &entry.error {
            crate::messages::error(e);
        }
        metrics.absorb(m);
        entries.push(entry);
    }
    let summary = FleetSummary::new("snapshot", entries, Vec::new());
    emit_summary(&summary, &args.opts, quiet)?;
    if let Some(p) = &args.metrics {
        metrics.write(p)?;
    }
    Ok(summary.status())
}

/// Snapshots are named and pruned by the database's file name: two
/// databases of one name would share them. Refused before anything is
/// written.
fn refuse_shared_names(paths: &[std::path::PathBuf]) -> Result<()> {
    let mut seen = std::collections::BTreeMap::new();
    for p in paths {
        let name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        if let Some(other) = seen.insert(name, p) {
            bail!(
                "{} and {}: two databases named {:?} would share their snapshots' names and \
                 pruning in one --out folder; run them with separate --out folders",
                other.display(),
                p.display(),
                p.file_name().unwrap_or_default()
            );
        }
    }
    Ok(())
}
