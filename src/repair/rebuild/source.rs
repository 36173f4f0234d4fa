//! The damaged file the rebuild reads from (a private copy of the
//! original): its pages, under the header as found or — when SQLite would
//! refuse that header — under one rebuilt from the pages; and its schema, as
//! SQLite reads it or, when SQLite cannot, as the page reader finds it on
//! page 1's b-tree.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags};

use crate::format::accounting;
use crate::format::btree::PageSource;
use crate::format::geometry;
use crate::format::header::{DatabaseHeader, HEADER_SIZE, TextEncoding};
use crate::format::page::BtreePage;
use crate::format::schema_table;
use crate::format::swapped;
use crate::pager::Pager;
use crate::schema::SchemaObject;

/// Where the schema came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaOrigin {
    /// SQLite read sqlite_schema.
    Sqlite,
    /// SQLite could not; the page reader read page 1's b-tree.
    Pages,
}

/// The source of a rebuild.
pub struct Source {
    pub pager: Pager,
    /// The header the pages are read under; its page size, encoding,
    /// auto-vacuum mode, user version and application id go to the new file.
    pub header: DatabaseHeader,
    /// Set when the file's header was not used: what was rebuilt, and why.
    pub header_rebuilt: Option<String>,
    /// The text encoding of the records.
    pub encoding: TextEncoding,
    pub schema: Vec<SchemaObject>,
    pub schema_origin: SchemaOrigin,
    /// Why SQLite could not read the schema (when it could not).
    pub schema_error: Option<String>,
    /// Schema rows the page reader found but could not read as entries.
    pub schema_rows_refused: u64,
    /// Whether SQLite reads the file, so that sound tables can be copied by
    /// SQLite in bulk.
    pub sqlite_readable: bool,
    /// Pairs of pages found holding each other's content and put back in
    /// their places before the source was read ([`Source::open_mended`]),
    /// each with what showed it.
    pub pages_swapped: Vec<String>,
}

impl Source {
    pub fn open(path: &Path) -> Result<Source> {
        let (pager, header_rebuilt) = open_pages(path)?;
        let header = pager.header().clone();
        let sqlite = sqlite_schema(path);
        let sqlite_readable = sqlite.as_ref().is_ok_and(|(_, plain)| *plain);
        let misread = match &sqlite {
            Ok((_, false)) => misread_encoding(&pager, header.text_encoding),
            _ => None,
        };
        let (schema, schema_origin, schema_error, refused, encoding) = match sqlite {
            Ok((s, _)) if header_rebuilt.is_none() && misread.is_none() => {
                (s, SchemaOrigin::Sqlite, None, 0, header.text_encoding)
            }
            other => {
                let why = match (other, misread) {
                    (_, Some(why)) => why,
                    (Ok(_), None) => "the header had to be rebuilt".to_string(),
                    (Err(e), None) => e,
                };
                let found = schema_table::read(&pager, Some(header.text_encoding));
                let objects = found
                    .rows
                    .into_iter()
                    .map(|r| SchemaObject {
                        kind: r.kind,
                        name: r.name,
                        tbl_name: r.tbl_name,
                        rootpage: r.rootpage,
                        sql: r.sql,
                    })
                    .collect();
                (
                    objects,
                    SchemaOrigin::Pages,
                    Some(why),
                    found.rows_refused,
                    found.encoding.unwrap_or(header.text_encoding),
                )
            }
        };
        Ok(Source {
            pager,
            header,
            header_rebuilt,
            encoding,
            schema,
            schema_origin,
            schema_error,
            schema_rows_refused: refused,
            sqlite_readable,
            pages_swapped: Vec::new(),
        })
    }

