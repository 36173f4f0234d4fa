//! Findings: a defect in the database is a finding, not an error. Checks
//! push typed findings and carry on; `Err` means the tool could not do its job.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

/// Every kind of finding, with its stable code (serialized snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The check could not run (the error says why); nothing was changed.
    CouldNotRun,
    // --- the file ---
    /// The 100-byte header is damaged (bad page size, reserved bytes, …).
    HeaderInvalid,
    /// The file is shorter than the page count in its header says.
    FileTruncated,
    /// The file length is not a whole number of pages.
    FileSizeOdd,
    /// Committed transactions in the -wal not yet copied into the file.
    WalUncheckpointed,
    /// A -wal file that exists but cannot be used.
    WalInvalid,
    /// The -wal ends in a transaction whose own commit frame fails its
    /// checksum (a torn write): SQLite discards it as never committed, so
    /// its changes are not in the database (info).
    WalLastTransactionTorn,
    // --- structure ---
    /// SQLite cannot read the schema table.
    SchemaUnreadable,
    /// A b-tree page that cannot be read or whose header is invalid.
    PageDamaged,
    /// Cells of a page out of bounds or overlapping.
    CellDamaged,
    /// A child pointer to a page that is out of range or already used.
    ChildPointerInvalid,
    /// A record that does not parse, or an overflow chain that is broken.
    RecordDamaged,
    /// Keys out of order within or across pages.
    KeyOrder,
    /// Pages that belong to no table, index or freelist (a lost b-tree,
    /// e.g. an index whose definition was removed from the schema).
    PageUnused,
    /// A page used twice (by two trees, or twice in one).
    PageReused,
    /// Two pages that hold each other's content (each written at the
    /// other's place), told by every reference to them; the customers on
    /// them whose lookups fail, read with the two put back.
    PagesSwapped,
    /// The freelist is damaged.
    FreelistDamaged,
    /// Pointer-map entries (auto_vacuum files) that do not match the pages
    /// they describe.
    PtrmapDamaged,
    /// What SQLite's own `PRAGMA quick_check` reported that custodian's
    /// typed checks did not already name.
    SqliteQuickCheck,
    /// Rows that break their table's column rules as SQLite's quick_check
    /// judges them: NULL in a NOT NULL column, a value of the wrong type in a
    /// STRICT table or against a column's affinity, a failed CHECK constraint.
    ColumnConstraint,
    /// A virtual table (FTS, R-Tree) whose own integrity method reports
    /// damage in its shadow tables.
    VirtualTableDamaged,
    /// SQLite refuses the whole file (its header, its schema, or a file
    /// shorter than its header says): the POS cannot look up any customer.
    DatabaseRefused,
    /// Beside a refused file: what custodian's page-level reader still finds
    /// of the customer table (info).
    PageLevelReading,
    // --- the customer table and its indexes ---
    /// The customer table does not exist.
    TableMissing,
    /// Rows of the table that cannot be read.
    RowsUnreadable,
    /// A row of the table has no entry in an index.
    IndexEntryMissing,
    /// An index entry whose row does not exist.
    IndexEntrySurplus,
    /// An index entry that points at a row holding a different key.
    IndexKeyMismatch,
    /// Two rows with the same key under a UNIQUE index.
    DuplicateKey,
    /// The POS lookup through an index gives a wrong answer (confirmed).
    LookupWrong,
    /// An index that could not be compared with the table.
    IndexNotCompared,
    /// Customer IDs other tables name that neither the customer table nor
    /// its indexes have (lost with their rows and entries).
    CustomerVanished,
    /// Customer IDs other tables name whose rows and index entries were
    /// deleted on purpose (a right-to-erasure request), by the evidence:
    /// no page lost or damaged, no index entry left for them. Only under
    /// the config's `"vanished": "erasure_by_evidence"`; info.
    CustomerErased,
    // --- data rules (warnings) ---
    /// A customer ID that breaks the configured format or length rule.
    IdFormat,
    /// A customer ID that is empty or NULL.
    IdEmpty,
    /// A customer whose status means disabled, frozen or closed.
    CustomerDisabled,
    CustomerFrozen,
    CustomerClosed,
    // --- snapshot and preflight ---
    /// `snapshot`: a snapshot and its manifest were written (object: its path).
    SnapshotWritten,
    /// `snapshot --keep`: an older verified snapshot was removed (object: the file).
    SnapshotPruned,
    /// `preflight`: a condition holds (object: the condition).
    PreflightPassed,
    /// `preflight`: a condition fails: no-go (object: the condition).
    PreflightFailed,
}

/// One index entry, named by its row and its key. Key values of columns that
/// may hold personal data are masked (see `report::mask`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryRef {
    pub rowid: Option<i64>,
    pub customer_id: Option<String>,
    pub key: Vec<serde_json::Value>,
}

impl EntryRef {
    /// Sort key: by customer ID, then rowid, then key text.
    pub fn sort_key(&self) -> (Option<String>, Option<i64>, String) {
        (
            self.customer_id.clone(),
            self.rowid,
            serde_json::Value::Array(self.key.clone()).to_string(),
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub object: Option<String>,
    pub table: Option<String>,
    pub message: String,
    pub count: u64,
    pub customer_ids: Vec<String>,
    pub pages: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<EntryRef>,
}

impl Finding {
    pub fn new(code: Code, severity: Severity, message: impl Into<String>) -> Finding {
        Finding {
            code,
            severity,
            object: None,
            table: None,
            message: message.into(),
            count: 1,
            customer_ids: Vec::new(),
            pages: Vec::new(),
            entries: Vec::new(),
        }
    }

    pub fn error(code: Code, message: impl Into<String>) -> Finding {
        Finding::new(code, Severity::Error, message)
    }

    pub fn object(mut self, object: &str) -> Finding {
        self.object = Some(object.to_string());
        self
    }

    pub fn table(mut self, table: &str) -> Finding {
        self.table = Some(table.to_string());
        self
    }

    pub fn count(mut self, count: u64) -> Finding {
        self.count = count;
        self
    }

    pub fn pages(mut self, mut pages: Vec<u32>) -> Finding {
        pages.sort_unstable();
        pages.dedup();
        self.pages = pages;
        self
    }

    pub fn customer_ids(mut self, ids: Vec<String>) -> Finding {
        self.customer_ids = ids;
        self
    }
}
