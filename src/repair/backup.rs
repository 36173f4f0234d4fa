//! Step 5 of a repair: the backup, before any change (DESIGN rule 3).
//!
//! Where it can, the backup *is* the original file. Repair never writes
//! the original: it builds a new file and renames it over the database.
//! So before any work the original file gets a second name, a hard link
//! `.NAME.STAMP.PID.custodian-original` in the backup folder, and once the
//! verified copy has been renamed over the database, that name — by then
//! the only name of the original bytes — becomes the backup
//! `NAME.STAMP.backup`, mode 0600, with its `.sha256` (computed from the
//! original while the repair builds). The database's bytes are written
//! once (the repaired copy), not twice.
//!
//! At every instant the original bytes have a name: before the swap the
//! database itself (untouched; the exclusive lock keeps writers out), after
//! it the second name. A repair that stops before the swap changed nothing
//! and keeps no backup: the second name is removed (it is the live
//! database's; kept, it would change with it). One killed between the swap
//! and the naming leaves the second name, whose file is then no longer the
//! database's: the next repair names it as a backup (`promote`).
//!
//! Where a link cannot be made (the backup folder on another file system,
//! links refused) or the database has a -wal to keep (a WAL database: its
//! -wal is checkpointed into the file right before the swap, so the
//! original file does change), the backup is a copy, as before: written
//! under a hidden name, synced, renamed into place once whole. Until the
//! original changes, the copy's files are work files too: a repair that
//! stops before then changed nothing and keeps no backup (`Backup::keep`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::apply::{self, Durable, Lock};
use super::interrupt;
use crate::files::{create_new, fsync_dir};

/// The byte-for-byte backup of the database (and its -wal).
pub struct Backup {
    /// The backup file, `NAME.STAMP.backup` in the backup folder (for a
    /// linked backup: where it is named once the verified copy is in place).
    pub path: PathBuf,
    /// Its checksums file, `NAME.STAMP.sha256`.
    sums: PathBuf,
    /// The SHA-256 of the backup: known at once for a copy; for a linked
    /// backup, computed from the original while the repair builds.
    pub sha256: Option<String>,
    /// The -wal's backup and its SHA-256 (a copied backup only).
    pub wal: Option<(PathBuf, String)>,
    /// A linked backup not yet named: the original file's second name.
    pub linked: Option<PathBuf>,
    /// A -wal that SQLite would replay over the repaired file, and its
    /// second name beside the original's (`.…custodian-original-wal`): set
    /// aside there by the swap, named `NAME.STAMP.backup-wal` with it.
    pub wal_aside: Option<(PathBuf, PathBuf)>,
    /// A copied backup is kept (`keep`): the original is about to change.
    /// Until then its files are work files, removed if the repair stops.
    kept: bool,
}

/// A hidden work file of this run in `dir` (see interrupt.rs).
fn work(dir: &Path, db_name: &str, stamp: &str, kind: &str) -> PathBuf {
    dir.join(interrupt::work_name(
        db_name,
        stamp,
        std::process::id(),
        kind,
    ))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "database".into())
}

/// `NAME.STAMP` (or `NAME.STAMP-N`), the first whose `.backup` and
/// `.sha256` are both free in `dir`: backups never overwrite one another.
fn free_base(dir: &Path, name: &str, stamp: &str) -> Result<String> {
    (1..1000)
        .map(|n| {
            if n == 1 {
                format!("{name}.{stamp}")
            } else {
                format!("{name}.{stamp}-{n}")
            }
        })
        .find(|b| {
            !dir.join(format!("{b}.backup")).exists() && !dir.join(format!("{b}.sha256")).exists()
        })
        .ok_or_else(|| anyhow!("{}: no free backup name", dir.display()))
}

