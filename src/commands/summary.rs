//! `custodian summary REPORT.json|DIR... [--json FILE] [--report FILE]
//! [--html FILE]`: headquarters' view. Merges JSON reports gathered from
//! many machines (rsync, object storage, a mounted share) into one fleet
//! report: Markdown, HTML (stores worst first, each linking to its own HTML
//! report) and JSON, in the format of a fleet run's summary.
//!
//! Inputs: files, and folders searched to any depth for `*.json` files.
//! Each is a one-database report (`check`, `repair`, `snapshot`,
//! `preflight`, `diagnose`) or a fleet summary (its entries are taken in).
//! A file whose `schema_version` is not one this custodian knows (a newer
//! or older custodian's), or that is not a custodian report at all (a
//! snapshot manifest, a baseline, something else), is named, skipped and
//! counted. A one-database report carries no exit code: it is the one its
//! verdict means (README's exit codes), and a store's HTML and Markdown
//! reports are the files of the same name beside its JSON report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cli::SummaryArgs;
use crate::exit::ExitStatus;
use crate::report::fleet::{Entry, FleetSummary, KIND, SeverityCounts, Skipped};

/// The report schema versions this custodian reads.
pub const KNOWN_SCHEMA_VERSIONS: &[u64] = &[1];

pub fn run(args: &SummaryArgs, quiet: bool) -> Result<ExitStatus> {
    let files = report_files(&args.reports)?;
    if files.is_empty() {
        bail!("no JSON report found in {}", shown(&args.reports));
    }
    // a fleet summary's entry whose own report is read too counts once
    let reading: std::collections::BTreeSet<PathBuf> =
        files.iter().filter_map(|f| f.canonicalize().ok()).collect();
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for f in &files {
        match read(f, &reading) {
            Ok(mut e) => entries.append(&mut e),
            Err(reason) => skipped.push(Skipped {
                path: f.display().to_string(),
                reason,
            }),
        }
    }
    for s in &skipped {
        crate::messages::warn(quiet, &format!("{}: skipped: {}", s.path, s.reason));
    }
    let mut summary = FleetSummary::new("summary", entries, skipped);
    summary.name_sources = true;
    crate::fleet::emit_summary(&summary, &args.output(), quiet)?;
    if summary.databases.is_empty() {
        bail!(
            "none of the {} files is a report this custodian reads ({} skipped)",
            files.len(),
            summary.skipped.len()
        );
    }
    Ok(summary.status())
}

