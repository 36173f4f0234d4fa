//! The test hooks are in the binary the tests drive (and only there: .ci/run
//! proves the release build ignores them).

use super::support::bin;

#[test]
fn the_tested_binary_has_the_test_hooks() {
    let bytes = std::fs::read(bin()).unwrap();
    for var in [
        "CUSTODIAN_PAUSE_AT",
        "CUSTODIAN_PAUSE_FILE",
        "CUSTODIAN_TEST_DAMAGE_COPY",
        "CUSTODIAN_TEST_FAIL_LEAVE_WAL",
    ] {
        assert!(
            bytes.windows(var.len()).any(|w| w == var.as_bytes()),
            "{} was built without the test hook {var}: the `test-hooks` feature is off \
             (Cargo.toml's dev-dependency on the package itself turns it on for `cargo test`)",
            bin()
        );
    }
}
