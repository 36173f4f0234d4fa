//! The Markdown (`--report`) and HTML (`--html`) reports of `diagnose`,
//! `preflight` and `snapshot`: the verdict and the number of rejected
//! customers first, the rejected customers by ID, each asked ID's cause,
//! and no personal data — against the fixture builder's truth.

use std::collections::BTreeSet;
use std::path::Path;

use super::support::{fixture_copy, run, strings, truth};

/// Runs `args` with `--report report.md --html report.html` in `dir`;
/// returns (Markdown, HTML).
fn reports(dir: &Path, args: &[&str], code: i32) -> (String, String) {
    let mut all = args.to_vec();
    all.extend(["--report", "report.md", "--html", "report.html"]);
    let r = run(&all, dir);
    assert_eq!(r.code(), code, "{}", r.show());
    assert_eq!(r.stdout(), "", "with --report, stdout stays empty");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["report.md", "report.html"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f} is readable by its owner only");
    }
    (md, html)
}

/// The non-empty lines of a Markdown report.
fn lines(md: &str) -> Vec<&str> {
    md.lines().filter(|l| !l.is_empty()).collect()
}

/// The IDs listed under "## Customers the POS rejects" (comma-separated).
fn md_rejected(md: &str) -> BTreeSet<String> {
    let Some(i) = md.find("## Customers the POS rejects") else {
        return BTreeSet::new();
    };
    md[i..]
        .lines()
        .skip(1)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .split(", ")
        .map(String::from)
        .collect()
}

/// The IDs of the HTML's "Customers the POS rejects (N)" block, and N.
fn html_rejected(html: &str) -> (BTreeSet<String>, usize) {
    let Some(i) = html.find("<h2>Customers the POS rejects") else {
        return (BTreeSet::new(), 0);
    };
    let head = &html[i..i + html[i..].find("</h2>").unwrap()];
    let n: usize = head
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    let block = &html[i..];
    let block = &block[block.find("<div class=\"ids\">").unwrap()..];
    let block = &block[..block.find("</div>").unwrap()];
    let ids = block
        .split("<code>")
        .skip(1)
        .map(|c| c.split("</code>").next().unwrap().to_string())
        .collect();
    (ids, n)
}

fn verdict_span(html: &str) -> String {
    let i = html.find("id=\"verdict\">").expect("a verdict") + "id=\"verdict\">".len();
    html[i..i + html[i..].find('<').unwrap()].to_string()
}

/// Every name, phone, email and card number of `db` (read by SQLite).
fn personal_data(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT name, phone, email, card_number FROM customers NOT INDEXED")
        .unwrap();
    let v: Vec<String> = stmt
        .query_map([], |r| {
            Ok((0..4)
                .filter_map(|i| r.get::<_, Option<String>>(i).ok().flatten())
                .collect::<Vec<_>>())
        })
        .unwrap()
        .flat_map(|v| v.unwrap())
        .collect();
    assert!(v.len() > 4000, "{} values", v.len());
    v
}

fn assert_no_personal_data(values: &[String], texts: &[&str]) {
    for t in texts {
        for v in values {
            let escaped = v.replace('&', "&amp;").replace('\'', "&#39;");
            assert!(
                !t.contains(v.as_str()) && !t.contains(&escaped),
                "personal data {v:?} in a report"
            );
        }
    }
}

