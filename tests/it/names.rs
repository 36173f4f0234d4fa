//! Tables and columns named by bytes that are not valid UTF-8 (a Latin-1
//! POS client's `numéro_client`, `téléphone`, `opérations`): fixtures
//! names_not_utf8 (several_kinds renamed) and names_not_utf8_dups
//! (stale_pk_page_dups renamed). Truth: the fixtures' truth files (Python's
//! sqlite3 on the files before the renaming) and the stock sqlite3 CLI.

use std::collections::BTreeMap;

use super::support::{
    Run, action_kinds, fixture_copy, repair_json, run, sqlite3_cli, strings, truth,
};

/// The ID column as a DBA types it: its Latin-1 byte shown as U+FFFD.
const ID_COLUMN: &str = "num\u{FFFD}ro_client";

/// Every row of sqlite_schema with its name, tbl_name and sql as hex, by
/// the stock CLI.
fn schema_hex(db: &std::path::Path) -> String {
    sqlite3_cli(
        db,
        "SELECT type, hex(name), hex(tbl_name), hex(sql) FROM sqlite_schema \
         WHERE name <> 'custodian_quarantine' ORDER BY type, name",
    )
}

/// Repairs a copy of `fixture` with its snapshot (`--json -`), and holds
/// the result to what any repair of these files must give: the stock CLI's
/// integrity_check ok, every name and definition in sqlite_schema with the
/// bytes it had (Latin-1 ones among them), no U+FFFD anywhere in it.
fn repaired_keeping_names(fixture: &str, dir: &std::path::Path) -> (std::path::PathBuf, Run) {
    let db = fixture_copy(fixture, dir);
    let before = schema_hex(&db);
    assert!(before.contains("6F70E9726174696F6E73"), "{before}");
    let snap = super::support::fixtures().join(format!("{fixture}.snap.db"));
    let r = run(
        &[
            "repair",
            db.to_str().unwrap(),
            "--id-column",
            ID_COLUMN,
            "--snapshot",
            snap.to_str().unwrap(),
            "--backup-dir",
            dir.join("bk").to_str().unwrap(),
            "--json",
            "-",
        ],
        dir,
    );
    assert_eq!(
        sqlite3_cli(&db, "PRAGMA integrity_check"),
        "ok",
        "{}",
        r.show()
    );
    assert_eq!(
        schema_hex(&db),
        before,
        "names and definitions keep their bytes"
    );
    assert_eq!(
        sqlite3_cli(
            &db,
            "SELECT count(*) FROM sqlite_schema \
             WHERE instr(hex(sql), 'EFBFBD') > 0 OR instr(hex(name), 'EFBFBD') > 0"
        ),
        "0",
        "no U+FFFD in the schema"
    );
    (db, r)
}

