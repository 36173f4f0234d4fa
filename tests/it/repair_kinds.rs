//! `custodian repair` on the other kinds of damage real POS databases get
//! (issue 8, "the repair ladder, extended"): auto_vacuum and
//! incremental_vacuum files with their pointer maps, a damaged freelist, a
//! damaged header or schema table with a snapshot, WITHOUT ROWID customer
//! tables, several kinds of damage in one file. Each fixture is built by
//! tools/make_fixtures.py with its truth computed there (Python's sqlite3),
//! and each case checks the exact result: the customer rows by the
//! builder's digest, the stock sqlite3's integrity_check, the exact
//! restored / quarantined / unrecoverable IDs, the exit code.

use std::path::PathBuf;

use super::repair::{
    Setup, assert_found_through_every_index, customers_sha256, stock_integrity_check,
};
use super::support::{action_kinds, run, sqlite3_cli, strings, truth};

/// One fixture and what its repair must give.
struct KindCase {
    fixture: &'static str,
    exit: i32,
    verdict: &'static str,
    /// Action kinds the report must list, in this order (others may come between).
    actions: &'static [&'static str],
    /// `PRAGMA auto_vacuum` of the repaired file, by the stock sqlite3: the
    /// repair keeps the file's mode.
    auto_vacuum: &'static str,
}

const CASES: &[KindCase] = &[
    KindCase {
        fixture: "stale_pk_page_autovacuum",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "rebuild_index",
            "free_pages",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "1",
    },
    KindCase {
        fixture: "stale_pk_page_incremental",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "rebuild_index",
            "free_pages",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "2",
    },
    KindCase {
        fixture: "ptrmap_page_zeroed",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "1",
    },
    // the header's largest root page: set to the schema's, the file's
    // vacuum mode kept (told from the pages where the field was zeroed)
    KindCase {
        fixture: "largest_root_page_damaged",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "2",
    },
    KindCase {
        fixture: "largest_root_page_zeroed",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "1",
    },
    KindCase {
        fixture: "freelist_trunk_zeroed",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "free_pages",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "freelist_trunk_out_of_range",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "freelist_count_wrong",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_page_lists", "verify", "swap"],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "header_damaged",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "mend_header",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
    // SQLite refuses these files as a whole (refused.rs: check and
    // diagnose); the repair mends them from the snapshot
    KindCase {
        fixture: "header_zeroed",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "mend_header",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "schema_page_destroyed",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "mend_schema",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "schema_page_garbage",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "mend_schema",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "schema_and_root_zeroed",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "mend_schema",
            "rebuild_database",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
    // a stale ID index page, a zeroed phone index page, garbage over a
    // customers table leaf and a zeroed freelist trunk, in one run: the
    // table is rebuilt (rows salvaged, the leaf's rows from the snapshot),
    // which rebuilds every index and the page lists with it
    KindCase {
        fixture: "several_kinds",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_database", "verify", "swap"],
        auto_vacuum: "0",
    },
    KindCase {
        fixture: "several_kinds_incremental",
        exit: 0,
        verdict: "repaired",
        actions: &["backup", "rebuild_database", "verify", "swap"],
        auto_vacuum: "2",
    },
    // the same without the table leaf: every row intact, so mended page by
    // page: both indexes rebuilt, the freelist written anew
    KindCase {
        fixture: "several_index_kinds",
        exit: 0,
        verdict: "repaired",
        actions: &[
            "backup",
            "rebuild_index",
            "rebuild_index",
            "free_pages",
            "rebuild_page_lists",
            "verify",
            "swap",
        ],
        auto_vacuum: "0",
    },
];

/// Every customer ID in the database (by SQLite, no index).
fn all_customer_ids(db: &std::path::Path) -> Vec<String> {
    let out = sqlite3_cli(
        db,
        "SELECT customer_id FROM customers NOT INDEXED ORDER BY 1",
    );
    out.lines().map(str::to_string).collect()
}

/// The report's finding with `code` (the test fails if there is none).
fn finding(report: &serde_json::Value, code: &str) -> serde_json::Value {
    report["findings"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["code"] == code))
        .cloned()
        .unwrap_or_else(|| panic!("no {code} finding: {report}"))
}

/// The IDs a truth file lists under `key` (none when it has no such key).
fn truth_ids(t: &serde_json::Value, key: &str) -> Vec<String> {
    strings(&t[key])
}

fn check_case(case: &KindCase) {
    let name = case.fixture;
    let s = Setup::new(name);
    let t = truth(name);
    let original = std::fs::read(&s.db).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), case.exit, "{name}: {}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], case.verdict, "{name}");
    let want = t
        .get("expected_after_repair_sha256")
        .unwrap_or(&t["expected_customers_sha256"])
        .as_str()
        .unwrap();
    assert_eq!(customers_sha256(&s.db), want, "{name}: customer rows");
    assert_eq!(stock_integrity_check(&s.db), "ok", "{name}");
    for (field, key) in [
        ("restored_customer_ids", "repair_restored_customer_ids"),
        (
            "quarantined_customer_ids",
            "repair_quarantined_customer_ids",
        ),
        (
            "unrecoverable_customer_ids",
            "repair_unrecoverable_customer_ids",
        ),
    ] {
        assert_eq!(strings(&j[field]), truth_ids(&t, key), "{name}: {field}");
    }
    if t.get("pos_refusal").is_some() {
        // SQLite refused the whole file: every customer was rejected, and
        // every one must be found now
        let all = all_customer_ids(&s.db);
        assert_eq!(
            all.len() as u64,
            t["expected_customers_count"].as_u64().unwrap()
        );
        assert_found_through_every_index(&s.db, &all);
    } else {
        assert_found_through_every_index(&s.db, &strings(&t["affected_customer_ids"]));
    }
    for (pragma, key) in [
        ("user_version", "user_version"),
        ("application_id", "application_id"),
    ] {
        if let Some(v) = t.get(key) {
            assert_eq!(
                sqlite3_cli(&s.db, &format!("PRAGMA {pragma}")),
                v.to_string(),
                "{name}: {pragma} comes from the snapshot's header"
            );
        }
    }
    let c = run(&["check", s.db.to_str().unwrap()], s.dir.path());
    assert_eq!(c.code(), 0, "{name}: the check agrees: {}", c.show());
    assert_eq!(
        std::fs::read(PathBuf::from(j["backup_path"].as_str().unwrap())).unwrap(),
        original,
        "{name}: the backup is the original"
    );
    assert_eq!(
        sqlite3_cli(&s.db, "PRAGMA auto_vacuum"),
        case.auto_vacuum,
        "{name}"
    );
    if let Some(free) = t.get("free_pages_after_repair") {
        assert_eq!(
            sqlite3_cli(&s.db, "PRAGMA freelist_count"),
            free.to_string(),
            "{name}: every page no b-tree uses is on the freelist"
        );
    }
    if let Some(n) = t.get("transactions_count") {
        assert_eq!(
            sqlite3_cli(&s.db, "SELECT count(*) FROM transactions"),
            n.to_string(),
            "{name}: every transaction kept, none of the purged ones brought back"
        );
    }
    let kinds = action_kinds(&j);
    let mut rest = kinds.iter();
    for want in case.actions {
        assert!(
            rest.any(|k| k == want),
            "{name}: action {want} missing or out of order in {kinds:?}"
        );
    }
}

