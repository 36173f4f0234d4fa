//! `custodian check` over every fixture: exact verdict, exit code, the exact
//! set of findings, and each finding's count, customer IDs, entries and
//! pages, against the fixture builder's truth (and, for page ownership, the
//! stock `sqlite3` CLI's dbstat on the same bytes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::support::{
    finding_codes, fixture_copy, fixtures, root_page, run, sqlite3_cli, strings, truth,
};

/// Where the expected pages of a structural finding come from.
#[derive(Clone, Copy, Debug)]
enum Pages {
    /// the truth's `damage.pages`
    Damage,
    /// the truth's `damage.orphaned_leaf_pages` (leaves whose parent is lost)
    OrphanedLeaves,
    /// the pages of each broken overflow chain after its broken page
    /// (truth `damage.chains`): no longer reached by anything
    ChainTails,
    /// the table leaf pages whose cells start the broken overflow chains:
    /// the parents, by dbstat path, of the truth's `damage.pages`
    ChainOwners,
    /// the object's pages past the end of the file (dbstat of the snapshot,
    /// which is the file before the cut)
    LostOfObject,
    /// the truth's `damage.free_pages`: the free pages no freelist names
    /// any more (a zeroed header or first trunk page)
    Freelist,
    /// the pages of the truth's `damage.parts` on the finding's object
    /// (several kinds of damage in one file)
    PartsOf,
    /// page 1 alone: the schema table's page (when the damage also reaches
    /// pages that an unreadable schema hides)
    SchemaPage,
}

/// How the expected `count` of a structural finding is known.
#[derive(Clone, Copy, Debug)]
enum Count {
    /// the number of pages
    Pages,
    /// the truth's `lost_rowids`
    LostRows,
    /// a number of problems on the damaged pages, which the truth does not
    /// predict (only that there is at least one)
    Problems,
}

/// A finding on the file's structure that the damage must produce. Index
/// content findings (missing, surplus, mismatched entries, duplicates,
/// wrong lookups), the refusal of a file SQLite refuses as a whole and the
/// -wal note are derived from the truth for every fixture, not listed here.
/// (SQLite's quick_check runs only with `--sqlite-quick-check`: the parity
/// test, `parity.rs`, holds custodian's own checks to its verdict.)
struct Structural {
    code: &'static str,
    /// the finding's `object`; None = no object
    object: Option<&'static str>,
    pages: Option<Pages>,
    count: Count,
}

const fn st(
    code: &'static str,
    object: Option<&'static str>,
    pages: Option<Pages>,
    count: Count,
) -> Structural {
    Structural {
        code,
        object,
        pages,
        count,
    }
}

struct Case {
    fixture: &'static str,
    exit: i32,
    verdict: &'static str,
    structural: &'static [Structural],
}

const CUSTOMERS: Option<&str> = Some("customers");

