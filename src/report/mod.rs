//! Reports: the machine report (JSON, schema_version 1), the human report
//! (Markdown) and the short summary. Only this module writes stdout.

pub mod fleet;
pub mod html;
pub mod json;
pub mod markdown;

use std::io::Write;

use serde::Serialize;

use crate::check::finding::{Finding, Severity};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Clean,
    Corrupt,
    Repaired,
    RepairedWithLosses,
    Failed,
    Go,
    NoGo,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Corrupt => "corrupt",
            Verdict::Repaired => "repaired",
            Verdict::RepairedWithLosses => "repaired_with_losses",
            Verdict::Failed => "failed",
            Verdict::Go => "go",
            Verdict::NoGo => "no_go",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

impl Tool {
    pub fn this() -> Tool {
        Tool {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// What was looked at, for the reader to judge the verdict's coverage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    pub page_size: u32,
    pub pages: u32,
    /// Committed -wal frames read as part of the database.
    pub wal_frames: u32,
    pub table: Option<String>,
    pub id_column: Option<String>,
    /// Rows of the customer table that were read.
    pub customers_read: u64,
    /// Indexes of the customer table compared with it, entry for entry.
    pub indexes_compared: Vec<String>,
    /// Customers whose lookups were actually done through every index.
    pub customers_probed: u64,
    /// Whether every planned check ran to the end.
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    pub command: &'static str,
    pub database: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub affected_customer_ids: Vec<String>,
    pub coverage: Coverage,
    /// Every page: owner and health, as runs `[first, last, owner index, state]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_map: Option<crate::check::structure::PageMap>,
    /// The repair-only fields (actions, backup_path, …), at the top level.
    #[serde(flatten)]
    pub repair: Option<crate::repair::RepairFields>,
    /// diagnose only: one answer per ID asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnoses: Option<Vec<crate::commands::diagnose::Diagnosis>>,
}

impl Report {
    pub fn count(&self, sev: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == sev).count()
    }
}

/// 2020 → "2,020".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The report of a command that could not run (verdict "failed", exit 2):
/// one `could_not_run` finding with the error and its causes.
pub fn failed_report(command: &'static str, db: &std::path::Path, e: &anyhow::Error) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool::this(),
        command,
        database: db.display().to_string(),
        verdict: Verdict::Failed,
        findings: vec![Finding::error(
            crate::check::finding::Code::CouldNotRun,
            format!("{e:#}"),
        )],
        affected_customer_ids: Vec::new(),
        coverage: Coverage::default(),
        page_map: None,
        repair: None,
        diagnoses: None,
    }
}

/// Writes the short human summary to stdout. A closed pipe is not an error.
pub fn print_summary(report: &Report) {
    let text = markdown::summary(report);
    let text = crate::sql_bytes::shown(&text);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Masks a value that may be personal data: a card number keeps its last
/// four digits; anything else is replaced by a short digest, so two reports
/// can be correlated without showing the value.
pub fn mask(column: &str, v: &rusqlite::types::Value) -> serde_json::Value {
    use rusqlite::types::Value;
    let text = match v {
        Value::Null => return serde_json::Value::Null,
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("{b:02x?}"),
    };
    let lc = column.to_ascii_lowercase();
    if lc.contains("card") || lc.contains("pan") {
        let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
        let last4: String = digits[digits.len().saturating_sub(4)..].iter().collect();
        return serde_json::Value::String(format!("****{last4}"));
    }
    let h = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
    serde_json::Value::String(format!("masked:{:08x}", h >> 32))
}

/// Renders a customer ID value for reports (IDs are shown in full).
pub fn id_text(v: &rusqlite::types::Value) -> Option<String> {
    use rusqlite::types::Value;
    match v {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(f.to_string()),
        Value::Text(t) => Some(t.clone()),
        Value::Blob(b) => Some(format!(
            "x'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
    }
}

/// Writes text to stdout (names whose bytes are not UTF-8 shown with
/// U+FFFD, `sql_bytes::shown`). A closed pipe is not an error.
pub fn print(text: &str) {
    let text = crate::sql_bytes::shown(text);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes a report file: created with mode 0600 (it names customers), never
/// through a symbolic link. A path that is a character device or a FIFO
/// (`/dev/null`, `/dev/stdout`, a named pipe) is written as a stream: the
/// mode and no-symlink rules are for the regular files custodian creates.
pub fn write_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // names whose bytes are not UTF-8 shown with U+FFFD (sql_bytes::shown)
    let text: &str = &crate::sql_bytes::shown(text);
    if let Ok(m) = std::fs::metadata(path)
        && (m.file_type().is_char_device() || m.file_type().is_fifo())
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        return f.write_all(text.as_bytes()).and_then(|_| f.flush());
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::Value;

    #[test]
    fn card_numbers_keep_last_four_and_the_rest_is_digested() {
        assert_eq!(
            mask("card_number", &Value::Text("4000123412341234".into())),
            serde_json::json!("****1234")
        );
        let m = mask("email", &Value::Text("ann@example.com".into()));
        let s = m.as_str().unwrap();
        assert!(s.starts_with("masked:") && !s.contains("ann"), "{s}");
        assert_eq!(mask("phone", &Value::Null), serde_json::Value::Null);
    }
}
