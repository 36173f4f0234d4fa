//! How the check gets at the file, and what the POS gets.
//!
//! * Whether SQLite refuses the file as a whole is decided by doing what the
//!   POS does, never guessed from bytes: a normal read-only open, the schema
//!   read, and the POS's lookup on the customer table prepared. When that
//!   fails (a damaged header, a schema SQLite cannot parse, a file shorter
//!   than its header says), the POS cannot serve a single customer.
//! * The connection the check introspects through: the normal one; where
//!   SQLite refuses the file, one with `writable_schema` (under which SQLite
//!   reads a file shorter than its header says and skips schema rows it
//!   cannot parse; the connection stays read-only and `query_only`); where
//!   SQLite cannot read the file even so, an in-memory database holding the
//!   schema that the page reader read from page 1.
//! * The page reader: with the file's header, or, where the header is
//!   damaged, with a header rebuilt from the pages (`format::geometry`:
//!   the page size and reserved bytes under which the pages are well-formed
//!   b-tree pages, the encoding the schema's records read in).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

use crate::config::Settings;
use crate::db;
use crate::format::btree::PageSource;
use crate::format::companion;
use crate::format::geometry;
use crate::format::header::{self, DatabaseHeader, TextEncoding};
use crate::pager::Pager;
use crate::schema::{self, SchemaObject, quote_ident};

/// What the file's header allows.
#[derive(Debug, Clone)]
pub enum HeaderState {
    /// SQLite accepts the header.
    Sound(DatabaseHeader),
    /// The header does not describe the file (`problem`); `header` is the
    /// one rebuilt from the pages (`raw`: its bytes), to read the pages
    /// with. `accepted`: SQLite accepts the header and reads the file
    /// under it (a wrong reserved-bytes value, a page count below the
    /// file's), so the POS's lookups still mean something; else SQLite
    /// refuses it.
    Damaged {
        problem: String,
        header: DatabaseHeader,
        raw: [u8; header::HEADER_SIZE],
        accepted: bool,
    },
    /// SQLite refuses the header and no page shows a page size: no page can
    /// be read.
    Unreadable { problem: String },
    /// The file starts like a database but is shorter than the header.
    TooShort { len: u64 },
}

/// Bytes read from the start of the file: what the geometry search reads.
const HEAD_READ: u64 = geometry::PROBE_BYTES as u64;

/// The file's first bytes, up to what the geometry search reads.
fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .take(HEAD_READ)
        .read_to_end(&mut head)
        .with_context(|| format!("{}: cannot read the header", path.display()))?;
    Ok(head)
}

/// Reads the start of the file and judges its header as SQLite does. `Err`:
/// not a database at all (exit 2): a directory, an empty file, a file SQLite
/// keeps beside a database (a -wal, a rollback journal, a -shm:
/// [`companion`]), or a file that neither starts with the magic string nor
/// holds b-tree pages.
pub fn file_header(path: &Path) -> Result<HeaderState> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot open", path.display()))?;
    if meta.is_dir() {
        bail!("{}: is a directory, not a database file", path.display());
    }
    let len = meta.len();
    if len == 0 {
        bail!("{}: empty file (0 bytes): not a database", path.display());
    }
    let head = read_head(path)?;
    let name = path.file_name().unwrap_or_default();
    if let Some(c) = companion::identify(&head, std::os::unix::ffi::OsStrExt::as_bytes(name)) {
        bail!("{}", companion_refusal(path, c));
    }
    let magic_len = head.len().min(header::MAGIC.len());
    let magic = head[..magic_len] == header::MAGIC[..magic_len];
    if head.len() < header::HEADER_SIZE && magic {
        return Ok(HeaderState::TooShort { len });
    }
    let problem = match DatabaseHeader::parse(&head) {
        Ok(h) => return Ok(HeaderState::Sound(h)),
        Err(e) => e.to_string(),
    };
    let hint = head
        .get(header::RESERVED_BYTES_OFFSET)
        .copied()
        .unwrap_or(0);
    match geometry::infer(&head, hint) {
        Some(g) => {
            let raw = geometry::rebuilt_header(&head, g, TextEncoding::Utf8, len);
            let header = DatabaseHeader::parse(&raw).with_context(|| {
                format!("{}: the header rebuilt from the pages", path.display())
            })?;
            Ok(HeaderState::Damaged {
                problem,
                header,
                raw,
                accepted: false,
            })
        }
        None if magic => Ok(HeaderState::Unreadable { problem }),
        None => bail!(
            "{}: not a SQLite database (no \"SQLite format 3\" header)",
            path.display()
        ),
    }
}

