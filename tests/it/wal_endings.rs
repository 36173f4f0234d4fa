//! Issue 8, "no run leaves -wal/-shm or work files behind": every way a
//! repair of a WAL-mode database can end, with the database at rest
//! (journal_mode=wal, no -wal: the state after the last POS connection
//! closed) and with a -wal holding committed frames (a POS that died, or
//! whose last close did not checkpoint: with its -shm, or the -wal alone as
//! a copy of both leaves it). A refusal — up front (exit 2), late (exit 3),
//! by a signal — leaves the folder exactly as it was and the database and
//! its -wal byte for byte; a dry run and "nothing to do" too; a repair that
//! swaps leaves the repaired database and the backup the contract names
//! (the file, the -wal it had, their checksums) and no -wal, -shm or work
//! file. The one file a refusal adds is the one the contract names: the
//! copy that failed its verification, kept as `*.failed`. (While another
//! connection writes, the -wal and -shm are its own: they stay.)

use std::path::{Path, PathBuf};

use super::repair_ops::{signal_and_wait, start_paused_with};
use super::support::{fixtures, listing, run_env, sqlite3_cli};

/// The state of the WAL database when the repair starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wal {
    /// journal_mode=wal, no -wal, no -shm.
    Rest,
    /// A -wal with committed frames and its -shm (a POS process killed).
    Live,
    /// A -wal with committed frames and no -shm (both copied elsewhere
    /// without the -shm, as the fixtures ship `wal_stale_index`).
    LiveNoShm,
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Sets header bytes 18 and 19 (file format write/read versions) to 2:
/// WAL mode, as `PRAGMA journal_mode = WAL` writes them, for a file the
/// stock sqlite3 cannot open to set it.
fn mark_wal(db: &Path) {
    let mut image = std::fs::read(db).unwrap();
    image[18..20].copy_from_slice(&[2, 2]);
    std::fs::write(db, &image).unwrap();
}

/// Leaves a -wal with committed frames (a table the POS made) beside `db`, as a POS connection
/// whose close did not checkpoint leaves it; its -shm too, or not.
fn leave_live_wal(db: &Path, keep_shm: bool) {
    super::support::write_in_wal(
        db,
        "CREATE TABLE pos_note(x); INSERT INTO pos_note VALUES (1);",
    );
    assert!(
        std::fs::metadata(sidecar(db, "-wal")).unwrap().len() > 32,
        "the -wal holds a frame"
    );
    if !keep_shm {
        std::fs::remove_file(sidecar(db, "-shm")).unwrap();
    }
}

/// One ending: the fixture, how it is prepared, the repair's arguments
/// beyond the database, and what it must end with.
struct Case {
    what: &'static str,
    fixture: &'static str,
    /// A snapshot folder (`snaps`, holding the fixture's snapshot) is given.
    snapshot: bool,
    extra: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// Signal (`INT`) at this pause point.
    signal_at: Option<&'static str>,
    /// Another connection holds a write transaction open meanwhile.
    writer: bool,
    code: i32,
    end: End,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The folder as it was, the database and -wal byte for byte.
    AsItWas,
    /// As it was, plus the copy that failed its verification (`*.failed`).
    AsItWasButFailedCopy,
    /// The repaired database, the backup, no -wal, -shm or work file.
    Swapped,
}

