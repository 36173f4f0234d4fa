//! The database header: custodian accepts exactly what SQLite accepts, and
//! reports only what SQLite refuses. The oracle is the stock `sqlite3` CLI
//! run on the same bytes.

use std::path::Path;
use std::process::Command;

use super::support::{finding_codes as codes, fixture_copy, run, strings, truth};

/// The stock CLI's `PRAGMA integrity_check` output and exit code. The CLI is
/// the independent oracle here: a missing CLI is a failure, not a skip.
pub fn stock_integrity_check(db: &Path) -> (String, i32) {
    let o = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg("PRAGMA integrity_check")
        .output()
        .expect("the stock sqlite3 CLI is needed by this test (apt-get install sqlite3)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (text.trim().to_string(), o.status.code().unwrap_or(-1))
}

fn put_u32(db: &Path, offset: u64, value: u32) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.write_all_at(&value.to_be_bytes(), offset).unwrap();
}

fn put_u8(db: &Path, offset: u64, value: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.write_all_at(&[value], offset).unwrap();
}

/// Offset of the text encoding in the header (spec: "The Database Header").
const TEXT_ENCODING: u64 = 56;
const READ_VERSION: u64 = 19;
const WRITE_VERSION: u64 = 18;

#[test]
fn text_encoding_values_sqlite_reads_are_not_damage() {
    // 0 = never set (SQLite's default, UTF-8); other values are read by
    // their low two bits. The healthy fixture is UTF-8, so 0, 5 and
    // 0x35050000 (low bits 00) all read as UTF-8 and the file is healthy.
    for value in [0u32, 5, 0x3505_0000] {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy("healthy", dir.path());
        put_u32(&db, TEXT_ENCODING, value);
        assert_eq!(
            stock_integrity_check(&db),
            ("ok".to_string(), 0),
            "encoding {value}"
        );
        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
        assert_eq!(r.code(), 0, "encoding {value}\n{}", r.show());
        let j = r.json();
        assert_eq!(j["verdict"], "clean", "{}", r.show());
        assert_eq!(j["findings"], serde_json::json!([]), "{}", r.show());
        assert_eq!(
            j["coverage"]["customers_read"],
            truth("healthy")["customers_total"],
            "{}",
            r.show()
        );
    }
}

#[test]
fn a_write_version_sqlite_tolerates_is_not_damage() {
    // A write version above 2 makes SQLite open the file read-only; reading
    // works, so nothing is wrong for the POS or for the check.
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    put_u8(&db, WRITE_VERSION, 3);
    assert_eq!(stock_integrity_check(&db), ("ok".to_string(), 0));
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["findings"], serde_json::json!([]), "{}", r.show());
}

/// Nightly seed 782 of the repair property test: a write version above 2
/// in a file with damage to repair. SQLite opens such a file read-only, so
/// every step that wrote the work copy failed ("attempt to write a
/// readonly database", exit 3). The work copy of a rollback-journal
/// database is now given the write version of its read version; the
/// repaired file is one SQLite writes.
#[test]
fn a_write_version_sqlite_does_not_write_is_mended_in_a_repair() {
    let name = "stale_pk_page";
    let t = truth(name);
    let s = super::repair::Setup::new(name);
    put_u8(&s.db, WRITE_VERSION, 3);
    // the oracle: SQLite itself refuses to write the damaged file
    let probe = s.dir.path().join("probe.db");
    std::fs::copy(&s.db, &probe).unwrap();
    assert!(
        !stock_writes(&probe),
        "SQLite wrote a file of write version 3"
    );
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired", "{}", r.show());
    assert_eq!(
        super::repair::customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(stock_integrity_check(&s.db), ("ok".to_string(), 0));
    let bytes = std::fs::read(&s.db).unwrap();
    assert_eq!(
        (bytes[WRITE_VERSION as usize], bytes[READ_VERSION as usize]),
        (1, 1)
    );
    assert!(stock_writes(&s.db), "SQLite cannot write the repaired file");
    let mended: Vec<&str> = j["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "mend_header")
        .map(|a| a["detail"].as_str().unwrap())
        .collect();
    assert_eq!(mended.len(), 1, "{}", r.show());
    assert!(mended[0].contains("write version was 3"), "{mended:?}");
}

/// Whether the stock sqlite3 CLI can write `db` (a table made and dropped).
fn stock_writes(db: &Path) -> bool {
    Command::new("sqlite3")
        .arg(db)
        .arg("CREATE TABLE probe_write(x); DROP TABLE probe_write;")
        .output()
        .expect("the stock sqlite3 CLI")
        .status
        .success()
}

#[test]
fn a_read_version_sqlite_refuses_is_header_damage() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    put_u8(&db, READ_VERSION, 3);
    let (text, code) = stock_integrity_check(&db);
    assert_eq!(code, 26, "{text}"); // SQLITE_NOTADB: SQLite refuses the file
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let f = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "header_invalid")
        .unwrap_or_else(|| panic!("no header_invalid\n{}", r.show()));
    assert!(
        f["message"].as_str().unwrap().contains("read version 3"),
        "{}",
        r.show()
    );
}

