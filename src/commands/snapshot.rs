//! `custodian snapshot DB --out DIR [--keep N]`: a consistent snapshot of a
//! live database (SQLite's online backup API, while terminals keep writing),
//! verified by the full check after it is written, with a manifest beside it.
//!
//! Files, in DIR:
//!
//! * `<dbname>.<UTC YYYYMMDDTHHMMSSZ>[-k].snapshot.db`: the snapshot, a
//!   single-file database (rollback journal, whatever the source's mode),
//!   mode 0600, written under a hidden temporary name and linked to its final
//!   name without ever replacing a file (`-2`, `-3`, … when the name is taken);
//! * `<that name>.manifest.json`, mode 0600:
//!   `{schema_version: 1, tool, source, snapshot, created_at (UTC RFC 3339),
//!   verdict ("clean" | "corrupt" | "failed": could not be verified),
//!   row_counts {table: n or null when unreadable}, customer_table, customers,
//!   customers_sha256, bytes, sha256}`.
//!
//! `customers_sha256` is the SHA-256 of the customer table's rows in rowid
//! order (primary-key order for a WITHOUT ROWID table), each row the
//! concatenation of its values in column order, each value in custodian's
//! canonical encoding ([`crate::check::canon`]: a tag byte 0 NULL, 1 integer,
//! 2 real, 3 text, 4 blob; an integer (or a real with an integral value) as
//! 8 bytes little-endian; another real as its 8 IEEE-754 bytes little-endian;
//! text (UTF-8) and blobs as an 8-byte little-endian length and the bytes).
//!
//! `--keep N` prunes this database's verified snapshots (manifest verdict
//! "clean", and the file's size and SHA-256 still those of the manifest)
//! beyond the newest N, by the manifest's `created_at`. Unverified, corrupt
//! or altered snapshots are never counted and never removed. Pruning is the
//! only deletion custodian ever does, and every removed file is named.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::check::finding::{Code, Finding, Severity};
use crate::check::{self, canon};
use crate::cli::SnapshotArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::files::create_new;
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::report::{self, Report, Tool, Verdict, thousands};
use crate::schema::{self, quote_ident};
use crate::time::{compact_utc, parse_rfc3339, rfc3339};

/// Suffix of the manifest written beside a snapshot file.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
const SNAPSHOT_SUFFIX: &str = ".snapshot.db";
const TMP_SUFFIX: &str = ".snapshot-tmp";

/// The manifest written beside each snapshot.
#[derive(Debug, Serialize)]
struct Manifest {
    schema_version: u32,
    tool: Tool,
    source: String,
    snapshot: String,
    created_at: String,
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_error: Option<String>,
    row_counts: std::collections::BTreeMap<String, Option<u64>>,
    customer_table: String,
    customers: Option<u64>,
    customers_sha256: Option<String>,
    bytes: u64,
    sha256: String,
}

/// What `--keep`, `repair` and `preflight` read back from a manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestHead {
    pub created_at: String,
    pub verdict: String,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// The manifest path of a snapshot file.
pub fn manifest_path(snapshot: &Path) -> PathBuf {
    let mut s = snapshot.as_os_str().to_owned();
    s.push(MANIFEST_SUFFIX);
    PathBuf::from(s)
}

/// Reads the manifest beside `snapshot`, if there is a readable one.
pub fn read_manifest(snapshot: &Path) -> Option<ManifestHead> {
    let text = std::fs::read_to_string(manifest_path(snapshot)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The time a snapshot records for itself: its manifest's `created_at`.
pub fn recorded_time(snapshot: &Path) -> Option<SystemTime> {
    read_manifest(snapshot).and_then(|m| parse_rfc3339(&m.created_at))
}

/// Whether a file name is a hidden temporary file of an unfinished snapshot.
pub fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(TMP_SUFFIX))
}

