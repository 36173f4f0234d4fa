//! `custodian preflight DB --snapshot PATH [--max-age HOURS]
//! [--baseline FILE | --compare FILE]`: go / no-go before a POS upgrade.
//! Read-only on the database. The conditions, each one line "ok: …" or
//! "no-go: …":
//!
//! 1. `schema`: the customer table and its ID column exist, and the status
//!    column `--config` names (a missing one is a clear error: exit 2);
//! 2. `database_clean`: the full check finds nothing wrong;
//! 3. `snapshot_recent`: a verified snapshot (clean, same customer columns)
//!    younger than `--max-age` hours (default 24) exists among `--snapshot`;
//!    its age comes from its manifest's `created_at`, else its mtime;
//! 4. `disk_space`: the free space in the database's folder is at least
//!    2 × (database + -wal) bytes: a repair's backup and its rebuilt copy;
//! 5. `wal_checkpointed`: the -wal holds no committed frames;
//! 6. with `--compare FILE`: `baseline_findable` (every customer of the
//!    baseline is found by ID through the ID index) and `baseline_unchanged`
//!    (no customer's values changed while its `updated_at` did not).
//!
//! `--baseline FILE` writes (new file, mode 0600) the per-customer digests,
//! JSON: `{schema_version: 1, kind: "custodian_baseline", tool, database,
//! created_at, table, id_column, updated_column (null when the table has no
//! updated_at), customers: [{id, sha256, updated_sha256}]}` sorted by ID
//! (an ID is a JSON string for a TEXT ID, a number for a numeric one);
//! `sha256` is the SHA-256 of the row's values in column order in the
//! canonical encoding of `check::canon` (the same as a snapshot manifest's
//! `customers_sha256` uses per row), `updated_sha256` that of the
//! `updated_at` value alone. Only IDs and digests: no personal data.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use rusqlite::types::Value;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::check::canon;
use crate::check::finding::{Code, Finding, Severity};
use crate::check::probe::Prober;
use crate::cli::PreflightArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::pager::Pager;
use crate::progress::Progress;
use crate::report::{self, Report, Tool, Verdict, thousands};
use crate::schema::{self, CustomerTable, quote_ident};

use super::snapshot::hex;
use crate::files::create_new;
use crate::metrics::Metrics;
use crate::time::rfc3339;

const DEFAULT_MAX_AGE_HOURS: f64 = 24.0;
const UPDATED_COLUMN: &str = "updated_at";

/// One condition's outcome.
struct Cond {
    name: &'static str,
    ok: bool,
    /// A failed condition a person must look at ("review:"), not damage.
    review: bool,
    text: String,
    ids: Vec<String>,
}

impl Cond {
    fn ok(name: &'static str, text: String) -> Cond {
        Cond {
            name,
            ok: true,
            review: false,
            text,
            ids: Vec::new(),
        }
    }
    fn fail(name: &'static str, text: String) -> Cond {
        Cond {
            name,
            ok: false,
            review: false,
            text,
            ids: Vec::new(),
        }
    }
}

pub fn run(args: &PreflightArgs, quiet: bool) -> Result<ExitStatus> {
    let evaluated = crate::db::leaving_nothing(&args.db, || evaluate(args, quiet));
    if let Some(path) = &args.metrics {
        let now = SystemTime::now();
        let db = args.db.display().to_string();
        let mut m = Metrics::new("preflight");
        match &evaluated {
            Ok(e) => {
                let (verdict, status) = e.verdict();
                m.run(&db, verdict.as_str(), status, now);
                if let Some(t) = e.newest_snapshot {
                    m.newest_snapshot(&db, t, now);
                }
            }
            Err(_) => m.run(&db, "failed", ExitStatus::CouldNotRun, now),
        }
        if let Err(e) = m.write(path) {
            crate::messages::error(&format!("{e:#}"));
        }
    }
    let evaluated = match evaluated {
        Ok(e) => e,
        Err(e) => {
            crate::emit_failed(
                &report::failed_report("preflight", &args.db, &e),
                &args.opts,
            );
            return Err(e);
        }
    };
    let (_, status) = evaluated.verdict();
    evaluated.emit(args, quiet)?;
    Ok(status)
}

/// The conditions, the check they rest on, and the newest verified
/// snapshot's time.
struct Evaluated {
    conds: Vec<Cond>,
    checked: Report,
    newest_snapshot: Option<SystemTime>,
}