#[test]
fn every_kind_of_damage_is_repaired_exactly() {
    for case in CASES {
        check_case(case);
    }
}

/// The pointer map itself: check names every wrong entry (as SQLite's
/// integrity_check does, one per page), and the plan rewrites the maps.
#[test]
fn a_zeroed_pointer_map_is_found_and_planned() {
    let name = "ptrmap_page_zeroed";
    let s = Setup::new(name);
    let t = truth(name);
    let c = run(
        &["check", s.db.to_str().unwrap(), "--json", "-"],
        s.dir.path(),
    );
    assert_eq!(c.code(), 1, "{}", c.show());
    let j = c.json();
    let f = finding(&j, "ptrmap_damaged");
    assert_eq!(f["count"], t["ptrmap_entries_lost"], "{f}");
    assert_eq!(f["pages"], serde_json::json!([2]));
    assert_eq!(strings(&j["affected_customer_ids"]), Vec::<String>::new());
    let before = std::fs::read(&s.db).unwrap();
    let r = s.repair(&["--dry-run"]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let plan = &r.json()["plan"];
    assert_eq!(plan["strategy"], "patch_copy");
    let reasons = strings(&plan["page_lists"]["rebuild"]["reasons"]);
    assert_eq!(reasons.len(), 1, "{plan}");
    assert!(
        reasons[0].starts_with("ptrmap_damaged: 246 pointer-map entries"),
        "{reasons:?}"
    );
    assert_eq!(
        std::fs::read(&s.db).unwrap(),
        before,
        "a dry run changes nothing"
    );
}

/// The header's largest root page (offset 52) damaged in an auto-vacuum
/// file: check names the header's value and the schema's largest root page
/// (both from the builder), and the repair changes exactly those four
/// bytes: every other byte of the repaired file is the damaged file's. Where
/// the field was zeroed, SQLite reads the file as one without auto-vacuum;
/// the pages (a pointer map at page 2 that agrees with the b-trees) tell
/// the repair otherwise, and the mode is kept.
#[test]
fn a_damaged_largest_root_page_is_set_from_the_schema_and_nothing_else_changes() {
    for (name, found) in [
        (
            "largest_root_page_damaged",
            "the header's largest root page is {header}, the schema's is {largest}",
        ),
        (
            "largest_root_page_zeroed",
            "the header's largest root page is 0 (no auto-vacuum), but page 2 is a pointer map \
             that agrees with the b-trees: the file is auto_vacuum full, and its largest root \
             page is {largest}",
        ),
    ] {
        let s = Setup::new(name);
        let t = truth(name);
        let largest = t["largest_root_page"].as_u64().unwrap() as u32;
        let header = t["header_largest_root_page"].as_u64().unwrap();
        let c = run(
            &["check", s.db.to_str().unwrap(), "--json", "-"],
            s.dir.path(),
        );
        assert_eq!(c.code(), 1, "{}", c.show());
        let j = c.json();
        let codes: Vec<String> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(codes, ["ptrmap_damaged"], "{name}: {j}");
        let f = finding(&j, "ptrmap_damaged");
        let want = found
            .replace("{header}", &header.to_string())
            .replace("{largest}", &largest.to_string());
        assert_eq!(f["message"], want.as_str(), "{name}");
        assert_eq!(f["pages"], serde_json::json!([1]), "{name}");
        let damaged = std::fs::read(&s.db).unwrap();
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "{name}: {}", r.show());
        let mut want = damaged.clone();
        want[52..56].copy_from_slice(&largest.to_be_bytes());
        let got = std::fs::read(&s.db).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let differ: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
        assert_eq!(differ, Vec::<usize>::new(), "{name}: bytes that differ");
        assert_eq!(
            sqlite3_cli(&s.db, "PRAGMA auto_vacuum"),
            if t["auto_vacuum"] == "full" { "1" } else { "2" },
            "{name}"
        );
    }
}

