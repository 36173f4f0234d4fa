//! The HTML report: one self-contained file (inline CSS, no script, no
//! network). The verdict and counts first, then a picture of the database
//! file page by page, the findings, the customers (by ID only), and for
//! repair and diagnose their own sections. Every text is escaped.

use std::fmt::Write as _;

use super::{Report, Verdict};
use crate::check::finding::{Finding, Severity};
use crate::check::structure::{PageMap, PageRun, PageState};
use crate::repair::RepairFields;

/// At most this many squares in the page picture; bigger files group pages.
const MAX_CELLS: u64 = 20_000;

/// Fill colours for the customer table's indexes (no red: red is damage).
const INDEX_COLOURS: [&str; 8] = [
    "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#8cd17d", "#d4a6c8",
];
/// Muted fills for every other table and index.
const OTHER_COLOURS: [&str; 6] = [
    "#a5aab3", "#c7b99a", "#b3c2a0", "#9fb4c7", "#c4b0cf", "#bfb3a8",
];
const CUSTOMER_TABLE_COLOUR: &str = "#2f6db5";
const SCHEMA_COLOUR: &str = "#5b5f66";

pub(crate) const CSS: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;\
padding:0 16px;color:#1d1f23}h1{font-size:28px;margin:0}h2{font-size:20px;margin:28px 0 8px;\
border-bottom:1px solid #ddd}.verdict{display:inline-block;color:#fff;padding:4px 14px;\
border-radius:6px;font-size:28px;font-weight:700}.v-green{background:#1e8a3c}.v-red{background:#c62828}\
.v-blue{background:#1f5fbf}.v-amber{background:#c98300}.v-grey{background:#6b6f76}.big{font-size:24px;\
font-weight:700;margin:10px 0}.counts span{display:inline-block;margin-right:18px}.meta{color:#444}\
code{font:13px ui-monospace,monospace;background:#f2f3f5;padding:1px 4px;border-radius:3px}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e3e3e3;padding:4px 6px;\
text-align:left;vertical-align:top}th{background:#f6f7f9}.error{color:#c62828;font-weight:700}\
.warning{color:#a86400;font-weight:700}.info{color:#555}.ids{max-height:240px;overflow:auto;\
border:1px solid #ddd;padding:6px;display:flex;flex-wrap:wrap;gap:4px 8px}.ids code{background:none}\
.map{display:grid;gap:2px;align-items:center}.map b{font:10px ui-monospace,monospace;color:#777;\
text-align:right;padding-right:4px}.pg{height:var(--sz);background:var(--c,#888);position:relative}\
.s-damaged{background:#d62728;box-shadow:inset 0 0 0 2px var(--c,#600);outline:2px solid #d62728;outline-offset:1px}.s-damaged::after{content:'\\2715';\
color:#fff;font-size:calc(var(--sz) - 3px);line-height:var(--sz);position:absolute;left:0;right:0;\
text-align:center;font-weight:700}.s-unused{background:repeating-linear-gradient(45deg,#000 0 2px,#555 2px 4px)}\
.s-free{background:#e2e2e2}.s-lost{background:#fff;box-shadow:inset 0 0 0 1px #333}\
.s-ptrmap{background:#3d3d3d}.s-lock_byte{background:#8a8a8a}.legend{display:flex;flex-wrap:wrap;\
gap:4px 18px;margin:10px 0;font-size:13px}.legend i{display:inline-block;width:13px;height:13px;\
--sz:13px;vertical-align:-2px;margin-right:5px}.alert{background:#fdecea;border-left:4px solid #c62828;\
padding:6px 10px}.note{background:#fff7e0;border-left:4px solid #c98300;padding:6px 10px}\
details summary{cursor:pointer;color:#1f5fbf}";

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Clean | Verdict::Go => "v-green",
        Verdict::Corrupt | Verdict::NoGo => "v-red",
        Verdict::Repaired => "v-blue",
        Verdict::RepairedWithLosses => "v-amber",
        Verdict::Failed => "v-grey",
    }
}

fn sev(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// The snake_case name serde gives a unit enum value (a code, a state).
fn name_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Page numbers as ranges: `3–7, 12`.
pub(crate) fn ranges(pages: &[u32]) -> String {
    let mut sorted = pages.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}–{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// Every ID, in a scrollable block when the list is long.
fn id_block(ids: &[String]) -> String {
    let mut s = String::from("<div class=\"ids\">");
    for id in ids {
        let _ = write!(s, "<code>{}</code>", esc(id));
    }
    s.push_str("</div>\n");
    s
}

/// The full HTML report.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let title = format!("custodian {}: {}", report.command, report.verdict.as_str());
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} — {}</title><style>{CSS}</style></head><body>\n",
        esc(&title),
        esc(&report.database)
    );
    header(&mut s, report);
    if let Some(ds) = &report.diagnoses {
        let _ = writeln!(s, "<h2>The IDs asked about</h2>");
        let _ = writeln!(
            s,
            "<table><tr><th>customer ID</th><th>served</th><th>cause</th><th>explanation</th></tr>"
        );
        for d in ds {
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.customer_id),
                if d.served {
                    "yes"
                } else {
                    "<b class=\"error\">no</b>"
                },
                esc(d.cause),
                esc(&d.explanation)
            );
        }
        s.push_str("</table>\n");
    }
    let repair = report.repair.as_ref();
    if let Some(r) = repair {
        before_after(&mut s, r);
    }
    if let Some(map) = &report.page_map {
        page_picture(&mut s, report, map);
    }
    let _ = writeln!(
        s,
        "<h2>{}</h2>",
        if repair.is_some() {
            "What was wrong"
        } else {
            "Findings"
        }
    );
    findings(&mut s, &report.findings);
    if !report.affected_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Customers the POS rejects{} ({})</h2>",
            if repair.is_some() {
                " (before the repair)"
            } else {
                ""
            },
            report.affected_customer_ids.len()
        );
        s.push_str(&id_block(&report.affected_customer_ids));
    }
    if let Some(r) = repair {
        repair_sections(&mut s, r);
    }
    let _ = writeln!(
        s,
        "<p class=\"meta\">Written by {} {}. Customers are named by ID only.</p></body></html>",
        esc(report.tool.name),
        esc(report.tool.version)
    );
    s
}

/// The verdict, the counts and what was read.
fn header(s: &mut String, report: &Report) {
    let _ = writeln!(
        s,
        "<h1>custodian {} <span class=\"verdict {}\" id=\"verdict\">{}</span></h1>",
        esc(report.command),
        verdict_class(report.verdict),
        esc(report.verdict.as_str())
    );
    let n = report.affected_customer_ids.len();
    let line = match (&report.repair, &report.diagnoses) {
        (Some(r), _) if r.dry_run => format!(
            "{} rejected by the POS. Dry run: nothing was changed.",
            plural(n, "customer is", "customers are")
        ),
        (Some(r), _) => {
            let after = r
                .after
                .as_ref()
                .map(|a| a.affected_customer_ids)
                .unwrap_or(n);
            format!(
                "{n} customers were rejected by the POS before the repair; {after} are after it."
            )
        }
        (None, Some(ds)) => format!(
            "{} asked about; {} not served correctly.",
            plural(ds.len(), "ID", "IDs"),
            ds.iter().filter(|d| !d.served).count()
        ),
        (None, None) => match super::markdown::refused_line(report) {
            Some(line) => format!("{line}."),
            None => format!(
                "{} would be rejected by the POS.",
                plural(n, "customer", "customers")
            ),
        },
    };
    let _ = writeln!(s, "<p class=\"big\">{}</p>", esc(&line));
    let c = &report.coverage;
    let _ = write!(
        s,
        "<p class=\"counts\">{}<span class=\"error\">{}</span><span class=\"warning\">{}</span>\
         <span class=\"info\">{} info</span>",
        if report.repair.is_some() {
            "Before the repair: "
        } else {
            ""
        },
        plural(report.count(Severity::Error), "error", "errors"),
        plural(report.count(Severity::Warning), "warning", "warnings"),
        report.count(Severity::Info),
    );
    if c.pages > 0 {
        let _ = write!(
            s,
            "<span>{} of {} bytes</span><span>{} customer rows read</span>",
            plural(c.pages as usize, "page", "pages"),
            c.page_size,
            c.customers_read
        );
    }
    let _ = write!(
        s,
        "</p>\n<p class=\"meta\">Database: <code>{}</code>",
        esc(&report.database)
    );
    if c.pages > 0 {
        let _ = write!(
            s,
            "<br>Table <code>{}</code>, ID column <code>{}</code>; indexes compared: {}; \
             customers probed: {}",
            esc(c.table.as_deref().unwrap_or("—")),
            esc(c.id_column.as_deref().unwrap_or("—")),
            if c.indexes_compared.is_empty() {
                "none".to_string()
            } else {
                esc(&c.indexes_compared.join(", "))
            },
            c.customers_probed
        );
    }
    if c.wal_frames > 0 {
        let _ = write!(s, "; with {} committed WAL frames", c.wal_frames);
    }
    s.push_str("</p>\n");
    if !c.complete {
        let _ = writeln!(
            s,
            "<p class=\"note\">Not every check could run to the end (see the findings).</p>"
        );
    }
}

fn findings(s: &mut String, fs: &[Finding]) {
    if fs.is_empty() {
        s.push_str("<p>None.</p>\n");
        return;
    }
    s.push_str(
        "<table><tr><th>severity</th><th>code</th><th>object</th><th>message</th>\
         <th>count</th><th>pages</th></tr>\n",
    );
    for f in fs {
        let mut msg = esc(&f.message);
        if !f.customer_ids.is_empty() {
            let _ = write!(
                msg,
                "<details><summary>{}</summary>{}</details>",
                plural(f.customer_ids.len(), "customer", "customers"),
                id_block(&f.customer_ids)
            );
        }
        let _ = writeln!(
            s,
            "<tr><td class=\"{0}\">{0}</td><td><code>{1}</code></td><td>{2}</td><td>{msg}</td>\
             <td>{3}</td><td>{4}</td></tr>",
            sev(f.severity),
            esc(&name_of(&f.code)),
            f.object
                .as_deref()
                .map(|o| format!("<code>{}</code>", esc(o)))
                .unwrap_or_default(),
            f.count,
            esc(&ranges(&f.pages))
        );
    }
    s.push_str("</table>\n");
}

/// Health states, worst first: a group of pages shows its worst.
const STATES: [(PageState, &str); 7] = [
    (PageState::Damaged, "damaged"),
    (PageState::Lost, "lost (past the end of the file)"),
    (PageState::Unused, "unused (owned by nothing)"),
    (PageState::Free, "free (on the freelist)"),
    (PageState::Ptrmap, "pointer map"),
    (PageState::LockByte, "lock-byte page"),
    (PageState::Healthy, "healthy"),
];

fn rank(st: PageState) -> usize {
    STATES
        .iter()
        .position(|(p, _)| *p == st)
        .unwrap_or(STATES.len())
}

/// Colour and role of each owner: the customer table, its indexes, the rest.
fn owner_styles(report: &Report, map: &PageMap) -> Vec<(&'static str, &'static str)> {
    let table = report.coverage.table.as_deref();
    let (mut ix, mut other) = (0, 0);
    map.owners
        .iter()
        .map(|name| {
            if Some(name.as_str()) == table {
                (CUSTOMER_TABLE_COLOUR, "the customer table")
            } else if report.coverage.indexes_compared.contains(name) {
                ix += 1;
                (
                    INDEX_COLOURS[(ix - 1) % INDEX_COLOURS.len()],
                    "index of the customer table",
                )
            } else if name == "sqlite_schema" || name == "sqlite_master" {
                (SCHEMA_COLOUR, "the schema")
            } else {
                other += 1;
                (
                    OTHER_COLOURS[(other - 1) % OTHER_COLOURS.len()],
                    "other table or index",
                )
            }
        })
        .collect()
}

/// One square per page (or per group of `k` pages), coloured by owner and
/// by health, with a hover title each; then the legend.
fn page_picture(s: &mut String, report: &Report, map: &PageMap) {
    // pages the header counts beyond the map's end are not in the file: lost
    let mut runs = map.runs.clone();
    let end = runs.iter().map(|r| r.1).max().unwrap_or(0);
    if report.coverage.pages > end {
        runs.push(PageRun(
            end + 1,
            report.coverage.pages,
            None,
            PageState::Lost,
        ));
    }
    let total = runs.iter().map(|r| u64::from(r.1)).max().unwrap_or(0);
    if total == 0 {
        return;
    }
    let k = total.div_ceil(MAX_CELLS).max(1);
    let ncells = total.div_ceil(k) as usize;
    // per cell: (owner, state, pages)
    let mut cells: Vec<Vec<(Option<u16>, PageState, u64)>> = vec![Vec::new(); ncells];
    let mut per_owner = vec![0u64; map.owners.len()];
    let mut per_state = [0u64; STATES.len()];
    for r in &runs {
        let (first, last) = (u64::from(r.0.max(1)), u64::from(r.1));
        if last < first {
            continue;
        }
        if let Some(o) = r.2.and_then(|o| per_owner.get_mut(o as usize)) {
            *o += last - first + 1;
        }
        per_state[rank(r.3).min(STATES.len() - 1)] += last - first + 1;
        for c in (first - 1) / k..=(last - 1) / k {
            let lo = first.max(c * k + 1);
            let hi = last.min((c + 1) * k);
            let cell = &mut cells[c as usize];
            match cell.iter_mut().find(|e| e.0 == r.2 && e.1 == r.3) {
                Some(e) => e.2 += hi - lo + 1,
                None => cell.push((r.2, r.3, hi - lo + 1)),
            }
        }
    }
    let styles = owner_styles(report, map);
    let owner_name = |o: Option<u16>| -> &str {
        o.and_then(|o| map.owners.get(o as usize))
            .map(String::as_str)
            .unwrap_or("no owner")
    };
    let (cols, size): (u64, u32) = match ncells {
        0..=1024 => (40, 24),
        1025..=4096 => (64, 14),
        _ => (120, 7),
    };
    let _ = writeln!(
        s,
        "<h2>The database file, page by page{}</h2>",
        if report.repair.is_some() {
            " (as checked before the repair)"
        } else {
            ""
        }
    );
    let mut damaged: Vec<String> = Vec::new();
    for (st, label) in [
        (PageState::Damaged, "Damaged"),
        (PageState::Lost, "Lost (not in the file)"),
        (PageState::Unused, "Owned by nothing"),
    ] {
        let list: Vec<String> = runs
            .iter()
            .filter(|r| r.3 == st)
            .map(|r| {
                let p = if r.0 == r.1 {
                    format!("page {}", r.0)
                } else {
                    format!("pages {}–{}", r.0, r.1)
                };
                match r.2 {
                    Some(_) => format!("{p} ({})", owner_name(r.2)),
                    None => p,
                }
            })
            .collect();
        if !list.is_empty() {
            damaged.push(format!("{label}: {}", list.join(", ")));
        }
    }
    // objects with error findings: the damage may be in what sound pages hold
    let mut suspect: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .filter_map(|f| f.object.as_deref())
        .collect();
    suspect.sort_unstable();
    suspect.dedup();
    if damaged.is_empty() && suspect.is_empty() {
        let _ = writeln!(s, "<p>No damaged page.</p>");
    } else if damaged.is_empty() {
        let _ = writeln!(
            s,
            "<p class=\"alert\">No page is damaged in its structure: the damage is in what the pages \
             of {} hold (marked ⚠ below; see the findings).</p>",
            esc(&suspect.join(", "))
        );
    } else {
        let _ = writeln!(s, "<p class=\"alert\">{}</p>", esc(&damaged.join(". ")));
    }
    let scale = if k == 1 {
        "one square per page".to_string()
    } else {
        format!(
            "one square per {k} pages ({total} pages in {ncells} squares; a square shows its worst page)"
        )
    };
    let _ = writeln!(
        s,
        "<p class=\"meta\">{total} pages of {} bytes, {scale}, {cols} squares per row, page 1 top left. \
         Hover a square for its pages, owner and state.</p>",
        report.coverage.page_size
    );
    let _ = writeln!(
        s,
        "<div class=\"map\" id=\"page-map\" data-pages=\"{total}\" data-pages-per-cell=\"{k}\" \
         style=\"--sz:{size}px;grid-template-columns:4.5em repeat({cols},{size}px)\">"
    );
    for (i, cell) in cells.iter().enumerate() {
        let i = i as u64;
        let (lo, hi) = (i * k + 1, ((i + 1) * k).min(total));
        if i.is_multiple_of(cols) {
            let _ = write!(s, "<b>{lo}</b>");
        }
        let worst = cell
            .iter()
            .map(|e| e.1)
            .min_by_key(|st| rank(*st))
            .unwrap_or(PageState::Lost);
        let main_owner = cell
            .iter()
            .filter(|e| e.0.is_some())
            .max_by_key(|e| e.2)
            .and_then(|e| e.0);
        let pages = if lo == hi {
            format!("page {lo}")
        } else {
            format!("pages {lo}–{hi}")
        };
        let what: Vec<String> = cell
            .iter()
            .map(|e| {
                let st = name_of(&e.1);
                if k == 1 {
                    format!("{}, {st}", owner_name(e.0))
                } else {
                    format!("{} {st} ×{}", owner_name(e.0), e.2)
                }
            })
            .collect();
        let colour = main_owner
            .and_then(|o| styles.get(o as usize))
            .map(|st| format!(" style=\"--c:{}\"", st.0))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<i class=\"pg s-{}\"{colour} title=\"{}: {}\"></i>",
            name_of(&worst),
            esc(&pages),
            esc(&what.join("; "))
        );
    }
    s.push_str("</div>\n<div class=\"legend\">");
    for (i, name) in map.owners.iter().enumerate() {
        let (colour, role) = styles.get(i).copied().unwrap_or(("#888", ""));
        let _ = write!(
            s,
            "<span><i style=\"background:{colour}\"></i><code>{}</code>{} {role}: {}</span>",
            esc(name),
            if suspect.contains(&name.as_str()) {
                " <b class=\"error\">⚠ findings</b>"
            } else {
                ""
            },
            plural(per_owner[i] as usize, "page", "pages")
        );
    }
    s.push_str("</div>\n<div class=\"legend\">");
    for (j, (st, label)) in STATES.iter().enumerate() {
        if *st == PageState::Healthy {
            let _ = write!(
                s,
                "<span>{label} (in its owner's colour): {}</span>",
                per_state[j]
            );
            continue;
        }
        if per_state[j] == 0 && *st != PageState::Damaged {
            continue;
        }
        let _ = write!(
            s,
            "<span><i class=\"pg s-{}\"></i>{label}: {}</span>",
            name_of(st),
            per_state[j]
        );
    }
    s.push_str("</div>\n");
}

/// A repair's before / after verdicts, backup and snapshot.
fn before_after(s: &mut String, r: &RepairFields) {
    let _ = writeln!(
        s,
        "<h2>Before and after</h2><table><tr><th></th><th>verdict</th><th>customers rejected</th><th>errors</th></tr>"
    );
    for (label, b) in [("before", &r.before), ("after", &r.after)] {
        match b {
            Some(b) => {
                let _ = writeln!(
                    s,
                    "<tr><th>{label}</th><td><span class=\"verdict {}\" style=\"font-size:15px\">{}</span></td><td>{}</td><td>{}</td></tr>",
                    verdict_class(b.verdict),
                    b.verdict.as_str(),
                    b.affected_customer_ids,
                    b.errors
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "<tr><th>{label}</th><td colspan=\"3\">—{}</td></tr>",
                    if r.dry_run { " (dry run)" } else { "" }
                );
            }
        }
    }
    s.push_str("</table>\n<p class=\"meta\">");
    if let Some(b) = &r.backup_path {
        let _ = write!(
            s,
            "Backup (byte for byte, before any change): <code>{}</code> (sha256 <code>{}</code>)<br>",
            esc(b),
            esc(r.backup_sha256.as_deref().unwrap_or(""))
        );
    }
    if let Some(u) = &r.snapshot_used {
        let _ = write!(s, "Snapshot used: <code>{}</code>", esc(u));
    }
    s.push_str("</p>\n");
}

/// The rest of a repair: the plan or the actions, snapshots, decisions.
fn repair_sections(s: &mut String, r: &RepairFields) {
    if r.dry_run {
        let _ = writeln!(s, "<h2>The plan (dry run: nothing was changed)</h2>");
        plan(s, r);
    } else {
        let _ = writeln!(s, "<h2>What was done, in order</h2>");
        if r.actions.is_empty() {
            s.push_str("<p>Nothing was changed.</p>\n");
        } else {
            s.push_str("<table id=\"actions\"><tr><th>#</th><th>action</th><th>object</th><th>detail</th></tr>\n");
            for (i, a) in r.actions.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    i + 1,
                    esc(a.kind),
                    a.object
                        .as_deref()
                        .map(|o| format!("<code>{}</code>", esc(o)))
                        .unwrap_or_default(),
                    esc(&a.detail)
                );
            }
            s.push_str("</table>\n");
        }
    }
    if !r.snapshots.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Snapshots</h2><table><tr><th>snapshot</th><th>status</th><th>why</th></tr>"
        );
        for sn in &r.snapshots {
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&sn.path),
                esc(sn.status),
                esc(&sn.reason)
            );
        }
        s.push_str("</table>\n");
    }
    if !r.without_snapshot.is_empty() {
        s.push_str("<h2>Without a snapshot</h2><ul>");
        for w in &r.without_snapshot {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul>\n");
    }
    if !r.restored_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Customers restored from the snapshot ({})</h2>",
            r.restored_customer_ids.len()
        );
        s.push_str(&id_block(&r.restored_customer_ids));
    }
    let _ = writeln!(s, "<h2>Needs a human decision</h2>");
    let decisions: &[String] = r
        .plan
        .as_ref()
        .map(|p| p.needs_decision.as_slice())
        .unwrap_or(&[]);
    if decisions.is_empty()
        && r.quarantined_customer_ids.is_empty()
        && r.unrecoverable_customer_ids.is_empty()
    {
        s.push_str("<p>Nothing.</p>\n");
    }
    if !decisions.is_empty() {
        s.push_str("<ul>");
        for d in decisions {
            let _ = write!(s, "<li>{}</li>", esc(d));
        }
        s.push_str("</ul>\n");
    }
    if !r.quarantined_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "<h3 id=\"quarantined\">Quarantined duplicates ({})</h3><p>Duplicate rows were moved, whole, into the table \
             <code>{}</code> of the repaired database (with the reason, their original rowid and the time); the row \
             the snapshot has (else the oldest) was kept. Merge anything the cashier entered on the duplicate \
             (e.g. a new phone number) by hand:</p>",
            r.quarantined_customer_ids.len(),
            esc(crate::repair::apply::QUARANTINE_TABLE)
        );
        s.push_str(&id_block(&r.quarantined_customer_ids));
    }
    if !r.unrecoverable_customer_ids.is_empty() {
        let _ = writeln!(
            s,
            "<h3 id=\"unrecoverable\">Unrecoverable ({})</h3><p>These customers existed but no source could restore them:</p>",
            r.unrecoverable_customer_ids.len()
        );
        s.push_str(&id_block(&r.unrecoverable_customer_ids));
    }
}