pub fn run(args: &SnapshotArgs, quiet: bool) -> Result<ExitStatus> {
    if crate::fleet::is_fleet(&args.dbs, &args.fleet) {
        return crate::fleet::snapshot::run(args, quiet);
    }
    let db = &args.dbs[0];
    let settings = Settings::from_opts(&args.opts)?;
    // a refusal creates nothing, not even the --out folder
    crate::db::leaving_nothing(db, || refuse_before_writing(db, args.keep, &settings))?;
    let created = prepare_out(&args.out)?;
    let taken = match take(db, &args.out, args.keep, &settings) {
        Ok(t) => t,
        Err(e) => {
            // a refusal leaves nothing: not even the folder it made (one
            // SQLite's online backup could not even start, e.g. a
            // truncated file)
            remove_if_empty(&created);
            crate::emit_failed(&report::failed_report("snapshot", db, &e), &args.opts);
            write_metrics(args.metrics.as_deref(), &Metrics::failed_snapshot(db));
            return Err(e);
        }
    };
    if args.opts.json.is_some() || args.opts.report.is_some() || args.opts.html.is_some() {
        crate::emit(&taken.report, &args.opts, true)?;
    }
    if !quiet && args.opts.json.is_none() && args.opts.report.is_none() {
        print(&taken.lines);
    }
    if taken.status == ExitStatus::Problems {
        crate::messages::error(&format!(
            "{}: the database is damaged; the snapshot {} is marked corrupt",
            db.display(),
            taken.shown
        ));
    }
    write_metrics(args.metrics.as_deref(), &taken.metrics(db, &args.out));
    Ok(taken.status)
}

/// `--metrics` of a snapshot run: an error on stderr, never a change of the
/// command's exit code.
fn write_metrics(path: Option<&Path>, m: &Metrics) {
    if let Some(p) = path
        && let Err(e) = m.write(p)
    {
        crate::messages::error(&format!("{e:#}"));
    }
}

/// Creates the snapshot folder when it does not exist yet (mode 0700,
/// parents too), as other backup tools do; refuses a path that is not a
/// folder. Returns the folders it created, deepest first.
pub fn prepare_out(out: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::DirBuilderExt;
    let created: Vec<PathBuf> = out
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(Path::to_path_buf)
        .collect();
    if !out.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out)
            .with_context(|| format!("{}: cannot create the snapshot folder", out.display()))?;
    }
    if !out.is_dir() {
        bail!("{}: not a folder (the snapshots go there)", out.display());
    }
    Ok(created)
}

/// Removes the folders `prepare_out` created, deepest first, each only
/// while it is empty.
fn remove_if_empty(created: &[PathBuf]) {
    for d in created {
        if std::fs::remove_dir(d).is_err() {
            return;
        }
    }
}

/// One database's snapshot, as `run` and a fleet run take it.
pub struct Taken {
    /// The check of the snapshot, as the command's report.
    pub report: Report,
    pub status: ExitStatus,
    /// The short human lines.
    pub lines: Vec<String>,
    /// The snapshot file.
    pub shown: String,
}

impl Taken {
    /// The run's metrics: verdict, and the newest verified snapshot of the
    /// database in the folder (by its manifest).
    pub fn metrics(&self, db: &Path, out: &Path) -> Metrics {
        let now = SystemTime::now();
        let mut m = Metrics::new("snapshot");
        let name = db.display().to_string();
        m.run(&name, self.report.verdict.as_str(), self.status, now);
        if let Some(t) = db_name(db)
            .ok()
            .and_then(|n| newest_verified(out, &n).ok().flatten())
        {
            m.newest_snapshot(&name, t, now);
        }
        m
    }
}

impl Metrics {
    /// The metrics of a snapshot that could not be taken.
    fn failed_snapshot(db: &Path) -> Metrics {
        let mut m = Metrics::new("snapshot");
        m.run(
            &db.display().to_string(),
            "failed",
            ExitStatus::CouldNotRun,
            SystemTime::now(),
        );
        m
    }
}

fn db_name(db: &Path) -> Result<String> {
    db.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{}: not a file name", db.display()))
}

/// Refuses what is not a database file before anything is written, by
/// check's own rule (`check::access::file_header`): a file whose header is
/// damaged but whose pages are b-tree pages is a damaged database, not
/// "not a SQLite database" (the online backup then says why no copy could
/// be taken, and `check` what is damaged).
fn refuse_non_database(db: &Path) -> Result<()> {
    let meta = std::fs::metadata(db).with_context(|| format!("{}: cannot open", db.display()))?;
    if !meta.is_file() {
        bail!("{}: not a database file", db.display());
    }
    crate::check::access::file_header(db).map(drop)
}

