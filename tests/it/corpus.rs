//! SQLite's own damaged images: no panic, no hang, and never exit 0 where
//! the stock CLI's integrity_check did not print `ok`, and the database's
//! bytes unchanged. Each file is checked as a copy in a temporary folder, so
//! that nothing SQLite creates beside a database (a WAL-mode image gets a
//! -wal and -shm when opened) lands in the repository's corpus.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::support::{bin, corpus_dir, corpus_manifest, wait_or_kill};

const PER_FILE: Duration = Duration::from_secs(20);

#[test]
fn corpus_never_panics_hangs_or_calls_damage_healthy() {
    let dir = corpus_dir();
    let entries = corpus_manifest(&dir);
    assert!(entries.len() >= 167, "{} corpus files", entries.len());
    let out_dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for e in &entries {
        let file = e["file"].as_str().unwrap();
        let cli_ok = e["sqlite_cli"]["ok"].as_bool().unwrap();
        let original = std::fs::read(dir.join(file)).unwrap();
        let path = out_dir.path().join(file);
        std::fs::write(&path, &original).unwrap();
        let mut child = Command::new(bin())
            .args(["check", path.to_str().unwrap(), "--json", "-"])
            .current_dir(out_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_or_kill(&mut child, PER_FILE);
        let out = child.wait_with_output().unwrap();
        if std::fs::read(&path).unwrap() != original {
            failures.push(format!("{file}: check changed the database's bytes"));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let Some(status) = status else {
            failures.push(format!("{file}: hung (> {PER_FILE:?})"));
            continue;
        };
        match status.code() {
            None => failures.push(format!("{file}: killed by a signal: {status:?}")),
            Some(101) => failures.push(format!("{file}: panicked: {stderr}")),
            Some(0) if !cli_ok => {
                failures.push(format!("{file}: exit 0 but the stock CLI found damage"))
            }
            Some(c) if c > 2 => failures.push(format!("{file}: exit {c}")),
            Some(_) => {}
        }
        if stderr.contains("panicked") {
            failures.push(format!("{file}: panic message: {stderr}"));
        }
        if status.code() == Some(2) && stderr.lines().count() != 1 {
            failures.push(format!(
                "{file}: exit 2 needs one line on stderr, got: {stderr}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} files failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
