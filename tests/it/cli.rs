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
fn every_command_names_a_missing_file_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["snapshot", "x.db", "--out", "."],
        vec!["preflight", "x.db", "--snapshot", "y.db"],
        vec!["diagnose", "x.db", "C1"],
        vec!["repair", "x.db", "--snapshot", "y.db"],
        vec!["check", "x.db"],
    ] {
        let r = run(&args, dir.path());
        assert_eq!(r.code(), 2, "{}", r.show());
        assert!(r.stderr().starts_with("custodian: x.db: "), "{}", r.show());
        assert_eq!(r.stderr().lines().count(), 1, "{}", r.show());
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
    // a folder means the databases in it (issue 11); this one has none
    let r = run(&["check", "."], dir.path());
    assert_eq!(r.code(), 2);
    assert_eq!(
        r.stderr(),
        "custodian: no SQLite database in .\n",
        "{}",
        r.show()
    );
    let r = run(&["repair", "nope.db", "--snapshot", "s.db"], dir.path());
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().starts_with("custodian: nope.db: cannot open"),
        "{}",
        r.show()
    );
    let r = run(&["diagnose", "nope.db", "C1"], dir.path());
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().starts_with("custodian: nope.db: cannot open"),
        "{}",
        r.show()
    );
    let r = run(&["check"], dir.path());
    assert_eq!(r.code(), 2, "clap's usage error is exit 2 too");
}

#[test]
fn the_commented_config_example_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let db = super::support::fixture_copy("healthy", dir.path());
    let cfg = super::support::fixtures().join("config-example.json");
    let r = run(
        &[
            "check",
            db.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--json",
            "-",
        ],
        dir.path(),
    );
    assert_eq!(r.code(), 0, "{}", r.show());
    let codes: Vec<String> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect();
    assert!(codes.contains(&"customer_closed".to_string()), "{codes:?}");
}

#[test]
fn completions_are_generated_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&["completions", shell], dir.path());
        assert_eq!(r.code(), 0, "{}", r.show());
        for word in ["check", "repair", "diagnose", "snapshot", "dry-run"] {
            assert!(r.stdout().contains(word), "{shell}: {word}");
        }
    }
}

#[test]
fn every_command_help_has_an_example_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["check", "repair", "diagnose", "snapshot", "preflight"] {
        let r = run(&[cmd, "--help"], dir.path());
        assert_eq!(r.code(), 0);
        let out = r.stdout();
        assert!(
            out.contains("Example:") && out.contains(&format!("custodian {cmd} ")),
            "{cmd}: {out}"
        );
        assert!(
            out.contains("Exit codes:") && out.contains("  2  "),
            "{cmd}: {out}"
        );
    }
}

/// A bad `--config` stops every command that reads the customer table
/// before it touches the database: exit 2, one line on stderr naming the
/// config file and what is wrong, nothing on stdout, the database unchanged.
#[test]
fn config_errors_are_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = super::support::fixture_copy("stale_pk_page", dir.path());
    let snap = super::support::fixtures().join("stale_pk_page.snap.db");
    let before = std::fs::read(&db).unwrap();
    let missing = dir.path().join("missing.json");
    let cases: [(&str, &str, String); 5] = [
        ("missing.json", "", "cannot read config file: No such file or directory".into()),
        ("truncated.json", "{\"table\": ", "invalid config: EOF while parsing a value at line 1 column 10".into()),
        ("not-json.json", "table = customers\n", "invalid config: expected ident at line 1 column 2".into()),
        (
            "bad-regex.json",
            r#"{"id_rule": {"regex": "^C[0-9"}}"#,
            "id_rule.regex is not a valid regular expression: unclosed character class in \"^C[0-9\"".into(),
        ),
        ("unknown-key.json", r#"{"tabel": "customers"}"#, "invalid config: unknown field `tabel`".into()),
    ];
    for (file, text, what) in &cases {
        let cfg = dir.path().join(file);
        if *file != "missing.json" {
            std::fs::write(&cfg, text).unwrap();
        } else {
            assert!(!missing.exists());
        }
        let cfg = cfg.to_str().unwrap();
        let db = db.to_str().unwrap();
        let snap = snap.to_str().unwrap();
        for args in [
            vec!["check", db, "--config", cfg],
            vec!["check", db, "--config", cfg, "--json", "report.json"],
            vec!["diagnose", db, "C052157602710", "--config", cfg],
            vec!["repair", db, "--snapshot", snap, "--config", cfg],
            vec!["preflight", db, "--snapshot", snap, "--config", cfg],
        ] {
            let r = run(&args, dir.path());
            assert_eq!(r.code(), 2, "{}", r.show());
            assert_eq!(r.stdout(), "", "{}", r.show());
            let err = r.stderr();
            assert_eq!(err.lines().count(), 1, "one line: {}", r.show());
            assert!(
                err.starts_with(&format!("custodian: {cfg}: {what}")),
                "names the file and what is wrong: {}",
                r.show()
            );
            assert_eq!(std::fs::read(db).unwrap(), before, "{}", r.show());
        }
    }
    let backups: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("backup") || n.contains("custodian-repair"))
        .collect();
    assert_eq!(backups, Vec::<String>::new(), "no repair started");
}