fn shown(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files named and the `*.json` files under the folders named, each
/// folder's sorted by path; hidden files and folders are skipped.
fn report_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("{}: cannot open", p.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for e in rd {
        let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        // a symbolic link to a folder is not followed (no loops)
        let t = e
            .file_type()
            .with_context(|| format!("{}: cannot read", p.display()))?;
        if t.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// The entries of one file, or why it is skipped.
fn read(
    file: &Path,
    reading: &std::collections::BTreeSet<PathBuf>,
) -> std::result::Result<Vec<Entry>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(version) = v.get("schema_version").and_then(Value::as_u64) else {
        return Err("not a custodian report (no schema_version)".into());
    };
    if !KNOWN_SCHEMA_VERSIONS.contains(&version) {
        return Err(format!(
            "schema_version {version} is not one this custodian reads ({}); a newer custodian \
             wrote it",
            KNOWN_SCHEMA_VERSIONS
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if v.get("kind").and_then(Value::as_str) == Some(KIND) {
        return fleet_entries(file, &v, reading);
    }
    one_entry(file, &v).map(|e| vec![e])
}

/// The entries of a fleet summary; its report paths are taken as written,
/// else relative to the summary's folder, else by file name beside it. An
/// entry whose JSON report is among the files read is left to that file.
fn fleet_entries(
    file: &Path,
    v: &Value,
    reading: &std::collections::BTreeSet<PathBuf>,
) -> std::result::Result<Vec<Entry>, String> {
    let dbs = v
        .get("databases")
        .cloned()
        .ok_or("a fleet summary without databases")?;
    let mut entries: Vec<Entry> =
        serde_json::from_value(dbs).map_err(|e| format!("a damaged fleet summary: {e}"))?;
    let dir = file.parent().unwrap_or(Path::new(""));
    for e in &mut entries {
        for slot in [&mut e.report, &mut e.markdown_report, &mut e.html_report] {
            *slot = slot.take().and_then(|r| locate(dir, &r));
        }
    }
    entries.retain(|e| {
        e.report
            .as_deref()
            .and_then(|r| Path::new(r).canonicalize().ok())
            .is_none_or(|r| !reading.contains(&r))
    });
    Ok(entries)
}

/// A report file a fleet summary names, wherever the gathering put it: as
/// written, else under the summary's folder by the longest tail of the
/// written path that exists there (`a/b/reports/x.json` → `DIR/reports/x.json`).
fn locate(dir: &Path, written: &str) -> Option<String> {
    let p = Path::new(written);
    if p.is_file() {
        return Some(written.to_string());
    }
    let parts: Vec<&std::ffi::OsStr> = p
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect();
    (0..parts.len())
        .map(|skip| {
            parts[skip..]
                .iter()
                .fold(dir.to_path_buf(), |d, s| d.join(s))
        })
        .find(|c| c.is_file())
        .map(|c| c.display().to_string())
}

/// The entry of a one-database report.
fn one_entry(file: &Path, v: &Value) -> std::result::Result<Entry, String> {
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| format!("not a custodian report (no {k})"))
    };
    let command = field("command")?;
    let database = field("database")?;
    let verdict = field("verdict")?;
    let affected = v
        .get("affected_customer_ids")
        .and_then(Value::as_array)
        .ok_or("not a custodian report (no affected_customer_ids)")?
        .len() as u64;
    let findings = v
        .get("findings")
        .and_then(Value::as_array)
        .ok_or("not a custodian report (no findings)")?;
    let mut counts = SeverityCounts::default();
    for f in findings {
        match f.get("severity").and_then(Value::as_str) {
            Some("error") => counts.error += 1,
            Some("warning") => counts.warning += 1,
            Some("info") => counts.info += 1,
            _ => {}
        }
    }
    let exit_code = exit_of(&command, &verdict);
    let error = (exit_code == ExitStatus::CouldNotRun.code()).then(|| {
        findings
            .iter()
            .find(|f| f.get("code").and_then(Value::as_str) == Some("could_not_run"))
            .or_else(|| {
                findings
                    .iter()
                    .find(|f| f.get("severity").and_then(Value::as_str) == Some("error"))
            })
            .and_then(|f| f.get("message").and_then(Value::as_str))
            .unwrap_or("could not run")
            .to_string()
    });
    let beside = |ext: &str| {
        let p = file.with_extension(ext);
        p.is_file().then(|| p.display().to_string())
    };
    Ok(Entry {
        path: database,
        command,
        verdict,
        exit_code,
        affected_customers: affected,
        findings: counts,
        error,
        report: Some(file.display().to_string()),
        markdown_report: beside("md"),
        html_report: beside("html"),
    })
}

/// The exit code a verdict means (README's table).
fn exit_of(command: &str, verdict: &str) -> i32 {
    let status = match (command, verdict) {
        (_, "clean" | "go" | "repaired") => ExitStatus::Success,
        (_, "corrupt" | "no_go" | "repaired_with_losses") => ExitStatus::Problems,
        _ => ExitStatus::CouldNotRun,
    };
    status.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_mean_their_exit_codes() {
        assert_eq!(exit_of("check", "clean"), 0);
        assert_eq!(exit_of("check", "corrupt"), 1);
        assert_eq!(exit_of("check", "failed"), 2);
        assert_eq!(exit_of("repair", "repaired_with_losses"), 1);
        assert_eq!(exit_of("preflight", "go"), 0);
        assert_eq!(exit_of("preflight", "no_go"), 1);
        assert_eq!(exit_of("check", "something_new"), 2);
    }
}