/// The schema table lost, the snapshot's schema has other root pages (a
/// migration rebuilt the customers table after it): every object's root is
/// found from the pages, exactly where the builder left it.
#[test]
fn a_lost_schema_is_rewritten_with_the_roots_found_in_the_pages() {
    let name = "schema_page_garbage";
    let s = Setup::new(name);
    let t = truth(name);
    let before = std::fs::read(&s.db).unwrap();
    let r = s.repair(&["--dry-run"]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let plan = &r.json()["plan"];
    assert_eq!(
        plan["frame"][0]["schema"]["snapshot"]
            .as_str()
            .map(|p| p.ends_with(".snap.db")),
        Some(true),
        "{plan}"
    );
    assert_eq!(plan["strategy"], "patch_copy", "{plan}");
    assert_eq!(
        std::fs::read(&s.db).unwrap(),
        before,
        "a dry run changes nothing"
    );
    let left: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("custodian"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "no work file is left behind");
    assert_eq!(s.repair(&[]).code(), 0);
    let got = sqlite3_cli(
        &s.db,
        "SELECT name, rootpage FROM sqlite_schema WHERE rootpage > 0 ORDER BY name",
    );
    let want: Vec<String> = t["schema_roots"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, p)| format!("{n}|{p}"))
        .collect();
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
    // and they are not the snapshot's
    assert_ne!(t["schema_roots"], t["snapshot_schema_roots"]);
}

/// Two kinds of damage in one file: a header whose page size is wrong and
/// a stale page of the ID index. With a snapshot both are mended in one
/// run: the header from the snapshot's, then the index rebuilt.
#[test]
fn a_damaged_header_and_a_stale_index_page_are_repaired_in_one_run() {
    let name = "stale_pk_page";
    let s = Setup::new(name);
    let t = truth(name);
    let mut bytes = std::fs::read(&s.db).unwrap();
    // the page size: 2 bytes at offset 16
    bytes[16..18].copy_from_slice(&3000u16.to_be_bytes());
    std::fs::write(&s.db, &bytes).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let kinds = action_kinds(&j);
    assert_eq!(
        kinds,
        [
            "backup",
            "mend_header",
            "rebuild_page_lists",
            "rebuild_index",
            "free_pages",
            "verify",
            "swap"
        ]
    );
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
    assert_found_through_every_index(&s.db, &strings(&t["affected_customer_ids"]));
}

