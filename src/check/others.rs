//! Every b-tree but the customer table's and its indexes' (those are
//! compared entry for entry by `compare.rs`): walked for structure, every
//! record read as SQLite reads it, every row of an ordinary table held to
//! its column rules (`rows.rs`), and every index's entries counted against
//! its table's rows, as SQLite's quick_check does ("wrong # of entries in
//! index"). The counts are compared only where both trees were walked
//! without damage (damage is reported on its own).
//!
//! A walk can hand one tree's entries to a [`Tap`] as well (the vanished
//! customers' merge reads the referencing column's index so).

use std::collections::{BTreeMap, BTreeSet};

use super::finding::{Code, Finding};
use super::rows::{RowRules, Tally};
use super::structure::{self, TreePages};
use super::tap::Tap;
use crate::format::btree::{self, Damage, DamageKind, IndexItem, PageSource, TableItem};
use crate::format::header::TextEncoding;
use crate::format::record::{Collation, Record, compare_values};
use crate::schema::{self, SchemaObject};

/// Decides, per tree (by root page), whether its walk feeds a [`Tap`]:
/// called with the root and the walk, it runs the walk once, with its tap or
/// with None.
pub type Tapper<'a> = dyn FnMut(u32, &mut dyn FnMut(Option<&mut dyn Tap>)) + 'a;

/// How a b-tree's records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A rowid table (also sqlite_schema).
    Table,
    /// A WITHOUT ROWID table: an index b-tree holding whole rows.
    WithoutRowid,
    /// An index; a partial index has fewer entries than its table has rows.
    Index { partial: bool },
}

struct Tree<'a> {
    name: &'a str,
    tbl_name: &'a str,
    root: u32,
    kind: Kind,
}

/// How an index b-tree's records are ordered, from `PRAGMA index_xinfo`:
/// per field compared, its collation and whether it is descending (for an
/// index every field, the rowid last; for a WITHOUT ROWID table its
/// primary key's). Keyed by root page; a tree without one (a collation
/// custodian does not have) is not held to an order.
pub type KeyOrders = BTreeMap<u32, Vec<(Collation, bool)>>;

/// Holds an index walk's entries to their key order: each entry must sort
/// after the one before it, as SQLite's lookups assume. SQLite's
/// quick_check does not test this (its integrity_check finds it as rows
/// "missing from index"); a page of an index written over another of the
/// same index breaks it and nothing else.
pub(crate) struct OrderCheck<'a> {
    fields: &'a [(Collation, bool)],
    enc: TextEncoding,
    prev: Vec<u8>,
    prev_rec: Record,
    cur: Record,
    have_prev: bool,
}

/// At most this many out-of-order entries are kept as damage (the finding
/// counts them; the rest would only say the same).
pub(crate) const ORDER_DAMAGE_KEPT: usize = 1000;

impl<'a> OrderCheck<'a> {
    pub(crate) fn new(fields: &'a [(Collation, bool)], enc: TextEncoding) -> Self {
        OrderCheck {
            fields,
            enc,
            prev: Vec::new(),
            prev_rec: Record::default(),
            cur: Record::default(),
            have_prev: false,
        }
    }

    /// The next entry in walk order; the damage when it does not sort after
    /// the previous one. An entry that cannot be parsed breaks the chain
    /// (reported on its own).
    pub(crate) fn entry(&mut self, payload: &[u8], pgno: u32, n: u64) -> Option<Damage> {
        if self.cur.parse(payload).is_err() || self.cur.len() < self.fields.len() {
            self.have_prev = false;
            return None;
        }
        let mut out = None;
        if self.have_prev {
            let mut ord = std::cmp::Ordering::Equal;
            for (i, &(coll, desc)) in self.fields.iter().enumerate() {
                let (Some(a), Some(b)) =
                    (self.prev_rec.get(&self.prev, i), self.cur.get(payload, i))
                else {
                    break;
                };
                let o = compare_values(&a, &b, coll, self.enc);
                ord = if desc { o.reverse() } else { o };
                if ord.is_ne() {
                    break;
                }
            }
            if ord.is_ge() {
                out = Some(Damage {
                    pgno,
                    parent: None,
                    kind: DamageKind::KeyOrder,
                    detail: format!(
                        "page {pgno}: entry {n} does not sort after the entry before it (lookups can miss it)"
                    ),
                });
            }
        }
        self.prev.clear();
        self.prev.extend_from_slice(payload);
        std::mem::swap(&mut self.prev_rec, &mut self.cur);
        self.have_prev = true;
        out
    }

