//! `repair` on SQLite's own damaged images, as issue 8 measures it: for
//! each file from which upstream `.recover` gets rows in a table other than
//! lost_and_found (RECOVER.json), `--table` = the table where `.recover`
//! finds the most rows (on a tie, the first in RECOVER.json's order),
//! `--id-column` = its first column, an empty snapshot
//! folder, on a copy. Every file: no panic, no hang; a repaired file (exit
//! 0 or 1) is `ok` to the stock sqlite3's integrity_check; a refused one
//! (exit 2 or 3) is byte for byte as it was, with one line saying why. And
//! the share of files repaired into a file holding at least `.recover`'s
//! rows in that table must not fall (tools/corpus_repair.py writes the same
//! table to docs/corpus-repair.md).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::corpus_rows::{self, Tally};
use super::support::{bin, corpus_dir, sqlite3_cli, wait_or_kill};

const PER_FILE: Duration = Duration::from_secs(60);

/// Files repaired holding at least `.recover`'s rows (the last measured
/// count; raise it when repair gets better, never lower it).
const REPAIRED_AT_LEAST: usize = 106;

/// The same, counting a derived table of a virtual table (a full-text
/// index's segments, sizes and structure, an R-Tree's nodes) that the
/// repair rebuilt from the table's recovered content as repaired: its row
/// count is the rebuilt index's, not the damaged one's.
const REPAIRED_OR_REINDEXED_AT_LEAST: usize = 123;

/// Rows in the table after the repair, exactly, for the files whose cells
/// hold rowids out of key order (or outside the parent's bounds) on a leaf
/// whose layout is damaged, and for an R-Tree made anew: (file, rows,
/// why that many, from outside custodian).
const EXACT_ROWS: [(&str, u64, &str); 9] = [
    (
        "fts3corrupt4-17.db",
        2,
        ".recover's 2 segment rows: the full-text index failed its check again after 'rebuild', so it is taken out with the rows salvaged (the rebuild's 10 rows are rolled back)",
    ),
    ("fts3corrupt4-18.db", 2, "as fts3corrupt4-17.db"),
    ("fts3corrupt4-8.db", 8, ".recover's 8"),
    ("fts3corrupt4-13.db", 8, ".recover's 8"),
    ("fts5corrupt3-61.db", 32, ".recover's 32"),
    (
        "fts5corrupt3-56.db",
        25,
        "the 25 distinct rowids of its leaf cells (.recover's 26th is made of header bytes)",
    ),
    (
        "fts5corrupt3-34.db",
        35,
        "its 36 leaf cells but rowid 4355's, whose record header gives size 0 for a 6-byte payload",
    ),
    (
        "fts5corrupt3-69.db",
        41,
        "its 42 leaf cells but page 3 cell 36, whose values end at byte 9 of a 25-byte payload",
    ),
    (
        "rtreefuzz001-2.db",
        9,
        "the 14 entries a scan of the R-Tree gives but the 5 the stock sqlite3's R-Tree refuses (a lower bound above its upper bound)",
    ),
];

/// A JSON object's members in the order the file gives them (serde_json's
/// own map is sorted by key).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    v.push(kv);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(Members)
    }
}

#[derive(serde::Deserialize)]
struct Recovered {
    file: String,
    #[serde(default)]
    tables: Option<Ordered>,
    #[serde(default)]
    columns: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(serde::Deserialize)]
struct RecoverJson {
    files: Vec<Recovered>,
}

