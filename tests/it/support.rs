//! Shared helpers: run the binary, find fixtures, read ground truth.

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_custodian")
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

/// SQLite's damaged test databases (with MANIFEST.json and RECOVER.json):
/// the repository's own copy in tests/corpus/, or `../shared/corpus` read in
/// place when that is newer — its MANIFEST.json or RECOVER.json differs from
/// the copy's and was modified after the copy was taken (`copied_at_unix` in
/// tests/corpus/source.json). tests/corpus/README.md says the same.
pub fn corpus_dir() -> PathBuf {
    let own = root().join("tests/corpus/sqlite-testsuite");
    let shared = root().join("../shared/corpus/sqlite-testsuite");
    assert!(
        own.join("MANIFEST.json").is_file(),
        "the corpus copy {} is missing (it is part of the repository)",
        own.display()
    );
    if shared_corpus_is_newer(&own, &shared) {
        eprintln!(
            "note: reading {} in place: it is newer than {}",
            shared.display(),
            own.display()
        );
        return shared;
    }
    own
}

fn shared_corpus_is_newer(own: &Path, shared: &Path) -> bool {
    let meta = ["MANIFEST.json", "RECOVER.json"];
    if !meta.iter().all(|m| shared.join(m).is_file()) {
        return false;
    }
    let differs = meta
        .iter()
        .any(|m| std::fs::read(own.join(m)).ok() != std::fs::read(shared.join(m)).ok());
    if !differs {
        return false;
    }
    let source: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/corpus/source.json"))
            .expect("tests/corpus/source.json"),
    )
    .expect("tests/corpus/source.json is JSON");
    let copied_at = source["copied_at_unix"]
        .as_u64()
        .expect("copied_at_unix in tests/corpus/source.json");
    meta.iter().any(|m| {
        std::fs::metadata(shared.join(m))
            .and_then(|md| md.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|d| d.as_secs() > copied_at)
    })
}

/// The corpus's MANIFEST.json (one entry per file, with the stock CLI's
/// verdict).
pub fn corpus_manifest(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = v.as_array().expect("MANIFEST.json is a list").clone();
    let files = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "db")
        })
        .count();
    assert_eq!(
        entries.len(),
        files,
        "{}: MANIFEST.json lists every .db file",
        dir.display()
    );
    for entry in &entries {
        let file = entry["file"].as_str().expect("MANIFEST.json: file");
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let got: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            Some(got.as_str()),
            entry["sha256"].as_str(),
            "{}/{file} is not the file MANIFEST.json describes (a run wrote into the corpus?)",
            dir.display()
        );
    }
    entries
}

/// Fails the test, with what to install, when an external program the test
/// needs (the stock `sqlite3` CLI, `chromium`, `python3`) is not on PATH.
/// Never a silent skip: .ci/run installs all of them.
pub fn require_tool(program: &str, why: &str) {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    assert!(
        found,
        "`{program}` is not installed, and this test needs it ({why}); \
         install it (Debian: apt-get install {program}) or run .ci/run, which does"
    );
}

/// The stock sqlite3 CLI's output for `sql` on `db` (stdout, trimmed), the
/// independent oracle. Fails the test if the CLI is missing.
pub fn sqlite3_cli(db: &Path, sql: &str) -> String {
    require_tool("sqlite3", "the stock SQLite CLI is the independent oracle");
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The root page of schema object `name` in `db`, as SQLite's schema table
/// says.
pub fn root_page(db: &Path, name: &str) -> u64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let root: i64 = c
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap();
    root as u64
}

/// A repair report's snapshot candidates as (path, status), in its order.
pub fn snapshot_statuses(j: &serde_json::Value) -> Vec<(&str, &str)> {
    j["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect()
}

/// Builds the reference POS database of `n` customers at `out` with
/// bench/make_reference_db.py (Python's sqlite3; deterministic).
pub fn make_reference_db(n: u32, out: &Path) {
    require_tool("python3", "it builds the reference database");
    let generator = root().join("bench/make_reference_db.py");
    let st = Command::new("python3")
        .arg(&generator)
        .arg(n.to_string())
        .arg(out)
        .output()
        .expect("python3 runs");
    assert!(
        st.status.success(),
        "{} failed: {}",
        generator.display(),
        String::from_utf8_lossy(&st.stderr)
    );
}

/// The outcome of one run, printed in full when an assertion fails.
pub struct Run {
    pub cmd: String,
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn show(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.show()))
    }
}

pub fn run(args: &[&str], cwd: &Path) -> Run {
    run_env(args, cwd, &[])
}

/// `run` with environment variables set (the test hooks).
pub fn run_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .expect("run custodian");
    Run {
        cmd: format!("custodian {}", args.join(" ")),
        out,
    }
}