/// A small deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One random kind of page damage: a page zeroed, its first bytes (page
/// header and cell pointers) overwritten, bytes flipped anywhere, one page
/// copied over another (a stale or misplaced write), or the file cut.
fn damage(img: &mut Vec<u8>, page_size: usize, rng: &mut Rng) {
    let pages = img.len() / page_size;
    let p = rng.below(pages);
    let at = p * page_size;
    match rng.below(5) {
        0 => img[at..at + page_size].fill(0),
        1 => {
            let n = 8 + rng.below(56);
            let b = rng.bytes(n);
            img[at + if p == 0 { 100 } else { 0 }..][..n].copy_from_slice(&b);
        }
        2 => {
            for _ in 0..1 + rng.below(16) {
                let i = rng.below(img.len());
                img[i] ^= 1 << rng.below(8);
            }
        }
        3 => {
            let q = rng.below(pages);
            let src = img[q * page_size..(q + 1) * page_size].to_vec();
            img[at..at + page_size].copy_from_slice(&src);
        }
        _ => img.truncate((2 + rng.below(pages.saturating_sub(2))) * page_size),
    }
}

/// Property (seeded, in CI): whatever the damage, the page accounting that
/// repair writes freelists and pointer maps from, and the root finding that
/// mends a lost schema, never panic or loop, and name only pages of the file.
#[test]
fn page_accounting_and_root_finding_survive_random_damage() {
    use custodian::format::accounting::{
        freelist_images, page_roles, ptrmap_images, ptrmap_mismatches,
    };
    use custodian::format::btree::{MemoryPages, PageSet, PageSource};
    use custodian::format::roots::{SAMPLE, root_candidates};
    let images: Vec<Vec<u8>> = [
        "ptrmap_page_zeroed",
        "stale_pk_page_incremental",
        "schema_page_garbage",
        "freelist_trunk_zeroed",
    ]
    .iter()
    .map(|f| std::fs::read(super::support::fixtures().join(format!("{f}.db"))).unwrap())
    .collect();
    let mut rng = Rng(0x5eed_0008_c0de_2026);
    let start = std::time::Instant::now();
    for round in 0..160 {
        let mut img = images[round % images.len()].clone();
        for _ in 0..1 + rng.below(6) {
            damage(&mut img, 4096, &mut rng);
        }
        let Ok(src) = MemoryPages::new(img) else {
            continue;
        };
        let n = src.page_count();
        let (ps, usable) = (src.page_size(), src.usable_size());
        let roots: Vec<u32> = (1..=n.min(12))
            .chain([rng.below(n as usize + 8) as u32])
            .collect();
        let mut roles = page_roles(&src, &roots);
        let free = roles.unused(ps, usable, true);
        assert!(
            free.iter().all(|&p| p >= 2 && p <= n && !roles.is_used(p)),
            "round {round}"
        );
        roles.mark_free(&free);
        for m in ptrmap_mismatches(&src, &roles) {
            assert!(m.pgno <= n && m.map < m.pgno, "round {round}: {m:?}");
        }
        for (p, img) in ptrmap_images(&roles, n, ps, usable) {
            assert!(
                p >= 2 && p <= n && img.len() == ps as usize,
                "round {round}"
            );
        }
        let (first, trunks) = freelist_images(&free, ps, usable);
        assert_eq!(first, free.first().copied().unwrap_or(0));
        assert!(trunks.len() <= free.len());
        for c in root_candidates(&src, &PageSet::new()) {
            assert!(
                c.pgno >= 2 && c.pgno <= n,
                "round {round}: candidate {}",
                c.pgno
            );
            assert!(c.sample.len() <= SAMPLE && c.sample.len() as u64 <= c.entries);
        }
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(120),
        "too slow: {:?}",
        start.elapsed()
    );
}

