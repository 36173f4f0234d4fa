//! A WAL database whose header SQLite refuses while its -wal holds commits
//! (issue 8): SQLite can neither read the file nor checkpoint the -wal, and
//! it would replay that -wal over any file put in the database's place
//! (pager.c, `pagerOpenWalIfPresent`). The repair writes the -wal's
//! committed frames into its work copy, and sets the -wal aside (a rename,
//! beside the original file's second name) right before the swap; the -wal
//! is never removed: it is named with the backup. The fixture is
//! `wal_stale_index` (its truth computed by tools/make_fixtures.py), its
//! page size bytes zeroed: "file is not a database" to SQLite.

use std::path::{Path, PathBuf};

use super::repair::{Setup, customers_sha256, stock_integrity_check};
use super::support::{action_kinds, truth};

const FIXTURE: &str = "wal_stale_index";

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The fixture with its page size zeroed (SQLite refuses the file), with
/// or without its snapshot; the damaged file's bytes and its -wal's.
fn refused(with_snapshot: bool) -> (Setup, Vec<u8>, Vec<u8>) {
    let s = Setup::new(FIXTURE);
    if !with_snapshot {
        std::fs::remove_dir_all(s.dir.path().join("snaps")).unwrap();
        std::fs::create_dir(s.dir.path().join("snaps")).unwrap();
    }
    let mut image = std::fs::read(&s.db).unwrap();
    image[16..18].copy_from_slice(&[0, 0]);
    std::fs::write(&s.db, &image).unwrap();
    let wal = std::fs::read(sidecar(&s.db, "-wal")).unwrap();
    assert_eq!(wal.len(), 263_712, "the fixture's -wal: 64 frames");
    (s, image, wal)
}

/// The backup folder's files by kind: the database's backup, its -wal's,
/// the checksums file (each exactly one).
fn backup_files(s: &Setup) -> (PathBuf, PathBuf, PathBuf) {
    let files = s.backups();
    let one = |suffix: &str| {
        let found: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        assert_eq!(found.len(), 1, "{suffix} in {files:?}");
        found[0].clone()
    };
    let out = (one(".backup"), one(".backup-wal"), one(".sha256"));
    assert_eq!(files.len(), 3, "{files:?}");
    out
}

/// What every finished repair of the refused file leaves: the truth's
/// customers (the -wal's 12 included) in a file the stock sqlite3 calls
/// ok, no -wal beside it, and the backup: the damaged file and its -wal
/// byte for byte, with their checksums.
fn assert_repaired(s: &Setup, image: &[u8], wal: &[u8]) {
    let t = truth(FIXTURE);
    assert!(
        !sidecar(&s.db, "-wal").exists(),
        "a -wal is beside the repaired file"
    );
    assert_eq!(stock_integrity_check(&s.db), "ok");
    assert_eq!(
        super::support::sqlite3_cli(&s.db, "SELECT count(*) FROM customers"),
        t["customers_total"].to_string()
    );
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_customers_sha256"].as_str().unwrap()
    );
    let (bk, bk_wal, sums) = backup_files(s);
    assert!(std::fs::read(&bk).unwrap() == image, "the backup");
    assert!(std::fs::read(&bk_wal).unwrap() == wal, "the -wal's backup");
    let sums = std::fs::read_to_string(&sums).unwrap();
    let sha = |b: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        sums,
        format!(
            "{}  {}\n{}  {}\n",
            sha(image),
            name(&bk),
            sha(wal),
            name(&bk_wal)
        )
    );
}

/// Repairs the refused file (with or without the snapshot): exit 0, the
/// actions that say what was done (`mended`: how the frame was mended),
/// and what every repair of it leaves.
fn repaired_exactly(with_snapshot: bool, mended: &str) {
    let (s, image, wal) = refused(with_snapshot);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    let kinds = action_kinds(&j);
    for want in ["backup", "wal_frames", mended, "wal_set_aside", "swap"] {
        assert!(kinds.contains(&want), "{want} in {kinds:?}");
    }
    assert_repaired(&s, &image, &wal);
}

/// Without a snapshot: the rebuild reads the pages under a header rebuilt
/// from them, with the -wal's frames written into its copy. Was: exit 3,
/// "a WAL database whose header SQLite refuses is not repaired yet".
#[test]
fn a_refused_wal_database_is_repaired_with_its_wal_commits_without_a_snapshot() {
    repaired_exactly(false, "rebuild_database");
}

