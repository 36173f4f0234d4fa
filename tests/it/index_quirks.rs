//! Indexes that check must read as SQLite does: a composite index whose key
//! starts with the customer ID (the POS's lookup by ID alone goes through
//! it too). Truth: the fixture builder's (Python's sqlite3) and the stock
//! `sqlite3` CLI.

use super::support::{fixture_copy, run, sqlite3_cli, strings, truth};

const ID_STATUS: &str = "idx_customers_id_status";

/// Rows the lookup `customer_id = ID` through `index` returns, by the stock
/// CLI (the index forced with INDEXED BY), sorted.
fn cli_lookup(db: &std::path::Path, index: &str, id: &str) -> Vec<i64> {
    let out = sqlite3_cli(
        db,
        &format!(
            "SELECT rowid FROM customers INDEXED BY {index} WHERE customer_id = '{id}' ORDER BY rowid"
        ),
    );
    out.lines().map(|l| l.parse().unwrap()).collect()
}

/// One entry of the index on (customer_id, status) holds its neighbour A's
/// ID over customer B's row: the lookup by A's ID alone returns B's row
/// too, while A's full key (ID, status) finds only A's own row. check names
/// A (the lookup leads to another customer) and B (its entry is lost), with
/// the entry diff agreeing: B's entry missing, the rewritten entry a key
/// mismatch under A's ID. diagnose says the same for each, and repair
/// rebuilds the index.
#[test]
fn a_composite_id_index_entry_holding_another_id_is_named() {
    let t = truth("composite_id_entry_rewritten");
    let a = t["wrong_row_customer_id"].as_str().unwrap();
    let b = t["entry_lost_customer_id"].as_str().unwrap();
    let ra = t["wrong_row_customer_rowid"].as_i64().unwrap();
    let rb = t["entry_lost_customer_rowid"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("composite_id_entry_rewritten", dir.path());

    // the stock CLI: A's lookup returns B's row too, B's returns nothing,
    // and row rb holds B
    assert_eq!(cli_lookup(&db, ID_STATUS, a), vec![ra, rb]);
    assert_eq!(cli_lookup(&db, ID_STATUS, b), Vec::<i64>::new());
    assert_eq!(
        sqlite3_cli(
            &db,
            &format!("SELECT customer_id FROM customers NOT INDEXED WHERE rowid = {rb}")
        ),
        b
    );
    let mut both = vec![a.to_string(), b.to_string()];
    both.sort();
    assert_eq!(strings(&t["affected_customer_ids"]), both);

    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["affected_customer_ids"]), both, "{}", r.show());
    let finding = |code: &str| -> &serde_json::Value {
        let fs: Vec<&serde_json::Value> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == code && f["object"] == ID_STATUS)
            .collect();
        assert_eq!(fs.len(), 1, "{code}: {}", r.show());
        fs[0]
    };
    let lookup = finding("lookup_wrong");
    assert_eq!(strings(&lookup["customer_ids"]), both);
    assert_eq!(lookup["count"], 2);
    let mismatch = finding("index_key_mismatch");
    assert_eq!(strings(&mismatch["customer_ids"]), vec![a.to_string()]);
    assert_eq!(mismatch["entries"][0]["rowid"], rb);
    assert_eq!(mismatch["entries"][0]["customer_id"], a);
    let missing = finding("index_entry_missing");
    assert_eq!(strings(&missing["customer_ids"]), vec![b.to_string()]);
    assert_eq!(missing["entries"][0]["rowid"], rb);

    // diagnose: neither is served; A's lookup leads to B's row
    let r = run(
        &["diagnose", db.to_str().unwrap(), a, b, "--json", "-"],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let d = r.json();
    assert_eq!(d["diagnoses"][0]["served"], false, "{}", r.show());
    assert_eq!(d["diagnoses"][0]["cause"], "index_leads_elsewhere");
    assert_eq!(d["diagnoses"][1]["served"], false);
    assert_eq!(d["diagnoses"][1]["cause"], "index_entry_lost");

    // repair rebuilds the index: both lookups right again, by the stock CLI
    let snap = super::support::fixtures().join("composite_id_entry_rewritten.snap.db");
    let r = run(
        &[
            "repair",
            db.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "repaired");
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(cli_lookup(&db, ID_STATUS, a), vec![ra]);
    assert_eq!(cli_lookup(&db, ID_STATUS, b), vec![rb]);
    let r = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
}
