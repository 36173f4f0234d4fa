//! The planner: pure. Findings of the check + the schemas (live and the
//! newest good snapshot's) → what to do. `--dry-run` prints this plan;
//! `apply.rs` executes it and nothing else decides.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::check::finding::{Code, Severity};
use crate::check::structure::PageState;
use crate::report::Report;
use crate::schema::SchemaObject;

/// How the repaired database is made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The database is healthy: nothing changes.
    Nothing,
    /// A copy of the file whose damaged indexes are emptied page by page and
    /// rebuilt by SQLite from the table: no damaged page survives.
    PatchCopy,
    /// Table pages are damaged: a new database is built from the schema,
    /// every row that survives anywhere in the file, and the snapshot's rows
    /// for those that surviving index entries name but no page holds.
    Rebuild { reasons: Vec<String> },
    /// The repair needs a step that is not built yet; nothing is changed.
    NotBuilt { reason: String },
    /// The only damage is customers that other tables name but that no page
    /// holds and the newest good snapshot cannot give back — what a repair
    /// with losses leaves behind, having listed them as unrecoverable. No
    /// step can restore them: nothing is changed and no backup taken; the
    /// repair names them as unrecoverable again and exits 1, so repairing
    /// twice gives the same result as repairing once (DESIGN rule 6).
    LossesAccounted { customer_ids: Vec<String> },
}

/// A step that mends the file's frame — the database header, the schema
/// table — on a copy of the file. Without a sound frame SQLite refuses the
/// whole file and custodian's check cannot look past it, so these steps come
/// first; the rest of the repair is planned from the check of the mended
/// copy. Each needs the newest good snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameStep {
    /// The 100-byte header is rebuilt from the snapshot's header (page
    /// size, reserved bytes, text encoding, vacuum mode, user_version,
    /// application_id, …) once the pages show that its page size and
    /// reserved bytes are theirs; the page count comes from the file's
    /// length and the freelist is listed anew from the b-trees.
    Header { snapshot: String },
    /// The schema table is written anew from the snapshot's schema. The
    /// root page of each table and index in the damaged file is found from
    /// its pages: b-tree kind, record shape, rows that agree with the
    /// snapshot's, index keys that match the rows of their table. A table
    /// whose root cannot be told is left with an unreadable root, so that
    /// the rebuild salvages its rows by record shape; an index whose root
    /// cannot be told starts empty and is rebuilt from its table.
    Schema { snapshot: String },
}

/// How the pages no b-tree uses are listed once the copy is edited: the
/// freelist, and in an auto_vacuum / incremental_vacuum file the pointer
/// maps.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageLists {
    /// The freelist is sound and the file has no pointer maps: freed pages
    /// are chained onto the existing freelist.
    Append,
    /// The freelist and the pointer maps are written anew from the b-trees
    /// of the edited copy: every page no tree uses is free, and every
    /// pointer-map entry says what its page now is. For a damaged freelist
    /// or pointer map, and for any page freed in an auto_vacuum file.
    Rebuild { reasons: Vec<String> },
}

/// Rows that share a key under a UNIQUE index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dedupe {
    pub index: String,
    /// The keys (customer IDs when the index is on the ID column) named by the check.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexToRecreate {
    pub name: String,
    pub sql: String,
    pub snapshot: String,
}