/// The one line that refuses a companion file given as the database: what
/// it is, and the database it belongs to where its name shows one that is
/// there.
fn companion_refusal(path: &Path, c: companion::Companion) -> String {
    use std::os::unix::ffi::OsStrExt;
    let owner = path
        .as_os_str()
        .as_bytes()
        .strip_suffix(c.suffix().as_bytes())
        .filter(|o| !o.is_empty() && !o.ends_with(b"/"))
        .map(|o| Path::new(std::ffi::OsStr::from_bytes(o)));
    let which = match owner {
        Some(o) if o.is_file() => format!(" ({})", o.display()),
        _ => String::new(),
    };
    format!(
        "{}: {}, not a database: give the database it belongs to{which}",
        path.display(),
        c.what()
    )
}

/// A header SQLite accepts on its own, of a file SQLite refuses: when the
/// pages are laid out for another page size or another count of reserved
/// bytes than it names (a damaged byte 16, 17 or 20), SQLite reads every
/// page at the wrong offsets, and so would the page reader. Then the header
/// is damaged: the pages are read under the geometry they show, as for a
/// header SQLite refuses outright (`format::geometry`).
fn misread_geometry(path: &Path, h: DatabaseHeader) -> Result<HeaderState> {
    let head = read_head(path)?;
    let Some(g) = geometry::better_than_header(&head, h.page_size, h.reserved_bytes) else {
        return Ok(HeaderState::Sound(h));
    };
    let problem = format!(
        "the header names {}-byte pages with {} reserved bytes, but the pages are not laid out so",
        h.page_size, h.reserved_bytes
    );
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .len();
    damaged(path, &head, g, h.text_encoding, len, problem, false)
}

/// The header rebuilt for geometry `g` (and the file's length), as the
/// state of a damaged header.
fn damaged(
    path: &Path,
    head: &[u8],
    g: geometry::Geometry,
    enc: TextEncoding,
    len: u64,
    problem: String,
    accepted: bool,
) -> Result<HeaderState> {
    let raw = geometry::rebuilt_header(head, g, enc, len);
    let header = DatabaseHeader::parse(&raw)
        .with_context(|| format!("{}: the header rebuilt from the pages", path.display()))?;
    Ok(HeaderState::Damaged {
        problem,
        header,
        raw,
        accepted,
    })
}

/// A header SQLite accepts, of a file it reads, that still does not
/// describe the file, in the ways SQLite does not refuse:
/// * a page size (bytes 16..18) the pages are not laid out for, where
///   SQLite still reads the schema from page 1 (a 4096-byte file called
///   65536): every lookup reads the wrong bytes;
/// * reserved bytes (byte 20) the pages are not laid out for: SQLite
///   reads every page that many bytes short (a row on overflow pages is
///   split at the wrong place; a write to a page whose cells reach into
///   those bytes fails as malformed);
/// * a page count (bytes 28..32, marked valid by bytes 92..96) below the
///   file's: SQLite reads no page past it.
///
/// Then the pages are read as they are, under a header rebuilt for them,
/// while SQLite answers the POS's lookups under the file's own header
/// (`accepted`: the check probes every customer).
fn accepted_misfit(path: &Path, h: DatabaseHeader) -> Result<HeaderState> {
    let head = read_head(path)?;
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .len();
    let misfit = (!geometry::pages_fit(&head, h.page_size, h.reserved_bytes))
        .then(|| geometry::better_than_header(&head, h.page_size, h.reserved_bytes))
        .flatten();
    // a -wal with commits sets the page count SQLite reads by; it is not
    // the header's then
    let short = h.pages_past_count(len).filter(|_| !wal_has_content(path));
    let (g, problem) = match (misfit, short) {
        (Some(g), _) if g.page_size == h.page_size => (
            g,
            format!(
                "byte 20 names {} reserved bytes per page, but the pages are laid out with {}: SQLite reads every page {} bytes short",
                h.reserved_bytes,
                g.reserved,
                h.reserved_bytes.abs_diff(g.reserved)
            ),
        ),
        (Some(g), _) => (
            g,
            format!(
                "the header names {}-byte pages with {} reserved bytes, but the pages are laid out as {}-byte pages with {}: SQLite reads every page but the first at the wrong offset",
                h.page_size, h.reserved_bytes, g.page_size, g.reserved
            ),
        ),
        (None, Some(in_file)) => (
            geometry::Geometry {
                page_size: h.page_size,
                reserved: h.reserved_bytes,
                pages_seen: 0,
            },
            format!(
                "the page count is {} (marked valid), but the file holds {in_file} pages: SQLite reads no page past page {}",
                h.page_count, h.page_count
            ),
        ),
        (None, None) => return Ok(HeaderState::Sound(h)),
    };
    damaged(path, &head, g, h.text_encoding, len, problem, true)
}

