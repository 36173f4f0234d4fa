//! `--metrics FILE`: Prometheus metrics in node_exporter's textfile
//! collector format (the text exposition format), one series per database
//! (label `db`, the path as given).
//!
//! The file is written atomically: a new hidden file in the same folder,
//! synced, renamed over FILE, the folder synced, so a scrape never reads
//! half a file. Several commands and cron lines may share one file: a run
//! replaces only the series of its own command for the databases it ran
//! on, and keeps every other series of the file; writers of one file take
//! turns (an advisory lock on a hidden `.FILE.lock` beside it).
//!
//! Two series are sticky: when a run could not complete a check (or find
//! a verified snapshot), the previous value of
//! `custodian_last_complete_check_timestamp_seconds` (or
//! `custodian_newest_verified_snapshot_timestamp_seconds`) is kept, so that
//! the alert "no complete check in 26 h" measures from the last real one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};

use crate::check::finding::Severity;
use crate::exit::ExitStatus;
use crate::report::{Report, Verdict};

/// `(name, help)` of every series custodian writes, all gauges, and the
/// commands whose runs replace it (a series with a `command` label belongs
/// to the command it names).
const FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "custodian_up",
        "1 when custodian could run the command on the database, 0 when it could not (busy, \
         unreadable, not a database, table missing).",
        &[],
    ),
    (
        "custodian_verdict",
        "1 for the command's verdict on the database, 0 for the other verdicts it can give.",
        &[],
    ),
    (
        "custodian_exit_code",
        "The command's exit code for the database (0 healthy, 1 problems, 2 could not run, 3 \
         repair stopped).",
        &[],
    ),
    (
        "custodian_last_run_timestamp_seconds",
        "When the command last ran on the database (Unix time).",
        &[],
    ),
    (
        "custodian_affected_customers",
        "Customers the POS rejects: some index of the customer table gives a wrong answer for \
         their ID (check).",
        &["check"],
    ),
    (
        "custodian_findings",
        "Findings of the last check of the database, by severity.",
        &["check"],
    ),
    (
        "custodian_check_duration_seconds",
        "How long the last check of the database took.",
        &["check"],
    ),
    (
        "custodian_last_complete_check_timestamp_seconds",
        "When a check of the database last ran to the end (Unix time); kept from the previous \
         run when this one could not.",
        &["check"],
    ),
    (
        "custodian_newest_verified_snapshot_timestamp_seconds",
        "When the newest verified (clean) snapshot of the database was taken (Unix time, from \
         its manifest).",
        &["snapshot", "preflight"],
    ),
    (
        "custodian_newest_verified_snapshot_age_seconds",
        "Age of the newest verified snapshot when the command ran.",
        &["snapshot", "preflight"],
    ),
    (
        "custodian_repair_restored_customers",
        "Customers the last repair restored from a snapshot.",
        &["repair"],
    ),
    (
        "custodian_repair_quarantined_customers",
        "Customers whose duplicate rows the last repair kept aside in custodian_quarantine.",
        &["repair"],
    ),
    (
        "custodian_repair_unrecoverable_customers",
        "Customers known to have existed that the last repair could not restore from any \
         source.",
        &["repair"],
    ),
];

const STICKY: &[&str] = &[
    "custodian_last_complete_check_timestamp_seconds",
    "custodian_newest_verified_snapshot_timestamp_seconds",
];

/// The verdicts each command can give (the `verdict` label's values).
fn verdicts(command: &str) -> &'static [&'static str] {
    match command {
        "check" | "snapshot" => &["clean", "corrupt", "failed"],
        "preflight" => &["go", "no_go", "failed"],
        "repair" => &[
            "clean",
            "corrupt",
            "repaired",
            "repaired_with_losses",
            "failed",
        ],
        _ => &["failed"],
    }
}

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

/// The series of one run of one command.
#[derive(Debug)]
pub struct Metrics {
    command: &'static str,
    samples: Vec<Sample>,
    dbs: BTreeSet<String>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    pub fn new(command: &'static str) -> Metrics {
        Metrics {
            command,
            samples: Vec::new(),
            dbs: BTreeSet::new(),
        }
    }

