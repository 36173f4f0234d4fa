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
pub mod format;
pub mod messages;
pub mod pager;
pub mod progress;
pub mod repair;
pub mod report;
pub mod schema;
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
        Command::Diagnose(args) => commands::diagnose::run(&args, cli.quiet),
        Command::Snapshot(args) => commands::snapshot::run(&args, cli.quiet),
        Command::Preflight(args) => commands::preflight::run(&args, cli.quiet),
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
    let settings = config::Settings::from_opts(&args.opts)?;
    let json_to_stdout = args.opts.json.as_deref() == Some("-");
    let progress = Progress::new(quiet, json_to_stdout);
    let outcome = match check::check(&args.db, &settings, progress) {
        Ok(o) => o,
        Err(e) => {
            // A cron job reading the JSON still learns that the check failed.
            if let Some(target) = &args.opts.json {
                let r = failed_report("check", &args.db, &e);
                let _ = report::json::write(&r, target);
            }
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
        messages::error(&format!("{}: {}", args.db.display(), f.message));
    }
    Ok(outcome.status)
}

fn run_repair(args: &cli::RepairArgs, quiet: bool) -> Result<ExitStatus> {
    let outcome = match repair::repair(args, quiet) {
        Ok(o) => o,
        Err(e) => {
            if let Some(target) = &args.opts.json {
                let r = failed_report("repair", &args.db, &e);
                let _ = report::json::write(&r, target);
            }
            return Err(e);
        }
    };
    emit(&outcome.report, &args.opts, quiet)?;
    Ok(outcome.status)
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

fn failed_report(command: &'static str, db: &std::path::Path, e: &anyhow::Error) -> report::Report {
    report::Report {
        schema_version: report::SCHEMA_VERSION,
        tool: report::Tool::this(),
        command,
        database: db.display().to_string(),
        verdict: report::Verdict::Failed,
        findings: vec![check::finding::Finding::error(
            check::finding::Code::CouldNotRun,
            format!("{e:#}"),
        )],
        affected_customer_ids: Vec::new(),
        coverage: report::Coverage::default(),
        page_map: None,
        repair: None,
        diagnoses: None,
    }
}
