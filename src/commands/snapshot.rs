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
use crate::progress::Progress;
use crate::report::{self, Report, Tool, Verdict};
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
    if args.keep == Some(0) {
        bail!("--keep must be at least 1 (the newest good snapshot is never removed)");
    }
    let meta = std::fs::metadata(&args.db)
        .with_context(|| format!("{}: cannot open", args.db.display()))?;
    if !meta.is_file() {
        bail!("{}: not a database file", args.db.display());
    }
    if meta.len() == 0 {
        bail!(
            "{}: empty file (0 bytes): not a database",
            args.db.display()
        );
    }
    let mut magic = [0u8; 16];
    File::open(&args.db)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("{}: cannot read the header", args.db.display()))?;
    if &magic != crate::format::header::MAGIC {
        bail!(
            "{}: not a SQLite database (no \"SQLite format 3\" header)",
            args.db.display()
        );
    }
    if !args.out.is_dir() {
        bail!(
            "{}: not a folder (create it first: the snapshot goes there)",
            args.out.display()
        );
    }
    let settings = Settings::from_opts(&args.opts)?;
    let db_name = args
        .db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{}: not a file name", args.db.display()))?;

    let now = SystemTime::now();
    let stamp = compact_utc(now);
    let created_at = rfc3339(now);
    let tmp = args.out.join(format!(
        ".{db_name}.{stamp}.{}{TMP_SUFFIX}",
        std::process::id()
    ));
    create_new(&tmp)?;
    if let Err(e) = online_backup(&args.db, &tmp) {
        // our own empty or partial temporary file: nothing anyone relies on
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot sync", tmp.display()))?;

    // Verify the written file with the full read-only check.
    let checked = check::check(&tmp, &settings, Progress::hidden());
    let (verdict, verify_error, check_report) = match checked {
        Ok(o) => {
            let v = match o.report.verdict {
                Verdict::Clean => "clean",
                Verdict::Corrupt => "corrupt",
                _ => "failed",
            };
            let err = (v == "failed").then(|| {
                o.report
                    .findings
                    .iter()
                    .find(|f| f.severity == Severity::Error)
                    .map(|f| f.message.clone())
                    .unwrap_or_else(|| "the check could not run to the end".into())
            });
            (v, err, Some(o.report))
        }
        Err(e) => ("failed", Some(format!("{e:#}")), None),
    };
    let facts = content_facts(&tmp, &settings);
    let (bytes, sha256) = file_sha256(&tmp)?;

    let (final_path, manifest) = free_name(&args.out, &db_name, &stamp)?;
    std::fs::hard_link(&tmp, &final_path)
        .with_context(|| format!("cannot link {} to {}", tmp.display(), final_path.display()))?;
    std::fs::remove_file(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    let m = Manifest {
        schema_version: report::SCHEMA_VERSION,
        tool: Tool::this(),
        source: args.db.display().to_string(),
        snapshot: final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        created_at,
        verdict,
        verify_error: verify_error.clone(),
        row_counts: facts.row_counts,
        customer_table: settings.table.clone(),
        customers: facts.customers,
        customers_sha256: facts.customers_sha256,
        bytes,
        sha256,
    };
    let mut text = serde_json::to_string_pretty(&m)?;
    text.push('\n');
    let mut f = create_new(&manifest)?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", manifest.display()))?;
    drop(f);
    crate::files::fsync_dir(&args.out)?;

    let mut lines = Vec::new();
    let mut findings = Vec::new();
    let shown = final_path.display().to_string();
    let status = match verdict {
        "clean" => {
            lines.push(format!(
                "{db_name} → {shown} (clean, {} customers)",
                thousands(m.customers.unwrap_or(0))
            ));
            ExitStatus::Success
        }
        "corrupt" => {
            let affected = check_report
                .as_ref()
                .map(|r| r.affected_customer_ids.len())
                .unwrap_or(0);
            lines.push(format!(
                "{db_name} → {shown} (corrupt: the live database is damaged, {affected} customers \
                 would be rejected by the POS; kept as evidence, never counted as a good snapshot; \
                 run `custodian check {}`)",
                args.db.display()
            ));
            ExitStatus::Problems
        }
        _ => {
            lines.push(format!(
                "{db_name} → {shown} (unverified: {}; never counted as a good snapshot)",
                verify_error.as_deref().unwrap_or("the check could not run")
            ));
            ExitStatus::CouldNotRun
        }
    };
    findings.push(
        Finding::new(
            Code::SnapshotWritten,
            if status == ExitStatus::Success {
                Severity::Info
            } else {
                Severity::Error
            },
            format!(
                "snapshot {shown} written, verdict {verdict}, manifest {}",
                manifest.display()
            ),
        )
        .object(&shown),
    );

    if let Some(keep) = args.keep {
        for removed in prune(&args.out, &db_name, keep)? {
            let r = removed.display().to_string();
            lines.push(format!(
                "removed {r} (older than the newest {keep} verified snapshot{})",
                if keep == 1 { "" } else { "s" }
            ));
            findings.push(
                Finding::new(
                    Code::SnapshotPruned,
                    Severity::Info,
                    format!("removed {r}: older than the newest {keep} verified snapshots"),
                )
                .object(&r),
            );
        }
    }

    if args.opts.json.is_some() || args.opts.report.is_some() || args.opts.html.is_some() {
        let mut rep = check_report.unwrap_or_else(|| Report {
            schema_version: report::SCHEMA_VERSION,
            tool: Tool::this(),
            command: "snapshot",
            database: String::new(),
            verdict: Verdict::Failed,
            findings: Vec::new(),
            affected_customer_ids: Vec::new(),
            coverage: report::Coverage::default(),
            page_map: None,
            repair: None,
            diagnoses: None,
        });
        rep.command = "snapshot";
        rep.database = args.db.display().to_string();
        if verdict == "failed" {
            rep.verdict = Verdict::Failed;
        }
        rep.page_map = None;
        findings.append(&mut rep.findings);
        rep.findings = findings;
        crate::emit(&rep, &args.opts, true)?;
    }
    if !quiet && args.opts.json.is_none() && args.opts.report.is_none() {
        print(&lines);
    }
    if status == ExitStatus::Problems {
        crate::messages::error(&format!(
            "{}: the database is damaged; the snapshot {shown} is marked corrupt",
            args.db.display()
        ));
    }
    Ok(status)
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
    // The copied header keeps the source's journal mode; reopen so that a
    // WAL header is seen, and make the snapshot one file.
    let dst = Connection::open_with_flags(tmp, flags)
        .with_context(|| format!("{}: cannot open", tmp.display()))?;
    let mode: String = dst
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .with_context(|| format!("{}: cannot set the journal mode", tmp.display()))?;
    if !mode.eq_ignore_ascii_case("delete") {
        bail!(
            "{}: the snapshot stays in journal mode {mode}",
            tmp.display()
        );
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
        let n = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", quote_ident(&o.name)),
                [],
                |r| r.get::<_, i64>(0),
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
    let mut stmt = conn.prepare(&format!(
        "SELECT * FROM {} NOT INDEXED{order}",
        quote_ident(table)
    ))?;
    let ncols = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut buf = Vec::new();
    while let Some(r) = rows.next()? {
        buf.clear();
        for i in 0..ncols {
            canon::push_sql(&mut buf, r.get_ref(i)?);
        }
        h.update(&buf);
        n += 1;
    }
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

/// Removes this database's verified snapshots beyond the newest `keep`;
/// returns the removed files.
fn prune(dir: &Path, db_name: &str, keep: usize) -> Result<Vec<PathBuf>> {
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
        // only regular files, never a symbolic link
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

/// 2020 → "2,020".
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
