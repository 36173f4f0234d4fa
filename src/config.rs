//! Validated settings: command-line options merged over the `--config` file.
//!
//! The config file is JSON. Whole lines starting with `//` are comments and
//! are ignored, so an example can explain itself. Unknown keys are an error
//! (a misspelt key must not silently disable a rule).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use regex::Regex;
use serde::Deserialize;

use crate::cli::TableOpts;

pub const DEFAULT_TABLE: &str = "customers";
pub const DEFAULT_ID_COLUMN: &str = "customer_id";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    table: Option<String>,
    id_column: Option<String>,
    id_rule: Option<IdRuleFile>,
    status_column: Option<String>,
    #[serde(default)]
    status_values: StatusValues,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    upgrade: Upgrade,
    #[serde(default)]
    vanished: VanishedPolicy,
}

/// What a customer that other tables name, but that is gone from the table
/// and its indexes, means.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VanishedPolicy {
    /// Always a loss: `customer_vanished`, an error (the default: a
    /// damaged database is never called healthy).
    #[default]
    Error,
    /// A deletion on purpose (right to erasure) when the evidence says so:
    /// nothing in the file is lost or damaged and no index entry survives
    /// for the customer; `customer_erased`, info. Any sign of loss keeps
    /// them `customer_vanished`.
    ErasureByEvidence,
}

/// What a POS software upgrade is declared to change in the customer table
/// (`preflight --compare` says go for exactly these schema changes).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    #[serde(default)]
    pub added_columns: Vec<String>,
    #[serde(default)]
    pub dropped_columns: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdRuleFile {
    regex: Option<String>,
    length: Option<usize>,
    min_length: Option<usize>,
    max_length: Option<usize>,
}

/// Status values that make the POS refuse a customer on purpose.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusValues {
    #[serde(default)]
    pub disabled: Vec<String>,
    #[serde(default)]
    pub frozen: Vec<String>,
    #[serde(default)]
    pub closed: Vec<String>,
}

/// The format rule a customer ID must follow.
#[derive(Debug, Clone)]
pub struct IdRule {
    pub regex: Option<Regex>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
}

impl IdRule {
    /// Why `id` breaks the rule, or None when it follows it.
    pub fn violation(&self, id: &str) -> Option<String> {
        let len = id.chars().count();
        if let Some(min) = self.min_length
            && len < min
        {
            return Some(format!("shorter than {min} characters"));
        }
        if let Some(max) = self.max_length
            && len > max
        {
            return Some(format!("longer than {max} characters"));
        }
        if let Some(re) = &self.regex
            && !re.is_match(id)
        {
            return Some(format!("does not match /{}/", re.as_str()));
        }
        None
    }
}

/// Everything a command needs to know about the customer table.
#[derive(Debug, Clone)]
pub struct Settings {
    pub table: String,
    pub id_column: String,
    /// True when the table name came from the user, not the default.
    pub table_given: bool,
    pub id_rule: Option<IdRule>,
    pub status_column: Option<String>,
    pub status_values: StatusValues,
    /// `table.column` pairs that refer to customer IDs.
    pub references: Vec<String>,
    /// Schema changes an upgrade is declared to make.
    pub upgrade: Upgrade,
    /// How vanished customers are told from erased ones.
    pub vanished: VanishedPolicy,
    pub strict: bool,
    /// Also run SQLite's full `PRAGMA quick_check` as a second opinion
    /// (`--sqlite-quick-check`); custodian's own checks do not need it.
    pub sqlite_quick_check: bool,
}

impl Settings {
    pub fn from_opts(opts: &TableOpts) -> Result<Settings> {
        let file = match &opts.config {
            Some(path) => read_config(path)?,
            None => ConfigFile::default(),
        };
        let id_rule = match file.id_rule {
            None => None,
            Some(r) => {
                let regex = match r.regex {
                    Some(src) => Some(
                        Regex::new(&src)
                            .map_err(|e| anyhow::anyhow!("{} in {src:?}", regex_reason(&e)))
                            .with_context(|| {
                                config_path_context(opts.config.as_deref(), "id_rule.regex")
                            })?,
                    ),
                    None => None,
                };
                let (min_length, max_length) = match r.length {
                    Some(n) => (Some(n), Some(n)),
                    None => (r.min_length, r.max_length),
                };
                Some(IdRule {
                    regex,
                    min_length,
                    max_length,
                })
            }
        };
        let table_given = opts.table.is_some() || file.table.is_some();
        let table = opts
            .table
            .clone()
            .or(file.table)
            .unwrap_or_else(|| DEFAULT_TABLE.to_string());
        let id_column = opts
            .id_column
            .clone()
            .or(file.id_column)
            .unwrap_or_else(|| DEFAULT_ID_COLUMN.to_string());
        for r in &file.references {
            if r.split_once('.').is_none() {
                bail!(
                    "{}: references: {r:?} is not of the form table.column",
                    opts.config.as_deref().unwrap_or(Path::new("?")).display()
                );
            }
        }
        Ok(Settings {
            table,
            id_column,
            table_given,
            id_rule,
            status_column: file.status_column,
            status_values: file.status_values,
            references: file.references,
            upgrade: file.upgrade,
            vanished: file.vanished,
            strict: opts.strict,
            sqlite_quick_check: opts.sqlite_quick_check,
        })
    }
}

/// What is wrong with a regular expression, on one line: the regex crate's
/// syntax errors span several lines (the pattern, a caret, the reason), and
/// an error is one line on stderr.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid");
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

fn config_path_context(path: Option<&Path>, key: &str) -> String {
    format!(
        "{}: {key} is not a valid regular expression",
        path.map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default()
    )
}

fn read_config(path: &PathBuf) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read config file", path.display()))?;
    let json: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&json).with_context(|| format!("{}: invalid config", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rule_reports_each_kind_of_violation() {
        let rule = IdRule {
            regex: Some(Regex::new("^C[0-9]{12}$").unwrap()),
            min_length: Some(13),
            max_length: Some(13),
        };
        assert_eq!(rule.violation("C000000019817"), None);
        assert_eq!(
            rule.violation("C00001").as_deref(),
            Some("shorter than 13 characters")
        );
        assert_eq!(
            rule.violation("C0000000198170").as_deref(),
            Some("longer than 13 characters")
        );
        assert_eq!(
            rule.violation("X000000019817").as_deref(),
            Some("does not match /^C[0-9]{12}$/")
        );
    }

    #[test]
    fn config_with_comments_and_unknown_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(
            &p,
            "// the table\n{\"table\": \"clients\", \"id_rule\": {\"length\": 5}}\n",
        )
        .unwrap();
        let opts = TableOpts {
            config: Some(p.clone()),
            ..Default::default()
        };
        let s = Settings::from_opts(&opts).unwrap();
        assert_eq!(s.table, "clients");
        assert_eq!(s.id_column, "customer_id");
        assert!(s.table_given);
        assert_eq!(
            s.id_rule.unwrap().violation("abc").as_deref(),
            Some("shorter than 5 characters")
        );
        std::fs::write(&p, "{\"tabel\": \"x\"}").unwrap();
        let err = format!("{:#}", Settings::from_opts(&opts).unwrap_err());
        assert!(
            err.contains("invalid config") && err.contains("unknown field `tabel`"),
            "{err}"
        );
    }
}
