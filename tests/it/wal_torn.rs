//! A -wal whose last transaction is torn: its own commit frame fails its
//! checksum, and SQLite discards the transaction as never committed. That
//! is no damage SQLite reports, and check's exit code does not change; but
//! a support desk asking why an ID registered in that transaction is
//! rejected needs to know, so check names it (`wal_last_transaction_torn`,
//! info): the -wal, the frames of the discarded transaction and how many
//! pages they hold; and `diagnose` says so of an ID it does not find. A
//! -wal that ends otherwise gives no such finding.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::support::{fixture_copy, run, sqlite3_cli, write_in_wal};

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// The -wal beside `db`.
fn wal_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// A -wal's frames, read from their headers as the file format says (not
/// by custodian): the byte offset of each whole frame, its page number,
/// its database size after commit (nonzero on a commit frame), and
/// whether its salts are the WAL header's.
struct Frame {
    offset: usize,
    pgno: u32,
    db_size: u32,
    own_salts: bool,
}

fn frames(wal: &[u8]) -> Vec<Frame> {
    let word = |at: usize| u32::from_be_bytes(wal[at..at + 4].try_into().unwrap());
    let size = FRAME_HEADER + word(8) as usize;
    (0..(wal.len() - WAL_HEADER) / size)
        .map(|i| {
            let offset = WAL_HEADER + i * size;
            Frame {
                offset,
                pgno: word(offset),
                db_size: word(offset + 4),
                own_salts: wal[offset + 8..offset + 16] == wal[16..24],
            }
        })
        .collect()
}

/// The frames (numbered from 1) of the last commit of `frames` and of the
/// one before it.
fn last_two_commits(frames: &[Frame]) -> (usize, usize) {
    let commits: Vec<usize> = (1..=frames.len())
        .filter(|&n| frames[n - 1].db_size != 0)
        .collect();
    match commits[..] {
        [.., before, last] => (before, last),
        _ => panic!("fewer than two commits: {commits:?}"),
    }
}

/// The distinct pages frames `first..=last` hold, sorted.
fn pages_of(frames: &[Frame], first: usize, last: usize) -> Vec<u64> {
    let mut pages: Vec<u64> = frames[first - 1..last]
        .iter()
        .map(|f| u64::from(f.pgno))
        .collect();
    pages.sort_unstable();
    pages.dedup();
    pages
}

/// The findings of `code` in a JSON report.
fn findings<'a>(j: &'a Value, code: &str) -> Vec<&'a Value> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code)
        .collect()
}

/// (code, object) of every error finding, sorted.
fn errors(j: &Value) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["object"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    e.sort();
    e
}

/// How many customers the stock sqlite3 reads of `db` beside `wal` as its
/// -wal, in a scratch folder (SQLite recovers the -wal there).
fn sqlite_count(db: &Path, wal: &[u8]) -> u64 {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("o.db");
    std::fs::copy(db, &o).unwrap();
    std::fs::write(wal_of(&o), wal).unwrap();
    sqlite3_cli(&o, "SELECT count(*) FROM customers NOT INDEXED")
        .parse()
        .unwrap()
}

/// `wal_stale_index` with one byte of its -wal's last commit frame's page
/// flipped (frame 64: the second of its two transactions, frames 34 to 64,
/// which registers 6 customers). SQLite reads 2,018 customers instead of
/// 2,024, as with the -wal cut after frame 33. check names the discarded
/// transaction as info, beside the fixture's own damage, which is all that
/// decides its exit code (1, as for the undamaged fixture).
#[test]
fn a_torn_last_transaction_of_the_fixture_is_named_as_info() {
    let tmp = tempfile::tempdir().unwrap();
    let db = fixture_copy("wal_stale_index", tmp.path());
    let whole = std::fs::read(wal_of(&db)).unwrap();
    let fr = frames(&whole);
    assert_eq!(last_two_commits(&fr), (33, 64));
    let pages = pages_of(&fr, 34, 64);
    assert_eq!(pages.len(), 31);

    let name = "wal_stale_index.db";
    let sound = run(&["check", name, "--json", "-"], tmp.path());
    assert_eq!(sound.code(), 1, "{}", sound.show());
    let sound = sound.json();
    assert!(findings(&sound, "wal_last_transaction_torn").is_empty());

    let mut torn = whole.clone();
    torn[fr[63].offset + FRAME_HEADER + 100] ^= 0xff;
    std::fs::write(wal_of(&db), &torn).unwrap();
    let fixture_db = super::support::fixtures().join(name);
    assert_eq!(sqlite_count(&fixture_db, &whole), 2024);
    assert_eq!(sqlite_count(&fixture_db, &torn), 2018);
    assert_eq!(sqlite_count(&fixture_db, &whole[..fr[33].offset]), 2018);

    let c = run(&["check", name, "--json", "-"], tmp.path());
    assert_eq!(c.code(), 1, "{}", c.show());
    let j = c.json();
    assert_eq!(errors(&j), errors(&sound), "no error added or lost");
    let found = findings(&j, "wal_last_transaction_torn");
    assert_eq!(found.len(), 1, "{}", c.show());
    let f = found[0];
    assert_eq!(f["severity"], "info");
    assert_eq!(f["object"], "wal_stale_index.db-wal");
    assert_eq!(f["count"], 31);
    assert_eq!(f["pages"], serde_json::json!(pages));
    assert_eq!(
        f["message"],
        "the -wal ends in a transaction SQLite discards: its commit frame 64 fails its \
         checksum (a write torn by a crash, or the frame damaged since), so frames 34 to 64, \
         holding 31 pages, were never committed; what they changed (a customer registered in \
         them, say) is not in the database, which is read as of frame 33"
    );
    assert_eq!(std::fs::read(wal_of(&db)).unwrap(), torn, "check wrote");
}