const CASES: &[Case] = &[
    Case {
        fixture: "healthy",
        exit: 0,
        verdict: "clean",
        structural: &[],
    },
    Case {
        fixture: "stale_pk_page",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "stale_pk_page_dups",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "stale_secondary_page",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "zeroed_index_page",
        exit: 1,
        verdict: "corrupt",
        structural: &[st(
            "page_damaged",
            Some("sqlite_autoindex_customers_1"),
            Some(Pages::Damage),
            Count::Pages,
        )],
    },
    Case {
        fixture: "garbage_index_page",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st(
                "cell_damaged",
                Some("idx_customers_phone"),
                Some(Pages::Damage),
                Count::Problems,
            ),
            st(
                "record_damaged",
                Some("idx_customers_phone"),
                Some(Pages::Damage),
                Count::Problems,
            ),
        ],
    },
    Case {
        fixture: "surplus_index_entries",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "damaged_table_leaf",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st(
                "cell_damaged",
                CUSTOMERS,
                Some(Pages::Damage),
                Count::Problems,
            ),
            st(
                "record_damaged",
                CUSTOMERS,
                Some(Pages::Damage),
                Count::Problems,
            ),
            st("key_order", CUSTOMERS, Some(Pages::Damage), Count::Problems),
            st("rows_unreadable", None, None, Count::LostRows),
        ],
    },
    Case {
        fixture: "damaged_table_interior",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st("page_damaged", CUSTOMERS, Some(Pages::Damage), Count::Pages),
            st(
                "page_unused",
                None,
                Some(Pages::OrphanedLeaves),
                Count::Pages,
            ),
            st("rows_unreadable", None, None, Count::LostRows),
        ],
    },
    Case {
        fixture: "lost_customer_leaf",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st("page_damaged", CUSTOMERS, Some(Pages::Damage), Count::Pages),
            st("rows_unreadable", None, None, Count::LostRows),
        ],
    },
    Case {
        fixture: "index_definition_removed",
        exit: 1,
        verdict: "corrupt",
        structural: &[st("page_unused", None, Some(Pages::Damage), Count::Pages)],
    },
    Case {
        fixture: "wal_stale_index",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "flipped_id_byte",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "overflow_chain_broken",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st(
                "record_damaged",
                CUSTOMERS,
                Some(Pages::ChainOwners),
                Count::Pages,
            ),
            st("page_unused", None, Some(Pages::ChainTails), Count::Pages),
            st("rows_unreadable", None, None, Count::LostRows),
        ],
    },
    Case {
        fixture: "stale_pk_page_autovacuum",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "stale_pk_page_incremental",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "ptrmap_page_zeroed",
        exit: 1,
        verdict: "corrupt",
        structural: &[st(
            "ptrmap_damaged",
            None,
            Some(Pages::Damage),
            Count::Problems,
        )],
    },
    // the header's largest root page damaged (too large) or zeroed in an
    // auto-vacuum file: one finding on page 1 (its message: repair_kinds.rs)
    Case {
        fixture: "largest_root_page_damaged",
        exit: 1,
        verdict: "corrupt",
        structural: &[st(
            "ptrmap_damaged",
            None,
            Some(Pages::Damage),
            Count::Problems,
        )],
    },
    Case {
        fixture: "largest_root_page_zeroed",
        exit: 1,
        verdict: "corrupt",
        structural: &[st(
            "ptrmap_damaged",
            None,
            Some(Pages::Damage),
            Count::Problems,
        )],
    },
    Case {
        fixture: "freelist_trunk_zeroed",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st("freelist_damaged", None, None, Count::Problems),
            st(
                "page_unused",
                None,
                Some(Pages::OrphanedLeaves),
                Count::Pages,
            ),
        ],
    },
    Case {
        fixture: "freelist_trunk_out_of_range",
        exit: 1,
        verdict: "corrupt",
        structural: &[st("freelist_damaged", None, None, Count::Problems)],
    },
    Case {
        fixture: "freelist_count_wrong",
        exit: 1,
        verdict: "corrupt",
        structural: &[st("freelist_damaged", None, None, Count::Problems)],
    },
    Case {
        fixture: "truncated",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st("file_truncated", None, Some(Pages::Damage), Count::Pages),
            st(
                "page_damaged",
                CUSTOMERS,
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("transactions"),
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("idx_transactions_customer"),
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("sqlite_autoindex_customers_1"),
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("sqlite_autoindex_customers_2"),
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("idx_customers_email"),
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("idx_customers_phone"),
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("idx_customers_status"),
                Some(Pages::LostOfObject),
                Count::Pages,
            ),
            st(
                "customer_vanished",
                Some("transactions.customer_id"),
                None,
                Count::Problems,
            ),
        ],
    },
    Case {
        fixture: "header_zeroed",
        exit: 1,
        verdict: "corrupt",
        structural: &[st(
            "header_invalid",
            None,
            Some(Pages::Damage),
            Count::Pages,
        )],
    },
    Case {
        fixture: "schema_page_destroyed",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st(
                "schema_unreadable",
                Some("sqlite_schema"),
                Some(Pages::Damage),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("sqlite_schema"),
                Some(Pages::Damage),
                Count::Pages,
            ),
        ],
    },
    // several kinds of damage in one file (repair_kinds.rs)
    Case {
        fixture: "several_kinds",
        exit: 1,
        verdict: "corrupt",
        structural: SEVERAL_KINDS,
    },
    // several_kinds and stale_pk_page_dups with their tables and columns
    // named by Latin-1 bytes (checked with `--id-column`, see `id_args`)
    Case {
        fixture: "names_not_utf8",
        exit: 1,
        verdict: "corrupt",
        structural: SEVERAL_KINDS,
    },
    Case {
        fixture: "names_not_utf8_dups",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    Case {
        fixture: "several_kinds_incremental",
        exit: 1,
        verdict: "corrupt",
        structural: SEVERAL_KINDS,
    },
    Case {
        fixture: "several_index_kinds",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st(
                "page_damaged",
                Some("idx_customers_phone"),
                Some(Pages::PartsOf),
                Count::Pages,
            ),
            st("page_unused", None, Some(Pages::Freelist), Count::Pages),
            st("freelist_damaged", None, None, Count::Problems),
        ],
    },
    // an entry of an index on (customer_id, status) holding its neighbour's
    // ID: the lookup by that ID alone returns another customer's row
    Case {
        fixture: "composite_id_entry_rewritten",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    // two cells of a customer leaf with rowids out of key order, one of
    // them the next leaf's first rowid: SQLite's seek by rowid misses six
    // customers (the two cells' and four neighbours the binary search
    // passes by), and the two cells' customers are missing from every
    // index under the rowids their rows now have
    Case {
        fixture: "misplaced_table_cells",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st("page_damaged", CUSTOMERS, Some(Pages::Damage), Count::Pages),
            st("key_order", CUSTOMERS, Some(Pages::Damage), Count::Problems),
        ],
    },
    // a stale page of an index whose name is not valid UTF-8
    // (index_quirks.rs)
    Case {
        fixture: "index_name_not_utf8",
        exit: 1,
        verdict: "corrupt",
        structural: &[],
    },
    // the repair ladder's refused files (with a snapshot; repair_kinds.rs)
    Case {
        fixture: "header_damaged",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st("header_invalid", None, Some(Pages::Damage), Count::Pages),
            st("page_unused", None, Some(Pages::Freelist), Count::Pages),
        ],
    },
    Case {
        fixture: "schema_page_garbage",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st(
                "schema_unreadable",
                Some("sqlite_schema"),
                Some(Pages::Damage),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("sqlite_schema"),
                Some(Pages::Damage),
                Count::Pages,
            ),
        ],
    },
    Case {
        fixture: "schema_and_root_zeroed",
        exit: 1,
        verdict: "corrupt",
        structural: &[
            st(
                "schema_unreadable",
                Some("sqlite_schema"),
                Some(Pages::SchemaPage),
                Count::Pages,
            ),
            st(
                "page_damaged",
                Some("sqlite_schema"),
                Some(Pages::SchemaPage),
                Count::Pages,
            ),
        ],
    },
];

/// A stale ID index page, a zeroed phone index page, garbage over a
/// customers table leaf and a zeroed freelist trunk.
const SEVERAL_KINDS: &[Structural] = &[
    st(
        "page_damaged",
        Some("idx_customers_phone"),
        Some(Pages::PartsOf),
        Count::Pages,
    ),
    st(
        "cell_damaged",
        CUSTOMERS,
        Some(Pages::PartsOf),
        Count::Problems,
    ),
    st(
        "record_damaged",
        CUSTOMERS,
        Some(Pages::PartsOf),
        Count::Problems,
    ),
    st(
        "key_order",
        CUSTOMERS,
        Some(Pages::PartsOf),
        Count::Problems,
    ),
    st("rows_unreadable", None, None, Count::LostRows),
    st("page_unused", None, Some(Pages::Freelist), Count::Pages),
    st("freelist_damaged", None, None, Count::Problems),
];

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// `pages` of the fixture's database per dbstat of `file` (stock CLI):
/// pageno → (object, path).
fn dbstat(file: &Path) -> BTreeMap<u64, (String, String)> {
    sqlite3_cli(file, "SELECT pageno, name, path FROM dbstat")
        .lines()
        .map(|l| {
            let mut p = l.splitn(3, '|');
            let n = p.next().unwrap().parse().unwrap();
            (
                n,
                (p.next().unwrap().to_string(), p.next().unwrap().to_string()),
            )
        })
        .collect()
}

