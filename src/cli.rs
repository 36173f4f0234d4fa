//! The command line: clap definitions only. Names and flags are a stable
//! contract (see DESIGN.md): they may gain siblings, never change.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  healthy / go / repaired and verified / every ID served correctly
  1  problems found / no-go / repaired with losses / some ID not served
  2  could not run (bad arguments, missing file, not a database, busy): nothing changed
  3  repair stopped or failed its verification: the original is untouched";

#[derive(Debug, Parser)]
#[command(
    name = "custodian",
    version,
    about = "Find and repair the damage in a POS customer database that makes a terminal \
             reject a real customer with \"unsupported customer ID\".",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Print nothing but errors (no summary, no progress bars).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a database, read-only: every customer the POS would reject, and why.
    #[command(after_help = concat!(
        "Example:\n  custodian check pos.db --json report.json --report report.md\n",
        "  custodian check /srv/pos/ --jobs 2 --out-dir reports/ --json fleet.json --metrics custodian.prom\n\n",
        "Exit codes:\n  0  clean\n  1  problems found (see the report)\n",
        "  2  could not run: bad arguments, missing file, not a database, busy\n",
        "Several databases: 1 if any has problems, else 2 if any could not be checked, else 0."
    ))]
    Check(CheckArgs),
    /// Repair a database, losing nothing: backup, build and verify a repaired copy, swap it in.
    #[command(after_help = concat!(
        "Example:\n  custodian repair pos.db --snapshot /var/backups/pos/ --dry-run\n",
        "  custodian repair pos.db --snapshot /var/backups/pos/ --report repair.md\n\n",
        "Exit codes:\n  0  repaired and verified, or nothing to do\n",
        "  1  repaired, but rows were quarantined or could not be recovered: see the report\n",
        "  2  could not run (bad arguments, missing file, not a database, busy): nothing changed\n",
        "  3  repair stopped or failed its verification: the original is untouched"
    ))]
    Repair(RepairArgs),
    /// Say why the POS rejects the given customer IDs, from the data.
    #[command(after_help = concat!(
        "Example:\n  custodian diagnose pos.db C000000019817 C000000019818 --config custodian.json\n\n",
        "Exit codes:\n  0  every ID is served correctly\n  1  at least one ID is not served correctly\n",
        "  2  could not run: bad arguments, missing file, not a database, busy"
    ))]
    Diagnose(DiagnoseArgs),
    /// Take a verified snapshot of a live database, with a manifest.
    #[command(after_help = concat!(
        "Example:\n  custodian snapshot pos.db --out /var/backups/pos --keep 14\n\n",
        "Exit codes:\n  0  snapshot taken and verified\n  1  snapshot taken, but the database is damaged (see its manifest)\n",
        "  2  could not run: bad arguments, missing file, not a database, busy"
    ))]
    Snapshot(SnapshotArgs),
    /// Go / no-go before a POS software upgrade.
    #[command(after_help = concat!(
        "Example:\n  custodian preflight pos.db --snapshot /var/backups/pos --max-age 24 --baseline before.json\n",
        "  custodian preflight pos.db --snapshot /var/backups/pos --compare before.json\n\n",
        "Exit codes:\n  0  go\n  1  no-go (one line of reason per failed condition)\n",
        "  2  could not run: bad arguments, missing file, not a database, busy"
    ))]
    Preflight(PreflightArgs),
    /// Merge JSON reports gathered from many machines into one fleet report.
    #[command(after_help = concat!(
        "Example:\n  custodian summary /srv/reports/ --html hq.html --report hq.md --json hq.json\n\n",
        "Exit codes:\n  0  every database is healthy\n  1  some database has problems\n",
        "  2  could not run (no report found), or some database could not be checked"
    ))]
    Summary(SummaryArgs),
    /// Print a shell completion script (bash, zsh, fish, …) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// JSON reports (one database's, or a fleet summary), or folders of them
    /// (searched to any depth for *.json).
    #[arg(value_name = "REPORT.json|DIR", required = true)]
    pub reports: Vec<PathBuf>,
    /// Write the fleet summary (JSON) to FILE, or to stdout with `-`.
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,
    /// Write the fleet report (Markdown) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the fleet report (HTML: stores worst first, each linking to its
    /// own HTML report) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl SummaryArgs {
    /// The outputs, as the fleet writer takes them.
    pub fn output(&self) -> TableOpts {
        TableOpts {
            json: self.json.clone(),
            report: self.report.clone(),
            html: self.html.clone(),
            ..TableOpts::default()
        }
    }
}

