//! `custodian diagnose`: the cause for each kind of fixture, in plain words
//! and in JSON, and the exit code (0 only when every ID is served).

use std::collections::BTreeSet;

use super::support::{fixture_copy, fixtures, root_page, run, sqlite3_cli, strings, truth};

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

    // a customer the damage hides entirely, in a file SQLite refuses as a
    // whole (truncated): refused, and the snapshot still has it
    let gone = strings(&truth("truncated")["untraceable_customer_ids"]);
    let snap = fixtures().join("truncated.snap.db");
    let (code, j, text) = diagnose(
        "truncated",
        &[&gone[0]],
        &["--snapshot", snap.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert_eq!(cause(&j, 0), "database_refused", "{j}");
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

/// The cause `diagnose` must give every customer of a fixture, by the
/// truth's category of the customer: its row still in the table
/// (`present`), its row gone (`gone`: lost to the damage, or an ID that
/// only stale index entries still name), a re-registered duplicate.
struct Causes {
    fixture: &'static str,
    present: &'static str,
    gone: &'static str,
}

const CAUSES: &[Causes] = &[
    Causes {
        fixture: "healthy",
        present: "-",
        gone: "-",
    },
    Causes {
        fixture: "stale_pk_page",
        present: "index_entry_lost",
        gone: "-",
    },
    Causes {
        fixture: "stale_pk_page_dups",
        present: "index_entry_lost",
        gone: "-",
    },
    Causes {
        fixture: "stale_secondary_page",
        present: "index_entry_lost",
        gone: "-",
    },
    Causes {
        fixture: "zeroed_index_page",
        present: "lookup_error",
        gone: "-",
    },
    Causes {
        fixture: "garbage_index_page",
        present: "lookup_error",
        gone: "-",
    },
    Causes {
        fixture: "surplus_index_entries",
        present: "-",
        gone: "row_lost",
    },
    Causes {
        fixture: "damaged_table_leaf",
        present: "-",
        gone: "row_lost",
    },
    Causes {
        fixture: "damaged_table_interior",
        present: "-",
        gone: "lookup_error",
    },
    Causes {
        fixture: "lost_customer_leaf",
        present: "-",
        gone: "lookup_error",
    },
    Causes {
        fixture: "overflow_chain_broken",
        present: "-",
        gone: "lookup_error",
    },
    Causes {
        fixture: "index_definition_removed",
        present: "-",
        gone: "-",
    },
    Causes {
        fixture: "wal_stale_index",
        present: "index_entry_lost",
        gone: "-",
    },
    Causes {
        fixture: "flipped_id_byte",
        present: "index_entry_lost",
        gone: "index_leads_elsewhere",
    },
    // SQLite refuses the whole file: every ID asked is refused
    Causes {
        fixture: "truncated",
        present: "database_refused",
        gone: "database_refused",
    },
    Causes {
        fixture: "stale_pk_page_autovacuum",
        present: "index_entry_lost",
        gone: "-",
    },
    Causes {
        fixture: "stale_pk_page_incremental",
        present: "index_entry_lost",
        gone: "-",
    },
    Causes {
        fixture: "freelist_trunk_zeroed",
        present: "-",
        gone: "-",
    },
    Causes {
        fixture: "freelist_count_wrong",
        present: "-",
        gone: "-",
    },
    Causes {
        fixture: "ptrmap_page_zeroed",
        present: "-",
        gone: "-",
    },
    // the header's auto-vacuum bookkeeping: every lookup is right
    Causes {
        fixture: "largest_root_page_damaged",
        present: "-",
        gone: "-",
    },
    Causes {
        fixture: "largest_root_page_zeroed",
        present: "-",
        gone: "-",
    },
    Causes {
        fixture: "freelist_trunk_out_of_range",
        present: "-",
        gone: "-",
    },
    // two cells of a customer leaf with rowids out of key order: SQLite's
    // seek by rowid reaches none of the six rejected customers' rows (the
    // stock sqlite3's lookup by ID fails: check.rs)
    Causes {
        fixture: "misplaced_table_cells",
        present: "-",
        gone: "lookup_error",
    },
    // a stale page of an index whose name is not valid UTF-8
    Causes {
        fixture: "index_name_not_utf8",
        present: "index_entry_lost",
        gone: "-",
    },
];

/// customer ID → rowids holding it, read by SQLite without any index from
/// `db` (an unreadable table yields what SQLite reads before the damage, and
/// the rest by rowid).
fn rows_by_id(db: &std::path::Path) -> std::collections::BTreeMap<String, Vec<i64>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let _ = conn.pragma_update(None, "writable_schema", true);
    let mut out: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let mut add = |id: String, rowid: i64| {
        let v = out.entry(id).or_default();
        if !v.contains(&rowid) {
            v.push(rowid);
        }
    };
    let Ok(mut stmt) =
        conn.prepare("SELECT customer_id, rowid FROM customers NOT INDEXED WHERE rowid = ?1")
    else {
        return out;
    };
    let max: i64 = conn
        .query_row("SELECT max(rowid) FROM customers NOT INDEXED", [], |r| {
            r.get(0)
        })
        .unwrap_or(5000);
    for rowid in 1..=max.max(5000) {
        if let Ok((id, r)) = stmt.query_row([rowid], |r| Ok((r.get::<_, String>(0)?, r.get(1)?))) {
            add(id, r);
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Every customer of every fixture (each ID the truth or the snapshot
/// knows): the exact cause, `served` and, where the row exists, its rowids
/// as SQLite reads them; exit 1 exactly when some ID is not served.
#[test]
fn diagnose_answers_every_customer_of_every_fixture() {
    let mut failures = Vec::new();
    for c in CAUSES {
        let t = truth(c.fixture);
        let affected: BTreeSet<String> = strings(&t["affected_customer_ids"]).into_iter().collect();
        let lost: BTreeSet<String> = strings(&t["lost_customer_ids"]).into_iter().collect();
        let dups: BTreeSet<String> = strings(&t["duplicate_customer_ids"]).into_iter().collect();
        let live = rows_by_id(&fixtures().join(format!("{}.db", c.fixture)));
        let mut ids: BTreeSet<String> = live.keys().cloned().collect();
        ids.extend(affected.iter().cloned());
        ids.extend(lost.iter().cloned());
        let snap = fixtures().join(format!("{}.snap.db", c.fixture));
        if snap.exists() {
            ids.extend(rows_by_id(&snap).into_keys());
        }
        let list: Vec<&str> = ids.iter().map(String::as_str).collect();
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(c.fixture, dir.path());
        let mut args = vec!["diagnose", db.to_str().unwrap(), "--json", "-"];
        args.extend_from_slice(&list);
        let r = run(&args, dir.path());
        let (code, j) = (r.code(), r.json());
        let d = j["diagnoses"].as_array().unwrap();
        if d.len() != ids.len() {
            failures.push(format!(
                "{}: {} answers for {} IDs",
                c.fixture,
                d.len(),
                ids.len()
            ));
            continue;
        }
        let mut wrong = std::collections::BTreeMap::<String, Vec<String>>::new();
        let mut unserved = 0;
        for (a, id) in d.iter().zip(&ids) {
            assert_eq!(
                a["customer_id"],
                id.as_str(),
                "{}: answers in the order asked",
                c.fixture
            );
            // the truth's category of this customer
            let gone = lost.contains(id) || !live.contains_key(id);
            let refused = t["pos_refusal"].is_string();
            let want = if refused {
                c.present
            } else if dups.contains(id) {
                "duplicate"
            } else if affected.contains(id) || (gone && c.gone != "-") {
                if gone { c.gone } else { c.present }
            } else {
                "served"
            };
            let served = want == "served";
            if !served {
                unserved += 1;
            }
            let cause = a["cause"].as_str().unwrap_or("");
            let mut bad = Vec::new();
            if cause != want {
                bad.push(format!("cause {cause}, want {want}"));
            }
            if a["served"] != served {
                bad.push(format!("served {}", a["served"]));
            }
            if let Some(rows) = live.get(id).filter(|_| !gone) {
                let got: Vec<i64> = a["rowids"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|x| x.as_i64()).collect())
                    .unwrap_or_default();
                if want != "index_leads_elsewhere" && &got != rows {
                    bad.push(format!("rowids {got:?}, SQLite reads {rows:?}"));
                }
            }
            if !bad.is_empty() {
                wrong.entry(bad.join("; ")).or_default().push(id.clone());
            }
        }
        for (what, who) in wrong {
            failures.push(format!(
                "{}: {} IDs: {what} (e.g. {:?})",
                c.fixture,
                who.len(),
                &who[..who.len().min(3)]
            ));
        }
        let want_code = if unserved > 0 { 1 } else { 0 };
        if code != want_code {
            failures.push(format!("{}: exit {code}, want {want_code}", c.fixture));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A non-UNIQUE index whose key holds the customer ID, `(customer_id,
/// status)`, one of its entries rewritten in place (the entry of row 2,
/// `C0002`, now reads `C0001`, same length, still in key order). The
/// lookup of C0001 by its own key then returns its row and row 2, which
/// holds C0002: the POS gets another customer. Truth: the stock sqlite3's
/// own lookup through that index; the served customer is one the rewrite
/// did not touch.
#[test]
fn a_lookup_by_an_id_that_also_returns_another_customers_row_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA page_size = 4096;
         CREATE TABLE customers(customer_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL);
         CREATE INDEX idx_customers_id_status ON customers(customer_id, status);",
    )
    .unwrap();
    for i in 1..=40 {
        conn.execute(
            "INSERT INTO customers(rowid, customer_id, name, status) VALUES (?1, ?2, ?3, 'active')",
            rusqlite::params![i, format!("C{i:04}"), format!("Customer {i}")],
        )
        .unwrap();
    }
    drop(conn);
    let off = (root_page(&db, "idx_customers_id_status") as usize - 1) * 4096;
    let mut bytes = std::fs::read(&db).unwrap();
    assert_eq!(bytes[off], 0x0a, "the index is one leaf page");
    let page = &mut bytes[off..off + 4096];
    let at: Vec<usize> = (0..page.len() - 11)
        .filter(|&i| &page[i..i + 11] == b"C0002active")
        .collect();
    assert_eq!(at.len(), 1, "one entry of C0002");
    page[at[0] + 4] = b'1';
    std::fs::write(&db, &bytes).unwrap();
    let found = sqlite3_cli(
        &db,
        "SELECT c.rowid || ' ' || (SELECT t.customer_id FROM customers AS t NOT INDEXED \
         WHERE t.rowid = c.rowid) FROM customers AS c INDEXED BY idx_customers_id_status \
         WHERE c.customer_id = 'C0001' AND c.status = 'active' ORDER BY 1",
    );
    // (the rowids the index gives, each with the ID its row holds)
    assert_eq!(found, "1 C0001\n2 C0002");

    let r = run(
        &[
            "diagnose",
            db.to_str().unwrap(),
            "C0001",
            "C0003",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let d = &j["diagnoses"];
    assert_eq!(d[0]["customer_id"], "C0001");
    assert_eq!(d[0]["served"], false, "{j:#}");
    assert_eq!(cause(&j, 0), "index_leads_elsewhere", "{j:#}");
    assert_eq!(d[0]["rowids"], serde_json::json!([1]));
    assert_eq!(d[0]["indexes"]["idx_customers_id_status"], "wrong_row");
    assert_eq!(d[1]["customer_id"], "C0003");
    assert_eq!(d[1]["served"], true, "{j:#}");
    assert_eq!(d[1]["indexes"]["idx_customers_id_status"], "right");
}

/// `diagnose` of `ids` in fixture `name`: every ID the truth names as
/// rejected is not served, with exactly the truth's lookups wrong (the
/// fixture builder's own lookups with Python's sqlite3, per index: the
/// index names whose answer is not `right`); every other ID is served.
/// Returns the answers.
fn answers_match_the_truth_per_index(name: &str, ids: &[String]) -> Vec<serde_json::Value> {
    let t = truth(name);
    let affected: BTreeSet<String> = strings(&t["affected_customer_ids"]).into_iter().collect();
    assert!(affected.iter().all(|a| ids.contains(a)));
    let list: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (code, j, _) = diagnose(name, &list, &[]);
    assert_eq!(code, 1, "{j}");
    let d = j["diagnoses"].as_array().unwrap().clone();
    assert_eq!(d.len(), ids.len());
    let by_index = t["affected_by_index"].as_object().unwrap();
    let mut failures = Vec::new();
    for (a, id) in d.iter().zip(ids) {
        assert_eq!(a["customer_id"], id.as_str());
        let wrong: BTreeSet<String> = a["indexes"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| *v != "right")
            .map(|(k, _)| k.clone())
            .collect();
        let want: BTreeSet<String> = by_index
            .iter()
            .filter(|(_, v)| strings(v).contains(id))
            .map(|(k, _)| k.clone())
            .collect();
        let served = !affected.contains(id);
        if a["served"] != served || wrong != want {
            failures.push(format!("{id}: {a}; truth: wrong through {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    d
}

/// A lost leaf of a WITHOUT ROWID customers table: for every customer the
/// POS rejects, exactly the lookups that go wrong are the truth's: the
/// lost rows through the table and every index, the customer whose row
/// bounds the lost leaf from above through the table alone (its seek by
/// ID steps into the lost leaf; through each index its row is read by key
/// and ID: without_rowid.rs asks the stock sqlite3 the same).
#[test]
fn diagnose_names_the_lookups_a_lost_leaf_of_a_without_rowid_table_breaks() {
    let name = "without_rowid_table_leaf";
    let ids = strings(&truth(name)["affected_customer_ids"]);
    assert_eq!(ids.len(), 30, "the fixture's truth changed");
    for a in answers_match_the_truth_per_index(name, &ids) {
        assert_eq!(a["cause"], "lookup_error", "{a}");
        assert_eq!(a["indexes"].as_object().unwrap().len(), 5, "{a}");
    }
}

/// A customer leaf with two cells' rowids out of key order
/// (`misplaced_table_cells`): every customer the full scan reads (the
/// stock sqlite3, no index) is asked; the six the POS rejects are not
/// served, each with exactly the truth's wrong lookups (the two cells'
/// customers through every index, the four neighbours SQLite's binary
/// search passes by through the ID index; the stock sqlite3's lookup by ID
/// fails for each: check.rs), the 2,004 others are served.
#[test]
fn diagnose_names_the_lookups_a_leaf_out_of_key_order_breaks() {
    let name = "misplaced_table_cells";
    let ids: Vec<String> = sqlite3_cli(
        &fixtures().join(format!("{name}.db")),
        "SELECT customer_id FROM customers NOT INDEXED ORDER BY 1",
    )
    .lines()
    .map(String::from)
    .collect();
    assert_eq!(ids.len(), 2010);
    let d = answers_match_the_truth_per_index(name, &ids);
    let unserved: Vec<&serde_json::Value> = d.iter().filter(|a| a["served"] == false).collect();
    assert_eq!(unserved.len(), 6);
    for a in unserved {
        assert_eq!(a["cause"], "lookup_error", "{a}");
    }
}

/// Fixtures whose rejected customers have more than one cause (one cause
/// per fixture is what `CAUSES` above can say): several kinds of damage in
/// one file (a stale ID index page and a zeroed phone index page, with
/// garbage over a table leaf too), and an index on (customer_id, status)
/// with one entry's ID rewritten. Every customer a full scan reads (the
/// stock sqlite3, no index; it stops at the garbage leaf) and every one the
/// truth rejects is asked: the rejected ones are not served, with exactly
/// the truth's wrong lookups per index, the others are served.
#[test]
fn diagnose_answers_per_index_as_the_truth_where_causes_differ() {
    for name in [
        "several_index_kinds",
        "several_kinds",
        "composite_id_entry_rewritten",
    ] {
        let mut ids: BTreeSet<String> = sqlite3_cli(
            &fixtures().join(format!("{name}.db")),
            "SELECT customer_id FROM customers NOT INDEXED",
        )
        .lines()
        .map(String::from)
        .collect();
        ids.extend(strings(&truth(name)["affected_customer_ids"]));
        let ids: Vec<String> = ids.into_iter().collect();
        assert!(ids.len() > 200, "{name}: {}", ids.len());
        answers_match_the_truth_per_index(name, &ids);
    }
}

/// Issue 8 item 12, for `diagnose` as for `repair`: a `--snapshot` path
/// that cannot be read is an error (exit 2, one line naming it, nothing on
/// stdout), never ignored. Ignored, the customer a damaged leaf took
/// (`lost_customer_leaf`'s restorable IDs: in the snapshot, on no page) is
/// told without the snapshot that has it; in a file SQLite refuses as a
/// whole (`truncated`) likewise.
#[test]
fn an_unreadable_snapshot_path_is_an_error() {
    for (name, key) in [
        ("lost_customer_leaf", "restorable_customer_ids"),
        ("truncated", "untraceable_customer_ids"),
    ] {
        let id = strings(&truth(name)[key])[0].clone();
        let snap = fixtures().join(format!("{name}.snap.db"));
        let (_, j, _) = diagnose(name, &[&id], &["--snapshot", snap.to_str().unwrap()]);
        assert_eq!(
            j["diagnoses"][0]["in_snapshot"],
            snap.to_str().unwrap(),
            "{j}"
        );

        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        let missing = dir
            .path()
            .join("snaps-typo")
            .join(format!("{name}.snap.db"));
        let under_a_file = db.join("x.db");
        for bad in [&missing, &under_a_file] {
            let bad_s = bad.to_str().unwrap();
            for json in [false, true] {
                let mut args = vec!["diagnose", db.to_str().unwrap(), &id, "--snapshot", bad_s];
                if json {
                    args.extend_from_slice(&["--json", "-"]);
                }
                let r = run(&args, dir.path());
                super::repair_ops::assert_snapshot_path_refused(&r, bad_s);
                assert_eq!(r.stdout(), "", "{}", r.show());
            }
        }
    }
}
