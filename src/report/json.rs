//! The machine report: deterministic JSON with a trailing newline.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::Report;

pub fn to_string(report: &Report) -> Result<String> {
    // names whose bytes are not UTF-8 shown with U+FFFD (sql_bytes::shown)
    let mut s = crate::sql_bytes::shown(&serde_json::to_string_pretty(report)?).into_owned();
    s.push('\n');
    Ok(s)
}

/// Writes the report to `target`: a file path, or `-` for stdout.
pub fn write(report: &Report, target: &str) -> Result<()> {
    let text = to_string(report)?;
    if target == "-" {
        let mut out = std::io::stdout().lock();
        // a closed pipe (`| head`) is not an error
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        return Ok(());
    }
    crate::report::write_file(Path::new(target), &text)
        .with_context(|| format!("{target}: cannot write the JSON report"))
}