    fn add(&mut self, name: &str, db: &str, extra: &[(&str, &str)], value: f64) {
        let mut labels = Labels::new();
        labels.insert("db".into(), db.into());
        for (k, v) in extra {
            labels.insert((*k).into(), (*v).into());
        }
        self.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }

    /// The series every command writes for a database: up, verdict (one
    /// series per possible verdict), exit code, time of the run.
    pub fn run(&mut self, db: &str, verdict: &str, status: ExitStatus, at: SystemTime) {
        let c = self.command;
        self.dbs.insert(db.to_string());
        let up = verdict != "failed" && status != ExitStatus::CouldNotRun;
        self.add(
            "custodian_up",
            db,
            &[("command", c)],
            f64::from(u8::from(up)),
        );
        for v in verdicts(c) {
            let on = *v == verdict;
            self.add(
                "custodian_verdict",
                db,
                &[("command", c), ("verdict", v)],
                f64::from(u8::from(on)),
            );
        }
        self.add(
            "custodian_exit_code",
            db,
            &[("command", c)],
            f64::from(status.code()),
        );
        self.add(
            "custodian_last_run_timestamp_seconds",
            db,
            &[("command", c)],
            unix(at).floor(),
        );
    }

    /// A check's series for one database.
    pub fn check(
        &mut self,
        db: &str,
        report: &Report,
        status: ExitStatus,
        took: Duration,
        at: SystemTime,
    ) {
        self.run(db, report.verdict.as_str(), status, at);
        if report.verdict == Verdict::Failed {
            return;
        }
        self.add(
            "custodian_affected_customers",
            db,
            &[],
            report.affected_customer_ids.len() as f64,
        );
        for (sev, name) in [
            (Severity::Error, "error"),
            (Severity::Warning, "warning"),
            (Severity::Info, "info"),
        ] {
            self.add(
                "custodian_findings",
                db,
                &[("severity", name)],
                report.count(sev) as f64,
            );
        }
        self.add(
            "custodian_check_duration_seconds",
            db,
            &[],
            (took.as_secs_f64() * 1000.0).round() / 1000.0,
        );
        if report.coverage.complete {
            self.add(
                "custodian_last_complete_check_timestamp_seconds",
                db,
                &[],
                unix(at).floor(),
            );
        }
    }

    /// The newest verified snapshot of a database (snapshot, preflight).
    pub fn newest_snapshot(&mut self, db: &str, taken: SystemTime, now: SystemTime) {
        self.add(
            "custodian_newest_verified_snapshot_timestamp_seconds",
            db,
            &[],
            unix(taken).floor(),
        );
        let age = now.duration_since(taken).unwrap_or_default();
        self.add(
            "custodian_newest_verified_snapshot_age_seconds",
            db,
            &[],
            age.as_secs_f64().floor(),
        );
    }

    /// A repair's own counts.
    pub fn repair(&mut self, db: &str, restored: usize, quarantined: usize, unrecoverable: usize) {
        self.add(
            "custodian_repair_restored_customers",
            db,
            &[],
            restored as f64,
        );
        self.add(
            "custodian_repair_quarantined_customers",
            db,
            &[],
            quarantined as f64,
        );
        self.add(
            "custodian_repair_unrecoverable_customers",
            db,
            &[],
            unrecoverable as f64,
        );
    }

    /// Takes in the series of another part of the same run (a worker's).
    pub fn absorb(&mut self, other: Metrics) {
        self.samples.extend(other.samples);
        self.dbs.extend(other.dbs);
    }

    /// Whether an old series is replaced by this run.
    fn replaces(&self, old: &Sample) -> bool {
        let Some(db) = old.labels.get("db") else {
            return false;
        };
        if !self.dbs.contains(db) {
            return false;
        }
        if let Some(c) = old.labels.get("command") {
            return c == self.command;
        }
        FAMILIES
            .iter()
            .find(|f| f.0 == old.name)
            .is_some_and(|f| f.2.contains(&self.command))
    }

