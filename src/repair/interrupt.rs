//! Ctrl-C (SIGINT), SIGTERM and SIGHUP during a repair, and the work files
//! a repair makes.
//!
//! A dedicated thread receives the signals (signal-hook). What it does
//! depends on how far the repair got:
//!
//! * reading (check, plan; no file of ours exists but the scratch copy
//!   whose frame is mended, `frame.rs`, which is removed): it says
//!   "interrupted, nothing changed" and ends the process at once;
//! * writing (lock held, backup and work files being made): it records the
//!   signal and interrupts SQLite's running statements; the repair stops at
//!   its next step (`stop_if_asked`), removes its work files, releases the
//!   lock and says "interrupted, nothing changed" (exit 3). If a step that
//!   cannot be interrupted keeps it longer than `GRACE`, or a second signal
//!   comes, the thread removes the work files and ends the process itself;
//! * swapped (the verified copy has been renamed over the database): the
//!   repair finishes its report and says "interrupted after the swap: the
//!   repaired database is in place".
//!
//! The rename itself holds the state's lock, so a signal never sees a half
//! decided swap. Work files are custodian's own hidden files
//! (`.NAME.STAMP.PID.custodian-KIND`, with SQLite's `-journal`, `-wal` and
//! `-shm` beside them); `leftovers` finds those of a run that was killed
//! outright (SIGKILL, power loss) so that the next repair removes them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

use anyhow::Result;

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Reading,
    Writing,
    Swapped,
}

struct State {
    phase: Phase,
    /// The repair has left its locked steps and is stopping on its own.
    settled: bool,
    /// The complete backup of this run, named when it stops.
    backup: Option<String>,
    /// Work files of this run, removed (with their sidecars) when it stops
    /// before the swap.
    files: Vec<PathBuf>,
    /// Those of them that are the original file's second name (a linked
    /// backup): removed when the run stops before the swap, kept once it
    /// is done (they are then the only name of the original).
    originals: Vec<PathBuf>,
    /// SQLite connections to interrupt when a signal arrives.
    sqlite: Vec<rusqlite::InterruptHandle>,
    /// The database, and whether its -wal and -shm were there before the
    /// run: those its own connections made are removed when the process
    /// ends here, as `db::leaving_nothing` removes them when a run ends.
    sidecars: Option<(PathBuf, crate::db::Leftovers)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    phase: Phase::Reading,
    settled: false,
    backup: None,
    files: Vec::new(),
    originals: Vec::new(),
    sqlite: Vec::new(),
    sidecars: None,
});

/// The signal received (0: none).
static ASKED: AtomicI32 = AtomicI32::new(0);

/// The exit code of a repair that was stopped (DESIGN.md: 3, the original
/// is untouched).
const STOPPED: i32 = 3;

fn state() -> MutexGuard<'static, State> {
    // a panic while the lock was held leaves the data usable: recover it
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The signal a repair was asked to stop by, if any.
pub fn asked() -> Option<&'static str> {
    match ASKED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(name(s)),
    }
}

/// The error a step returns when a signal asked the repair to stop.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", asked().unwrap_or("a signal"))
    }
}

impl std::error::Error for Interrupted {}

/// `Err(Interrupted)` once a signal has asked the repair to stop: called
/// between steps and between the chunks of long copies.
pub fn stop_if_asked() -> Result<()> {
    if asked().is_some() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// The database the messages name (the current repair's).
static DB: Mutex<String> = Mutex::new(String::new());

/// Starts a repair of `db`: its state is fresh (reading, no work files),
/// and the thread that receives SIGINT, SIGTERM and SIGHUP runs (one for
/// the whole process, started by the first repair).
pub fn install(db: &Path) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static STARTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    *DB.lock().unwrap_or_else(|e| e.into_inner()) = db.display().to_string();
    {
        let mut st = state();
        st.phase = Phase::Reading;
        st.settled = false;
        st.backup = None;
        st.files.clear();
        st.originals.clear();
        st.sqlite.clear();
        st.sidecars = None;
    }
    if STARTED.get().is_none() {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::spawn(move || {
            for sig in signals.forever() {
                let db = DB.lock().unwrap_or_else(|e| e.into_inner()).clone();
                on_signal(&db, sig);
            }
        });
        let _ = STARTED.set(());
    }
    Ok(())
}

fn on_signal(db: &str, sig: i32) {
    let first = ASKED
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    let mut st = state();
    match st.phase {
        Phase::Reading => {
            // only a scratch copy of ours can exist yet (frame.rs)
            remove_all(&mut st.files);
            clean_sidecars(&mut st);
            crate::messages::error(&format!(
                "{db}: interrupted by {}, nothing changed",
                name(sig)
            ));
            std::process::exit(STOPPED);
        }
        Phase::Writing if first => {
            for h in &st.sqlite {
                h.interrupt();
            }
            drop(st);
            // A step that cannot be interrupted (the verification's check of
            // the copy) may run on a while: after a grace period the work
            // files go and the process ends here. Nothing of the original is
            // being written then (the swap holds the state's lock).
            let until = std::time::Instant::now() + GRACE;
            while std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let st = state();
                if st.settled || st.phase != Phase::Writing {
                    return;
                }
            }
            stop_now(db, sig, &mut state());
        }
        Phase::Writing if !st.settled => stop_now(db, sig, &mut st),
        Phase::Writing => {}
        // the repaired database is in place: the report is finished
        Phase::Swapped => {}
    }
}

