//! The report of many databases: one entry per database, worst first, and
//! the totals. Written by a command run over many databases (`check DIR`,
//! `snapshot DIR`) and by `custodian summary` from gathered JSON reports, as
//! JSON, Markdown, HTML, and the short lines on stdout.
//!
//! Worst first: databases with problems (exit 1, or 3 for a repair that
//! stopped), then those that could not be checked (exit 2), then the sound
//! ones; within each, the most customers rejected first, then by path.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::html::{CSS, esc};
use super::{Report, Tool, thousands};
use crate::check::finding::{Code, Severity};
use crate::exit::ExitStatus;

/// The fleet table's own style, beside the one-database report's.
const FLEET_CSS: &str = ".verdict.small{font-size:13px;padding:1px 8px;border-radius:4px}\
#stores td{white-space:nowrap}#stores td:first-child{white-space:normal}";

/// `kind` of a fleet summary, so that `summary` can tell it from a
/// one-database report.
pub const KIND: &str = "fleet_summary";

/// Findings of one database by severity.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeverityCounts {
    pub error: u64,
    pub warning: u64,
    pub info: u64,
}

/// One database of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The database, as given (or as its report names it).
    pub path: String,
    /// The command whose verdict this is.
    #[serde(default)]
    pub command: String,
    pub verdict: String,
    pub exit_code: i32,
    /// Customers the POS rejects (`affected_customer_ids` of its report).
    pub affected_customers: u64,
    #[serde(default)]
    pub findings: SeverityCounts,
    /// Why the command could not run on it (exit 2), else null.
    pub error: Option<String>,
    /// Its JSON report, where one was written or read.
    pub report: Option<String>,
    #[serde(default)]
    pub markdown_report: Option<String>,
    #[serde(default)]
    pub html_report: Option<String>,
}

/// A file `summary` could not use, named with the reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub databases: u64,
    /// Exit 1 (or 3): damage found, no-go, repaired with losses, stopped.
    pub problems: u64,
    /// Exit 2: busy, unreadable, not a database.
    pub could_not_run: u64,
    /// Exit 0.
    pub healthy: u64,
    /// Sum of the databases' rejected customers.
    pub affected_customers: u64,
    /// `summary` only: files named, skipped and counted.
    pub skipped_reports: u64,
}

/// The fleet report (schema_version 1).
#[derive(Debug, Clone, Serialize)]
pub struct FleetSummary {
    pub schema_version: u32,
    pub kind: &'static str,
    pub tool: Tool,
    pub command: String,
    /// The worst entry's verdict ("clean" for an empty fleet).
    pub verdict: String,
    pub exit_code: i32,
    pub totals: Totals,
    pub databases: Vec<Entry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// `summary`: the stdout lines name each entry's report file too (the
    /// same database path may come from many machines).
    #[serde(skip)]
    pub name_sources: bool,
}

/// What an exit code means for the fleet's own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Problems,
    CouldNotRun,
    Healthy,
}

fn class(exit_code: i32) -> Class {
    match exit_code {
        0 => Class::Healthy,
        1 | 3 => Class::Problems,
        _ => Class::CouldNotRun,
    }
}

/// Verdicts from the worst to the best, within one class.
fn verdict_rank(v: &str) -> usize {
    const ORDER: [&str; 7] = [
        "corrupt",
        "no_go",
        "repaired_with_losses",
        "failed",
        "repaired",
        "clean",
        "go",
    ];
    ORDER.iter().position(|o| *o == v).unwrap_or(ORDER.len())
}