impl Evaluated {
    fn verdict(&self) -> (Verdict, ExitStatus) {
        if self.conds.iter().all(|c| c.ok) {
            (Verdict::Go, ExitStatus::Success)
        } else {
            (Verdict::NoGo, ExitStatus::Problems)
        }
    }

    /// The reports asked for, else one `ok:` / `no-go:` line per condition.
    fn emit(&self, args: &PreflightArgs, quiet: bool) -> Result<()> {
        let db = &args.db;
        let (verdict, _) = self.verdict();
        if args.opts.json.is_some() || args.opts.report.is_some() || args.opts.html.is_some() {
            let mut findings: Vec<Finding> = self
                .conds
                .iter()
                .map(|c| {
                    let (code, sev) = if c.ok {
                        (Code::PreflightPassed, Severity::Info)
                    } else {
                        (Code::PreflightFailed, Severity::Error)
                    };
                    Finding::new(code, sev, c.text.clone())
                        .object(c.name)
                        .count(c.ids.len() as u64)
                        .customer_ids(c.ids.clone())
                })
                .collect();
            findings.extend(self.checked.findings.iter().cloned());
            let rep = Report {
                schema_version: report::SCHEMA_VERSION,
                tool: Tool::this(),
                command: "preflight",
                database: db.display().to_string(),
                verdict,
                findings,
                affected_customer_ids: self.checked.affected_customer_ids.clone(),
                coverage: self.checked.coverage.clone(),
                page_map: None,
                repair: None,
                diagnoses: None,
            };
            crate::emit(&rep, &args.opts, true)?;
        }
        if !quiet && args.opts.json.is_none() && args.opts.report.is_none() {
            report::print(&self.lines(db, args.opts.report.is_some() || args.opts.json.is_some()));
        }
        Ok(())
    }

