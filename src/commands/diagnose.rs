//! `custodian diagnose DB ID…`: "why does the POS reject this customer?",
//! answered from the data, one line per ID. The checklist of the field's
//! troubleshooting guides: the ID's format (and the nearest real ID when it
//! looks like a typo), whether the row exists, whether each index finds it
//! and finds the right row, the customer's status, duplicates, and whether a
//! snapshot has a customer the live database lost.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use rusqlite::types::Value;
use serde::Serialize;

use crate::check::canon;
use crate::check::compare;
use crate::check::probe::{Answer, Prober};
use crate::cli::DiagnoseArgs;
use crate::config::Settings;
use crate::exit::ExitStatus;
use crate::format::btree::{DamageKind, PageSource};
use crate::format::record::ValueRef;
use crate::pager::Pager;
use crate::report::{self, Report, Verdict};
use crate::schema::{self, CustomerTable, IndexPart};

/// The answer for one ID.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub customer_id: String,
    /// Whether the POS's lookup by this ID gives the customer's row.
    pub served: bool,
    /// `served`, `disabled`, `frozen`, `closed`, `index_entry_lost`,
    /// `index_leads_elsewhere`, `row_lost`, `lookup_error`, `duplicate`, `not_found`,
    /// `vanished` (not here, but in a snapshot), `id_format`,
    /// `database_refused` (SQLite refuses the whole file: nobody is served).
    pub cause: &'static str,
    pub explanation: String,
    pub rowids: Vec<i64>,
    /// Each index's answer for this customer: right, missing, wrong_row, error.
    pub indexes: BTreeMap<String, String>,
    pub status: Option<String>,
    pub id_rule_violation: Option<String>,
    /// Real IDs this one is probably a typo of.
    pub did_you_mean: Vec<String>,
    /// The snapshot that still has this customer, when the live table does not.
    pub in_snapshot: Option<String>,
}

fn answer_name(a: &Answer) -> String {
    match a {
        Answer::Right => "right".into(),
        Answer::Missing => "missing".into(),
        Answer::WrongRow => "wrong_row".into(),
        Answer::Error(e) => format!("error: {e}"),
        Answer::NotProbed(e) => format!("not probed: {e}"),
    }
}

/// "the primary-key index (name)", "the UNIQUE index on card_number (name)"
fn describe_index(table: &CustomerTable, name: &str) -> String {
    let Some(i) = table.indexes.iter().find(|i| i.name == name) else {
        return name.to_string();
    };
    let cols: Vec<String> = i
        .key_fields()
        .map(|f| match &f.part {
            IndexPart::Column(c) => table.columns[*c].name.clone(),
            IndexPart::Rowid => "rowid".into(),
            IndexPart::Expr(e) => e.clone(),
        })
        .collect();
    match i.origin.as_str() {
        "pk" => format!("the primary-key index ({name})"),
        "u" => format!("the UNIQUE index on {} ({name})", cols.join(", ")),
        _ => format!("the index on {} ({name})", cols.join(", ")),
    }
}

/// The row an index leads to for `id`, and the ID that row holds.
fn leads_to(
    conn: &rusqlite::Connection,
    table: &CustomerTable,
    index: &str,
    id: &Value,
) -> Option<(i64, Option<String>)> {
    let idc = schema::quote_ident(&table.columns[table.id_column].name);
    let tq = schema::quote_ident(&table.name);
    let r: i64 = crate::sql_bytes::query_row(
        conn,
        &format!(
            "SELECT rowid FROM {tq} INDEXED BY {} WHERE {idc} = ?1",
            schema::quote_ident(index)
        ),
        &[id],
        |r| r.get(0),
    )
    .ok()?;
    let other = crate::sql_bytes::query_row(
        conn,
        &format!("SELECT {idc} FROM {tq} NOT INDEXED WHERE rowid = ?1"),
        &[&r],
        |row| row.get::<Value>(0),
    )
    .ok()
    .and_then(|v| report::id_text(&v));
    Some((r, other))
}

