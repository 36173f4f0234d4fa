//! Every kind of index the field has (autoindex, composite, DESC, COLLATE,
//! partial, expression) and INTEGER PRIMARY KEY ids: clean when healthy; when
//! one leaf page is zeroed, exactly the customers whose lookups SQLite
//! itself gets wrong are named.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::Value;

use super::support::{run, strings};

const TEXT_ID_SCHEMA: &str = "
CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT,
  phone TEXT, status TEXT NOT NULL, tier TEXT);
CREATE INDEX idx_email_nocase ON customers(email COLLATE NOCASE DESC);
CREATE INDEX idx_lower_name ON customers(lower(name));
CREATE INDEX idx_active_phone ON customers(phone) WHERE status = 'active';
CREATE INDEX idx_status_tier ON customers(status, tier DESC);";

const INT_ID_SCHEMA: &str = "
CREATE TABLE customers(customer_id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT,
  phone TEXT UNIQUE, status TEXT NOT NULL, tier TEXT);
CREATE INDEX idx_email_nocase ON customers(email COLLATE NOCASE DESC);
CREATE INDEX idx_status_tier ON customers(status, tier DESC);";

/// A partial index whose term holds a parenthesis in a string: its WHERE
/// clause is still the one after the term list.
const PAREN_SCHEMA: &str = "
CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT,
  phone TEXT, status TEXT NOT NULL, tier TEXT);
CREATE INDEX idx_active_phone_paren ON customers(phone, instr(name, '(')) WHERE status = 'active';";

