//! Step 7 of a repair: may this copy replace the original? It must pass
//! the full check (with SQLite's quick_check second opinion), serve every
//! customer who was rejected before (or restored) through every index, and
//! account for every row. A copy that fails is kept as `*.failed`, never
//! deleted, and the original stays as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Action, Job, RepairFields, apply};
use crate::check;
use crate::check::finding::{Code, Finding, Severity};
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
    let verified = verify_copy(copy, job, fields)?;
    check::timing("repair: verify", t0);
    let conn = crate::db::open_read_only(copy)?;
    // rows accounted for: every row read before is there, but those moved
    let rows: i64 = crate::sql_bytes::query_row(
        &conn,
        &format!(
            "SELECT count(*) FROM {} NOT INDEXED",
            schema::quote_ident(&job.table.name)
        ),
        &[],
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
    let verified = verify_copy(copy, job, fields)?;
    let lost = fields.unrecoverable_customer_ids.len();
    // customers no source restored that other tables still name are the
    // check's one accepted finding; the others leave no trace to find
    let clean = if lost == 0 || verified.verdict == Verdict::Clean {
        "the rebuilt database is clean".to_string()
    } else {
        format!(
            "the rebuilt database is clean but for the {lost} customers that could not be restored (other tables still name them)"
        )
    };
    fields.actions.push(Action {
        kind: "verify",
        object: None,
        detail: format!(
            "{clean}; {} customers; {} restored from the snapshot are found through every index; {lost} could not be restored",
            customers,
            fields.restored_customer_ids.len(),
        ),
    });
    Ok(verified)
}

/// The repaired copy must pass the full check, and every customer who was
/// rejected before (or was restored) must be served right by its ID through
/// every index: found if restored, never a wrong row or an error. The only
/// damage the check of the copy may still name is the loss the repair
/// accounted for: customers that no source could restore (DESIGN.md, ladder
/// rule 8), each listed in `unrecoverable_customer_ids`. A copy that fails
/// is kept as `*.failed`.
fn verify_copy(copy: &Path, job: &Job, fields: &RepairFields) -> Result<Report> {
    apply::test_damage_copy(copy)?;
    apply::step("verify")?;
    let verified = check::check(copy, job.settings, Progress::hidden())
        .with_context(|| "verifying the repaired copy".to_string())?
        .report;
    let clean = verified.verdict == Verdict::Clean;
    if let Some(why) = unaccounted_damage(
        &verified.findings,
        clean,
        &fields.unrecoverable_customer_ids,
    ) {
        keep_failed(copy);
        bail!("the repaired copy failed its verification: {why}");
    }
    let restored = &fields.restored_customer_ids;
    let conn = crate::db::open_read_only(copy)?;
    let prober = check::probe::Prober::new(&conn, job.table);
    for id in job.before.affected_customer_ids.iter().chain(restored) {
        let v = job.table.id_value(id);
        // The copy has passed the check, so its ID index agrees with its
        // table: "missing" means the customer is not in the table (a stale
        // entry of a deleted customer, or one that could not be restored),
        // right unless it was restored.
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

/// The first error of the copy's check that the repair did not account for,
/// if any. Accounted for: customers that other tables name but the copy
/// does not hold ("vanished"), when every one of them is among `lost`, the
/// customers the repair reports as unrecoverable. Anything else — another
/// kind of error, or one vanished customer the repair did not list — fails.
fn unaccounted_damage(findings: &[Finding], clean: bool, lost: &[String]) -> Option<String> {
    let lost: std::collections::BTreeSet<&str> = lost.iter().map(String::as_str).collect();
    let accounted = |f: &Finding| {
        f.code == Code::CustomerVanished
            && !f.customer_ids.is_empty()
            && f.count == f.customer_ids.len() as u64
            && f.customer_ids.iter().all(|id| lost.contains(id.as_str()))
    };
    let errors: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if let Some(f) = errors.iter().find(|f| !accounted(f)) {
        return Some(f.message.clone());
    }
    if errors.is_empty() && !clean {
        return Some("not clean".into());
    }
    None
}

/// A copy that failed verification is kept for inspection, never deleted
/// (it is no longer a work file; the empty -wal and -shm that verifying it
/// left go).
pub(super) fn keep_failed(copy: &Path) {
    let mut failed = copy.as_os_str().to_owned();
    failed.push(".failed");
    let _ = apply::drop_sidecars(copy);
    if std::fs::rename(copy, PathBuf::from(failed)).is_ok() {
        super::interrupt::forget(copy);
    }
}

/// Removes a copy [`keep_failed`] kept, when the repair goes on to build
/// another (a copy mended in place that did not pass: the whole rebuild
/// follows, and its own result is what is kept or swapped in).
pub(super) fn discard_failed(copy: &Path) {
    let mut failed = copy.as_os_str().to_owned();
    failed.push(".failed");
    let _ = std::fs::remove_file(PathBuf::from(failed));
    let _ = apply::drop_sidecars(copy);
    let _ = std::fs::remove_file(copy);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vanished(ids: &[&str]) -> Finding {
        let mut f = Finding::new(Code::CustomerVanished, Severity::Error, "vanished");
        f.customer_ids = ids.iter().map(|s| s.to_string()).collect();
        f.count = ids.len() as u64;
        f
    }

    fn lost(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_losses_the_repair_accounted_for_are_accepted() {
        // every vanished customer is listed as unrecoverable: accepted
        let f = [vanished(&["C1", "C2"])];
        assert_eq!(
            unaccounted_damage(&f, false, &lost(&["C1", "C2", "C3"])),
            None
        );
        // one vanished customer the repair did not list: refused
        assert_eq!(
            unaccounted_damage(&f, false, &lost(&["C1"])).as_deref(),
            Some("vanished")
        );
        // a count beyond the IDs given (a capped list) cannot be accounted
        let mut capped = vanished(&["C1"]);
        capped.count = 2;
        assert!(unaccounted_damage(&[capped], false, &lost(&["C1", "C2"])).is_some());
        // any other error is never accepted, losses or not
        let other = Finding::new(Code::PageDamaged, Severity::Error, "page 2 is damaged");
        assert_eq!(
            unaccounted_damage(&[vanished(&["C1"]), other], false, &lost(&["C1"])).as_deref(),
            Some("page 2 is damaged")
        );
        // warnings do not count; a verdict that is not clean without an error does
        let w = Finding::new(Code::IdFormat, Severity::Warning, "format");
        assert_eq!(
            unaccounted_damage(std::slice::from_ref(&w), true, &[]),
            None
        );
        assert!(unaccounted_damage(&[w], false, &[]).is_some());
    }
}
