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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub strategy: Strategy,
    /// Indexes emptied and rebuilt from their table.
    pub rebuild_indexes: Vec<String>,
    /// Their root pages (kept, rewritten as empty leaves).
    #[serde(skip)]
    pub empty_roots: Vec<u32>,
    /// Pages put on the freelist (zeroed): the rebuilt indexes' other pages
    /// and pages no object owns.
    pub free_pages: Vec<u32>,
    pub recreate_indexes: Vec<IndexToRecreate>,
    pub dedupe: Vec<Dedupe>,
}

fn code_name(c: Code) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Codes that say a table's own pages or the file are damaged.
fn is_table_level(code: Code) -> bool {
    matches!(
        code,
        Code::HeaderInvalid
            | Code::FileTruncated
            | Code::SchemaUnreadable
            | Code::RowsUnreadable
            | Code::PageReused
            | Code::FreelistDamaged
    )
}

/// Codes that put an index in doubt.
fn is_index_level(code: Code) -> bool {
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

pub fn plan(
    before: &Report,
    live: &[SchemaObject],
    snapshot: Option<(&str, &[SchemaObject])>,
    auto_vacuum: bool,
) -> Plan {
    let index_names: BTreeSet<&str> = live
        .iter()
        .filter(|o| o.kind == "index")
        .map(|o| o.name.as_str())
        .collect();
    let mut rebuild: BTreeSet<String> = BTreeSet::new();
    let mut not_built: Vec<String> = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    let mut dedupe: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &before.findings {
        if f.severity != Severity::Error {
            continue;
        }
        let obj = f.object.as_deref().unwrap_or("");
        if matches!(f.code, Code::HeaderInvalid | Code::SchemaUnreadable) {
            not_built.push(format!("{} ({})", code_name(f.code), f.message));
        } else if is_table_level(f.code) {
            tables.push(format!("{}: {}", code_name(f.code), f.message));
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
        } else if f.code == Code::SqliteQuickCheck {
            not_built.push(format!(
                "SQLite reports damage custodian cannot place: {}",
                f.message
            ));
        }
    }
    // pages: from the page map
    let mut free: BTreeSet<u32> = BTreeSet::new();
    let mut roots = Vec::new();
    if let Some(map) = &before.page_map {
        for r in &map.runs {
            let owner =
                r.2.and_then(|o| map.owners.get(o as usize))
                    .map(String::as_str);
            match (owner, r.3) {
                (None, PageState::Unused) => free.extend(r.0..=r.1),
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
    let nothing = rebuild.is_empty()
        && free.is_empty()
        && recreate.is_empty()
        && not_built.is_empty()
        && tables.is_empty();
    let strategy = if nothing {
        Strategy::Nothing
    } else if !not_built.is_empty() {
        Strategy::NotBuilt {
            reason: format!(
                "repairing a damaged database header or schema is not built yet: {}",
                not_built.join("; ")
            ),
        }
    } else if !tables.is_empty() {
        tables.dedup();
        Strategy::Rebuild { reasons: tables }
    } else if auto_vacuum && !free.is_empty() {
        Strategy::NotBuilt {
            reason:
                "freeing pages of an auto_vacuum database (pointer-map upkeep) is not built yet"
                    .into(),
        }
    } else if !free.is_empty() && recreate.is_empty() && rebuild.is_empty() {
        // Only orphaned pages and no snapshot that explains them.
        if snapshot.is_none() {
            Strategy::NotBuilt {
                reason: "pages belong to no object and no good snapshot has an index definition to recreate; \
                         give a snapshot with --snapshot"
                    .into(),
            }
        } else {
            Strategy::PatchCopy
        }
    } else {
        Strategy::PatchCopy
    };
    Plan {
        strategy,
        rebuild_indexes: rebuild.into_iter().collect(),
        empty_roots: roots,
        free_pages: free.into_iter().collect(),
        recreate_indexes: recreate,
        dedupe: dedupe
            .into_iter()
            .map(|(index, keys)| Dedupe {
                index,
                keys: keys.into_iter().collect(),
            })
            .collect(),
    }
}