impl Entry {
    /// The entry of one database's report and exit status.
    pub fn from_report(report: &Report, status: ExitStatus) -> Entry {
        let error = (status == ExitStatus::CouldNotRun).then(|| {
            report
                .findings
                .iter()
                .find(|f| f.code == Code::CouldNotRun)
                .or_else(|| {
                    report
                        .findings
                        .iter()
                        .find(|f| f.severity == Severity::Error)
                })
                .map(|f| f.message.clone())
                .unwrap_or_else(|| "could not run".to_string())
        });
        Entry {
            path: report.database.clone(),
            command: report.command.to_string(),
            verdict: report.verdict.as_str().to_string(),
            exit_code: status.code(),
            affected_customers: report.affected_customer_ids.len() as u64,
            findings: SeverityCounts {
                error: report.count(Severity::Error) as u64,
                warning: report.count(Severity::Warning) as u64,
                info: report.count(Severity::Info) as u64,
            },
            error,
            report: None,
            markdown_report: None,
            html_report: None,
        }
    }

    fn sort_key(&self) -> (Class, usize, std::cmp::Reverse<u64>, &str) {
        (
            class(self.exit_code),
            verdict_rank(&self.verdict),
            std::cmp::Reverse(self.affected_customers),
            &self.path,
        )
    }

    /// The error without the path in front (the line names the path).
    fn short_error(&self) -> Option<&str> {
        let e = self.error.as_deref()?;
        Some(
            e.strip_prefix(self.path.as_str())
                .and_then(|r| r.strip_prefix(": "))
                .unwrap_or(e),
        )
    }

    /// "16 customers would be rejected by the POS", or why it could not run.
    fn outcome_text(&self) -> String {
        if let Some(e) = self.short_error() {
            return e.to_string();
        }
        let n = self.affected_customers;
        let mut s = format!(
            "{} customer{} would be rejected by the POS",
            thousands(n),
            if n == 1 { "" } else { "s" }
        );
        if self.verdict == "clean" && self.exit_code == 1 {
            s.push_str(" (warnings count as problems under --strict)");
        }
        s
    }
}

impl FleetSummary {
    /// Sorts the entries worst first and adds them up.
    pub fn new(command: &str, mut databases: Vec<Entry>, skipped: Vec<Skipped>) -> FleetSummary {
        databases.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let mut totals = Totals {
            databases: databases.len() as u64,
            skipped_reports: skipped.len() as u64,
            ..Totals::default()
        };
        for e in &databases {
            match class(e.exit_code) {
                Class::Problems => totals.problems += 1,
                Class::CouldNotRun => totals.could_not_run += 1,
                Class::Healthy => totals.healthy += 1,
            }
            totals.affected_customers += e.affected_customers;
        }
        let status = if totals.problems > 0 {
            ExitStatus::Problems
        } else if totals.could_not_run > 0 || databases.is_empty() {
            ExitStatus::CouldNotRun
        } else {
            ExitStatus::Success
        };
        FleetSummary {
            schema_version: super::SCHEMA_VERSION,
            kind: KIND,
            tool: Tool::this(),
            command: command.to_string(),
            verdict: databases
                .first()
                .map(|e| e.verdict.clone())
                .unwrap_or_else(|| "failed".to_string()),
            exit_code: status.code(),
            totals,
            databases,
            skipped,
            name_sources: false,
        }
    }

    /// Exit 1 if any database has problems, else 2 if any could not be
    /// checked (or there was none), else 0.
    pub fn status(&self) -> ExitStatus {
        match self.exit_code {
            0 => ExitStatus::Success,
            1 => ExitStatus::Problems,
            _ => ExitStatus::CouldNotRun,
        }
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        let mut s = crate::sql_bytes::shown(&serde_json::to_string_pretty(self)?).into_owned();
        s.push('\n');
        Ok(s)
    }

