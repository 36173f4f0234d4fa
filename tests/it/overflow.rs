//! Overflow chains (issue 8): a page of a chain swapped with another
//! object's page is put back; what a broken chain still delivers is kept.
//! Truth from the fixture builder (fixtures/overflow_chain_broken.truth.json)
//! and the stock sqlite3 (`dbstat`: which page is which), never custodian.

use std::path::Path;

use super::repair::{Setup, customers_sha256, customers_sha256_of, stock_integrity_check};
use super::support::{action_detail, action_kinds, sqlite3_cli, strings, truth};

const PAGE_SIZE: usize = 4096;

/// Swaps the images of pages `a` and `b` of `db`.
pub(super) fn swap_pages(db: &Path, a: usize, b: usize) {
    let mut bytes = std::fs::read(db).unwrap();
    let (x, y) = ((a - 1) * PAGE_SIZE, (b - 1) * PAGE_SIZE);
    let pa = bytes[x..x + PAGE_SIZE].to_vec();
    let pb = bytes[y..y + PAGE_SIZE].to_vec();
    bytes[x..x + PAGE_SIZE].copy_from_slice(&pb);
    bytes[y..y + PAGE_SIZE].copy_from_slice(&pa);
    std::fs::write(db, bytes).unwrap();
}

/// The stock sqlite3's `dbstat` rows `(pageno, path)` of `name`'s pages of
/// `pagetype`, in path order.
fn pages_of(db: &Path, name: &str, pagetype: &str) -> Vec<(usize, String)> {
    sqlite3_cli(
        db,
        &format!(
            "SELECT pageno || '|' || path FROM dbstat WHERE name = '{name}' AND pagetype = '{pagetype}' ORDER BY path"
        ),
    )
    .lines()
    .filter_map(|l| l.split_once('|'))
    .map(|(p, path)| (p.parse().unwrap(), path.to_string()))
    .collect()
}

/// Blind seed 644 of the repair property test, made exact: the last
/// overflow page of a long customer row swapped with a leaf of
/// idx_customers_phone. The row's chain then ends on the index leaf (whose
/// first bytes, read as a next-page pointer, point past the file) and the
/// index's child pointer finds the row's bytes. The repair used to keep the
/// row with the index leaf's bytes as the end of its record, and its own
/// verification then refused the copy (exit 3). Now the two pages are read
/// back in their places: every customer comes back exactly as the builder
/// wrote it, and only the two rows whose chains the fixture broke are
/// missing (restored from the snapshot when there is one).
#[test]
fn an_overflow_page_swapped_with_an_index_leaf_is_put_back() {
    let t = truth("overflow_chain_broken");
    let broken: Vec<u64> = t["damage"]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    for with_snapshot in [true, false] {
        let s = Setup::new("overflow_chain_broken");
        if !with_snapshot {
            std::fs::remove_dir_all(s.dir.path().join("snaps")).unwrap();
            std::fs::create_dir(s.dir.path().join("snaps")).unwrap();
        }
        // the rows as the builder wrote them, but for the two whose chains
        // it broke (SQLite reads every other row of the fixture)
        let lost = t["damaged_rowids"].as_array().unwrap();
        let lost: Vec<String> = lost.iter().map(|r| r.to_string()).collect();
        let all_but_lost = |db: &Path| {
            customers_sha256_of(
                db,
                &format!(
                    "SELECT rowid, {} FROM customers NOT INDEXED WHERE rowid NOT IN ({})",
                    super::repair::COLUMNS,
                    lost.join(", ")
                ),
            )
        };
        let want_without = all_but_lost(&s.db);
        // the last page of an intact chain, and an index leaf
        let overflow = pages_of(&s.db, "customers", "overflow");
        let (last, path) = overflow
            .iter()
            .find(|(p, path)| path.ends_with("+000001") && !broken.contains(&(*p as u64)))
            .cloned()
            .unwrap();
        let leaf = pages_of(&s.db, "idx_customers_phone", "leaf")[0].0;
        swap_pages(&s.db, last, leaf);
        let damaged = std::fs::read(&s.db).unwrap();
        let c = super::support::run(&["check", s.db.to_str().unwrap()], s.dir.path());
        assert_eq!(c.code(), 1, "{}", c.show());
        let r = s.repair(&[]);
        let j = r.json();
        let name = format!("snapshot {with_snapshot}, pages {last} ({path}) and {leaf}");
        let (lo, hi) = (last.min(leaf), last.max(leaf));
        assert!(
            action_detail(&j, "swap_pages", None)
                .starts_with(&format!("pages {lo} and {hi} hold each other's content")),
            "{name}: {}",
            r.show()
        );
        assert_eq!(
            action_kinds(&j)
                .iter()
                .filter(|k| **k == "swap_pages")
                .count(),
            1,
            "{name}"
        );
        assert_eq!(stock_integrity_check(&s.db), "ok", "{name}");
        let lost_ids = strings(&t["damaged_customer_ids"]);
        if with_snapshot {
            assert_eq!(r.code(), 0, "{name}: {}", r.show());
            assert_eq!(
                customers_sha256(&s.db),
                t["expected_after_repair_sha256"].as_str().unwrap(),
                "{name}: every customer as the builder wrote it"
            );
            assert_eq!(strings(&j["restored_customer_ids"]), lost_ids, "{name}");
            assert_eq!(
                strings(&j["unrecoverable_customer_ids"]),
                Vec::<String>::new()
            );
        } else {
            assert_eq!(r.code(), 1, "{name}: {}", r.show());
            assert_eq!(
                all_but_lost(&s.db),
                want_without,
                "{name}: every other customer exactly"
            );
            assert_eq!(strings(&j["restored_customer_ids"]), Vec::<String>::new());
            assert_eq!(
                strings(&j["unrecoverable_customer_ids"]),
                lost_ids,
                "{name}"
            );
        }
        // the backup is the damaged file, byte for byte
        let backup = j["backup_path"].as_str().unwrap();
        assert_eq!(std::fs::read(backup).unwrap(), damaged, "{name}");
    }
}

