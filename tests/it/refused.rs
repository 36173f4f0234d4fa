//! Files SQLite refuses as a whole (issue 8, item 8): the POS cannot run a
//! single lookup, so every customer is rejected. check says so in a finding
//! of its own and in its headline, counts every customer the pages still
//! name as affected, and says beside it what a page-level reading still
//! finds; diagnose says the same for each ID. Truth: the fixture builder's
//! own POS attempt and page walker (`tools/make_fixtures.py`).

use std::collections::BTreeSet;

use super::support::{fixture_copy, fixtures, run, strings, truth};

fn finding<'a>(j: &'a serde_json::Value, code: &str) -> &'a serde_json::Value {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no {code} finding in {j:#}"))
}

/// check --json on a copy of the fixture: the JSON, after the exit code and
/// the refusal common to every refused file are asserted.
fn check_refused(name: &str) -> serde_json::Value {
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(name, dir.path());
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "corrupt");
    let affected = strings(&t["affected_customer_ids"]);
    assert_eq!(strings(&j["affected_customer_ids"]), affected, "{name}");
    let refused = finding(&j, "database_refused");
    assert_eq!(refused["severity"], "error");
    let reason = t["pos_refusal"].as_str().unwrap();
    assert!(
        refused["message"].as_str().unwrap().contains(reason),
        "{name}: {refused} does not give SQLite's reason {reason:?}"
    );
    assert_eq!(refused["count"], affected.len());
    assert_eq!(strings(&refused["customer_ids"]), affected);
    let reading = finding(&j, "page_level_reading");
    assert_eq!(reading["severity"], "info");
    assert_eq!(
        strings(&reading["customer_ids"]),
        strings(&t["page_readable_customer_ids"]),
        "{name}"
    );
    // The headline says every customer is rejected, and why.
    let r = run(&["check", db.to_str().unwrap()], dir.path());
    let first = r.stdout().lines().next().unwrap_or_default().to_string();
    assert!(
        first.ends_with(&format!(
            "corrupt — SQLite refuses the whole file: every customer would be rejected by the POS ({} known from the pages)",
            affected.len()
        )),
        "{first}"
    );
    j
}

#[test]
fn a_zeroed_header_refuses_every_customer_and_the_pages_still_hold_them_all() {
    let t = truth("header_zeroed");
    let j = check_refused("header_zeroed");
    // nothing but the header is damaged: every intended customer is on the pages
    assert_eq!(
        t["page_readable_customer_ids"].as_array().unwrap().len() as u64,
        t["expected_customers_count"].as_u64().unwrap()
    );
    let h = finding(&j, "header_invalid");
    assert_eq!(h["pages"], serde_json::json!([1]));
    assert!(
        h["message"]
            .as_str()
            .unwrap()
            .contains("the pages show 4096-byte pages with 0 reserved bytes"),
        "{h}"
    );
    assert!(
        finding(&j, "page_level_reading")["message"]
            .as_str()
            .unwrap()
            .contains("with the schema read from page 1 by the page reader")
    );
    // Only the header is damaged: the pages themselves are sound.
    let errors: BTreeSet<&str> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        BTreeSet::from(["header_invalid", "database_refused"]),
        "{j:#}"
    );
    assert_eq!(j["coverage"]["customers_read"], 2000);
}

#[test]
fn a_destroyed_schema_page_refuses_every_customer_and_says_why_none_can_be_named() {
    let t = truth("schema_page_destroyed");
    assert_eq!(t["schema_read_from_pages"], false);
    let j = check_refused("schema_page_destroyed");
    assert_eq!(j["affected_customer_ids"], serde_json::json!([]));
    assert_eq!(
        finding(&j, "schema_unreadable")["pages"],
        serde_json::json!([1])
    );
    let reading = finding(&j, "page_level_reading")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reading.contains("cannot read the schema either") && reading.contains("--snapshot"),
        "{reading}"
    );
}

#[test]
fn a_truncated_file_refuses_every_customer_its_pages_still_name() {
    let t = truth("truncated");
    let j = check_refused("truncated");
    finding(&j, "file_truncated");
    // rows on readable pages, and IDs only the ID index still holds
    assert_eq!(
        t["affected_customer_ids"].as_array().unwrap().len(),
        t["page_readable_customer_ids"].as_array().unwrap().len()
            + t["index_only_customer_ids"].as_array().unwrap().len()
    );
}