const CASES: &[Case] = &[
    Case {
        what: "repaired (exit 0)",
        fixture: "stale_pk_page",
        snapshot: true,
        extra: &[],
        env: &[],
        signal_at: None,
        writer: false,
        code: 0,
        end: End::Swapped,
    },
    Case {
        what: "repaired with losses (exit 1)",
        fixture: "lost_customer_leaf",
        snapshot: false,
        extra: &[],
        env: &[],
        signal_at: None,
        writer: false,
        code: 1,
        end: End::Swapped,
    },
    Case {
        what: "nothing to do (exit 0)",
        fixture: "healthy",
        snapshot: false,
        extra: &[],
        env: &[],
        signal_at: None,
        writer: false,
        code: 0,
        end: End::AsItWas,
    },
    Case {
        what: "dry run (exit 1)",
        fixture: "stale_pk_page",
        snapshot: true,
        extra: &["--dry-run"],
        env: &[],
        signal_at: None,
        writer: false,
        code: 1,
        end: End::AsItWas,
    },
    Case {
        what: "a --snapshot path that cannot be read (exit 2)",
        fixture: "stale_pk_page",
        snapshot: false,
        extra: &["--snapshot", "no-such-snapshot.db"],
        env: &[],
        signal_at: None,
        writer: false,
        code: 2,
        end: End::AsItWas,
    },
    Case {
        what: "a report path through a symbolic link (exit 2)",
        fixture: "stale_pk_page",
        snapshot: true,
        extra: &["--report", "link.md"],
        env: &[],
        signal_at: None,
        writer: false,
        code: 2,
        end: End::AsItWas,
    },
    Case {
        what: "busy: another connection is writing (exit 2)",
        fixture: "stale_pk_page",
        snapshot: true,
        extra: &[],
        env: &[],
        signal_at: None,
        writer: true,
        code: 2,
        end: End::AsItWas,
    },
    Case {
        what: "header damaged, its -wal holds commits (exit 0: the -wal set aside with the backup)",
        fixture: "header_zeroed",
        snapshot: true,
        extra: &[],
        env: &[],
        signal_at: None,
        writer: false,
        code: 0,
        end: End::Swapped,
    },
    Case {
        what: "schema unreadable, no snapshot (exit 3)",
        fixture: "schema_page_destroyed",
        snapshot: false,
        extra: &[],
        env: &[],
        signal_at: None,
        writer: false,
        code: 3,
        end: End::AsItWas,
    },
    Case {
        what: "the copy fails its verification (exit 3)",
        fixture: "stale_pk_page",
        snapshot: true,
        extra: &[],
        env: &[("CUSTODIAN_TEST_DAMAGE_COPY", "1")],
        signal_at: None,
        writer: false,
        code: 3,
        end: End::AsItWasButFailedCopy,
    },
    Case {
        what: "SIGINT after the backup (exit 3)",
        fixture: "stale_pk_page",
        snapshot: true,
        extra: &[],
        env: &[],
        signal_at: Some("backup"),
        writer: false,
        code: 3,
        end: End::AsItWas,
    },
    Case {
        what: "SIGINT while the copy is built (exit 3)",
        fixture: "damaged_table_leaf",
        snapshot: true,
        extra: &[],
        env: &[],
        signal_at: Some("build"),
        writer: false,
        code: 3,
        end: End::AsItWas,
    },
    Case {
        what: "SIGINT while the copy is verified (exit 3)",
        fixture: "stale_pk_page",
        snapshot: true,
        extra: &[],
        env: &[],
        signal_at: Some("verify"),
        writer: false,
        code: 3,
        end: End::AsItWas,
    },
];

/// The database, and its -wal and -shm when present.
fn bytes_of(db: &Path) -> Vec<Option<Vec<u8>>> {
    ["", "-wal"]
        .iter()
        .map(|s| std::fs::read(sidecar(db, s)).ok())
        .collect()
}

/// A listing with the UTC stamps and process IDs in custodian's file names
/// replaced by `STAMP` and `PID`, so that two runs compare.
fn shapes(names: &[String]) -> Vec<String> {
    let stamp = |p: &str| {
        p.len() == 16
            && p.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'Z',
                _ => b.is_ascii_digit(),
            })
    };
    let mut v: Vec<String> = names
        .iter()
        .map(|n| {
            let mut parts: Vec<&str> = n.split('.').collect();
            for i in 0..parts.len() {
                if stamp(parts[i]) {
                    parts[i] = "STAMP";
                } else if i > 0
                    && parts[i - 1] == "STAMP"
                    && !parts[i].is_empty()
                    && parts[i].bytes().all(|b| b.is_ascii_digit())
                {
                    parts[i] = "PID";
                }
            }
            parts.join(".")
        })
        .collect();
    v.sort();
    v
}

