//! Many databases in one run: `check FOLDER --jobs 2 --out-dir … --json …
//! --metrics …` on 40 databases (healthy, damaged in several ways, one not a
//! database, one held busy by another connection), each verdict and count
//! against the fixture builder's truth.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::support::{bin, fixtures, run, strings, truth};

/// The damaged fixtures and their verdict; every one exits 1.
const DAMAGED: &[&str] = &[
    "stale_pk_page",
    "stale_pk_page_dups",
    "zeroed_index_page",
    "garbage_index_page",
    "stale_secondary_page",
    "surplus_index_entries",
    "flipped_id_byte",
    "index_definition_removed",
    "damaged_table_leaf",
    "damaged_table_interior",
    "overflow_chain_broken",
    "truncated",
    "wal_stale_index",
];
const HEALTHY_COPIES: usize = 25;

/// What the test expects of one database.
#[derive(Debug, Clone)]
struct Want {
    verdict: &'static str,
    exit: i64,
    affected: Vec<String>,
}

fn copy(fixture: &str, dst: &Path) {
    std::fs::copy(fixtures().join(format!("{fixture}.db")), dst).unwrap();
    let wal = fixtures().join(format!("{fixture}.db-wal"));
    if wal.exists() {
        let mut w = dst.as_os_str().to_owned();
        w.push("-wal");
        std::fs::copy(wal, PathBuf::from(w)).unwrap();
    }
}

/// The 40 databases: path (relative to the work folder) → expectation.
fn build_stores(stores: &Path) -> BTreeMap<String, Want> {
    std::fs::create_dir(stores).unwrap();
    let mut want = BTreeMap::new();
    for i in 1..=HEALTHY_COPIES {
        let name = format!("store{i:02}.db");
        copy("healthy", &stores.join(&name));
        want.insert(
            format!("stores/{name}"),
            Want {
                verdict: "clean",
                exit: 0,
                affected: Vec::new(),
            },
        );
    }
    for f in DAMAGED {
        let name = format!("{f}.db");
        copy(f, &stores.join(&name));
        want.insert(
            format!("stores/{name}"),
            Want {
                verdict: "corrupt",
                exit: 1,
                affected: strings(&truth(f)["affected_customer_ids"]),
            },
        );
    }
    copy("healthy", &stores.join("busy.db"));
    want.insert(
        "stores/busy.db".into(),
        Want {
            verdict: "failed",
            exit: 2,
            affected: Vec::new(),
        },
    );
    // not databases: skipped in the folder (recognised by header); the one
    // named on the command line is reported as such
    std::fs::copy(
        fixtures().join("not_a_database.db"),
        stores.join("terminal.log"),
    )
    .unwrap();
    std::fs::write(stores.join("README.txt"), "the tills of store 7\n").unwrap();
    want.insert(
        "stores/terminal.log".into(),
        Want {
            verdict: "failed",
            exit: 2,
            affected: Vec::new(),
        },
    );
    assert_eq!(want.len(), 40);
    want
}

/// Worst first, computed here: problems, then could not run, then healthy;
/// most customers first; then by path.
fn expected_order(want: &BTreeMap<String, Want>) -> Vec<String> {
    let mut v: Vec<(&String, &Want)> = want.iter().collect();
    let class = |e: i64| match e {
        1 => 0,
        2 => 1,
        _ => 2,
    };
    v.sort_by(|a, b| {
        (class(a.1.exit), std::cmp::Reverse(a.1.affected.len()), a.0).cmp(&(
            class(b.1.exit),
            std::cmp::Reverse(b.1.affected.len()),
            b.0,
        ))
    });
    v.into_iter().map(|(p, _)| p.clone()).collect()
}

