//! A seeded property test of check (and of repair's agreement with it) on
//! random damage: the healthy fixture (every second run turned auto-vacuum,
//! every fourth given an FTS4 table too, every fifth with the customers
//! table WITHOUT ROWID) with header bytes, page-1 bytes,
//! whole pages or the file's length damaged at random. For every input:
//!
//! * check never panics or hangs, and exits 0, 1 or 2 (2 with one line on
//!   stderr);
//! * check exits 0 only where SQLite's own `PRAGMA quick_check` (the
//!   bundled library, opened read-only on a copy) says `ok`: never a
//!   "healthy" verdict for a file SQLite's quick_check calls damaged. (Not
//!   integrity_check: an index entry of a table other than the customer
//!   table whose key no longer matches its row passes quick_check and is not
//!   compared by custodian either - see the README.)
//! * `repair --dry-run` says "clean, nothing to do" exactly when check
//!   exits 0.
//!
//! Deterministic: the same seed gives the same inputs; a failure names the
//! seed and the damage so it can be replayed (`CHECK_PROPERTY_FIRST=run`,
//! `CHECK_PROPERTY_RUNS=n`, and `CHECK_PROPERTY_KEEP=dir` to keep the
//! databases called healthy wrongly).

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::parity::run_limited;
use super::support::fixture_copy;

/// xorshift64*: small, deterministic, good enough to pick offsets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const PAGE: u64 = 4096;

/// Applies one random kind of damage; returns what it did.
fn damage(db: &Path, rng: &mut Rng) -> String {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(db)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let pages = len / PAGE;
    match rng.below(7) {
        0 => {
            // a run of header bytes zeroed
            let at = rng.below(100);
            let n = 1 + rng.below(100 - at);
            f.write_all_at(&vec![0u8; n as usize], at).unwrap();
            format!("header bytes {at}..{} zeroed", at + n)
        }
        1 => {
            // one header byte set at random
            let at = rng.below(100);
            let v = rng.below(256) as u8;
            f.write_all_at(&[v], at).unwrap();
            format!("header byte {at} = {v}")
        }
        2 => {
            // bytes of page 1's b-tree (the schema) set at random
            let at = 100 + rng.below(PAGE - 100);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
            f.write_all_at(&bytes, at).unwrap();
            format!("page 1 bytes at {at} ({n}) randomised")
        }
        3 => {
            // a whole page zeroed
            let p = 1 + rng.below(pages);
            f.write_all_at(&vec![0u8; PAGE as usize], (p - 1) * PAGE)
                .unwrap();
            format!("page {p} zeroed")
        }
        4 => {
            // a run of bytes in some page set at random
            let p = 1 + rng.below(pages);
            let at = rng.below(PAGE - 64);
            let n = 1 + rng.below(64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
            f.write_all_at(&bytes, (p - 1) * PAGE + at).unwrap();
            format!("page {p} bytes at {at} ({n}) randomised")
        }
        5 => {
            // the file cut short
            let keep = 1 + rng.below(pages);
            f.set_len(keep * PAGE).unwrap();
            format!("cut to {keep} pages")
        }
        _ => {
            // one page written over another (a stale or misplaced write)
            let a = 2 + rng.below(pages - 1);
            let b = 2 + rng.below(pages - 1);
            let mut buf = vec![0u8; PAGE as usize];
            f.read_exact_at(&mut buf, (a - 1) * PAGE).unwrap();
            f.write_all_at(&buf, (b - 1) * PAGE).unwrap();
            format!("page {a} copied over page {b}")
        }
    }
}

/// SQLite's own quick_check, on a copy: `ok`, or anything else (an error
/// too) means damaged.
fn sqlite_quick_check_ok(db: &Path) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("x.db");
    std::fs::copy(db, &copy).unwrap();
    let Ok(c) =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return false;
    };
    let lines: rusqlite::Result<Vec<String>> = c
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    matches!(lines.as_deref(), Ok([ok]) if ok == "ok")
}

