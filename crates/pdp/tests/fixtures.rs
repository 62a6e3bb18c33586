//! Fixture-driven PDP cases: each folder under `tests/fixtures/` holds a `policies.toml`,
//! an `inventory.toml` and a `cases.toml` (run against the shipped action catalogue), or an
//! `expect_error.txt` with the exact load error the policies must produce.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};

use agentsafe_pdp::{Inventory, Pdp, PolicySet, Registry, testing};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn check(dir: &Path, registry: &Registry) -> Result<usize, String> {
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let policies = PolicySet::from_sources(&[("policies.toml", read("policies.toml")?)]);
    if let Ok(expected) = read("expect_error.txt") {
        return match policies {
            Ok(_) => Err(String::from("policies loaded, expected an error")),
            Err(e) if e.to_string() == expected.trim_end() => Ok(1),
            Err(e) => Err(format!(
                "expected error\n  {}\ngot\n  {e}",
                expected.trim_end()
            )),
        };
    }
    let policies = policies.map_err(|e| e.to_string())?;
    let inventory =
        Inventory::parse("inventory.toml", &read("inventory.toml")?).map_err(|e| e.to_string())?;
    let pdp = Pdp::new(registry.clone(), policies, inventory);
    let cases =
        testing::parse_cases("cases.toml", &read("cases.toml")?).map_err(|e| e.to_string())?;
    if cases.is_empty() {
        return Err(String::from("no cases"));
    }
    let report = testing::run(&pdp, &cases);
    let failures: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.name, r.failures.join("; ")))
        .collect();
    if failures.is_empty() {
        Ok(report.results.len())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn fixtures_decide_as_expected() {
    let registry =
        Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions")).unwrap();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 8,
        "expected the fixture folders, found {}",
        dirs.len()
    );
    let mut problems = Vec::new();
    let mut total = 0;
    for dir in &dirs {
        match check(dir, &registry) {
            Ok(n) => total += n,
            Err(e) => problems.push(format!("{}:\n{e}", dir.display())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(total >= 25, "only {total} checks ran");
}