/// With a snapshot: the header is mended on a scratch copy that holds the
/// -wal's frames (was: exit 3, "not repaired while its -wal holds
/// commits").
#[test]
fn a_refused_wal_database_is_repaired_with_its_wal_commits_from_a_snapshot() {
    repaired_exactly(true, "mend_header");
}

/// Runs the repair until it pauses at `phase`, then SIGKILLs it.
fn killed_at(s: &Setup, phase: &str) {
    let marker = s.dir.path().join(format!("paused-{phase}"));
    let mut child = super::repair_ops::start_paused(s, phase, &marker);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The hidden files of the backup folder whose names end with `suffix`.
fn hidden(s: &Setup, suffix: &str) -> Vec<PathBuf> {
    s.backups()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// SIGKILL between setting the -wal aside and the swap: the database is
/// the original, its -wal kept as the second name beside the original's.
/// The next repair puts the -wal back before it reads anything (the check
/// sees the database as SQLite would), then repairs it whole.
#[test]
fn a_repair_killed_after_setting_the_wal_aside_is_undone_by_the_next() {
    let (s, image, wal) = refused(true);
    killed_at(&s, "wal-aside");
    assert!(
        std::fs::read(&s.db).unwrap() == image,
        "the database changed"
    );
    assert!(
        !sidecar(&s.db, "-wal").exists(),
        "the -wal was not set aside"
    );
    let aside = hidden(&s, ".custodian-original-wal");
    assert_eq!(aside.len(), 1, "{:?}", s.backups());
    assert!(std::fs::read(&aside[0]).unwrap() == wal);
    // a dry run names the -wal set aside and moves nothing
    let before = super::support::listing(s.dir.path());
    let r = s.repair(&["--dry-run"]);
    assert!(r.code() < 2, "{}", r.show());
    assert_eq!(
        super::support::action_detail(&r.json(), "leftovers", None),
        format!(
            "the -wal a repair killed before its swap set aside is kept as {}; a repair puts it back as {} (this dry run read the database without it)",
            aside[0].display(),
            sidecar(&s.db, "-wal").display()
        )
    );
    assert_eq!(
        super::support::listing(s.dir.path()),
        before,
        "{}",
        r.show()
    );
    assert!(std::fs::read(&aside[0]).unwrap() == wal);
    assert!(!sidecar(&s.db, "-wal").exists());
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let put_back = super::support::action_detail(&j, "leftovers", None);
    assert_eq!(
        put_back,
        format!(
            "the -wal a repair killed before its swap had set aside ({}) was put back as {}: the database is as it was before that repair",
            aside[0].display(),
            sidecar(&s.db, "-wal").display()
        )
    );
    assert_repaired(&s, &image, &wal);
}

/// SIGKILL right after the swap: the repaired file is in place, no -wal
/// beside it; the original and its -wal are kept under their second
/// names. The next repair (nothing left to do) names them as the backup.
#[test]
fn a_repair_killed_after_its_swap_leaves_the_wal_to_be_named_with_the_backup() {
    let (s, image, wal) = refused(true);
    killed_at(&s, "renamed");
    assert!(std::fs::read(&s.db).unwrap() != image, "not swapped");
    assert!(!sidecar(&s.db, "-wal").exists());
    assert_eq!(hidden(&s, ".custodian-original-wal").len(), 1);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    assert_eq!(r.json()["verdict"], "clean", "{}", r.show());
    assert_repaired(&s, &image, &wal);
}

/// The fixture with its header's file format write and read versions
/// (bytes 18 and 19) set; the damaged file's bytes and its -wal's.
fn with_versions(write: u8, read: u8) -> (Setup, Vec<u8>, Vec<u8>) {
    let s = Setup::new(FIXTURE);
    let mut image = std::fs::read(&s.db).unwrap();
    assert_eq!(image[18..20], [2, 2], "the fixture is in WAL mode");
    image[18..20].copy_from_slice(&[write, read]);
    std::fs::write(&s.db, &image).unwrap();
    let wal = std::fs::read(sidecar(&s.db, "-wal")).unwrap();
    (s, image, wal)
}

/// A WAL database whose write version SQLite opens read-only (above 2;
/// btree.c, `lockBtree`), its -wal holding commits (nightly 585). Was:
/// exit 3 "cannot checkpoint the -wal: attempt to write a readonly
/// database ... the original is untouched", with the original changed:
/// `PRAGMA journal_mode = DELETE` had checkpointed the -wal into it and
/// removed it, then failed to write the header. Now locked as a header
/// SQLite refuses is: the copy gets the frames and its write version
/// mended, the -wal is set aside, never checkpointed; the backup is the
/// damaged file and its -wal byte for byte.
#[test]
fn a_wal_database_sqlite_opens_read_only_is_repaired_with_its_wal_set_aside() {
    let (s, image, wal) = with_versions(74, 2);
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired");
    let kinds = action_kinds(&j);
    assert!(!kinds.contains(&"checkpoint"), "{kinds:?}");
    for want in [
        "backup",
        "wal_frames",
        "mend_header",
        "wal_set_aside",
        "swap",
    ] {
        assert!(kinds.contains(&want), "{want} in {kinds:?}");
    }
    assert_eq!(
        super::support::action_detail(&j, "mend_header", None),
        "the header's file format write version was 74, which SQLite does not write (it opens such a file read-only): set to the read version's"
    );
    assert_repaired(&s, &image, &wal);
    // the repaired file stays in WAL mode, writable to SQLite
    assert_eq!(std::fs::read(&s.db).unwrap()[18..20], [2, 2]);
}

/// The same database at rest, no -wal beside it: SQLite still says WAL
/// and opens it read-only, so leaving WAL mode would fail at the header.
/// It is repaired without a checkpoint, and stays in WAL mode.
#[test]
fn a_wal_database_at_rest_sqlite_opens_read_only_is_repaired_in_wal_mode() {
    let (s, image, _) = with_versions(74, 2);
    std::fs::remove_file(sidecar(&s.db, "-wal")).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 0, "{}", r.show());
    let j = r.json();
    let kinds = action_kinds(&j);
    assert!(!kinds.contains(&"checkpoint"), "{kinds:?}");
    assert!(!kinds.contains(&"wal_set_aside"), "{kinds:?}");
    assert!(kinds.contains(&"mend_header"), "{kinds:?}");
    assert!(!sidecar(&s.db, "-wal").exists());
    assert_eq!(std::fs::read(&s.db).unwrap()[18..20], [2, 2]);
    assert_eq!(stock_integrity_check(&s.db), "ok");
    let t = truth(FIXTURE);
    assert_eq!(
        super::support::sqlite3_cli(&s.db, "SELECT count(*) FROM customers"),
        t["customers_without_wal"].to_string()
    );
    let files = s.backups();
    assert_eq!(files.len(), 2, "the backup and its checksums: {files:?}");
    let bk = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".backup"))
        .unwrap();
    assert!(std::fs::read(bk).unwrap() == image, "the backup");
}