/// Property (seeded, in CI): a file whose frame is damaged at random (the
/// header's fields, the schema page, and sometimes one more page) is either
/// repaired into a file the stock sqlite3 calls ok whose every customer row
/// is one the file really held, or refused with the original unchanged;
/// never a panic, never "could not run". Where only the frame was hit, the
/// repair gives back every row.
#[test]
fn random_frame_damage_is_repaired_or_refused_never_worse() {
    let mut rng = Rng(0xf4a3_e0de_0008_0005);
    let all_rows = |db: &std::path::Path| -> Vec<String> {
        sqlite3_cli(db, "SELECT quote(rowid) || ',' || quote(customer_id) || ',' || quote(name) || ',' || quote(balance_cents) FROM customers NOT INDEXED ORDER BY rowid")
            .lines()
            .map(str::to_string)
            .collect()
    };
    for round in 0..10 {
        let name = ["header_damaged", "schema_page_garbage"][round % 2];
        let s = Setup::new(name);
        let t = truth(name);
        let mut img = std::fs::read(&s.db).unwrap();
        let frame_only = rng.below(2) == 0;
        if name == "header_damaged" {
            let b = rng.bytes(84);
            img[16..100].copy_from_slice(&b);
        } else {
            let b = rng.bytes(4096 - 100);
            img[100..4096].copy_from_slice(&b);
        }
        if !frame_only {
            let p = 2 + rng.below(img.len() / 4096 - 2);
            img[p * 4096..(p + 1) * 4096].fill(0);
        }
        std::fs::write(&s.db, &img).unwrap();
        let r = s.repair(&[]);
        match r.code() {
            0 | 1 => {
                assert_eq!(
                    stock_integrity_check(&s.db),
                    "ok",
                    "round {round}: {}",
                    r.show()
                );
                if frame_only {
                    assert_eq!(
                        customers_sha256(&s.db),
                        t["expected_customers_sha256"].as_str().unwrap(),
                        "round {round}: only the frame was damaged: {}",
                        r.show()
                    );
                } else {
                    // every row is one the file held (a clean repair of the
                    // fixture gives them) or the snapshot's
                    let clean = Setup::new(name);
                    assert_eq!(clean.repair(&[]).code(), 0);
                    let snap = super::support::fixtures().join(format!("{name}.snap.db"));
                    let known: std::collections::BTreeSet<String> = all_rows(&clean.db)
                        .into_iter()
                        .chain(all_rows(&snap))
                        .collect();
                    for row in all_rows(&s.db) {
                        assert!(
                            known.contains(&row),
                            "round {round}: row {row} is neither the file's nor the snapshot's"
                        );
                    }
                }
            }
            3 => assert_eq!(
                std::fs::read(&s.db).unwrap(),
                img,
                "round {round}: refused, so unchanged"
            ),
            c => panic!("round {round}: exit {c}: {}", r.show()),
        }
    }
}

/// Five kinds in one file: several_kinds (a stale ID index page, a zeroed
/// phone index page, garbage over a customers table leaf, a zeroed freelist
/// trunk) with every header field after the magic string zeroed as well.
/// With a snapshot, one run mends the header, then rebuilds the table.
#[test]
fn five_kinds_with_a_zeroed_header_are_repaired_in_one_run() {
    let name = "several_kinds";
    let s = Setup::new(name);
    let t = truth(name);
    let mut bytes = std::fs::read(&s.db).unwrap();
    bytes[16..100].fill(0);
    std::fs::write(&s.db, &bytes).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let kinds = action_kinds(&j);
    let mut rest = kinds.iter();
    for want in [
        "backup",
        "mend_header",
        "rebuild_database",
        "verify",
        "swap",
    ] {
        assert!(rest.any(|k| *k == want), "{want} in {kinds:?}");
    }
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
    assert_eq!(
        strings(&j["restored_customer_ids"]),
        truth_ids(&t, "repair_restored_customer_ids")
    );
    assert_eq!(
        strings(&j["unrecoverable_customer_ids"]),
        Vec::<String>::new()
    );
    assert_eq!(
        sqlite3_cli(&s.db, "SELECT count(*) FROM transactions"),
        t["transactions_count"].to_string()
    );
    let all = all_customer_ids(&s.db);
    assert_eq!(
        all.len() as u64,
        t["expected_customers_count"].as_u64().unwrap()
    );
    assert_found_through_every_index(&s.db, &all);
    assert_eq!(
        std::fs::read(PathBuf::from(j["backup_path"].as_str().unwrap())).unwrap(),
        bytes,
        "the backup is the damaged original"
    );
}