/// Everything the check and diagnose read the file through.
pub struct Opened {
    pub header: HeaderState,
    /// Why SQLite refuses the whole file, if it does ([`pos_refusal`]).
    pub refusal: Option<String>,
    /// The page reader; `None` when no page can be read.
    pub pager: Option<Pager>,
    /// The connection and schema; `None` when neither SQLite nor the page
    /// reader can read the schema.
    pub access: Option<Access>,
}

/// Judges the header, asks what the POS gets, and opens the page reader and
/// the connection accordingly (see the module comment).
pub fn open(path: &Path, settings: &Settings) -> Result<Opened> {
    let header = file_header(path)?;
    let refusal = pos_refusal(path, settings)?;
    let header = match header {
        HeaderState::Sound(h) if refusal.is_some() => misread_geometry(path, h)?,
        HeaderState::Sound(h) => accepted_misfit(path, h)?,
        other => other,
    };
    let (rebuilt, damaged) = match &header {
        HeaderState::Sound(_) => (None, false),
        // SQLite reads the file under its own header: the connection is
        // SQLite's as always, the page reader reads the pages as they are
        HeaderState::Damaged { raw, accepted, .. } => (Some(raw), !accepted),
        HeaderState::Unreadable { .. } | HeaderState::TooShort { .. } => {
            return Ok(Opened {
                header,
                refusal,
                pager: None,
                access: None,
            });
        }
    };
    let mut pager = open_pager(path, rebuilt.map(|r| &r[..]))?;
    let access = connect(path, refusal.is_some(), damaged, &mut pager)?;
    Ok(Opened {
        header,
        refusal,
        pager: Some(pager),
        access,
    })
}

/// Which connection the check reads the schema through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// SQLite reads the file as the POS does.
    Sqlite,
    /// SQLite refuses the file; with writable_schema it reads it anyway.
    WritableSchema,
    /// SQLite cannot read the file: the schema comes from the page reader,
    /// and SQLite holds it in memory for introspection only.
    Pages,
}

impl Via {
    /// Whether the connection reads the database file itself (lookups and
    /// SQL over its rows mean something).
    pub fn reads_the_file(self) -> bool {
        self != Via::Pages
    }
}

/// The connection, the schema, and how they were got.
pub struct Access {
    pub conn: Connection,
    pub objects: Vec<SchemaObject>,
    pub via: Via,
}

/// Why SQLite refuses the whole file to the POS, if it does: its error on
/// reading the schema, or on preparing the POS's lookup on the customer
/// table. `Ok(None)` also when the table or ID column does not exist (that
/// is reported on its own). `Err` when the check cannot run (busy, an
/// interrupted write to roll back, the file cannot be opened).
pub fn pos_refusal(path: &Path, settings: &Settings) -> Result<Option<String>> {
    let conn = db::open_read_only(path)?;
    conn.execute_batch("BEGIN")?;
    let objects = match schema::read_schema(&conn) {
        Ok(o) => o,
        Err(e) if db::is_busy(&e) => return Err(db::busy_error(path)),
        Err(e)
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly)
                && hot_journal(path) =>
        {
            bail!(
                "{}: a write was interrupted (hot journal {}-journal): SQLite must roll it back before \
                 the database can be checked, and check never writes; open it once with sqlite3, \
                 or check a copy of both files; nothing was changed",
                path.display(),
                path.display()
            )
        }
        Err(e) => return Ok(Some(e.to_string())),
    };
    let tables = objects.iter().filter(|o| o.kind == "table");
    let schema::Picked::One(t) = schema::pick_name(tables, |o| &o.name, &settings.table) else {
        return Ok(None);
    };
    // the ID column as the table names it (a name typed with U+FFFD for
    // bytes that are not UTF-8 is found by that spelling, schema::pick_name)
    let columns = crate::sql_bytes::query_map(
        &conn,
        &format!("PRAGMA table_info({})", quote_ident(&t.name)),
        &[],
        |r| Ok(r.text(1)?.unwrap_or_default()),
    )
    .unwrap_or_default();
    let id_column = match schema::pick_name(columns.iter(), |c| *c, &settings.id_column) {
        schema::Picked::One(c) => c.clone(),
        _ => settings.id_column.clone(),
    };
    let lookup = format!(
        "SELECT * FROM {} WHERE {} = ?1",
        quote_ident(&t.name),
        quote_ident(&id_column)
    );
    match crate::sql_bytes::prepare_only(&conn, &lookup) {
        Ok(_) => Ok(None),
        Err(e) if db::is_busy(&e) => Err(db::busy_error(path)),
        Err(e) if db::is_corrupt(&e) => Ok(Some(e.to_string())),
        Err(_) => Ok(None),
    }
}