/// A --table or --id-column that the database's readable schema does not
/// have (check's "no table" / "no column") is the user's mistake, not the database's: refused before anything
/// is written (exit 2), as check refuses it. A schema SQLite cannot read
/// does not stop the copy: that snapshot is kept as evidence.
fn refuse_unknown_names(db: &Path, settings: &Settings) -> Result<()> {
    let Ok(conn) = crate::db::open_read_only(db) else {
        return Ok(());
    };
    let Ok(objects) = crate::schema::read_schema(&conn) else {
        return Ok(());
    };
    match crate::schema::customer_table(&conn, &objects, &settings.table, &settings.id_column) {
        Ok(Some(Err(why))) => bail!("{}: {why}", db.display()),
        Ok(None) => bail!(
            "{}: {}",
            db.display(),
            crate::schema::no_such_table(&objects, &settings.table)
        ),
        _ => Ok(()),
    }
}

/// Takes, verifies and records one snapshot of `db` in `out`, then prunes
/// under `keep`.
pub fn take(db: &Path, out: &Path, keep: Option<usize>, settings: &Settings) -> Result<Taken> {
    crate::db::leaving_nothing(db, || take_of(db, out, keep, settings))
}

/// What refuses a snapshot of `db` before anything is written (exit 2):
/// `--keep 0`, a path that is no database, a --table or --id-column the
/// readable schema lacks.
fn refuse_before_writing(db: &Path, keep: Option<usize>, settings: &Settings) -> Result<()> {
    refuse_keep(keep)?;
    refuse_non_database(db)?;
    refuse_unknown_names(db, settings)
}

/// `--keep 0` would remove the newest good snapshot.
pub fn refuse_keep(keep: Option<usize>) -> Result<()> {
    if keep == Some(0) {
        bail!("--keep must be at least 1 (the newest good snapshot is never removed)");
    }
    Ok(())
}