/// DESIGN rule 6 after a repair with losses: the customers no source holds
/// were listed as unrecoverable; a second repair (and a third) finds only
/// them, so it changes nothing, takes no backup and gives the same report
/// (exit 1, the same unrecoverable IDs). Once a customer that the snapshot
/// has vanishes as well, a repair restores it and lists the same losses.
#[test]
fn repairing_again_after_losses_changes_nothing() {
    let name = "lost_customer_leaf";
    let s = Setup::new(name);
    let t = truth(name);
    let lost = truth_ids(&t, "unrecoverable_customer_ids");
    assert_eq!(lost.len(), 25);
    let first = s.repair(&[]);
    assert_eq!(first.code(), 1, "{}", first.show());
    let j = first.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    let once = std::fs::read(&s.db).unwrap();
    let backups = s.backups();
    assert!(!backups.is_empty());
    for extra in [&[][..], &["--dry-run"][..], &[][..]] {
        let again = s.repair(extra);
        assert_eq!(again.code(), 1, "{extra:?}: {}", again.show());
        let j = again.json();
        assert_eq!(j["verdict"], "repaired_with_losses", "{extra:?}");
        assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost, "{extra:?}");
        assert_eq!(
            strings(&j["plan"]["strategy"]["losses_accounted"]["customer_ids"]),
            lost,
            "{extra:?}: {}",
            j["plan"]
        );
        assert_eq!(j["actions"], serde_json::json!([]), "{extra:?}");
        assert!(j["backup_path"].is_null(), "{extra:?}");
        assert_eq!(std::fs::read(&s.db).unwrap(), once, "{extra:?}");
        assert_eq!(s.backups(), backups, "{extra:?}: no new backup");
    }
    // a customer the snapshot has vanishes too: that one is restored
    let gone = truth_ids(&t, "restorable_customer_ids")[0].clone();
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute("DELETE FROM customers WHERE customer_id = ?1", [&gone])
        .unwrap();
    drop(conn);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert!(
        j["plan"]["strategy"]["rebuild"].is_object(),
        "{}",
        j["plan"]
    );
    assert_eq!(strings(&j["restored_customer_ids"]), vec![gone.clone()]);
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_after_repair_sha256"].as_str().unwrap()
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
}

/// The schema table lost and no snapshot: no page names the customer table
/// any more, so its rows cannot be told from the others'. The repair stops
/// (exit 3) with one line saying so and what would help, and changes
/// nothing — a dry run too.
#[test]
fn a_lost_schema_without_a_snapshot_is_refused_plainly() {
    for name in ["schema_page_garbage", "schema_and_root_zeroed"] {
        let s = Setup::new(name);
        std::fs::remove_file(s.dir.path().join("snaps").join(format!("{name}.snap.db"))).unwrap();
        let before = std::fs::read(&s.db).unwrap();
        for extra in [&["--dry-run"][..], &[][..]] {
            let r = s.repair(extra);
            assert_eq!(r.code(), 3, "{name} {extra:?}: {}", r.show());
            let err = r.stderr();
            assert_eq!(err.lines().count(), 1, "{name}: {err}");
            assert!(
                err.contains(s.db.to_str().unwrap())
                    && err.contains("cannot read the schema table")
                    && err.contains("--snapshot"),
                "{name}: {err}"
            );
            assert_eq!(r.json()["verdict"], "failed", "{name}");
            assert_eq!(std::fs::read(&s.db).unwrap(), before, "{name}");
            assert!(s.backups().is_empty(), "{name}");
        }
    }
}

/// Property (seeded, in CI): several kinds of damage at once on POS
/// files (pages zeroed, page headers overwritten, a page written over
/// another), repaired with a snapshot: the result is sound by the stock
/// sqlite3 and holds only rows the file or the snapshot held, or the repair
/// refuses and changes nothing; a second repair changes nothing (no byte,
/// no new backup).
#[test]
fn several_random_kinds_repair_once_and_for_all() {
    let mut rng = Rng(0x5e7e_4a1c_0008_0006);
    let rows = |db: &std::path::Path| -> std::collections::BTreeSet<String> {
        sqlite3_cli(db, "SELECT quote(rowid) || ',' || quote(customer_id) || ',' || quote(name) || ',' || quote(balance_cents) FROM customers NOT INDEXED")
            .lines()
            .map(str::to_string)
            .collect()
    };
    for round in 0..18 {
        let name = [
            "healthy",
            "several_index_kinds",
            "stale_pk_page_incremental",
        ][round % 3];
        let s = Setup::new(name);
        let fx = super::support::fixtures();
        let known: std::collections::BTreeSet<String> = rows(&fx.join(format!("{name}.db")))
            .into_iter()
            .chain(rows(&fx.join(format!("{name}.snap.db"))))
            .collect();
        let mut img = std::fs::read(&s.db).unwrap();
        let pages = img.len() / 4096;
        for _ in 0..2 + rng.below(3) {
            let p = 1 + rng.below(pages - 1);
            let at = p * 4096;
            match rng.below(3) {
                0 => img[at..at + 4096].fill(0),
                1 => {
                    let n = 8 + rng.below(56);
                    let b = rng.bytes(n);
                    img[at..at + n].copy_from_slice(&b);
                }
                _ => {
                    let q = 1 + rng.below(pages - 1);
                    let src = img[q * 4096..(q + 1) * 4096].to_vec();
                    img[at..at + 4096].copy_from_slice(&src);
                }
            }
        }
        std::fs::write(&s.db, &img).unwrap();
        let r = s.repair(&[]);
        match r.code() {
            0 | 1 => {
                assert_eq!(
                    stock_integrity_check(&s.db),
                    "ok",
                    "round {round}: {}",
                    r.show()
                );
                for row in rows(&s.db) {
                    assert!(
                        known.contains(&row),
                        "round {round}: row {row} is neither the file's nor the snapshot's"
                    );
                }
                let once = std::fs::read(&s.db).unwrap();
                let backups = s.backups();
                let again = s.repair(&[]);
                assert!(
                    matches!(again.code(), 0 | 1),
                    "round {round}: {}",
                    again.show()
                );
                assert_eq!(
                    std::fs::read(&s.db).unwrap(),
                    once,
                    "round {round}: {}",
                    again.show()
                );
                assert_eq!(s.backups(), backups, "round {round}: no new backup");
            }
            2 | 3 => assert_eq!(
                std::fs::read(&s.db).unwrap(),
                img,
                "round {round}: refused, so unchanged"
            ),
            c => panic!("round {round}: exit {c}: {}", r.show()),
        }
    }
}