    /// The headline, then one line per condition; a condition's IDs are
    /// listed up to [`IDS_ON_TERMINAL`], the rest counted.
    fn lines(&self, db: &Path, report_written: bool) -> String {
        let failed = self.conds.iter().filter(|c| !c.ok).count();
        let mut out = if failed == 0 {
            format!("{}: go\n", db.display())
        } else {
            format!(
                "{}: no-go ({failed} condition{} failed)\n",
                db.display(),
                if failed == 1 { "" } else { "s" }
            )
        };
        for c in &self.conds {
            let prefix = match (c.ok, c.review) {
                (true, _) => "ok",
                (false, true) => "review",
                (false, false) => "no-go",
            };
            let mut l = format!("{prefix}: {}", c.text);
            if !c.ids.is_empty() && c.name.starts_with("baseline_") {
                l.push_str(": ");
                l.push_str(&cut_ids(&c.ids, report_written));
            }
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

/// How many IDs a terminal line lists before "… and N more".
const IDS_ON_TERMINAL: usize = 20;

fn cut_ids(ids: &[String], report_written: bool) -> String {
    if ids.len() <= IDS_ON_TERMINAL {
        return ids.join(", ");
    }
    format!(
        "{}, … and {} more ({})",
        ids[..IDS_ON_TERMINAL].join(", "),
        thousands((ids.len() - IDS_ON_TERMINAL) as u64),
        if report_written {
            "all in the report"
        } else {
            "all with --json FILE or --report FILE"
        }
    )
}

/// Evaluates every condition. `Err`: preflight could not run (exit 2).
fn evaluate(args: &PreflightArgs, quiet: bool) -> Result<Evaluated> {
    let max_age = args.max_age.unwrap_or(DEFAULT_MAX_AGE_HOURS);
    if !max_age.is_finite() || max_age <= 0.0 {
        bail!("--max-age must be a positive number of hours");
    }
    let settings = Settings::from_opts(&args.opts)?;
    let db = &args.db;
    let meta = std::fs::metadata(db).with_context(|| format!("{}: cannot open", db.display()))?;
    if !meta.is_file() {
        bail!("{}: not a database file", db.display());
    }
    // a -wal, a journal, a file of no database: refused as check refuses it
    crate::check::access::file_header(db)?;
    let json_to_stdout = args.opts.json.as_deref() == Some("-");
    let conn = crate::db::open_read_only(db)?;
    let (table, schema) = schema_condition(&conn, db, &settings)?;
    let mut conds = vec![schema];
    let checked = crate::check::check(db, &settings, Progress::new(quiet, json_to_stdout))?.report;
    conds.push(clean_condition(db, &checked)?);
    let (snapshot, newest_snapshot) = snapshot_condition(args, &settings, max_age)?;
    conds.push(snapshot);
    conds.push(space_condition(db)?);
    conds.push(wal_condition(db)?);
    if let Some(path) = &args.baseline {
        let n = write_baseline(&conn, &table, db, path)?;
        conds.push(Cond::ok(
            "baseline_written",
            format!(
                "baseline of {} customers written to {}",
                thousands(n),
                path.display()
            ),
        ));
    }
    if let Some(path) = &args.compare {
        conds.extend(compare(&conn, &table, path, &settings)?);
    }
    conds.push(writer_condition(db));
    Ok(Evaluated {
        conds,
        checked,
        newest_snapshot,
    })
}

/// Condition 1: the customer table, its ID column and the configured
/// status column exist (else preflight cannot run).
fn schema_condition(
    conn: &Connection,
    db: &Path,
    settings: &Settings,
) -> Result<(CustomerTable, Cond)> {
    let objects = schema::read_schema_tolerant(conn)
        .with_context(|| format!("{}: cannot read the schema", db.display()))?;
    let table = match schema::customer_table(conn, &objects, &settings.table, &settings.id_column)?
    {
        Some(Ok(t)) => t,
        Some(Err(msg)) => bail!("{}: {msg}", db.display()),
        None => bail!(
            "{}: no table {:?} (use --table or the config's \"table\")",
            db.display(),
            settings.table
        ),
    };
    let mut text = format!(
        "schema: table {} with ID column {}",
        table.name, table.columns[table.id_column].name
    );
    if let Some(sc) = &settings.status_column {
        if !table
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(sc))
        {
            let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
            bail!(
                "{}: the config names status column {sc:?}, which table {} does not have; its columns: {}",
                db.display(),
                table.name,
                names.join(", ")
            );
        }
        text.push_str(&format!(", status column {sc}"));
    }
    Ok((table, Cond::ok("schema", text)))
}

/// Condition 2: the full check finds nothing wrong.
fn clean_condition(db: &Path, checked: &Report) -> Result<Cond> {
    if checked.verdict == Verdict::Failed {
        bail!(
            "{}: the check could not run: {}",
            db.display(),
            checked
                .findings
                .first()
                .map(|f| f.message.as_str())
                .unwrap_or("unknown reason")
        );
    }
    if checked.verdict == Verdict::Clean {
        return Ok(Cond::ok(
            "database_clean",
            format!(
                "the database is clean ({} customers, {} indexes compared)",
                thousands(checked.coverage.customers_read),
                checked.coverage.indexes_compared.len()
            ),
        ));
    }
    let errors = checked.count(Severity::Error);
    let mut c = Cond::fail(
        "database_clean",
        format!(
            "the database is damaged: {} would be rejected by the POS, {errors} error \
             finding{} (run `custodian check {}`)",
            customers(checked.affected_customer_ids.len()),
            if errors == 1 { "" } else { "s" },
            db.display()
        ),
    );
    c.ids = checked.affected_customer_ids.clone();
    Ok(c)
}

/// Condition 5: no committed -wal frames left uncheckpointed.
fn wal_condition(db: &Path) -> Result<Cond> {
    let pager = Pager::open(db).with_context(|| format!("{}: cannot read", db.display()))?;
    let frames = pager.wal().map(|w| w.max_frame).unwrap_or(0);
    let backfilled = pager.wal().is_some_and(|w| wal_backfilled(db, w));
    Ok(if frames == 0 {
        Cond::ok(
            "wal_checkpointed",
            "no uncheckpointed WAL: the database file holds every committed transaction".into(),
        )
    } else if backfilled {
        Cond::ok(
            "wal_checkpointed",
            format!(
                "no uncheckpointed WAL: the {frames} frames of the -wal are all checkpointed \
                 into the database file"
            ),
        )
    } else {
        Cond::fail(
            "wal_checkpointed",
            format!(
                "the -wal holds {frames} committed frame{} not checkpointed into the database file \
                 (checkpoint it, e.g. stop the POS so that its last connection closes, before the \
                 upgrade)",
                if frames == 1 { "" } else { "s" }
            ),
        )
    })
}

/// Last: no other process holds a write transaction open: an upgrade would
/// wait for it, fail with "database is locked", or leave half its steps
/// done. Read from the locks SQLite itself takes (only tested, never
/// taken): the RESERVED byte of the database file (rollback journal) and
/// the write lock of the -shm (WAL).
fn writer_condition(db: &Path) -> Cond {
    match crate::db::open_writer(db) {
        Some(how) => Cond::fail(
            "no_open_write",
            format!(
                "another process holds a write transaction open on the database ({how}); \
                 let it finish (e.g. close the POS) before the upgrade"
            ),
        ),
        None => Cond::ok(
            "no_open_write",
            "no other process holds a write transaction open".into(),
        ),
    }
}

fn snapshot_condition(
    args: &PreflightArgs,
    settings: &Settings,
    max_age: f64,
) -> Result<(Cond, Option<SystemTime>)> {
    use crate::repair::snapshot::{candidates, columns_of, shares_columns, verify_with};
    let live_columns = columns_of(&args.db, &settings.table).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cands = candidates(&args.snapshot);
    // a snapshot taken before an upgrade that added or dropped a column
    // still serves for the shared columns
    let (good, statuses) = verify_with(&cands, settings, &live_columns, shares_columns);
    let limit = fmt_hours(max_age);
    let Some(newest) = good.first() else {
        let why = if statuses.is_empty() {
            "no snapshot file found".to_string()
        } else {
            statuses
                .iter()
                .map(|s| format!("{}: {}", s.path, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Ok((
            Cond::fail(
                "snapshot_recent",
                format!("no verified snapshot younger than {limit} h: {why}"),
            ),
            None,
        ));
    };
    let age_h = SystemTime::now()
        .duration_since(newest.modified)
        .map(|d| d.as_secs_f64() / 3600.0)
        .unwrap_or(0.0);
    let shown = newest.path.display();
    let cond = if age_h <= max_age {
        Cond::ok(
            "snapshot_recent",
            format!(
                "verified snapshot {shown}, {} h old (limit {limit} h)",
                fmt_hours(age_h)
            ),
        )
    } else {
        Cond::fail(
            "snapshot_recent",
            format!(
                "no verified snapshot younger than {limit} h: the newest, {shown}, is {} h old",
                fmt_hours(age_h)
            ),
        )
    };
    Ok((cond, Some(newest.modified)))
}

/// "1 customer", "2,020 customers".
fn customers(n: usize) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} customer{s}", thousands(n as u64))
}

fn fmt_hours(h: f64) -> String {
    let s = format!("{h:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn space_condition(db: &Path) -> Result<Cond> {
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    let mut wal_path = db.as_os_str().to_owned();
    wal_path.push("-wal");
    let wal = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
    let need = (size + wal).saturating_mul(2);
    let folder = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let free = free_bytes(folder)?;
    let text = format!(
        "free space in {}: {} bytes; a repair needs {} bytes (2 × {} bytes: a backup and a rebuilt copy)",
        folder.display(),
        thousands(free),
        thousands(need),
        thousands(size + wal)
    );
    Ok(if free >= need {
        Cond::ok("disk_space", text)
    } else {
        Cond::fail("disk_space", format!("not enough {text}"))
    })
}

/// Whether SQLite's wal-index (the -shm file) says that every committed
/// frame of this -wal has been copied into the database file (a checkpoint
/// ran while a connection stayed open, so the -wal was not reset yet). The
/// -shm is only read, and trusted only when its two header copies agree and
/// it describes this very -wal (same last frame and salts).
fn wal_backfilled(db: &Path, wal: &crate::format::wal::WalIndex) -> bool {
    let mut shm_path = db.as_os_str().to_owned();
    shm_path.push("-shm");
    let mut head = [0u8; 104];
    let read = std::fs::File::open(&shm_path).and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut head)
    });
    if read.is_err() || head[..48] != head[48..96] {
        return false;
    }
    let u32_at = |o: usize| u32::from_ne_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let mx_frame = u32_at(16);
    let salts_match = head[32..36] == wal.header.salt1.to_be_bytes()
        && head[36..40] == wal.header.salt2.to_be_bytes();
    let n_backfill = u32_at(96);
    salts_match && mx_frame == wal.max_frame && n_backfill >= mx_frame
}

/// Bytes available to an unprivileged user in the file system of `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{}: invalid path", dir.display()))?;
    // SAFETY: an all-zero statvfs is a valid value of a plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("{}: cannot read the free space", dir.display()));
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    schema_version: u32,
    kind: String,
    database: String,
    created_at: String,
    table: String,
    id_column: String,
    updated_column: Option<String>,
    /// The customer table's columns, in order (absent in baselines of
    /// custodian before issue 11: then taken to be the live table's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    columns: Option<Vec<String>>,
    customers: Vec<BaselineRow>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BaselineRow {
    id: serde_json::Value,
    sha256: String,
    updated_sha256: Option<String>,
    /// xxh3-64 of each column's value (canonical encoding), 16 hex digits
    /// each, in `columns` order: compares the shared columns when the
    /// upgrade dropped some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    column_digests: Option<String>,
}

/// One current row: (ID, digest of the row, digest of updated_at, digest of
/// each column).
type RowDigest = (Value, String, Option<String>, String);

/// The digests of every row over `columns` (the table's own, in order,
/// when None).
fn digest_rows(
    conn: &Connection,
    table: &CustomerTable,
    columns: Option<&[String]>,
) -> Result<(Option<String>, Vec<RowDigest>)> {
    let updated = table
        .columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(UPDATED_COLUMN));
    let list = match columns {
        Some(cols) => cols
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", "),
        None => "*".to_string(),
    };
    let id_name = &table.columns[table.id_column].name;
    let upd_name = updated.map(|u| table.columns[u].name.clone());
    let sql = format!(
        "SELECT {}, {}, {list} FROM {} NOT INDEXED",
        quote_ident(id_name),
        upd_name
            .as_deref()
            .map(quote_ident)
            .unwrap_or_else(|| "NULL".into()),
        quote_ident(&table.name)
    );
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut one = Vec::new();
    // through sql_bytes: a table or column name whose bytes are not UTF-8
    // reaches SQLite as those bytes
    crate::sql_bytes::for_each(conn, &sql, &[], |r| {
        let n = r.len().saturating_sub(2);
        buf.clear();
        let mut per_column = String::with_capacity(16 * n);
        for i in 2..n + 2 {
            let start = buf.len();
            canon::push_sql(&mut buf, r.get_ref(i)?);
            let h = xxhash_rust::xxh3::xxh3_64(&buf[start..]);
            per_column.push_str(&format!("{h:016x}"));
        }
        let row = hex(&Sha256::digest(&buf));
        let id: Value = r.get(0)?;
        let upd = match upd_name {
            Some(_) => {
                one.clear();
                canon::push_sql(&mut one, r.get_ref(1)?);
                Some(hex(&Sha256::digest(&one)))
            }
            None => None,
        };
        out.push((id, row, upd, per_column));
        Ok(())
    })
    .context("cannot read the customer table")?;
    Ok((upd_name, out))
}