fn take_of(db: &Path, out: &Path, keep: Option<usize>, settings: &Settings) -> Result<Taken> {
    refuse_before_writing(db, keep, settings)?;
    let db_name = db_name(db)?;
    let now = SystemTime::now();
    let stamp = compact_utc(now);
    let tmp = out.join(format!(
        ".{db_name}.{stamp}.{}{TMP_SUFFIX}",
        std::process::id()
    ));
    create_new(&tmp)?;
    if let Err(e) = online_backup(db, &tmp) {
        // our own empty or partial temporary file: nothing anyone relies on
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot sync", tmp.display()))?;
    let verified = verify_copy(&tmp, settings);
    let (final_path, manifest) = free_name(out, &db_name, &stamp)?;
    std::fs::hard_link(&tmp, &final_path)
        .with_context(|| format!("cannot link {} to {}", tmp.display(), final_path.display()))?;
    std::fs::remove_file(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    let m = write_manifest(
        db,
        &final_path,
        &manifest,
        rfc3339(now),
        &verified,
        settings,
    )?;
    crate::files::fsync_dir(out)?;
    let mut taken = outcome(db, &db_name, &final_path, &manifest, &m, verified);
    if let Some(keep) = keep {
        for removed in prune(out, &db_name, keep)? {
            let r = removed.display().to_string();
            taken.lines.push(format!(
                "removed {r} (older than the newest {keep} verified snapshot{})",
                if keep == 1 { "" } else { "s" }
            ));
            taken.report.findings.push(
                Finding::new(
                    Code::SnapshotPruned,
                    Severity::Info,
                    format!("removed {r}: older than the newest {keep} verified snapshots"),
                )
                .object(&r),
            );
        }
    }
    Ok(taken)
}

/// The full read-only check of the written copy: its verdict ("clean",
/// "corrupt", or "failed" when it could not be verified), why it failed,
/// and the check's report.
struct Verified {
    verdict: &'static str,
    error: Option<String>,
    report: Option<Report>,
}

fn verify_copy(tmp: &Path, settings: &Settings) -> Verified {
    match check::check(tmp, settings, Progress::hidden()) {
        Ok(o) => {
            let verdict = match o.report.verdict {
                Verdict::Clean => "clean",
                Verdict::Corrupt => "corrupt",
                _ => "failed",
            };
            let error = (verdict == "failed").then(|| {
                o.report
                    .findings
                    .iter()
                    .find(|f| f.severity == Severity::Error)
                    .map(|f| f.message.clone())
                    .unwrap_or_else(|| "the check could not run to the end".into())
            });
            Verified {
                verdict,
                error,
                report: Some(o.report),
            }
        }
        Err(e) => Verified {
            verdict: "failed",
            error: Some(format!("{e:#}")),
            report: None,
        },
    }
}

/// Writes the manifest beside the snapshot (a new file, mode 0600).
fn write_manifest(
    db: &Path,
    snapshot: &Path,
    manifest: &Path,
    created_at: String,
    verified: &Verified,
    settings: &Settings,
) -> Result<Manifest> {
    let facts = content_facts(snapshot, settings);
    let (bytes, sha256) = file_sha256(snapshot)?;
    let m = Manifest {
        schema_version: report::SCHEMA_VERSION,
        tool: Tool::this(),
        source: db.display().to_string(),
        snapshot: snapshot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        created_at,
        verdict: verified.verdict,
        verify_error: verified.error.clone(),
        row_counts: facts.row_counts,
        customer_table: settings.table.clone(),
        customers: facts.customers,
        customers_sha256: facts.customers_sha256,
        bytes,
        sha256,
    };
    // names whose bytes are not UTF-8 shown with U+FFFD (sql_bytes::shown)
    let mut text = crate::sql_bytes::shown(&serde_json::to_string_pretty(&m)?).into_owned();
    text.push('\n');
    let mut f = create_new(manifest)?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", manifest.display()))?;
    Ok(m)
}

/// The lines, exit status and report of a written snapshot.
fn outcome(
    db: &Path,
    db_name: &str,
    snapshot: &Path,
    manifest: &Path,
    m: &Manifest,
    verified: Verified,
) -> Taken {
    let shown = snapshot.display().to_string();
    let (line, status) = match verified.verdict {
        "clean" => (
            format!(
                "{db_name} → {shown} (clean, {} customers)",
                thousands(m.customers.unwrap_or(0))
            ),
            ExitStatus::Success,
        ),
        "corrupt" => {
            let affected = verified
                .report
                .as_ref()
                .map(|r| r.affected_customer_ids.len())
                .unwrap_or(0);
            (
                format!(
                    "{db_name} → {shown} (corrupt: the live database is damaged, {affected} \
                     customers would be rejected by the POS; kept as evidence, never counted as \
                     a good snapshot; run `custodian check {}`)",
                    db.display()
                ),
                ExitStatus::Problems,
            )
        }
        _ => (
            format!(
                "{db_name} → {shown} (unverified: {}; never counted as a good snapshot)",
                verified
                    .error
                    .as_deref()
                    .unwrap_or("the check could not run")
            ),
            ExitStatus::CouldNotRun,
        ),
    };
    let written = Finding::new(
        Code::SnapshotWritten,
        if status == ExitStatus::Success {
            Severity::Info
        } else {
            Severity::Error
        },
        format!(
            "snapshot {shown} written, verdict {}, manifest {}",
            verified.verdict,
            manifest.display()
        ),
    )
    .object(&shown);
    let failed = verified.verdict == "failed";
    let mut rep = verified.report.unwrap_or_else(|| {
        report::failed_report(
            "snapshot",
            db,
            &anyhow!("the snapshot could not be verified"),
        )
    });
    rep.command = "snapshot";
    rep.database = db.display().to_string();
    if failed {
        rep.verdict = Verdict::Failed;
    }
    rep.page_map = None;
    rep.findings.insert(0, written);
    Taken {
        report: rep,
        status,
        lines: vec![line],
        shown,
    }
}

/// Short human lines on stdout (a closed pipe is not an error).
fn print(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

/// Copies the database into `tmp` (an existing empty file) with SQLite's
/// online backup API in one step, inside one read transaction: a consistent
/// view while other connections keep writing. The copy is then switched to
/// a rollback journal so that it is a single self-contained file.
fn online_backup(db: &Path, tmp: &Path) -> Result<()> {
    let src = crate::db::open_read_only(db)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let mut dst = Connection::open_with_flags(tmp, flags)
        .with_context(|| format!("{}: cannot open", tmp.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)
            .with_context(|| format!("{}: cannot start the backup", db.display()))?;
        let deadline = Instant::now() + crate::db::BUSY_WAIT * 4;
        loop {
            use rusqlite::backup::StepResult;
            match backup.step(-1) {
                Ok(StepResult::Done) => break,
                Ok(StepResult::More) => {}
                Ok(_) => {
                    // Busy or Locked: another connection holds a lock; retry a while
                    if Instant::now() > deadline {
                        return Err(crate::db::busy_error(db));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if crate::db::is_busy(&e) => return Err(crate::db::busy_error(db)),
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!(
                            "{}: the online backup failed, no snapshot was written (run `custodian \
                             check {}`)",
                            db.display(),
                            db.display()
                        )
                    });
                }
            }
        }
    }
    drop(dst);
    drop(src);
    out_of_wal_mode(tmp)
}

/// The copied header keeps the source's journal mode: a WAL database's copy
/// says WAL (its file format version bytes, 18 and 19, are 2). The copy has
/// no -wal (the backup wrote it in rollback mode), so it is made a rollback
/// journal database by setting those bytes to 1, as `PRAGMA journal_mode =
/// DELETE` would. Written directly, not through SQLite, which parses the
/// schema first and so refuses the copy of a database with a damaged
/// schema (that copy is evidence all the same: it is kept, marked corrupt).
fn out_of_wal_mode(tmp: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tmp)
        .with_context(|| format!("{}: cannot open", tmp.display()))?;
    let mut versions = [0u8; 2];
    if f.read_exact_at(&mut versions, 18).is_err() {
        return Ok(()); // shorter than a header: the check says so
    }
    let rollback = versions.map(|v| if v == 2 { 1 } else { v });
    if rollback != versions {
        f.write_all_at(&rollback, 18)
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
    }
    Ok(())
}

/// What the manifest says about the snapshot's content.
struct ContentFacts {
    row_counts: std::collections::BTreeMap<String, Option<u64>>,
    customers: Option<u64>,
    customers_sha256: Option<String>,
}

fn content_facts(path: &Path, settings: &Settings) -> ContentFacts {
    let mut facts = ContentFacts {
        row_counts: Default::default(),
        customers: None,
        customers_sha256: None,
    };
    let Ok(conn) = crate::db::open_read_only(path) else {
        return facts;
    };
    let Ok(objects) = schema::read_schema_tolerant(&conn) else {
        return facts;
    };
    for o in objects
        .iter()
        .filter(|o| o.kind == "table" && !o.name.starts_with("sqlite_"))
    {
        let n = crate::sql_bytes::query_row(
            &conn,
            &format!("SELECT count(*) FROM {}", quote_ident(&o.name)),
            &[],
            |r| r.get::<i64>(0),
        )
        .ok()
        .and_then(|n| u64::try_from(n).ok());
        facts.row_counts.insert(o.name.clone(), n);
    }
    if let Ok(Some(Ok(t))) =
        schema::customer_table(&conn, &objects, &settings.table, &settings.id_column)
        && let Ok((n, h)) = table_sha256(&conn, &t.name, t.without_rowid)
    {
        facts.customers = Some(n);
        facts.customers_sha256 = Some(h);
    }
    facts
}

/// The content hash of a table (see the module documentation).
pub(crate) fn table_sha256(
    conn: &Connection,
    table: &str,
    without_rowid: bool,
) -> rusqlite::Result<(u64, String)> {
    let order = if without_rowid { "" } else { " ORDER BY rowid" };
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut buf = Vec::new();
    crate::sql_bytes::for_each(
        conn,
        &format!("SELECT * FROM {} NOT INDEXED{order}", quote_ident(table)),
        &[],
        |r| {
            buf.clear();
            for i in 0..r.len() {
                canon::push_sql(&mut buf, r.get_ref(i)?);
            }
            h.update(&buf);
            n += 1;
            Ok(())
        },
    )?;
    Ok((n, hex(&h.finalize())))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and SHA-256 of a file.
pub(crate) fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((total, hex(&h.finalize())))
}

/// The first free `<db>.<stamp>[-k].snapshot.db` (and its manifest) in `dir`.
fn free_name(dir: &Path, db_name: &str, stamp: &str) -> Result<(PathBuf, PathBuf)> {
    for k in 1..10_000u32 {
        let suffix = if k == 1 {
            String::new()
        } else {
            format!("-{k}")
        };
        let p = dir.join(format!("{db_name}.{stamp}{suffix}{SNAPSHOT_SUFFIX}"));
        let m = manifest_path(&p);
        if std::fs::symlink_metadata(&p).is_err() && std::fs::symlink_metadata(&m).is_err() {
            return Ok((p, m));
        }
    }
    bail!("{}: no free snapshot name for {stamp}", dir.display())
}

/// This database's snapshots in `dir` whose manifest says clean, newest
/// first by the manifest's `created_at` (regular files only, never a
/// symbolic link).
fn clean_by_manifest(
    dir: &Path,
    db_name: &str,
) -> Result<Vec<(SystemTime, PathBuf, ManifestHead)>> {
    let prefix = format!("{db_name}.");
    let mut good: Vec<(SystemTime, PathBuf, ManifestHead)> = Vec::new();
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stamp) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(SNAPSHOT_SUFFIX))
        else {
            continue;
        };
        if !is_stamp(stamp) {
            continue; // another database's snapshot, or not a snapshot
        }
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let p = e.path();
        let Some(m) = read_manifest(&p) else { continue };
        if m.verdict != "clean" {
            continue;
        }
        let Some(t) = parse_rfc3339(&m.created_at) else {
            continue;
        };
        good.push((t, p, m));
    }
    good.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    Ok(good)
}