    /// Whether the source has pointer maps, so that the new file is made
    /// auto-vacuum: the header's largest root page says so, unless the
    /// pages say otherwise (`accounting::pointer_maps_shown`). The trees
    /// are walked for it only where page 2 disagrees with the header (a
    /// b-tree page in a file the header calls auto-vacuum, or none in one
    /// it does not).
    pub fn pointer_maps(&self) -> bool {
        let said = self.header.largest_root_page != 0;
        let mut page = Vec::new();
        let page2_tree = self.pager.read_page(2, &mut page).is_ok()
            && BtreePage::parse(&page, 2, self.pager.usable_size())
                .is_ok_and(|p| p.check_layout().is_empty());
        if said != page2_tree {
            return said;
        }
        let roots: Vec<u32> = self
            .schema
            .iter()
            .filter_map(|o| u32::try_from(o.rootpage).ok().filter(|&r| r > 1))
            .collect();
        let roles = accounting::page_roles(&self.pager, &roots);
        accounting::pointer_maps_shown(&self.pager, &roles).unwrap_or(said)
    }

    /// [`Source::open`] of the rebuild's own copy of the original, with the
    /// pages found holding each other's content (`format::swapped`: a
    /// b-tree page where an overflow chain goes on, the chain's page where
    /// the tree's child should be) first put back in their places in that
    /// copy, so that every reader — the page reader's salvage and SQLite's
    /// bulk copies alike — reads each where it belongs. A source read
    /// through a -wal is left as it is (the -wal's frames would shadow
    /// the pages put back).
    pub fn open_mended(path: &Path) -> Result<Source> {
        let src = Source::open(path)?;
        if src.pager.wal().is_some() {
            return Ok(src);
        }
        let swaps = swapped::find_swaps(&src.pager, &crate::schema::root_pages(&src.schema));
        if swaps.is_empty() {
            return Ok(src);
        }
        let pairs: Vec<(u32, u32)> = swaps.iter().map(|s| (s.a, s.b)).collect();
        crate::repair::pages::swap_pages(path, src.header.page_size, &pairs)?;
        drop(src);
        let mut src = Source::open(path)?;
        src.pages_swapped = swaps.into_iter().map(|s| s.detail).collect();
        Ok(src)
    }
}

/// Why SQLite's reading of a schema it refuses without writable_schema is
/// not to be trusted: the header names a text encoding (a damaged byte
/// there, read by its two low bits as SQLite does) in which the schema's
/// records do not read, while another reads them (SQLite then decodes
/// every name wrongly). None when the records read in the header's.
fn misread_encoding(pager: &Pager, header: TextEncoding) -> Option<String> {
    let found = schema_table::read(pager, Some(header));
    let e = found
        .encoding
        .filter(|e| *e != header && !found.rows.is_empty())?;
    Some(format!(
        "the header names text encoding {header:?}, but the schema's records read as {e:?}"
    ))
}

