//! Fixture-driven load tests: every folder under `tests/fixtures/` holds action files and
//! an `expect.txt` with the expected diagnostics (one per line, file paths relative to the
//! folder) or `ok`. Run with `UPDATE_EXPECT=1` to rewrite the expectations after a
//! deliberate change, then review the diff.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::path::Path;

use agentsafe_registry::{Registry, RegistryError};

/// Loads `dir` and renders the outcome as `expect.txt` holds it.
fn outcome(dir: &Path) -> String {
    match Registry::load(dir) {
        Ok(registry) => {
            assert!(
                !registry.is_empty(),
                "{}: an ok case must define actions",
                dir.display()
            );
            "ok\n".to_owned()
        }
        Err(RegistryError::Invalid(diagnostics)) => {
            let prefix = format!("{}/", dir.display());
            let mut out = String::new();
            for d in diagnostics {
                let line = d.to_string();
                out.push_str(&line.replace(&prefix, ""));
                out.push('\n');
            }
            out
        }
        Err(other) => panic!("{}: unexpected error {other}", dir.display()),
    }
}

#[test]
fn fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "expected the full set of fixture cases");
    let mut failures = Vec::new();
    for case in &cases {
        let expect_path = case.join("expect.txt");
        let actual = outcome(case);
        if update {
            std::fs::write(&expect_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
        if expected != actual {
            failures.push(format!(
                "--- {}\nexpected:\n{expected}actual:\n{actual}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn load_reads_only_toml_files_directly_in_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ok/scale.toml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("scale.toml"), &ok).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not toml = [").unwrap();
    std::fs::write(dir.path().join("scale.toml.bak"), "not toml = [").unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::write(dir.path().join("nested/broken.toml"), "not toml = [").unwrap();
    let registry = Registry::load(dir.path()).unwrap();
    assert_eq!(
        registry.actions().map(|a| a.name()).collect::<Vec<_>>(),
        ["scale"]
    );
}

#[test]
fn missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = Registry::load(&missing).unwrap_err();
    assert!(matches!(err, RegistryError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot read `"), "{err}");
    assert!(err.diagnostics().is_empty());
}

#[test]
fn file_names_in_diagnostics_are_as_given_to_from_sources() {
    let source = "name = 3\nversion = \"1.0.0\"\ndescription = \"d\"\nrisk = \"low\"\ntarget_types = [\"t\"]\nreversible = false\n";
    let err = Registry::from_sources(&[("actions/foo.toml", source)]).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("expected one diagnostic: {err}");
    };
    assert_eq!(
        (
            only.file.as_str(),
            only.line,
            only.column,
            only.key.as_str()
        ),
        ("actions/foo.toml", 1, 8, "name")
    );
    assert_eq!(
        err.to_string(),
        "actions/foo.toml:1:8: name: invalid type: integer `3`, expected a string"
    );
}