/// A deterministic customer table, inserted in shuffled order.
fn build(path: &Path, schema: &str, int_ids: bool) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(schema).unwrap();
    let mut order: Vec<u64> = (0..3000).collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let tx = conn.unchecked_transaction().unwrap();
    for i in order {
        let id: Value = if int_ids {
            Value::Integer(100_000 + i as i64 * 7)
        } else {
            Value::Text(format!("C{:012}", i * 7919 % 1_000_003))
        };
        let status = ["active", "active", "inactive", "closed"][(i % 4) as usize];
        let tier: Value = if i % 5 == 0 {
            Value::Null
        } else {
            Value::Text(["gold", "Silver", "bronze"][(i % 3) as usize].into())
        };
        tx.execute(
            "INSERT INTO customers(customer_id, name, email, phone, status, tier) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                id,
                format!("Name{} Person{}", i % 97, i),
                if i % 9 == 0 { None } else { Some(format!("User{}@Example.com", i)) },
                format!("+1555{:07}", i * 31 % 10_000_000),
                status,
                tier
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Zeroes the `nth` leaf page of `index`, at the offset the page size gives.
fn zero_leaf(path: &Path, index: &str, nth: i64) -> u32 {
    let conn = Connection::open(path).unwrap();
    let pgno: u32 = conn
        .query_row(
            "SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET ?2",
            rusqlite::params![index, nth],
            |r| r.get(0),
        )
        .unwrap();
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let page_size = page_size as u64;
    drop(conn);
    let mut bytes = std::fs::read(path).unwrap();
    let off = (pgno as u64 - 1) * page_size;
    bytes[off as usize..(off + page_size) as usize].fill(0);
    std::fs::write(path, bytes).unwrap();
    pgno
}

/// The oracle, with SQLite alone: customers whose lookup through `index`
/// (by the index's own terms, `=` as the POS does) errors or misses the row.
fn oracle(path: &Path, index: &str, terms: &[&str], partial: Option<&str>) -> BTreeSet<String> {
    let conn =
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let cols = terms.join(", ");
    let filter = partial.map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT rowid, customer_id, {cols} FROM customers NOT INDEXED{filter}"
        ))
        .unwrap();
    let rows: Vec<(i64, Value, Vec<Value>)> = stmt
        .query_map([], |r| {
            let mut v = Vec::new();
            for i in 0..terms.len() {
                v.push(r.get::<_, Value>(i + 2)?);
            }
            Ok((r.get(0)?, r.get(1)?, v))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let conds: Vec<String> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{t} IS ?{}", i + 1))
        .collect();
    let conds_eq = |key: &[Value]| -> String {
        conds
            .iter()
            .zip(key)
            .map(|(c, v)| {
                if matches!(v, Value::Null) {
                    c.clone()
                } else {
                    c.replace(" IS ", " = ")
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let mut affected = BTreeSet::new();
    for (rowid, id, key) in rows {
        let extra = partial.map(|w| format!(" AND {w}")).unwrap_or_default();
        let sql = format!(
            "SELECT rowid FROM customers INDEXED BY {index} WHERE {}{extra}",
            conds_eq(&key)
        );
        let got: Result<Vec<i64>, _> = conn.prepare(&sql).and_then(|mut s| {
            s.query_map(rusqlite::params_from_iter(key.iter()), |r| r.get(0))?
                .collect()
        });
        let wrong = match got {
            Err(_) => true,
            Ok(found) => !found.contains(&rowid),
        };
        if wrong {
            affected.insert(match id {
                Value::Integer(i) => i.to_string(),
                Value::Text(t) => t,
                _ => unreachable!(),
            });
        }
    }
    affected
}

fn check_json(db: &Path) -> (i32, serde_json::Value) {
    let r = run(
        &["check", db.to_str().unwrap(), "--json", "-"],
        db.parent().unwrap(),
    );
    let code = r.code();
    (code, r.json())
}

#[test]
fn every_index_kind_is_compared_and_probed() {
    struct Kind {
        schema: &'static str,
        int_ids: bool,
        index: &'static str,
        terms: &'static [&'static str],
        partial: Option<&'static str>,
    }
    let kinds = [
        Kind {
            schema: TEXT_ID_SCHEMA,
            int_ids: false,
            index: "idx_lower_name",
            terms: &["lower(name)"],
            partial: None,
        },
        Kind {
            schema: TEXT_ID_SCHEMA,
            int_ids: false,
            index: "idx_active_phone",
            terms: &["phone"],
            partial: Some("status = 'active'"),
        },
        Kind {
            schema: PAREN_SCHEMA,
            int_ids: false,
            index: "idx_active_phone_paren",
            terms: &["phone", "instr(name, '(')"],
            partial: Some("status = 'active'"),
        },
        Kind {
            schema: TEXT_ID_SCHEMA,
            int_ids: false,
            index: "idx_email_nocase",
            terms: &["email COLLATE NOCASE"],
            partial: None,
        },
        Kind {
            schema: TEXT_ID_SCHEMA,
            int_ids: false,
            index: "idx_status_tier",
            terms: &["status", "tier"],
            partial: None,
        },
        Kind {
            schema: TEXT_ID_SCHEMA,
            int_ids: false,
            index: "sqlite_autoindex_customers_1",
            terms: &["customer_id"],
            partial: None,
        },
        Kind {
            schema: INT_ID_SCHEMA,
            int_ids: true,
            index: "sqlite_autoindex_customers_1",
            terms: &["phone"],
            partial: None,
        },
        Kind {
            schema: INT_ID_SCHEMA,
            int_ids: true,
            index: "idx_email_nocase",
            terms: &["email COLLATE NOCASE"],
            partial: None,
        },
    ];
    for k in kinds {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        build(&db, k.schema, k.int_ids);
        let (code, j) = check_json(&db);
        assert_eq!(
            (code, j["verdict"].as_str()),
            (0, Some("clean")),
            "{}: healthy: {j}",
            k.index
        );
        let compared = strings(&j["coverage"]["indexes_compared"]);
        assert!(
            compared.contains(&k.index.to_string()),
            "{}: not compared: {compared:?}",
            k.index
        );
        let pgno = zero_leaf(&db, k.index, 1);
        let want = oracle(&db, k.index, k.terms, k.partial);
        assert!(
            !want.is_empty(),
            "{}: zeroing page {pgno} must hurt someone",
            k.index
        );
        let (code, j) = check_json(&db);
        assert_eq!(code, 1, "{}: {j}", k.index);
        let have: BTreeSet<String> = strings(&j["affected_customer_ids"]).into_iter().collect();
        assert_eq!(have, want, "{}: page {pgno}", k.index);
        let on_index = |code: &str| {
            j["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["code"] == code && f["object"] == k.index)
        };
        assert!(on_index("page_damaged"), "{}: {j}", k.index);
        assert!(on_index("index_entry_missing"), "{}: {j}", k.index);
        assert!(on_index("lookup_wrong"), "{}: {j}", k.index);
    }
}

#[test]
fn a_damaged_header_is_corrupt_not_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    build(&db, TEXT_ID_SCHEMA, false);
    let mut bytes = std::fs::read(&db).unwrap();
    // the page size field: 2 bytes, big-endian, at offset 16
    bytes[16..18].copy_from_slice(&3000u16.to_be_bytes());
    std::fs::write(&db, &bytes).unwrap();
    let (code, j) = check_json(&db);
    assert_eq!(code, 1, "{j}");
    assert_eq!(j["verdict"], "corrupt");
    assert_eq!(j["findings"][0]["code"], "header_invalid", "{j}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "check changed nothing");
}

#[test]
fn empty_ids_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    build(&db, TEXT_ID_SCHEMA, false);
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "INSERT INTO customers VALUES ('', 'x', NULL, NULL, 'active', NULL);
         INSERT INTO customers VALUES (NULL, 'y', NULL, NULL, 'active', NULL);",
    )
    .unwrap();
    drop(conn);
    let (code, j) = check_json(&db);
    assert_eq!(code, 0, "{j}");
    let f = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "id_empty")
        .cloned();
    let f = f.unwrap_or_else(|| panic!("no id_empty: {j}"));
    assert_eq!(
        (f["severity"].as_str(), f["count"].as_u64()),
        (Some("warning"), Some(2))
    );
}
