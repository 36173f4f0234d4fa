//! Issue 11 item 6: what a new user tripped over.

use std::os::unix::fs::PermissionsExt;

use super::support::{fixture_copy, run};

#[test]
fn report_paths_may_be_devices_or_fifos() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let r = run(
        &[
            "check",
            "healthy.db",
            "--json",
            "/dev/null",
            "--report",
            "/dev/null",
            "--html",
            "/dev/null",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.stderr(), "");
    // a named pipe is written as a stream
    let fifo = dir.path().join("report.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let r = run(
        &["check", "healthy.db", "--json", "report.fifo"],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let text = reader.join().unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["verdict"], "clean");
}

#[test]
fn a_check_that_cannot_run_writes_every_report_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.db"), "not a database at all\n").unwrap();
    let r = run(
        &[
            "check", "notes.db", "--json", "r.json", "--report", "r.md", "--html", "r.html",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    let why = "notes.db: not a SQLite database (no \"SQLite format 3\" header)";
    assert_eq!(r.stderr(), format!("custodian: {why}\n"));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(j["verdict"], "failed");
    let md = std::fs::read_to_string(dir.path().join("r.md")).unwrap();
    assert!(md.starts_with("# custodian check: failed\n"), "{md}");
    assert!(md.contains(why), "{md}");
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(html.contains(">failed</span>"), "{html}");
    assert!(
        html.contains("notes.db: not a SQLite database (no &quot;SQLite format 3&quot; header)"),
        "{html}"
    );
}

#[test]
fn snapshot_creates_its_folder_and_explains_keep() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let r = run(
        &[
            "snapshot",
            "healthy.db",
            "--out",
            "backups/pos",
            "--keep",
            "-1",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 2, "{}", r.show());
    assert!(
        r.stderr().contains(
            "invalid value '-1' for '--keep <N>': --keep must be at least 1 (a number of \
             snapshots; the newest good one is never removed)"
        ),
        "{}",
        r.show()
    );
    assert!(!dir.path().join("backups").exists());
    let r = run(
        &[
            "snapshot",
            "healthy.db",
            "--out",
            "backups/pos",
            "--keep",
            "3",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let out = dir.path().join("backups/pos");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        2,
        "snapshot and manifest"
    );
}

#[test]
fn every_db_argument_is_described_in_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["check", "repair", "diagnose", "snapshot", "preflight"] {
        let r = run(&[cmd, "--help"], dir.path());
        let args = r
            .stdout()
            .split("Arguments:\n")
            .nth(1)
            .unwrap_or_default()
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .to_string();
        let first = args.lines().next().unwrap_or_default();
        assert!(
            first.trim_start().starts_with('<') || first.trim_start().starts_with('['),
            "{cmd}: {args}"
        );
        assert!(
            first.split_whitespace().count() > 1,
            "{cmd}: the database argument has no description: {first:?}"
        );
    }
}

#[test]
fn preflight_is_no_go_while_another_process_holds_a_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let s = run(&["snapshot", "healthy.db", "--out", "snaps"], dir.path());
    assert_eq!(s.code(), 0, "{}", s.show());
    for wal in [false, true] {
        let w = rusqlite::Connection::open(dir.path().join("healthy.db")).unwrap();
        if wal {
            let _: String = w
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .unwrap();
        }
        w.execute_batch("BEGIN IMMEDIATE; UPDATE customers SET tier = tier WHERE rowid = 1;")
            .unwrap();
        let r = run(
            &[
                "preflight",
                "healthy.db",
                "--snapshot",
                "snaps",
                "--metrics",
                "p.prom",
            ],
            dir.path(),
        );
        assert_eq!(r.code(), 1, "{}", r.show());
        let lock = if wal {
            "the WAL write lock in its -shm is held"
        } else {
            "its RESERVED lock is held"
        };
        assert_eq!(
            r.stdout().lines().last().unwrap(),
            format!(
                "no-go: another process holds a write transaction open on the database ({lock}); \
                 let it finish (e.g. close the POS) before the upgrade"
            )
        );
        let m = std::fs::read_to_string(dir.path().join("p.prom")).unwrap();
        assert!(
            m.contains(
                "custodian_verdict{command=\"preflight\",db=\"healthy.db\",verdict=\"no_go\"} 1\n"
            ),
            "{m}"
        );
        w.execute_batch("ROLLBACK").unwrap();
        drop(w);
    }
    // the transaction is over: go (the WAL is empty after the last close)
    let r = run(
        &["preflight", "healthy.db", "--snapshot", "snaps"],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(
        r.stdout().lines().last().unwrap(),
        "ok: no other process holds a write transaction open"
    );
}

#[test]
fn check_and_preflight_on_a_wal_database_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let db = dir.path().join("healthy.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
    let names = || {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("healthy.db"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(),
        ["healthy.db"],
        "SQLite removed them at its last close"
    );
    let before = std::fs::read(&db).unwrap();
    let r = run(&["check", "healthy.db"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(names(), ["healthy.db"]);
    let r = run(
        &["check", "healthy.db", "healthy.db", "--quiet"],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(names(), ["healthy.db"]);
    assert_eq!(std::fs::read(&db).unwrap(), before);
    // while a POS connection has the database open, its -wal and -shm are
    // its own: left as they are, and still in use
    let pos = rusqlite::Connection::open(&db).unwrap();
    pos.execute_batch("UPDATE customers SET tier = tier WHERE rowid = 1")
        .unwrap();
    let r = run(&["check", "healthy.db"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(names(), ["healthy.db", "healthy.db-shm", "healthy.db-wal"]);
    let n: i64 = pos
        .query_row("SELECT count(*) FROM customers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2020);
}

#[test]
fn every_command_that_changes_nothing_leaves_a_wal_database_s_folder_as_it_was() {
    // SQLite makes a -wal and -shm to read a WAL database at rest, even
    // through a read-only connection, and cannot remove them at its close
    for (fixture, args, code) in [
        ("healthy", &["diagnose", "DB", "C000012816843"][..], 0),
        ("healthy", &["repair", "DB", "--dry-run"][..], 0),
        ("healthy", &["repair", "DB"][..], 0),
        ("healthy", &["snapshot", "DB", "--out", "snaps"][..], 0),
        (
            "healthy",
            &["preflight", "DB", "--snapshot", "snaps"][..],
            0,
        ),
        ("stale_pk_page", &["diagnose", "DB", "C052157602710"][..], 1),
        ("stale_pk_page", &["repair", "DB", "--dry-run"][..], 1),
        ("empty", &["repair", "DB"][..], 2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fixture_copy(fixture, dir.path());
        let name = format!("{fixture}.db");
        let db = dir.path().join(&name);
        {
            let c = rusqlite::Connection::open(&db).unwrap();
            let mode: String = c
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        if args.contains(&"preflight") {
            let r = run(&["snapshot", &name, "--out", "snaps"], dir.path());
            assert_eq!(r.code(), 0, "{}", r.show());
        }
        let listing = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "snaps")
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            listing(),
            std::slice::from_ref(&name),
            "SQLite removed them at its close"
        );
        let before = std::fs::read(&db).unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "DB" { name.as_str() } else { a })
            .collect();
        let r = run(&args, dir.path());
        assert_eq!(r.code(), code, "{args:?} on {fixture}: {}", r.show());
        assert_eq!(
            listing(),
            std::slice::from_ref(&name),
            "{args:?} on {fixture}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), before, "{args:?} on {fixture}");
    }
}

/// `custodian check DB --json -` with more options, run in `dir`.
fn check_json(db: &str, more: &[&str], dir: &std::path::Path) -> super::support::Run {
    let mut args = vec!["check", db, "--json", "-"];
    args.extend_from_slice(more);
    run(&args, dir)
}

/// The check's findings of one code.
fn findings(j: &serde_json::Value, code: &str) -> Vec<serde_json::Value> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code)
        .cloned()
        .collect()
}

#[test]
fn an_erasure_is_told_from_a_lost_page_by_the_evidence_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let db = dir.path().join("healthy.db");
    // three customers with transactions erased by SQL; their transactions stay
    let erased: Vec<String> = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut st = c
            .prepare(
                "SELECT DISTINCT customer_id FROM transactions ORDER BY customer_id LIMIT 3 OFFSET 100",
            )
            .unwrap();
        let ids: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for id in &ids {
            c.execute("DELETE FROM customers WHERE customer_id = ?1", [id])
                .unwrap();
        }
        ids
    };
    assert_eq!(erased.len(), 3);
    std::fs::write(
        dir.path().join("erasure.json"),
        "{\"vanished\": \"erasure_by_evidence\"}\n",
    )
    .unwrap();
    // by default a vanished customer is an error
    let r = check_json("healthy.db", &[], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let v = findings(&j, "customer_vanished");
    assert_eq!(v.len(), 1, "{j}");
    assert_eq!(v[0]["customer_ids"], serde_json::json!(erased));
    // configured: no sign of loss anywhere, so an erasure (info), clean
    let r = check_json("healthy.db", &["--config", "erasure.json"], dir.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "clean");
    assert!(findings(&j, "customer_vanished").is_empty());
    let e = findings(&j, "customer_erased");
    assert_eq!(e.len(), 1, "{j}");
    assert_eq!(e[0]["severity"], "info");
    assert_eq!(e[0]["customer_ids"], serde_json::json!(erased));
    // a lost page stays a loss, configured or not
    fixture_copy("lost_customer_leaf", dir.path());
    let r = run(
        &[
            "check",
            "lost_customer_leaf.db",
            "--json",
            "-",
            "--config",
            "erasure.json",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "corrupt");
    assert!(findings(&j, "customer_erased").is_empty(), "{j}");
    let truth = super::support::truth("lost_customer_leaf");
    assert_eq!(
        super::support::strings(&j["affected_customer_ids"]),
        super::support::strings(&truth["affected_customer_ids"])
    );
}

/// Vanished customers are looked for through every column that names
/// customers: each table's own list, exactly the IDs SQLite finds there
/// without a customer row; a column with no index to read in order gets a
/// note instead. The merge of `transactions.customer_id` is fed by the walk
/// of every other tree; a second reference to the same index (named again
/// by the config, in other letters) is merged by a walk of its own, with
/// the same answer.
#[test]
fn vanished_customers_are_found_through_every_referencing_column() {
    let dir = tempfile::tempdir().unwrap();
    fixture_copy("healthy", dir.path());
    let db = dir.path().join("healthy.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE loyalty(card TEXT, customer_id TEXT);
         CREATE INDEX idx_loyalty_customer ON loyalty(customer_id);
         INSERT INTO loyalty SELECT 'L' || rowid, customer_id FROM customers WHERE rowid % 7 = 0;
         CREATE TABLE notes(customer_id TEXT, note TEXT);
         INSERT INTO notes SELECT customer_id, 'n' FROM customers WHERE rowid % 11 = 0;
         DELETE FROM customers WHERE customer_id IN
           (SELECT DISTINCT customer_id FROM transactions ORDER BY customer_id LIMIT 4 OFFSET 50);
         DELETE FROM customers WHERE customer_id IN
           (SELECT customer_id FROM loyalty ORDER BY customer_id LIMIT 5 OFFSET 30);",
    )
    .unwrap();
    // the truth, by SQLite: referenced IDs without a customer row
    let gone = |t: &str| -> Vec<String> {
        let mut st = c
            .prepare(&format!(
                "SELECT DISTINCT customer_id FROM {t} WHERE customer_id NOT IN \
                 (SELECT customer_id FROM customers) ORDER BY customer_id"
            ))
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let (in_transactions, in_loyalty) = (gone("transactions"), gone("loyalty"));
    drop(c);
    assert!(in_transactions.len() >= 4, "{in_transactions:?}");
    assert!(in_loyalty.len() >= 5, "{in_loyalty:?}");
    assert_ne!(in_transactions, in_loyalty);
    std::fs::write(
        dir.path().join("refs.json"),
        "{\"references\": [\"TRANSACTIONS.customer_id\"]}\n",
    )
    .unwrap();
    let r = check_json("healthy.db", &["--config", "refs.json"], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let by_object: Vec<(String, serde_json::Value, serde_json::Value)> =
        findings(&j, "customer_vanished")
            .iter()
            .map(|f| {
                (
                    f["object"].as_str().unwrap_or("").to_string(),
                    f["customer_ids"].clone(),
                    f["count"].clone(),
                )
            })
            .collect();
    let want = |ids: &[String]| (serde_json::json!(ids), serde_json::json!(ids.len()));
    let (t_ids, t_count) = want(&in_transactions);
    let (l_ids, l_count) = want(&in_loyalty);
    assert_eq!(
        by_object,
        vec![
            (
                "TRANSACTIONS.customer_id".into(),
                t_ids.clone(),
                t_count.clone()
            ),
            ("loyalty.customer_id".into(), l_ids, l_count),
            ("transactions.customer_id".into(), t_ids, t_count),
        ],
        "{j}"
    );
    let notes: Vec<_> = findings(&j, "index_not_compared")
        .into_iter()
        .filter(|f| f["table"] == "notes")
        .collect();
    assert_eq!(notes.len(), 1, "{j}");
    assert_eq!(notes[0]["severity"], "info");
    assert!(
        notes[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("notes.customer_id refers to customers but has no index"),
        "{j}"
    );
    for f in findings(&j, "customer_vanished") {
        assert!(!f["message"].as_str().unwrap().contains("damaged"), "{f}");
    }

    // a leaf of loyalty's index zeroed: what survives is still merged, and
    // the finding says its list may be incomplete; transactions' is whole
    zero_leaf(&db, "idx_loyalty_customer");
    let r = check_json("healthy.db", &[], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let v = findings(&j, "customer_vanished");
    let of = |object: &str| {
        v.iter()
            .find(|f| f["object"] == object)
            .unwrap_or_else(|| panic!("no customer_vanished for {object}: {j}"))
    };
    let t = of("transactions.customer_id");
    assert_eq!(t["customer_ids"], serde_json::json!(in_transactions));
    assert!(!t["message"].as_str().unwrap().contains("damaged"), "{t}");
    let l = of("loyalty.customer_id");
    assert!(
        l["message"]
            .as_str()
            .unwrap()
            .contains("(some index pages were damaged: the list may be incomplete)"),
        "{l}"
    );
    let listed = super::support::strings(&l["customer_ids"]);
    assert!(
        !listed.is_empty() && listed.iter().all(|i| in_loyalty.contains(i)),
        "{listed:?} not all among {in_loyalty:?}"
    );

    // a leaf of the customer ID index zeroed as well (pass 1 reads it and
    // hands the IDs to the merge): the IDs it held are confirmed by the
    // table's rows, so transactions' list is still exact, and says that it
    // may be incomplete
    zero_leaf(&db, "sqlite_autoindex_customers_1");
    let r = check_json("healthy.db", &[], dir.path());
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    let t = findings(&j, "customer_vanished")
        .into_iter()
        .find(|f| f["object"] == "transactions.customer_id")
        .unwrap_or_else(|| panic!("no customer_vanished for transactions: {j}"));
    assert_eq!(t["customer_ids"], serde_json::json!(in_transactions), "{t}");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("(some index pages were damaged: the list may be incomplete)"),
        "{t}"
    );
}

/// Zeroes the second leaf page (by page number) of index `name` in `db`
/// (pages from the stock sqlite3's dbstat).
fn zero_leaf(db: &std::path::Path, name: &str) {
    let leaf: u64 = super::support::sqlite3_cli(
        db,
        &format!(
            "SELECT pageno FROM dbstat WHERE name = '{name}' AND pagetype = 'leaf' \
             ORDER BY pageno LIMIT 1 OFFSET 1"
        ),
    )
    .trim()
    .parse()
    .unwrap();
    let mut bytes = std::fs::read(db).unwrap();
    let page_size = u64::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let at = ((leaf - 1) * page_size) as usize;
    bytes[at..at + page_size as usize].fill(0);
    std::fs::write(db, &bytes).unwrap();
}
