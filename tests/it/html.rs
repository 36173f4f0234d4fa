//! `--html FILE`: the self-contained HTML report (issue 5, item 6): the
//! verdict, the customers by ID, the page picture, repair's actions, no
//! personal data, escaping, and a render in headless Chromium when present.

use std::collections::BTreeSet;
use std::path::Path;

use super::support::{chromium, fixture_copy, run, strings, truth};

/// The same escaping the report uses.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Runs `args` (with `--html report.html` appended) in `dir` and returns
/// the HTML.
fn html_of(dir: &Path, args: &[&str], code: i32) -> String {
    let mut all = args.to_vec();
    all.extend(["--html", "report.html"]);
    let r = run(&all, dir);
    assert_eq!(r.code(), code, "{}", r.show());
    std::fs::read_to_string(dir.join("report.html")).unwrap()
}

/// The text between `start` (exclusive) and the next `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let i = s
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the HTML"))
        + start.len();
    let j = s[i..]
        .find(end)
        .unwrap_or_else(|| panic!("no {end:?} after {start:?}"));
    &s[i..i + j]
}

/// The IDs of an `ids` block: `<code>ID</code>…`.
fn codes(block: &str) -> BTreeSet<String> {
    block
        .split("<code>")
        .skip(1)
        .map(|c| c.split("</code>").next().unwrap_or_default().to_string())
        .collect()
}

fn attr(tag: &str, name: &str) -> String {
    between(tag, &format!("{name}=\""), "\"").to_string()
}

#[test]
fn zeroed_index_page_report_has_verdict_ids_and_the_damaged_page() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("zeroed_index_page", dir.path());
    let t = truth("zeroed_index_page");
    let html = html_of(dir.path(), &["check", "zeroed_index_page.db"], 1);

    assert!(html.starts_with("<!doctype html>"), "{}", &html[..80]);
    assert!(html.contains("id=\"verdict\">corrupt</span>"));
    assert!(html.contains("149 customers would be rejected by the POS."));

    let expected: BTreeSet<String> = strings(&t["affected_customer_ids"]).into_iter().collect();
    let block = between(&html, "<h2>Customers the POS rejects (149)</h2>", "</div>");
    assert_eq!(codes(block), expected);

    // the grid: one square per page (or per stated group), damage marked
    let map_tag = between(&html, "<div class=\"map\"", ">");
    let pages: u64 = attr(map_tag, "data-pages").parse().unwrap();
    let k: u64 = attr(map_tag, "data-pages-per-cell").parse().unwrap();
    assert_eq!(pages, t["files"]["db"]["bytes"].as_u64().unwrap() / 4096);
    assert_eq!(k, 1, "a small file gets one square per page");
    assert!(html.contains("one square per page"));
    let grid = between(&html, "id=\"page-map\"", "</div>");
    let cells: Vec<&str> = grid.split("<i class=\"pg ").skip(1).collect();
    assert_eq!(cells.len() as u64, pages.div_ceil(k));
    let damaged: Vec<u64> = t["damage"]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(!damaged.is_empty());
    for (i, cell) in cells.iter().enumerate() {
        let page = i as u64 + 1;
        let marked = cell.starts_with("s-damaged");
        assert_eq!(marked, damaged.contains(&page), "page {page}: {cell}");
        if marked {
            assert!(
                cell.contains(&format!(
                    "title=\"page {page}: sqlite_autoindex_customers_1, damaged\""
                )),
                "{cell}"
            );
        }
    }
    assert!(html.contains("Damaged: page 241 (sqlite_autoindex_customers_1)"));

    // self-contained: nothing to fetch
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script") && !html.contains("<link"));
}