    /// "40 databases: 9 with problems, 2 could not be checked, 29 healthy;
    /// 1,234 customers would be rejected by the POS".
    pub fn totals_line(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "{} database{}: {} with problems, {} could not be checked, {} healthy; {} customer{} \
             would be rejected by the POS",
            thousands(t.databases),
            if t.databases == 1 { "" } else { "s" },
            thousands(t.problems),
            thousands(t.could_not_run),
            thousands(t.healthy),
            thousands(t.affected_customers),
            if t.affected_customers == 1 { "" } else { "s" },
        );
        if t.skipped_reports > 0 {
            let _ = write!(
                s,
                "; {} report file{} skipped",
                thousands(t.skipped_reports),
                if t.skipped_reports == 1 { "" } else { "s" }
            );
        }
        s
    }

    /// The stdout lines: one per database, worst first, then the totals.
    pub fn lines(&self) -> String {
        let mut s = String::new();
        for e in &self.databases {
            let source = match (&e.report, self.name_sources) {
                (Some(r), true) => format!(" ({r})"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "{}{source}: {} — {}",
                e.path,
                e.verdict,
                e.outcome_text()
            );
        }
        for k in &self.skipped {
            let _ = writeln!(s, "{}: skipped — {}", k.path, k.reason);
        }
        let _ = writeln!(s, "{}", self.totals_line());
        s
    }

    /// The Markdown fleet report: the totals, then a table of databases
    /// worst first, then the skipped files.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# custodian {}: {}\n", self.command, self.verdict);
        let _ = writeln!(s, "**{}.**\n", self.totals_line());
        let _ = writeln!(
            s,
            "| database | verdict | exit | customers rejected | errors | warnings | report |\n\
             | --- | --- | ---: | ---: | ---: | ---: | --- |"
        );
        for e in &self.databases {
            let report = e
                .html_report
                .as_deref()
                .or(e.markdown_report.as_deref())
                .or(e.report.as_deref())
                .map(|r| format!("`{}`", md_cell(r)))
                .unwrap_or_else(|| "—".into());
            let verdict = match e.short_error() {
                Some(err) => format!("{}: {}", e.verdict, md_cell(err)),
                None => e.verdict.clone(),
            };
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                md_cell(&e.path),
                verdict,
                e.exit_code,
                thousands(e.affected_customers),
                e.findings.error,
                e.findings.warning,
                report
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "\n## Skipped files\n");
            for k in &self.skipped {
                let _ = writeln!(s, "- `{}`: {}", md_cell(&k.path), md_cell(&k.reason));
            }
        }
        let _ = writeln!(
            s,
            "\nWritten by {} {}. Customers are counted, never named, in this report.",
            self.tool.name, self.tool.version
        );
        s
    }

    /// The HTML fleet report: self-contained (inline CSS, no script), the
    /// totals first, then one row per database worst first, each linking to
    /// its own HTML report where `href` gives one.
    pub fn html(&self, href: &dyn Fn(&Entry) -> Option<String>) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>custodian {}: {}</title><style>{CSS}{FLEET_CSS}</style></head><body>\n",
            esc(&self.command),
            esc(&self.verdict)
        );
        let _ = writeln!(
            s,
            "<h1>custodian {} <span class=\"verdict {}\" id=\"verdict\">{}</span></h1>",
            esc(&self.command),
            verdict_class(&self.verdict),
            esc(&self.verdict)
        );
        let t = &self.totals;
        let _ = writeln!(
            s,
            "<p class=\"big\">{} customer{} would be rejected by the POS.</p>",
            thousands(t.affected_customers),
            if t.affected_customers == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "<p class=\"counts\" id=\"totals\"><span>{} databases</span>\
             <span class=\"error\">{} with problems</span>\
             <span class=\"warning\">{} could not be checked</span>\
             <span>{} healthy</span>{}</p>",
            thousands(t.databases),
            thousands(t.problems),
            thousands(t.could_not_run),
            thousands(t.healthy),
            if t.skipped_reports > 0 {
                format!(
                    "<span class=\"info\">{} report files skipped</span>",
                    thousands(t.skipped_reports)
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "<h2>Databases, worst first</h2>");
        let _ = writeln!(
            s,
            "<table id=\"stores\"><tr><th>database</th><th>verdict</th><th>exit</th>\
             <th>customers rejected</th><th>errors</th><th>warnings</th><th>report</th></tr>"
        );
        for e in &self.databases {
            let link = match href(e) {
                Some(h) => format!("<a href=\"{}\">report</a>", esc(&h)),
                None => "—".to_string(),
            };
            let err = e
                .short_error()
                .map(|x| format!("<br><span class=\"meta\">{}</span>", esc(x)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td><span class=\"verdict {} small\">{}</span>{err}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{link}</td></tr>",
                esc(&e.path),
                verdict_class(&e.verdict),
                esc(&e.verdict),
                e.exit_code,
                thousands(e.affected_customers),
                e.findings.error,
                e.findings.warning,
            );
        }
        s.push_str("</table>\n");
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "<h2>Skipped files ({})</h2>\n<ul>", self.skipped.len());
            for k in &self.skipped {
                let _ = writeln!(
                    s,
                    "<li><code>{}</code>: {}</li>",
                    esc(&k.path),
                    esc(&k.reason)
                );
            }
            s.push_str("</ul>\n");
        }
        let _ = writeln!(
            s,
            "<p class=\"meta\">Written by {} {}. Customers are counted, never named, in this \
             report.</p></body></html>",
            esc(self.tool.name),
            esc(self.tool.version)
        );
        s
    }
}