/// The rowid of customer `id` in snapshot `path`, if it has one.
fn in_snapshot_row(path: &std::path::Path, table: &CustomerTable, id: &Value) -> Option<i64> {
    let c = crate::db::open_read_only(path).ok()?;
    crate::sql_bytes::query_row(
        &c,
        &format!(
            "SELECT rowid FROM {} NOT INDEXED WHERE {} = ?1",
            schema::quote_ident(&table.name),
            schema::quote_ident(&table.columns[table.id_column].name)
        ),
        &[id],
        |r| r.get(0),
    )
    .ok()
}

/// The rowid of customer `id` in snapshot `path`, by the configured table
/// and ID column names (for a live file whose own schema is unreadable).
fn in_snapshot_by_name(path: &std::path::Path, settings: &Settings, id: &Value) -> Option<i64> {
    let c = crate::db::open_read_only(path).ok()?;
    c.query_row(
        &format!(
            "SELECT rowid FROM {} NOT INDEXED WHERE {} = ?1",
            schema::quote_ident(&settings.table),
            schema::quote_ident(&settings.id_column)
        ),
        [id],
        |r| r.get(0),
    )
    .ok()
}

/// How an asked-for ID is a typo of a real one, best first: equal but for
/// whitespace or letter case, one character different, two neighbouring
/// characters swapped, one character missing, one character too many.
/// `None` when it is none of these (or the same ID).
fn near(asked: &str, real: &str) -> Option<(u8, &'static str)> {
    if asked == real {
        return None;
    }
    if asked.trim().eq_ignore_ascii_case(real.trim()) {
        return Some((0, "whitespace or letter case"));
    }
    let (x, y): (Vec<char>, Vec<char>) = (asked.chars().collect(), real.chars().collect());
    if x.len() == y.len() {
        let diff: Vec<usize> = (0..x.len()).filter(|&i| x[i] != y[i]).collect();
        return match diff.as_slice() {
            [_] => Some((1, "one character off")),
            [i, j] if *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i] => {
                Some((2, "two neighbouring characters swapped"))
            }
            _ => None,
        };
    }
    // one character more on one side: the rest equal once it is skipped
    let one_more = |long: &[char], short: &[char]| {
        long.len() == short.len() + 1 && {
            let k = long.iter().zip(short).take_while(|(a, b)| a == b).count();
            long[k + 1..] == short[k..]
        }
    };
    if one_more(&y, &x) {
        return Some((3, "one character missing"));
    }
    if one_more(&x, &y) {
        return Some((4, "one character too many"));
    }
    None
}

/// How many near-miss IDs a diagnosis names.
const NEAR_SHOWN: usize = 5;

/// A row holding an ID asked about: its rowid (0 in a WITHOUT ROWID
/// table), its status, and the row as the page reader read it.
type FoundRow = (i64, Option<String>, compare::PageRow);

/// Whether SQLite's row at `rowid` holds customer ID `id`.
fn sqlite_row_is(prober: &Prober, rowid: i64, id: &str) -> bool {
    matches!(prober.row_id(rowid), Ok(Some(v)) if report::id_text(&v).as_deref() == Some(id))
}