/// A dry run's plan, from its structured fields.
fn plan(s: &mut String, r: &RepairFields) {
    use crate::repair::plan::Strategy;
    let Some(p) = &r.plan else {
        s.push_str("<p>No plan.</p>\n");
        return;
    };
    let mut items: Vec<String> = Vec::new();
    match &p.strategy {
        Strategy::Nothing => items.push("nothing to repair".into()),
        Strategy::NotBuilt { reason } => items.push(format!("stop: {reason}")),
        Strategy::LossesAccounted { customer_ids } => items.push(format!(
            "nothing to repair: {} customers that other tables name are in no page and no good \
             snapshot (unrecoverable, as the repair that found them reported); nothing was changed",
            customer_ids.len()
        )),
        Strategy::Rebuild { reasons } => items.push(format!(
            "back up the database, then build a new one from the schema, every row that survives in the file \
             and the snapshot's rows for the rest ({})",
            reasons.join("; ")
        )),
        Strategy::PatchCopy => {
            items.push("back up the database byte for byte, then work on a copy".into());
            for i in &p.rebuild_indexes {
                items.push(format!("rebuild index {i} from its table"));
            }
            if !p.free_pages.is_empty() {
                items.push(format!("free {} pages no object will own: {}", p.free_pages.len(), ranges(&p.free_pages)));
            }
            for d in &p.dedupe {
                items.push(format!("quarantine re-registered duplicates under {}: {}", d.index, d.keys.join(", ")));
            }
            for rv in &p.restore_values {
                items.push(format!("restore row {}'s customer ID {} to {} ({})", rv.rowid, rv.stored, rv.restored, rv.evidence));
            }
            for c in &p.recreate_indexes {
                items.push(format!("recreate index {} from snapshot {}", c.name, c.snapshot));
            }
        }
    }
    s.push_str("<ol>");
    for i in items {
        let _ = write!(s, "<li>{}</li>", esc(&i));
    }
    s.push_str("</ol>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Coverage, Tool};

    #[test]
    fn a_big_file_is_drawn_in_groups_and_a_group_shows_its_damage() {
        let report = Report {
            schema_version: 1,
            tool: Tool::this(),
            command: "check",
            database: "big<&>.db".into(),
            verdict: Verdict::Corrupt,
            findings: Vec::new(),
            affected_customer_ids: Vec::new(),
            coverage: Coverage {
                page_size: 4096,
                pages: 50_000,
                table: Some("customers".into()),
                ..Coverage::default()
            },
            page_map: Some(PageMap {
                owners: vec!["customers".into()],
                runs: vec![
                    PageRun(1, 30_000, Some(0), PageState::Healthy),
                    PageRun(30_001, 30_001, Some(0), PageState::Damaged),
                    PageRun(30_002, 45_000, None, PageState::Free),
                ],
            }),
            repair: None,
            diagnoses: None,
        };
        let html = render(&report);
        assert!(html.contains("data-pages=\"50000\" data-pages-per-cell=\"3\""));
        assert!(html.contains("one square per 3 pages (50000 pages in 16667 squares"));
        let cells: Vec<&str> = html.split("<i class=\"pg ").skip(1).collect();
        assert_eq!(
            cells.len(),
            16_667 + 3,
            "squares, and the legend's damaged, lost, free"
        );
        // page 30001 is in square 10000 (pages 30001–30003), with free pages
        assert!(cells[10_000].starts_with("s-damaged"), "{}", cells[10_000]);
        assert!(
            cells[10_000].contains("pages 30001–30003: customers damaged ×1; no owner free ×2")
        );
        assert!(cells[15_001].starts_with("s-lost"), "{}", cells[15_001]);
        assert!(html.contains("Lost (not in the file): pages 45001–50000"));
        assert!(html.contains("big&lt;&amp;&gt;.db") && !html.contains("big<"));
    }
}
