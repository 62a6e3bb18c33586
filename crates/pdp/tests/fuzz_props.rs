//! Fuzz-style property tests of the pdp's loaders (policies, inventory, policy test cases):
//! on arbitrary text and on mutations of the shipped files they never panic, and every
//! problem they report is located in a file they were given, inside that file's text.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use std::path::Path;
use std::sync::LazyLock;

use agentsafe_pdp::{Inventory, PdpError, PolicySet, testing};
use proptest::prelude::*;
use proptest::sample::Index;

#[path = "../../registry/tests/common/mutate.rs"]
mod mutate;
use mutate::{TOKENS, edit, mutate};

fn repo(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap()
}

/// The shipped policy files, `(file name, text)`, in file-name order.
static POLICIES: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    [
        "policies/00-guardrails.toml",
        "policies/10-read-only.toml",
        "policies/20-dev-staging.toml",
        "policies/30-production.toml",
    ]
    .map(|p| (p.to_owned(), repo(p)))
    .to_vec()
});

static INVENTORY: LazyLock<String> = LazyLock::new(|| repo("inventory.toml"));
static CASES: LazyLock<String> = LazyLock::new(|| repo("policies/tests/baseline.toml"));

/// Every problem of `result`'s error names a file in `sources` and a line and column inside it.
fn check<T>(result: Result<T, PdpError>, sources: &[(String, String)]) {
    let Err(err) = result else { return };
    let PdpError::Invalid(list) = &err else {
        panic!("parsing text does no I/O and loads no registry, yet: {err}");
    };
    assert!(!list.is_empty(), "an error without problems");
    for d in list {
        let (_, text) = sources
            .iter()
            .find(|(name, _)| *name == d.file)
            .unwrap_or_else(|| panic!("problem names an unknown file: {d}"));
        let last_line = text.matches('\n').count() + 1;
        assert!(
            (1..=last_line).contains(&d.line) && d.column >= 1,
            "problem outside its file ({last_line} lines): {d}"
        );
        assert!(!d.message.is_empty(), "problem without a message: {d}");
    }
}

fn policies(sources: &[(String, String)]) {
    check(PolicySet::from_sources(sources), sources);
}

fn inventory(text: String) {
    let sources = [("inventory.toml".to_owned(), text)];
    check(Inventory::parse(&sources[0].0, &sources[0].1), &sources);
}

fn cases(text: String) {
    let sources = [("policies/tests/baseline.toml".to_owned(), text)];
    check(testing::parse_cases(&sources[0].0, &sources[0].1), &sources);
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(mutate::config())]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        policies(&[("policies/x.toml".to_owned(), text.clone())]);
        inventory(text.clone());
        cases(text);
    }

    #[test]
    fn toml_ish_token_soup_never_panics(text in soup()) {
        policies(&[("policies/x.toml".to_owned(), text.clone())]);
        inventory(text.clone());
        cases(text);
    }

    #[test]
    fn mutated_policies_never_panic_and_their_problems_are_located(
        file in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut sources = POLICIES.clone();
        let k = file.index(sources.len());
        sources[k].1 = mutate(&sources[k].1, &edits);
        policies(&sources);
    }

    #[test]
    fn a_mutated_inventory_never_panics_and_its_problems_are_located(
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        inventory(mutate(&INVENTORY, &edits));
    }

    #[test]
    fn mutated_test_cases_never_panic_and_their_problems_are_located(
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        cases(mutate(&CASES, &edits));
    }
}

#[test]
fn the_shipped_files_parse() {
    PolicySet::from_sources(&POLICIES).unwrap();
    Inventory::parse("inventory.toml", &INVENTORY).unwrap();
    testing::parse_cases("baseline.toml", &CASES).unwrap();
}
