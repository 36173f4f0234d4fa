//! The human report (Markdown) and the short stdout summary. Customers are
//! named by ID only.

use std::fmt::Write as _;

use super::{Report, Verdict};
use crate::check::finding::{Finding, Severity};
use crate::repair::RepairFields;
use crate::repair::plan::Strategy;

/// How many page numbers a Markdown list shows before "and N more".
const IDS_SHOWN: usize = 50;

/// The headline of a file SQLite refuses as a whole: every customer is
/// rejected, whatever the pages still hold.
pub fn refused_line(report: &Report) -> Option<String> {
    report
        .findings
        .iter()
        .any(|f| f.code == crate::check::finding::Code::DatabaseRefused)
        .then(|| {
            format!(
                "SQLite refuses the whole file: every customer would be rejected by the POS ({} known from the pages)",
                report.affected_customer_ids.len()
            )
        })
}

fn rejected_line(report: &Report) -> String {
    if let Some(line) = refused_line(report) {
        return line;
    }
    let n = report.affected_customer_ids.len();
    format!(
        "{n} customer{} would be rejected by the POS",
        if n == 1 { "" } else { "s" }
    )
}

/// An ID as a line starts with it: quoted when it is empty or has
/// whitespace at either end, so the line never starts with ": ".
fn shown_id(id: &str) -> String {
    if id.is_empty() || id.trim() != id {
        format!("{id:?}")
    } else {
        id.to_string()
    }
}

/// IDs for the terminal: the first `limit`, then how many more and where
/// they all are.
fn id_list(ids: &[String], limit: usize) -> String {
    let shown: Vec<&str> = ids.iter().take(limit).map(String::as_str).collect();
    let mut s = shown.join(", ");
    if ids.len() > limit {
        let _ = write!(
            s,
            ", … and {} more (`--json FILE` or `--report FILE` lists them all)",
            ids.len() - limit
        );
    }
    s
}

/// IDs for the Markdown report: all of them (a report is where the full list
/// is looked for).
fn all_ids(ids: &[String]) -> String {
    ids.join(", ")
}

/// The short summary printed on stdout when no report file is asked for.
pub fn summary(report: &Report) -> String {
    if let Some(r) = &report.repair {
        return repair_summary(report, r);
    }
    if let Some(d) = &report.diagnoses {
        return d
            .iter()
            .map(|d| format!("{}: {}\n", shown_id(&d.customer_id), d.explanation))
            .collect();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} — {}",
        report.database,
        report.verdict.as_str(),
        rejected_line(report)
    );
    if !report.affected_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "  affected: {}",
            id_list(&report.affected_customer_ids, 10)
        );
    }
    for f in &report.findings {
        let _ = writeln!(s, "  {}", finding_line(f));
    }
    if !report.coverage.complete {
        let _ = writeln!(
            s,
            "  note: not every check could run to the end (see findings)"
        );
    }
    s
}

fn sev(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn finding_line(f: &Finding) -> String {
    let code = serde_json::to_value(f.code)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let mut s = format!("{} {}", sev(f.severity), code);
    if let Some(o) = &f.object {
        let _ = write!(s, " [{o}]");
    }
    let _ = write!(s, ": {}", f.message);
    s
}

fn repair_summary(report: &Report, r: &RepairFields) -> String {
    let mut s = String::new();
    let n = report.affected_customer_ids.len();
    let _ = writeln!(
        s,
        "{}: {} — {n} customer{} rejected before the repair",
        report.database,
        report.verdict.as_str(),
        if n == 1 { " was" } else { "s were" }
    );
    if r.dry_run {
        let _ = writeln!(s, "  dry run: nothing was changed. The plan:");
        for line in plan_lines(r) {
            let _ = writeln!(s, "  - {line}");
        }
        for w in skipped_snapshots(r).iter().chain(&r.without_snapshot) {
            let _ = writeln!(s, "  {w}");
        }
        return s;
    }
    for a in &r.actions {
        let _ = writeln!(
            s,
            "  {}{}: {}",
            a.kind,
            a.object
                .as_deref()
                .map(|o| format!(" [{o}]"))
                .unwrap_or_default(),
            a.detail
        );
    }
    if r.plan
        .as_ref()
        .is_some_and(|p| matches!(p.strategy, Strategy::LossesAccounted { .. }))
    {
        for line in plan_lines(r) {
            let _ = writeln!(s, "  {line}");
        }
    }
    for d in r.plan.iter().flat_map(|p| p.needs_decision.iter()) {
        let _ = writeln!(s, "  needs a decision: {d}");
    }
    for w in skipped_snapshots(r).iter().chain(&r.without_snapshot) {
        let _ = writeln!(s, "  {w}");
    }
    if !r.quarantined_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "  needs a decision: {} duplicate rows kept aside in {} (customers {})",
            r.quarantined_customer_ids.len(),
            crate::repair::apply::QUARANTINE_TABLE,
            id_list(&r.quarantined_customer_ids, 10)
        );
    }
    s
}