fn expected_pages(how: Pages, t: &Value, fixture: &str, object: Option<&str>) -> Vec<u64> {
    let damage = &t["damage"];
    let mut pages = match how {
        Pages::Damage => u64s(&damage["pages"]),
        Pages::OrphanedLeaves => u64s(&damage["orphaned_leaf_pages"]),
        Pages::ChainTails => damage["chains"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|c| u64s(&c["pages"]).into_iter().skip(1))
            .collect(),
        Pages::ChainOwners => {
            let stat = dbstat(&fixtures().join(format!("{fixture}.db")));
            u64s(&damage["pages"])
                .iter()
                .map(|p| {
                    let path = &stat[p].1;
                    // an overflow page's path is its cell's leaf path + "CCC+NNNNNN"
                    let owner = &path[..=path.rfind('/').unwrap()];
                    *stat
                        .iter()
                        .find(|(_, (_, q))| q == owner)
                        .unwrap_or_else(|| panic!("no page at dbstat path {owner}"))
                        .0
                })
                .collect()
        }
        Pages::Freelist => u64s(&damage["free_pages"]),
        Pages::SchemaPage => vec![1],
        Pages::PartsOf => damage["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["object"].as_str() == object)
            .map(|p| p["page"].as_u64().unwrap())
            .collect(),
        Pages::LostOfObject => {
            let kept = damage["file_pages"].as_u64().unwrap();
            dbstat(&fixtures().join(format!("{fixture}.snap.db")))
                .into_iter()
                .filter(|(p, (name, _))| *p > kept && Some(name.as_str()) == object)
                .map(|(p, _)| p)
                .collect()
        }
    };
    pages.sort();
    pages
}

/// One index-content expectation derived from the truth: the rowids of the
/// entries (with the customer ID of each, where the index key holds it).
#[derive(Default, Debug)]
struct EntrySet {
    rowids: Vec<i64>,
    ids: BTreeSet<String>,
}

/// The truth's missing and surplus index entries, as custodian's finding
/// codes: `index_entry_missing`, `index_entry_surplus` (the row is absent or
/// unreadable) and `index_key_mismatch` (the row holds another key).
fn expected_entries(t: &Value) -> BTreeMap<(String, String), EntrySet> {
    let mut out: BTreeMap<(String, String), EntrySet> = BTreeMap::new();
    let id_pos = |index: &str| {
        t["indexes"][index]
            .as_array()
            .and_then(|cols| cols.iter().position(|c| c == "customer_id"))
    };
    let mut add = |code: &str, e: &Value| {
        let index = e["index"].as_str().unwrap();
        let set = out
            .entry((code.to_string(), index.to_string()))
            .or_default();
        set.rowids.push(e["rowid"].as_i64().unwrap());
        if let Some(i) = id_pos(index) {
            set.ids.insert(e["key"][i].as_str().unwrap().to_string());
        }
    };
    for e in t["missing_index_entries"].as_array().into_iter().flatten() {
        add("index_entry_missing", e);
    }
    for e in t["surplus_index_entries"].as_array().into_iter().flatten() {
        let code = if e["row"] == "differs" {
            "index_key_mismatch"
        } else {
            "index_entry_surplus"
        };
        add(code, e);
    }
    for set in out.values_mut() {
        set.rowids.sort();
    }
    out
}

/// Every (code, object) the fixture's damage must produce, nothing else.
fn expected_codes(case: &Case, t: &Value) -> BTreeSet<(String, String)> {
    let mut want = BTreeSet::new();
    for s in case.structural {
        want.insert((s.code.to_string(), s.object.unwrap_or("").to_string()));
    }
    for (code, index) in expected_entries(t).keys() {
        want.insert((code.clone(), index.clone()));
    }
    // A file SQLite refuses as a whole: every customer is rejected, no
    // lookup is probed (the POS gets no answer at all), and beside the
    // refusal the page-level reading is reported.
    let refused = t["pos_refusal"].is_string();
    if refused {
        want.insert(("database_refused".into(), String::new()));
        want.insert(("page_level_reading".into(), String::new()));
    }
    for index in t["affected_by_index"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|_| !refused)
    {
        want.insert(("lookup_wrong".to_string(), index.clone()));
    }
    if !strings(&t["duplicate_customer_ids"]).is_empty() {
        want.insert((
            "duplicate_key".into(),
            "sqlite_autoindex_customers_1".into(),
        ));
    }
    if t["wal_frames"].as_u64().is_some_and(|n| n > 0) {
        want.insert(("wal_uncheckpointed".into(), String::new()));
    }
    want
}

fn findings_of<'a>(j: &'a Value, code: &str, object: &str) -> Vec<&'a Value> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code && f["object"].as_str().unwrap_or("") == object)
        .collect()
}