#[test]
fn check_on_random_damage_never_panics_never_calls_damage_healthy_and_agrees_with_repair() {
    // CI runs 60; CHECK_PROPERTY_RUNS=N explores further by hand.
    let runs: u64 = std::env::var("CHECK_PROPERTY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let first: u64 = std::env::var("CHECK_PROPERTY_FIRST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut failures = Vec::new();
    for run in first..first + runs {
        let seed = 0x9E37_79B9_7F4A_7C15 ^ (run + 1);
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut kind = String::new();
        // every fifth run: the customers table WITHOUT ROWID (the healthy
        // snapshot of that fixture)
        let db = if run % 5 == 2 {
            kind.push_str("without rowid ");
            let db = dir.path().join("healthy.db");
            std::fs::copy(
                super::support::fixtures().join("without_rowid_index_page.snap.db"),
                &db,
            )
            .unwrap();
            db
        } else {
            fixture_copy("healthy", dir.path())
        };
        if run % 2 == 1 || run % 4 == 3 {
            let c = rusqlite::Connection::open(&db).unwrap();
            if run % 2 == 1 {
                c.execute_batch("PRAGMA auto_vacuum = FULL; VACUUM;")
                    .unwrap();
                kind.push_str("auto-vacuum ");
            }
            if run % 4 == 3 {
                c.execute_batch(
                    "CREATE VIRTUAL TABLE notes USING fts4(body);
                     INSERT INTO notes SELECT name || ' ' || status FROM customers LIMIT 300;",
                )
                .unwrap();
                kind.push_str("with fts4 ");
            }
        }
        let what: Vec<String> = (0..1 + rng.below(3))
            .map(|_| damage(&db, &mut rng))
            .collect();
        let label = format!("seed {seed:#x} ({kind}{})", what.join("; "));
        let path = db.to_str().unwrap().to_string();
        let (code, out, err) = run_limited(
            &["check".into(), path.clone(), "--json".into(), "-".into()],
            dir.path(),
        );
        if !(0..=2).contains(&code) || err.contains("panicked") {
            failures.push(format!("{label}: check exit {code}: {err}"));
            continue;
        }
        if code == 2 && err.trim().lines().count() != 1 {
            failures.push(format!("{label}: exit 2 needs one line on stderr: {err}"));
        }
        if code == 0 && !sqlite_quick_check_ok(&db) {
            if let Ok(keep) = std::env::var("CHECK_PROPERTY_KEEP") {
                std::fs::copy(&db, Path::new(&keep).join(format!("{seed:#x}.db"))).unwrap();
            }
            failures.push(format!(
                "{label}: check exits 0 but SQLite's quick_check finds damage"
            ));
        }
        if code < 2 && serde_json::from_str::<serde_json::Value>(&out).is_err() {
            failures.push(format!("{label}: no JSON report"));
        }
        let snaps = dir.path().join("no-snapshots");
        std::fs::create_dir(&snaps).unwrap();
        let (rcode, rout, rerr) = run_limited(
            &[
                "repair".into(),
                path,
                "--snapshot".into(),
                snaps.to_str().unwrap().into(),
                "--dry-run".into(),
                "--json".into(),
                "-".into(),
            ],
            dir.path(),
        );
        let j: serde_json::Value = serde_json::from_str(&rout).unwrap_or_default();
        let clean = rcode == 0 && j["verdict"] == "clean" && j["plan"]["strategy"] == "nothing";
        if !(0..=3).contains(&rcode) || rerr.contains("panicked") {
            failures.push(format!("{label}: repair --dry-run exit {rcode}: {rerr}"));
        } else if (code == 0) != clean {
            failures.push(format!(
                "{label}: check exits {code}, repair --dry-run exits {rcode} ({}, plan {})",
                j["verdict"], j["plan"]["strategy"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