/// When no snapshot given was good: each one set aside, and why (a
/// mistyped `--snapshot` naming a file that is no snapshot, a snapshot
/// damaged itself), so that the terminal says what the JSON says.
fn skipped_snapshots(r: &RepairFields) -> Vec<String> {
    if r.snapshots.iter().any(|sn| sn.status == "good") {
        return Vec::new();
    }
    r.snapshots
        .iter()
        .filter(|sn| sn.status == "skipped")
        .map(|sn| {
            let why = sn.reason.strip_prefix(&format!("{}: ", sn.path));
            format!(
                "snapshot {} not used: {}",
                sn.path,
                why.unwrap_or(&sn.reason)
            )
        })
        .collect()
}

fn plan_lines(r: &RepairFields) -> Vec<String> {
    let Some(p) = &r.plan else {
        return vec!["no plan".into()];
    };
    let mut out = Vec::new();
    match &p.strategy {
        Strategy::Nothing => out.push("nothing to repair".into()),
        Strategy::NotBuilt { reason } => out.push(format!("stop: {reason}")),
        Strategy::LossesAccounted { customer_ids } => out.push(format!(
            "nothing to repair: {} customers that other tables name are in no page and no good \
             snapshot (unrecoverable, as the repair that found them reported: {}); nothing was changed",
            customer_ids.len(),
            id_list(customer_ids, 10)
        )),
        Strategy::Rebuild { reasons } => {
            out.push("back up the database byte for byte".into());
            out.push(format!(
                "build a new database: the schema, every row that survives in the file (page by page), \
                 and the snapshot's rows for rows that index entries name but no page holds ({})",
                reasons.join("; ")
            ));
            out.push("verify it, then rename it over the database".into());
        }
        Strategy::PatchCopy => {
            out.push("back up the database byte for byte, then work on a copy".into());
            for i in &p.rebuild_indexes {
                out.push(format!(
                    "rebuild index {i} from its table (its pages emptied first)"
                ));
            }
            if !p.free_pages.is_empty() {
                out.push(format!(
                    "free {} pages no object will own",
                    p.free_pages.len()
                ));
            }
            for d in &p.dedupe {
                out.push(format!(
                    "move re-registered duplicates under {} to {} (keep the row the snapshot has, else the oldest): {}",
                    d.index,
                    crate::repair::apply::QUARANTINE_TABLE,
                    d.keys.join(", ")
                ));
            }
            for rv in &p.restore_values {
                out.push(format!(
                    "restore row {}'s customer ID {} to {} ({})",
                    rv.rowid, rv.stored, rv.restored, rv.evidence
                ));
            }
            for d in &p.needs_decision {
                out.push(format!("needs a decision: {d}"));
            }
            for c in &p.recreate_indexes {
                out.push(format!(
                    "recreate index {} from snapshot {}",
                    c.name, c.snapshot
                ));
            }
            out.push("verify the copy, then rename it over the database".into());
        }
    }
    out
}

