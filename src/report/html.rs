//! The HTML report (being built, issue #5): one self-contained file.

use super::Report;

pub fn render(report: &Report) -> String {
    format!(
        "<!doctype html><meta charset=utf-8><title>custodian</title><p>{}: {}</p>\n",
        html_escape(&report.database),
        report.verdict.as_str()
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