/// A healthy WAL database whose -wal holds two transactions of one new
/// customer each, the last one's commit frame damaged: check calls it
/// clean (exit 0) with the info finding, and repair, agreeing, has nothing
/// to do and changes nothing (the -wal stays as it was: SQLite discards
/// the torn transaction at its next recovery, as custodian reads it).
#[test]
fn a_torn_last_transaction_of_a_healthy_database_leaves_it_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("till.db");
    write_in_wal(
        &db,
        "CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO customers SELECT printf('C%012d', i), 'n' FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);
         INSERT INTO customers VALUES ('C900000000001', 'a');
         INSERT INTO customers VALUES ('C900000000002', 'b');",
    );
    std::fs::remove_file(tmp.path().join("till.db-shm")).unwrap();
    let mut wal = std::fs::read(wal_of(&db)).unwrap();
    let fr = frames(&wal);
    let (before, last) = last_two_commits(&fr);
    assert_eq!((before, last, fr.len()), (2, 4, 4));
    let pages = pages_of(&fr, 3, 4);
    assert_eq!(pages.len(), 2);
    // the last byte of the commit frame's page
    wal[fr[3].offset + FRAME_HEADER + 4095] ^= 1;
    std::fs::write(wal_of(&db), &wal).unwrap();
    assert_eq!(sqlite_count(&db, &wal), 501);

    let c = run(&["check", "till.db", "--json", "-"], tmp.path());
    assert_eq!(c.code(), 0, "{}", c.show());
    let j = c.json();
    assert_eq!(j["verdict"], "clean");
    let codes: Vec<&str> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["wal_uncheckpointed", "wal_last_transaction_torn"]);
    let f = findings(&j, "wal_last_transaction_torn")[0];
    assert_eq!(
        (&f["severity"], &f["object"], &f["count"]),
        (&"info".into(), &"till.db-wal".into(), &2.into())
    );
    assert_eq!(f["pages"], serde_json::json!(pages));
    let message = f["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "the -wal ends in a transaction SQLite discards: its commit frame 4 fails"
        ) && message.contains("frames 3 to 4, holding 2 pages, were never committed")
            && message.ends_with("read as of frame 2"),
        "{message}"
    );

    // the support desk's question about the customer of the torn
    // transaction: not found, and why
    let d = run(
        &[
            "diagnose",
            "till.db",
            "C900000000002",
            "C900000000001",
            "--json",
            "-",
        ],
        tmp.path(),
    );
    assert_eq!(d.code(), 1, "{}", d.show());
    let dj = d.json();
    let causes: Vec<(&str, &str)> = dj["diagnoses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["cause"].as_str().unwrap(),
                x["explanation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(causes[0].0, "not_found");
    assert!(
        causes[0].1.starts_with(
            "no such customer in the table or its indexes; the -wal ends in a transaction \
             SQLite discards as never committed (frames 3 to 4: its commit frame fails its \
             checksum), so a customer registered in it is not in the database; did you mean"
        ),
        "{}",
        causes[0].1
    );
    assert_eq!(causes[1].0, "served");

    let image = std::fs::read(&db).unwrap();
    let r = run(&["repair", "till.db", "--json", "-"], tmp.path());
    assert_eq!(r.code(), 0, "{}", r.show());
    let rj = r.json();
    assert_eq!(rj["verdict"], "clean");
    assert_eq!(findings(&rj, "wal_last_transaction_torn").len(), 1);
    assert_eq!(std::fs::read(&db).unwrap(), image);
    assert_eq!(std::fs::read(wal_of(&db)).unwrap(), wal);
}

/// -wals that end otherwise: the fixture's as shipped; one whose frames
/// after its last commit are left over from before the log was reset
/// (other salts, commit marks among them); one ending in valid frames of a
/// transaction still being written (no commit after them); and one whose
/// last transaction is damaged before its commit frame, which SQLite loses
/// as a committed transaction (`wal_invalid`, an error), not a torn one.
#[test]
fn a_wal_that_ends_otherwise_gives_no_torn_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |dir: &Path, name: &str, want: i32| {
        let c = run(&["check", name, "--json", "-"], dir);
        assert_eq!(c.code(), want, "{}", c.show());
        let j = c.json();
        assert!(
            findings(&j, "wal_last_transaction_torn").is_empty(),
            "{}",
            c.show()
        );
        j
    };

    // the fixture as shipped
    let fixture = tmp.path().join("fixture");
    std::fs::create_dir(&fixture).unwrap();
    fixture_copy("wal_stale_index", &fixture);
    check(&fixture, "wal_stale_index.db", 1);

    // frames of an older cycle of the log after the last commit
    let reset = tmp.path().join("reset");
    std::fs::create_dir(&reset).unwrap();
    let db = reset.join("r.db");
    write_in_wal(
        &db,
        "CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO customers SELECT printf('C%012d', i), 'n' FROM n;
         INSERT INTO customers VALUES ('C900000000001', 'a');
         PRAGMA wal_checkpoint(RESTART);
         INSERT INTO customers VALUES ('C900000000002', 'b');",
    );
    std::fs::remove_file(reset.join("r.db-shm")).unwrap();
    let fr = frames(&std::fs::read(wal_of(&db)).unwrap());
    let own = fr.iter().take_while(|f| f.own_salts).count();
    assert!(own < fr.len() && fr[own - 1].db_size != 0, "one new commit");
    assert!(
        fr[own..].iter().any(|f| !f.own_salts && f.db_size != 0),
        "older commits after it"
    );
    check(&reset, "r.db", 0);
    let d = run(
        &["diagnose", "r.db", "C900000000003", "--json", "-"],
        &reset,
    );
    assert_eq!(d.code(), 1, "{}", d.show());
    let dj = d.json();
    assert_eq!(dj["diagnoses"][0]["cause"], "not_found");
    let words = dj["diagnoses"][0]["explanation"].as_str().unwrap();
    assert!(!words.contains("-wal"), "{words}");

    // a transaction still being written: its frames spilled into the -wal,
    // the files copied while it is open
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    let live = tmp.path().join("live.db");
    let c = rusqlite::Connection::open(&live).unwrap();
    c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    c.execute_batch(
        "CREATE TABLE customers(customer_id TEXT PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO customers VALUES ('C900000000001', 'a');
         PRAGMA cache_size = 2;
         BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO customers SELECT printf('C%012d', i), 'n' FROM n;",
    )
    .unwrap();
    std::fs::copy(&live, open.join("o.db")).unwrap();
    std::fs::copy(wal_of(&live), open.join("o.db-wal")).unwrap();
    c.execute_batch("ROLLBACK").unwrap();
    drop(c);
    let fr = frames(&std::fs::read(open.join("o.db-wal")).unwrap());
    let last = (1..=fr.len()).rfind(|&n| fr[n - 1].db_size != 0).unwrap();
    // none is a commit frame; the open transaction's later frames carry
    // zero salts and checksums here (SQLite fills them in at its commit),
    // its first ones the log's
    assert!(
        fr.len() - last > 1 && fr[last..].iter().all(|f| f.db_size == 0),
        "uncommitted frames after the last commit: {:?}",
        fr.iter()
            .map(|f| (f.pgno, f.db_size, f.own_salts))
            .collect::<Vec<_>>()
    );
    check(&open, "o.db", 0);

    // the fixture's last transaction damaged in frame 40, before its
    // commit frame: a commit lost
    let inside = tmp.path().join("inside");
    std::fs::create_dir(&inside).unwrap();
    let db = fixture_copy("wal_stale_index", &inside);
    let mut wal = std::fs::read(wal_of(&db)).unwrap();
    let fr = frames(&wal);
    wal[fr[39].offset + FRAME_HEADER + 100] ^= 0xff;
    std::fs::write(wal_of(&db), &wal).unwrap();
    let j = check(&inside, "wal_stale_index.db", 1);
    let lost = findings(&j, "wal_invalid");
    assert_eq!(lost.len(), 1);
    assert_eq!(
        (&lost[0]["severity"], &lost[0]["count"]),
        (&"error".into(), &1.into())
    );
}
