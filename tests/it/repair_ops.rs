//! `custodian repair`, the flow and its safety (issue 8 items 1, 6, 7, 9–12):
//! losses that never block a repair, symbolic links, no snapshot, WAL at
//! rest, unwritable places, signals and leftovers. Exact results against
//! the fixture builder's truth and the stock `sqlite3`.

use super::repair::{
    Setup, assert_found_through_every_index, customers_sha256, stock_integrity_check,
};
use super::support::{sqlite3_cli, strings, truth};

/// Issue 8 item 1: one leaf of `customers` zeroed; 2 of its 27 rows are in
/// the snapshot, 25 were registered after it and are named by
/// `transactions.customer_id`. The repair goes through: the 2 are restored,
/// the 25 are listed as unrecoverable, exit 1.
#[test]
fn unrecoverable_customers_never_block_the_repair() {
    let name = "lost_customer_leaf";
    let t = truth(name);
    let s = Setup::new(name);
    let original = std::fs::read(&s.db).unwrap();
    let r = s.repair(&[]);
    assert_eq!(r.code(), 1, "{}", r.show());
    let j = r.json();
    assert_eq!(j["verdict"], "repaired_with_losses");
    let lost = strings(&t["unrecoverable_customer_ids"]);
    assert_eq!(lost.len(), 25);
    assert_eq!(strings(&j["unrecoverable_customer_ids"]), lost);
    let restored = strings(&t["restorable_customer_ids"]);
    assert_eq!(restored.len(), 2);
    assert_eq!(strings(&j["restored_customer_ids"]), restored);
    assert_eq!(stock_integrity_check(&s.db), "ok");
    assert_eq!(
        customers_sha256(&s.db),
        t["expected_after_repair_sha256"].as_str().unwrap()
    );
    assert_found_through_every_index(&s.db, &restored);
    let backup = std::path::PathBuf::from(j["backup_path"].as_str().unwrap());
    assert_eq!(std::fs::read(backup).unwrap(), original);
    // The 25 are still named by transactions: the stock sqlite3 agrees
    // that exactly they have no customer row.
    let gone: Vec<String> = sqlite3_cli(
        &s.db,
        "SELECT DISTINCT customer_id FROM transactions WHERE customer_id NOT IN (SELECT customer_id FROM customers) ORDER BY 1",
    )
    .lines()
    .map(String::from)
    .collect();
    assert_eq!(gone, lost);
}