/// How long a repair may take to reach its next step after a signal.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ends the process before the swap: work files removed, one line.
fn stop_now(db: &str, sig: i32, st: &mut State) -> ! {
    remove_all(&mut st.files);
    clean_sidecars(st);
    let kept = st
        .backup
        .as_deref()
        .map(|b| format!("; the backup {b} is kept"))
        .unwrap_or_default();
    crate::messages::error(&format!(
        "{db}: interrupted by {}, nothing changed: the original is untouched and the work files were removed{kept}",
        name(sig)
    ));
    std::process::exit(STOPPED);
}

/// The -wal and -shm the run's own connections made beside `db` (not
/// there before: `before`) are removed if the process ends here.
pub fn sidecars(db: &Path, before: crate::db::Leftovers) {
    state().sidecars = Some((db.to_path_buf(), before));
}

fn clean_sidecars(st: &mut State) {
    if let Some((db, before)) = st.sidecars.take() {
        before.clean(&db);
    }
}

/// The backup of this run is complete (it is named if the run stops).
pub fn backup_made(path: &Path) {
    state().backup = Some(path.display().to_string());
}

/// The repair has left its locked steps: it stops (or reports) on its own.
pub fn settle() {
    state().settled = true;
}

/// The lock is held: work files are about to be made.
pub fn writing() {
    state().phase = Phase::Writing;
}

/// A work file of this run (its SQLite sidecars are meant too).
pub fn work_file(path: &Path) {
    state().files.push(path.to_path_buf());
}

/// The original file's second name, made for a linked backup: a work file
/// until the swap (a stop before it removes the name, never the file), the
/// backup after it.
pub fn original(path: &Path) {
    let mut st = state();
    st.files.push(path.to_path_buf());
    st.originals.push(path.to_path_buf());
}

/// A work file that became something to keep (a backup, a `*.failed`
/// copy) or is gone.
pub fn forget(path: &Path) {
    state().files.retain(|f| f != path);
}

/// A connection whose statements a signal interrupts.
pub fn watch(conn: &rusqlite::Connection) {
    state().sqlite.push(conn.get_interrupt_handle());
}

/// Renames the verified copy over the database, unless a signal came
/// first. Under the state's lock: a signal sees either the original in
/// place (and removes the work files) or the swap done.
///
/// `wal_aside` (the database's -wal, and the name it goes to: its
/// second name beside the original's, `.…custodian-original-wal`): a -wal
/// that SQLite would replay over the new file is renamed first, and the
/// folder synced, so that no instant, crash or power loss has the new
/// file beside it. A rename of the copy that fails puts the -wal back.
/// Killed between the two renames, the next repair finds the -wal's
/// second name beside an original that is still the database, and puts
/// it back (`restore_wal_set_aside`).
pub fn swap(copy: &Path, db: &Path, wal_aside: Option<(&Path, &Path)>) -> Result<()> {
    let mut st = state();
    stop_if_asked()?;
    if let Some((wal, aside)) = wal_aside {
        set_aside(wal, aside)?;
        super::apply::pause_point("wal-aside");
    }
    if let Err(e) = std::fs::rename(copy, db) {
        let back = match wal_aside {
            Some((wal, aside)) => match std::fs::rename(aside, wal) {
                Ok(()) => String::new(),
                Err(b) => {
                    // the second names stay (they are not removed with the
                    // work files): the next repair puts the -wal back
                    let originals = std::mem::take(&mut st.originals);
                    st.files.retain(|f| !originals.contains(f));
                    format!(
                        "; its -wal is kept as {} and could not be put back ({b}): the next repair puts it back",
                        aside.display()
                    )
                }
            },
            None => String::new(),
        };
        anyhow::bail!(
            "cannot rename {} over {}: {e}{back}",
            copy.display(),
            db.display()
        );
    }
    st.phase = Phase::Swapped;
    let originals = std::mem::take(&mut st.originals);
    st.files.retain(|f| f != copy && !originals.contains(f));
    Ok(())
}

/// Renames the -wal `wal` to `aside` (never over a file) and syncs both
/// folders: the -wal is gone from the database's folder, durably, before
/// the copy takes the database's name.
fn set_aside(wal: &Path, aside: &Path) -> Result<()> {
    use anyhow::Context;
    if std::fs::symlink_metadata(aside).is_ok() {
        anyhow::bail!(
            "{}: exists already; the -wal is never renamed over a file",
            aside.display()
        );
    }
    std::fs::rename(wal, aside).with_context(|| {
        format!(
            "cannot set the -wal {} aside as {}",
            wal.display(),
            aside.display()
        )
    })?;
    let folder = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    // the -wal's -shm is only an index of it (SQLite rebuilds it from the
    // -wal): it goes with it, so that no -shm stays beside the new file
    let shm = wal
        .as_os_str()
        .to_string_lossy()
        .strip_suffix("-wal")
        .map(|db| PathBuf::from(format!("{db}-shm")));
    if let Some(shm) = shm.filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())) {
        let _ = std::fs::remove_file(&shm);
    }
    for d in [folder(wal), folder(aside)] {
        if let Err(e) = crate::files::fsync_dir(&d) {
            // not durable: put it back, nothing changed
            let _ = std::fs::rename(aside, wal);
            return Err(e);
        }
    }
    Ok(())
}

