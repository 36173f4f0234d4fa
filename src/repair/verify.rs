//! Step 7 of a repair: may this copy replace the original? It must pass
//! the full check (with SQLite's quick_check second opinion), serve every
//! customer who was rejected before (or restored) through every index, and
//! account for every row. A copy that fails is kept as `*.failed`, never
//! deleted, and the original stays as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Action, Job, RepairFields, apply};
use crate::check;
use crate::config::Settings;
use crate::progress::Progress;
use crate::report::{Report, Verdict};
use crate::schema;

/// A patched copy: verified, and its row count is the live count less the
/// rows moved to quarantine.
pub(super) fn patched(
    job: &Job,
    copy: &Path,
    sql: &apply::SqlOutcome,
    fields: &mut RepairFields,
) -> Result<Report> {
    let t0 = std::time::Instant::now();
    let affected_before = &job.before.affected_customer_ids;
    let verified = verify_copy(
        copy,
        job.settings,
        job.table,
        affected_before,
        &fields.restored_customer_ids,
    )?;
    check::timing("repair: verify", t0);
    let conn = crate::db::open_read_only(copy)?;
    // rows accounted for: every row read before is there, but those moved
    let rows: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM {} NOT INDEXED",
            schema::quote_ident(&job.table.name)
        ),
        [],
        |r| r.get(0),
    )?;
    let moved: usize = sql.quarantined.iter().map(|q| q.2.len()).sum();
    let expected = job.before.coverage.customers_read as i64 - moved as i64;
    drop(conn);
    if rows != expected {
        keep_failed(copy);
        bail!("the repaired copy holds {rows} customers, expected {expected}");
    }
    fields.actions.push(Action {
        kind: "verify",
        object: None,
        detail: format!(
            "the repaired copy is clean; {} previously rejected customers are found through every index; {rows} customers accounted for",
            affected_before.len()
        ),
    });
    Ok(verified)
}

/// A rebuilt database: verified, with the restored customers found.
pub(super) fn rebuilt(
    job: &Job,
    copy: &Path,
    customers: i64,
    fields: &mut RepairFields,
) -> Result<Report> {
    let verified = verify_copy(
        copy,
        job.settings,
        job.table,
        &job.before.affected_customer_ids,
        &fields.restored_customer_ids,
    )?;
    fields.actions.push(Action {
        kind: "verify",
        object: None,
        detail: format!(
            "the rebuilt database is clean; {} customers; {} restored from the snapshot are found through every index; {} could not be restored",
            customers,
            fields.restored_customer_ids.len(),
            fields.unrecoverable_customer_ids.len()
        ),
    });
    Ok(verified)
}

/// The repaired copy must pass the full check, and every customer who was
/// rejected before (or was restored) must be served right by its ID through
/// every index: found if restored, never a wrong row or an error. A copy
/// that fails is kept as `*.failed`.
fn verify_copy(
    copy: &Path,
    settings: &Settings,
    table: &schema::CustomerTable,
    affected_before: &[String],
    restored: &[String],
) -> Result<Report> {
    apply::test_damage_copy(copy)?;
    apply::pause_point("verify");
    let verified = check::check(copy, settings, Progress::hidden())
        .with_context(|| "verifying the repaired copy".to_string())?
        .report;
    let first_error = verified
        .findings
        .iter()
        .find(|f| f.severity == check::finding::Severity::Error)
        .map(|f| f.message.clone());
    if verified.verdict != Verdict::Clean || first_error.is_some() {
        keep_failed(copy);
        bail!(
            "the repaired copy failed its verification: {}",
            first_error.as_deref().unwrap_or("not clean")
        );
    }
    let conn = crate::db::open_read_only(copy)?;
    let prober = check::probe::Prober::new(&conn, table);
    for id in affected_before.iter().chain(restored.iter()) {
        let v = table.id_value(id);
        // The copy has passed the check, so its ID index agrees with its
        // table: "missing" means the customer is not in the table (a stale
        // entry of a deleted customer), right unless it was restored.
        let must_find = restored.contains(id);
        let wrong = prober.probe_id(&v).values().any(|a| {
            matches!(
                a,
                check::probe::Answer::WrongRow | check::probe::Answer::Error(_)
            ) || (must_find && a.is_wrong())
        });
        if wrong {
            drop(conn);
            keep_failed(copy);
            bail!("customer {id} is still not served correctly by the repaired copy");
        }
    }
    Ok(verified)
}

/// A copy that failed verification is kept for inspection, never deleted.
pub(super) fn keep_failed(copy: &Path) {
    let mut failed = copy.as_os_str().to_owned();
    failed.push(".failed");
    let _ = std::fs::rename(copy, PathBuf::from(failed));
}
