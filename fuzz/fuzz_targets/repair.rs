//! `custodian repair` on a database image taken from the input, as a user
//! runs it: the image is written to a fresh folder in /dev/shm (or the
//! temporary directory) with an empty snapshot folder beside it, repaired
//! through the library's command entry point (`custodian::run`), and the
//! folder removed again. The table repaired is the first table the image's
//! schema names (read by SQLite, or else by the page reader), by its first
//! column; "customers"/"customer_id" when none can be read.
//!
//! Oracles besides "no panic, no hang": a repair that exits 0 or 1 leaves a
//! file that SQLite's own integrity_check calls `ok`; one that stops
//! (exit 2 or 3, or an error) leaves the image byte for byte as it was.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use custodian::cli::Cli;
use custodian::exit::ExitStatus;
use libfuzzer_sys::fuzz_target;
use rusqlite::{Connection, OpenFlags};

/// A fresh folder per input: `<scratch>/custodian-fuzz-repair-<pid>-<n>`.
fn folder() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "custodian-fuzz-repair-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The first table of the schema and its first column.
fn target(db: &Path) -> (String, String) {
    let sqlite = || -> rusqlite::Result<(String, String)> {
        let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.pragma_update(None, "writable_schema", true)?;
        let t: String = c.query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        let col: String = c.query_row(
            "SELECT name FROM pragma_table_info(?1) LIMIT 1",
            [&t],
            |r| r.get(0),
        )?;
        Ok((t, col))
    };
    sqlite().unwrap_or_else(|_| ("customers".into(), "customer_id".into()))
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(dir.join("snaps")).is_err() {
        return;
    }
    let db = dir.join("pos.db");
    if std::fs::write(&db, data).is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let (table, id) = target(&db);
    let snaps = dir.join("snaps");
    let args = [
        "custodian",
        "repair",
        db.to_str().unwrap_or_default(),
        "--snapshot",
        snaps.to_str().unwrap_or_default(),
        "--table",
        &table,
        "--id-column",
        &id,
        "--quiet",
    ];
    let Ok(cli) = Cli::try_parse_from(args) else {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let status = custodian::run(cli);
    match status {
        Ok(ExitStatus::Success | ExitStatus::Problems) => {
            let verdict: String = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
                .unwrap_or_else(|e| e.to_string());
            assert_eq!(verdict, "ok", "a repaired file must be sound");
        }
        _ => {
            let now = std::fs::read(&db).unwrap_or_default();
            assert!(now == data, "a repair that stopped changed the file");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