/// Removes every work file still registered (a build that failed, a run
/// that was interrupted), with its sidecars. Their content is ours and
/// unfinished; the original and the backup are never among them.
pub fn remove_work_files() {
    remove_all(&mut state().files);
}

fn remove_all(files: &mut Vec<PathBuf>) {
    for f in files.drain(..) {
        for p in with_sidecars(&f) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A path and SQLite's files beside it.
pub fn with_sidecars(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    for s in ["-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(s);
        out.push(PathBuf::from(p));
    }
    out
}

/// The kinds of work file (`.custodian-KIND`): the repaired copy, the
/// rebuild's source, a backup being copied, the scratch copy whose header
/// or schema table is mended (frame.rs), and the original file's second
/// name (a linked backup not yet named).
const KINDS: [&str; 6] = [
    "repair",
    "source",
    "backup",
    "backup-wal",
    "frame",
    ORIGINAL,
];

/// The kind of the original file's second name.
pub const ORIGINAL: &str = "original";

/// The name of a work file of database file `db_name`: hidden, the
/// database's name, a UTC stamp, a process ID, the kind.
pub fn work_name(db_name: &str, stamp: &str, pid: u32, kind: &str) -> String {
    format!(".{db_name}.{stamp}.{pid}.custodian-{kind}")
}

/// Whether `file` is a work file of `db_name` (or one of its sidecars), by
/// the exact shape of `work_name`: never the database, a backup, a
/// snapshot or a kept `*.failed` copy.
fn is_work_file(db_name: &str, file: &str) -> bool {
    let Some(rest) = file.strip_prefix(&format!(".{db_name}.")) else {
        return false;
    };
    let mut parts = rest.splitn(3, '.');
    let (Some(stamp), Some(pid), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let stamp_ok = stamp.len() == 16
        && stamp.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    let pid_ok = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    let Some(kind) = tail.strip_prefix("custodian-") else {
        return false;
    };
    let kind = ["-journal", "-wal", "-shm"]
        .iter()
        .find_map(|s| kind.strip_suffix(s).filter(|k| KINDS.contains(k)))
        .unwrap_or(kind);
    stamp_ok && pid_ok && KINDS.contains(&kind)
}

/// Work files of `db_name` in `dir` left by a run that was killed: sorted
/// paths with their sizes. This run's own (registered) work files, such as
/// the scratch copy of a mended frame, are not among them.
pub fn leftovers(dir: &Path, db_name: &str) -> Vec<(PathBuf, u64)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let own: Vec<PathBuf> = state()
        .files
        .iter()
        .flat_map(|f| with_sidecars(f))
        .collect();
    let mut out: Vec<(PathBuf, u64)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| is_work_file(db_name, &e.file_name().to_string_lossy()))
        .filter(|e| !own.contains(&e.path()))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_work_files_of_this_database_are_leftovers() {
        let w = work_name("pos.db", "20261203T045939Z", 19929, "repair");
        assert_eq!(w, ".pos.db.20261203T045939Z.19929.custodian-repair");
        for ours in [
            w.clone(),
            format!("{w}-journal"),
            format!("{w}-wal"),
            format!("{w}-shm"),
            ".pos.db.20261203T045939Z.7.custodian-source".into(),
            ".pos.db.20261203T045939Z.7.custodian-backup".into(),
            ".pos.db.20261203T045939Z.7.custodian-backup-wal".into(),
            ".pos.db.20261203T045939Z.7.custodian-original".into(),
        ] {
            assert!(is_work_file("pos.db", &ours), "{ours}");
        }
        for not_ours in [
            "pos.db".to_string(),
            "pos.db-wal".into(),
            "pos.db.20261203T045939Z.backup".into(),
            "pos.db.20261203T045939Z.sha256".into(),
            format!("{w}.failed"),
            format!("{w}-x"),
            ".pos.db.2026120XT045939Z.7.custodian-repair".into(),
            ".pos.db.20261203T045939Z.x7.custodian-repair".into(),
            ".pos.db.20261203T045939Z.7.custodian-other".into(),
            ".pos.db.x.20261203T045939Z.7.custodian-repair".into(),
            ".other.db.20261203T045939Z.7.custodian-repair".into(),
        ] {
            assert!(!is_work_file("pos.db", &not_ours), "{not_ours}");
        }
        // another database whose name extends this one's
        assert!(!is_work_file(
            "pos.db",
            ".pos.db.old.20261203T045939Z.7.custodian-repair"
        ));
    }
}
