//! custodian: finds and repairs the damage in a point-of-sale customer
//! database that makes a terminal reject a real customer with "unsupported
//! customer ID". See ARCHITECTURE.md for the map.

pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod exit;
pub mod files;
pub mod fleet;
pub mod format;
pub mod messages;
pub mod metrics;
pub mod pager;
pub mod progress;
pub mod repair;
pub mod report;
pub mod schema;
pub mod sql_bytes;
pub mod time;

use anyhow::Result;

use cli::{Cli, Command};
use exit::ExitStatus;
use progress::Progress;

/// Runs one command. `Err` means it could not run (exit 2); the caller
/// prints the error.
pub fn run(cli: Cli) -> Result<ExitStatus> {
    match cli.command {
        Command::Check(args) => run_check(&args, cli.quiet),
        Command::Repair(args) => run_repair(&args, cli.quiet),
        Command::Diagnose(args) => {
            db::leaving_nothing(&args.db, || commands::diagnose::run(&args, cli.quiet))
        }
        Command::Snapshot(args) => commands::snapshot::run(&args, cli.quiet),
        Command::Preflight(args) => commands::preflight::run(&args, cli.quiet),
        Command::Summary(args) => commands::summary::run(&args, cli.quiet),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "custodian", &mut std::io::stdout());
            Ok(ExitStatus::Success)
        }
    }
}

pub fn not_built(command: &str, issue: u32) -> Result<ExitStatus> {
    anyhow::bail!("`{command}` is not built yet (tracked in issue #{issue}); nothing was done")
}

fn run_check(args: &cli::CheckArgs, quiet: bool) -> Result<ExitStatus> {
    if fleet::is_fleet(&args.dbs, &args.fleet) {
        return fleet::check::run(args, quiet);
    }
    let db = &args.dbs[0];
    let settings = config::Settings::from_opts(&args.opts)?;
    let json_to_stdout = args.opts.json.as_deref() == Some("-");
    let progress = Progress::new(quiet, json_to_stdout);
    let started = std::time::Instant::now();
    let checked = db::leaving_nothing(db, || check::check(db, &settings, progress));
    let outcome = match checked {
        Ok(o) => o,
        Err(e) => {
            // A cron job reading the reports (and the metrics) still learns
            // that the check failed.
            let r = report::failed_report("check", db, &e);
            emit_failed(&r, &args.opts);
            write_check_metrics(args, &r, ExitStatus::CouldNotRun, started);
            return Err(e);
        }
    };
    let report = &outcome.report;
    emit(report, &args.opts, quiet)?;
    if outcome.status == ExitStatus::CouldNotRun
        && let Some(f) = report
            .findings
            .iter()
            .find(|f| f.code == check::finding::Code::TableMissing)
    {
        messages::error(&format!("{}: {}", db.display(), f.message));
    }
    write_check_metrics(args, report, outcome.status, started);
    Ok(outcome.status)
}

/// `--metrics` of a one-database check. A metrics file that cannot be
/// written is an error on stderr, not a change of the check's exit code.
fn write_check_metrics(
    args: &cli::CheckArgs,
    report: &report::Report,
    status: ExitStatus,
    started: std::time::Instant,
) {
    if let Some(p) = &args.metrics {
        let mut m = metrics::Metrics::new("check");
        m.check(
            &report.database,
            report,
            status,
            started.elapsed(),
            std::time::SystemTime::now(),
        );
        if let Err(e) = m.write(p) {
            messages::error(&format!("{e:#}"));
        }
    }
}

/// Writes every report a command that could not run was asked for (JSON,
/// Markdown, HTML: verdict "failed" and why); errors here are secondary to
/// the one that stopped the command, which the caller reports.
pub fn emit_failed(r: &report::Report, opts: &cli::TableOpts) {
    if let Some(target) = &opts.json {
        let _ = report::json::write(r, target);
    }
    if let Some(path) = &opts.report {
        let _ = report::write_file(path, &report::markdown::render(r));
    }
    if let Some(path) = &opts.html {
        let _ = report::write_file(path, &report::html::render(r));
    }
}

fn run_repair(args: &cli::RepairArgs, quiet: bool) -> Result<ExitStatus> {
    let outcome = match repair::repair(args, quiet) {
        Ok(o) => o,
        Err(e) => {
            let r = report::failed_report("repair", &args.db, &e);
            emit_failed(&r, &args.opts);
            write_repair_metrics(args, &r, ExitStatus::CouldNotRun);
            return Err(e);
        }
    };
    emit(&outcome.report, &args.opts, quiet)?;
    write_repair_metrics(args, &outcome.report, outcome.status);
    Ok(outcome.status)
}

/// `--metrics` of a repair: its verdict and counts. A metrics file that
/// cannot be written is an error on stderr, not a change of the exit code.
fn write_repair_metrics(args: &cli::RepairArgs, report: &report::Report, status: ExitStatus) {
    let Some(p) = &args.metrics else { return };
    let db = args.db.display().to_string();
    let mut m = metrics::Metrics::new("repair");
    m.run(
        &db,
        report.verdict.as_str(),
        status,
        std::time::SystemTime::now(),
    );
    if let Some(r) = &report.repair {
        m.repair(
            &db,
            r.restored_customer_ids.len(),
            r.quarantined_customer_ids.len(),
            r.unrecoverable_customer_ids.len(),
        );
    }
    if let Err(e) = m.write(p) {
        messages::error(&format!("{e:#}"));
    }
}

/// Writes the reports a command was asked for (pub: the commands use it): JSON (file or stdout),
/// Markdown, or else the short summary on stdout.
pub fn emit(report: &report::Report, opts: &cli::TableOpts, quiet: bool) -> Result<()> {
    if let Some(target) = &opts.json {
        report::json::write(report, target)?;
    }
    if let Some(path) = &opts.report {
        report::write_file(path, &report::markdown::render(report))
            .map_err(|e| anyhow::anyhow!("{}: cannot write the report: {e}", path.display()))?;
    }
    if let Some(path) = &opts.html {
        report::write_file(path, &report::html::render(report)).map_err(|e| {
            anyhow::anyhow!("{}: cannot write the HTML report: {e}", path.display())
        })?;
    }
    if opts.json.is_none() && opts.report.is_none() && opts.html.is_none() && !quiet {
        report::print_summary(report);
    }
    Ok(())
}