/// `name{labels} value` lines of a metrics file, by name and db label.
fn metric(text: &str, name: &str, db: &str, extra: &str) -> Option<f64> {
    let db_label = format!("db=\"{db}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| l.contains(&db_label) && l.contains(extra))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// promtool (Debian's prometheus package; .ci/run installs it) lints the
/// metrics: a test that needs it fails when it is missing, never skips.
fn promtool_check_metrics(file: &Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is missing ({e}): apt-get install prometheus (as .ci/run does)")
        });
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn forty_databases_each_get_their_verdict_reports_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let want = build_stores(&work.join("stores"));
    // another process holds a write lock on busy.db for the whole run
    let holder = rusqlite::Connection::open(work.join("stores/busy.db")).unwrap();
    holder
        .execute_batch("BEGIN EXCLUSIVE; UPDATE customers SET tier = tier;")
        .unwrap();
    let r = run(
        &[
            "check",
            "stores",
            "stores/terminal.log",
            "--jobs",
            "2",
            "--out-dir",
            "reports/nightly",
            "--json",
            "fleet.json",
            "--report",
            "fleet.md",
            "--html",
            "fleet.html",
            "--metrics",
            "custodian.prom",
        ],
        work,
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(r.code(), 1, "{}", r.show());

    // stdout: one line per database, worst first, then the totals
    let order = expected_order(&want);
    let lines: Vec<String> = r.stdout().lines().map(String::from).collect();
    assert_eq!(lines.len(), 41, "{}", r.show());
    for (line, path) in lines.iter().zip(&order) {
        let w = &want[path];
        let prefix = format!("{path}: {} — ", w.verdict);
        assert!(
            line.starts_with(&prefix),
            "{line:?} should start {prefix:?}"
        );
        if w.exit != 2 {
            let n = w.affected.len();
            assert!(
                line.ends_with(&format!(
                    "{} customer{} would be rejected by the POS",
                    thousands(n),
                    if n == 1 { "" } else { "s" }
                )),
                "{line}"
            );
        }
    }
    let total: usize = want.values().map(|w| w.affected.len()).sum();
    assert_eq!(
        lines[40],
        format!(
            "40 databases: 13 with problems, 2 could not be checked, 25 healthy; {} customers \
             would be rejected by the POS",
            thousands(total)
        )
    );
    assert!(lines[38].starts_with("stores/store24.db: clean"));
    let busy_line = lines
        .iter()
        .find(|l| l.starts_with("stores/busy.db"))
        .unwrap();
    assert!(busy_line.contains("busy"), "{busy_line}");
    let log_line = lines
        .iter()
        .find(|l| l.starts_with("stores/terminal.log"))
        .unwrap();
    assert!(log_line.contains("not a SQLite database"), "{log_line}");
    assert!(
        !r.stdout().contains("README.txt"),
        "a file without SQLite's header is not a database of the folder"
    );

    // the fleet summary
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("fleet.json")).unwrap()).unwrap();
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["tool"]["name"], "custodian");
    assert_eq!(s["command"], "check");
    assert_eq!(s["verdict"], "corrupt");
    assert_eq!(s["exit_code"], 1);
    assert_eq!(s["totals"]["databases"], 40);
    assert_eq!(s["totals"]["problems"], 13);
    assert_eq!(s["totals"]["could_not_run"], 2);
    assert_eq!(s["totals"]["healthy"], 25);
    assert_eq!(s["totals"]["affected_customers"], total as u64);
    let dbs = s["databases"].as_array().unwrap();
    let paths: Vec<&str> = dbs.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, order.iter().map(String::as_str).collect::<Vec<_>>());
    let reports = work.join("reports/nightly");
    assert_eq!(
        std::fs::metadata(&reports).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for e in dbs {
        let path = e["path"].as_str().unwrap();
        let w = &want[path];
        assert_eq!(e["verdict"], w.verdict, "{path}");
        assert_eq!(e["exit_code"], w.exit, "{path}");
        assert_eq!(e["affected_customers"], w.affected.len() as u64, "{path}");
        assert_eq!(e["error"].is_null(), w.exit != 2, "{path}: {e}");
        // the per-database reports, named after the database, mode 0600
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        for (field, ext) in [
            ("report", "json"),
            ("markdown_report", "md"),
            ("html_report", "html"),
        ] {
            let p = format!("reports/nightly/{name}.{ext}");
            assert_eq!(e[field], p.as_str(), "{path}");
            let meta = std::fs::metadata(work.join(&p)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{p}");
        }
        let one: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(reports.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(one["database"], path);
        assert_eq!(one["verdict"], w.verdict, "{path}");
        assert_eq!(strings(&one["affected_customer_ids"]), w.affected, "{path}");
        let md = std::fs::read_to_string(reports.join(format!("{name}.md"))).unwrap();
        assert!(
            md.starts_with(&format!("# custodian check: {}\n", w.verdict)),
            "{path}: {md}"
        );
    }
    assert_eq!(std::fs::read_dir(&reports).unwrap().count(), 120);
    let md = std::fs::read_to_string(work.join("fleet.md")).unwrap();
    assert!(md.starts_with("# custodian check: corrupt\n"), "{md}");
    let html = std::fs::read_to_string(work.join("fleet.html")).unwrap();
    assert!(
        html.contains("<a href=\"reports/nightly/truncated.db.html\">report</a>"),
        "the summary links each database's HTML report"
    );

    // the metrics
    let m = std::fs::read_to_string(work.join("custodian.prom")).unwrap();
    for (path, w) in &want {
        let up = if w.exit == 2 { 0.0 } else { 1.0 };
        assert_eq!(
            metric(&m, "custodian_up", path, "command=\"check\""),
            Some(up),
            "{path}"
        );
        assert_eq!(
            metric(
                &m,
                "custodian_verdict",
                path,
                &format!("verdict=\"{}\"", w.verdict)
            ),
            Some(1.0),
            "{path}"
        );
        assert_eq!(
            metric(&m, "custodian_exit_code", path, ""),
            Some(w.exit as f64),
            "{path}"
        );
        if w.exit == 2 {
            assert_eq!(metric(&m, "custodian_affected_customers", path, ""), None);
            assert_eq!(
                metric(
                    &m,
                    "custodian_last_complete_check_timestamp_seconds",
                    path,
                    ""
                ),
                None
            );
        } else {
            assert_eq!(
                metric(&m, "custodian_affected_customers", path, ""),
                Some(w.affected.len() as f64),
                "{path}"
            );
            assert!(metric(&m, "custodian_check_duration_seconds", path, "").is_some());
        }
    }
    assert_eq!(
        metric(
            &m,
            "custodian_findings",
            "stores/store01.db",
            "severity=\"error\""
        ),
        Some(0.0)
    );
    promtool_check_metrics(&work.join("custodian.prom"));
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn a_list_from_stdin_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    copy("healthy", &work.join("a.db"));
    copy("healthy", &work.join("b.db"));
    std::fs::write(work.join("c.db"), b"").unwrap();
    let with_stdin = |args: &[&str], input: &str| {
        let mut child = Command::new(bin())
            .args(args)
            .current_dir(work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // all healthy: exit 0
    let out = with_stdin(&["check", "--list", "-"], "# tills\na.db\n\n  b.db  \n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a.db: clean — 0 customers would be rejected by the POS\n\
         b.db: clean — 0 customers would be rejected by the POS\n\
         2 databases: 0 with problems, 0 could not be checked, 2 healthy; 0 customers would be \
         rejected by the POS\n"
    );
    // one could not be checked and none has problems: exit 2
    let out = with_stdin(&["check", "a.db", "--list", "-", "--quiet"], "c.db\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("c.db: empty file"),
        "{out:?}"
    );
    // an empty folder: could not run
    std::fs::create_dir(work.join("none")).unwrap();
    let r = run(&["check", "none"], work);
    assert_eq!(r.code(), 2, "{}", r.show());
    assert_eq!(r.stderr(), "custodian: no SQLite database in none\n");
    // the summary JSON on stdout
    let r = run(&["check", "a.db", "b.db", "--json", "-"], work);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["totals"]["healthy"], 2);
}

/// A store whose database header was wiped (every customer rejected) is
/// a database of the folder, told by its pages: the nightly check of the
/// folder names it (exit 1), the nightly snapshot says it could not take
/// one (exit 2). Neither may pass over it as "no database here" and call
/// the folder healthy. Its companion files are not databases.
#[test]
fn a_folder_with_a_wiped_database_header_is_not_called_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let stores = work.join("stores");
    std::fs::create_dir(&stores).unwrap();
    copy("healthy", &stores.join("till1.db"));
    copy("header_zeroed", &stores.join("till2.db"));
    std::fs::copy(
        fixtures().join("header_zeroed.db"),
        stores.join("till2.db-journal"),
    )
    .unwrap();
    let all = strings(&truth("header_zeroed")["affected_customer_ids"]);
    assert_eq!(all.len(), 2000);
    let r = run(&["check", "stores", "--json", "fleet.json"], work);
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(
        r.stdout(),
        "stores/till2.db: corrupt — 2,000 customers would be rejected by the POS\n\
         stores/till1.db: clean — 0 customers would be rejected by the POS\n\
         2 databases: 1 with problems, 0 could not be checked, 1 healthy; 2,000 customers \
         would be rejected by the POS\n"
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("fleet.json")).unwrap()).unwrap();
    assert_eq!(s["totals"]["affected_customers"], 2000);
    let r = run(&["snapshot", "stores", "--out", "snaps", "--quiet"], work);
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().starts_with(
            "custodian: stores/till2.db: the online backup failed, no snapshot was written"
        ),
        "{}",
        r.show()
    );
    let mut names: Vec<String> = std::fs::read_dir(work.join("snaps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("till2"))
        .collect();
    names.sort();
    assert_eq!(names, Vec::<String>::new());
}

#[test]
fn snapshot_of_a_folder_takes_one_verified_snapshot_each() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::create_dir(work.join("pos")).unwrap();
    copy("healthy", &work.join("pos/till1.db"));
    copy("stale_pk_page", &work.join("pos/till2.db"));
    std::fs::write(work.join("pos/till3.db"), b"").unwrap(); // no header: not in the folder
    let r = run(
        &[
            "snapshot",
            "pos",
            "--out",
            "snaps",
            "--jobs",
            "2",
            "--json",
            "fleet.json",
            "--out-dir",
            "reports",
            "--metrics",
            "s.prom",
        ],
        work,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(
        r.stdout(),
        "pos/till2.db: corrupt — 16 customers would be rejected by the POS\n\
         pos/till1.db: clean — 0 customers would be rejected by the POS\n\
         2 databases: 1 with problems, 0 could not be checked, 1 healthy; 16 customers would be \
         rejected by the POS\n"
    );
    let mut names: Vec<String> = std::fs::read_dir(work.join("snaps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for (n, prefix) in names
        .iter()
        .zip(["till1.db.", "till1.db.", "till2.db.", "till2.db."])
    {
        assert!(n.starts_with(prefix), "{names:?}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("fleet.json")).unwrap()).unwrap();
    assert_eq!(s["command"], "snapshot");
    assert_eq!(s["databases"][0]["report"], "reports/till2.db.json");
    let m = std::fs::read_to_string(work.join("s.prom")).unwrap();
    assert!(
        metric(
            &m,
            "custodian_newest_verified_snapshot_timestamp_seconds",
            "pos/till1.db",
            ""
        )
        .is_some()
    );
    assert_eq!(
        metric(
            &m,
            "custodian_newest_verified_snapshot_timestamp_seconds",
            "pos/till2.db",
            ""
        ),
        None,
        "a corrupt snapshot is never a verified one"
    );
    // two databases of one name would share snapshot names: refused
    std::fs::create_dir(work.join("other")).unwrap();
    copy("healthy", &work.join("other/till1.db"));
    let r = run(
        &[
            "snapshot",
            "pos/till1.db",
            "other/till1.db",
            "--out",
            "snaps",
        ],
        work,
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().contains("two databases named \"till1.db\""),
        "{}",
        r.show()
    );
}

#[test]
fn a_repair_writes_its_verdict_and_counts_as_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    copy("stale_pk_page_dups", &work.join("pos.db"));
    std::fs::create_dir(work.join("snaps")).unwrap();
    std::fs::copy(
        fixtures().join("stale_pk_page_dups.snap.db"),
        work.join("snaps/nightly.db"),
    )
    .unwrap();
    // a check's series in the same file stay
    let r = run(&["check", "pos.db", "--quiet", "--metrics", "c.prom"], work);
    assert_eq!(r.code(), 1, "{}", r.show());
    let r = run(
        &[
            "repair",
            "pos.db",
            "--snapshot",
            "snaps",
            "--quiet",
            "--metrics",
            "c.prom",
        ],
        work,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let m = std::fs::read_to_string(work.join("c.prom")).unwrap();
    let dups = strings(&truth("stale_pk_page_dups")["duplicate_customer_ids"]).len();
    assert_eq!(dups, 5);
    assert_eq!(
        metric(&m, "custodian_repair_quarantined_customers", "pos.db", ""),
        Some(dups as f64)
    );
    assert_eq!(
        metric(&m, "custodian_repair_restored_customers", "pos.db", ""),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "custodian_repair_unrecoverable_customers", "pos.db", ""),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "custodian_verdict",
            "pos.db",
            "command=\"repair\",db=\"pos.db\",verdict=\"repaired_with_losses\""
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "custodian_affected_customers", "pos.db", ""),
        Some(16.0),
        "the check's series are kept"
    );
    promtool_check_metrics(&work.join("c.prom"));
}