/// A rollback journal beside the database that is not empty.
fn hot_journal(path: &Path) -> bool {
    beside_not_empty(path, "-journal")
}

/// A -wal beside the database that is not empty.
fn wal_has_content(path: &Path) -> bool {
    beside_not_empty(path, "-wal")
}

/// Whether the file `path` + `suffix` exists and is not empty.
fn beside_not_empty(path: &Path, suffix: &str) -> bool {
    let mut j = path.as_os_str().to_owned();
    j.push(suffix);
    std::fs::metadata(Path::new(&j)).is_ok_and(|m| m.len() > 0)
}

/// BEGIN, then read the schema: this takes the read lock / snapshot and
/// holds it to the end of the check.
fn read_through(conn: &Connection, path: &Path) -> Result<Option<Vec<SchemaObject>>> {
    conn.execute_batch("BEGIN")?;
    match schema::read_schema(conn) {
        Ok(o) => Ok(Some(o)),
        Err(e) if db::is_busy(&e) => Err(db::busy_error(path)),
        Err(_) => Ok(None),
    }
}

/// The connection and schema for the check (see the module comment), or
/// `None` when neither SQLite nor the page reader can read the schema.
/// `pager` may be replaced by one in the schema's text encoding, when the
/// header that named it is damaged.
pub fn connect(
    path: &Path,
    refused: bool,
    header_damaged: bool,
    pager: &mut Pager,
) -> Result<Option<Access>> {
    // A header that names another text encoding than the one the schema's
    // records are in (a damaged byte 56): SQLite reads every text of the
    // schema in the wrong encoding and cannot parse it, even with
    // writable_schema. The page reader reads it in the records' encoding,
    // as the repair does (schema_table.rs).
    let misencoded = refused
        && !header_damaged
        && schema::from_pages(&*pager, None).is_some_and(|(_, enc)| enc != pager.text_encoding());
    if !header_damaged && !misencoded {
        let conn = db::open_read_only(path)?;
        if refused {
            conn.pragma_update(None, "writable_schema", true)?;
        }
        if let Some(objects) = read_through(&conn, path)? {
            let via = if refused {
                Via::WritableSchema
            } else {
                Via::Sqlite
            };
            return Ok(Some(Access { conn, objects, via }));
        }
    }
    let known = (!header_damaged && !misencoded).then(|| pager.text_encoding());
    let Some((objects, enc)) = schema::from_pages(&*pager, known) else {
        return Ok(None);
    };
    if enc != pager.text_encoding() {
        let raw = if header_damaged {
            let h = pager.header();
            let g = geometry::Geometry {
                page_size: h.page_size,
                reserved: h.reserved_bytes,
                pages_seen: 0,
            };
            geometry::rebuilt_header(&[], g, enc, pager.file_len())
        } else {
            // the file's own header, with the records' encoding
            let mut raw = own_header(path)?;
            raw[header::TEXT_ENCODING_OFFSET..header::TEXT_ENCODING_OFFSET + 4]
                .copy_from_slice(&enc.header_value().to_be_bytes());
            raw
        };
        *pager = open_pager(path, Some(&raw))?;
    }
    let conn = schema::in_memory(&objects)?;
    Ok(Some(Access {
        conn,
        objects,
        via: Via::Pages,
    }))
}

/// The first `HEADER_SIZE` bytes of the file.
fn own_header(path: &Path) -> Result<[u8; header::HEADER_SIZE]> {
    let mut raw = [0u8; header::HEADER_SIZE];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut raw))
        .with_context(|| format!("{}: cannot read the header", path.display()))?;
    Ok(raw)
}

/// The page reader for the file: its own header, or the one rebuilt from
/// the pages when that is damaged.
pub fn open_pager(path: &Path, rebuilt: Option<&[u8]>) -> Result<Pager> {
    match rebuilt {
        None => Pager::open(path),
        Some(h) => Pager::open_with_header(path, h),
    }
    .with_context(|| format!("{}: cannot read", path.display()))
}