/// A row whose stored ID is the damaged side: the ID index (and the
/// snapshot, or the ID rule) say what it should hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreValue {
    pub rowid: i64,
    /// What the row holds now.
    pub stored: String,
    /// What it is restored to.
    pub restored: String,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Steps that mend the header or the schema table on a copy first; the
    /// rest of this plan was made from the check of that copy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame: Vec<FrameStep>,
    /// What mending the frame did on the scratch copy (the roots found, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame_mended: Vec<String>,
    pub strategy: Strategy,
    /// Indexes emptied and rebuilt from their table.
    pub rebuild_indexes: Vec<String>,
    /// Their root pages (kept, rewritten as empty leaves).
    #[serde(skip)]
    pub empty_roots: Vec<u32>,
    /// Pages put on the freelist (zeroed): the rebuilt indexes' other pages
    /// and pages no object owns.
    pub free_pages: Vec<u32>,
    /// Pages no object owns (a b-tree whose definition is gone from the
    /// schema): freed with the rest when they hold no row; when some hold
    /// a table's rows the database is rebuilt, and those rows are kept in
    /// custodian_quarantine.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unowned_pages: Vec<u32>,
    /// How the freelist (and pointer maps) are written afterwards.
    pub page_lists: PageLists,
    pub recreate_indexes: Vec<IndexToRecreate>,
    pub dedupe: Vec<Dedupe>,
    /// Rows whose stored ID is restored before the index is rebuilt.
    pub restore_values: Vec<RestoreValue>,
    /// What custodian could not decide alone.
    pub needs_decision: Vec<String>,
}

/// What the planner may know beyond the findings: the snapshot's ID of a
/// row (by rowid), and the configured ID rule.
pub struct Evidence<'a> {
    pub snapshot_id_of: &'a dyn Fn(i64) -> Option<String>,
    pub id_rule: Option<&'a crate::config::IdRule>,
    /// Whether another table (a transaction) names this customer ID.
    pub referenced: &'a dyn Fn(&str) -> Option<String>,
    /// The ID column's index names (whose key is the ID alone).
    pub id_indexes: &'a [String],
    /// Whether the newest good snapshot has a customer with this ID that
    /// can be put back: no live row holds one of its unique values.
    pub restorable: &'a dyn Fn(&str) -> bool,
    /// Of the pages no object owns, the table leaves that hold rows (a
    /// table whose definition is lost): they must be kept, not freed.
    pub unowned_rows: &'a [u32],
}

/// The customers that no step of a repair can bring back, when they are
/// the only damage: every error is `customer_vanished` with its whole list
/// of IDs (no other table-level damage, no page of any kind to free or
/// rebuild — the caller checks the rest of the plan), and the newest good
/// snapshot has none of them that could be put back (a live row may hold
/// one's card number: its restore would fail again). None when a rebuild
/// could restore one, or the findings say anything else.
fn accounted_losses(before: &Report, ev: &Evidence<'_>) -> Option<Vec<String>> {
    let mut ids = BTreeSet::new();
    for f in before
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
    {
        if f.code != Code::CustomerVanished
            || f.customer_ids.is_empty()
            || f.count != f.customer_ids.len() as u64
        {
            return None;
        }
        ids.extend(f.customer_ids.iter().cloned());
    }
    if ids.is_empty() || ids.iter().any(|id| (ev.restorable)(id)) {
        return None;
    }
    Some(ids.into_iter().collect())
}