    /// Damage met in the walk: the next entry is not compared with the
    /// one before it (the entries between are unknown).
    pub(crate) fn break_chain(&mut self) {
        self.have_prev = false;
    }
}

/// What one walk found.
struct Walked {
    damage: Vec<Damage>,
    pages: Vec<u32>,
    /// Rows or entries met (whole or not).
    count: u64,
    /// Pages holding records SQLite would call corrupt, and the first reason.
    bad_records: Vec<u32>,
    first_bad: Option<String>,
    tally: Tally,
}

/// The trees to walk: sqlite_schema and every table and index with a root
/// page, but those in `skip` (the customer table's).
fn trees<'a>(objects: &'a [SchemaObject], skip: &BTreeSet<u32>) -> Vec<Tree<'a>> {
    let mut out = vec![Tree {
        name: "sqlite_schema",
        tbl_name: "sqlite_schema",
        root: 1,
        kind: Kind::Table,
    }];
    for o in objects {
        let Ok(root) = u32::try_from(o.rootpage) else {
            continue;
        };
        if root == 0 || skip.contains(&root) {
            continue;
        }
        let kind = match o.kind.as_str() {
            "index" => Kind::Index {
                partial: schema::is_partial_index(o),
            },
            "table" if o.sql.as_deref().is_some_and(schema::is_without_rowid) => Kind::WithoutRowid,
            "table" => Kind::Table,
            _ => continue,
        };
        out.push(Tree {
            name: &o.name,
            tbl_name: &o.tbl_name,
            root,
            kind,
        });
    }
    out
}

fn walk(
    src: &dyn PageSource,
    t: &Tree<'_>,
    rules: Option<&RowRules>,
    order: Option<&[(Collation, bool)]>,
    mut tap: Option<&mut dyn Tap>,
) -> Walked {
    let enc = src.text_encoding();
    let mut w = Walked {
        damage: Vec::new(),
        pages: Vec::new(),
        count: 0,
        bad_records: Vec::new(),
        first_bad: None,
        tally: Tally::default(),
    };
    let mut rec = Record::default();
    // Reads one record as SQLite does; holds a row to its table's rules.
    let mut record = |w: &mut Walked,
                      tap: &mut Option<&mut dyn Tap>,
                      payload: &[u8],
                      pgno: u32,
                      row: &dyn Fn() -> String| {
        w.count += 1;
        let parsed = rec.parse(payload);
        if parsed.is_ok()
            && let Some(t) = tap
        {
            t.entry(&rec, payload);
        }
        let problem = parsed.and_then(|()| rec.check_stored());
        if let Err(e) = problem {
            w.bad_records.push(pgno);
            w.first_bad
                .get_or_insert_with(|| format!("page {pgno}, {}: {e}", row()));
            return;
        }
        if let Some(r) = rules {
            let tally = &mut w.tally;
            r.check(&rec, payload, enc, &mut |c, v| tally.add(c, v, row));
        }
    };
    let stats = match t.kind {
        Kind::Table => btree::walk_table(src, t.root, &mut |item| match item {
            TableItem::Row {
                rowid,
                payload,
                pgno,
            } => record(&mut w, &mut tap, payload, pgno, &|| format!("row {rowid}")),
            TableItem::RowDamaged { .. } => w.count += 1,
            TableItem::Damage(d) => {
                if let Some(t) = &mut tap {
                    t.damage();
                }
                w.damage.push(d)
            }
        }),
        Kind::WithoutRowid | Kind::Index { .. } => {
            let mut n = 0u64;
            let mut order = order.map(|f| OrderCheck::new(f, enc));
            let mut misordered = 0usize;
            btree::walk_index(src, t.root, &mut |item| match item {
                IndexItem::Entry { payload, pgno, .. } => {
                    n += 1;
                    record(&mut w, &mut tap, payload, pgno, &|| format!("entry {n}"));
                    if let Some(d) = order.as_mut().and_then(|o| o.entry(payload, pgno, n)) {
                        misordered += 1;
                        if misordered <= ORDER_DAMAGE_KEPT {
                            w.damage.push(d);
                        }
                    }
                }
                IndexItem::Damage(d) => {
                    if let Some(t) = &mut tap {
                        t.damage();
                    }
                    if let Some(o) = order.as_mut() {
                        o.break_chain();
                    }
                    w.damage.push(d)
                }
            })
        }
    };
    w.pages = stats.pages;
    w
}

