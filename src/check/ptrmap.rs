//! Pointer maps of auto_vacuum / incremental_vacuum files: every page's
//! entry must say what the page is (a root, a child of its parent, an
//! overflow page after its predecessor, a free page), as SQLite's
//! integrity_check demands. A wrong entry is harmless to lookups but makes
//! the next commit that moves pages (auto_vacuum) corrupt the file.

use super::finding::{Code, Finding};
use crate::format::accounting::{self, PageRoles, PtrmapMismatch};
use crate::format::btree::PageSource;
use crate::format::freelist::{PtrmapEntry, PtrmapType};
use crate::format::header::DatabaseHeader;

/// Whether the file has pointer maps, and the pages' roles when they were
/// computed: the header's largest root page says so, unless the pages say
/// otherwise (`accounting::pointer_maps_shown`: a pointer map at page 2
/// that agrees with the b-trees, or a b-tree page there). `page2_used`:
/// whether a b-tree walk or the freelist reached page 2 (a file whose
/// header says "no auto-vacuum" and whose page 2 is in use is taken at its
/// word, without walking the trees again).
pub fn pointer_maps(
    src: &dyn PageSource,
    header: &DatabaseHeader,
    roots: &[u32],
    page2_used: bool,
) -> (bool, Option<PageRoles>) {
    if !header.is_auto_vacuum() && page2_used {
        return (false, None);
    }
    let roles = accounting::page_roles(src, roots);
    let maps = accounting::pointer_maps_shown(src, &roles).unwrap_or(header.is_auto_vacuum());
    (maps, Some(roles))
}

/// The finding for `src`'s pointer maps, given every page's role in the
/// b-trees and the freelist's pages; `None` when every entry is right.
/// Damage in the trees is reported by the structure walks, not here.
pub fn check(src: &dyn PageSource, mut roles: PageRoles, free: &[u32]) -> Option<Finding> {
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
/// `pointer_maps` is what [`pointer_maps`] found: where the header's
/// largest root page says otherwise, the header is the damaged side.
pub fn header_findings(header: &DatabaseHeader, roots: &[u32], pointer_maps: bool) -> Vec<Finding> {
    let max_root = roots.iter().copied().max().unwrap_or(0).max(1);
    let problem = match (header.is_auto_vacuum(), pointer_maps) {
        (false, true) => Some(format!(
            "the header's largest root page is 0 (no auto-vacuum), but page 2 is a pointer map \
             that agrees with the b-trees: the file is {}, and its largest root page is {max_root}",
            if header.incremental_vacuum != 0 {
                "incremental_vacuum"
            } else {
                "auto_vacuum full"
            }
        )),
        (true, false) => Some(format!(
            "the header's largest root page is {} (auto-vacuum), but page 2 is a b-tree page: \
             the file has no pointer maps, and its largest root page is 0",
            header.largest_root_page
        )),
        (false, false) => (header.incremental_vacuum != 0).then(|| {
            "the header sets incremental_vacuum, but its largest root page is 0 (no auto-vacuum)"
                .to_string()
        }),
        (true, true) => (header.largest_root_page != max_root).then(|| {
            format!(
                "the header's largest root page is {}, the schema's is {max_root}",
                header.largest_root_page
            )
        }),
    };
    problem
        .map(|p| Finding::error(Code::PtrmapDamaged, p).pages(vec![1]))
        .into_iter()
        .collect()
}