/// Header fields that do not describe the file: the reserved bytes (byte
/// 20) and a page count marked valid below the file's pages, both of which
/// SQLite accepts and reads the file under, and a page count above the
/// file's, which SQLite refuses. Their exact findings are asserted here,
/// not in check.rs's CASES: the truth's index entries there come from
/// SQL scans that SQLite's misreading stops short.
pub const HEADER_FIELD_FIXTURES: [&str; 3] = [
    "reserved_bytes_wrong",
    "page_count_short",
    "page_count_long",
];

fn pair(code: &str, object: &str) -> (String, String) {
    (code.to_string(), object.to_string())
}

/// check names exactly the customers whose lookups SQLite gets wrong on
/// these files (the fixtures' truth: Python's sqlite3 doing every lookup,
/// through every index, on the damaged bytes): the 3 customers whose rows
/// spill onto overflow pages when SQLite reads every page 8 bytes short;
/// 1,762 when SQLite reads no page past 209 of 247; every customer when
/// it refuses a count above the file's. It said 0 for the first (with
/// dozens of findings about cells past the end of pages that are not) and
/// 1,737 for the second (its page reader stopped at the header's count
/// too, and probed only the customers there).
#[test]
fn header_fields_name_exactly_the_customers_sqlite_gets_wrong() {
    for name in HEADER_FIELD_FIXTURES {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        let before = std::fs::read(&db).unwrap();
        let t = truth(name);
        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
        assert_eq!(r.code(), 1, "{name}: {}", r.show());
        let j = r.json();
        assert_eq!(j["verdict"], "corrupt", "{name}");
        assert_eq!(
            strings(&j["affected_customer_ids"]),
            strings(&t["affected_customer_ids"]),
            "{name}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), before, "{name}: check wrote");
        let got = codes(&j);
        if name == "page_count_long" {
            // refused as a whole, every customer read from the pages
            assert_eq!(t["pos_refusal"], "database disk image is malformed");
            let want = [
                pair("file_truncated", ""),
                pair("database_refused", ""),
                pair("page_level_reading", ""),
            ];
            assert_eq!(got, want.into_iter().collect(), "{name}");
            continue;
        }
        assert!(t["pos_refusal"].is_null(), "{name}");
        let by_index = t["affected_by_index"].as_object().unwrap();
        let mut want: std::collections::BTreeSet<_> =
            by_index.keys().map(|k| pair("lookup_wrong", k)).collect();
        want.insert(pair("header_invalid", ""));
        want.insert(pair("rows_unreadable", ""));
        assert_eq!(got, want, "{name}");
        for f in j["findings"].as_array().unwrap() {
            match f["code"].as_str().unwrap() {
                "lookup_wrong" => assert_eq!(
                    strings(&f["customer_ids"]),
                    strings(&by_index[f["object"].as_str().unwrap()]),
                    "{name}: {f}"
                ),
                // the rows SQLite cannot read: the truth's lost rows
                "rows_unreadable" => assert_eq!(
                    f["count"].as_u64(),
                    Some(t["lost_rowids"].as_array().unwrap().len() as u64),
                    "{name}: {f}"
                ),
                "header_invalid" => {
                    let d = &t["damage"];
                    let says = if name == "reserved_bytes_wrong" {
                        format!(
                            "byte 20 names {} reserved bytes per page, but the pages are laid out with {}",
                            d["now"], d["was"]
                        )
                    } else {
                        format!(
                            "the page count is {} (marked valid), but the file holds {} pages",
                            d["header_page_count"], d["file_pages"]
                        )
                    };
                    assert!(f["message"].as_str().unwrap().contains(&says), "{f}");
                    assert_eq!(f["pages"], serde_json::json!([1]));
                }
                other => panic!("{name}: {other}"),
            }
        }
    }
}

/// A page count that is not marked valid (bytes 92..96 unequal to the
/// change counter) is not used by SQLite, whichever way it is wrong: it
/// takes the count from the file size, and the POS sees a sound file
/// (the truth's `if_count_not_valid`, probed on the file so changed).
/// check says clean, as it did.
#[test]
fn a_page_count_not_marked_valid_is_not_damage() {
    for name in ["page_count_short", "page_count_long"] {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        let counter = {
            let b = std::fs::read(&db).unwrap();
            u32::from_be_bytes([b[24], b[25], b[26], b[27]])
        };
        put_u32(&db, 92, counter.wrapping_add(1));
        let t = &truth(name)["if_count_not_valid"];
        assert!(t["pos_refusal"].is_null());
        assert_eq!(t["sqlite_quick_check"], serde_json::json!(["ok"]));
        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
        assert_eq!(r.code(), 0, "{name}: {}", r.show());
        let j = r.json();
        assert_eq!(j["verdict"], "clean");
        assert_eq!(
            strings(&j["affected_customer_ids"]),
            strings(&t["affected_customer_ids"])
        );
        assert!(codes(&j).is_empty(), "{name}: {}", r.show());
    }
}

/// repair, with the snapshot or without one, gives back every customer
/// of these files (the builder's digest of the intended rows) in a file
/// the stock CLI calls ok, with the header put right: byte 20 back to the
/// reserved bytes the pages have, the page count the file's pages, marked
/// valid. (Without a snapshot it lost the 20 customers only pages past the
/// short count held, and took 396 others from the snapshot.)
#[test]
fn repair_puts_the_header_fields_right_and_keeps_every_customer() {
    for name in HEADER_FIELD_FIXTURES {
        for with_snapshot in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let db = fixture_copy(name, dir.path());
            let t = truth(name);
            let snap = super::support::fixtures().join(format!("{name}.snap.db"));
            let mut args = vec![
                "repair",
                db.to_str().unwrap(),
                "--backup-dir",
                "bk",
                "--json",
                "-",
            ];
            if with_snapshot {
                args.extend(["--snapshot", snap.to_str().unwrap()]);
            }
            let r = run(&args, dir.path());
            let what = format!("{name} (snapshot: {with_snapshot})");
            assert_eq!(r.code(), 0, "{what}: {}", r.show());
            let j = r.json();
            assert_eq!(j["verdict"], "repaired", "{what}");
            assert_eq!(strings(&j["restored_customer_ids"]), Vec::<String>::new());
            assert_eq!(
                strings(&j["unrecoverable_customer_ids"]),
                Vec::<String>::new()
            );
            assert_eq!(stock_integrity_check(&db), ("ok".to_string(), 0), "{what}");
            assert_eq!(
                super::repair::customers_sha256(&db),
                t["expected_customers_sha256"].as_str().unwrap(),
                "{what}"
            );
            let b = std::fs::read(&db).unwrap();
            assert_eq!(b[20], 0, "{what}: reserved bytes");
            let pages = (b.len() / 4096) as u32;
            assert_eq!(&b[28..32], &pages.to_be_bytes(), "{what}: page count");
            assert_eq!(&b[92..96], &b[24..28], "{what}: count marked valid");
        }
    }
}

