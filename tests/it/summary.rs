//! `custodian summary`: headquarters merges JSON reports gathered from
//! many machines (one-database reports and fleet summaries) into one fleet
//! report; reports of an unknown schema_version are named, skipped and
//! counted.

use std::path::Path;

use super::support::{chromium, fixtures, run, strings, truth};

fn copy(fixture: &str, dst: &Path) {
    std::fs::copy(fixtures().join(format!("{fixture}.db")), dst).unwrap();
}

/// Two stores' nightly runs, gathered under `gathered/`: store A checked
/// its tills one by one (reports beside each other), store B ran a fleet
/// check with --out-dir; plus files that are not reports this custodian
/// reads.
fn gather(work: &Path) {
    let a = work.join("gathered/store-a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(work.join("tills-a")).unwrap();
    copy("healthy", &work.join("tills-a/pos.db"));
    copy("zeroed_index_page", &work.join("tills-a/back.db"));
    for (db, code) in [("pos", 0), ("back", 1)] {
        let json = format!("gathered/store-a/{db}.json");
        let html = format!("gathered/store-a/{db}.html");
        let r = run(
            &[
                "check",
                &format!("tills-a/{db}.db"),
                "--json",
                &json,
                "--html",
                &html,
            ],
            work,
        );
        assert_eq!(r.code(), code, "{}", r.show());
    }
    std::fs::create_dir_all(work.join("tills-b")).unwrap();
    copy("stale_pk_page", &work.join("tills-b/till1.db"));
    copy("healthy", &work.join("tills-b/till2.db"));
    std::fs::write(work.join("tills-b/till3.db"), b"SQLite format 3\0").unwrap();
    let r = run(
        &[
            "check",
            "tills-b",
            "--out-dir",
            "gathered/store-b/reports",
            "--json",
            "gathered/store-b/fleet.json",
            "--html",
            "store-b-fleet.html",
            "--quiet",
        ],
        work,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    // what else lies in a gathered tree
    std::fs::write(
        work.join("gathered/store-a/from-the-future.json"),
        "{\"schema_version\": 99, \"command\": \"check\"}\n",
    )
    .unwrap();
    std::fs::write(work.join("gathered/store-a/notes.json"), "not json\n").unwrap();
    std::fs::write(
        work.join("gathered/store-a/pos.db.manifest.json"),
        "{\"schema_version\": 1, \"source\": \"pos.db\", \"verdict\": \"clean\"}\n",
    )
    .unwrap();
}

#[test]
fn reports_from_many_machines_make_one_fleet_report() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    gather(work);
    let r = run(
        &[
            "summary",
            "gathered",
            "--json",
            "hq/summary.json",
            "--report",
            "hq/summary.md",
            "--html",
            "hq/summary.html",
        ],
        work,
    );
    // hq/ does not exist: the writer names the file it cannot create
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("hq/summary.json"), "{}", r.show());
    std::fs::create_dir(work.join("hq")).unwrap();
    let r = run(
        &[
            "summary",
            "gathered",
            "--json",
            "hq/summary.json",
            "--report",
            "hq/summary.md",
            "--html",
            "hq/summary.html",
        ],
        work,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let zeroed = strings(&truth("zeroed_index_page")["affected_customer_ids"]).len();
    let stale = strings(&truth("stale_pk_page")["affected_customer_ids"]).len();
    assert_eq!((zeroed, stale), (149, 16));
    let corrupt_till3 = "tills-b/till3.db";
    // stdout: worst first, each line naming the report it came from
    let stdout = r.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    let want_first = [
        "tills-a/back.db (gathered/store-a/back.json): corrupt — 149 customers would be rejected by the POS",
        "tills-b/till1.db (gathered/store-b/reports/till1.db.json): corrupt — 16 customers would be rejected by the POS",
    ];
    assert_eq!(lines[..2], want_first, "{}", r.show());
    assert!(
        lines[2].starts_with(&format!("{corrupt_till3} (")),
        "{}",
        r.show()
    );
    assert_eq!(
        lines[3..5],
        [
            "tills-a/pos.db (gathered/store-a/pos.json): clean — 0 customers would be rejected by the POS",
            "tills-b/till2.db (gathered/store-b/reports/till2.db.json): clean — 0 customers would be rejected by the POS",
        ]
    );
    assert_eq!(
        lines[5..8],
        [
            "gathered/store-a/from-the-future.json: skipped — schema_version 99 is not one this \
             custodian reads (1); a newer custodian wrote it",
            "gathered/store-a/notes.json: skipped — not JSON: expected ident at line 1 column 2",
            "gathered/store-a/pos.db.manifest.json: skipped — not a custodian report (no command)",
        ]
    );
    assert_eq!(
        lines[8],
        format!(
            "5 databases: 3 with problems, 0 could not be checked, 2 healthy; {} customers would \
             be rejected by the POS; 3 report files skipped",
            zeroed + stale
        )
    );
    assert_eq!(lines.len(), 9);
    // each skipped file is named on stderr too
    assert_eq!(r.stderr().matches(": skipped: ").count(), 3, "{}", r.show());

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("hq/summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["command"], "summary");
    assert_eq!(s["verdict"], "corrupt");
    assert_eq!(s["exit_code"], 1);
    assert_eq!(s["totals"]["skipped_reports"], 3);
    assert_eq!(s["skipped"].as_array().unwrap().len(), 3);
    let dbs = s["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 5);
    assert_eq!(dbs[0]["html_report"], "gathered/store-a/back.html");
    assert_eq!(dbs[0]["affected_customers"], 149);
    assert_eq!(dbs[1]["report"], "gathered/store-b/reports/till1.db.json");

    let md = std::fs::read_to_string(work.join("hq/summary.md")).unwrap();
    assert!(md.starts_with("# custodian summary: corrupt\n"), "{md}");
    assert!(md.contains("## Skipped files"), "{md}");
    let html = std::fs::read_to_string(work.join("hq/summary.html")).unwrap();
    assert!(
        html.contains("<a href=\"../gathered/store-a/back.html\">report</a>"),
        "{html}"
    );

    // a fleet summary alone: its entries, its reports found beside it
    std::fs::rename(work.join("gathered/store-b"), work.join("hq/b")).unwrap();
    let r = run(&["summary", "hq/b/fleet.json", "--json", "-"], work);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let paths: Vec<&str> = j["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["tills-b/till1.db", "tills-b/till3.db", "tills-b/till2.db"]
    );
    assert_eq!(j["databases"][0]["report"], "hq/b/reports/till1.db.json");
}

#[test]
fn the_fleet_report_renders_in_headless_chromium() {
    super::support::require_tool("chromium", "it renders the fleet report headless");
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    gather(work);
    let r = run(
        &["summary", "gathered", "--html", "summary.html", "--quiet"],
        work,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let png = work.join("summary.png");
    let dom = chromium(&work.join("summary.html"), &png, &work.join("profile"), 900);
    // the browser's own DOM: the verdict, then one row per store, worst first
    assert!(dom.contains("id=\"verdict\">corrupt</span>"), "{dom}");
    let rows: Vec<&str> = dom
        .split("<tr>")
        .skip(2)
        .map(|r| r.split("</code>").next().unwrap_or_default())
        .map(|r| r.rsplit('>').next().unwrap_or_default())
        .collect();
    assert_eq!(
        rows,
        [
            "tills-a/back.db",
            "tills-b/till1.db",
            "tills-b/till3.db",
            "tills-a/pos.db",
            "tills-b/till2.db"
        ],
        "{dom}"
    );
    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(bytes.starts_with(b"\x89PNG"), "no PNG written");
    assert!(bytes.len() > 10_000, "PNG of {} bytes: blank?", bytes.len());
}
