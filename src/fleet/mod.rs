//! Many databases in one run (`check DIR`, `snapshot DIR`, `--list`):
//! each database is worked on by the same per-database function as a
//! single run, `--jobs` at a time, independently (one that is busy or not
//! a database is reported as such and the rest go on). Memory stays
//! bounded whatever the count: a worker holds one database's report until
//! it is written, and the run keeps one small [`Entry`] per database.
//!
//! The path: inputs (paths, folders by header, `--list`) → workers →
//! per-database reports in `--out-dir` → the fleet summary (JSON, Markdown,
//! HTML, stdout lines) → metrics.

pub mod check;
pub mod inputs;
pub mod snapshot;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};

use crate::cli::{FleetOpts, TableOpts};
use crate::progress::Progress;
use crate::report::fleet::{Entry, FleetSummary};
use crate::report::{self, Report};

/// `--jobs`, else the number of cores.
pub fn jobs(requested: Option<u32>) -> usize {
    requested
        .map(|n| n as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Runs `one` on every path, `jobs` at a time, with a progress bar counting
/// databases; the results come back in the order of `paths`.
pub fn run_each<T: Send>(
    paths: &[PathBuf],
    jobs: usize,
    progress: Progress,
    one: impl Fn(usize, &Path) -> T + Sync,
) -> Vec<T> {
    let bar = progress.bar(paths.len() as u64, "databases");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..paths.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(paths.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = paths.get(i) else { break };
                    let r = one(i, p);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// The per-database reports of `--out-dir`.
#[derive(Debug)]
pub struct OutDir {
    dir: PathBuf,
    json: bool,
    markdown: bool,
    html: bool,
    names: Vec<String>,
}

impl OutDir {
    /// Creates the folder (mode 0700, parents too) and names each
    /// database's reports: its file name, or its whole path (`/` → `_`)
    /// where two databases share a file name. JSON when no format is asked.
    pub fn prepare(dir: &Path, opts: &TableOpts, paths: &[PathBuf]) -> Result<OutDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("{}: cannot create the report folder", dir.display()))?;
        let none = opts.json.is_none() && opts.report.is_none() && opts.html.is_none();
        Ok(OutDir {
            dir: dir.to_path_buf(),
            json: opts.json.is_some() || none,
            markdown: opts.report.is_some(),
            html: opts.html.is_some(),
            names: report_names(paths),
        })
    }

    /// Writes database `i`'s reports; records their paths in `entry`. A
    /// report that cannot be written turns the entry into "could not run".
    pub fn write(&self, i: usize, report: &Report, entry: &mut Entry) {
        let base = self.dir.join(&self.names[i]);
        let mut wrote = |ext: &str, text: Result<String>, slot: &mut Option<String>| {
            let mut p = base.as_os_str().to_owned();
            p.push(ext);
            let p = PathBuf::from(p);
            let done = text.and_then(|t| {
                report::write_file(&p, &t)
                    .with_context(|| format!("{}: cannot write the report", p.display()))
            });
            match done {
                Ok(()) => *slot = Some(p.display().to_string()),
                Err(e) => {
                    // a sound database whose report is missing was not checked
                    // as asked; a damaged one stays "problems"
                    if entry.exit_code == 0 {
                        entry.exit_code = crate::exit::ExitStatus::CouldNotRun.code();
                    }
                    entry.error.get_or_insert(format!("{e:#}"));
                }
            }
        };
        let (mut j, mut m, mut h) = (None, None, None);
        if self.json {
            wrote(".json", report::json::to_string(report), &mut j);
        }
        if self.markdown {
            wrote(".md", Ok(report::markdown::render(report)), &mut m);
        }
        if self.html {
            wrote(".html", Ok(report::html::render(report)), &mut h);
        }
        entry.report = j;
        entry.markdown_report = m;
        entry.html_report = h;
    }
}

/// Report base names, one per database, distinct.
fn report_names(paths: &[PathBuf]) -> Vec<String> {
    let file_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "database".into())
    };
    let plain: Vec<String> = paths.iter().map(|p| file_name(p)).collect();
    let mut names: Vec<String> = plain
        .iter()
        .zip(paths)
        .map(|(n, p)| {
            if plain.iter().filter(|m| *m == n).count() > 1 {
                flat_name(p)
            } else {
                n.clone()
            }
        })
        .collect();
    // still equal (e.g. "a_b/c" and "a/b_c"): number them
    let mut seen = std::collections::BTreeSet::new();
    for n in &mut names {
        let mut k = 2;
        let base = n.clone();
        while !seen.insert(n.clone()) {
            *n = format!("{base}-{k}");
            k += 1;
        }
    }
    names
}