/// Why the lookup through `name` gives `a`, a wrong answer, for the customer
/// whose ID is `v`: the cause and what to tell the person asking.
/// `row`: the customer's row as the page-level scan found it, None when it
/// found none (its rowid, None in a WITHOUT ROWID table); `misordered`: the
/// first page where a WITHOUT ROWID table's rows break its key order.
fn wrong_answer_cause(
    conn: &Connection,
    table: &CustomerTable,
    name: &str,
    a: &Answer,
    v: &Value,
    row: Option<Option<i64>>,
    misordered: Option<u32>,
) -> (&'static str, String) {
    let row_found = row.is_some();
    let which = describe_index(table, name);
    let r = match row.flatten() {
        Some(r) => format!("row exists (row {r}), but "),
        None if row_found => "row exists, but ".to_string(),
        None => String::new(),
    };
    match a {
        // the row on its page, the table's key order broken: the
        // seek by key misses it, whichever index leads there
        Answer::Missing | Answer::WrongRow if row_found && misordered.is_some() => (
            "lookup_error",
            format!(
                "{r}the rows of {} are out of key order (the order breaks at page {}): SQLite's seek for this customer's key lands on another page, so the lookup through {which} does not give its row — run `custodian repair`",
                table.name,
                misordered.unwrap_or_default()
            ),
        ),
        Answer::Missing if row_found => (
            "index_entry_lost",
            format!("{r}{which} has lost its entry — run `custodian repair`"),
        ),
        Answer::WrongRow if !row_found => match leads_to(conn, table, name, v) {
            Some((r, Some(other))) => (
                "index_leads_elsewhere",
                format!(
                    "{which} leads to row {r}, which holds customer ID {other}: one of the two is damaged — run `custodian repair` (it decides from the snapshot)"
                ),
            ),
            _ => (
                "row_lost",
                format!(
                    "{which} still names this customer, but the row it leads to is gone or unreadable (a damaged table page) — run `custodian repair` with a snapshot"
                ),
            ),
        },
        Answer::WrongRow => match leads_to(conn, table, name, v) {
            // The page holds the customer's row, but SQLite's seek
            // finds no row where the index leads (a table leaf
            // whose rowids are out of key order): the POS's read of
            // the row fails ("database disk image is malformed").
            Some((to, None)) => (
                "lookup_error",
                format!(
                    "{r}{which} leads to row {to}, which SQLite's seek in the table does not find: the lookup fails (a damaged table page) — run `custodian repair`"
                ),
            ),
            _ => (
                "index_leads_elsewhere",
                format!(
                    "{r}{which} leads to a row that does not hold this ID — run `custodian repair`"
                ),
            ),
        },
        Answer::Error(e) => (
            "lookup_error",
            format!(
                "{r}the lookup through {which} fails ({e}): a damaged page — run `custodian repair`"
            ),
        ),
        _ => ("not_found", String::new()),
    }
}