/// Checks one fixture's report against its truth; returns what differs.
fn compare_with_truth(case: &Case, j: &Value) -> Vec<String> {
    let t = truth(case.fixture);
    let name = case.fixture;
    let mut failures = Vec::new();
    let mut fail = |s: String| failures.push(format!("{name}: {s}"));
    if j["verdict"] != case.verdict {
        fail(format!("verdict {} != {}", j["verdict"], case.verdict));
    }

    // 1. exactly the expected findings: none missing, no extra
    let got = finding_codes(j);
    let want = expected_codes(case, &t);
    if got != want {
        fail(format!(
            "findings differ: missing {:?}; unexpected {:?}",
            want.difference(&got).collect::<Vec<_>>(),
            got.difference(&want).collect::<Vec<_>>()
        ));
    }

    // 2. the index entries of each finding, against the truth's entries. The
    //    truncated file is the exception: SQLite (the truth's probe) stops at
    //    each lost page, so its entry lists are bounds, where custodian's page
    //    reader sees every surviving entry: custodian's missing entries are
    //    among the truth's, the truth's surplus entries among custodian's.
    let bounds_only = !t["schema_read_error"].is_null();
    for ((code, index), set) in expected_entries(&t) {
        let fs = findings_of(j, &code, &index);
        let [f] = fs.as_slice() else {
            fail(format!("{} findings {code} on {index}, want 1", fs.len()));
            continue;
        };
        let mut rowids: Vec<i64> = f["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["rowid"].as_i64().unwrap())
            .collect();
        rowids.sort();
        if f["count"].as_u64() != Some(rowids.len() as u64) {
            fail(format!(
                "{code} {index}: count {} but {} entries",
                f["count"],
                rowids.len()
            ));
        }
        if !f["pages"].as_array().unwrap().is_empty() {
            fail(format!(
                "{code} {index}: pages {} (an index diff names no page)",
                f["pages"]
            ));
        }
        let (g, w): (BTreeSet<i64>, BTreeSet<i64>) = (
            rowids.iter().copied().collect(),
            set.rowids.iter().copied().collect(),
        );
        if bounds_only {
            let ok = if code == "index_entry_missing" {
                g.is_subset(&w)
            } else {
                w.is_subset(&g)
            };
            if !ok {
                fail(format!("{code} {index}: rowids outside the truth's bounds"));
            }
            continue;
        }
        if rowids != set.rowids {
            fail(format!(
                "{code} {index}: entry rowids differ: {} reported, {} in the truth; missing {:?}; extra {:?}",
                rowids.len(),
                set.rowids.len(),
                w.difference(&g).take(10).collect::<Vec<_>>(),
                g.difference(&w).take(10).collect::<Vec<_>>()
            ));
        }
        // Where the index key holds the customer ID, the finding names
        // exactly those customers.
        if !set.ids.is_empty() {
            let have: BTreeSet<String> = strings(&f["customer_ids"]).into_iter().collect();
            if have != set.ids {
                fail(format!(
                    "{code} {index}: customer_ids differ: missing {:?}; extra {:?}",
                    set.ids.difference(&have).take(10).collect::<Vec<_>>(),
                    have.difference(&set.ids).take(10).collect::<Vec<_>>()
                ));
            }
            let named: BTreeSet<String> = f["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["customer_id"].as_str().map(String::from))
                .collect();
            if named != set.ids {
                fail(format!(
                    "{code} {index}: entries' customer_id differ from the truth's keys"
                ));
            }
        }
    }

    // 3. the customers each index rejects, per index, exactly (none is
    //    probed in a file SQLite refuses: every customer is rejected)
    let probed = !t["pos_refusal"].is_string();
    for (index, ids) in t["affected_by_index"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|_| probed)
    {
        let fs = findings_of(j, "lookup_wrong", index);
        let [f] = fs.as_slice() else {
            fail(format!(
                "{} lookup_wrong findings on {index}, want 1",
                fs.len()
            ));
            continue;
        };
        let want = strings(ids);
        if strings(&f["customer_ids"]) != want || f["count"].as_u64() != Some(want.len() as u64) {
            fail(format!(
                "lookup_wrong {index}: {} IDs (count {}), truth {}",
                strings(&f["customer_ids"]).len(),
                f["count"],
                want.len()
            ));
        }
    }
    let dups = strings(&t["duplicate_customer_ids"]);
    if !dups.is_empty() {
        for f in findings_of(j, "duplicate_key", "sqlite_autoindex_customers_1") {
            if strings(&f["customer_ids"]) != dups || f["count"].as_u64() != Some(dups.len() as u64)
            {
                fail(format!(
                    "duplicate_key: {} / count {}, truth {dups:?}",
                    f["customer_ids"], f["count"]
                ));
            }
        }
    }
    if let Some(frames) = t["wal_frames"].as_u64().filter(|n| *n > 0) {
        for f in findings_of(j, "wal_uncheckpointed", "") {
            if f["count"].as_u64() != Some(frames) {
                fail(format!(
                    "wal_uncheckpointed count {} != {frames}",
                    f["count"]
                ));
            }
        }
    }

    // 4. structural findings: their pages and counts
    for s in case.structural {
        let object = s.object.unwrap_or("");
        for f in findings_of(j, s.code, object) {
            let pages = u64s(&f["pages"]);
            if let Some(how) = s.pages {
                let want = expected_pages(how, &t, name, s.object);
                if pages != want {
                    fail(format!("{} {object}: pages {pages:?} != {want:?}", s.code));
                }
            }
            let count = f["count"].as_u64().unwrap();
            let ok = match s.count {
                Count::Pages => count == pages.len() as u64,
                Count::LostRows => count == t["lost_rowids"].as_array().unwrap().len() as u64,
                Count::Problems => count >= 1,
            };
            if !ok {
                fail(format!(
                    "{} {object}: count {count} ({:?})",
                    s.code, s.count
                ));
            }
        }
    }

    // customers named by other tables but gone: really lost customers
    for f in findings_of(j, "customer_vanished", "transactions.customer_id") {
        let lost: BTreeSet<String> = strings(&t["lost_customer_ids"]).into_iter().collect();
        let ids = strings(&f["customer_ids"]);
        if f["count"].as_u64() != Some(ids.len() as u64) || !ids.iter().all(|i| lost.contains(i)) {
            fail(format!(
                "customer_vanished: {} IDs, count {}, not all lost",
                ids.len(),
                f["count"]
            ));
        }
    }

    // 5. the customers the POS rejects
    let want = strings(&t["affected_customer_ids"]);
    let have = strings(&j["affected_customer_ids"]);
    if want != have {
        let w: BTreeSet<_> = want.iter().collect();
        let h: BTreeSet<_> = have.iter().collect();
        fail(format!(
            "affected IDs differ: {} expected, {} reported; missing {:?}; extra {:?}",
            want.len(),
            have.len(),
            w.difference(&h).take(10).collect::<Vec<_>>(),
            h.difference(&w).take(10).collect::<Vec<_>>()
        ));
    }
    failures
}

/// The fixtures whose customer ID column is not named `customer_id`: the
/// names_not_utf8 ones name it by Latin-1 bytes, typed with U+FFFD.
fn id_args(fixture: &str) -> Vec<&'static str> {
    if fixture.starts_with("names_not_utf8") {
        vec!["--id-column", "num\u{FFFD}ro_client"]
    } else {
        Vec::new()
    }
}

#[test]
fn every_fixture_gets_the_exact_findings_and_affected_ids() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(case.fixture, dir.path());
        let mut args = vec!["check", db.to_str().unwrap(), "--json", "-"];
        args.extend(id_args(case.fixture));
        let r = run(&args, dir.path());
        if r.code() != case.exit {
            failures.push(format!(
                "{}: exit {} != {}\n{}",
                case.fixture,
                r.code(),
                case.exit,
                r.show()
            ));
            continue;
        }
        failures.extend(compare_with_truth(case, &r.json()));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Every damaged fixture with a truth is in the table above.
#[test]
fn every_fixture_is_in_the_table() {
    let listed: BTreeSet<&str> = CASES.iter().map(|c| c.fixture).collect();
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(f) = name.strip_suffix(".truth.json") else {
            continue;
        };
        // WITHOUT ROWID fixtures name rows by customer_id, not rowid: their
        // exact findings are asserted in without_rowid.rs
        let t = truth(f);
        if t["without_rowid"] == true {
            continue;
        }
        // header fields that do not describe the file: asserted in header.rs
        if super::header::HEADER_FIELD_FIXTURES.contains(&f) {
            continue;
        }
        if t["affected_customer_ids"].is_array() && !listed.contains(f) {
            panic!("fixture {f} has a truth but no case in check.rs's CASES");
        }
    }
}

