//! Property (seeded, CI-fast): a header whose page size (bytes 16..18),
//! text encoding (56..60) or reserved bytes (20) are damaged into other
//! values SQLite accepts is told from the pages (`format::geometry`'s
//! `better_than_header`, the schema's records for the encoding). Sound
//! files of two page sizes are damaged at random; check must say
//! `header_invalid` (a wrong encoding: SQLite's refusal) and, where SQLite
//! refuses the file, name as rejected
//! exactly the customers the fixture's truth counts (all of them, known
//! from the pages); where SQLite still reads it, the stock CLI must read
//! every customer and check name none. repair (no snapshot) must give back
//! every customer, byte for byte by the builder's digest, under a header
//! that describes the file. Truth: tools/make_fixtures.py's counts and
//! digests, and the stock sqlite3 CLI.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;

use super::header::stock_integrity_check;
use super::repair::customers_sha256;
use super::support::{fixtures, run, sqlite3_cli, strings, truth};

/// A sound file to damage: its name in fixtures/, the fixture whose truth
/// counts its customers, and the truth's keys for the count and digest.
struct Source {
    file: &'static str,
    fixture: &'static str,
    count: &'static str,
    sha256: &'static str,
    page_size: u32,
}

const SOURCES: [Source; 3] = [
    Source {
        file: "healthy.db",
        fixture: "healthy",
        count: "customers_total",
        sha256: "expected_customers_sha256",
        page_size: 4096,
    },
    Source {
        file: "damaged_table_interior.snap.db",
        fixture: "damaged_table_interior",
        count: "snapshot_customers_count",
        sha256: "snapshot_customers_sha256",
        page_size: 1024,
    },
    Source {
        file: "stale_pk_page.snap.db",
        fixture: "stale_pk_page",
        count: "snapshot_customers_count",
        sha256: "snapshot_customers_sha256",
        page_size: 4096,
    },
];

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Another page size SQLite accepts than `own` (65536 stored as 1).
fn other_page_size(rng: &mut Rng, own: u32) -> u16 {
    let sizes: Vec<u32> = (9..=16).map(|s| 1u32 << s).filter(|&s| s != own).collect();
    let s = sizes[rng.below(sizes.len() as u64) as usize];
    if s == 65536 { 1 } else { s as u16 }
}

/// Damages the geometry fields of `db`; returns what it did.
fn damage(db: &std::path::Path, src: &Source, rng: &mut Rng) -> String {
    let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    let mut did = Vec::new();
    let kind = rng.below(4);
    if kind == 0 || kind == 3 {
        let ps = other_page_size(rng, src.page_size);
        f.write_all_at(&ps.to_be_bytes(), 16).unwrap();
        did.push(format!("page size bytes {ps}"));
    }
    if kind == 1 {
        let enc = 2 + rng.below(2) as u32;
        f.write_all_at(&enc.to_be_bytes(), 56).unwrap();
        did.push(format!("text encoding {enc}"));
    }
    if kind == 2 || kind == 3 {
        let r = 1 + rng.below(255) as u8;
        f.write_all_at(&[r], 20).unwrap();
        did.push(format!("reserved bytes {r}"));
    }
    did.join(", ")
}

#[test]
fn damaged_geometry_fields_are_told_from_the_pages() {
    let runs: u64 = std::env::var("GEOMETRY_PROPERTY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut rng = Rng(0x6e0d_e7e2_0018_0003);
    for round in 0..runs {
        let src = &SOURCES[(round % SOURCES.len() as u64) as usize];
        let t = truth(src.fixture);
        let count = t[src.count].as_u64().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("pos.db");
        std::fs::copy(fixtures().join(src.file), &db).unwrap();
        let what = format!(
            "round {round}, {}: {}",
            src.file,
            damage(&db, src, &mut rng)
        );
        eprintln!("{what}");

        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
        assert_eq!(r.code(), 1, "{what}: {}", r.show());
        let j = r.json();
        let codes: BTreeSet<&str> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap())
            .collect();
        // a wrong page size or reserved-bytes value is named as such; a
        // wrong encoding shows as the refusal, the schema read from the
        // pages in the records' encoding
        assert!(
            codes.contains("header_invalid") || what.contains("encoding"),
            "{what}: {codes:?}"
        );
        let affected = strings(&j["affected_customer_ids"]).len() as u64;
        if codes.contains("database_refused") {
            // every customer rejected, every one known from the pages
            assert_eq!(affected, count, "{what}");
            let reading = j["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["code"] == "page_level_reading")
                .unwrap();
            assert_eq!(reading["count"].as_u64(), Some(count), "{what}");
        } else {
            // SQLite reads the file: the stock CLI serves every customer
            assert_eq!(
                sqlite3_cli(&db, "SELECT count(*) FROM customers NOT INDEXED"),
                count.to_string(),
                "{what}"
            );
            assert_eq!(
                sqlite3_cli(
                    &db,
                    "SELECT count(*) FROM customers INDEXED BY sqlite_autoindex_customers_1 \
                     WHERE customer_id > ''"
                ),
                count.to_string(),
                "{what}"
            );
            assert_eq!(affected, 0, "{what}: {}", r.show());
        }

        let r = run(
            &[
                "repair",
                db.to_str().unwrap(),
                "--backup-dir",
                "bk",
                "--json",
                "-",
            ],
            dir.path(),
        );
        assert_eq!(r.code(), 0, "{what}: {}", r.show());
        assert_eq!(stock_integrity_check(&db), ("ok".to_string(), 0), "{what}");
        assert_eq!(
            customers_sha256(&db),
            t[src.sha256].as_str().unwrap(),
            "{what}"
        );
        let b = std::fs::read(&db).unwrap();
        let ps = u32::from(u16::from_be_bytes([b[16], b[17]]));
        let ps = if ps == 1 { 65536 } else { ps };
        assert_eq!(ps, src.page_size, "{what}: page size");
        assert_eq!(b[20], 0, "{what}: reserved bytes");
        assert_eq!(&b[56..60], &1u32.to_be_bytes(), "{what}: text encoding");
    }
}