/// Where an index entry and its row disagree on the ID, decide which side
/// is damaged. The row is restored only on evidence: the snapshot's row
/// holds what the index says, or the stored ID breaks the ID rule while the
/// index's follows it, or other tables (transactions) name the index's ID
/// and not the stored one. Otherwise a human decides.
fn decide_mismatches(before: &Report, ev: &Evidence<'_>) -> (Vec<RestoreValue>, Vec<String>) {
    let mut stored_by_rowid: BTreeMap<i64, String> = BTreeMap::new();
    for f in before
        .findings
        .iter()
        .filter(|f| f.code == Code::IndexEntryMissing)
    {
        if ev
            .id_indexes
            .iter()
            .any(|i| Some(i.as_str()) == f.object.as_deref())
        {
            for e in &f.entries {
                if let (Some(r), Some(id)) = (e.rowid, &e.customer_id) {
                    stored_by_rowid.insert(r, id.clone());
                }
            }
        }
    }
    let mut restore = Vec::new();
    let mut decide = Vec::new();
    for f in before
        .findings
        .iter()
        .filter(|f| f.code == Code::IndexKeyMismatch)
    {
        if !ev
            .id_indexes
            .iter()
            .any(|i| Some(i.as_str()) == f.object.as_deref())
        {
            continue;
        }
        for e in &f.entries {
            let (Some(r), Some(indexed)) = (e.rowid, &e.customer_id) else {
                continue;
            };
            let Some(stored) = stored_by_rowid.get(&r) else {
                continue;
            };
            if stored == indexed {
                continue;
            }
            let snap = (ev.snapshot_id_of)(r);
            let evidence = if snap.as_deref() == Some(indexed.as_str()) {
                Some(format!(
                    "the snapshot's row {r} holds {indexed}, as the ID index does"
                ))
            } else if let Some(by) = (ev.referenced)(indexed)
                && (ev.referenced)(stored).is_none()
            {
                Some(format!(
                    "{by} names {indexed}, as the ID index does; nothing names {stored}"
                ))
            } else if let Some(rule) = ev.id_rule
                && rule.violation(stored).is_some()
                && rule.violation(indexed).is_none()
            {
                Some(format!(
                    "{stored} breaks the ID rule; {indexed} (the ID index's) follows it"
                ))
            } else {
                None
            };
            match evidence {
                Some(evidence) => restore.push(RestoreValue {
                    rowid: r,
                    stored: stored.clone(),
                    restored: indexed.clone(),
                    evidence,
                }),
                None => decide.push(format!(
                    "row {r} holds customer ID {stored} but the ID index says {indexed}, and no \
                     snapshot or ID rule says which is right: the index was rebuilt from the row \
                     ({stored}); check the customer's record"
                )),
            }
        }
    }
    (restore, decide)
}

fn code_name(c: Code) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Codes that say a table's own pages or the file are damaged: the
/// rebuild (which reads the pages under a header rebuilt from them, and the
/// schema from page 1's b-tree when SQLite cannot).
fn is_table_level(code: Code) -> bool {
    matches!(
        code,
        Code::HeaderInvalid
            | Code::SchemaUnreadable
            | Code::CustomerVanished
            | Code::FileTruncated
            | Code::RowsUnreadable
            | Code::PageReused
    )
}

/// Codes that say the lists of pages are damaged: the freelist, the
/// pointer maps. Rebuilt from the b-trees; no row is at stake.
fn is_page_list(code: Code) -> bool {
    matches!(code, Code::FreelistDamaged | Code::PtrmapDamaged)
}

/// Codes that put an index in doubt.
pub(super) fn is_index_level(code: Code) -> bool {
    matches!(
        code,
        Code::PageDamaged
            | Code::CellDamaged
            | Code::ChildPointerInvalid
            | Code::RecordDamaged
            | Code::KeyOrder
            | Code::IndexEntryMissing
            | Code::IndexEntrySurplus
            | Code::IndexKeyMismatch
            | Code::DuplicateKey
            | Code::LookupWrong
    )
}

/// The frame steps the check's findings call for: a damaged header, a
/// schema table SQLite cannot read. Only with a good snapshot (without
/// one the plan says what is not built).
pub fn frame_steps(before: &Report, snapshot: Option<&str>) -> Vec<FrameStep> {
    let Some(snapshot) = snapshot else {
        return Vec::new();
    };
    let has = |c: Code| {
        before
            .findings
            .iter()
            .any(|f| f.code == c && f.severity == Severity::Error)
    };
    let mut steps = Vec::new();
    if has(Code::HeaderInvalid) {
        steps.push(FrameStep::Header {
            snapshot: snapshot.to_string(),
        });
    }
    if has(Code::SchemaUnreadable) {
        steps.push(FrameStep::Schema {
            snapshot: snapshot.to_string(),
        });
    }
    steps
}