fn render_repair(report: &Report, r: &RepairFields) -> String {
    let mut s = String::new();
    let n = report.affected_customer_ids.len();
    let _ = writeln!(s, "# custodian repair: {}\n", report.verdict.as_str());
    let after = r
        .after
        .as_ref()
        .map(|a| a.affected_customer_ids)
        .unwrap_or(n);
    let _ = writeln!(
        s,
        "**{n} customers were rejected by the POS before the repair; {after} are after it.**\n"
    );
    let _ = writeln!(s, "Database: `{}`  ", report.database);
    if let Some(b) = &r.backup_path {
        let _ = writeln!(
            s,
            "Backup (byte for byte, before any change): `{b}` (sha256 `{}`)  ",
            r.backup_sha256.as_deref().unwrap_or("")
        );
    }
    if let Some(u) = &r.snapshot_used {
        let _ = writeln!(s, "Snapshot used: `{u}`  ");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "## What was wrong\n");
    for f in &report.findings {
        let _ = writeln!(s, "- {}", finding_line(f));
    }
    if report.findings.is_empty() {
        let _ = writeln!(s, "Nothing.");
    }
    if !report.affected_customer_ids.is_empty() {
        let _ = writeln!(s, "\n## Customers affected\n");
        let _ = writeln!(s, "{}", all_ids(&report.affected_customer_ids));
    }
    if r.dry_run {
        let _ = writeln!(s, "\n## The plan (dry run: nothing was changed)\n");
        for l in plan_lines(r) {
            let _ = writeln!(s, "- {l}");
        }
    } else {
        let _ = writeln!(s, "\n## What was done\n");
        if r.actions.is_empty() {
            let _ = writeln!(s, "Nothing was changed.");
        }
        for (i, a) in r.actions.iter().enumerate() {
            let _ = writeln!(
                s,
                "{}. {}{}: {}",
                i + 1,
                a.kind,
                a.object
                    .as_deref()
                    .map(|o| format!(" `{o}`"))
                    .unwrap_or_default(),
                a.detail
            );
        }
    }
    if !r.snapshots.is_empty() {
        let _ = writeln!(s, "\n## Snapshots\n");
        for sn in &r.snapshots {
            let _ = writeln!(s, "- `{}`: {} ({})", sn.path, sn.status, sn.reason);
        }
    }
    if !r.without_snapshot.is_empty() {
        let _ = writeln!(s, "\n## Without a snapshot\n");
        for w in &r.without_snapshot {
            let _ = writeln!(s, "- {w}");
        }
    }
    let _ = writeln!(s, "\n## Needs a human decision\n");
    let decisions: &[String] = r
        .plan
        .as_ref()
        .map(|p| p.needs_decision.as_slice())
        .unwrap_or(&[]);
    if r.quarantined_customer_ids.is_empty()
        && r.unrecoverable_customer_ids.is_empty()
        && decisions.is_empty()
    {
        let _ = writeln!(s, "Nothing.");
    }
    for d in decisions {
        let _ = writeln!(s, "- {d}");
    }
    if !r.quarantined_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "Duplicate rows were moved, whole, into the table `{}` of the repaired database \
             (with the reason, their original rowid and the time); the row the snapshot has \
             (else the oldest) was kept. Merge anything the cashier entered on the duplicate \
             (e.g. a new phone number) by hand: {}",
            crate::repair::apply::QUARANTINE_TABLE,
            all_ids(&r.quarantined_customer_ids)
        );
    }
    if !r.unrecoverable_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "\nThese customers existed but no source could restore them: {}",
            all_ids(&r.unrecoverable_customer_ids)
        );
    }
    s
}

