//! The one place that writes warnings and errors to stderr, with the tool's
//! name in front (a name whose bytes are not UTF-8 shown with U+FFFD:
//! `sql_bytes::shown`).

use std::io::Write;

/// `custodian: warning: …` on stderr (unless quiet).
pub fn warn(quiet: bool, msg: &str) {
    if !quiet {
        let msg = crate::sql_bytes::shown(msg);
        let _ = writeln!(std::io::stderr(), "custodian: warning: {msg}");
    }
}

/// `custodian: …` on stderr, always (errors are never silenced).
pub fn error(msg: &str) {
    let msg = crate::sql_bytes::shown(msg);
    let _ = writeln!(std::io::stderr(), "custodian: {msg}");
}

/// `custodian: …` on stderr: what a long-running command is doing (callers
/// skip it under `--quiet`).
pub fn note(msg: &str) {
    let msg = crate::sql_bytes::shown(msg);
    let _ = writeln!(std::io::stderr(), "custodian: {msg}");
}
