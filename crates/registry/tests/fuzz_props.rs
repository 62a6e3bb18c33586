//! Fuzz-style property tests of the action-file loader: on arbitrary text and on mutations
//! of the shipped catalogue it never panics, and every problem it reports is located in a
//! file it was given, at a line and column inside that file's text.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

use std::path::Path;
use std::sync::LazyLock;

use agentsafe_registry::{Registry, RegistryError};
use proptest::prelude::*;
use proptest::sample::Index;

#[path = "common/mutate.rs"]
mod mutate;
use mutate::{TOKENS, edit, mutate};

/// The shipped action files, `(file name, text)`, in file-name order.
static CATALOGUE: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("actions/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
});

/// The loader must not panic; an error must be a list of located problems, each in a file
/// it was given, at a line and column that exist in that file's text.
fn check(sources: &[(String, String)]) {
    let Err(err) = Registry::from_sources(sources) else {
        return;
    };
    let RegistryError::Invalid(list) = &err else {
        panic!("from_sources does no I/O, yet: {err}");
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

proptest! {
    #![proptest_config(mutate::config())]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&[("actions/x.toml".to_owned(), text)]);
    }

    #[test]
    fn toml_ish_token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..40)) {
        check(&[("actions/x.toml".to_owned(), tokens.concat())]);
    }

    #[test]
    fn a_mutated_action_file_never_panics_and_its_problems_are_located(
        file in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let (name, text) = &CATALOGUE[file.index(CATALOGUE.len())];
        check(&[(name.clone(), mutate(text, &edits))]);
    }

    #[test]
    fn a_mutated_file_in_the_whole_catalogue_never_panics_and_its_problems_are_located(
        file in any::<Index>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut sources = CATALOGUE.clone();
        let k = file.index(sources.len());
        sources[k].1 = mutate(&sources[k].1, &edits);
        check(&sources);
    }
}

#[test]
fn the_shipped_catalogue_loads() {
    Registry::from_sources(&CATALOGUE).unwrap();
}
