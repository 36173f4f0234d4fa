//! `custodian diagnose`: the cause for each kind of fixture, in plain words
//! and in JSON, and the exit code (0 only when every ID is served).

use super::support::{fixture_copy, fixtures, run, strings, truth};

fn diagnose(name: &str, ids: &[&str], extra: &[&str]) -> (i32, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(name, dir.path());
    let mut args = vec!["diagnose", db.to_str().unwrap()];
    args.extend_from_slice(ids);
    args.extend_from_slice(extra);
    let text = run(&args, dir.path());
    args.extend_from_slice(&["--json", "-"]);
    let r = run(&args, dir.path());
    assert!(r.code() == 0 || r.code() == 1, "{}", r.show());
    (r.code(), r.json(), text.stdout())
}

fn cause(j: &serde_json::Value, i: usize) -> String {
    j["diagnoses"][i]["cause"].as_str().unwrap().to_string()
}

#[test]
fn each_kind_of_damage_gets_its_cause() {
    let lost = strings(&truth("stale_pk_page")["affected_customer_ids"]);
    let dup = truth("stale_pk_page_dups")["duplicates"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let zeroed = strings(&truth("zeroed_index_page")["affected_customer_ids"]);
    let table_lost = strings(&truth("damaged_table_leaf")["lost_customer_ids"]);
    let flipped = truth("flipped_id_byte")["damage"].clone();
    for (fixture, id, want, words) in [
        (
            "stale_pk_page",
            lost[0].as_str(),
            "index_entry_lost",
            "has lost its entry — run `custodian repair`",
        ),
        (
            "stale_pk_page_dups",
            dup.as_str(),
            "duplicate",
            "2 rows hold this ID",
        ),
        (
            "zeroed_index_page",
            zeroed[0].as_str(),
            "lookup_error",
            "fails",
        ),
        (
            "damaged_table_leaf",
            table_lost[0].as_str(),
            "row_lost",
            "gone or unreadable",
        ),
        (
            "flipped_id_byte",
            flipped["true_id"].as_str().unwrap(),
            "index_leads_elsewhere",
            "which holds customer ID",
        ),
    ] {
        let (code, j, text) = diagnose(fixture, &[id], &[]);
        assert_eq!(code, 1, "{fixture}: {j}");
        assert_eq!(cause(&j, 0), want, "{fixture}: {j}");
        assert_eq!(j["diagnoses"][0]["served"], false);
        assert!(
            text.starts_with(&format!("{id}: ")) && text.contains(words),
            "{fixture}: {text}"
        );
        assert_eq!(text.lines().count(), 1);
    }
}

#[test]
fn a_healthy_customer_is_served_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (id, rowid): (String, i64) = conn
        .query_row("SELECT customer_id, rowid FROM customers WHERE status = 'active' ORDER BY rowid LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    drop(conn);
    let r = run(&["diagnose", db.to_str().unwrap(), &id], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        r.stdout(),
        format!("{id}: served correctly: row {rowid} is found through every index\n")
    );
}

#[test]
fn typos_rules_status_and_vanished_customers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"id_rule": {"regex": "^C[0-9]{12}$"}, "status_column": "status", "status_values": {"closed": ["closed"]}}"#,
    )
    .unwrap();
    let db = fixture_copy("healthy", dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let closed: String = conn
        .query_row(
            "SELECT customer_id FROM customers WHERE status = 'closed' ORDER BY rowid LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let real: String = conn
        .query_row(
            "SELECT customer_id FROM customers ORDER BY rowid LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    // one digit off, not in the table
    let mut typo = real.clone();
    let last = typo.pop().unwrap();
    let mut t = typo.clone();
    t.push(if last == '0' { '1' } else { '0' });
    let typo = t;
    let padded = format!(" {real}");
    let r = run(
        &[
            "diagnose",
            db.to_str().unwrap(),
            &typo,
            "C12",
            &closed,
            &padded,
            "--config",
            cfg.to_str().unwrap(),
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(cause(&j, 0), "not_found");
    assert_eq!(
        strings(&j["diagnoses"][0]["did_you_mean"]),
        vec![real.clone()]
    );
    assert_eq!(cause(&j, 1), "id_format");
    assert!(
        j["diagnoses"][1]["id_rule_violation"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );
    assert_eq!(cause(&j, 2), "closed");
    assert_eq!(j["diagnoses"][2]["status"], "closed");
    assert_eq!(cause(&j, 3), "id_format", "a leading space breaks the rule");
    assert_eq!(strings(&j["diagnoses"][3]["did_you_mean"]), vec![real]);

    // a customer the damage hides entirely: the snapshot still has it
    let gone = strings(&truth("truncated")["untraceable_customer_ids"]);
    let snap = fixtures().join("truncated.snap.db");
    let (code, j, text) = diagnose(
        "truncated",
        &[&gone[0]],
        &["--snapshot", snap.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert_eq!(cause(&j, 0), "lookup_error", "{j}");
    assert_eq!(j["diagnoses"][0]["in_snapshot"], snap.to_str().unwrap());
    assert!(
        text.contains("snapshot") && text.contains("custodian repair"),
        "{text}"
    );
    // after a repair it is gone from table and indexes alike: vanished
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (id, rowid): (String, i64) = conn
        .query_row(
            "SELECT customer_id, rowid FROM customers ORDER BY rowid DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    std::fs::copy(&db, dir.path().join("nightly.db")).unwrap();
    conn.execute("DELETE FROM customers WHERE rowid = ?1", [rowid])
        .unwrap();
    drop(conn);
    let r = run(
        &[
            "diagnose",
            db.to_str().unwrap(),
            &id,
            "--snapshot",
            dir.path().join("nightly.db").to_str().unwrap(),
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(cause(&r.json(), 0), "vanished");
}
