//! `custodian repair` on the other kinds of damage real POS databases get
//! (issue 8, "the repair ladder, extended"): auto_vacuum and
//! incremental_vacuum files with their pointer maps, a damaged freelist, a
//! damaged header or schema table with a snapshot, WITHOUT ROWID customer
//! tables, several kinds of damage in one file. Each fixture is built by
//! tools/make_fixtures.py with its truth computed there (Python's sqlite3),
//! and each case checks the exact result: the customer rows by the
//! builder's digest, the stock sqlite3's integrity_check, the exact
//! restored / quarantined / unrecoverable IDs, the exit code.

use std::path::PathBuf;

use super::repair::{
    Setup, assert_found_through_every_index, customers_sha256, stock_integrity_check,
};
use super::support::{run, sqlite3_cli, strings, truth};

/// One fixture and what its repair must give.
struct KindCase {
    fixture: &'static str,
    exit: i32,
    verdict: &'static str,
    /// Action kinds the report must list, in this order (others may come between).
    actions: &'static [&'static str],
    /// `PRAGMA auto_vacuum` of the repaired file, by the stock sqlite3: the
    /// repair keeps the file's mode.
    auto_vacuum: &'static str,
}

const CASES: &[KindCase] = &[
    KindCase {
        fixture: "stale_pk_page_autovacuum",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "rebuild_index",
            "free_pages",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "1",
    },
    KindCase {
        fixture: "stale_pk_page_incremental",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "rebuild_index",
            "free_pages",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "2",
    },
    KindCase {
        fixture: "ptrmap_page_zeroed",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "1",
    },
    KindCase {
        fixture: "freelist_trunk_zeroed",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "free_pages",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "freelist_trunk_out_of_range",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "freelist_count_wrong",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "0",
    },
];

/// The report's finding with `code` (the test fails if there is none).
fn finding(report: &serde_json::Value, code: &str) -> serde_json::Value {
    report["findings"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["code"] == code))
        .cloned()
        .unwrap_or_else(|| panic!("no {code} finding: {report}"))
}

/// The IDs a truth file lists under `key` (none when it has no such key).
fn truth_ids(t: &serde_json::Value, key: &str) -> Vec<String> {
    strings(&t[key])
}

fn check_case(case: &KindCase) {
    let name = case.fixture;
    let s = Setup::new(name);
    let t = truth(name);
    let original = std::fs::read(&s.db).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), case.exit, "{name}: {}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], case.verdict, "{name}");
    let want = t
        .get("expected_after_repair_sha256")
        .unwrap_or(&t["expected_customers_sha256"])
        .as_str()
        .unwrap();
    assert_eq!(customers_sha256(&s.db), want, "{name}: customer rows");
    assert_eq!(stock_integrity_check(&s.db), "ok", "{name}");
    for (field, key) in [
        ("restored_customer_ids", "repair_restored_customer_ids"),
        (
            "quarantined_customer_ids",
            "repair_quarantined_customer_ids",
        ),
        (
            "unrecoverable_customer_ids",
            "repair_unrecoverable_customer_ids",
        ),
    ] {
        assert_eq!(strings(&j[field]), truth_ids(&t, key), "{name}: {field}");
    }
    assert_found_through_every_index(&s.db, &strings(&t["affected_customer_ids"]));
    let c = run(&["check", s.db.to_str().unwrap()], s.dir.path());
    assert_eq!(c.code(), 0, "{name}: the check agrees: {}", c.show());
    assert_eq!(
        std::fs::read(PathBuf::from(j["backup_path"].as_str().unwrap())).unwrap(),
        original,
        "{name}: the backup is the original"
    );
    assert_eq!(
        sqlite3_cli(&s.db, "PRAGMA auto_vacuum"),
        case.auto_vacuum,
        "{name}"
    );
    if let Some(free) = t.get("free_pages_after_repair") {
        assert_eq!(
            sqlite3_cli(&s.db, "PRAGMA freelist_count"),
            free.to_string(),
            "{name}: every page no b-tree uses is on the freelist"
        );
    }
    let kinds: Vec<&str> = j["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    let mut rest = kinds.iter();
    for want in case.actions {
        assert!(
            rest.any(|k| k == want),
            "{name}: action {want} missing or out of order in {kinds:?}"
        );
    }
}

#[test]
fn every_kind_of_damage_is_repaired_exactly() {
    for case in CASES {
        check_case(case);
    }
}

/// The pointer map itself: check names every wrong entry (as SQLite's
/// integrity_check does, one per page), and the plan rewrites the maps.
#[test]
fn a_zeroed_pointer_map_is_found_and_planned() {
    let name = "ptrmap_page_zeroed";
    let s = Setup::new(name);
    let t = truth(name);
    let c = run(
        &["check", s.db.to_str().unwrap(), "--json", "-"],
        s.dir.path(),
    );
    assert_eq!(c.code(), 1, "{}", c.show());
    let j = c.json();
    let f = finding(&j, "ptrmap_damaged");
    assert_eq!(f["count"], t["ptrmap_entries_lost"], "{f}");
    assert_eq!(f["pages"], serde_json::json!([2]));
    assert_eq!(strings(&j["affected_customer_ids"]), Vec::<String>::new());
    let before = std::fs::read(&s.db).unwrap();
    let r = s.repair(&["--dry-run"]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let plan = &r.json()["plan"];
    assert_eq!(plan["strategy"], "patch_copy");
    let reasons = strings(&plan["page_lists"]["rebuild"]["reasons"]);
    assert_eq!(reasons.len(), 1, "{plan}");
    assert!(
        reasons[0].starts_with("ptrmap_damaged: 246 pointer-map entries"),
        "{reasons:?}"
    );
    assert_eq!(
        std::fs::read(&s.db).unwrap(),
        before,
        "a dry run changes nothing"
    );
}