/// The full Markdown report.
pub fn render(report: &Report) -> String {
    if let Some(r) = &report.repair {
        return render_repair(report, r);
    }
    if let Some(ds) = &report.diagnoses {
        let mut s = format!(
            "# custodian diagnose: {}\n\nDatabase: `{}`\n\n",
            report.database, report.database
        );
        s = s.replacen(
            &format!(": {}\n", report.database),
            &format!(": {} IDs\n", ds.len()),
            1,
        );
        for d in ds {
            let _ = writeln!(
                s,
                "- **{}** ({}): {}",
                d.customer_id, d.cause, d.explanation
            );
        }
        return s;
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# custodian {}: {}\n",
        report.command,
        report.verdict.as_str()
    );
    let _ = writeln!(s, "**{}.**\n", rejected_line(report));
    let _ = writeln!(s, "Database: `{}`  ", report.database);
    let c = &report.coverage;
    let _ = writeln!(
        s,
        "Read: {} pages of {} bytes{}; {} customer rows; indexes compared: {}; customers probed: {}{}\n",
        c.pages,
        c.page_size,
        if c.wal_frames > 0 {
            format!(" (with {} committed WAL frames)", c.wal_frames)
        } else {
            String::new()
        },
        c.customers_read,
        if c.indexes_compared.is_empty() {
            "none".to_string()
        } else {
            c.indexes_compared.join(", ")
        },
        c.customers_probed,
        if c.complete {
            ""
        } else {
            ". **Not every check could run to the end.**"
        }
    );
    if !report.affected_customer_ids.is_empty() {
        let _ = writeln!(s, "## Customers the POS rejects\n");
        let _ = writeln!(s, "{}\n", all_ids(&report.affected_customer_ids));
    }
    let _ = writeln!(s, "## Findings\n");
    if report.findings.is_empty() {
        let _ = writeln!(s, "None.\n");
    }
    for f in &report.findings {
        let _ = writeln!(s, "- {}", finding_line(f));
        if f.count > 1 {
            let _ = writeln!(s, "  - count: {}", f.count);
        }
        if !f.pages.is_empty() {
            let pages: Vec<String> = f.pages.iter().take(IDS_SHOWN).map(u32::to_string).collect();
            let more = if f.pages.len() > IDS_SHOWN {
                format!(" … and {} more", f.pages.len() - IDS_SHOWN)
            } else {
                String::new()
            };
            let _ = writeln!(s, "  - pages: {}{more}", pages.join(", "));
        }
        if !f.customer_ids.is_empty() {
            let _ = writeln!(s, "  - customers: {}", all_ids(&f.customer_ids));
        }
    }
    if let Some(map) = &report.page_map {
        let _ = writeln!(s, "\n## Pages\n");
        let _ = writeln!(s, "| owner | state | pages |\n| --- | --- | ---: |");
        for (owner, state, n) in map.summary() {
            let state = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let owner = if owner.is_empty() {
                "—".to_string()
            } else {
                format!("`{owner}`")
            };
            let _ = writeln!(s, "| {owner} | {state} | {n} |");
        }
    }
    let _ = writeln!(s, "\n## What to do next\n");
    let _ = writeln!(s, "{}", next_steps(report));
    s
}

fn next_steps(report: &Report) -> String {
    match report.verdict {
        Verdict::Clean if report.count(Severity::Warning) > 0 => {
            "The database is sound. The warnings are about the data (ID format, \
             customer status): they explain rejections that are not damage; check \
             them with the customer's record before changing anything."
                .into()
        }
        Verdict::Clean => {
            "Nothing: every index of the customer table gives the right answer.".into()
        }
        Verdict::Failed => {
            "The check could not run; the error above says why. Nothing was changed.".into()
        }
        _ => {
            let mut s = String::from(
                "1. Do not run `REINDEX` or `VACUUM` by hand: on a damaged file they fail or \
                 build around the damage, and a re-registered duplicate makes `REINDEX` fail.\n\
                 2. Take a copy of the database file (and its -wal) as it is now.\n\
                 3. Run `custodian repair DB --snapshot <last night's snapshot>` \
                 (`--dry-run` first to see the plan).\n",
            );
            if !report.affected_customer_ids.is_empty() {
                s.push_str(
                    "4. Until then, tell the support desk that the customers listed above \
                     are real: their rejection is database damage, not a bad card or ID.\n",
                );
            }
            s
        }
    }
}
