//! Shared helpers: run the binary, find fixtures, read ground truth.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_custodian")
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

/// The outcome of one run, printed in full when an assertion fails.
pub struct Run {
    pub cmd: String,
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn show(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.show()))
    }
}

pub fn run(args: &[&str], cwd: &Path) -> Run {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run custodian");
    Run {
        cmd: format!("custodian {}", args.join(" ")),
        out,
    }
}

/// Copies fixture `name` (its .db and any -wal) into `dir`; returns the
/// copy's path. Tests never run on the committed files themselves.
pub fn fixture_copy(name: &str, dir: &Path) -> PathBuf {
    let src = fixtures().join(format!("{name}.db"));
    assert!(src.exists(), "missing fixture {}", src.display());
    let dst = dir.join(format!("{name}.db"));
    std::fs::copy(&src, &dst).unwrap();
    let wal = fixtures().join(format!("{name}.db-wal"));
    if wal.exists() {
        std::fs::copy(&wal, dir.join(format!("{name}.db-wal"))).unwrap();
    }
    dst
}

/// The fixture builder's ground truth for `name`.
pub fn truth(name: &str) -> serde_json::Value {
    let p = fixtures().join(format!("{name}.truth.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// An owned SQL value, for comparing the reader with SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Val {
    pub fn from_reader(
        v: &custodian::format::record::ValueRef,
        enc: custodian::format::header::TextEncoding,
    ) -> Val {
        match *v {
            custodian::format::record::ValueRef::Null => Val::Null,
            custodian::format::record::ValueRef::Integer(i) => Val::Int(i),
            custodian::format::record::ValueRef::Real(r) => Val::Real(r),
            // SQLite hands text to rusqlite as UTF-8.
            custodian::format::record::ValueRef::Text(t) => match enc {
                custodian::format::header::TextEncoding::Utf8 => Val::Text(t.to_vec()),
                _ => Val::Text(
                    custodian::format::record::decode_text(t, enc)
                        .into_owned()
                        .into_bytes(),
                ),
            },
            custodian::format::record::ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        }
    }

    pub fn from_sqlite(v: rusqlite::types::ValueRef) -> Val {
        use rusqlite::types::ValueRef as R;
        match v {
            R::Null => Val::Null,
            R::Integer(i) => Val::Int(i),
            R::Real(r) => Val::Real(r),
            R::Text(t) => Val::Text(t.to_vec()),
            R::Blob(b) => Val::Blob(b.to_vec()),
        }
    }

    /// Equal as SQLite would show them: a REAL column stores integral values
    /// as integers and returns them as REAL; an INTEGER PRIMARY KEY column
    /// is stored as NULL and returns the rowid.
    pub fn matches(&self, sqlite: &Val, rowid: i64) -> bool {
        match (self, sqlite) {
            (Val::Int(i), Val::Real(r)) => *i as f64 == *r,
            (Val::Null, Val::Int(i)) => *i == rowid,
            (Val::Real(a), Val::Real(b)) => a == b || (a.is_nan() && b.is_nan()),
            (a, b) => a == b,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Val::Text(t) => String::from_utf8_lossy(t).into_owned(),
            v => format!("{v:?}"),
        }
    }
}
