//! Issue 11 item 6: what a new user tripped over.

use std::os::unix::fs::PermissionsExt;

use super::support::{fixture_copy, run};

#[test]
fn report_paths_may_be_devices_or_fifos() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let r = run(
        &[
            "check",
            "healthy.db",
            "--json",
            "/dev/null",
            "--report",
            "/dev/null",
            "--html",
            "/dev/null",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.stderr(), "");
    // a named pipe is written as a stream
    let fifo = dir.path().join("report.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let r = run(
        &["check", "healthy.db", "--json", "report.fifo"],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let text = reader.join().unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["verdict"], "clean");
}

#[test]
fn a_check_that_cannot_run_writes_every_report_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.db"), "not a database at all\n").unwrap();
    let r = run(
        &[
            "check", "notes.db", "--json", "r.json", "--report", "r.md", "--html", "r.html",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    let why = "notes.db: not a SQLite database (no \"SQLite format 3\" header)";
    assert_eq!(r.stderr(), format!("custodian: {why}\n"));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(j["verdict"], "failed");
    let md = std::fs::read_to_string(dir.path().join("r.md")).unwrap();
    assert!(md.starts_with("# custodian check: failed\n"), "{md}");
    assert!(md.contains(why), "{md}");
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(html.contains(">failed</span>"), "{html}");
    assert!(
        html.contains("notes.db: not a SQLite database (no &quot;SQLite format 3&quot; header)"),
        "{html}"
    );
}

#[test]
fn snapshot_creates_its_folder_and_explains_keep() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let r = run(
        &[
            "snapshot",
            "healthy.db",
            "--out",
            "backups/pos",
            "--keep",
            "-1",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().contains(
            "invalid value '-1' for '--keep <N>': --keep must be at least 1 (a number of \
             snapshots; the newest good one is never removed)"
        ),
        "{}",
        r.show()
    );
    assert!(!dir.path().join("backups").exists());
    let r = run(
        &[
            "snapshot",
            "healthy.db",
            "--out",
            "backups/pos",
            "--keep",
            "3",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let out = dir.path().join("backups/pos");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        2,
        "snapshot and manifest"
    );
}

#[test]
fn every_db_argument_is_described_in_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["check", "repair", "diagnose", "snapshot", "preflight"] {
        let r = run(&[cmd, "--help"], dir.path());
        let args = r
            .stdout()
            .split("Arguments:\n")
            .nth(1)
            .unwrap_or_default()
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .to_string();
        let first = args.lines().next().unwrap_or_default();
        assert!(
            first.trim_start().starts_with('<') || first.trim_start().starts_with('['),
            "{cmd}: {args}"
        );
        assert!(
            first.split_whitespace().count() > 1,
            "{cmd}: the database argument has no description: {first:?}"
        );
    }
}

#[test]
fn preflight_is_no_go_while_another_process_holds_a_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let s = run(&["snapshot", "healthy.db", "--out", "snaps"], dir.path());
    assert_eq!(s.code(), 0, "{}", s.show());
    for wal in [false, true] {
        let w = rusqlite::Connection::open(dir.path().join("healthy.db")).unwrap();
        if wal {
            let _: String = w
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .unwrap();
        }
        w.execute_batch("BEGIN IMMEDIATE; UPDATE customers SET tier = tier WHERE rowid = 1;")
            .unwrap();
        let r = run(
            &[
                "preflight",
                "healthy.db",
                "--snapshot",
                "snaps",
                "--metrics",
                "p.prom",
            ],
            dir.path(),
        );
        assert_eq!(r.code(), 1, "{}", r.show());
        let lock = if wal {
            "the WAL write lock in its -shm is held"
        } else {
            "its RESERVED lock is held"
        };
        assert_eq!(
            r.stdout().lines().last().unwrap(),
            format!(
                "no-go: another process holds a write transaction open on the database ({lock}); \
                 let it finish (e.g. close the POS) before the upgrade"
            )
        );
        let m = std::fs::read_to_string(dir.path().join("p.prom")).unwrap();
        assert!(
            m.contains(
                "custodian_verdict{command=\"preflight\",db=\"healthy.db\",verdict=\"no_go\"} 1\n"
            ),
            "{m}"
        );
        w.execute_batch("ROLLBACK").unwrap();
        drop(w);
    }
    // the transaction is over: go (the WAL is empty after the last close)
    let r = run(
        &["preflight", "healthy.db", "--snapshot", "snaps"],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        r.stdout().lines().last().unwrap(),
        "ok: no other process holds a write transaction open"
    );
}
