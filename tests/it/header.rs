//! The database header: custodian accepts exactly what SQLite accepts, and
//! reports only what SQLite refuses. The oracle is the stock `sqlite3` CLI
//! run on the same bytes.

use std::path::Path;
use std::process::Command;

use super::support::{fixture_copy, run, truth};

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