/// A customer that transactions name and only the snapshot holds, whose
/// card number a live row holds now (damage elsewhere): restoring it would
/// break the card number's UNIQUE index. The repair restores the rest and
/// lists it as unrecoverable, a person to decide (exit 1) — it does not
/// stop — and a second repair changes nothing.
#[test]
fn a_restore_the_live_rows_refuse_is_a_loss_not_a_stop() {
    let name = "lost_customer_leaf";
    let s = Setup::new(name);
    let t = truth(name);
    let restorable = truth_ids(&t, "restorable_customer_ids");
    let (kept_out, restored) = (&restorable[0], &restorable[1]);
    // the snapshot (our copy) gives that customer the card number a live
    // row holds (its own row in the snapshot gets another, so the snapshot
    // stays sound)
    let snap = s.dir.path().join("snaps").join(format!("{name}.snap.db"));
    let card = sqlite3_cli(&s.db, "SELECT card_number FROM customers WHERE rowid = 1");
    sqlite3_cli(
        &snap,
        &format!(
            "UPDATE customers SET card_number = 'moved-' || card_number WHERE rowid = 1; \
             UPDATE customers SET card_number = '{card}' WHERE customer_id = '{kept_out}'"
        ),
    );
    assert_eq!(
        sqlite3_cli(
            &snap,
            &format!("SELECT customer_id FROM customers WHERE card_number = '{card}'")
        ),
        *kept_out
    );
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["restored_customer_ids"]), vec![restored.clone()]);
    let mut lost = truth_ids(&t, "unrecoverable_customer_ids");
    lost.push(kept_out.clone());
    lost.sort();
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    let asks: Vec<String> = strings(&j["plan"]["needs_decision"])
        .into_iter()
        .filter(|d| d.contains(kept_out.as_str()))
        .collect();
    assert_eq!(asks.len(), 1, "{}", j["plan"]);
    assert!(asks[0].contains("could not be restored"), "{asks:?}");
    assert_eq!(stock_integrity_check(&s.db), "ok");
    let once = std::fs::read(&s.db).unwrap();
    let backups = s.backups();
    let again = s.repair(&[]);
    assert_eq!(again.code(), 1, "{}", again.show());
    assert_eq!(strings(&again.json()["unrecoverable_customer_ids"]), lost);
    assert_eq!(std::fs::read(&s.db).unwrap(), once);
    assert_eq!(s.backups(), backups);
}

