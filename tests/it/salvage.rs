//! Salvage against the fixture builder's ground truth: the rows that survive
//! anywhere in a damaged file (orphaned leaves included) come back exactly,
//! value for value, and a row that is not whole never comes back as if it
//! were.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use custodian::format::btree::{Damage, PageSet, PageSource, walk_table};
use custodian::format::record::{Record, ValueRef};
use custodian::format::salvage::{
    ColumnSpec, OrphanScan, SalvageEntry, SalvageItem, SalvageOptions, SalvageStats, TableShape,
    Via, claimed_pages, salvage_index, salvage_index_with, salvage_table, salvage_table_with,
    salvage_without_rowid_index,
};
use custodian::pager::Pager;
use rusqlite::{Connection, OpenFlags};

use crate::support::{Val, fixture_copy, fixtures, truth};

/// What salvage returned, by rowid.
#[derive(Debug, Default)]
struct Salvaged {
    rows: BTreeMap<i64, (Vec<Val>, Via, u32)>,
    /// Rows in the order yielded.
    order: Vec<i64>,
    damaged: Vec<(i64, String)>,
    /// Whole cells kept aside: (rowid, page, cell).
    repeated: Vec<(i64, u32, usize)>,
    damage: Vec<Damage>,
    stats: SalvageStats,
}

fn open(path: &Path) -> (Pager, Connection) {
    let pager = Pager::open(path).unwrap();
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    (pager, conn)
}