fn verdict_class(v: &str) -> &'static str {
    match v {
        "clean" | "go" => "v-green",
        "corrupt" | "no_go" => "v-red",
        "repaired" => "v-blue",
        "repaired_with_losses" => "v-amber",
        _ => "v-grey",
    }
}

/// Text safe inside a Markdown table cell and code span.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('`', "'").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, verdict: &str, exit_code: i32, affected: u64) -> Entry {
        Entry {
            path: path.into(),
            command: "check".into(),
            verdict: verdict.into(),
            exit_code,
            affected_customers: affected,
            findings: SeverityCounts::default(),
            error: (exit_code == 2).then(|| format!("{path}: database is busy")),
            report: None,
            markdown_report: None,
            html_report: None,
        }
    }

    #[test]
    fn worst_first_and_the_exit_rule() {
        let f = FleetSummary::new(
            "check",
            vec![
                entry("a.db", "clean", 0, 0),
                entry("b.db", "failed", 2, 0),
                entry("c.db", "corrupt", 1, 3),
                entry("d.db", "corrupt", 1, 16),
            ],
            vec![],
        );
        let order: Vec<&str> = f.databases.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(order, ["d.db", "c.db", "b.db", "a.db"]);
        assert_eq!((f.exit_code, f.verdict.as_str()), (1, "corrupt"));
        assert_eq!(
            f.lines(),
            "d.db: corrupt — 16 customers would be rejected by the POS\n\
             c.db: corrupt — 3 customers would be rejected by the POS\n\
             b.db: failed — database is busy\n\
             a.db: clean — 0 customers would be rejected by the POS\n\
             4 databases: 2 with problems, 1 could not be checked, 1 healthy; 19 customers \
             would be rejected by the POS\n"
        );
        let f = FleetSummary::new(
            "check",
            vec![entry("a.db", "clean", 0, 0), entry("b.db", "failed", 2, 0)],
            vec![],
        );
        assert_eq!(f.status(), ExitStatus::CouldNotRun);
        let f = FleetSummary::new("check", vec![entry("a.db", "clean", 0, 0)], vec![]);
        assert_eq!(f.status(), ExitStatus::Success);
        assert_eq!(
            FleetSummary::new("summary", vec![], vec![]).status(),
            ExitStatus::CouldNotRun
        );
    }

    #[test]
    fn html_escapes_and_links() {
        let mut e = entry("<x>.db", "corrupt", 1, 2);
        e.html_report = Some("r/<x>.db.html".into());
        let f = FleetSummary::new("check", vec![e], vec![]);
        let h = f.html(&|e| e.html_report.clone());
        assert!(h.contains("<code>&lt;x&gt;.db</code>"), "{h}");
        assert!(
            h.contains("<a href=\"r/&lt;x&gt;.db.html\">report</a>"),
            "{h}"
        );
    }
}
