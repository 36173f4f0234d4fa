//! The command line: help, exit codes, clear one-line errors.

use super::support::run;

#[test]
fn help_shows_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&["--help"], dir.path());
    assert_eq!(r.code(), 0);
    for line in [
        "0  healthy",
        "1  problems found",
        "2  could not run",
        "3  repair stopped",
    ] {
        assert!(r.stdout().contains(line), "{}", r.show());
    }
    let r = run(&["check", "--help"], dir.path());
    assert!(
        r.stdout()
            .contains("custodian check pos.db --json report.json"),
        "{}",
        r.show()
    );
}

#[test]
fn commands_not_built_say_so_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["snapshot", "x.db", "--out", "d"],
        vec!["preflight", "x.db", "--snapshot", "y.db"],
    ] {
        let r = run(&args, dir.path());
        assert_eq!(r.code(), 2, "{}", r.show());
        assert!(r.stderr().contains("is not built yet"), "{}", r.show());
    }
}

#[test]
fn bad_paths_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&["check", "nope.db"], dir.path());
    assert_eq!(r.code(), 2);
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.show());
    assert!(
        r.stderr().starts_with("custodian: nope.db: cannot open"),
        "{}",
        r.show()
    );
    let r = run(&["check", "."], dir.path());
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains(".: is a directory"), "{}", r.show());
    let r = run(&["repair", "nope.db", "--snapshot", "s.db"], dir.path());
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().starts_with("custodian: nope.db: cannot open"),
        "{}",
        r.show()
    );
    let r = run(&["diagnose", "nope.db", "C1"], dir.path());
    assert_eq!(r.code(), 2);
    assert!(r.stderr().starts_with("custodian: nope.db: cannot open"), "{}", r.show());
    let r = run(&["check"], dir.path());
    assert_eq!(r.code(), 2, "clap's usage error is exit 2 too");
}
