//! custodian's own checks against SQLite's, and check against repair, over
//! SQLite's corpus of damaged databases and every fixture:
//!
//! * without SQLite's quick_check (the default), check reaches the same exit
//!   code and verdict as with it (`--sqlite-quick-check`), and never exits 0
//!   where the stock CLI's integrity_check (MANIFEST.json) found damage;
//! * `repair --dry-run` says "clean, nothing to do" exactly when check
//!   exits 0, and never says "clean" where check calls the file corrupt.
//!
//! The corpus convention (issue 8): `--table` is the table in which upstream
//! `.recover` finds the most rows (RECOVER.json), `--id-column` its first
//! column.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::support::{bin, corpus_dir, fixtures, listing, wait_or_kill};

const PER_RUN: Duration = Duration::from_secs(30);

fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// One database to run: its path, the table options, and whether the stock
/// CLI's integrity_check said ok (None for fixtures).
pub struct Case {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub cli_ok: Option<bool>,
}

/// `--table` / `--id-column` by the convention for a corpus file.
fn table_args(recover: &serde_json::Value, file: &str) -> Vec<String> {
    let Some(e) = recover["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == file)
    else {
        return Vec::new();
    };
    let mut best: Option<(&str, i64)> = None;
    for (t, n) in e["tables"].as_object().unwrap() {
        if t == "lost_and_found" {
            continue;
        }
        if let Some(n) = n.as_i64()
            && best.is_none_or(|(_, b)| n > b)
        {
            best = Some((t, n));
        }
    }
    let Some((t, _)) = best else {
        return Vec::new();
    };
    match e["columns"][t].as_array().and_then(|c| c.first()) {
        Some(c) => vec![
            "--table".into(),
            t.to_string(),
            "--id-column".into(),
            c.as_str().unwrap().to_string(),
        ],
        None => Vec::new(),
    }
}

/// Every corpus file (with its table options) and every fixture database.
pub fn cases() -> Vec<Case> {
    let dir = corpus_dir();
    let manifest = json_file(&dir.join("MANIFEST.json"));
    let recover = json_file(&dir.join("RECOVER.json"));
    let mut out: Vec<Case> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap();
            Case {
                path: dir.join(file),
                args: table_args(&recover, file),
                cli_ok: Some(e["sqlite_cli"]["ok"].as_bool().unwrap()),
            }
        })
        .collect();
    assert_eq!(out.len(), 167);
    let mut fx: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    fx.sort();
    assert!(fx.len() >= 30, "fixtures missing: {fx:?}");
    out.extend(fx.into_iter().map(|path| {
        // the names_not_utf8 fixtures name their ID column by Latin-1 bytes
        let latin1 = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("names_not_utf8"));
        let args = if latin1 {
            vec![
                "--id-column".to_string(),
                "num\u{FFFD}ro_client".to_string(),
            ]
        } else {
            Vec::new()
        };
        Case {
            path,
            args,
            cli_ok: None,
        }
    }));
    out
}

/// A copy of the case's database (and -wal) in `dir`: runs never touch the
/// corpus or the committed fixtures.
fn copy_in(case: &Case, dir: &Path) -> PathBuf {
    let name = case.path.file_name().unwrap();
    let db = dir.join(name);
    std::fs::copy(&case.path, &db).unwrap();
    let mut wal = case.path.clone().into_os_string();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        let mut to = db.clone().into_os_string();
        to.push("-wal");
        std::fs::copy(&wal, &to).unwrap();
    }
    db
}

/// Runs custodian with a time limit: (exit code, stdout, stderr); a hang or
/// a signal is a failure of the caller's assertion (code -1).
pub fn run_limited(args: &[String], cwd: &Path) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_reader = {
        let mut so = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut so, &mut s);
            s
        })
    };
    let err_reader = {
        let mut se = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut se, &mut s);
            s
        })
    };
    let code = wait_or_kill(&mut child, PER_RUN).map_or(-1, |s| s.code().unwrap_or(-1));
    (code, out_reader.join().unwrap(), err_reader.join().unwrap())
}