/// Takes the backup of the locked database `db` into `dir`: a second name
/// of the original file where one can be made, else a copy.
pub fn take(db: &Path, lock: &Lock, dir: &Path, stamp: &str) -> Result<Backup> {
    // made here only in a folder that is there (`paths_usable`)
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("{}: cannot create", dir.display()))?;
        }
        _ => {}
    }
    let name = file_name(db);
    let base = free_base(dir, &name, stamp)?;
    let path = dir.join(format!("{base}.backup"));
    let sums = dir.join(format!("{base}.sha256"));
    let aside = lock.wal_to_set_aside(db);
    if aside.is_some() || (!lock.was_wal && !super::fingerprint::wal_holds_frames(db)) {
        let second = work(dir, &name, stamp, interrupt::ORIGINAL);
        interrupt::original(&second);
        match std::fs::hard_link(db, &second) {
            Ok(()) => {
                // the second name survives a power loss from here on
                fsync_dir(dir)?;
                return Ok(Backup {
                    path,
                    sums,
                    sha256: None,
                    wal: None,
                    wal_aside: aside.map(|w| (w, apply::sidecar(&second, "-wal"))),
                    linked: Some(second),
                    kept: false,
                });
            }
            // a -wal SQLite cannot checkpoint is kept by a rename only
            Err(e) if aside.is_some() => {
                interrupt::forget(&second);
                bail!(
                    "{}: SQLite cannot checkpoint the -wal of a database it refuses or opens read-only, so the -wal is set aside by a rename, beside the original's second name in the backup folder {}, which must be on the database's file system ({e})",
                    db.display(),
                    dir.display()
                );
            }
            // another file system, links refused: a copy
            Err(_) => interrupt::forget(&second),
        }
    }
    copied(db, lock, dir, &name, stamp, path, sums)
}

/// The backup as a copy (and of the -wal when it holds a frame), with its
/// checksums file.
fn copied(
    db: &Path,
    lock: &Lock,
    dir: &Path,
    name: &str,
    stamp: &str,
    path: PathBuf,
    sums: PathBuf,
) -> Result<Backup> {
    let sha256 = copy_into_place(lock.file(), db, &path, &work(dir, name, stamp, "backup"))?;
    // a -wal without a whole frame (SQLite makes an empty one when it opens
    // a WAL database at rest) holds nothing: there is nothing to back up
    let wal = if super::fingerprint::wal_holds_frames(db) {
        let mut wal_src = db.as_os_str().to_owned();
        wal_src.push("-wal");
        let wal_src = PathBuf::from(wal_src);
        let wal_path = path.with_extension("backup-wal");
        let f = std::fs::File::open(&wal_src)
            .with_context(|| format!("{}: cannot read", wal_src.display()))?;
        let h = copy_into_place(
            &f,
            &wal_src,
            &wal_path,
            &work(dir, name, stamp, "backup-wal"),
        )?;
        Some((wal_path, h))
    } else {
        None
    };
    let b = Backup {
        path,
        sums,
        sha256: Some(sha256),
        wal,
        wal_aside: None,
        linked: None,
        kept: false,
    };
    // the original is unchanged until the swap: a repair that stops
    // before it keeps no backup, as with a linked one
    for f in b.files() {
        interrupt::work_file(f);
    }
    b.write_sums()?;
    fsync_dir(dir)?;
    Ok(b)
}

/// Copies the open file `src` to `to` by way of the hidden work file
/// `work` in the same folder, renamed into place once whole and synced: a
/// backup file is complete or absent, and a run killed half way leaves
/// only a work file that the next run removes. Returns the SHA-256 of the
/// bytes copied (read beside the copy, on another thread).
fn copy_into_place(src: &std::fs::File, from: &Path, to: &Path, work: &Path) -> Result<String> {
    interrupt::work_file(work);
    let sha = std::thread::scope(|s| {
        let hash = s.spawn(|| apply::sha256_of(src));
        let copied = apply::copy_open(src, from, work, Durable::Now);
        // the bytes hashed are the bytes copied: the lock keeps writers out
        let sha = hash
            .join()
            .map_err(|_| anyhow!("checksum thread failed"))?
            .with_context(|| format!("reading {}", from.display()));
        copied?;
        sha
    })?;
    if to.exists() {
        bail!(
            "{}: exists already; a backup never replaces a file",
            to.display()
        );
    }
    std::fs::rename(work, to)
        .with_context(|| format!("cannot rename {} to {}", work.display(), to.display()))?;
    interrupt::forget(work);
    Ok(sha)
}

impl Backup {
    /// A copied backup's files: the database's, the -wal's, the checksums.
    fn files(&self) -> Vec<&Path> {
        let mut v = vec![self.path.as_path(), self.sums.as_path()];
        v.extend(self.wal.as_ref().map(|(p, _)| p.as_path()));
        v
    }

    /// The original is about to change (the swap, or a WAL database's
    /// checkpoint before it): a copied backup is kept from here on,
    /// whatever happens next.
    pub fn keep(&mut self) {
        if self.linked.is_some() || self.kept {
            return;
        }
        for f in self.files() {
            interrupt::forget(f);
        }
        interrupt::backup_made(&self.path);
        self.kept = true;
    }

