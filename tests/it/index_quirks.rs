//! Indexes that check must read as SQLite does: a composite index whose key
//! starts with the customer ID (the POS's lookup by ID alone goes through
//! it too), an index whose name is not valid UTF-8 (SQLite knows it by
//! those bytes alone). Truth: the fixture builder's (Python's sqlite3) and the stock
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

/// `custodian repair` of the copy `db` of `fixture` with its snapshot:
/// exit 0, repaired, and the stock CLI's integrity_check says ok.
fn repaired_with_its_snapshot(fixture: &str, db: &std::path::Path, dir: &std::path::Path) {
    let snap = super::support::fixtures().join(format!("{fixture}.snap.db"));
    let r = run(
        &[
            "repair",
            db.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--json",
            "-",
        ],
        dir,
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "repaired");
    assert_eq!(sqlite3_cli(db, "PRAGMA integrity_check"), "ok");
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
    repaired_with_its_snapshot("composite_id_entry_rewritten", &db, dir.path());
    assert_eq!(cli_lookup(&db, ID_STATUS, a), vec![ra]);
    assert_eq!(cli_lookup(&db, ID_STATUS, b), vec![rb]);
    let r = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
}

const LATIN1: &[u8] = b"idx_customers_stra\xdfe";

/// The stock CLI's output for SQL given as bytes (on its standard input:
/// an index name that is not UTF-8 cannot be an argument's text).
pub(super) fn cli_bytes(db: &std::path::Path, sql: &[u8]) -> String {
    use std::io::Write;
    super::support::require_tool("sqlite3", "the stock SQLite CLI is the independent oracle");
    let mut child = std::process::Command::new("sqlite3")
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(sql).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Rows the stock CLI finds for `email` through the Latin-1-named index.
fn latin1_lookup(db: &std::path::Path, email: &str) -> String {
    let mut sql = b"SELECT rowid FROM customers INDEXED BY \"".to_vec();
    sql.extend_from_slice(LATIN1);
    sql.extend_from_slice(format!("\" WHERE email = '{email}';\n").as_bytes());
    cli_bytes(db, &sql)
}

/// A stale page of an index whose name is not valid UTF-8 (Latin-1
/// `idx_customers_straße`): check reads the index by its true bytes, so its
/// findings are exactly the stale page's (the generic table in check.rs
/// holds them to the truth entry by entry); nothing is called unreadable or
/// not compared. diagnose names the customers, and repair rebuilds the
/// index under the same bytes. Truth: the fixture builder's lookups and the
/// stock CLI, given the name's bytes.
#[test]
fn an_index_named_by_bytes_that_are_not_utf8_is_checked_and_repaired() {
    let t = truth("index_name_not_utf8");
    let shown = String::from_utf8_lossy(LATIN1).into_owned();
    assert_eq!(t["damage"]["object"], shown.as_str());
    let affected = strings(&t["affected_customer_ids"]);
    assert_eq!(strings(&t["affected_by_index"][&shown]), affected);
    assert_eq!(affected.len(), 10);
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("index_name_not_utf8", dir.path());
    let email_of = |id: &str| {
        sqlite3_cli(
            &db,
            &format!("SELECT email FROM customers NOT INDEXED WHERE customer_id = '{id}'"),
        )
    };
    let row_of = |id: &str| {
        sqlite3_cli(
            &db,
            &format!("SELECT rowid FROM customers NOT INDEXED WHERE customer_id = '{id}'"),
        )
    };
    // the stock CLI, by the name's bytes: the stale page hides each of them
    for id in &affected {
        assert_eq!(latin1_lookup(&db, &email_of(id)), "", "{id}");
    }

    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["affected_customer_ids"]), affected);
    // (its findings, entry by entry, are held to the truth by check.rs's
    // table: none is record_damaged, rows_unreadable or index_not_compared)
    assert!(
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["object"] == shown.as_str()),
        "{}",
        r.show()
    );
    assert_eq!(j["coverage"]["complete"], true);

    let r = run(
        &[
            "diagnose",
            db.to_str().unwrap(),
            &affected[0],
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(r.json()["diagnoses"][0]["cause"], "index_entry_lost");

    repaired_with_its_snapshot("index_name_not_utf8", &db, dir.path());
    let hex: String = LATIN1.iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(
        sqlite3_cli(
            &db,
            "SELECT hex(name) FROM sqlite_schema WHERE name LIKE 'idx_customers_stra%'"
        ),
        hex,
        "the index keeps its name's bytes"
    );
    for id in &affected {
        assert_eq!(latin1_lookup(&db, &email_of(id)), row_of(id), "{id}");
    }
    let r = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
}