fn verdict_of(stdout: &str) -> (String, Vec<(String, String)>) {
    let j: serde_json::Value = serde_json::from_str(stdout).unwrap_or_default();
    let codes = j["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["code"].as_str().unwrap_or("").to_string(),
                        f["severity"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (j["verdict"].as_str().unwrap_or("").to_string(), codes)
}

#[test]
fn own_checks_reach_sqlite_quick_checks_verdict_without_it() {
    let mut failures = Vec::new();
    let work = tempfile::tempdir().unwrap();
    for case in cases() {
        let dir = tempfile::tempdir_in(work.path()).unwrap();
        let db = copy_in(&case, dir.path());
        let name = case.path.file_name().unwrap().to_string_lossy().to_string();
        let mut args: Vec<String> = vec![
            "check".into(),
            db.to_str().unwrap().into(),
            "--json".into(),
            "-".into(),
        ];
        args.extend(case.args.iter().cloned());
        let (code, out, err) = run_limited(&args, dir.path());
        args.push("--sqlite-quick-check".into());
        let (code_qc, out_qc, err_qc) = run_limited(&args, dir.path());
        let (verdict, codes) = verdict_of(&out);
        let (verdict_qc, codes_qc) = verdict_of(&out_qc);
        if !(0..=2).contains(&code) || !(0..=2).contains(&code_qc) {
            failures.push(format!("{name}: exit {code} / {code_qc}: {err}{err_qc}"));
            continue;
        }
        if (code, &verdict) != (code_qc, &verdict_qc) {
            failures.push(format!(
                "{name} {:?}: without quick_check exit {code} {verdict:?}, with it exit {code_qc} {verdict_qc:?} {codes_qc:?}",
                case.args
            ));
        }
        if codes.iter().any(|(c, _)| c == "sqlite_quick_check") {
            failures.push(format!("{name}: quick_check ran without the flag"));
        }
        // With the second opinion, SQLite never names damage that none of
        // custodian's own findings names (its finding is then only info).
        if codes_qc
            .iter()
            .any(|(c, s)| c == "sqlite_quick_check" && s == "error")
        {
            failures.push(format!("{name}: only SQLite's quick_check saw damage"));
        }
        if case.cli_ok == Some(false) && code == 0 {
            failures.push(format!(
                "{name}: exit 0 where the stock CLI's integrity_check found damage"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn repair_dry_run_is_clean_exactly_when_check_exits_0() {
    let mut failures = Vec::new();
    let work = tempfile::tempdir().unwrap();
    for case in cases() {
        let dir = tempfile::tempdir_in(work.path()).unwrap();
        let db = copy_in(&case, dir.path());
        let snaps = dir.path().join("no-snapshots");
        std::fs::create_dir(&snaps).unwrap();
        let name = case.path.file_name().unwrap().to_string_lossy().to_string();
        let mut check: Vec<String> = vec!["check".into(), db.to_str().unwrap().into()];
        check.extend(case.args.iter().cloned());
        let (check_code, _, check_err) = run_limited(&check, dir.path());
        let mut repair: Vec<String> = vec![
            "repair".into(),
            db.to_str().unwrap().into(),
            "--snapshot".into(),
            snaps.to_str().unwrap().into(),
            "--dry-run".into(),
            "--json".into(),
            "-".into(),
        ];
        repair.extend(case.args.iter().cloned());
        let (code, out, err) = run_limited(&repair, dir.path());
        let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let verdict = j["verdict"].as_str().unwrap_or("");
        let strategy = j["plan"]["strategy"].as_str().unwrap_or("");
        let repair_clean = code == 0 && verdict == "clean" && strategy == "nothing";
        if !(0..=3).contains(&code) || !(0..=2).contains(&check_code) {
            failures.push(format!(
                "{name}: check exit {check_code}, repair exit {code}: {check_err}{err}"
            ));
        } else if (check_code == 0) != repair_clean {
            failures.push(format!(
                "{name} {:?}: check exits {check_code}, repair --dry-run exits {code} ({verdict}, plan {strategy:?})",
                case.args
            ));
        } else if check_code == 1 && verdict == "clean" {
            failures.push(format!(
                "{name}: check calls it corrupt, repair calls it clean"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `diagnose` and `snapshot` meet every corpus file and fixture: no panic,
/// no hang; `diagnose` calls each customer that check lists as affected
/// rejected (exit 1, never "served"); `snapshot` exits 0 exactly when check
/// does (1 = written and marked corrupt in its manifest; 2 = one line on
/// stderr, nothing written); the database's bytes are unchanged and nothing
/// is left beside it.
#[test]
fn diagnose_and_snapshot_meet_every_input() {
    let mut failures = Vec::new();
    let work = tempfile::tempdir().unwrap();
    for case in cases() {
        let dir = tempfile::tempdir_in(work.path()).unwrap();
        let db = copy_in(&case, dir.path());
        let original = std::fs::read(&db).unwrap();
        let before = listing(dir.path());
        let name = case.path.file_name().unwrap().to_string_lossy().to_string();
        let with_table = |mut v: Vec<String>| {
            v.extend(case.args.iter().cloned());
            v
        };
        let path = db.to_str().unwrap().to_string();
        let (check_code, out, err) = run_limited(
            &with_table(vec![
                "check".into(),
                path.clone(),
                "--json".into(),
                "-".into(),
            ]),
            dir.path(),
        );
        if !(0..=2).contains(&check_code) {
            failures.push(format!("{name}: check exit {check_code}: {err}"));
            continue;
        }
        let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let affected: Vec<String> = j["affected_customer_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .take(3)
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        for id in affected.iter().map(String::as_str).chain(["1"]) {
            let (code, out, err) = run_limited(
                &with_table(vec!["diagnose".into(), path.clone(), id.into()]),
                dir.path(),
            );
            let affected_id = affected.iter().any(|a| a == id);
            if !(0..=2).contains(&code) || (affected_id && code != 1) {
                failures.push(format!(
                    "{name} {:?}: diagnose {id:?} exit {code} (check lists it: {affected_id}): {out}{err}",
                    case.args
                ));
            }
        }
        let snaps = dir.path().join("snaps");
        let (code, out, err) = run_limited(
            &with_table(vec![
                "snapshot".into(),
                path.clone(),
                "--out".into(),
                "snaps".into(),
            ]),
            dir.path(),
        );
        let written = if snaps.exists() {
            listing(&snaps)
        } else {
            Vec::new()
        };
        let ok = match code {
            0 => check_code == 0 && written.len() == 2,
            1 => {
                check_code != 0
                    && written.len() == 2
                    && json_file(&snaps.join(&written[1]))["verdict"] == "corrupt"
            }
            2 => check_code != 0 && written.is_empty() && err.lines().count() == 1,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{name} {:?}: check exit {check_code}, snapshot exit {code}, wrote {written:?}: {out}{err}",
                case.args
            ));
        }
        if std::fs::read(&db).unwrap() != original {
            failures.push(format!("{name}: the database's bytes changed"));
        }
        let mut after = listing(dir.path());
        after.retain(|f| f != "snaps");
        // SQLite may add a -shm beside a -wal that was there before (it is
        // the -wal's, as for any reader); nothing else may appear
        if before.iter().any(|f| f.ends_with("-wal")) {
            after.retain(|f| !f.ends_with("-shm"));
        }
        if after != before {
            failures.push(format!("{name}: left {after:?}, was {before:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