/// Copies fixture `name` (its .db and any -wal) into `dir`; returns the
/// copy's path. Tests never run on the committed files themselves.
/// The names in a folder, sorted (hidden ones too).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn fixture_copy(name: &str, dir: &Path) -> PathBuf {
    let src = fixtures().join(format!("{name}.db"));
    assert!(src.exists(), "missing fixture {}", src.display());
    let dst = dir.join(format!("{name}.db"));
    std::fs::copy(&src, &dst).unwrap();
    let wal = fixtures().join(format!("{name}.db-wal"));
    if wal.exists() {
        std::fs::copy(&wal, dir.join(format!("{name}.db-wal"))).unwrap();
    }
    dst
}

/// The fixture builder's ground truth for `name`.
pub fn truth(name: &str) -> serde_json::Value {
    let p = fixtures().join(format!("{name}.truth.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The kinds of a report's actions, in order.
pub fn action_kinds(report: &serde_json::Value) -> Vec<&str> {
    report["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["kind"].as_str()).collect())
        .unwrap_or_default()
}

/// The detail of a report's first action of `kind` (on `object`, when
/// given).
pub fn action_detail(report: &serde_json::Value, kind: &str, object: Option<&str>) -> String {
    report["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["kind"] == kind && object.is_none_or(|o| a["object"] == o))
        .unwrap_or_else(|| panic!("no {kind} action on {object:?}: {report}"))["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// An owned SQL value, for comparing the reader with SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Val {
    pub fn from_reader(
        v: &custodian::format::record::ValueRef,
        enc: custodian::format::header::TextEncoding,
    ) -> Val {
        match *v {
            custodian::format::record::ValueRef::Null => Val::Null,
            custodian::format::record::ValueRef::Integer(i) => Val::Int(i),
            custodian::format::record::ValueRef::Real(r) => Val::Real(r),
            // SQLite hands text to rusqlite as UTF-8.
            custodian::format::record::ValueRef::Text(t) => match enc {
                custodian::format::header::TextEncoding::Utf8 => Val::Text(t.to_vec()),
                _ => Val::Text(
                    custodian::format::record::decode_text(t, enc)
                        .into_owned()
                        .into_bytes(),
                ),
            },
            custodian::format::record::ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        }
    }

    pub fn from_sqlite(v: rusqlite::types::ValueRef) -> Val {
        use rusqlite::types::ValueRef as R;
        match v {
            R::Null => Val::Null,
            R::Integer(i) => Val::Int(i),
            R::Real(r) => Val::Real(r),
            R::Text(t) => Val::Text(t.to_vec()),
            R::Blob(b) => Val::Blob(b.to_vec()),
        }
    }

    /// Equal as SQLite would show them: a REAL column stores integral values
    /// as integers and returns them as REAL; an INTEGER PRIMARY KEY column
    /// is stored as NULL and returns the rowid.
    pub fn matches(&self, sqlite: &Val, rowid: i64) -> bool {
        match (self, sqlite) {
            (Val::Int(i), Val::Real(r)) => *i as f64 == *r,
            (Val::Null, Val::Int(i)) => *i == rowid,
            (Val::Real(a), Val::Real(b)) => a == b || (a.is_nan() && b.is_nan()),
            (a, b) => a == b,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Val::Text(t) => String::from_utf8_lossy(t).into_owned(),
            v => format!("{v:?}"),
        }
    }
}

/// Waits for `child` at most `limit`; past it the child is killed and
/// reaped, and None says it hung.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs headless Chromium on `page`: its DOM after rendering, and a
/// screenshot `png` of a 1280 × `height` window.
pub fn chromium(page: &Path, png: &Path, profile: &Path, height: u32) -> String {
    let out_file = png.with_extension("dom");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--dump-dom",
        ])
        .arg(format!("--window-size=1280,{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(out_file).unwrap_or_default()
}

/// The findings of a report as (code, object) pairs (no object: "").
pub fn finding_codes(j: &serde_json::Value) -> std::collections::BTreeSet<(String, String)> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["object"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// `custodian repair DB --snapshot SNAPS --json -`, run in DB's folder.
pub fn repair(db: &Path, snaps: &Path) -> Run {
    run(
        &[
            "repair",
            db.to_str().unwrap(),
            "--snapshot",
            snaps.to_str().unwrap(),
            "--json",
            "-",
        ],
        db.parent().unwrap(),
    )
}

/// [`repair`] with the folder `snaps` beside DB, made if it is not there,
/// and `snapshots` copied into it under the name `custodian snapshot` gives
/// a nightly copy of DB (none: a repair without a snapshot).
pub fn repair_json(db: &Path, snapshots: &[&Path]) -> Run {
    let snaps = db.parent().unwrap().join("snaps");
    std::fs::create_dir_all(&snaps).unwrap();
    let name = db.file_name().unwrap().to_string_lossy();
    for (i, s) in snapshots.iter().enumerate() {
        let at = format!("{name}.2024030{}T020000Z.snapshot.db", i + 1);
        std::fs::copy(s, snaps.join(at)).unwrap();
    }
    repair(db, &snaps)
}

/// Runs `sql` on `db` in WAL mode and closes the connection without a
/// checkpoint, as a POS connection whose close did not checkpoint: the
/// commits stay in the -wal, and the -shm stays beside it.
pub fn write_in_wal(db: &Path, sql: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    c.execute_batch(sql).unwrap();
}