/// Header bytes 18 and 19 (write and read version) on the WAL fixture,
/// whatever SQLite makes of them: a write version above 2 opens read-only,
/// a read version above 2 is refused, a read version below 2 is opened in
/// WAL mode all the same (the -wal is there). Each is repaired (exit 0)
/// with every committed customer, in a file the stock sqlite3 calls ok, no
/// -wal beside it, the backup the damaged file and its -wal byte for byte;
/// the -wal is checkpointed only where SQLite can finish leaving WAL mode,
/// else set aside.
#[test]
fn every_write_and_read_version_of_a_wal_database_is_repaired_without_a_failed_checkpoint() {
    // (write, read, set aside rather than checkpointed)
    let cases: [(u8, u8, bool); 12] = [
        (0, 2, false),
        (1, 2, false),
        (3, 2, true),
        (255, 2, true),
        (2, 0, false),
        (2, 1, false),
        (1, 1, false),
        (3, 1, true),
        (74, 0, true),
        (2, 3, true),
        (74, 3, true),
        (1, 255, true),
    ];
    for (write, read, aside) in cases {
        let (s, image, wal) = with_versions(write, read);
        let r = s.repair(&[]);
        assert_eq!(r.code(), 0, "[{write}, {read}]: {}", r.show());
        let j = r.json();
        assert_eq!(j["verdict"], "repaired", "[{write}, {read}]");
        let kinds = action_kinds(&j);
        let (done, not) = if aside {
            ("wal_set_aside", "checkpoint")
        } else {
            ("checkpoint", "wal_set_aside")
        };
        assert!(
            kinds.contains(&done),
            "[{write}, {read}]: {done} in {kinds:?}"
        );
        assert!(
            !kinds.contains(&not),
            "[{write}, {read}]: {not} in {kinds:?}"
        );
        assert_repaired(&s, &image, &wal);
        assert_eq!(
            std::fs::read(&s.db).unwrap()[18..20],
            [2, 2],
            "[{write}, {read}]: in WAL mode"
        );
    }
}