/// When the newest snapshot of this database in `dir` that was verified
/// clean was taken (by its manifest), if there is one.
pub fn newest_verified(dir: &Path, db_name: &str) -> Result<Option<SystemTime>> {
    Ok(clean_by_manifest(dir, db_name)?.first().map(|g| g.0))
}

/// Removes this database's verified snapshots beyond the newest `keep`;
/// returns the removed files.
fn prune(dir: &Path, db_name: &str, keep: usize) -> Result<Vec<PathBuf>> {
    let good = clean_by_manifest(dir, db_name)?;
    // Walk from the newest: a snapshot counts as good only if its bytes are
    // still those its manifest recorded. Those beyond `keep` are removed.
    let mut kept = 0usize;
    let mut removed = Vec::new();
    for (_, p, m) in good {
        let intact = match file_sha256(&p) {
            Ok((bytes, sha)) => Some(bytes) == m.bytes && Some(sha) == m.sha256,
            Err(_) => false,
        };
        if !intact {
            continue;
        }
        if kept < keep {
            kept += 1;
            continue;
        }
        std::fs::remove_file(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        removed.push(p.clone());
        let mp = manifest_path(&p);
        std::fs::remove_file(&mp).with_context(|| format!("{}: cannot remove", mp.display()))?;
        removed.push(mp);
    }
    if !removed.is_empty() {
        crate::files::fsync_dir(dir)?;
    }
    Ok(removed)
}

/// `YYYYMMDDTHHMMSSZ` or `YYYYMMDDTHHMMSSZ-k`.
fn is_stamp(s: &str) -> bool {
    let (main, k) = match s.split_once('-') {
        Some((m, k)) => (m, Some(k)),
        None => (s, None),
    };
    let b = main.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && k.is_none_or(|k| !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(thousands(2020), "2,020");
        assert!(is_stamp("20261127T114731Z") && is_stamp("20261127T114731Z-2"));
        assert!(!is_stamp("old.20261127T114731Z") && !is_stamp("20261127T114731Z-"));
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