/// Walks every tree but the customer table's, each through `tapper`:
/// (findings, pages per tree).
pub fn walk_other_trees(
    src: &dyn PageSource,
    objects: &[SchemaObject],
    customer_roots: &BTreeSet<u32>,
    rules: &BTreeMap<String, RowRules>,
    orders: &KeyOrders,
    tapper: &mut Tapper<'_>,
) -> (Vec<Finding>, Vec<TreePages>) {
    let mut findings = Vec::new();
    let mut trees_out = Vec::new();
    // (count, walked sound) per tree name, for the entry counts
    let mut counts: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
    let list = trees(objects, customer_roots);
    for t in &list {
        let table_rules = match t.kind {
            Kind::Table | Kind::WithoutRowid => rules.get(t.name),
            Kind::Index { .. } => None,
        };
        let order = match t.kind {
            Kind::Table => None,
            Kind::WithoutRowid | Kind::Index { .. } => orders.get(&t.root).map(Vec::as_slice),
        };
        let mut walked = None;
        tapper(t.root, &mut |tap| {
            walked = Some(walk(src, t, table_rules, order, tap))
        });
        // a tapper that does not run the walk still gets the tree walked
        let w = walked.unwrap_or_else(|| walk(src, t, table_rules, order, None));
        findings.extend(structure::damage_findings(t.name, t.tbl_name, &w.damage));
        if let Some(why) = &w.first_bad {
            let n = w.bad_records.len();
            findings.push(
                Finding::error(
                    Code::RecordDamaged,
                    format!(
                        "{n} records of {} are corrupt to SQLite (the first: {why})",
                        t.name
                    ),
                )
                .object(t.name)
                .table(t.tbl_name)
                .count(n as u64)
                .pages(w.bad_records.clone()),
            );
        }
        if let Some(r) = table_rules
            && !w.tally.is_empty()
        {
            findings.extend(w.tally.findings(r));
        }
        counts.insert(
            t.name,
            (w.count, w.damage.is_empty() && w.bad_records.is_empty()),
        );
        trees_out.push(TreePages::new(t.name, w.pages, &w.damage));
    }
    findings.extend(count_findings(&list, &counts));
    (findings, trees_out)
}

/// An index whose entry count differs from its table's row count.
fn count_findings(list: &[Tree<'_>], counts: &BTreeMap<&str, (u64, bool)>) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in list {
        if t.kind != (Kind::Index { partial: false }) {
            continue;
        }
        let (Some(&(entries, sound_i)), Some(&(rows, sound_t))) =
            (counts.get(t.name), counts.get(t.tbl_name))
        else {
            continue;
        };
        if !sound_i || !sound_t || entries == rows {
            continue;
        }
        let code = if entries < rows {
            Code::IndexEntryMissing
        } else {
            Code::IndexEntrySurplus
        };
        out.push(
            Finding::error(
                code,
                format!(
                    "{} has {entries} entries but its table {} has {rows} rows",
                    t.name, t.tbl_name
                ),
            )
            .object(t.name)
            .table(t.tbl_name)
            .count(entries.abs_diff(rows)),
        );
    }
    out
}
