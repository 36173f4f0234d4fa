//! Pointer maps of auto_vacuum / incremental_vacuum files: every page's
//! entry must say what the page is (a root, a child of its parent, an
//! overflow page after its predecessor, a free page), as SQLite's
//! integrity_check demands. A wrong entry is harmless to lookups but makes
//! the next commit that moves pages (auto_vacuum) corrupt the file.

use super::finding::{Code, Finding};
use crate::format::accounting::{self, PtrmapMismatch};
use crate::format::btree::PageSource;
use crate::format::freelist::{PtrmapEntry, PtrmapType};

/// The finding for `src`'s pointer maps, given every b-tree root and the
/// freelist's pages; `None` when every entry is right. Trees are walked
/// again here for their parent links; damage in them is reported by the
/// structure walks, not here.
pub fn check(src: &dyn PageSource, roots: &[u32], free: &[u32]) -> Option<Finding> {
    let mut roles = accounting::page_roles(src, roots);
    roles.mark_free(free);
    let wrong = accounting::ptrmap_mismatches(src, &roles);
    let first = wrong.first()?;
    let msg = format!(
        "{} pointer-map entries do not match their pages, the first: {}",
        wrong.len(),
        describe(first)
    );
    Some(
        Finding::error(Code::PtrmapDamaged, msg)
            .count(wrong.len() as u64)
            .pages(wrong.iter().map(|m| m.map).collect()),
    )
}

fn describe(m: &PtrmapMismatch) -> String {
    let found = m.found.map_or("not a valid entry".into(), role);
    format!(
        "page {}'s entry on pointer-map page {} says {found}; the page is {}",
        m.pgno,
        m.map,
        role(m.expected)
    )
}

fn role(e: PtrmapEntry) -> String {
    match e.kind {
        PtrmapType::RootPage => "a b-tree root".into(),
        PtrmapType::FreePage => "a free page".into(),
        PtrmapType::Overflow1 => format!("the first overflow page of a cell on page {}", e.parent),
        PtrmapType::Overflow2 => format!("an overflow page after page {}", e.parent),
        PtrmapType::Btree => format!("a b-tree page under page {}", e.parent),
    }
}

/// The header's side of the auto-vacuum bookkeeping, as SQLite's
/// quick_check checks it: in an auto-vacuum file the largest root page it
/// records is the schema's largest root page (`roots`, sqlite_schema's page
/// 1 included); in any other file the incremental-vacuum flag is not set.
pub fn header_findings(
    header: &crate::format::header::DatabaseHeader,
    roots: &[u32],
) -> Vec<Finding> {
    let max_root = roots.iter().copied().max().unwrap_or(0).max(1);
    let problem = if !header.is_auto_vacuum() {
        (header.incremental_vacuum != 0).then(|| {
            "the header sets incremental_vacuum, but its largest root page is 0 (no auto-vacuum)"
                .to_string()
        })
    } else {
        (header.largest_root_page != max_root).then(|| {
            format!(
                "the header's largest root page is {}, the schema's is {max_root}",
                header.largest_root_page
            )
        })
    };
    problem
        .map(|p| Finding::error(Code::PtrmapDamaged, p).pages(vec![1]))
        .into_iter()
        .collect()
}