/// diagnose on a copy: (exit code, JSON).
fn diagnose(name: &str, ids: &[&str], extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(name, dir.path());
    let mut args = vec!["diagnose", db.to_str().unwrap()];
    args.extend_from_slice(ids);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--json", "-"]);
    let r = run(&args, dir.path());
    (r.code(), r.json())
}

/// The rowid of customer `id` in the fixture's snapshot (taken before the
/// damage), read with SQLite: the row the page reader must find.
fn snapshot_rowid(name: &str, id: &str) -> i64 {
    snapshot_rowid_in(&format!("{name}.snap.db"), id)
}

#[test]
fn diagnose_says_refused_for_every_id_with_what_the_pages_hold() {
    let t = truth("header_zeroed");
    let known = strings(&t["page_readable_customer_ids"]);
    let (code, j) = diagnose("header_zeroed", &[&known[7], "C000000000000"], &[]);
    assert_eq!(code, 1, "{j:#}");
    let reason = t["pos_refusal"].as_str().unwrap();
    for d in j["diagnoses"].as_array().unwrap() {
        assert_eq!(d["cause"], "database_refused", "{d}");
        assert_eq!(d["served"], false);
        assert!(d["explanation"].as_str().unwrap().contains(reason), "{d}");
    }
    assert_eq!(
        j["diagnoses"][0]["rowids"],
        serde_json::json!([snapshot_rowid("header_zeroed", &known[7])])
    );
    assert_eq!(j["diagnoses"][1]["rowids"], serde_json::json!([]));
    assert_eq!(
        strings(&j["affected_customer_ids"]),
        vec![known[7].clone(), "C000000000000".to_string()]
    );

    // The schema is gone: the snapshot still names the customer.
    let snap = fixtures().join("schema_page_destroyed.snap.db");
    let (code, j) = diagnose(
        "schema_page_destroyed",
        &[&known[7]],
        &["--snapshot", snap.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    let d = &j["diagnoses"][0];
    assert_eq!(d["cause"], "database_refused");
    assert_eq!(d["in_snapshot"], snap.to_str().unwrap());
    assert!(
        d["explanation"]
            .as_str()
            .unwrap()
            .contains("custodian repair --snapshot"),
        "{d}"
    );
}

/// Every customer ID of the healthy fixture, read by the stock sqlite3 from
/// an undamaged copy: the truth for a copy whose header alone is damaged.
fn healthy_ids() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    super::support::sqlite3_cli(&db, "SELECT customer_id FROM customers ORDER BY 1")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A copy of the healthy fixture with `bytes` written at `offset` of its
/// header: (the temp folder, the copy).
fn damaged_header(offset: usize, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let mut image = std::fs::read(&db).unwrap();
    image[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(&db, &image).unwrap();
    (dir, db)
}

/// check on a copy whose header alone is damaged: every customer is
/// rejected, and the page reader names every one of them (the IDs the stock
/// sqlite3 reads from the undamaged fixture), in the finding, the affected
/// IDs and the headline; diagnose says so for an ID, with its row. Returns
/// the check's JSON.
fn all_known_from_the_pages(db: &std::path::Path, dir: &std::path::Path) -> serde_json::Value {
    let ids = healthy_ids();
    assert_eq!(ids.len(), 2020);
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["affected_customer_ids"]), ids);
    let refused = finding(&j, "database_refused");
    assert_eq!(refused["count"], 2020);
    assert_eq!(strings(&refused["customer_ids"]), ids);
    let reading = finding(&j, "page_level_reading");
    assert_eq!(strings(&reading["customer_ids"]), ids);
    assert!(
        !j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "table_missing"),
        "{j:#}"
    );
    let r = run(&["check", db.to_str().unwrap()], dir);
    assert_eq!(
        r.stdout().lines().next().unwrap_or_default(),
        format!(
            "{}: corrupt — SQLite refuses the whole file: every customer would be rejected by the POS (2020 known from the pages)",
            db.display()
        ),
        "{}",
        r.show()
    );
    let r = run(
        &["diagnose", db.to_str().unwrap(), &ids[7], "--json", "-"],
        dir,
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let d = &r.json()["diagnoses"][0];
    assert_eq!(d["cause"], "database_refused", "{d}");
    assert_eq!(
        d["rowids"],
        serde_json::json!([snapshot_rowid_in("healthy.db", &ids[7])]),
        "{d}"
    );
    j
}

/// The rowid of customer `id` in fixture file `file`, read with SQLite.
fn snapshot_rowid_in(file: &str, id: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        fixtures().join(file),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(
        "SELECT rowid FROM customers WHERE customer_id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

/// Header byte 56 names UTF-16 where the records are UTF-8: SQLite reads
/// the schema's text in the wrong encoding and refuses the file
/// ("malformed database schema"); check used to read the schema the same
/// way and said "0 known from the pages". The page reader reads it in the
/// encoding its records read in, as the repair does.
#[test]
fn a_wrong_text_encoding_byte_refuses_every_customer_and_the_pages_name_them_all() {
    for enc in [2u8, 3] {
        let (dir, db) = damaged_header(56, &[0, 0, 0, enc]);
        let j = all_known_from_the_pages(&db, dir.path());
        let refused = finding(&j, "database_refused")["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(refused.contains("malformed database schema"), "{refused}");
        assert_eq!(j["coverage"]["customers_read"], 2020, "{j:#}");
    }
}

/// Header bytes 16-17 name another page size than the pages are laid out
/// for (8192, 2048, 65536 for 4096-byte pages): SQLite refuses the file,
/// and check read the pages at the header's page size (230, 0 and 187
/// customers "known"). The pages show their page size: check says the
/// header is damaged and reads them so.
#[test]
fn a_wrong_page_size_byte_refuses_every_customer_and_the_pages_name_them_all() {
    for stored in [[0x20u8, 0x00], [0x08, 0x00], [0x00, 0x01]] {
        let (dir, db) = damaged_header(16, &stored);
        let j = all_known_from_the_pages(&db, dir.path());
        let h = finding(&j, "header_invalid");
        let named = match stored {
            [0x00, 0x01] => 65536,
            [a, b] => u32::from(u16::from_be_bytes([a, b])),
        };
        assert_eq!(
            h["message"],
            format!(
                "database header: the header names {named}-byte pages with 0 reserved bytes, but the pages are not laid out so; the pages show 4096-byte pages with 0 reserved bytes, and they were read so"
            )
        );
        assert_eq!(j["coverage"]["customers_read"], 2020, "{j:#}");
    }
}

/// The same damaged headers, repaired, with the snapshot and without one:
/// the pages are read under the page size they show (the rebuild used the
/// header's when page 1 fit under it: 620 and 206 of 2020 customers with a
/// snapshot, none without, "repaired with losses"), so every customer comes
/// back from the pages, exactly the healthy fixture's rows (the builder's
/// digest), and the stock sqlite3 calls the result ok.
#[test]
fn a_wrong_page_size_or_encoding_byte_is_repaired_from_the_pages() {
    let want = truth("healthy")["expected_customers_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let snap = fixtures().join("healthy.snap.db");
    let cases: [(usize, &[u8]); 4] = [
        (16, &[0x20, 0x00]),
        (16, &[0x08, 0x00]),
        (16, &[0x00, 0x01]),
        (56, &[0, 0, 0, 2]),
    ];
    for (offset, bytes) in cases {
        for with_snapshot in [true, false] {
            let (dir, db) = damaged_header(offset, bytes);
            let mut args = vec!["repair", db.to_str().unwrap(), "--json", "-"];
            if with_snapshot {
                args.extend(["--snapshot", snap.to_str().unwrap()]);
            }
            let r = run(&args, dir.path());
            let what = format!("{bytes:?} at {offset}, snapshot: {with_snapshot}");
            assert_eq!(r.code(), 0, "{what}: {}", r.show());
            assert_eq!(r.json()["verdict"], "repaired", "{what}");
            assert_eq!(super::repair::customers_sha256(&db), want, "{what}");
            assert_eq!(super::repair::stock_integrity_check(&db), "ok", "{what}");
        }
    }
}