/// (file, table, id column, .recover's rows) for each file RECOVER.json
/// gives rows for.
fn targets(dir: &Path) -> Vec<(String, String, String, u64)> {
    let rec: RecoverJson =
        serde_json::from_str(&std::fs::read_to_string(dir.join("RECOVER.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for f in rec.files {
        let counts: Vec<(String, u64)> = f
            .tables
            .map(|t| t.0)
            .unwrap_or_default()
            .iter()
            .filter(|(t, _)| t.as_str() != "lost_and_found")
            .filter_map(|(t, n)| n.as_u64().map(|n| (t.clone(), n)))
            .collect();
        let Some(best) = counts.iter().map(|c| c.1).max().filter(|&m| m > 0) else {
            continue;
        };
        // on a tie, the first in RECOVER.json's order
        let table = counts.iter().find(|c| c.1 == best).unwrap().0.clone();
        let id = f
            .columns
            .get(&table)
            .and_then(|c| c.first())
            .map_or("rowid", String::as_str)
            .to_string();
        out.push((f.file, table, id, best));
    }
    out
}

/// Shadow tables whose rows a module derives from the virtual table's
/// content (FTS5, FTS3/4, R-Tree).
const DERIVED: [&str; 9] = [
    "data", "idx", "docsize", "segments", "segdir", "stat", "node", "rowid", "parent",
];

/// Whether the repair rebuilt the virtual table whose derived shadow table
/// `table` is.
fn reindexed(report: &serde_json::Value, table: &str) -> bool {
    report["actions"].as_array().is_some_and(|a| {
        a.iter().any(|a| {
            a["kind"] == "rebuild_virtual_table"
                && a["object"].as_str().is_some_and(|vt| {
                    table
                        .strip_prefix(vt)
                        .and_then(|s| s.strip_prefix('_'))
                        .is_some_and(|s| DERIVED.contains(&s))
                })
        })
    })
}

#[test]
fn corpus_repair_never_panics_never_leaves_a_broken_file_and_recovers_rows() {
    let dir = corpus_dir();
    let targets = targets(&dir);
    assert_eq!(targets.len(), 132, "files .recover gets rows from");
    let truth = corpus_rows::load();
    assert_eq!(truth.len(), 132, "files recover_rows.json gives rows for");
    let mut tallies: Vec<(String, String, Tally)> = Vec::new();
    let mut failures = Vec::new();
    let (mut repaired, mut reindexed_too) = (0usize, 0usize);
    for (file, table, id, want) in &targets {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join(file);
        let original = std::fs::read(dir.join(file)).unwrap();
        std::fs::write(&db, &original).unwrap();
        std::fs::create_dir(tmp.path().join("snapshots")).unwrap();
        let report = tmp.path().join("report.json");
        let err = tmp.path().join("stderr");
        let mut child = Command::new(bin())
            .arg("repair")
            .arg(&db)
            .args(["--table", table, "--id-column", id, "--quiet"])
            .arg("--snapshot")
            .arg(tmp.path().join("snapshots"))
            .arg("--json")
            .arg(&report)
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let status = wait_or_kill(&mut child, PER_FILE);
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let Some(status) = status else {
            failures.push(format!("{file}: hung (> {PER_FILE:?})"));
            continue;
        };
        if stderr.contains("panicked") {
            failures.push(format!("{file}: panicked: {stderr}"));
            continue;
        }
        match status.code() {
            Some(0 | 1) => {
                let verdict = sqlite3_cli(&db, "PRAGMA integrity_check");
                if verdict != "ok" {
                    failures.push(format!(
                        "{file}: repaired (exit {status}) into a file the stock sqlite3 calls {verdict:?}"
                    ));
                    continue;
                }
                let Some(entry) = truth.get(file) else {
                    failures.push(format!("{file}: not in tests/corpus/recover_rows.json"));
                    continue;
                };
                for (t, tally) in corpus_rows::account(entry, &dir.join(file), &db, tmp.path()) {
                    tallies.push((file.clone(), t, tally));
                }
                let q = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
                let rows: u64 = sqlite3_cli(&db, &q).parse().unwrap_or(0);
                let j: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
                if let Some((_, exact, why)) = EXACT_ROWS.iter().find(|e| e.0 == file)
                    && rows != *exact
                {
                    failures.push(format!("{file}: {rows} rows, not {exact} ({why})"));
                }
                if rows >= *want {
                    repaired += 1;
                } else if reindexed(&j, table) {
                    reindexed_too += 1;
                }
            }
            Some(2 | 3) => {
                if std::fs::read(&db).unwrap() != original {
                    failures.push(format!(
                        "{file}: refused (exit {status}) but the file changed"
                    ));
                }
                if stderr.lines().count() != 1 {
                    failures.push(format!(
                        "{file}: refused (exit {status}) needs one line on stderr, got: {stderr}"
                    ));
                }
            }
            _ => failures.push(format!("{file}: {status:?}: {stderr}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} files failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    rows_against_recover(&tallies);
    eprintln!(
        "corpus repair: {repaired} of {} repaired holding at least .recover's rows; {} more with a derived index table rebuilt from recovered content",
        targets.len(),
        reindexed_too
    );
    assert!(
        repaired >= REPAIRED_AT_LEAST,
        "{repaired} files repaired with .recover's rows, fewer than the {REPAIRED_AT_LEAST} before"
    );
    assert!(
        repaired + reindexed_too >= REPAIRED_OR_REINDEXED_AT_LEAST,
        "{} files repaired (or reindexed), fewer than the {REPAIRED_OR_REINDEXED_AT_LEAST} before",
        repaired + reindexed_too
    );
}

/// Every `.recover` row of every recorded table is kept, quarantined (a
/// row behind a broken overflow chain with its bytes), made of header
/// bytes or part of a rebuilt derived table, but those pinned,
/// each with what is known of it, in tests/corpus/unexplained_rows.json:
/// exactly, so that a row custodian newly loses fails the test, and one it
/// newly keeps must be taken off that list.
fn rows_against_recover(tallies: &[(String, String, Tally)]) {
    let mut sum = Tally::default();
    let mut found = BTreeSet::new();
    for (file, table, t) in tallies {
        eprintln!(
            "rows {file} {table}: .recover {} = kept {} + quarantined {} + header bytes {} + overflow broken {} + rebuilt {} + unexplained {}",
            t.recover,
            t.kept,
            t.quarantined,
            t.header_bytes,
            t.overflow_broken,
            t.rebuilt,
            t.unexplained.len()
        );
        sum.recover += t.recover;
        sum.kept += t.kept;
        sum.quarantined += t.quarantined;
        sum.header_bytes += t.header_bytes;
        sum.overflow_broken += t.overflow_broken;
        sum.rebuilt += t.rebuilt;
        for u in &t.unexplained {
            found.insert((file.clone(), u.clone()));
        }
    }
    eprintln!(
        "corpus rows: .recover {} = kept {} + quarantined {} + header bytes {} + overflow broken {} + rebuilt {} + unexplained {}",
        sum.recover,
        sum.kept,
        sum.quarantined,
        sum.header_bytes,
        sum.overflow_broken,
        sum.rebuilt,
        found.len()
    );
    // a record read in part has every byte its cell and overflow chain
    // still give kept in custodian_quarantine (issue 8): none is counted
    // as held only in part
    assert_eq!(
        sum.overflow_broken, 0,
        "rows behind a broken overflow chain whose bytes custodian_quarantine lacks"
    );
    let pinned = corpus_rows::unexplained();
    let lost: Vec<_> = found.difference(&pinned).collect();
    let now_kept: Vec<_> = pinned.difference(&found).collect();
    assert!(
        lost.is_empty() && now_kept.is_empty(),
        ".recover rows lost, not accounted for: {lost:?}; pinned as unexplained but now accounted for (take them off tests/corpus/unexplained_rows.json): {now_kept:?}"
    );
}