#[test]
fn damaged_fixtures_name_at_least_one_rejected_customer() {
    // guards the truth files themselves: the damage must reach customers
    for f in [
        "stale_pk_page",
        "stale_pk_page_dups",
        "stale_secondary_page",
        "zeroed_index_page",
        "surplus_index_entries",
        "wal_stale_index",
    ] {
        assert!(
            !strings(&truth(f)["affected_customer_ids"]).is_empty(),
            "{f}"
        );
    }
}

#[test]
fn refuses_what_is_not_a_database() {
    for (name, what) in [
        ("not_a_database", "not a SQLite database"),
        ("empty", "empty file"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        let before = std::fs::read(&db).unwrap();
        let r = run(&["check", db.to_str().unwrap()], dir.path());
        assert_eq!(r.code(), 2, "{}", r.show());
        let err = r.stderr();
        assert_eq!(err.lines().count(), 1, "{}", r.show());
        assert!(
            err.contains(db.to_str().unwrap()) && err.contains(what),
            "{}",
            r.show()
        );
        assert_eq!(std::fs::read(&db).unwrap(), before);
    }
}

#[test]
fn check_changes_no_byte_of_the_database_or_its_wal() {
    for name in ["healthy", "wal_stale_index", "stale_pk_page"] {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        let wal = db.with_extension("db-wal");
        let before = (std::fs::read(&db).unwrap(), std::fs::read(&wal).ok());
        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
        assert!(r.code() == 0 || r.code() == 1, "{}", r.show());
        let after = (std::fs::read(&db).unwrap(), std::fs::read(&wal).ok());
        assert!(before.0 == after.0, "{name}: database bytes changed");
        assert!(before.1 == after.1, "{name}: -wal bytes changed");
        if name == "wal_stale_index" {
            assert!(
                after.1.is_some_and(|w| !w.is_empty()),
                "the -wal must survive"
            );
        }
    }
}

#[test]
fn json_report_is_deterministic_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("stale_pk_page_dups", dir.path());
    let a = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    let b = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(a.out.stdout, b.out.stdout);
    assert!(a.stdout().ends_with("}\n"));
    let j = a.json();
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["tool"]["name"], "custodian");
    assert_eq!(j["command"], "check");
    assert_eq!(j["database"], db.to_str().unwrap());
    for f in j["findings"].as_array().unwrap() {
        for k in [
            "code",
            "severity",
            "object",
            "table",
            "message",
            "count",
            "customer_ids",
            "pages",
        ] {
            assert!(f.get(k).is_some(), "finding lacks {k}: {f}");
        }
    }
    let ids = strings(&j["affected_customer_ids"]);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "IDs are sorted");
}

#[test]
fn reports_name_customers_by_id_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("stale_pk_page_dups", dir.path());
    let md = dir.path().join("r.md");
    let r = run(
        &[
            "check",
            db.to_str().unwrap(),
            "--json",
            "-",
            "--report",
            md.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let text = r.stdout() + &std::fs::read_to_string(&md).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT name, phone, email, card_number FROM customers NOT INDEXED")
        .unwrap();
    let rows: Vec<[Option<String>; 4]> = stmt
        .query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.len() > 1000);
    for row in rows {
        for v in row.into_iter().flatten() {
            assert!(!text.contains(&v), "report shows personal data {v:?}");
        }
    }
}

#[test]
fn markdown_report_starts_with_verdict_and_rejected_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("stale_pk_page", dir.path());
    let md = dir.path().join("r.md");
    let r = run(
        &[
            "check",
            db.to_str().unwrap(),
            "--report",
            md.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    assert_eq!(r.stdout(), "", "with --report, stdout stays empty");
    let text = std::fs::read_to_string(&md).unwrap();
    let n = strings(&truth("stale_pk_page")["affected_customer_ids"]).len();
    let mut lines = text.lines().filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("# custodian check: corrupt"));
    assert_eq!(
        lines.next(),
        Some(format!("**{n} customers would be rejected by the POS.**").as_str())
    );
    assert!(text.contains("## What to do next"));
}

#[test]
fn default_summary_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let r = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        r.stdout(),
        format!(
            "{}: clean — 0 customers would be rejected by the POS\n",
            db.display()
        )
    );
    assert_eq!(
        r.stderr(),
        "",
        "no progress bars when stderr is not a terminal"
    );
    let q = run(&["check", db.to_str().unwrap(), "--quiet"], dir.path());
    assert_eq!(
        (q.code(), q.stdout(), q.stderr()),
        (0, String::new(), String::new())
    );
}

