//! Issue 11 item 5: a pre-upgrade check that survives the upgrade. The
//! most common upgrade step (`ALTER TABLE customers ADD COLUMN
//! loyalty_points INTEGER DEFAULT 0`) is a schema change to review or a go
//! when the config declares it, never 2,020 "changed" customers; the
//! snapshot taken before it still serves; and the detections that were
//! right stay right. Expected IDs come from SQLite itself (rusqlite), not
//! from custodian.

use std::path::Path;

use super::support::{fixture_copy, run};

fn sql(db: &Path, batch: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(batch).unwrap();
}

fn ids(db: &Path, query: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare(query).unwrap();
    let mut v: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    v.sort();
    v
}

const ADD: &str = "ALTER TABLE customers ADD COLUMN loyalty_points INTEGER DEFAULT 0;";

#[test]
fn an_added_column_is_a_schema_change_not_2020_changed_customers() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    fixture_copy("healthy", w);
    let db = w.join("healthy.db");
    let s = run(&["snapshot", "healthy.db", "--out", "snaps", "--quiet"], w);
    assert_eq!(s.code(), 0, "{}", s.show());
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--baseline",
            "base.json",
        ],
        w,
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    sql(&db, ADD);

    // not declared: review (exit 1), every other condition ok
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--compare",
            "base.json",
        ],
        w,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let out = r.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "healthy.db: no-go (1 condition failed)");
    assert!(
        lines[3].starts_with("ok: verified snapshot snaps/healthy.db."),
        "the snapshot taken before the upgrade serves: {out}"
    );
    assert_eq!(
        lines[6..9],
        [
            "review: the customer table's columns changed since the baseline (added \
             loyalty_points), which the config does not declare: check that the upgrade meant \
             it, then declare it in --config (\"upgrade\": {\"added_columns\": [...], \
             \"dropped_columns\": [...]}) to go; the shared columns were compared",
            "ok: all 2,020 customers of the baseline are found by ID through \
             sqlite_autoindex_customers_1",
            "ok: no customer changed without a new updated_at (0 updated since the baseline)",
        ],
        "{out}"
    );

    // declared by the config: go
    std::fs::write(
        w.join("upgrade.json"),
        "{\"upgrade\": {\"added_columns\": [\"loyalty_points\"]}}\n",
    )
    .unwrap();
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--compare",
            "base.json",
            "--config",
            "upgrade.json",
        ],
        w,
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.stdout().lines().next(), Some("healthy.db: go"));
    assert!(
        r.stdout().contains(
            "ok: the customer table's columns changed as the config's upgrade declares (added \
             loyalty_points); the shared columns were compared"
        ),
        "{}",
        r.show()
    );
}

#[test]
fn the_right_detections_stay_right_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    fixture_copy("healthy", w);
    let db = w.join("healthy.db");
    let s = run(&["snapshot", "healthy.db", "--out", "snaps", "--quiet"], w);
    assert_eq!(s.code(), 0, "{}", s.show());
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--baseline",
            "base.json",
        ],
        w,
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    std::fs::write(
        w.join("upgrade.json"),
        "{\"upgrade\": {\"added_columns\": [\"loyalty_points\"]}}\n",
    )
    .unwrap();
    // the truth, from SQLite: 25 rows changed without updated_at, one
    // customer deleted, one ID changed to lower case
    let changed = ids(
        &db,
        "SELECT customer_id FROM customers WHERE rowid BETWEEN 101 AND 125",
    );
    let deleted = ids(&db, "SELECT customer_id FROM customers WHERE rowid = 500");
    let lowered = ids(&db, "SELECT customer_id FROM customers WHERE rowid = 600");
    assert_eq!((changed.len(), deleted.len(), lowered.len()), (25, 1, 1));
    sql(
        &db,
        &format!(
            "{ADD}
             UPDATE customers SET balance_cents = balance_cents + 1 WHERE rowid BETWEEN 101 AND 125;
             UPDATE customers SET loyalty_points = 7 WHERE rowid BETWEEN 700 AND 710;
             DELETE FROM transactions WHERE customer_id = (SELECT customer_id FROM customers WHERE rowid = 500);
             DELETE FROM customers WHERE rowid = 500;
             UPDATE customers SET customer_id = lower(customer_id) WHERE rowid = 600;"
        ),
    );
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--compare",
            "base.json",
            "--config",
            "upgrade.json",
            "--json",
            "r.json",
        ],
        w,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.join("r.json")).unwrap()).unwrap();
    let cond = |name: &str| {
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["object"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no condition {name}: {j}"))
    };
    let mut unfindable = deleted.clone();
    unfindable.extend(lowered.clone());
    unfindable.sort();
    let got = |f: serde_json::Value| -> Vec<String> {
        f["customer_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(cond("baseline_findable")["code"], "preflight_failed");
    assert_eq!(got(cond("baseline_findable")), unfindable);
    // the loyalty points written by the upgrade are not a change of the
    // shared columns; the 25 balance changes are, in full in the report
    assert_eq!(cond("baseline_unchanged")["code"], "preflight_failed");
    assert_eq!(got(cond("baseline_unchanged")), changed);
    assert_eq!(cond("baseline_schema")["code"], "preflight_passed");

    // on the terminal the long list is cut, and says where the rest is
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--compare",
            "base.json",
            "--config",
            "upgrade.json",
        ],
        w,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let line = r
        .stdout()
        .lines()
        .find(|l| l.starts_with("no-go: 25 customers changed while updated_at did not: "))
        .unwrap_or_else(|| panic!("{}", r.show()))
        .to_string();
    assert_eq!(
        line,
        format!(
            "no-go: 25 customers changed while updated_at did not: {}, … and 5 more (all with \
             --json FILE or --report FILE)",
            changed[..20].join(", ")
        )
    );
}

#[test]
fn a_dropped_column_compares_the_shared_ones() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    fixture_copy("healthy", w);
    let db = w.join("healthy.db");
    let s = run(&["snapshot", "healthy.db", "--out", "snaps", "--quiet"], w);
    assert_eq!(s.code(), 0, "{}", s.show());
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--baseline",
            "base.json",
        ],
        w,
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let renamed = ids(&db, "SELECT customer_id FROM customers WHERE rowid = 42");
    sql(
        &db,
        "ALTER TABLE customers DROP COLUMN balance_cents;
         UPDATE customers SET name = 'Someone Else' WHERE rowid = 42;",
    );
    let r = run(
        &[
            "preflight",
            "healthy.db",
            "--snapshot",
            "snaps",
            "--compare",
            "base.json",
        ],
        w,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let out = r.stdout();
    assert!(
        out.contains("review: the customer table's columns changed since the baseline (dropped balance_cents)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "no-go: 1 customer changed while updated_at did not: {}",
            renamed[0]
        )),
        "{out}"
    );
    assert!(
        out.contains("ok: verified snapshot snaps/healthy.db."),
        "{out}"
    );
}
