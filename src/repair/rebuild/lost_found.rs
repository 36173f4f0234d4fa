//! Rows on pages that no table owns: the leaves of a table whose schema
//! entry is lost (or whose CREATE statement could not be run again), or
//! leaves cut off a b-tree that no table's orphan scan took. SQLite's own
//! recovery puts such rows into a `lost_and_found` table; custodian keeps
//! them, whole and with the page they came from, in its quarantine table,
//! so that nothing found in the file is dropped and a person decides.

use anyhow::Result;
use rusqlite::Connection;

use crate::format::btree::{PageSet, PageSource};
use crate::format::page::PageType;
use crate::format::record::Record;
use crate::format::salvage::{
    self, MAX_COLUMNS, OrphanScan, SalvageItem, SalvageOptions, TableShape,
};
use crate::repair::apply::QUARANTINE_TABLE;

use super::RebuildOutcome;
use super::rows::{self, SqlValue};
use super::source::Source;

/// Quarantines the rows of every table leaf page of `src` that `used`
/// does not hold.
pub(crate) fn quarantine_unowned(
    conn: &Connection,
    src: &Source,
    used: &PageSet,
    stamp: &str,
    out: &mut RebuildOutcome,
) -> Result<()> {
    let mut taken = used.clone();
    let mut buf = Vec::new();
    let mut rows_kept = 0u64;
    let mut pages = Vec::new();
    let mut rec = Record::default();
    // pages past the end of the file have no rows to find
    for pgno in 2..=src.pager.stored_page_count() {
        if taken.contains(pgno) || src.pager.read_page(pgno, &mut buf).is_err() {
            continue;
        }
        if buf.first() != Some(&(PageType::LeafTable as u8)) {
            continue;
        }
        let mut found: Vec<(i64, Vec<SqlValue>)> = Vec::new();
        let options = SalvageOptions {
            orphan_scan: OrphanScan::Never,
        };
        let stats = salvage::salvage_table_with(
            &src.pager,
            pgno,
            &TableShape::new(MAX_COLUMNS),
            &taken,
            options,
            &mut |item| {
                if let SalvageItem::Row { rowid, payload, .. }
                | SalvageItem::RowRepeated { rowid, payload, .. } = item
                    && let Some(v) = rows::record_values(&mut rec, payload, src.encoding)
                {
                    found.push((rowid, v));
                }
            },
        );
        for p in stats.pages {
            taken.insert(p);
        }
        if found.is_empty() {
            continue;
        }
        pages.push(pgno);
        for (rowid, values) in found {
            let names: Vec<String> = (0..values.len()).map(|i| format!("c{i}")).collect();
            rows::quarantine(
                conn,
                stamp,
                &format!(
                    "found on page {pgno}, which no table owns (its table's definition is lost, or the page was cut off its b-tree)"
                ),
                &format!("(page {pgno})"),
                rowid,
                &names,
                &values,
            )?;
            rows_kept += 1;
        }
    }
    if rows_kept > 0 {
        out.needs_decision.push(format!(
            "{rows_kept} rows on {} pages that no table owns (pages {}) were kept in {QUARANTINE_TABLE}: their table could not be told",
            pages.len(),
            crate::report::html::ranges(&pages)
        ));
    }
    Ok(())
}