#[test]
fn diagnose_reports_give_each_id_its_cause() {
    let name = "stale_pk_page_dups";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(name, dir.path());
    let dup = strings(&t["duplicate_customer_ids"])[0].clone();
    let dups: BTreeSet<String> = strings(&t["duplicate_customer_ids"]).into_iter().collect();
    let lost = strings(&t["affected_customer_ids"])
        .into_iter()
        .find(|i| !dups.contains(i))
        .unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (served, served_row): (String, i64) = conn
        .query_row(
            "SELECT customer_id, rowid FROM customers NOT INDEXED ORDER BY rowid LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let lost_row: i64 = conn
        .query_row(
            "SELECT rowid FROM customers NOT INDEXED WHERE customer_id = ?1",
            [&lost],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let rows = &t["duplicates"][&dup];
    let dup_rows: Vec<i64> = rows["original_rowids"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rows["reregistered_rowids"].as_array().unwrap())
        .map(|r| r.as_i64().unwrap())
        .collect();
    let (md, html) = reports(
        dir.path(),
        &["diagnose", db.to_str().unwrap(), &dup, &lost, &served],
        1,
    );
    let l = lines(&md);
    assert_eq!(l[0], "# custodian diagnose: 3 IDs");
    let dup_line = format!(
        "- **{dup}** (duplicate): 2 rows hold this ID (rows {}, {}):",
        dup_rows[0], dup_rows[1]
    );
    let lost_line = format!(
        "- **{lost}** (index_entry_lost): row exists (row {lost_row}), but the primary-key index (sqlite_autoindex_customers_1) has lost its entry"
    );
    let served_line = format!(
        "- **{served}** (served): served correctly: row {served_row} is found through every index"
    );
    let items: Vec<&str> = l
        .iter()
        .copied()
        .filter(|x| x.starts_with("- **"))
        .collect();
    assert_eq!(items.len(), 3, "{md}");
    assert!(items[0].starts_with(&dup_line), "{}", items[0]);
    assert!(items[1].starts_with(&lost_line), "{}", items[1]);
    assert_eq!(items[2], served_line);

    assert_eq!(verdict_span(&html), "corrupt");
    assert!(html.contains("<p class=\"big\">3 IDs asked about; 2 not served correctly.</p>"));
    let rows: Vec<&str> = html.split("<tr><td><code>").skip(1).collect();
    assert_eq!(rows.len(), 3, "one table row per ID");
    for (row, (id, served, cause)) in rows.iter().zip([
        (&dup, false, "duplicate"),
        (&lost, false, "index_entry_lost"),
        (&served, true, "served"),
    ]) {
        let served_cell = if served {
            "<td>yes</td>"
        } else {
            "<td><b class=\"error\">no</b></td>"
        };
        assert!(
            row.starts_with(&format!("{id}</code></td>{served_cell}<td>{cause}</td>")),
            "{row}"
        );
    }
    let (ids, n) = html_rejected(&html);
    assert_eq!(ids, BTreeSet::from([dup.clone(), lost.clone()]));
    assert_eq!(n, 2);
    assert_no_personal_data(&personal_data(&db), &[&md, &html]);

    // every ID served: exit 0, verdict clean
    let (md, html) = reports(dir.path(), &["diagnose", db.to_str().unwrap(), &served], 0);
    // (the Markdown says "1 IDs" where the HTML says "1 ID": either is read right)
    assert!(
        lines(&md)[0].starts_with("# custodian diagnose: 1 ID"),
        "{md}"
    );
    assert_eq!(verdict_span(&html), "clean");
    assert!(html.contains("1 ID asked about; 0 not served correctly."));
}

#[test]
fn snapshot_reports_state_the_verdict_and_the_rejected_customers() {
    for (name, code, verdict) in [("healthy", 0, "clean"), ("stale_pk_page", 1, "corrupt")] {
        let t = truth(name);
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        let out = dir.path().join("snaps");
        std::fs::create_dir(&out).unwrap();
        let (md, html) = reports(
            dir.path(),
            &[
                "snapshot",
                db.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            code,
        );
        let written: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".snapshot.db"))
            .collect();
        let [snap] = written.as_slice() else {
            panic!("{name}: snapshots written: {written:?}")
        };
        let want: BTreeSet<String> = strings(&t["affected_customer_ids"]).into_iter().collect();
        let l = lines(&md);
        assert_eq!(l[0], format!("# custodian snapshot: {verdict}"), "{name}");
        assert_eq!(
            l[1],
            format!("**{} customers would be rejected by the POS.**", want.len()),
            "{name}"
        );
        assert_eq!(md_rejected(&md), want, "{name}");
        let severity = if verdict == "clean" { "info" } else { "error" };
        let shown = format!("snaps/{snap}");
        assert!(
            md.contains(&format!(
                "- {severity} snapshot_written [{}]: snapshot {} written, verdict {verdict}, manifest {}.manifest.json",
                out.join(snap).display(),
                out.join(snap).display(),
                out.join(snap).display()
            )),
            "{name}: {md} ({shown})"
        );
        assert_eq!(verdict_span(&html), verdict, "{name}");
        assert!(html.contains(&format!(
            "<p class=\"big\">{} customers would be rejected by the POS.</p>",
            want.len()
        )));
        let (ids, n) = html_rejected(&html);
        assert_eq!((ids, n), (want.clone(), want.len()), "{name}");
        assert_no_personal_data(&personal_data(&db), &[&md, &html]);
    }
}

#[test]
fn preflight_reports_give_go_or_no_go_with_each_condition() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    // a verified snapshot of the healthy database, taken now
    let healthy = fixture_copy("healthy", dir.path());
    let r = run(
        &[
            "snapshot",
            healthy.to_str().unwrap(),
            "--out",
            snaps.to_str().unwrap(),
            "--quiet",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let conditions = [
        "schema",
        "database_clean",
        "snapshot_recent",
        "disk_space",
        "wal_checkpointed",
    ];

    let (md, html) = reports(
        dir.path(),
        &[
            "preflight",
            healthy.to_str().unwrap(),
            "--snapshot",
            snaps.to_str().unwrap(),
        ],
        0,
    );
    let l = lines(&md);
    assert_eq!(l[0], "# custodian preflight: go");
    assert_eq!(l[1], "**0 customers would be rejected by the POS.**");
    for c in conditions {
        assert!(
            md.contains(&format!("- info preflight_passed [{c}]: ")),
            "{c}: {md}"
        );
        assert!(
            html.contains(&format!(
                "<td class=\"info\">info</td><td><code>preflight_passed</code></td><td><code>{c}</code></td>"
            )),
            "{c}"
        );
    }
    let customers = truth("healthy")["customers_total"].as_u64().unwrap();
    assert!(
        md.contains(&format!(
            "[database_clean]: the database is clean ({},{:03} customers, 5 indexes compared)",
            customers / 1000,
            customers % 1000
        )),
        "{md}"
    );
    assert!(!md.contains("preflight_failed"));
    assert_eq!(verdict_span(&html), "go");
    assert_eq!(html_rejected(&html), (BTreeSet::new(), 0));

    // a damaged database: no-go, naming the customers
    let name = "stale_pk_page";
    let db = fixture_copy(name, dir.path());
    let want: BTreeSet<String> = strings(&truth(name)["affected_customer_ids"])
        .into_iter()
        .collect();
    let (md, html) = reports(
        dir.path(),
        &[
            "preflight",
            db.to_str().unwrap(),
            "--snapshot",
            snaps.to_str().unwrap(),
        ],
        1,
    );
    let l = lines(&md);
    assert_eq!(l[0], "# custodian preflight: no_go");
    assert_eq!(
        l[1],
        format!("**{} customers would be rejected by the POS.**", want.len())
    );
    assert_eq!(md_rejected(&md), want);
    assert!(
        md.contains(&format!(
            "- error preflight_failed [database_clean]: the database is damaged: {} customers would be rejected by the POS",
            want.len()
        )),
        "{md}"
    );
    for c in ["schema", "disk_space", "wal_checkpointed"] {
        assert!(
            md.contains(&format!("- info preflight_passed [{c}]: ")),
            "{c}: {md}"
        );
    }
    assert_eq!(verdict_span(&html), "no_go");
    assert_eq!(html_rejected(&html), (want.clone(), want.len()));
    assert!(html.contains(
        "<td class=\"error\">error</td><td><code>preflight_failed</code></td><td><code>database_clean</code></td>"
    ));
    assert_no_personal_data(&personal_data(&db), &[&md, &html]);
}