fn prepare(case: &Case, wal: Wal, dir: &Path) -> PathBuf {
    let db = super::support::fixture_copy(case.fixture, dir);
    let _ = std::fs::remove_file(sidecar(&db, "-wal"));
    if case.snapshot {
        let snaps = dir.join("snaps");
        std::fs::create_dir(&snaps).unwrap();
        let snap = format!("{}.snap.db", case.fixture);
        std::fs::copy(fixtures().join(&snap), snaps.join(&snap)).unwrap();
    }
    if case.extra.contains(&"link.md") {
        std::os::unix::fs::symlink(dir.join("elsewhere.md"), dir.join("link.md")).unwrap();
    }
    if case.fixture == "schema_page_destroyed" {
        // SQLite cannot open it to change its journal mode, nor write a -wal
        assert_eq!(wal, Wal::Rest);
        mark_wal(&db);
        return db;
    }
    if case.fixture == "header_zeroed" {
        // a -wal of the same database before the damage (its snapshot),
        // holding commits, beside the file whose header is zeroed
        assert_ne!(wal, Wal::Rest);
        let before = dir.join("before");
        std::fs::create_dir(&before).unwrap();
        let snap = before.join("db");
        std::fs::copy(fixtures().join("header_zeroed.snap.db"), &snap).unwrap();
        leave_live_wal(&snap, wal == Wal::Live);
        std::fs::rename(sidecar(&snap, "-wal"), sidecar(&db, "-wal")).unwrap();
        if wal == Wal::Live {
            std::fs::rename(sidecar(&snap, "-shm"), sidecar(&db, "-shm")).unwrap();
        }
        std::fs::remove_dir_all(&before).unwrap();
        mark_wal(&db);
        return db;
    }
    assert_eq!(sqlite3_cli(&db, "PRAGMA journal_mode = WAL"), "wal");
    match wal {
        Wal::Rest => {}
        Wal::Live => leave_live_wal(&db, true),
        Wal::LiveNoShm => leave_live_wal(&db, false),
    }
    db
}

#[test]
fn every_ending_of_a_wal_repair_leaves_the_folder_as_the_contract_says() {
    let mut failures = Vec::new();
    for case in CASES {
        for wal in [Wal::Rest, Wal::Live, Wal::LiveNoShm] {
            let rest_only = case.fixture == "schema_page_destroyed";
            if (rest_only && wal != Wal::Rest)
                || (case.fixture == "header_zeroed" && wal == Wal::Rest)
            {
                continue;
            }
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let db = prepare(case, wal, dir);
            let writer = case.writer.then(|| {
                let c = rusqlite::Connection::open(&db).unwrap();
                c.execute_batch("BEGIN IMMEDIATE; CREATE TABLE intruder(x);")
                    .unwrap();
                c
            });
            let name = db.file_name().unwrap().to_string_lossy().into_owned();
            let before = listing(dir);
            let bytes = bytes_of(&db);
            let mut args = vec!["repair".to_string(), name.clone()];
            if case.snapshot {
                args.extend(["--snapshot".into(), "snaps".into()]);
            }
            args.extend(case.extra.iter().map(|s| s.to_string()));
            args.extend(["--json".into(), "-".into()]);
            let r = match case.signal_at {
                None => {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    run_env(&a, dir, case.env)
                }
                Some(phase) => {
                    let marks = tempfile::tempdir().unwrap();
                    let child = start_paused_with(&args, dir, phase, &marks.path().join("p"));
                    super::support::Run {
                        cmd: format!("custodian {}, SIGINT at {phase}", args.join(" ")),
                        out: signal_and_wait(child, "INT"),
                    }
                }
            };
            let after = listing(dir);
            let bytes_after = bytes_of(&db);
            drop(writer);
            let label = format!("{} on {} ({wal:?})", case.what, case.fixture);
            let mut fail = |why: String| {
                failures.push(format!(
                    "{label}: {why}\n  stderr: {}",
                    r.stderr().trim_end()
                ))
            };
            if r.code() != case.code {
                fail(format!("exit {} (want {})", r.code(), case.code));
                continue;
            }
            match case.end {
                End::AsItWas | End::AsItWasButFailedCopy => {
                    let mut want = shapes(&before);
                    if case.end == End::AsItWasButFailedCopy {
                        want.push(format!(".{name}.STAMP.PID.custodian-repair.failed"));
                        want.sort();
                    }
                    if shapes(&after) != want {
                        fail(format!("the folder held {before:?}, now {after:?}"));
                    }
                    if bytes_after != bytes {
                        fail("the database or its -wal changed".into());
                    }
                }
                End::Swapped => {
                    let mut want: Vec<String> = shapes(&before)
                        .into_iter()
                        .filter(|n| *n != format!("{name}-wal") && *n != format!("{name}-shm"))
                        .collect();
                    want.push(format!("{name}.STAMP.backup"));
                    want.push(format!("{name}.STAMP.sha256"));
                    if wal != Wal::Rest {
                        want.push(format!("{name}.STAMP.backup-wal"));
                    }
                    want.sort();
                    if shapes(&after) != want {
                        fail(format!(
                            "the folder held {before:?}, now {:?}, want {want:?}",
                            shapes(&after)
                        ));
                    }
                    if sqlite3_cli(&db, "PRAGMA journal_mode") != "wal" {
                        fail("the repaired database is not in WAL mode".into());
                    }
                    // the stock sqlite3 leaves nothing either
                    if listing(dir) != after {
                        fail("the stock sqlite3 left files".into());
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