fn rootpage(conn: &Connection, name: &str) -> u32 {
    conn.query_row(
        "SELECT rootpage FROM sqlite_schema WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .unwrap()
}

/// The table's shape from its schema (the way a caller builds it).
fn shape_of(conn: &Connection, table: &str) -> TableShape {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info(\"{table}\")"))
        .unwrap();
    let cols: Vec<(String, bool, bool, i64)> = stmt
        .query_map([], |r| {
            let default: Option<String> = r.get(4)?;
            Ok((r.get(2)?, r.get(3)?, default.is_some(), r.get(5)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let pk_cols = cols.iter().filter(|c| c.3 > 0).count();
    let rowid_alias = cols
        .iter()
        .position(|c| c.3 == 1 && pk_cols == 1 && c.0.eq_ignore_ascii_case("INTEGER"));
    let specs: Vec<ColumnSpec> = cols
        .iter()
        .map(|(t, not_null, has_default, _)| ColumnSpec {
            decl_type: t,
            not_null: *not_null,
            has_default: *has_default,
        })
        .collect();
    let shape = TableShape::from_columns(&specs, rowid_alias);
    if table == "customers" {
        // updated_at, the last column, is NOT NULL without a default.
        assert_eq!((shape.columns, shape.min_columns), (10, 10));
    }
    shape
}

/// The pages every object but `skip` owns.
fn claimed_except(pager: &Pager, conn: &Connection, skip: &[u32]) -> PageSet {
    let mut stmt = conn
        .prepare("SELECT type, rootpage, coalesce(sql, '') FROM sqlite_schema WHERE rootpage > 0")
        .unwrap();
    let roots: Vec<(u32, bool)> = stmt
        .query_map([], |r| {
            let kind: String = r.get(0)?;
            let root: u32 = r.get(1)?;
            let sql: String = r.get(2)?;
            Ok((
                root,
                kind == "index" || sql.to_uppercase().contains("WITHOUT ROWID"),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .filter(|(root, _)| !skip.contains(root))
        .collect();
    claimed_pages(pager, &roots)
}

fn salvage(
    pager: &Pager,
    root: u32,
    shape: &TableShape,
    claimed: &PageSet,
    scan: OrphanScan,
) -> Salvaged {
    let enc = pager.text_encoding();
    let mut out = Salvaged::default();
    let mut rec = Record::default();
    let options = SalvageOptions { orphan_scan: scan };
    out.stats = salvage_table_with(
        pager,
        root,
        shape,
        claimed,
        options,
        &mut |item| match item {
            SalvageItem::Row {
                rowid,
                payload,
                pgno,
                via,
            } => {
                rec.parse(payload).expect("a salvaged row's record parses");
                let vals = rec
                    .values(payload)
                    .map(|v| Val::from_reader(&v, enc))
                    .collect();
                assert!(
                    out.rows.insert(rowid, (vals, via, pgno)).is_none(),
                    "rowid {rowid} yielded twice"
                );
                out.order.push(rowid);
            }
            SalvageItem::RowDamaged { rowid, reason, .. } => out.damaged.push((rowid, reason)),
            SalvageItem::RowRepeated {
                rowid, pgno, cell, ..
            } => out.repeated.push((rowid, pgno, cell)),
            SalvageItem::Damage(d) => out.damage.push(d),
            SalvageItem::CellSetAside { .. } => {}
        },
    );
    out
}

/// `SELECT rowid, * FROM table` of a readable table, by rowid.
fn sqlite_rows(conn: &Connection, table: &str) -> BTreeMap<i64, Vec<Val>> {
    let mut stmt = conn
        .prepare(&format!("SELECT rowid, * FROM \"{table}\" NOT INDEXED"))
        .unwrap();
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next().unwrap() {
        let vals = (1..n)
            .map(|i| Val::from_sqlite(r.get_ref(i).unwrap()))
            .collect();
        out.insert(r.get(0).unwrap(), vals);
    }
    out
}

/// One row read by rowid (a seek from the root, which avoids damaged
/// subtrees the row is not under).
fn sqlite_row(conn: &Connection, table: &str, rowid: i64) -> Vec<Val> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT * FROM \"{table}\" WHERE rowid = ?1"))
        .unwrap();
    let n = stmt.column_count();
    stmt.query_row([rowid], |r| {
        Ok((0..n)
            .map(|i| Val::from_sqlite(r.get_ref(i).unwrap()))
            .collect())
    })
    .unwrap_or_else(|e| panic!("rowid {rowid}: {e}"))
}

fn rowids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Customer IDs named by the surviving entries of the ID index: (id, rowid).
fn pk_entries(pager: &Pager, conn: &Connection) -> (Vec<(String, i64)>, SalvageStats) {
    let root = rootpage(conn, "sqlite_autoindex_customers_1");
    let claimed = claimed_except(pager, conn, &[root]);
    pk_entries_with(pager, root, &claimed)
}

fn pk_entries_with(
    pager: &Pager,
    root: u32,
    claimed: &PageSet,
) -> (Vec<(String, i64)>, SalvageStats) {
    let mut rec = Record::default();
    let mut out = Vec::new();
    let stats = salvage_index(pager, root, 2, claimed, &mut |e| {
        if let SalvageEntry::Entry { payload, rowid, .. } = e {
            rec.parse(payload).unwrap();
            let id = match rec.get(payload, 0) {
                Some(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                other => panic!("ID index entry with key {other:?}"),
            };
            assert_eq!(rec.get(payload, 1), Some(ValueRef::Integer(rowid)));
            out.push((id, rowid));
        }
    });
    (out, stats)
}

#[test]
fn healthy_salvage_equals_sqlite_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy("healthy", dir.path());
    let (pager, conn) = open(&path);
    let root = rootpage(&conn, "customers");
    let shape = shape_of(&conn, "customers");
    let claimed = claimed_except(&pager, &conn, &[root]);
    let expected = sqlite_rows(&conn, "customers");
    assert_eq!(expected.len(), 2020);

    let got = salvage(&pager, root, &shape, &claimed, OrphanScan::WhenPagesLost);
    assert!(got.damage.is_empty(), "{:?}", got.damage);
    assert!(got.damaged.is_empty());
    assert!(!got.stats.orphan_scan);
    let rows: BTreeMap<i64, Vec<Val>> = got.rows.iter().map(|(r, v)| (*r, v.0.clone())).collect();
    assert_eq!(rows, expected);
    assert!(got.rows.values().all(|v| v.1 == Via::Tree));
    // Tree order is rowid order.
    assert!(got.order.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(got.stats.rows_tree, 2020);

    // Scanning anyway finds no orphan: with the other objects' pages claimed
    // there is nothing left to read; without, no other table's leaves fit.
    for claimed in [claimed.clone(), PageSet::new()] {
        let again = salvage(&pager, root, &shape, &claimed, OrphanScan::Always);
        assert!(again.stats.orphan_scan);
        assert!(again.stats.orphan_leaves.is_empty(), "{:?}", again.stats);
        assert_eq!(again.rows.len(), 2020);
        assert_eq!(again.stats.duplicate_rowids, 0);
    }
    let again = salvage(&pager, root, &shape, &claimed, OrphanScan::Always);
    assert_eq!(again.stats.pages_scanned, 0, "every page is owned");
}

#[test]
fn damaged_interior_page_every_row_comes_back() {
    let name = "damaged_table_interior";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(name, dir.path());
    let snap = Connection::open_with_flags(
        fixtures().join(format!("{name}.snap.db")),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let (pager, conn) = open(&path);
    let root = rootpage(&conn, "customers");
    let shape = shape_of(&conn, "customers");
    let claimed = claimed_except(&pager, &conn, &[root]);

    let start = Instant::now();
    let got = salvage(&pager, root, &shape, &claimed, OrphanScan::WhenPagesLost);
    let took = start.elapsed();

    let expected: Vec<i64> = rowids(&t["salvageable_rowids"]);
    assert_eq!(got.rows.keys().copied().collect::<Vec<_>>(), expected);
    assert_eq!(expected.len(), 1510, "every row survives");
    assert!(got.damaged.is_empty(), "{:?}", got.damaged);
    assert!(got.stats.pages_lost && got.stats.orphan_scan);
    let mut leaves: Vec<u32> = t["damage"]["orphaned_leaf_pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    leaves.sort_unstable();
    assert_eq!(got.stats.orphan_leaves, leaves);
    assert_eq!(got.stats.duplicate_rowids, 0);
    let zeroed = t["damage"]["pages"][0].as_u64().unwrap() as u32;
    assert!(got.damage.iter().any(|d| d.pgno == zeroed));

    // Values: the orphaned rows as the snapshot has them (their leaves are
    // byte-identical there), the others as SQLite reads them by rowid.
    let orphaned: BTreeSet<i64> = rowids(&t["orphaned_rowids"]).into_iter().collect();
    assert_eq!(got.stats.rows_orphan as usize, orphaned.len());
    for (rowid, (vals, via, _)) in &got.rows {
        if orphaned.contains(rowid) {
            assert_eq!(*via, Via::OrphanLeaf, "rowid {rowid}");
            assert_eq!(
                vals,
                &sqlite_row(&snap, "customers", *rowid),
                "rowid {rowid}"
            );
        } else {
            assert_eq!(*via, Via::Tree, "rowid {rowid}");
            assert_eq!(
                vals,
                &sqlite_row(&conn, "customers", *rowid),
                "rowid {rowid}"
            );
        }
    }
    let ids: BTreeSet<String> = got
        .rows
        .iter()
        .filter(|(r, _)| orphaned.contains(r))
        .map(|(_, v)| v.0[0].text())
        .collect();
    assert_eq!(ids, strings(&t["orphaned_customer_ids"]));
    assert!(took.as_secs() < 5, "took {took:?}");
}

/// `misplaced_table_cells`: a leaf whose layout is damaged (its fragmented
/// byte count) holds one cell whose rowid is out of key order and no other
/// row's, and one whose rowid the first row of the next leaf has. Every
/// cell is a row: the misplaced one under its rowid; the repeated one,
/// whole, as `RowRepeated`, the row under that rowid being the next leaf's
/// (the cell in key order). Truth: the rowids of the page's cells as the
/// fixture builder reads them from its bytes.
#[test]
fn misplaced_cells_are_rows_and_a_repeated_rowid_is_kept_aside() {
    let name = "misplaced_table_cells";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(name, dir.path());
    let (pager, conn) = open(&path);
    let root = rootpage(&conn, "customers");
    let shape = shape_of(&conn, "customers");
    let claimed = claimed_except(&pager, &conn, &[root]);
    let page = t["damage"]["pages"][0].as_u64().unwrap() as u32;
    let (mis, rep) = (&t["misplaced"], &t["repeated"]);
    let rep_rowid = rep["rowid"].as_i64().unwrap();
    for scan in [OrphanScan::WhenPagesLost, OrphanScan::Always] {
        let got = salvage(&pager, root, &shape, &claimed, scan);
        let mut on_page: Vec<i64> = got
            .rows
            .iter()
            .filter(|(_, v)| v.2 == page)
            .map(|(r, _)| *r)
            .collect();
        on_page.sort_unstable();
        let mut want: Vec<i64> = rowids(&t["page_rowids"])
            .into_iter()
            .filter(|&r| r != rep_rowid)
            .collect();
        want.sort_unstable();
        assert_eq!(on_page, want);
        assert_eq!(
            got.repeated,
            vec![(rep_rowid, page, rep["cell"].as_u64().unwrap() as usize)]
        );
        assert!(got.damaged.is_empty(), "{:?}", got.damaged);
        assert_eq!(
            got.rows.len() as u64 + 1,
            t["expected_customers_count"].as_u64().unwrap()
        );
        let holder = &got.rows[&rep_rowid];
        assert_eq!(holder.2, rep["holder_page"].as_u64().unwrap() as u32);
        assert_eq!(
            holder.0[0].text(),
            rep["holder_customer_id"].as_str().unwrap()
        );
        let moved = &got.rows[&mis["rowid"].as_i64().unwrap()];
        assert_eq!(moved.0[0].text(), mis["customer_id"].as_str().unwrap());
        assert_eq!(got.stats.rows_misplaced, 2);
        assert_eq!(got.stats.cells_refused, 0);
    }
}

#[test]
fn damaged_leaf_no_garbage_rows() {
    let name = "damaged_table_leaf";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(name, dir.path());
    let (pager, conn) = open(&path);
    let root = rootpage(&conn, "customers");
    let shape = shape_of(&conn, "customers");
    let claimed = claimed_except(&pager, &conn, &[root]);

    for scan in [OrphanScan::WhenPagesLost, OrphanScan::Always] {
        let got = salvage(&pager, root, &shape, &claimed, scan);
        assert_eq!(
            got.rows.keys().copied().collect::<Vec<_>>(),
            rowids(&t["salvageable_rowids"])
        );
        let on_page: BTreeSet<i64> = rowids(&t["damaged_rowids"]).into_iter().collect();
        // Rows of the damaged page are absent or RowDamaged, never returned.
        assert!(got.rows.keys().all(|r| !on_page.contains(r)));
        assert!(
            got.damaged.iter().all(|(r, _)| on_page.contains(r)),
            "{:?}",
            got.damaged
        );
        let bad_page = t["damage"]["pages"][0].as_u64().unwrap() as u32;
        assert!(got.damage.iter().any(|d| d.pgno == bad_page));
        eprintln!(
            "damaged_table_leaf: {} rows, RowDamaged {:?}, damage {:?}",
            got.rows.len(),
            got.damaged,
            got.damage
        );
        assert!(got.rows.values().all(|v| v.2 != bad_page));
        // Every value as SQLite reads it; no lost customer comes back from garbage.
        for (rowid, (vals, via, _)) in &got.rows {
            assert_eq!(*via, Via::Tree);
            assert_eq!(
                vals,
                &sqlite_row(&conn, "customers", *rowid),
                "rowid {rowid}"
            );
        }
        let lost = strings(&t["lost_customer_ids"]);
        assert!(got.rows.values().all(|v| !lost.contains(&v.0[0].text())));
        if scan == OrphanScan::WhenPagesLost {
            assert!(
                !got.stats.orphan_scan,
                "damage inside one leaf loses no pages"
            );
        }
        assert!(got.stats.orphan_leaves.is_empty());
    }

    // The lost rows are still named by the ID index's surviving entries.
    let (entries, _) = pk_entries(&pager, &conn);
    let named: BTreeSet<String> = entries.iter().map(|e| e.0.clone()).collect();
    let lost = strings(&t["lost_customer_ids"]);
    assert_eq!(lost.len(), 27);
    assert!(lost.is_subset(&named));
    let lost_rowids: BTreeSet<i64> = rowids(&t["lost_rowids"]).into_iter().collect();
    let named_lost: BTreeSet<i64> = entries
        .iter()
        .filter(|e| lost.contains(&e.0))
        .map(|e| e.1)
        .collect();
    assert_eq!(named_lost, lost_rowids);
}

#[test]
fn broken_overflow_chain_is_row_damaged_never_truncated() {
    let name = "overflow_chain_broken";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(name, dir.path());
    let (pager, conn) = open(&path);
    let root = rootpage(&conn, "customers");
    let shape = shape_of(&conn, "customers");
    let claimed = claimed_except(&pager, &conn, &[root]);

    let got = salvage(&pager, root, &shape, &claimed, OrphanScan::WhenPagesLost);
    let damaged: Vec<i64> = got.damaged.iter().map(|d| d.0).collect();
    assert_eq!(damaged, rowids(&t["damaged_rowids"]), "{:?}", got.damaged);
    assert!(got.damaged.iter().all(|d| d.1.contains("overflow")));
    assert_eq!(
        got.rows.keys().copied().collect::<Vec<_>>(),
        rowids(&t["surviving_rowids"])
    );
    assert_eq!(
        rowids(&t["surviving_rowids"]),
        rowids(&t["salvageable_rowids"])
    );
    for (rowid, (vals, _, _)) in &got.rows {
        assert_eq!(
            vals,
            &sqlite_row(&conn, "customers", *rowid),
            "rowid {rowid}"
        );
    }
    // The long rows that survive are whole: 9000 characters each.
    let damaged: BTreeSet<i64> = damaged.into_iter().collect();
    let long = rowids(&t["long_name_rowids"]);
    for r in long.iter().filter(|r| !damaged.contains(r)) {
        assert_eq!(got.rows[r].0[2].text().len(), 9000, "rowid {r}");
    }
    assert!(
        !got.stats.orphan_scan,
        "a broken chain loses no b-tree page"
    );

    // The damaged rows are named by the ID index.
    let (entries, _) = pk_entries(&pager, &conn);
    let named: BTreeMap<String, i64> = entries.into_iter().collect();
    for id in strings(&t["damaged_customer_ids"]) {
        assert!(damaged.contains(&named[&id]), "{id}");
    }
    assert_eq!(
        strings(&t["damaged_customer_ids"]),
        strings(&t["affected_customer_ids"])
    );
}

#[test]
fn index_salvage_names_every_id_not_on_the_zeroed_page() {
    let name = "zeroed_index_page";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(name, dir.path());
    let (pager, conn) = open(&path);
    let table = sqlite_rows(&conn, "customers");
    let ids: BTreeMap<String, i64> = table.iter().map(|(r, v)| (v[0].text(), *r)).collect();
    assert_eq!(ids.len(), 2012);

    let (entries, stats) = pk_entries(&pager, &conn);
    // Every surviving entry names a real row by its right rowid.
    for (id, rowid) in &entries {
        assert_eq!(ids.get(id), Some(rowid), "{id}");
    }
    let named: BTreeSet<String> = entries.iter().map(|e| e.0.clone()).collect();
    assert_eq!(named.len(), entries.len(), "an ID named twice");
    let unnamed: BTreeSet<String> = ids
        .keys()
        .filter(|i| !named.contains(*i))
        .cloned()
        .collect();
    assert_eq!(
        unnamed.len() as u64,
        t["entries_on_damaged_page"].as_u64().unwrap()
    );
    assert!(unnamed.is_subset(&strings(&t["affected_customer_ids"])));
    assert!(stats.orphan_leaves.is_empty());
    assert!(stats.pages_lost, "a zeroed page reached by a pointer");

    // The same with an always-on scan over an empty claimed set: index pages
    // of other indexes have other shapes (or other rowids: 2 fields, an
    // integer last, but the first field is never compared) - so only count
    // that every entry found through the tree is still there.
    let root = rootpage(&conn, "sqlite_autoindex_customers_1");
    let mut tree = 0;
    salvage_index_with(
        &pager,
        root,
        2,
        &PageSet::new(),
        SalvageOptions {
            orphan_scan: OrphanScan::Always,
        },
        &mut |e| {
            if let SalvageEntry::Entry { via: Via::Tree, .. } = e {
                tree += 1;
            }
        },
    );
    assert_eq!(tree, entries.len());
}

#[test]
fn corpus_salvage_never_panics_and_agrees_with_the_walk() {
    let dir = crate::support::corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    files.sort();
    let always = SalvageOptions {
        orphan_scan: OrphanScan::Always,
    };
    let (mut sound, mut compared) = (0, 0);
    for f in &files {
        let Ok(pager) = Pager::open(f) else { continue };
        let start = Instant::now();
        let n = pager.page_count().min(200);
        // Every page as a root, as a table of up to 100 columns and as an
        // index of 1-4 fields: nothing may panic, loop or yield a rowid twice.
        for root in 1..=n {
            let shape = TableShape::new(100);
            let mut seen = BTreeSet::new();
            let mut walk_rows = Vec::new();
            let walk = walk_table(&pager, root, &mut |i| {
                if let custodian::format::btree::TableItem::Row { rowid, payload, .. } = i {
                    walk_rows.push((rowid, payload.to_vec()));
                }
            });
            let mut rows = Vec::new();
            let mut damaged = 0;
            let stats = salvage_table_with(
                &pager,
                root,
                &shape,
                &PageSet::new(),
                always,
                &mut |i| match i {
                    SalvageItem::Row { rowid, payload, .. } => {
                        assert!(seen.insert(rowid), "{}: rowid {rowid} twice", f.display());
                        rows.push((rowid, payload.to_vec()));
                    }
                    SalvageItem::RowDamaged { .. } => damaged += 1,
                    SalvageItem::Damage(_)
                    | SalvageItem::RowRepeated { .. }
                    | SalvageItem::CellSetAside { .. } => {}
                },
            );
            // Where the walk finds the tree sound, salvage returns its rows
            // (in the same order), except records that do not decode exactly.
            if walk.damage == 0 && walk.cells > 0 {
                sound += 1;
                let tree: Vec<_> = rows
                    .iter()
                    .take(stats.rows_tree as usize)
                    .cloned()
                    .collect();
                if damaged == 0 && stats.damage == 0 {
                    assert_eq!(tree, walk_rows, "{} root {root}", f.display());
                    compared += 1;
                }
            }
            for fields in 1..=4 {
                salvage_index_with(&pager, root, fields, &PageSet::new(), always, &mut |_| {});
                salvage_without_rowid_index(&pager, root, fields, &PageSet::new(), &mut |_| {});
            }
        }
        assert!(
            start.elapsed().as_secs() < 10,
            "{} took {:?}",
            f.display(),
            start.elapsed()
        );
    }
    eprintln!(
        "corpus salvage: {} files, {sound} sound trees, {compared} compared equal",
        files.len()
    );
    assert!(compared > 50, "only {compared} trees compared");
}

#[test]
fn salvage_without_claimed_pages_uses_shape_to_refuse_other_tables() {
    // The damaged-interior fixture with nothing claimed: the scan reads every
    // page, and must still take exactly the orphaned customer leaves.
    let name = "damaged_table_interior";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(name, dir.path());
    let (pager, conn) = open(&path);
    let root = rootpage(&conn, "customers");
    let got = salvage(
        &pager,
        root,
        &shape_of(&conn, "customers"),
        &PageSet::new(),
        OrphanScan::WhenPagesLost,
    );
    assert_eq!(
        got.rows.keys().copied().collect::<Vec<_>>(),
        rowids(&t["salvageable_rowids"])
    );
    assert!(got.stats.pages_scanned > 500);
    // The default entry point is the same as WhenPagesLost.
    let mut n = 0;
    salvage_table(
        &pager,
        root,
        &shape_of(&conn, "customers"),
        &PageSet::new(),
        &mut |i| {
            if matches!(i, SalvageItem::Row { .. }) {
                n += 1
            }
        },
    );
    assert_eq!(n, got.rows.len());
    let _ = pager.page_size();
}

/// Timing on a large database (ignored by default):
///
/// ```text
/// CUSTODIAN_SALVAGE_BENCH=/tmp/ref-1m-zeroleaf.db CUSTODIAN_SALVAGE_ORIGINAL=/tmp/ref-1m.db \
///   cargo test --release --test it bench_salvage -- --ignored --nocapture
/// ```
///
/// The first is the damaged database, the second the same file before the
/// damage (to tell which rows were lost).
#[test]
#[ignore]
fn bench_salvage_reference_db() {
    let (Some(path), Some(original)) = (
        std::env::var_os("CUSTODIAN_SALVAGE_BENCH"),
        std::env::var_os("CUSTODIAN_SALVAGE_ORIGINAL"),
    ) else {
        eprintln!("set CUSTODIAN_SALVAGE_BENCH and CUSTODIAN_SALVAGE_ORIGINAL");
        return;
    };
    let (pager, conn) = open(Path::new(&path));
    let root = rootpage(&conn, "customers");
    let shape = shape_of(&conn, "customers");
    eprintln!(
        "{} pages of {} bytes",
        pager.page_count(),
        pager.page_size()
    );

    let t = Instant::now();
    let claimed = claimed_except(&pager, &conn, &[root]);
    eprintln!(
        "claimed_pages (walks every other tree): {:?}, {} pages",
        t.elapsed(),
        claimed.len()
    );

    let mut rec = Record::default();
    let mut ids: BTreeMap<i64, String> = BTreeMap::new();
    let mut damaged = Vec::new();
    let mut damage = Vec::new();
    let t = Instant::now();
    let stats = salvage_table(&pager, root, &shape, &claimed, &mut |i| match i {
        SalvageItem::Row { rowid, payload, .. } => {
            rec.parse(payload).unwrap();
            if let Some(ValueRef::Text(id)) = rec.get(payload, 0) {
                ids.insert(rowid, String::from_utf8_lossy(id).into_owned());
            }
        }
        SalvageItem::RowDamaged { rowid, .. } => damaged.push(rowid),
        SalvageItem::Damage(d) => damage.push(d),
        SalvageItem::RowRepeated { .. } | SalvageItem::CellSetAside { .. } => {}
    });
    let took = t.elapsed();
    eprintln!(
        "salvage_table (claimed, default scan, decoding each record): {took:?}: {} rows ({} tree, {} orphan), {} damaged, scan ran {} ({} pages read), damage {:?}",
        ids.len(),
        stats.rows_tree,
        stats.rows_orphan,
        damaged.len(),
        stats.orphan_scan,
        stats.pages_scanned,
        damage.iter().map(|d| (d.pgno, d.kind)).collect::<Vec<_>>()
    );

    for (label, claimed, scan) in [
        ("claimed, scan always", &claimed, OrphanScan::Always),
        (
            "nothing claimed, scan always (reads every page)",
            &PageSet::new(),
            OrphanScan::Always,
        ),
        (
            "nothing claimed, default scan",
            &PageSet::new(),
            OrphanScan::WhenPagesLost,
        ),
    ] {
        let t = Instant::now();
        let mut n = 0u64;
        let s = salvage_table_with(
            &pager,
            root,
            &shape,
            claimed,
            SalvageOptions { orphan_scan: scan },
            &mut |i| {
                if matches!(i, SalvageItem::Row { .. }) {
                    n += 1
                }
            },
        );
        eprintln!(
            "salvage_table ({label}): {:?}: {n} rows, {} orphan leaves, {} pages scanned, {} rejected",
            t.elapsed(),
            s.orphan_leaves.len(),
            s.pages_scanned,
            s.pages_rejected
        );
    }

    let pk_root = rootpage(&conn, "sqlite_autoindex_customers_1");
    let pk_claimed = claimed_except(&pager, &conn, &[pk_root]);
    let t = Instant::now();
    let (entries, istats) = pk_entries_with(&pager, pk_root, &pk_claimed);
    eprintln!(
        "salvage_index sqlite_autoindex_customers_1 (claimed, default scan): {:?}: {} entries, scan ran {}",
        t.elapsed(),
        entries.len(),
        istats.orphan_scan
    );

    let orig = Connection::open_with_flags(&original, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = orig
        .prepare("SELECT rowid, customer_id FROM customers")
        .unwrap();
    let all: BTreeMap<i64, String> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let lost: BTreeMap<i64, String> = all
        .iter()
        .filter(|(r, _)| !ids.contains_key(r))
        .map(|(r, i)| (*r, i.clone()))
        .collect();
    for (r, id) in &ids {
        assert_eq!(all.get(r), Some(id), "rowid {r}");
    }
    let named: BTreeMap<&str, i64> = entries.iter().map(|(i, r)| (i.as_str(), *r)).collect();
    let lost_named = lost
        .iter()
        .filter(|(r, id)| named.get(id.as_str()) == Some(*r))
        .count();
    eprintln!(
        "rows salvaged {} of {}; lost {} (rowids {:?}); lost rows named by the ID index: {lost_named}",
        ids.len(),
        all.len(),
        lost.len(),
        lost.keys().collect::<Vec<_>>()
    );
    assert_eq!(lost_named, lost.len());
}