#[test]
fn no_personal_data_in_the_html() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("stale_pk_page_dups", dir.path());
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT name, phone, email, card_number FROM customers NOT INDEXED")
        .unwrap();
    let values: Vec<String> = stmt
        .query_map([], |r| {
            Ok((0..4)
                .filter_map(|i| r.get::<_, Option<String>>(i).ok().flatten())
                .collect::<Vec<_>>())
        })
        .unwrap()
        .flat_map(|v| v.unwrap())
        .collect();
    drop(stmt);
    drop(conn);
    assert!(values.len() > 4000, "{} values", values.len());

    let check = html_of(dir.path(), &["check", "stale_pk_page_dups.db"], 1);
    let snaps = dir.path().join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    std::fs::copy(
        super::support::fixtures().join("stale_pk_page_dups.snap.db"),
        snaps.join("nightly.db"),
    )
    .unwrap();
    let repair = html_of(
        dir.path(),
        &[
            "repair",
            "stale_pk_page_dups.db",
            "--snapshot",
            "snaps",
            "--backup-dir",
            "snaps",
        ],
        1,
    );
    for html in [&check, &repair] {
        for v in &values {
            assert!(
                !html.contains(v.as_str()) && !html.contains(&esc(v)),
                "personal data {v:?} in the HTML"
            );
        }
    }
}

#[test]
fn the_database_path_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("stale_pk_page", dir.path());
    std::fs::rename(&db, dir.path().join("a<b&c\".db")).unwrap();
    let html = html_of(dir.path(), &["check", "a<b&c\".db"], 1);
    assert!(
        html.contains("<code>a&lt;b&amp;c&quot;.db</code>"),
        "{html}"
    );
    assert!(!html.contains("a<b&c"));
}

#[test]
fn a_repair_report_lists_the_actions_and_the_quarantined_ids() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("stale_pk_page_dups", dir.path());
    std::fs::copy(
        super::support::fixtures().join("stale_pk_page_dups.snap.db"),
        dir.path().join("snap.db"),
    )
    .unwrap();
    let html = html_of(
        dir.path(),
        &[
            "repair",
            "stale_pk_page_dups.db",
            "--snapshot",
            "snap.db",
            "--json",
            "r.json",
        ],
        1,
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert!(html.contains("id=\"verdict\">repaired_with_losses</span>"));
    assert!(
        html.contains("16 customers were rejected by the POS before the repair; 0 are after it.")
    );

    // every action, in order
    let table = between(&html, "<table id=\"actions\">", "</table>");
    let actions = json["actions"].as_array().unwrap();
    assert!(actions.len() >= 4, "{json}");
    let mut at = 0;
    for (i, a) in actions.iter().enumerate() {
        let row = format!(
            "<tr><td>{}</td><td><code>{}</code></td>",
            i + 1,
            esc(a["kind"].as_str().unwrap())
        );
        let pos = table[at..]
            .find(&row)
            .unwrap_or_else(|| panic!("no {row} in order"));
        at += pos;
        assert!(table[at..].contains(&esc(a["detail"].as_str().unwrap())));
    }
    assert!(table.contains("<code>quarantine</code>") && table.contains("<code>swap</code>"));

    let expected: BTreeSet<String> =
        strings(&truth("stale_pk_page_dups")["duplicate_customer_ids"])
            .into_iter()
            .collect();
    let section = &html[html.find("<h3 id=\"quarantined\">").unwrap()..];
    let block = between(section, "<div class=\"ids\">", "</div>");
    assert_eq!(codes(block), expected);
    assert!(html.contains(&esc(json["backup_path"].as_str().unwrap())));
}

/// Renders the report headless in Debian's Chromium and checks the picture is
/// not blank. Fails, saying so, when Chromium is not installed.
#[test]
fn the_report_renders_in_headless_chromium() {
    super::support::require_tool("chromium", "it renders the HTML report headless");
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("zeroed_index_page", dir.path());
    html_of(dir.path(), &["check", "zeroed_index_page.db"], 1);
    let png = dir.path().join("report.png");
    let profile = dir.path().join("profile");
    chromium(&dir.path().join("report.html"), &png, &profile, 1200);
    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(bytes.starts_with(b"\x89PNG"), "no PNG written");
    assert!(bytes.len() > 10_000, "PNG of {} bytes: blank?", bytes.len());
}
