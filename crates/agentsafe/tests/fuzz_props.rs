//! Fuzz-style property tests of the `agentsafe.toml` parser: arbitrary and mutated text
//! never panics it, and every error starts with `FILE:LINE:COL:` inside the text.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a panic is a test failure"
)]

use std::path::Path;
use std::sync::LazyLock;

use proptest::prelude::*;

#[path = "../../registry/tests/common/mutate.rs"]
mod mutate;

static SHIPPED: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agentsafe.toml"))
        .unwrap()
});

/// Parses `text`; an error must read `agentsafe.toml:LINE:COL: message`, the line and
/// column inside the text.
fn check(text: &str) -> Result<(), TestCaseError> {
    let Err(err) = agentsafe::config::parse(Path::new("agentsafe.toml"), text) else {
        return Ok(());
    };
    let shown = err.to_string();
    let rest = shown
        .strip_prefix("agentsafe.toml:")
        .unwrap_or_else(|| panic!("error does not name the file: {shown}"));
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts.next().unwrap().parse().unwrap_or(0);
    let col: usize = parts.next().unwrap_or("").parse().unwrap_or(0);
    let message = parts.next().unwrap_or("");
    let last_line = text.matches('\n').count() + 1;
    prop_assert!(
        (1..=last_line).contains(&line) && col >= 1,
        "not located: {}",
        shown
    );
    prop_assert!(
        message.starts_with(' ') && message.len() > 1,
        "no message: {}",
        shown
    );
    Ok(())
}

proptest! {
    #![proptest_config(mutate::config())]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn toml_ish_token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(mutate::TOKENS), 0..40)) {
        check(&tokens.concat())?;
    }

    #[test]
    fn a_mutated_config_never_panics_and_its_error_is_located(edits in prop::collection::vec(mutate::edit(), 1..6)) {
        check(&mutate::mutate(&SHIPPED, &edits))?;
    }
}

#[test]
fn the_shipped_config_parses() {
    agentsafe::config::parse(Path::new("agentsafe.toml"), &SHIPPED).unwrap();
}