#[test]
fn missing_table_lists_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let r = run(
        &["check", db.to_str().unwrap(), "--table", "clients"],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr()
            .contains("no table \"clients\"; tables: customers, transactions"),
        "{}",
        r.show()
    );
    // a damaged file without that table is still found damaged
    let db = fixture_copy("zeroed_index_page", dir.path());
    let r = run(
        &["check", db.to_str().unwrap(), "--table", "clients"],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
}

#[test]
fn data_rules_warn_and_strict_makes_them_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let closed: Vec<String> = conn
        .prepare("SELECT customer_id FROM customers NOT INDEXED WHERE status = 'closed' ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!closed.is_empty());
    drop(conn);
    let cfg = dir.path().join("c.json");
    std::fs::write(
        &cfg,
        r#"{"id_rule": {"regex": "^C[0-9]{11}$"}, "status_column": "status",
            "status_values": {"closed": ["closed"]}}"#,
    )
    .unwrap();
    let args = [
        "check",
        db.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "-",
    ];
    let r = run(&args, dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let f = |code: &str| {
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("no {code}: {j}"))
    };
    assert_eq!(f("customer_closed")["count"], closed.len());
    assert_eq!(strings(&f("customer_closed")["customer_ids"]), closed);
    assert_eq!(f("customer_closed")["severity"], "warning");
    // The IDs that break the rule, by the regex crate over SQLite's rows.
    let rule = regex::Regex::new("^C[0-9]{11}$").unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut bad: Vec<String> = conn
        .prepare("SELECT customer_id FROM customers NOT INDEXED")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|id| !rule.is_match(id))
        .collect();
    drop(conn);
    bad.sort();
    assert_eq!(
        bad.len() as u64,
        truth("healthy")["customers_total"].as_u64().unwrap(),
        "every ID has 12 digits, the rule wants 11"
    );
    assert_eq!(f("id_format")["count"], bad.len());
    assert_eq!(strings(&f("id_format")["customer_ids"]), bad);
    let mut strict = args.to_vec();
    strict.push("--strict");
    assert_eq!(run(&strict, dir.path()).code(), 1);
    // a config naming a missing table is a clear error
    std::fs::write(&cfg, r#"{"table": "nope"}"#).unwrap();
    let r = run(&args, dir.path());
    assert_eq!(r.code(), 2, "{}", r.show());
}

#[test]
fn check_runs_while_a_writer_holds_a_wal_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let w = rusqlite::Connection::open(&db).unwrap();
    let mode: String = w
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    w.execute_batch(
        "BEGIN IMMEDIATE; UPDATE customers SET balance_cents = balance_cents + 1 WHERE rowid % 7 = 0;",
    )
    .unwrap();
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "clean");
    w.execute_batch("COMMIT").unwrap();
}

#[test]
fn a_locked_rollback_database_is_busy_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    let before = std::fs::read(&db).unwrap();
    let w = rusqlite::Connection::open(&db).unwrap();
    w.execute_batch("BEGIN EXCLUSIVE; UPDATE customers SET tier = tier;")
        .unwrap();
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("busy"), "{}", r.show());
    assert_eq!(r.json()["verdict"], "failed");
    w.execute_batch("ROLLBACK").unwrap();
    drop(w);
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn an_interrupted_write_is_reported_not_called_corrupt() {
    super::support::require_tool("sqlite3", "it plays the writer that dies mid-transaction");
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("healthy", dir.path());
    // A writer that spills its changes into the file, then dies before COMMIT.
    let mut child = std::process::Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"PRAGMA cache_size=5;\nBEGIN;\nUPDATE customers SET name = name || 'x';\nSELECT 1;\n")
            .unwrap();
        stdin.flush().unwrap();
    }
    let journal = db.with_extension("db-journal");
    let start = std::time::Instant::now();
    while std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(start.elapsed().as_secs() < 20, "the writer never spilled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let before = (
        std::fs::read(&db).unwrap(),
        std::fs::read(&journal).unwrap(),
    );
    let r = run(&["check", db.to_str().unwrap()], dir.path());
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(r.stderr().contains("hot journal"), "{}", r.show());
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.show());
    let after = (
        std::fs::read(&db).unwrap(),
        std::fs::read(&journal).unwrap(),
    );
    assert!(before == after, "nothing was rolled back or changed");
}

/// Pages of `state` in the report's page map, expanded.
fn pages_in_state(j: &serde_json::Value, state: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for r in j["page_map"]["runs"].as_array().unwrap() {
        if r[3] == state {
            out.extend(r[0].as_u64().unwrap()..=r[1].as_u64().unwrap());
        }
    }
    out
}