#[test]
fn check_and_diagnose_read_latin1_table_and_column_names_by_their_bytes() {
    let t = truth("names_not_utf8");
    let names: Vec<&str> = t["names_not_utf8"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["hex"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "6e756de9726f5f636c69656e74",
            "74e96ce970686f6e65",
            "6f70e9726174696f6e73"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("names_not_utf8", dir.path());
    let before = std::fs::read(&db).unwrap();

    // the default ID column is not there: exit 2, the columns listed as shown
    let r = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().contains(
            "its columns: num\u{FFFD}ro_client, card_number, name, t\u{FFFD}l\u{FFFD}phone"
        ),
        "{}",
        r.show()
    );

    let r = run(
        &[
            "check",
            db.to_str().unwrap(),
            "--id-column",
            ID_COLUMN,
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(
        strings(&j["affected_customer_ids"]),
        strings(&t["affected_customer_ids"])
    );
    let mut missing: BTreeMap<String, u64> = BTreeMap::new();
    for e in t["missing_index_entries"].as_array().unwrap() {
        *missing
            .entry(e["index"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let found: BTreeMap<String, u64> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "index_entry_missing")
        .map(|f| {
            (
                f["object"].as_str().unwrap().to_string(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, missing);
    let unreadable: Vec<u64> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "rows_unreadable")
        .map(|f| f["count"].as_u64().unwrap())
        .collect();
    assert_eq!(
        unreadable,
        [t["damaged_rowids"].as_array().unwrap().len() as u64]
    );
    // no name reaches a report as the private characters that hold its bytes
    assert!(!r.stdout().contains('\u{10FFE9}'), "{}", r.show());

    // diagnose: a customer on the damaged table leaf, named by the ID index
    let lost = strings(&t["repair_restored_customer_ids"]);
    let r = run(
        &[
            "diagnose",
            db.to_str().unwrap(),
            &lost[0],
            "--id-column",
            ID_COLUMN,
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(
        r.json()["diagnoses"][0]["cause"],
        "row_lost",
        "{}",
        r.show()
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "check and diagnose never write"
    );
}

/// The whole rebuild (a table leaf under garbage, index leaves stale and
/// zeroed, the freelist's trunk zeroed): the 29 lost rows restored from the
/// snapshot (truth: the builder's list), every intended row back (the
/// builder's digest), every transaction kept (its count, read by the stock
/// CLI through the table's Latin-1 name), the names' bytes unchanged.
#[test]
fn the_rebuild_keeps_latin1_names_byte_for_byte() {
    let t = truth("names_not_utf8");
    let dir = tempfile::tempdir().unwrap();
    let (db, r) = repaired_keeping_names("names_not_utf8", dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    assert!(
        action_kinds(&j).contains(&"rebuild_database"),
        "{}",
        r.show()
    );
    assert_eq!(
        strings(&j["restored_customer_ids"]),
        strings(&t["repair_restored_customer_ids"])
    );
    assert_eq!(
        strings(&j["unrecoverable_customer_ids"]),
        Vec::<String>::new()
    );
    assert_eq!(
        super::repair::customers_sha256_of(&db, "SELECT rowid, * FROM customers NOT INDEXED"),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(
        super::index_quirks::cli_bytes(&db, b"SELECT count(*) FROM op\xe9rations;\n"),
        t["transactions_count"].to_string()
    );
    let r = run(
        &["check", db.to_str().unwrap(), "--id-column", ID_COLUMN],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());

    // a snapshot of the repaired file: good, its tables counted by name
    let out = dir.path().join("snaps");
    let r = run(
        &[
            "snapshot",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--id-column",
            ID_COLUMN,
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let manifest = super::support::listing(&out)
        .into_iter()
        .find(|n| n.ends_with(".manifest.json"))
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(manifest)).unwrap()).unwrap();
    assert_eq!(m["verdict"], "clean", "{m}");
    assert_eq!(m["row_counts"]["customers"], t["expected_customers_count"]);
    assert_eq!(
        m["row_counts"]["op\u{FFFD}rations"],
        t["transactions_count"]
    );
}

/// Index damage with re-registered duplicates, repaired in place: the
/// duplicates quarantined (truth: the builder's duplicates), the names'
/// bytes in sqlite_schema unchanged, the stock CLI's integrity_check ok.
#[test]
fn the_index_repair_keeps_latin1_names_byte_for_byte() {
    let t = truth("names_not_utf8_dups");
    let dir = tempfile::tempdir().unwrap();
    let (db, r) = repaired_keeping_names("names_not_utf8_dups", dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(
        strings(&j["quarantined_customer_ids"]),
        strings(&t["duplicate_customer_ids"])
    );
    assert_eq!(
        strings(&j["affected_customer_ids"]),
        strings(&t["affected_customer_ids"])
    );
    // the quarantined rows name their table
    assert_eq!(
        sqlite3_cli(
            &db,
            "SELECT DISTINCT hex(source_table) FROM custodian_quarantine"
        ),
        "637573746F6D657273"
    );
    let r = run(
        &["check", db.to_str().unwrap(), "--id-column", ID_COLUMN],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
}

/// `--id-column` typed with U+FFFD finds the one column whose Latin-1 name
/// reads so; two such columns that read alike are refused plainly (exit 2)
/// rather than guessed.
#[test]
fn a_latin1_column_is_named_by_its_shown_spelling_unless_two_read_alike() {
    let dir = tempfile::tempdir().unwrap();
    let make = |file: &str, create: &[u8]| {
        let db = dir.path().join(file);
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers(x TEXT PRIMARY KEY, y TEXT);
             INSERT INTO customers VALUES ('C1', 'a'), ('C2', 'b');
             PRAGMA writable_schema = ON;",
        )
        .unwrap();
        conn.execute(
            "UPDATE sqlite_schema SET sql = CAST(?1 AS TEXT) WHERE name = 'customers'",
            [rusqlite::types::Value::Blob(create.to_vec())],
        )
        .unwrap();
        drop(conn);
        db
    };
    let one = make(
        "one.db",
        b"CREATE TABLE customers(kunden_nr_\xfc TEXT PRIMARY KEY, y TEXT)",
    );
    let two = make(
        "two.db",
        b"CREATE TABLE customers(a\xe4 TEXT PRIMARY KEY, a\xf6 TEXT)",
    );
    assert_eq!(sqlite3_cli(&one, "PRAGMA integrity_check"), "ok");
    let r = run(
        &[
            "check",
            one.to_str().unwrap(),
            "--id-column",
            "kunden_nr_\u{FFFD}",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "clean");
    let r = run(
        &[
            "diagnose",
            one.to_str().unwrap(),
            "C2",
            "--id-column",
            "kunden_nr_\u{FFFD}",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let r = run(
        &["check", two.to_str().unwrap(), "--id-column", "a\u{FFFD}"],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr()
            .contains("could be any of the columns a\u{FFFD}, a\u{FFFD} of table customers"),
        "{}",
        r.show()
    );
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.show());
}

/// preflight reads the customer table by the bytes of its names: the
/// baseline of a table whose ID column and phone column are Latin-1
/// (names_not_utf8's snapshot, a sound file) holds every customer, and
/// `--compare` names exactly the customer changed without a new
/// updated_at. It stopped with "no such column" (the baseline's SELECT
/// went through rusqlite as UTF-8). Truth: the fixture's
/// snapshot_customers_count, and the stock CLI for the changed row.
#[test]
fn preflight_reads_latin1_names_by_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let snap = super::support::fixtures().join("names_not_utf8.snap.db");
    let db = dir.path().join("pos.db");
    std::fs::copy(&snap, &db).unwrap();
    std::fs::create_dir(dir.path().join("snaps")).unwrap();
    std::fs::copy(&snap, dir.path().join("snaps/nightly.db")).unwrap();
    let total = truth("names_not_utf8")["snapshot_customers_count"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 2000);
    let preflight = |mode: &str| {
        run(
            &[
                "preflight",
                "pos.db",
                "--snapshot",
                "snaps",
                "--id-column",
                ID_COLUMN,
                mode,
                "base.json",
            ],
            dir.path(),
        )
    };
    let r = preflight("--baseline");
    assert_eq!(r.code(), 0, "{}", r.show());
    assert!(
        r.stdout()
            .contains("ok: baseline of 2,000 customers written to base.json\n"),
        "{}",
        r.show()
    );
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("base.json")).unwrap())
            .unwrap();
    assert_eq!(b["customers"].as_array().unwrap().len() as u64, total);
    assert_eq!(b["columns"].as_array().unwrap().len(), 10);

    // a change that keeps updated_at, by the stock CLI, to rowid 1
    let id = sqlite3_cli(&db, "SELECT * FROM customers WHERE rowid = 1")
        .split('|')
        .next()
        .unwrap()
        .to_string();
    assert!(id.starts_with('C') && id.len() == 13, "{id}");
    sqlite3_cli(&db, "UPDATE customers SET name = 'Changed' WHERE rowid = 1");
    let r = preflight("--compare");
    assert_eq!(r.code(), 1, "{}", r.show());
    assert!(
        r.stdout().contains(&format!(
            "no-go: 1 customer changed while updated_at did not: {id}\n"
        )),
        "{}",
        r.show()
    );
    assert!(
        r.stdout().contains(
            "ok: all 2,000 customers of the baseline are found by ID through sqlite_autoindex_customers_1\n"
        ),
        "{}",
        r.show()
    );
}

/// The stock CLI's answer to `sql`, whose text may hold bytes that are not
/// UTF-8 (a Latin-1 name).
fn sqlite3_cli_bytes(db: &std::path::Path, sql: &[u8]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(std::ffi::OsStr::from_bytes(sql))
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Virtual tables named in Latin-1 (an FTS5 table `d\xe9ss`, an R-Tree
/// `r\xe9ee`, made by the stock CLI in damaged_table_interior, whose
/// damage sends the repair to the whole rebuild) come out of the rebuild
/// under the same bytes, and their modules read them: the rebuild
/// declared them, and checked them, through rusqlite as UTF-8 (the name
/// became U+10FFE9's four bytes, "no such table").
#[test]
fn virtual_tables_named_in_latin1_keep_their_bytes_through_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("damaged_table_interior", dir.path());
    sqlite3_cli(
        &db,
        "CREATE VIRTUAL TABLE dxss USING fts5(body); \
         INSERT INTO dxss VALUES('alpha'), ('beta gamma'); \
         CREATE VIRTUAL TABLE rxee USING rtree(id, x0, x1); \
         INSERT INTO rxee VALUES(1, 0, 5), (2, 3, 4);",
    );
    let latin1 = |col: &str| {
        format!(
            "{col} = CAST(replace(replace(CAST({col} AS BLOB), 'dxss', CAST(x'64e97373' AS TEXT)), \
             'rxee', CAST(x'72e96565' AS TEXT)) AS TEXT)"
        )
    };
    sqlite3_cli(
        &db,
        &format!(
            "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET {}, {}, {} \
             WHERE name LIKE 'dxss%' OR name LIKE 'rxee%'; PRAGMA schema_version = 99;",
            latin1("name"),
            latin1("tbl_name"),
            latin1("sql")
        ),
    );
    let before = schema_hex(&db);
    assert!(
        before.contains("64E97373") && before.contains("72E96565"),
        "{before}"
    );
    let fts = b"SELECT count(*) FROM \"d\xe9ss\" WHERE \"d\xe9ss\" MATCH 'gamma'";
    let rtree = b"SELECT count(*) FROM \"r\xe9ee\" WHERE x0 <= 3.5 AND x1 >= 3.5";
    assert_eq!(sqlite3_cli_bytes(&db, fts), "1");
    assert_eq!(sqlite3_cli_bytes(&db, rtree), "2");

    let snap = super::support::fixtures().join("damaged_table_interior.snap.db");
    let r = run(
        &[
            "repair",
            db.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--backup-dir",
            "bk",
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert!(
        action_kinds(&r.json()).contains(&"rebuild_database"),
        "{}",
        r.show()
    );
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(schema_hex(&db), before, "names keep their bytes");
    assert_eq!(sqlite3_cli_bytes(&db, fts), "1");
    assert_eq!(sqlite3_cli_bytes(&db, rtree), "2");
    assert_eq!(
        sqlite3_cli_bytes(&db, b"SELECT rtreecheck('r\xe9ee')"),
        "ok"
    );
}

/// A customer whose name a Latin-1 client wrote (`Müller` as the bytes
/// 4d fc 6c 6c 65 72, not UTF-8) among those a stale ID index page
/// rejects: SQLite serves the row as it is, so the repair's verification
/// finds the customer served like the others (it used to stop, exit 3:
/// "still not served correctly", the probe failing on the name's bytes),
/// and the name keeps its bytes. Truth: the fixture builder's affected
/// customers; the bytes by the stock CLI.
#[test]
fn a_customer_with_a_latin1_name_is_served_and_keeps_its_bytes_through_a_repair() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("stale_pk_page", dir.path());
    let t = truth("stale_pk_page");
    let affected = strings(&t["affected_customer_ids"]);
    let id = &affected[0];
    assert_eq!(id, "C052157602710");
    // the name is in no index: only the table's leaf changes
    let set = format!(
        "UPDATE customers SET name = CAST(x'4dfc6c6c6572' AS TEXT) WHERE rowid = \
         (SELECT rowid FROM customers NOT INDEXED WHERE customer_id = '{id}')"
    );
    sqlite3_cli(&db, &set);
    let name_hex =
        format!("SELECT hex(name) FROM customers NOT INDEXED WHERE customer_id = '{id}'");
    assert_eq!(sqlite3_cli(&db, &name_hex).trim(), "4DFC6C6C6572");
    let c = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(c.code(), 1, "{}", c.show());
    assert_eq!(strings(&c.json()["affected_customer_ids"]), affected);
    let r = repair_json(&db, &[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "repaired");
    assert_eq!(sqlite3_cli(&db, "PRAGMA integrity_check").trim(), "ok");
    assert_eq!(sqlite3_cli(&db, &name_hex).trim(), "4DFC6C6C6572");
    let d = run(&["diagnose", db.to_str().unwrap(), id], dir.path());
    assert_eq!(d.code(), 0, "{}", d.show());
    assert!(
        d.stdout().starts_with(&format!("{id}: served correctly")),
        "{}",
        d.show()
    );
}