fn id_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Real(f) => serde_json::Value::from(*f),
        other => serde_json::Value::String(report::id_text(other).unwrap_or_default()),
    }
}

fn id_value(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}

fn id_key(v: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    canon::push_value(&mut b, v);
    b
}

fn write_baseline(conn: &Connection, table: &CustomerTable, db: &Path, path: &Path) -> Result<u64> {
    let (updated_column, mut rows) = digest_rows(conn, table, None)?;
    rows.sort_by(|a, b| {
        id_json(&a.0)
            .to_string()
            .cmp(&id_json(&b.0).to_string())
            .then(a.1.cmp(&b.1))
    });
    let n = rows.len() as u64;
    let b = Baseline {
        schema_version: report::SCHEMA_VERSION,
        kind: "custodian_baseline".into(),
        database: db.display().to_string(),
        created_at: rfc3339(SystemTime::now()),
        table: table.name.clone(),
        id_column: table.columns[table.id_column].name.clone(),
        updated_column,
        columns: Some(table.columns.iter().map(|c| c.name.clone()).collect()),
        customers: rows
            .into_iter()
            .map(|(id, sha256, updated_sha256, per_column)| BaselineRow {
                id: id_json(&id),
                sha256,
                updated_sha256,
                column_digests: Some(per_column),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&b)?;
    text.push('\n');
    let mut f = create_new(path)
        .with_context(|| "the baseline file must be new: choose another name".to_string())?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(n)
}

/// How a baseline's rows are compared with the live ones.
enum Columns {
    /// The same columns: the digest of the whole row.
    Same,
    /// The upgrade added columns: the digest of the baseline's columns.
    Added,
    /// The upgrade dropped columns: the per-column digests of the shared
    /// ones (their positions in the baseline).
    Dropped(Vec<usize>),
}

/// The baseline's columns against the live table's: added, dropped, and
/// how rows are compared.
fn column_change(base: &Baseline, table: &CustomerTable) -> (Vec<String>, Vec<String>, Columns) {
    let live: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    let base_cols = base.columns.clone().unwrap_or_else(|| live.clone());
    let has = |list: &[String], c: &str| list.iter().any(|x| x.eq_ignore_ascii_case(c));
    let added: Vec<String> = live
        .iter()
        .filter(|c| !has(&base_cols, c))
        .cloned()
        .collect();
    let dropped: Vec<String> = base_cols
        .iter()
        .filter(|c| !has(&live, c))
        .cloned()
        .collect();
    let mode = if !dropped.is_empty() {
        Columns::Dropped(
            (0..base_cols.len())
                .filter(|&i| has(&live, &base_cols[i]))
                .collect(),
        )
    } else if !added.is_empty() {
        Columns::Added
    } else {
        Columns::Same
    };
    (added, dropped, mode)
}

/// The schema condition of `--compare`: the baseline's columns, or a change
/// the config's `upgrade` declares (go), or one it does not (review).
fn schema_change_condition(
    base: &Baseline,
    added: &[String],
    dropped: &[String],
    settings: &Settings,
) -> Cond {
    if added.is_empty() && dropped.is_empty() {
        let n = base.columns.as_ref().map(Vec::len).unwrap_or(0);
        return Cond::ok(
            "baseline_schema",
            if n > 0 {
                format!("the customer table has the baseline's {n} columns")
            } else {
                "the customer table's columns were not recorded in the baseline".to_string()
            },
        );
    }
    let mut what = Vec::new();
    if !added.is_empty() {
        what.push(format!("added {}", added.join(", ")));
    }
    if !dropped.is_empty() {
        what.push(format!("dropped {}", dropped.join(", ")));
    }
    let what = what.join("; ");
    let declared = |list: &[String], of: &[String]| {
        of.iter()
            .all(|c| list.iter().any(|d| d.eq_ignore_ascii_case(c)))
    };
    let up = &settings.upgrade;
    if declared(&up.added_columns, added) && declared(&up.dropped_columns, dropped) {
        return Cond::ok(
            "baseline_schema",
            format!(
                "the customer table's columns changed as the config's upgrade declares ({what}); \
                 the shared columns were compared"
            ),
        );
    }
    let mut c = Cond::fail(
        "baseline_schema",
        format!(
            "the customer table's columns changed since the baseline ({what}), which the config \
             does not declare: check that the upgrade meant it, then declare it in --config \
             (\"upgrade\": {{\"added_columns\": [...], \"dropped_columns\": [...]}}) to go; \
             the shared columns were compared"
        ),
    );
    c.review = true;
    c
}

fn compare(
    conn: &Connection,
    table: &CustomerTable,
    path: &Path,
    settings: &Settings,
) -> Result<Vec<Cond>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the baseline", path.display()))?;
    let base: Baseline = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a custodian baseline", path.display()))?;
    if base.kind != "custodian_baseline" {
        bail!("{}: not a custodian baseline", path.display());
    }
    let id_name = &table.columns[table.id_column].name;
    if !base.table.eq_ignore_ascii_case(&table.name)
        || !base.id_column.eq_ignore_ascii_case(id_name)
    {
        bail!(
            "{}: the baseline is of {}.{}, not {}.{}",
            path.display(),
            base.table,
            base.id_column,
            table.name,
            id_name
        );
    }
    let (added, dropped, mode) = column_change(&base, table);
    let mut out = vec![schema_change_condition(&base, &added, &dropped, settings)];
    let shared: Option<Vec<String>> = match (&mode, &base.columns) {
        (Columns::Same, _) | (_, None) => None,
        (Columns::Added, Some(cols)) => Some(cols.clone()),
        (Columns::Dropped(pos), Some(cols)) => Some(pos.iter().map(|&i| cols[i].clone()).collect()),
    };
    let (_, rows) = digest_rows(conn, table, shared.as_deref())?;
    // what is compared of each row: the row's digest, or the shared
    // columns' digests when the upgrade dropped columns
    let key_now = |d: String, per_column: String| match mode {
        Columns::Dropped(_) => per_column,
        _ => d,
    };
    let key_base = |b: &BaselineRow| -> Option<String> {
        match &mode {
            Columns::Dropped(pos) => b.column_digests.as_ref().map(|all| {
                pos.iter()
                    .map(|&i| all.get(16 * i..16 * i + 16).unwrap_or(""))
                    .collect()
            }),
            _ => Some(b.sha256.clone()),
        }
    };
    if matches!(mode, Columns::Dropped(_))
        && base.customers.iter().any(|b| b.column_digests.is_none())
    {
        bail!(
            "{}: the baseline has no per-column digests (written by an older custodian), so \
             the columns shared with a table that dropped some cannot be compared",
            path.display()
        );
    }
    let mut now: BTreeMap<Vec<u8>, Vec<(String, Option<String>)>> = BTreeMap::new();
    for (id, d, u, per_column) in rows {
        now.entry(id_key(&id))
            .or_default()
            .push((key_now(d, per_column), u));
    }
    let prober = Prober::new(conn, table);
    let mut index_names = std::collections::BTreeSet::new();
    let mut unfindable = std::collections::BTreeSet::new();
    let mut changed = std::collections::BTreeSet::new();
    let mut updated = 0u64;
    for b in &base.customers {
        let id = id_value(&b.id);
        let shown = report::id_text(&id).unwrap_or_default();
        let answers = prober.probe_id(&id);
        let found = if answers.is_empty() {
            // no index's key starts with the ID (e.g. an INTEGER PRIMARY
            // KEY): the lookup SQLite plans
            crate::sql_bytes::query_row(
                conn,
                &format!(
                    "SELECT count(*) FROM {} WHERE {} = ?1",
                    quote_ident(&table.name),
                    quote_ident(id_name)
                ),
                &[&id],
                |r| r.get::<i64>(0),
            )
            .map(|n| n > 0)
            .unwrap_or(false)
        } else {
            index_names.extend(answers.keys().cloned());
            !answers.values().any(|a| a.is_wrong())
        };
        let current = now.get(&id_key(&id));
        if !found || current.is_none() {
            unfindable.insert(shown);
            continue;
        }
        let current = current.map(Vec::as_slice).unwrap_or_default();
        let was = key_base(b).unwrap_or_default();
        if current.iter().any(|(d, _)| *d == was) {
            continue;
        }
        match &b.updated_sha256 {
            Some(u) if current.iter().any(|(_, cu)| cu.as_ref() == Some(u)) => {
                changed.insert(shown);
            }
            _ => updated += 1,
        }
    }
    let through = if index_names.is_empty() {
        "SQLite's own lookup".to_string()
    } else {
        index_names.into_iter().collect::<Vec<_>>().join(", ")
    };
    let total = base.customers.len() as u64;
    if unfindable.is_empty() {
        out.push(Cond::ok(
            "baseline_findable",
            format!(
                "all {} customers of the baseline are found by ID through {through}",
                thousands(total)
            ),
        ));
    } else {
        let mut c = Cond::fail(
            "baseline_findable",
            format!(
                "{} of the baseline {} no longer found by ID through {through}",
                customers(unfindable.len()),
                if unfindable.len() == 1 { "is" } else { "are" }
            ),
        );
        c.ids = unfindable.into_iter().collect();
        out.push(c);
    }
    let upd_name = base.updated_column.as_deref().unwrap_or(UPDATED_COLUMN);
    if base.updated_column.is_none() {
        out.push(Cond::ok(
            "baseline_unchanged",
            format!(
                "{updated} customers changed since the baseline (no {UPDATED_COLUMN} column to tell an update from damage)"
            ),
        ));
    } else if changed.is_empty() {
        out.push(Cond::ok(
            "baseline_unchanged",
            format!(
                "no customer changed without a new {upd_name} ({updated} updated since the baseline)"
            ),
        ));
    } else {
        let mut c = Cond::fail(
            "baseline_unchanged",
            format!(
                "{} changed while {upd_name} did not",
                customers(changed.len())
            ),
        );
        c.ids = changed.into_iter().collect();
        out.push(c);
    }
    Ok(out)
}