#[test]
fn page_map_covers_every_page_once() {
    for name in [
        "healthy",
        "wal_stale_index",
        "index_definition_removed",
        "zeroed_index_page",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(name, dir.path());
        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
        let j = r.json();
        let runs = j["page_map"]["runs"].as_array().unwrap();
        let mut next = 1;
        for run in runs {
            assert_eq!(
                run[0].as_u64().unwrap(),
                next,
                "{name}: runs are contiguous from page 1"
            );
            next = run[1].as_u64().unwrap() + 1;
        }
        assert_eq!(
            next - 1,
            j["coverage"]["pages"].as_u64().unwrap(),
            "{name}: every page"
        );
        let unused = pages_in_state(&j, "unused");
        match name {
            "index_definition_removed" => {
                let want: Vec<u64> = truth(name)["damage"]["pages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_u64().unwrap())
                    .collect();
                assert_eq!(unused, want, "the orphaned pages of the removed index");
            }
            "zeroed_index_page" => {
                assert_eq!(unused, Vec::<u64>::new());
                let want: Vec<u64> = truth(name)["damage"]["pages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_u64().unwrap())
                    .collect();
                assert_eq!(pages_in_state(&j, "damaged"), want);
            }
            _ => {
                assert_eq!(unused, Vec::<u64>::new(), "{name}");
                assert_eq!(pages_in_state(&j, "damaged"), Vec::<u64>::new(), "{name}");
            }
        }
    }
}

/// The number of the root page of `name`, and the byte offset of that page
/// in the file (read with SQLite, page size from the header).
fn root_page_offset(db: &Path, name: &str) -> (u64, usize) {
    let root = root_page(db, name);
    let c = rusqlite::Connection::open(db).unwrap();
    let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    (root, ((root - 1) * size as u64) as usize)
}

/// Writes `to` over the one occurrence of `from` (the same length) inside
/// the root page of `name`, a leaf: an index entry given another key.
fn rewrite_in_root(db: &Path, name: &str, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let (_, off) = root_page_offset(db, name);
    let mut bytes = std::fs::read(db).unwrap();
    let page = &mut bytes[off..off + 4096];
    assert!(page[0] == 0x0a, "{name}: the root is a leaf index page");
    let at: Vec<usize> = page
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{name}: {from} once in its root page");
    page[at[0]..at[0] + to.len()].copy_from_slice(to.as_bytes());
    std::fs::write(db, bytes).unwrap();
}

/// Every index's entries are judged in the order of its own collation:
/// BINARY (the ID's UNIQUE index), NOCASE (email) and RTRIM (phone). A
/// small POS table is built here with SQLite, each index on one leaf page;
/// then one entry of each index is given the key of a later row (out of
/// key order), and one entry of the UNIQUE index the key of the entry
/// before it (a key twice). The truth is that construction: one entry out
/// of order in each index (the entry after the rewritten one), one key
/// twice in the UNIQUE index; the stock sqlite3 finds the indexes wrong.
#[test]
fn every_index_is_judged_in_the_order_of_its_own_collation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA page_size = 4096;
         CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL,
           email TEXT, phone TEXT);
         CREATE INDEX idx_customers_email ON customers(email COLLATE NOCASE);
         CREATE INDEX idx_customers_phone ON customers(phone COLLATE RTRIM);",
    )
    .unwrap();
    for i in 1..=30 {
        c.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4)",
            [
                format!("C{i:04}"),
                format!("Customer {i}"),
                format!("c{i:04}@example.com"),
                format!("555-{i:04}"),
            ],
        )
        .unwrap();
    }
    drop(c);
    let pk = "sqlite_autoindex_customers_1";
    rewrite_in_root(&db, pk, "C0002", "C0001");
    rewrite_in_root(&db, pk, "C0005", "C0009");
    rewrite_in_root(&db, "idx_customers_email", "c0005@", "c0009@");
    rewrite_in_root(&db, "idx_customers_phone", "555-0005", "555-0009");
    let ic = sqlite3_cli(&db, "PRAGMA integrity_check");
    for index in [pk, "idx_customers_email", "idx_customers_phone"] {
        assert!(ic.contains(index), "{index}: {ic}");
    }

    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let of = |code: &str| -> BTreeMap<String, u64> {
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == code)
            .map(|f| {
                (
                    f["object"].as_str().unwrap().to_string(),
                    f["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        of("key_order"),
        BTreeMap::from([
            (pk.to_string(), 1),
            ("idx_customers_email".to_string(), 1),
            ("idx_customers_phone".to_string(), 1),
        ]),
        "{j:#}"
    );
    let order: Vec<&Value> = findings_of(&j, "key_order", pk);
    assert_eq!(order[0]["entries"][0]["customer_id"], "C0006", "{j:#}");
    assert_eq!(
        of("duplicate_key"),
        BTreeMap::from([(pk.to_string(), 1)]),
        "{j:#}"
    );
    let dup = findings_of(&j, "duplicate_key", pk);
    let rowids: Vec<&Value> = dup[0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["rowid"])
        .collect();
    assert_eq!(rowids, [1, 2], "{j:#}");
}

/// An entry of an index that parses as a record but holds another number
/// of values than the index has columns (three for the email index's two:
/// email and rowid) is a damaged record of that index, on its page; it is
/// not taken for an entry whose row holds another key. Built here: the
/// entry of c0005@example.com rewritten in place, byte for byte the same
/// length, as ("c0005@example.co", 5, NULL); the stock sqlite3 finds the
/// index wrong.
#[test]
fn an_index_entry_with_an_extra_value_is_a_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA page_size = 4096;
         CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT);
         CREATE INDEX idx_customers_email ON customers(email);",
    )
    .unwrap();
    for i in 1..=30 {
        c.execute(
            "INSERT INTO customers(rowid, customer_id, name, email) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                i,
                format!("C{i:04}"),
                format!("Customer {i}"),
                format!("c{i:04}@example.com")
            ],
        )
        .unwrap();
    }
    drop(c);
    let (root, off) = root_page_offset(&db, "idx_customers_email");
    let mut bytes = std::fs::read(&db).unwrap();
    // header (3 bytes: its size, TEXT of 17 bytes, a one-byte integer), body
    let mut old = vec![3u8, 13 + 2 * 17, 1];
    old.extend_from_slice(b"c0005@example.com");
    old.push(5);
    // header (4 bytes: its size, TEXT of 16 bytes, the integer, NULL), body
    let mut new = vec![4u8, 13 + 2 * 16, 1, 0];
    new.extend_from_slice(b"c0005@example.co");
    new.push(5);
    assert_eq!(old.len(), new.len());
    let page = &mut bytes[off..off + 4096];
    let at = page
        .windows(old.len())
        .position(|w| w == old.as_slice())
        .expect("the entry of c0005 on the index's leaf");
    page[at..at + new.len()].copy_from_slice(&new);
    std::fs::write(&db, bytes).unwrap();
    let ic = sqlite3_cli(&db, "PRAGMA integrity_check");
    assert!(ic.contains("idx_customers_email"), "{ic}");

    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let bad = findings_of(&j, "record_damaged", "idx_customers_email");
    assert_eq!(bad.len(), 1, "{j:#}");
    assert_eq!(bad[0]["count"], 1);
    assert_eq!(bad[0]["pages"], serde_json::json!([root]));
    assert!(
        findings_of(&j, "index_key_mismatch", "idx_customers_email").is_empty(),
        "{j:#}"
    );
}