pub fn plan(
    before: &Report,
    live: &[SchemaObject],
    snapshot: Option<(&str, &[SchemaObject])>,
    auto_vacuum: bool,
    evidence: &Evidence<'_>,
) -> Plan {
    let (restore_values, mut needs_decision) = decide_mismatches(before, evidence);
    let index_names: BTreeSet<&str> = live
        .iter()
        .filter(|o| o.kind == "index")
        .map(|o| o.name.as_str())
        .collect();
    let mut rebuild: BTreeSet<String> = BTreeSet::new();
    let mut tables: Vec<String> = Vec::new();
    let mut lists: Vec<String> = Vec::new();
    let mut dedupe: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &before.findings {
        if f.severity != Severity::Error {
            continue;
        }
        let obj = f.object.as_deref().unwrap_or("");
        if is_table_level(f.code) {
            tables.push(format!("{}: {}", code_name(f.code), f.message));
        } else if is_page_list(f.code) {
            lists.push(format!("{}: {}", code_name(f.code), f.message));
        } else if is_index_level(f.code) {
            if index_names.contains(obj) {
                rebuild.insert(obj.to_string());
                if f.code == Code::DuplicateKey {
                    dedupe
                        .entry(obj.to_string())
                        .or_default()
                        .extend(f.customer_ids.iter().cloned());
                }
            } else {
                tables.push(format!("{} in {obj}", code_name(f.code)));
            }
        } else if f.code == Code::WalInvalid {
            // transactions committed after a damaged -wal frame: SQLite
            // replays none of them, and the repair (which checkpoints what
            // SQLite replays) cannot either; the backup keeps the -wal
            tables.push(format!("{}: {}", code_name(f.code), f.message));
            needs_decision.push(format!(
                "{}: not recovered (the backup keeps the -wal as it was)",
                f.message
            ));
        } else if f.code == Code::SqliteQuickCheck {
            tables.push(format!(
                "SQLite's own check reports damage custodian's checks cannot place: {}",
                f.message
            ));
        } else if !matches!(
            f.code,
            Code::PageUnused | Code::CouldNotRun | Code::TableMissing | Code::IndexNotCompared
        ) {
            // an error no cheaper step mends: the rebuild, never "nothing"
            tables.push(format!("{}: {}", code_name(f.code), f.message));
        }
    }
    // pages: from the page map
    let mut free: BTreeSet<u32> = BTreeSet::new();
    let mut unowned: BTreeSet<u32> = BTreeSet::new();
    let mut roots = Vec::new();
    if let Some(map) = &before.page_map {
        for r in &map.runs {
            let owner =
                r.2.and_then(|o| map.owners.get(o as usize))
                    .map(String::as_str);
            match (owner, r.3) {
                (None, PageState::Unused) => {
                    free.extend(r.0..=r.1);
                    unowned.extend(r.0..=r.1);
                }
                (Some(o), _) if rebuild.contains(o) => free.extend(r.0..=r.1),
                _ => {}
            }
        }
    }
    for name in &rebuild {
        if let Some(o) = live.iter().find(|o| o.kind == "index" && &o.name == name) {
            let root = u32::try_from(o.rootpage).unwrap_or(0);
            free.remove(&root);
            roots.push(root);
        }
    }
    // index definitions gone from the schema: from the snapshot
    let mut recreate = Vec::new();
    if let Some((path, snap)) = snapshot {
        for o in snap.iter().filter(|o| o.kind == "index") {
            let Some(sql) = &o.sql else { continue };
            let table_live = live
                .iter()
                .any(|l| l.kind == "table" && l.name == o.tbl_name);
            if table_live && !index_names.contains(o.name.as_str()) {
                recreate.push(IndexToRecreate {
                    name: o.name.clone(),
                    sql: sql.clone(),
                    snapshot: path.to_string(),
                });
            }
        }
    }
    // rows on pages no object owns are kept (in custodian_quarantine, by
    // the rebuild), never freed with the pages; a rebuild for any other
    // reason keeps them too (and where the schema could not be read, every
    // page looks unowned: the rebuild tells them apart)
    if !evidence.unowned_rows.is_empty() && tables.is_empty() {
        tables.push(format!(
            "{} pages no object owns hold table rows (pages {}): a table whose definition is \
             lost; its rows are kept in {}",
            evidence.unowned_rows.len(),
            crate::report::html::ranges(evidence.unowned_rows),
            crate::repair::apply::QUARANTINE_TABLE
        ));
    }
    if auto_vacuum && !free.is_empty() {
        lists.push("auto_vacuum: the pointer maps follow the freed pages".into());
    }
    let page_lists = if lists.is_empty() {
        PageLists::Append
    } else {
        PageLists::Rebuild { reasons: lists }
    };
    let nothing = rebuild.is_empty()
        && free.is_empty()
        && recreate.is_empty()
        && tables.is_empty()
        && page_lists == PageLists::Append;
    let only_tables = rebuild.is_empty()
        && free.is_empty()
        && recreate.is_empty()
        && page_lists == PageLists::Append
        && restore_values.is_empty()
        && needs_decision.is_empty();
    let accounted = if only_tables {
        accounted_losses(before, evidence)
    } else {
        None
    };
    let strategy = if nothing {
        Strategy::Nothing
    } else if let Some(customer_ids) = accounted {
        Strategy::LossesAccounted { customer_ids }
    } else if !tables.is_empty() {
        tables.dedup();
        Strategy::Rebuild { reasons: tables }
    } else {
        // pages no object owns that hold no row (an index whose definition
        // is gone, a zeroed page) are freed like any other: an index's
        // entries are its table's, and its definition, if no snapshot
        // recreates it, is named under `without_snapshot`
        Strategy::PatchCopy
    };
    Plan {
        frame: frame_steps(before, snapshot.map(|(p, _)| p)),
        frame_mended: Vec::new(),
        strategy,
        rebuild_indexes: rebuild.into_iter().collect(),
        empty_roots: roots,
        free_pages: free.into_iter().collect(),
        unowned_pages: unowned.into_iter().collect(),
        page_lists,
        recreate_indexes: recreate,
        dedupe: dedupe
            .into_iter()
            .map(|(index, keys)| Dedupe {
                index,
                keys: keys.into_iter().collect(),
            })
            .collect(),
        restore_values,
        needs_decision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::finding::Finding;

    fn report(findings: Vec<Finding>) -> Report {
        let mut r = crate::report::failed_report(
            "repair",
            std::path::Path::new("pos.db"),
            &anyhow::anyhow!("test"),
        );
        r.findings = findings;
        r
    }

    fn vanished(ids: &[&str]) -> Finding {
        let mut f = Finding::new(Code::CustomerVanished, Severity::Error, "vanished");
        f.customer_ids = ids.iter().map(|s| s.to_string()).collect();
        f.count = ids.len() as u64;
        f
    }

    fn losses(findings: Vec<Finding>, snapshot_has: &[&str]) -> Option<Vec<String>> {
        let restorable = |id: &str| snapshot_has.contains(&id);
        let ev = Evidence {
            snapshot_id_of: &|_| None,
            id_rule: None,
            referenced: &|_| None,
            id_indexes: &[],
            restorable: &restorable,
            unowned_rows: &[],
        };
        accounted_losses(&report(findings), &ev)
    }

    #[test]
    fn only_customers_no_source_holds_are_losses_already_accounted() {
        let ids = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // vanished customers no snapshot has, and nothing else: accounted
        assert_eq!(
            losses(vec![vanished(&["C2", "C1"])], &[]),
            ids(&["C1", "C2"])
        );
        // a warning beside them changes nothing
        let w = Finding::new(Code::IdFormat, Severity::Warning, "format");
        assert_eq!(losses(vec![vanished(&["C1"]), w], &["C9"]), ids(&["C1"]));
        // the snapshot has one of them: a rebuild restores it
        assert_eq!(losses(vec![vanished(&["C1", "C2"])], &["C2"]), None);
        // a capped list cannot be accounted
        let mut capped = vanished(&["C1"]);
        capped.count = 2;
        assert_eq!(losses(vec![capped], &[]), None);
        // any other error is damage to repair
        let other = Finding::new(Code::RowsUnreadable, Severity::Error, "rows");
        assert_eq!(losses(vec![vanished(&["C1"]), other], &[]), None);
        // no error at all is not a loss
        assert_eq!(losses(Vec::new(), &[]), None);
    }
}