/// Options shared by every command that reads the customer table.
#[derive(Debug, Args, Clone, Default)]
pub struct TableOpts {
    /// The customer table (default: customers).
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
    /// The customer ID column (default: customer_id).
    #[arg(long, value_name = "C")]
    pub id_column: Option<String>,
    /// JSON settings: table, id column, ID rule, status values (see README).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write the machine report (JSON) to FILE, or to stdout with `-`.
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,
    /// Write the human report (Markdown) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a self-contained HTML report (with a map of the file's pages) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Treat warnings (ID format, disabled customers) as problems: exit 1.
    #[arg(long)]
    pub strict: bool,
    /// Also run SQLite's own full PRAGMA quick_check as a second opinion
    /// (custodian's checks already catch what it catches; this costs about
    /// one more read of the whole file).
    #[arg(long)]
    pub sqlite_quick_check: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Database files, or folders of them (every SQLite database directly
    /// in a folder, recognised by its header or, that header wiped, by its
    /// pages; hidden files and -wal/-shm/-journal files are skipped).
    #[arg(value_name = "DB|DIR", required_unless_present = "list")]
    pub dbs: Vec<PathBuf>,
    #[command(flatten)]
    pub fleet: FleetOpts,
    /// Write Prometheus metrics (node_exporter textfile format) to FILE,
    /// atomically.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub opts: TableOpts,
}

/// Options for running a command over many databases.
#[derive(Debug, Args, Clone, Default)]
pub struct FleetOpts {
    /// Read database paths from FILE, one a line (`-` = stdin; empty lines
    /// and lines starting with `#` are skipped).
    #[arg(long, value_name = "FILE|-")]
    pub list: Option<String>,
    /// Work on N databases at a time (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
    /// One report per database in DIR (created if missing, mode 0700),
    /// named after the database, in every format asked for (--json,
    /// --report, --html; JSON when none is); --json/--report/--html FILE
    /// then get the summary of all the databases.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The database file to repair (backed up first, replaced only by a
    /// verified copy).
    pub db: PathBuf,
    /// A snapshot file or a directory of them (repeatable; optional: without
    /// one, repair does everything that needs none and says what a snapshot
    /// would have restored). A path that cannot be read is an error.
    #[arg(long, value_name = "PATH")]
    pub snapshot: Vec<PathBuf>,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the byte-for-byte backup goes (default: beside the database).
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Write Prometheus metrics (node_exporter textfile format) to FILE,
    /// atomically: the verdict and the restored, quarantined and
    /// unrecoverable counts.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub opts: TableOpts,
}

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// The database file (only read).
    pub db: PathBuf,
    /// Customer IDs to explain.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Snapshots (files or folders) to look in for customers the live
    /// database has lost. A path that cannot be read is an error.
    #[arg(long, value_name = "PATH")]
    pub snapshot: Vec<PathBuf>,
    #[command(flatten)]
    pub opts: TableOpts,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The live database files, or folders of them (every SQLite database
    /// directly in a folder, recognised by its header or its pages).
    #[arg(value_name = "DB|DIR", required_unless_present = "list")]
    pub dbs: Vec<PathBuf>,
    /// Folder the snapshots and their manifests go to (created if missing,
    /// mode 0700).
    #[arg(long, value_name = "DIR", required = true)]
    pub out: PathBuf,
    /// Keep only the newest N verified snapshots (N ≥ 1: the newest good
    /// one is never removed).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_keep)]
    pub keep: Option<usize>,
    #[command(flatten)]
    pub fleet: FleetOpts,
    /// Write Prometheus metrics (node_exporter textfile format) to FILE,
    /// atomically: the verdict and the newest verified snapshot's age.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// The customer table to verify and hash (--table, --id-column,
    /// --config), and --json for the machine report.
    #[command(flatten)]
    pub opts: TableOpts,
}

/// `--keep N`: a whole number of snapshots, at least 1.
fn parse_keep(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|e| e.to_string()),
        Ok(_) => Err(
            "--keep must be at least 1 (a number of snapshots; the newest good one is never \
             removed)"
                .to_string(),
        ),
        Err(_) => Err(format!("{s:?} is not a whole number of snapshots")),
    }
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// The database file (only read).
    pub db: PathBuf,
    /// A snapshot file or a directory of them (repeatable); one verified
    /// snapshot younger than --max-age must exist.
    #[arg(long, value_name = "PATH", required = true)]
    pub snapshot: Vec<PathBuf>,
    /// The newest verified snapshot's greatest age, in hours (default 24).
    #[arg(long, value_name = "HOURS")]
    pub max_age: Option<f64>,
    /// Before the upgrade: write per-customer digests to FILE (a new file).
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    pub baseline: Option<PathBuf>,
    /// After the upgrade: no-go if a customer of this baseline became
    /// unfindable by ID, or changed while its updated_at did not.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// Write Prometheus metrics (node_exporter textfile format) to FILE,
    /// atomically: the verdict and the newest verified snapshot's age.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    #[command(flatten)]
    pub opts: TableOpts,
}