/// An index whose collation SQLite does not know (one the POS registers in
/// its own code) beside a stale page of the ID index: every lookup through
/// it fails to be formed, so it is named as not probed (a warning), and
/// the rows in doubt are not called unreadable; the customers the ID index
/// rejects are still named exactly. Truth: the fixture's, and the stock
/// sqlite3's own refusal of that collation.
#[test]
fn an_index_with_a_collation_sqlite_does_not_know_is_not_probed() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy("stale_pk_page", dir.path());
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE INDEX idx_customers_name_pos ON customers(name COLLATE NOCASE);
         PRAGMA writable_schema = ON;
         UPDATE sqlite_schema
            SET sql = 'CREATE INDEX idx_customers_name_pos ON customers(name COLLATE POSNAME)'
          WHERE name = 'idx_customers_name_pos';",
    )
    .unwrap();
    drop(c);
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*) FROM customers INDEXED BY idx_customers_name_pos WHERE name COLLATE POSNAME = 'x'")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such collation sequence: POSNAME"), "{err}");

    let t = truth("stale_pk_page");
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(
        strings(&j["affected_customer_ids"]),
        strings(&t["affected_customer_ids"])
    );
    let wrong = findings_of(&j, "lookup_wrong", "sqlite_autoindex_customers_1");
    assert_eq!(wrong.len(), 1, "{j:#}");
    assert_eq!(
        strings(&wrong[0]["customer_ids"]),
        strings(&t["affected_by_index"]["sqlite_autoindex_customers_1"])
    );
    let not_probed: Vec<&Value> = findings_of(&j, "index_not_compared", "idx_customers_name_pos")
        .into_iter()
        .filter(|f| {
            f["message"]
                .as_str()
                .unwrap()
                .starts_with("lookups through idx_customers_name_pos could not be done")
        })
        .collect();
    assert_eq!(not_probed.len(), 1, "{j:#}");
    assert!(
        not_probed[0]["message"]
            .as_str()
            .unwrap()
            .contains("no such collation sequence: POSNAME"),
        "{j:#}"
    );
    assert_eq!(not_probed[0]["severity"], "warning");
    assert!(findings_of(&j, "lookup_wrong", "idx_customers_name_pos").is_empty());
    let unreadable = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["code"] == "rows_unreadable");
    assert!(!unreadable, "{j:#}");
    assert_eq!(j["coverage"]["complete"], false);
}

/// The stock sqlite3 running `statements` (one a line) on `db` in one
/// batch: each line's output, and the lines that failed (its "Runtime
/// error near line N" messages).
fn stock_batch(db: &Path, statements: &[String]) -> (String, BTreeSet<usize>) {
    use std::io::Write;
    let mut child = std::process::Command::new("sqlite3")
        .arg("-batch")
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let script = statements.join("\n") + "\n";
    let writer = std::thread::spawn(move || input.write_all(script.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let failed = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| {
            let rest = l.split("near line ").nth(1)?;
            rest.split(':').next()?.parse().ok()
        })
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), failed)
}

/// `misplaced_table_cells`, by the stock sqlite3 (the builder's truth is
/// Python's sqlite3): the POS's lookup by ID, reading the row, for every
/// customer a full scan of the damaged file reads fails for exactly check's
/// six affected customers (the two cells' and four neighbours SQLite's
/// binary search over the leaf's rowids passes by); and through each
/// other index, by the row's own key, the two cells' rows are not among
/// the rowids found (their entries still name the rowids the cells had),
/// as check's `lookup_wrong` under every index says.
#[test]
fn a_leaf_with_rowids_out_of_order_rejects_its_neighbours_too() {
    let name = "misplaced_table_cells";
    let t = truth(name);
    let dir = tempfile::tempdir().unwrap();
    let db = fixture_copy(name, dir.path());
    let scan = sqlite3_cli(
        &db,
        "SELECT rowid, customer_id, quote(phone), quote(email), quote(status), quote(tier), \
         quote(card_number) FROM customers NOT INDEXED",
    );
    let rows: Vec<Vec<&str>> = scan.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2010, "every cell is read");
    let by_id: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "SELECT customer_id, length(name) FROM customers WHERE customer_id = '{}';",
                r[1]
            )
        })
        .collect();
    let (_, failed) = stock_batch(&db, &by_id);
    let rejected: Vec<String> = failed.iter().map(|&n| rows[n - 1][1].to_string()).collect();
    let mut rejected = rejected;
    rejected.sort();
    assert_eq!(rejected.len(), 6, "{rejected:?}");

    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(strings(&j["affected_customer_ids"]), rejected);
    assert_eq!(strings(&t["affected_customer_ids"]), rejected);

    // through each index other than the ID's, by the row's own key
    let cells = [
        t["misplaced"]["customer_id"].as_str().unwrap(),
        t["repeated"]["customer_id"].as_str().unwrap(),
    ];
    let indexes = [
        ("idx_customers_phone", "phone IS {2}"),
        ("idx_customers_email", "email IS {3}"),
        ("idx_customers_status", "status IS {4} AND tier IS {5}"),
        ("sqlite_autoindex_customers_2", "card_number IS {6}"),
    ];
    for (ix, cond) in indexes {
        let mut misses = Vec::new();
        for r in rows.iter().filter(|r| cells.contains(&r[1])) {
            let mut w = cond.to_string();
            for (k, v) in r.iter().enumerate().skip(2) {
                w = w.replace(&format!("{{{k}}}"), v);
            }
            let found = sqlite3_cli(
                &db,
                &format!("SELECT rowid FROM customers INDEXED BY {ix} WHERE {w}"),
            );
            if !found.lines().any(|f| f == r[0]) {
                misses.push(r[1].to_string());
            }
        }
        misses.sort();
        let f = findings_of(&j, "lookup_wrong", ix);
        assert_eq!(f.len(), 1, "{ix}");
        assert_eq!(strings(&f[0]["customer_ids"]), misses, "{ix}");
        assert_eq!(misses.len(), 2, "{ix}");
    }
}