    /// Merges this run's series into FILE's and writes it atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let (dir, name) = split(path)?;
        let lock = lock(&dir.join(format!(".{name}.lock")))?;
        let (old, old_meta) = match std::fs::read_to_string(path) {
            Ok(text) => parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), BTreeMap::new()),
            Err(e) => {
                return Err(anyhow!(e))
                    .with_context(|| format!("{}: cannot read the metrics file", path.display()));
            }
        };
        let new_keys: BTreeSet<(String, Labels)> = self
            .samples
            .iter()
            .map(|s| (s.name.clone(), s.labels.clone()))
            .collect();
        let mut all: Vec<Sample> = old
            .into_iter()
            .filter(|s| {
                !new_keys.contains(&(s.name.clone(), s.labels.clone()))
                    && (!self.replaces(s) || STICKY.contains(&s.name.as_str()))
            })
            .collect();
        all.extend(self.samples.iter().cloned());
        let text = render(&all, &old_meta);
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = write_new(&tmp, &text).and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("{}: cannot replace the metrics file", path.display()))
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp); // our own unfinished file
        }
        written?;
        crate::files::fsync_dir(&dir)?;
        drop(lock);
        Ok(())
    }
}

/// The folder and file name of the metrics file.
fn split(path: &Path) -> Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// An exclusive advisory lock, released when the file is dropped.
fn lock(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("{}: cannot open the metrics lock", path.display()))?;
    // SAFETY: flock on a file descriptor this process owns.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("{}: cannot lock", path.display()));
    }
    Ok(f)
}