    /// Whether a copied backup is kept (see `keep`).
    pub fn kept(&self) -> bool {
        self.kept
    }

    /// The checksums file: one `SHA256  NAME` line per backup file.
    fn write_sums(&self) -> Result<()> {
        use std::io::Write;
        // (a -wal named alone, `name_lone_wal`, has no database line)
        let mut text = self.sha256.as_deref().map_or(String::new(), |h| {
            format!("{h}  {}\n", file_name(&self.path))
        });
        if let Some((p, h)) = &self.wal {
            text.push_str(&format!("{h}  {}\n", file_name(p)));
        }
        let mut f = create_new(&self.sums)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
            .with_context(|| format!("syncing {}", self.sums.display()))?;
        Ok(())
    }

    /// After the swap: the original file's second name becomes the backup
    /// (mode 0600, its checksum written), now that the file is no longer
    /// the database. A copied backup is complete already.
    pub fn name(&mut self, sha256: String) -> Result<()> {
        let Some(second) = self.linked.take() else {
            return Ok(());
        };
        self.sha256 = Some(sha256);
        if let Err(e) = name_file(&second, &self.path) {
            self.linked = Some(second);
            return Err(e);
        }
        interrupt::forget(&second);
        // the -wal set aside beside it (by this run's swap, or by a killed
        // run's, for `promote`) goes with it
        let aside = self
            .wal_aside
            .take()
            .map(|(_, a)| a)
            .or_else(|| Some(apply::sidecar(&second, "-wal")))
            .filter(|a| a.is_file());
        if let Some(a) = aside {
            let to = self.path.with_extension("backup-wal");
            let sha = sha256_at(&a)?;
            name_file(&a, &to)?;
            self.wal = Some((to, sha));
        }
        self.write_sums()?;
        fsync_dir(folder(&self.path))
    }
}

fn folder(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Renames `from` to the backup `to` (never over a file) and makes it
/// readable by its owner only.
fn name_file(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if to.exists() {
        bail!(
            "{}: exists already; a backup never replaces a file",
            to.display()
        );
    }
    std::fs::rename(from, to)
        .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("{}: cannot make it private (0600)", to.display()))?;
    Ok(())
}

/// Whether `a` and `b` are names of one and the same file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The second name `second` of the original of a repair that was killed
/// after its swap and before naming its backup (the file is no longer the
/// database's): named as a backup of database `db_name` in its folder,
/// with its checksum. Returns the backup's path and SHA-256.
pub fn promote(second: &Path, db_name: &str, stamp: &str) -> Result<(PathBuf, String)> {
    let dir = folder(second);
    let sha = sha256_at(second)?;
    let base = free_base(dir, db_name, stamp)?;
    let mut b = Backup {
        path: dir.join(format!("{base}.backup")),
        sums: dir.join(format!("{base}.sha256")),
        sha256: None,
        wal: None,
        wal_aside: None,
        linked: Some(second.to_path_buf()),
        kept: false,
    };
    b.name(sha.clone())?;
    Ok((b.path, sha))
}

/// A -wal set aside by a repair killed after its swap, whose original's
/// second name was named already (`Backup::name` names the file first):
/// named `NAME.STAMP.backup-wal` in its folder, with a checksums file of
/// its own. Returns its path and SHA-256.
pub fn name_lone_wal(aside: &Path, db_name: &str, stamp: &str) -> Result<(PathBuf, String)> {
    let dir = folder(aside);
    let sha = sha256_at(aside)?;
    let base = free_base(dir, db_name, stamp)?;
    let to = dir.join(format!("{base}.backup-wal"));
    name_file(aside, &to)?;
    let b = Backup {
        path: dir.join(format!("{base}.backup")),
        sums: dir.join(format!("{base}.sha256")),
        sha256: None,
        wal: Some((to.clone(), sha.clone())),
        wal_aside: None,
        linked: None,
        kept: true,
    };
    b.write_sums()?;
    fsync_dir(dir)?;
    Ok((to, sha))
}

/// The SHA-256 of the file at `path` (a backup's second name or -wal).
fn sha256_at(path: &Path) -> Result<String> {
    std::fs::File::open(path)
        .map_err(anyhow::Error::from)
        .and_then(|f| apply::sha256_of(&f))
        .with_context(|| format!("{}: cannot read", path.display()))
}
