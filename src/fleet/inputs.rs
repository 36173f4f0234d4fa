//! Which databases a run covers: the paths given, every SQLite database
//! directly in a folder given (recognised by its content, not by its name:
//! its 16-byte header, or, where that header is damaged, its b-tree pages),
//! and the paths of `--list FILE|-`.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::check::access;
use crate::format::header::MAGIC;

/// The databases of one run, in the order they were named (a folder's
/// databases sorted by name), each once.
#[derive(Debug, Default)]
pub struct Inputs {
    pub paths: Vec<PathBuf>,
    /// Folders that held no database (named in a warning).
    pub empty_folders: Vec<PathBuf>,
    /// True when a folder or a list was given: the run is a fleet run
    /// whatever the number of databases.
    pub expanded: bool,
}

impl Inputs {
    /// Expands the positional paths and `--list`. A path that is not a
    /// folder is kept as given (if it is not a database, the command says so
    /// for that path); a folder contributes the SQLite databases directly in
    /// it, hidden files skipped.
    pub fn gather(given: &[PathBuf], list: Option<&str>) -> Result<Inputs> {
        let mut named: Vec<PathBuf> = given.to_vec();
        let mut expanded = false;
        if let Some(src) = list {
            named.extend(read_list(src)?);
            expanded = true;
        }
        let mut inputs = Inputs::default();
        for p in named {
            if p.is_dir() {
                expanded = true;
                let found = databases_in(&p)?;
                if found.is_empty() {
                    inputs.empty_folders.push(p);
                }
                for f in found {
                    inputs.push(f);
                }
            } else {
                inputs.push(p);
            }
        }
        inputs.expanded = expanded;
        Ok(inputs)
    }

    fn push(&mut self, p: PathBuf) {
        if !self.paths.contains(&p) {
            self.paths.push(p);
        }
    }
}

/// The paths of a list file (or stdin for `-`): one a line; surrounding
/// whitespace, empty lines and `#` comment lines are ignored.
fn read_list(src: &str) -> Result<Vec<PathBuf>> {
    let mut text = String::new();
    if src == "-" {
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the list of databases from stdin")?;
    } else {
        let f = std::fs::File::open(src)
            .with_context(|| format!("{src}: cannot read the list of databases"))?;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.with_context(|| format!("{src}: cannot read the list of databases"))?;
            text.push_str(&line);
            text.push('\n');
        }
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect())
}

/// The regular files directly in `dir` that are SQLite databases
/// ([`is_database`]), sorted by name. Hidden files (a killed repair's work
/// file, a snapshot being written) are skipped.
fn databases_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_file() && is_database(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The name endings of the files SQLite keeps beside a database: never
/// databases themselves, though a journal or -wal holds page images.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Whether a file of a folder is a database: it starts with SQLite's
/// header, or, that header damaged (zeroed, overwritten), its first pages
/// are b-tree pages, as `check` reads such a file (`check::access`). A
/// store whose database header was wiped is the store a nightly check must
/// not pass over as "no database here". A database's companion files are
/// not databases.
fn is_database(p: &Path) -> bool {
    if has_sqlite_header(p) {
        return true;
    }
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    !COMPANIONS.iter().any(|c| name.ends_with(c))
        && matches!(
            access::file_header(p),
            Ok(access::HeaderState::Damaged { .. })
        )
}

/// Whether the file starts with "SQLite format 3\0". An unreadable file is
/// not counted as a database of the folder.
fn has_sqlite_header(p: &Path) -> bool {
    let mut magic = [0u8; 16];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| &magic == MAGIC)
}

/// Refuses a run with no database at all.
pub fn require_some(inputs: &Inputs) -> Result<()> {
    if inputs.paths.is_empty() {
        let folders: Vec<String> = inputs
            .empty_folders
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if folders.is_empty() {
            bail!("no database given");
        }
        bail!("no SQLite database in {}", folders.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_means_its_databases_by_header() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut db = MAGIC.to_vec();
        db.resize(512, 0);
        std::fs::write(d.join("b.db"), &db).unwrap();
        std::fs::write(d.join("a.sqlite"), &db).unwrap();
        std::fs::write(d.join("notes.db"), b"not a database at all").unwrap();
        std::fs::write(d.join(".hidden.db"), &db).unwrap();
        std::fs::write(d.join("short"), b"SQLite").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/c.db"), &db).unwrap();
        let list = d.join("list.txt");
        std::fs::write(
            &list,
            format!(
                "# stores\n\n  {}  \n{}\n",
                d.join("x.db").display(),
                d.display()
            ),
        )
        .unwrap();
        let i = Inputs::gather(&[d.to_path_buf()], None).unwrap();
        assert_eq!(i.paths, vec![d.join("a.sqlite"), d.join("b.db")]);
        assert!(i.expanded);
        let i = Inputs::gather(&[], Some(list.to_str().unwrap())).unwrap();
        assert_eq!(
            i.paths,
            vec![d.join("x.db"), d.join("a.sqlite"), d.join("b.db")]
        );
        let i = Inputs::gather(&[d.join("notes.db")], None).unwrap();
        assert_eq!(i.paths, vec![d.join("notes.db")]);
        assert!(!i.expanded);
        let empty = d.join("sub2");
        std::fs::create_dir(&empty).unwrap();
        let i = Inputs::gather(std::slice::from_ref(&empty), None).unwrap();
        let e = require_some(&i).unwrap_err().to_string();
        assert_eq!(e, format!("no SQLite database in {}", empty.display()));
    }

    /// A database whose header was wiped is still a database of its
    /// folder, told by its b-tree pages; the same pages in a file named as
    /// a companion (-journal, -wal, -shm) are not, nor is a -wal.
    #[test]
    fn a_folder_means_a_database_with_a_wiped_header_too() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let zeroed = std::fs::read(fixtures.join("header_zeroed.db")).unwrap();
        assert!(zeroed[..100].iter().all(|&b| b == 0));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("till7.db"), &zeroed).unwrap();
        for companion in ["till7.db-journal", "till7.db-shm", "old-wal"] {
            std::fs::write(d.join(companion), &zeroed).unwrap();
        }
        std::fs::copy(
            fixtures.join("wal_stale_index.db-wal"),
            d.join("till8.db-wal"),
        )
        .unwrap();
        std::fs::copy(fixtures.join("not_a_database.db"), d.join("till9.db")).unwrap();
        let i = Inputs::gather(&[d.to_path_buf()], None).unwrap();
        assert_eq!(i.paths, vec![d.join("till7.db")]);
    }
}