/// Pages 1 and 3 of `stale_pk_page` swapped (a restore that mixed two
/// pages up), no snapshot: the file has no magic string where SQLite looks
/// for it, and the schema table's root is not at page 1, so SQLite refuses
/// the file and neither it nor the page reader finds the schema. The
/// repair stopped: "no page of it still names table customers" (exit 3,
/// repair_property nightly case 2321, on `without_rowid_index_page`).
/// Page 1's image is found at page 3 (the magic string, a header SQLite
/// accepts, the schema's root after it) and the two pages are put back in
/// a scratch copy, from which the repair goes on: every customer, the
/// fixture's own stale index page rebuilt (exit 0).
#[test]
fn page_one_swapped_with_another_is_put_back_without_a_snapshot() {
    let name = "stale_pk_page";
    let t = truth(name);
    let s = super::repair::Setup::new(name);
    std::fs::remove_file(s.dir.path().join("snaps").join(format!("{name}.snap.db"))).unwrap();
    let mut bytes = std::fs::read(&s.db).unwrap();
    let (one, three) = (bytes[..4096].to_vec(), bytes[2 * 4096..3 * 4096].to_vec());
    bytes[..4096].copy_from_slice(&three);
    bytes[2 * 4096..3 * 4096].copy_from_slice(&one);
    std::fs::write(&s.db, &bytes).unwrap();
    let dbs = s.db.display().to_string();
    assert_eq!(run(&["check", &dbs], s.dir.path()).code(), 1);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired", "{}", r.show());
    let put_back: Vec<&str> = j["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "swap_pages")
        .filter_map(|a| a["detail"].as_str())
        .collect();
    assert_eq!(
        put_back,
        [
            "page 1's image (the database header and the root of the schema table) was at page 3, and page 3's at page 1: the two were put back each in its place"
        ]
    );
    assert_eq!(
        super::repair::customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(super::repair::stock_integrity_check(&s.db), "ok");
    assert_eq!(run(&["check", &dbs], s.dir.path()).code(), 0);
    // the backup is the damaged file, byte for byte
    let backup = s
        .backups()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".backup"))
        .unwrap();
    assert_eq!(std::fs::read(backup).unwrap(), bytes);
}