/// A new file, mode 0644 (node_exporter reads it as another user; it holds
/// paths and counts, no customer data), never through a symbolic link.
fn write_new(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// `# HELP` and `# TYPE` lines of a file, by metric name, kept for series
/// custodian does not know (written by a newer version).
type Meta = BTreeMap<String, Vec<String>>;

/// The samples and the HELP/TYPE lines of an existing file. Lines that do
/// not parse are dropped.
fn parse(text: &str) -> (Vec<Sample>, Meta) {
    let mut samples = Vec::new();
    let mut meta: Meta = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            if let Some(name) = rest.split_whitespace().next() {
                meta.entry(name.to_string())
                    .or_default()
                    .push(line.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(s) = parse_sample(line) {
            samples.push(s);
        }
    }
    (samples, meta)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Labels::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices();
        loop {
            // label name up to '='
            let start = chars.clone().next()?.0;
            let (eq, _) = chars.by_ref().find(|(_, c)| *c == '=' || *c == '}')?;
            if r[eq..].starts_with('}') {
                rest = &r[eq + 1..];
                break;
            }
            let key = r[start..eq].trim_start_matches(',').trim().to_string();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
            match chars.next()? {
                (i, '}') => {
                    rest = &r[i + 1..];
                    break;
                }
                (_, ',') => {}
                _ => return None,
            }
        }
    }
    let value: f64 = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The text format: families sorted by name, each with its HELP and TYPE,
/// its series sorted by labels.
fn render(samples: &[Sample], old_meta: &Meta) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_name.entry(&s.name).or_default().push(s);
    }
    let mut out = String::new();
    for (name, mut group) in by_name {
        group.sort_by(|a, b| a.labels.cmp(&b.labels));
        group.dedup_by(|a, b| a.labels == b.labels);
        match FAMILIES.iter().find(|f| f.0 == name) {
            Some((_, help, _)) => {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} gauge");
            }
            None => {
                for l in old_meta.get(name).into_iter().flatten() {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
        for s in group {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), number(s.value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn labels_round_trip_through_the_text_format() {
        let line = r#"custodian_up{command="check",db="/srv/a \"b\"\\c\nd"} 1"#;
        let s = parse_sample(line).unwrap();
        assert_eq!(s.labels["db"], "/srv/a \"b\"\\c\nd");
        assert_eq!(s.value, 1.0);
        let text = render(std::slice::from_ref(&s), &Meta::new());
        assert!(text.ends_with(&format!("{line}\n")), "{text}");
        assert_eq!(parse(&text).0, vec![s]);
        assert_eq!(parse_sample("x 2.5").unwrap().value, 2.5);
        assert!(parse_sample("x{a=\"1\" 2").is_none());
    }

    /// A metrics file is read back before it is rewritten, and anything may
    /// be in it (a truncated write by another tool, garbage): seeded random
    /// lines never panic the parser, and what is rendered parses back to the
    /// same samples.
    #[test]
    fn any_text_parses_without_panic_and_rendering_round_trips() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "ab_{}=\",\\ \n#0.5e+-InfNa\u{e9}\u{1f600}"
            .chars()
            .collect();
        for _ in 0..5000 {
            let len = (next() % 60) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let (samples, meta) = parse(&text);
            let rendered = render(&samples, &meta);
            let (again, _) = parse(&rendered);
            let mut want = samples.clone();
            want.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
            want.dedup_by(|a, b| a.name == b.name && a.labels == b.labels);
            let same = |a: &Sample, b: &Sample| {
                a.name == b.name
                    && a.labels == b.labels
                    && (a.value == b.value || (a.value.is_nan() && b.value.is_nan()))
            };
            assert!(
                want.len() == again.len() && want.iter().zip(&again).all(|(a, b)| same(a, b)),
                "{text:?} -> {rendered:?}"
            );
        }
    }

    #[test]
    fn a_run_replaces_its_own_series_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("custodian.prom");
        let mut m = Metrics::new("snapshot");
        m.run("a.db", "clean", ExitStatus::Success, at(1000));
        m.newest_snapshot("a.db", at(900), at(1000));
        m.write(&p).unwrap();
        let mut m = Metrics::new("check");
        m.run("a.db", "clean", ExitStatus::Success, at(2000));
        m.add(
            "custodian_last_complete_check_timestamp_seconds",
            "a.db",
            &[],
            2000.0,
        );
        m.run("b.db", "clean", ExitStatus::Success, at(2000));
        m.add(
            "custodian_last_complete_check_timestamp_seconds",
            "b.db",
            &[],
            2000.0,
        );
        m.write(&p).unwrap();
        // the next night: b.db is busy, its last complete check stays
        let mut m = Metrics::new("check");
        m.run("b.db", "failed", ExitStatus::CouldNotRun, at(3000));
        m.run("a.db", "clean", ExitStatus::Success, at(3000));
        m.add(
            "custodian_last_complete_check_timestamp_seconds",
            "a.db",
            &[],
            3000.0,
        );
        m.write(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let (samples, _) = parse(&text);
        let get = |name: &str, labels: &[(&str, &str)]| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|s| s.value)
        };
        assert_eq!(
            get("custodian_up", &[("db", "b.db"), ("command", "check")]),
            Some(0.0)
        );
        assert_eq!(
            get("custodian_up", &[("db", "a.db"), ("command", "snapshot")]),
            Some(1.0)
        );
        assert_eq!(
            get(
                "custodian_newest_verified_snapshot_timestamp_seconds",
                &[("db", "a.db")]
            ),
            Some(900.0)
        );
        assert_eq!(
            get(
                "custodian_last_complete_check_timestamp_seconds",
                &[("db", "a.db")]
            ),
            Some(3000.0)
        );
        assert_eq!(
            get(
                "custodian_last_complete_check_timestamp_seconds",
                &[("db", "b.db")]
            ),
            Some(2000.0)
        );
        assert_eq!(
            get(
                "custodian_verdict",
                &[("db", "b.db"), ("verdict", "failed")]
            ),
            Some(1.0)
        );
        assert_eq!(text.matches("# TYPE custodian_up gauge").count(), 1);
        // no temporary file is left, the lock file is hidden
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, [".custodian.prom.lock", "custodian.prom"]);
    }
}