/// A transaction whose customer_id is not valid UTF-8 (a damaged
/// reference) in a file whose table must be rebuilt: the ID is named as
/// check names it (decoded lossily) and listed as unrecoverable; the
/// repair does not stop on it.
#[test]
fn a_reference_that_is_not_utf8_is_a_loss_not_a_stop() {
    let name = "damaged_table_leaf";
    let s = Setup::new(name);
    sqlite3_cli(
        &s.db,
        "UPDATE transactions SET customer_id = CAST(x'43ff31' AS TEXT) WHERE txn_id = (SELECT min(txn_id) FROM transactions)",
    );
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(
        strings(&j["unrecoverable_customer_ids"]),
        vec!["C\u{fffd}1".to_string()]
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
}

/// `db` with pages `a` and `b` written each at the other's place
/// (`overflow::swap_pages`), then cut to `keep` 4096-byte pages when
/// given; the damaged bytes.
fn swap_pages_of(db: &std::path::Path, a: usize, b: usize, keep: Option<usize>) -> Vec<u8> {
    super::overflow::swap_pages(db, a, b);
    let mut bytes = std::fs::read(db).unwrap();
    if let Some(keep) = keep {
        bytes.truncate(keep * 4096);
        std::fs::write(db, &bytes).unwrap();
    }
    bytes
}

/// several_kinds_incremental with the ID index's child page 102 (a leaf)
/// and the email index's root page 7 (an interior page) written each at
/// the other's place (nightly property case 1561). Both are index pages,
/// so only depth tells them: the ID index's other children are leaves.
/// The email entries read through the ID index named rowid 717 by the
/// email gary.anderson700@example-mail.net, which the snapshot's row 717
/// (customer C092662140922) does not hold, so that customer was neither
/// restored nor listed, and 15 emails were listed as unrecoverable
/// customer IDs. The two pages are put back before the rows are read: the
/// repair gives what it gives the fixture alone (every row of the garbled
/// leaf restored from the snapshot, none unrecoverable). Exit 1: the plan,
/// made from the check of the swapped file, still asks a person about
/// rows whose ID the ID index (read through the swapped page) gave as an
/// email.
#[test]
fn an_index_leaf_swapped_with_another_indexs_root_is_put_back() {
    let name = "several_kinds_incremental";
    let s = Setup::new(name);
    let t = truth(name);
    let damaged = swap_pages_of(&s.db, 7, 102, None);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let swapped = super::support::action_detail(&j, "swap_pages", None);
    assert!(
        swapped.starts_with("pages 7 and 102 hold each other's content"),
        "{swapped}"
    );
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    let restored = strings(&j["restored_customer_ids"]);
    assert_eq!(restored, truth_ids(&t, "repair_restored_customer_ids"));
    assert!(restored.contains(&"C092662140922".to_string()));
    assert_eq!(
        strings(&j["unrecoverable_customer_ids"]),
        Vec::<String>::new()
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
    assert_found_through_every_index(&s.db, &all_customer_ids(&s.db));
    assert_eq!(
        std::fs::read(PathBuf::from(j["backup_path"].as_str().unwrap())).unwrap(),
        damaged,
        "the backup is the damaged original"
    );
}

/// several_kinds cut to 101 pages, with the customer table's root page 2
/// (an interior page) and the transactions table's leaf 84 written each
/// at the other's place (nightly property case 1981). The customer table
/// read as one leaf of transactions' rows (its tree whole, nothing lost),
/// so the snapshot's customers whose leaves the cut took were neither
/// restored nor listed. Both are table pages: only depth tells them (the
/// other children of transactions' root are leaves). Put back, the
/// customer table's pages past the cut are lost pages: every snapshot
/// customer is in the repaired file or listed as unrecoverable, but the
/// 29 rows of the leaf garbled in the fixture, which the cut index pages
/// no longer name (reported as cells that could not be read, lost
/// without a trace).
#[test]
fn a_table_root_swapped_with_another_tables_leaf_in_a_cut_file_is_put_back() {
    let name = "several_kinds";
    let s = Setup::new(name);
    let t = truth(name);
    swap_pages_of(&s.db, 2, 84, Some(101));
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let swapped = super::support::action_detail(&j, "swap_pages", None);
    assert!(
        swapped.starts_with("pages 2 and 84 hold each other's content"),
        "{swapped}"
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
    let kept: std::collections::BTreeSet<String> = all_customer_ids(&s.db).into_iter().collect();
    let listed: std::collections::BTreeSet<String> = strings(&j["unrecoverable_customer_ids"])
        .into_iter()
        .collect();
    assert_eq!(listed.len(), 57, "{listed:?}");
    assert!(
        kept.is_disjoint(&listed),
        "{:?}",
        kept.intersection(&listed)
    );
    for id in [
        "C051092186920",
        "C051378367925",
        "C053713627561",
        "C054603144025",
        "C055012079666",
    ] {
        assert!(listed.contains(id), "{id} listed");
    }
    let snap = s.dir.path().join("snaps").join(format!("{name}.snap.db"));
    let garbled: std::collections::BTreeSet<String> =
        truth_ids(&t, "lost_customer_ids").into_iter().collect();
    let unaccounted: Vec<String> = sqlite3_cli(&snap, "SELECT customer_id FROM customers")
        .lines()
        .filter(|id| !kept.contains(*id) && !listed.contains(*id) && !garbled.contains(*id))
        .map(str::to_string)
        .collect();
    assert_eq!(unaccounted, Vec::<String>::new());
    let lost = j["lost_rows"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["table"] == "customers"))
        .cloned()
        .unwrap_or_else(|| panic!("customers in lost_rows: {}", j["lost_rows"]));
    assert!(
        lost["pages_lost"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_u64().unwrap() > 101),
        "{lost}"
    );
}
