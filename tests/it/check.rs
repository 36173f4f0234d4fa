//! `custodian check` over every fixture: exact verdict, exit code, finding
//! codes and affected customer IDs (against the fixture builder's truth).

use std::collections::BTreeSet;

use super::support::{fixture_copy, run, strings, truth};

struct Case {
    fixture: &'static str,
    exit: i32,
    verdict: &'static str,
    /// (code, object) pairs that must be among the findings; object "" = any.
    codes: &'static [(&'static str, &'static str)],
}

const PK: &str = "sqlite_autoindex_customers_1";

const CASES: &[Case] = &[
    Case {
        fixture: "healthy",
        exit: 0,
        verdict: "clean",
        codes: &[],
    },
    Case {
        fixture: "stale_pk_page",
        exit: 1,
        verdict: "corrupt",
        codes: &[("index_entry_missing", PK), ("lookup_wrong", PK)],
    },
    Case {
        fixture: "stale_pk_page_dups",
        exit: 1,
        verdict: "corrupt",
        codes: &[
            ("index_entry_missing", PK),
            ("lookup_wrong", PK),
            ("duplicate_key", PK),
        ],
    },
    Case {
        fixture: "stale_secondary_page",
        exit: 1,
        verdict: "corrupt",
        codes: &[
            ("index_entry_missing", "idx_customers_email"),
            ("lookup_wrong", "idx_customers_email"),
        ],
    },
    Case {
        fixture: "zeroed_index_page",
        exit: 1,
        verdict: "corrupt",
        codes: &[
            ("page_damaged", PK),
            ("index_entry_missing", PK),
            ("lookup_wrong", PK),
        ],
    },
    Case {
        fixture: "garbage_index_page",
        exit: 1,
        verdict: "corrupt",
        codes: &[
            ("index_entry_missing", "idx_customers_phone"),
            ("lookup_wrong", "idx_customers_phone"),
        ],
    },
    Case {
        fixture: "surplus_index_entries",
        exit: 1,
        verdict: "corrupt",
        codes: &[("index_entry_surplus", PK), ("lookup_wrong", PK)],
    },
    Case {
        fixture: "damaged_table_leaf",
        exit: 1,
        verdict: "corrupt",
        codes: &[("index_entry_surplus", PK), ("lookup_wrong", PK)],
    },
    Case {
        fixture: "damaged_table_interior",
        exit: 1,
        verdict: "corrupt",
        codes: &[("index_entry_surplus", PK)],
    },
    Case {
        fixture: "index_definition_removed",
        exit: 1,
        verdict: "corrupt",
        codes: &[("page_unused", "")],
    },
    Case {
        fixture: "wal_stale_index",
        exit: 1,
        verdict: "corrupt",
        codes: &[
            ("wal_uncheckpointed", ""),
            ("index_entry_missing", PK),
            ("lookup_wrong", PK),
        ],
    },
    Case {
        fixture: "flipped_id_byte",
        exit: 1,
        verdict: "corrupt",
        codes: &[
            ("index_entry_missing", PK),
            ("index_key_mismatch", PK),
            ("lookup_wrong", PK),
        ],
    },
    Case {
        fixture: "overflow_chain_broken",
        exit: 1,
        verdict: "corrupt",
        codes: &[("record_damaged", "customers"), ("rows_unreadable", "")],
    },
    Case {
        fixture: "truncated",
        exit: 1,
        verdict: "corrupt",
        codes: &[("file_truncated", "")],
    },
];

#[test]
fn every_fixture_gets_the_exact_verdict_and_affected_ids() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture_copy(case.fixture, dir.path());
        let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
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
        let j = r.json();
        if j["verdict"] != case.verdict {
            failures.push(format!(
                "{}: verdict {} != {}",
                case.fixture, j["verdict"], case.verdict
            ));
        }
        let got: BTreeSet<(String, String)> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["code"].as_str().unwrap().to_string(),
                    f["object"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for (code, object) in case.codes {
            let ok = got
                .iter()
                .any(|(c, o)| c == code && (object.is_empty() || o == object));
            if !ok {
                failures.push(format!(
                    "{}: no finding {code} on {object:?}; got {got:?}",
                    case.fixture
                ));
            }
        }
        if case.codes.is_empty() && !got.is_empty() {
            failures.push(format!(
                "{}: expected no findings, got {got:?}",
                case.fixture
            ));
        }
        let want = strings(&truth(case.fixture)["affected_customer_ids"]);
        let have = strings(&j["affected_customer_ids"]);
        if want != have {
            let w: BTreeSet<_> = want.iter().collect();
            let h: BTreeSet<_> = have.iter().collect();
            failures.push(format!(
                "{}: affected IDs differ: {} expected, {} reported; missing {:?}; extra {:?}",
                case.fixture,
                want.len(),
                have.len(),
                w.difference(&h).collect::<Vec<_>>(),
                h.difference(&w).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
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
    let closed: i64 = conn
        .query_row(
            "SELECT count(*) FROM customers WHERE status = 'closed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
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
    assert_eq!(f("customer_closed")["count"], closed);
    assert_eq!(f("customer_closed")["severity"], "warning");
    let total = j["coverage"]["customers_read"].as_u64().unwrap();
    assert_eq!(
        f("id_format")["count"],
        total,
        "every ID has 12 digits, the rule wants 11"
    );
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
fn a_healthy_200k_customer_database_is_clean() {
    // The reference POS database at 200,000 customers (about 96 MB), built by
    // bench/make_reference_db.py with the system's Python.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ref-200k.db");
    super::support::make_reference_db(200_000, &db);
    let r = run(&["check", db.to_str().unwrap(), "--json", "-"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "clean");
    assert_eq!(j["findings"], serde_json::json!([]));
    assert_eq!(j["coverage"]["customers_read"], 200_000);
    assert_eq!(
        j["coverage"]["indexes_compared"].as_array().unwrap().len(),
        5
    );
    assert_eq!(j["coverage"]["complete"], true);
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
