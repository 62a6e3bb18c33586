//! Fuzz target: the policy loader never panics, and every problem is located in the text.
#![no_main]

use agentsafe_pdp::{PdpError, PolicySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(PdpError::Invalid(list)) = PolicySet::from_sources(&[("fuzz.toml", text)]) {
        let last_line = text.matches('\n').count() + 1;
        for d in list {
            assert!(
                d.file == "fuzz.toml" && (1..=last_line).contains(&d.line) && d.column >= 1,
                "{d}"
            );
        }
    }
});