/// A path as one file name: its components joined by `_`, characters other
/// than letters, digits, `.`, `-` and `_` replaced by `_`.
fn flat_name(p: &Path) -> String {
    let parts: Vec<String> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("up".into()),
            _ => None,
        })
        .collect();
    parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the fleet summary where `--json`, `--report`, `--html` point and
/// prints the stdout lines (unless quiet or the JSON goes to stdout).
pub fn emit_summary(summary: &FleetSummary, opts: &TableOpts, quiet: bool) -> Result<()> {
    if let Some(target) = &opts.json {
        let text = summary.to_json()?;
        if target == "-" {
            report::print(&text);
        } else {
            report::write_file(Path::new(target), &text)
                .with_context(|| format!("{target}: cannot write the JSON summary"))?;
        }
    }
    if let Some(path) = &opts.report {
        report::write_file(path, &summary.markdown())
            .with_context(|| format!("{}: cannot write the summary", path.display()))?;
    }
    if let Some(path) = &opts.html {
        let from = path.parent().unwrap_or(Path::new(""));
        let html = summary.html(&|e| {
            e.html_report
                .as_deref()
                .map(|h| relative_href(from, Path::new(h)))
        });
        report::write_file(path, &html)
            .with_context(|| format!("{}: cannot write the HTML summary", path.display()))?;
    }
    if !quiet && opts.json.as_deref() != Some("-") {
        report::print(&summary.lines());
    }
    Ok(())
}

/// Whether a command's arguments make a fleet run: a folder, a list,
/// `--out-dir`, or more than one database.
pub fn is_fleet(dbs: &[PathBuf], fleet: &FleetOpts) -> bool {
    fleet.list.is_some() || fleet.out_dir.is_some() || dbs.len() != 1 || dbs[0].is_dir()
}

/// The link from a file in folder `from` to `to`, percent-encoded.
pub fn relative_href(from: &Path, to: &Path) -> String {
    let abs = |p: &Path| -> Vec<String> {
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        let mut out: Vec<String> = Vec::new();
        for c in full.components() {
            match c {
                Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    };
    let (f, t) = (abs(from), abs(to));
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); f.len() - common];
    parts.extend(t[common..].iter().cloned());
    parts
        .join("/")
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_are_distinct() {
        let paths: Vec<PathBuf> = ["s1/pos.db", "s2/pos.db", "s3/till 2.db", "a_b/c", "a/b_c"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            report_names(&paths),
            ["s1_pos.db", "s2_pos.db", "till 2.db", "c", "b_c"]
        );
        let paths: Vec<PathBuf> = ["x/a_b", "x_a/b", "x/a/b"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(report_names(&paths), ["a_b", "x_a_b", "x_a_b-2"]);
    }

    #[test]
    fn hrefs_are_relative_and_encoded() {
        assert_eq!(
            relative_href(Path::new("/r/hq"), Path::new("/r/stores/s 1#.html")),
            "../stores/s%201%23.html"
        );
        assert_eq!(
            relative_href(Path::new("/r"), Path::new("/r/a.html")),
            "a.html"
        );
    }
}