/// Issue 8: a value behind a broken overflow chain was dropped whole (the
/// row kept in part, the value NULL), its first bytes with it. Now every
/// byte the record's cell and chain still give is kept in
/// custodian_quarantine as `cell_payload`, under the row's rowid: exactly
/// the cell's local part and the chain's pages up to where it breaks, read
/// here from the damaged file's bytes by the test's own reader
/// (`corpus_rows::leaf_cells`), not by custodian.
#[test]
fn what_a_broken_overflow_chain_still_gives_is_kept_whole_in_quarantine() {
    let t = truth("overflow_chain_broken");
    let s = Setup::new("overflow_chain_broken");
    std::fs::remove_dir_all(s.dir.path().join("snaps")).unwrap();
    std::fs::create_dir(s.dir.path().join("snaps")).unwrap();
    let bytes = std::fs::read(&s.db).unwrap();
    let root = super::support::root_page(&s.db, "customers") as u32;
    let cells = super::corpus_rows::leaf_cells(&bytes, root);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(
        strings(&j["unrecoverable_customer_ids"]),
        strings(&t["damaged_customer_ids"])
    );
    let usable = PAGE_SIZE - 4;
    for rowid in t["damaged_rowids"].as_array().unwrap() {
        let rowid = rowid.as_i64().unwrap();
        let cell = cells
            .iter()
            .find(|c| c.rowid == Some(rowid) && c.readable)
            .unwrap();
        assert!(cell.overflow_broken, "rowid {rowid}");
        let mut want = cell.local.clone().unwrap();
        want.extend_from_slice(&cell.chain);
        // the chain gives one whole page before it breaks (the fixture
        // zeroed 404's first page and sent 408's first page past the end)
        assert_eq!(cell.chain.len(), usable, "rowid {rowid}");
        let kept = sqlite3_cli(
            &s.db,
            &format!(
                "SELECT json_extract(row_json, '$.cell_payload') FROM custodian_quarantine \
                 WHERE source_table = 'customers' AND original_rowid = {rowid} \
                 AND json_extract(row_json, '$.cell_payload') IS NOT NULL"
            ),
        );
        let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(kept, hex, "rowid {rowid}: the bytes the file still gives");
    }
    assert_eq!(stock_integrity_check(&s.db), "ok");
}