/// The page reader over `path`: under its own header when SQLite accepts
/// that header and page 1 reads as a b-tree page under it, else under a
/// header rebuilt from the pages (and why).
fn open_pages(path: &Path) -> Result<(Pager, Option<String>)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len();
    let mut head = vec![0u8; (len.min(geometry::PROBE_BYTES as u64)) as usize];
    file.read_exact_at(&mut head, 0)
        .with_context(|| format!("reading {}", path.display()))?;
    let own = Pager::open(path);
    // the pages may fit another geometry better than the one the header
    // names, though SQLite accepts it (a damaged page-size byte)
    let misfit = |p: &Pager| {
        geometry::better_than_header(&head, p.header().page_size, p.header().reserved_bytes)
            .is_some()
    };
    // or the header's page count, marked valid, stops short of the file's
    // pages, and SQLite reads none past it (none of them is lost: read
    // them under the file's own length, as SQLite would had the count not
    // been marked valid)
    let short = |p: &Pager| {
        p.wal().is_none_or(|w| !w.has_commits()) && p.header().pages_past_count(len).is_some()
    };
    if let Ok(p) = &own
        && page1_fits(p)
        && !misfit(p)
        && !short(p)
    {
        // ok: matched just above
        return Ok((own?, None));
    }
    let raw = &head[..head.len().min(HEADER_SIZE)];
    let (why, g) = match &own {
        Ok(p) if page1_fits(p) && !misfit(p) => {
            let h = p.header();
            let g = geometry::Geometry {
                page_size: h.page_size,
                reserved: h.reserved_bytes,
                pages_seen: 0,
            };
            let why = format!(
                "the header's page count, {}, stops short of the file's pages",
                h.page_count
            );
            (why, Some(g))
        }
        Ok(p) if page1_fits(p) => (
            "the pages are laid out for another page size or count of reserved bytes than the header names".to_string(),
            None,
        ),
        Ok(_) => (
            "page 1 is no b-tree page under the header's page size and reserved bytes".to_string(),
            None,
        ),
        Err(e) => (format!("{:#}", e), None),
    };
    let hint = raw.get(20).copied().unwrap_or(0);
    let Some(g) = g.or_else(|| geometry::infer(&head, hint)) else {
        bail!(
            "the database header is damaged ({why}) and no page of the file reads as a b-tree page, so the page size cannot be told"
        );
    };
    let stored_encoding = raw
        .get(56..60)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .and_then(TextEncoding::from_header)
        .unwrap_or(TextEncoding::Utf8);
    let rebuilt = geometry::rebuilt_header(raw, g, stored_encoding, len);
    let pager = Pager::open_with_header(path, &rebuilt)?;
    Ok((
        pager,
        Some(format!(
            "the header was rebuilt from the pages ({why}): page size {}, {} reserved bytes, {} pages",
            g.page_size,
            g.reserved,
            len / u64::from(g.page_size)
        )),
    ))
}

/// Whether page 1 reads as a b-tree page (of any kind, even empty) under
/// the pager's header.
fn page1_fits(p: &Pager) -> bool {
    let mut buf = Vec::new();
    if p.read_page(1, &mut buf).is_err() {
        return false;
    }
    BtreePage::parse(&buf, 1, p.usable_size()).is_ok()
}

/// The schema as SQLite reads it (with writable_schema, under which SQLite
/// tolerates what it would otherwise refuse), and whether SQLite also reads
/// it without; or why it cannot.
fn sqlite_schema(path: &Path) -> Result<(Vec<SchemaObject>, bool), String> {
    let open = || {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    };
    let plain = open().and_then(|c| read_lossy(&c)).is_ok();
    let conn = open().map_err(|e| e.to_string())?;
    conn.pragma_update(None, "writable_schema", true)
        .map_err(|e| e.to_string())?;
    let schema = read_lossy(&conn).map_err(|e| e.to_string())?;
    Ok((schema, plain))
}

/// sqlite_schema's rows; text that is not valid UTF-8 (a Latin-1 name, a
/// damaged byte in a name or a statement) is kept byte for byte
/// (`sql_bytes::name_text`) rather than refused.
fn read_lossy(conn: &Connection) -> rusqlite::Result<Vec<SchemaObject>> {
    // bytes that are not UTF-8 kept (sql_bytes::name_text): a Latin-1
    // name is recreated by its bytes
    let text = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<Option<String>> {
        Ok(match r.get_ref(i)? {
            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                Some(crate::sql_bytes::name_text(t))
            }
            _ => None,
        })
    };
    let mut stmt = conn
        .prepare("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema ORDER BY rowid")?;
    let rows = stmt.query_map([], |r| {
        Ok(SchemaObject {
            kind: text(r, 0)?.unwrap_or_default(),
            name: text(r, 1)?.unwrap_or_default(),
            tbl_name: text(r, 2)?.unwrap_or_default(),
            rootpage: r.get::<_, Option<i64>>(3).ok().flatten().unwrap_or(0),
            sql: text(r, 4)?,
        })
    })?;
    rows.collect()
}