/// What to say of an ID that is not in the table and that no index leads
/// anywhere for: a snapshot that has it (vanished), a -wal that ended in a
/// transaction SQLite discards, an ID that breaks the ID rule, IDs near it.
/// The cause, the words, and the snapshot that has it.
fn not_found_explanation(
    q: &str,
    v: &Value,
    table: &CustomerTable,
    snapshots: &[std::path::PathBuf],
    pager: &Pager,
    rule: Option<&String>,
    nearby: Option<&Vec<(u8, String, &'static str)>>,
) -> (&'static str, String, Option<String>) {
    let mut in_snapshot = None;
    // not in the table, and no index leads anywhere for it
    let mut words = if q.trim().is_empty() {
        "an empty ID (nothing was typed or read from the card): no customer has it".to_string()
    } else {
        "no such customer in the table or its indexes".to_string()
    };
    let mut cause = "not_found";
    for s in snapshots {
        if let Some(r) = in_snapshot_row(s, table, v) {
            cause = "vanished";
            in_snapshot = Some(s.display().to_string());
            words = format!(
                "not in the live database, but snapshot {} has it (row {r}): the customer vanished — run `custodian repair --snapshot {}`",
                s.display(),
                s.display()
            );
            break;
        }
    }
    if cause == "not_found"
        && let Some(w) = pager.wal()
        && let Some(t) = &w.torn_last
    {
        // not damage SQLite reports, but the likeliest reason a
        // customer registered moments before a crash is not found
        words.push_str(&format!(
            "; the -wal ends in a transaction SQLite discards as never committed (frames {} to {}: its commit frame fails its checksum), so a customer registered in it is not in the database",
            t.first_frame, t.commit_frame
        ));
    }
    if let Some(why) = rule {
        cause = if cause == "vanished" {
            cause
        } else {
            "id_format"
        };
        words.push_str(&format!("; the ID breaks the ID rule ({why})"));
    }
    if let Some(list) = nearby.filter(|l| !l.is_empty()) {
        let each: Vec<String> = list
            .iter()
            .map(|(_, id, how)| format!("{id} ({how})"))
            .collect();
        words.push_str(&format!("; did you mean {}?", each.join(" or ")));
    }
    (cause, words, in_snapshot)
}

pub fn run(args: &DiagnoseArgs, quiet: bool) -> Result<ExitStatus> {
    let settings = Settings::from_opts(&args.opts)?;
    let db = &args.db;
    // a mistyped --snapshot is an error, as in repair: otherwise a customer
    // the live file lost would be "not found" instead of "in the snapshot"
    crate::repair::snapshot::readable(&args.snapshot)?;
    // A file SQLite refuses as a whole: the POS serves nobody (decided as
    // in check, by doing what the POS does: `check/access.rs`).
    let opened = crate::check::access::open(db, &settings)?;
    if let Some(reason) = opened.refusal.clone() {
        return refused(args, &settings, &opened, &reason, quiet);
    }
    drop(opened);
    let conn = crate::db::open_read_only(db)?;
    conn.execute_batch("BEGIN")?;
    let objects = match schema::read_schema_tolerant(&conn) {
        Ok(o) => o,
        Err(e) if crate::db::is_busy(&e) => return Err(crate::db::busy_error(db)),
        Err(e) => bail!("{}: cannot read the schema: {e}", db.display()),
    };
    let table = match schema::customer_table(&conn, &objects, &settings.table, &settings.id_column)?
    {
        Some(Ok(t)) => t,
        Some(Err(msg)) => bail!("{}: {msg}", db.display()),
        None => bail!("{}: no table {:?}", db.display(), settings.table),
    };
    let pager = Pager::open(db).with_context(|| format!("{}: cannot read", db.display()))?;
    let enc = pager.text_encoding();

    // One pass over the table (page by page: a damaged page does not stop
    // it): the rows of each ID asked about, their status, and near misses.
    let id_pos = table.columns[table.id_column].record_pos;
    let id_is_rowid = table.id_is_rowid();
    let status_pos = settings
        .status_column
        .as_ref()
        .and_then(|s| table.record_pos_of(s));
    let mut rows: BTreeMap<&str, Vec<FoundRow>> = BTreeMap::new();
    let without_rowid = table.without_rowid;
    let mut nearby: BTreeMap<&str, Vec<(u8, String, &'static str)>> = BTreeMap::new();
    let scan = compare::scan_table(
        &pager,
        &table,
        &[],
        None,
        &mut |rowid, rec, payload| {
            let id = if id_is_rowid {
                Some(rowid.to_string())
            } else {
                id_pos
                    .and_then(|p| rec.get(payload, p))
                    .filter(|v| !matches!(v, ValueRef::Null))
                    .and_then(|v| report::id_text(&canon::to_owned(&v, enc)))
            };
            let Some(id) = id else { return };
            for q in &args.ids {
                if *q == id {
                    let status = status_pos
                        .and_then(|p| rec.get(payload, p))
                        .and_then(|v| report::id_text(&canon::to_owned(&v, enc)));
                    let row = compare::PageRow::read(
                        &table,
                        (!without_rowid).then_some(rowid),
                        rec,
                        payload,
                        enc,
                    );
                    rows.entry(q.as_str())
                        .or_default()
                        .push((rowid, status, row));
                } else if let Some((rank, how)) = near(q, &id) {
                    // the best few, whatever the table's order
                    let list = nearby.entry(q.as_str()).or_default();
                    list.push((rank, id.clone(), how));
                    list.sort();
                    list.truncate(NEAR_SHOWN);
                }
            }
        },
        &|_| {},
        compare::BUCKET_BITS,
    );
    let prober = Prober::new(&conn, &table);
    // the first page where a WITHOUT ROWID table's rows break its key
    // order: SQLite's seek by key there can land on the wrong leaf
    let misordered = scan
        .damage
        .iter()
        .find(|d| table.without_rowid && d.kind == DamageKind::KeyOrder)
        .map(|d| d.pgno);
    let snapshots = crate::repair::snapshot::candidates(&args.snapshot);
    let mut out = Vec::new();
    for q in &args.ids {
        let found = rows.get(q.as_str()).cloned().unwrap_or_default();
        let v = table.id_value(q);
        let mut indexes: BTreeMap<String, String> = BTreeMap::new();
        let mut worst: Option<(String, Answer)> = None;
        let mut note = |name: &str, a: Answer, indexes: &mut BTreeMap<String, String>| {
            indexes
                .entry(name.to_string())
                .or_insert_with(|| answer_name(&a));
            if a.is_wrong() && worst.is_none() {
                worst = Some((name.to_string(), a));
            }
        };
        let page_rows: Vec<compare::PageRow> = found.iter().map(|(_, _, r)| r.clone()).collect();
        if table.without_rowid {
            // rows named by their primary key: the POS's lookup by ID, and
            // each index's lookup by the row's own key (from the page where
            // SQLite's seek for the ID cannot read it)
            for (name, a) in prober.probe_id_keyed(&v, &page_rows) {
                note(&name, a, &mut indexes);
            }
        } else {
            for (name, a) in prober.probe_id(&v) {
                note(&name, a, &mut indexes);
            }
            for (rowid, _, row) in &found {
                // SQLite's row at that rowid, when it is this customer's;
                // else (a rowid its seek does not reach, or that another
                // row holds too) the row's key as the page holds it
                let answers = if sqlite_row_is(&prober, *rowid, q) {
                    prober.probe_row(*rowid)
                } else {
                    Some(prober.probe_page_row(row))
                };
                for (name, a) in answers.into_iter().flatten() {
                    note(&name, a, &mut indexes);
                }
            }
        }
        let status = found.first().and_then(|(_, s, _)| s.clone());
        let rule = settings.id_rule.as_ref().and_then(|r| r.violation(q));
        let did_you_mean: Vec<String> = nearby
            .get(q.as_str())
            .map(|l| l.iter().map(|(_, id, _)| id.clone()).collect())
            .unwrap_or_default();
        let sv = &settings.status_values;
        let refused = status.as_ref().and_then(|s| {
            [
                ("disabled", &sv.disabled),
                ("frozen", &sv.frozen),
                ("closed", &sv.closed),
            ]
            .into_iter()
            .find(|(_, l)| l.iter().any(|x| x.eq_ignore_ascii_case(s)))
            .map(|(k, _)| k)
        });
        // a WITHOUT ROWID table's rows have no rowid to show
        let rowids: Vec<i64> = if table.without_rowid {
            Vec::new()
        } else {
            found.iter().map(|(r, _, _)| *r).collect()
        };
        let row_word = match rowids.first() {
            Some(r) => format!("row {r}"),
            None => "its row".to_string(),
        };
        let mut in_snapshot = None;
        let (cause, explanation, served): (&'static str, String, bool) = if found.len() > 1 {
            (
                "duplicate",
                format!(
                    "{} rows hold this ID (rows {}): re-registered while the ID index was broken — run `custodian repair` (it keeps one and quarantines the others)",
                    found.len(),
                    rowids
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                false,
            )
        } else if let Some((name, a)) = &worst {
            let (cause, explanation) = wrong_answer_cause(
                &conn,
                &table,
                name,
                a,
                &v,
                (!found.is_empty()).then(|| rowids.first().copied()),
                misordered,
            );
            (cause, explanation, false)
        } else if let Some(kind) = refused {
            (
                if kind == "disabled" {
                    "disabled"
                } else if kind == "frozen" {
                    "frozen"
                } else {
                    "closed"
                },
                format!(
                    "served correctly ({row_word}), but the customer is {kind} (status {:?}): the POS refuses it on purpose, not database damage",
                    status.clone().unwrap_or_default()
                ),
                false,
            )
        } else if !found.is_empty() {
            (
                "served",
                format!(
                    "served correctly: {row_word} is found through every index{}",
                    if scan.damaged_rows.is_empty() {
                        ""
                    } else {
                        " (some other rows of the table are damaged: run `custodian check`)"
                    }
                ),
                true,
            )
        } else {
            ("not_found", String::new(), false)
        };
        let (cause, explanation) = if cause != "not_found" && !served && found.is_empty() {
            // damage hides the customer: say whether a snapshot has it
            let mut words = explanation;
            for s in &snapshots {
                if let Some(r) = in_snapshot_row(s, &table, &v) {
                    in_snapshot = Some(s.display().to_string());
                    words.push_str(&format!(
                        "; snapshot {} has the customer (row {r})",
                        s.display()
                    ));
                    break;
                }
            }
            (cause, words)
        } else if cause == "not_found" {
            let (cause, words, found_in) = not_found_explanation(
                q,
                &v,
                &table,
                &snapshots,
                &pager,
                rule.as_ref(),
                nearby.get(q.as_str()),
            );
            in_snapshot = in_snapshot.or(found_in);
            (cause, words)
        } else {
            (cause, explanation)
        };
        out.push(Diagnosis {
            customer_id: q.clone(),
            served,
            cause,
            explanation,
            rowids,
            indexes,
            status,
            id_rule_violation: rule,
            did_you_mean,
            in_snapshot,
        });
    }
    drop(prober);
    let all_served = out.iter().all(|d| d.served);
    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        tool: report::Tool::this(),
        command: "diagnose",
        database: db.display().to_string(),
        verdict: if out.iter().any(|d| {
            matches!(
                d.cause,
                "index_entry_lost"
                    | "index_leads_elsewhere"
                    | "row_lost"
                    | "lookup_error"
                    | "duplicate"
                    | "vanished"
            )
        }) {
            Verdict::Corrupt
        } else {
            Verdict::Clean
        },
        findings: Vec::new(),
        affected_customer_ids: out
            .iter()
            .filter(|d| {
                !d.served
                    && d.cause != "not_found"
                    && d.cause != "id_format"
                    && !matches!(d.cause, "disabled" | "frozen" | "closed")
            })
            .map(|d| d.customer_id.clone())
            .collect(),
        coverage: report::Coverage {
            table: Some(table.name.clone()),
            id_column: Some(table.columns[table.id_column].name.clone()),
            customers_read: scan.rows,
            complete: scan.damaged_rows.is_empty() && scan.damage.is_empty(),
            ..report::Coverage::default()
        },
        page_map: None,
        repair: None,
        diagnoses: Some(out),
    };
    crate::emit(&report, &args.opts, quiet)?;
    Ok(if all_served {
        ExitStatus::Success
    } else {
        ExitStatus::Problems
    })
}

/// Diagnoses on a file SQLite refuses as a whole: the POS's lookup fails for
/// every ID, whatever the pages hold. Each answer says why, and whether the
/// customer's row is still on a readable page (custodian's page reader, with
/// the schema SQLite or the page reader could read), which a repair can
/// rebuild the file around.
fn refused(
    args: &DiagnoseArgs,
    settings: &Settings,
    opened: &crate::check::access::Opened,
    reason: &str,
    quiet: bool,
) -> Result<ExitStatus> {
    let table = opened.access.as_ref().and_then(|a| {
        schema::customer_table(&a.conn, &a.objects, &settings.table, &settings.id_column)
            .ok()
            .flatten()
            .and_then(|t| t.ok())
    });
    let mut rows: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut read = 0;
    if let (Some(pager), Some(t)) = (&opened.pager, &table) {
        let enc = pager.text_encoding();
        let scan = compare::scan_table(
            pager,
            t,
            &[],
            None,
            &mut |rowid, rec, payload| {
                let Some(id) = crate::check::row_id_text(rowid, rec, payload, t, enc) else {
                    return;
                };
                if let Some(q) = args.ids.iter().find(|q| **q == id) {
                    rows.entry(q.as_str()).or_default().push(rowid);
                }
            },
            &|_| {},
            compare::BUCKET_BITS,
        );
        read = scan.rows;
    }
    let snapshots = crate::repair::snapshot::candidates(&args.snapshot);
    let out: Vec<Diagnosis> = args
        .ids
        .iter()
        .map(|q| {
            let rowids = rows.get(q.as_str()).cloned().unwrap_or_default();
            let mut in_snapshot = None;
            let where_ = match (&table, rowids.first()) {
                (_, Some(r)) => format!(
                    "its row is still on a readable page (row {r}) — run `custodian repair`"
                ),
                (t, None) => {
                    let mut w = match t {
                        Some(t) => format!("no readable page of {} holds it", t.name),
                        None => format!(
                            "custodian cannot read the schema to look for it in the pages of {} either",
                            settings.table
                        ),
                    };
                    let id = t
                        .as_ref()
                        .map(|t| t.id_value(q))
                        .unwrap_or_else(|| Value::Text(q.clone()));
                    for snap in &snapshots {
                        if let Some(r) = in_snapshot_by_name(snap, settings, &id) {
                            w.push_str(&format!(
                                ", but snapshot {} has the customer (row {r}) — run `custodian repair --snapshot {}`",
                                snap.display(),
                                snap.display()
                            ));
                            in_snapshot = Some(snap.display().to_string());
                            break;
                        }
                    }
                    w
                }
            };
            Diagnosis {
                customer_id: q.clone(),
                served: false,
                cause: "database_refused",
                explanation: format!(
                    "the POS cannot look this customer up: SQLite refuses the whole file ({reason}); {where_}"
                ),
                rowids,
                indexes: BTreeMap::new(),
                status: None,
                id_rule_violation: settings.id_rule.as_ref().and_then(|r| r.violation(q)),
                did_you_mean: Vec::new(),
                in_snapshot,
            }
        })
        .collect();
    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        tool: report::Tool::this(),
        command: "diagnose",
        database: args.db.display().to_string(),
        verdict: Verdict::Corrupt,
        findings: vec![crate::check::finding::Finding::error(
            crate::check::finding::Code::DatabaseRefused,
            format!(
                "SQLite refuses the whole file ({reason}): the POS cannot look up any customer"
            ),
        )],
        affected_customer_ids: args.ids.clone(),
        coverage: report::Coverage {
            table: table.as_ref().map(|t| t.name.clone()),
            id_column: table.as_ref().map(|t| t.columns[t.id_column].name.clone()),
            customers_read: read,
            complete: false,
            ..report::Coverage::default()
        },
        page_map: None,
        repair: None,
        diagnoses: Some(out),
    };
    crate::emit(&report, &args.opts, quiet)?;
    Ok(ExitStatus::Problems)
}

#[cfg(test)]
mod near_tests {
    use super::near;

    #[test]
    fn typos_of_a_real_id() {
        let real = "C006481915191";
        assert_eq!(
            near("C006481915192", real).map(|n| n.1),
            Some("one character off")
        );
        assert_eq!(
            near("C006481915119", real).map(|n| n.1),
            Some("two neighbouring characters swapped")
        );
        assert_eq!(
            near("C00648191519", real).map(|n| n.1),
            Some("one character missing")
        );
        assert_eq!(
            near("C0064819151911", real).map(|n| n.1),
            Some("one character too many")
        );
        assert_eq!(
            near(" c006481915191", real).map(|n| n.1),
            Some("whitespace or letter case")
        );
        assert_eq!(near(real, real), None);
        assert_eq!(
            near("C008461915191", real),
            None,
            "two apart, not neighbours"
        );
        assert_eq!(near("C0064819151", real), None, "two characters missing");
        assert_eq!(near("", real), None);
    }
}
