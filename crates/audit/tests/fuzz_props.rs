//! Fuzz-style property tests of the audit log's parsers: entry lines, signed checkpoints and
//! whole-log verification. Nothing panics on arbitrary or mutated input, a mutated
//! checkpoint never verifies as another checkpoint, and a log whose lines were mutated never
//! verifies.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

#[path = "../../registry/tests/common/mutate.rs"]
mod mutate;

use std::sync::LazyLock;

use agentsafe_audit::{Checkpoint, Entry, SyncPolicy, read_checkpoints, verify_log};
use common::{Fixture, cfg_with};
use proptest::prelude::*;
use proptest::sample::Index;

/// A log of ten entries with checkpoints at 4, 8 and 10, its lines and its checkpoint notes.
struct Sample {
    fx: Fixture,
    log: String,
    lines: Vec<String>,
    notes: Vec<Checkpoint>,
}

static SAMPLE: LazyLock<Sample> = LazyLock::new(|| {
    let fx = Fixture::new();
    fx.write(10, &cfg_with(SyncPolicy::Group, 4));
    let log = std::fs::read_to_string(&fx.log).unwrap();
    let lines = fx.lines();
    let notes = read_checkpoints(&fx.log, &fx.key.verifying_key()).unwrap();
    Sample {
        fx,
        log,
        lines,
        notes,
    }
});

proptest! {
    #![proptest_config(mutate::config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_entry_parser(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Entry::parse(&bytes);
    }

    #[test]
    fn a_mutated_entry_line_never_panics_the_parser(
        line in any::<Index>(),
        edits in prop::collection::vec(mutate::edit(), 1..6),
    ) {
        let text = mutate::mutate(&SAMPLE.lines[line.index(SAMPLE.lines.len())], &edits);
        if let Ok(entry) = Entry::parse(text.as_bytes()) {
            // Whatever parses can be read without panicking.
            let _ = (entry.decision(), entry.action(), entry.caller_id(), entry.target_id(), entry.reason_code());
        }
    }

    #[test]
    fn arbitrary_text_is_never_a_checkpoint(text in any::<String>()) {
        prop_assert!(Checkpoint::from_note(&text, &SAMPLE.fx.key.verifying_key()).is_err());
    }

    #[test]
    fn a_mutated_checkpoint_verifies_only_as_itself(
        note in any::<Index>(),
        edits in prop::collection::vec(mutate::edit(), 1..4),
    ) {
        let original = &SAMPLE.notes[note.index(SAMPLE.notes.len())];
        let text = mutate::mutate(original.note(), &edits);
        if let Ok(cp) = Checkpoint::from_note(&text, &SAMPLE.fx.key.verifying_key()) {
            prop_assert_eq!(
                (cp.origin(), cp.size(), cp.root()),
                (original.origin(), original.size(), original.root())
            );
        }
    }

    #[test]
    fn a_log_with_mutated_lines_never_verifies(edits in prop::collection::vec(mutate::edit(), 1..4)) {
        let mutated = mutate::mutate(&SAMPLE.log, &edits);
        prop_assume!(mutated != SAMPLE.log);
        let fx = copy_of_sample();
        std::fs::write(&fx.log, &mutated).unwrap();
        let result = verify_log(&fx.log, &fx.key.verifying_key(), None);
        prop_assert!(result.is_err(), "a mutated log verified:\n{}", mutated);
    }

    #[test]
    fn a_mutated_checkpoints_file_never_panics_verification(edits in prop::collection::vec(mutate::edit(), 1..4)) {
        let fx = copy_of_sample();
        let original = std::fs::read_to_string(fx.checkpoints()).unwrap();
        std::fs::write(fx.checkpoints(), mutate::mutate(&original, &edits)).unwrap();
        let _ = verify_log(&fx.log, &fx.key.verifying_key(), None);
    }
}

/// A fresh folder holding a copy of the sample log and its checkpoints, with the same key.
fn copy_of_sample() -> Fixture {
    let fx = Fixture::new();
    std::fs::copy(&SAMPLE.fx.log, &fx.log).unwrap();
    std::fs::copy(SAMPLE.fx.checkpoints(), fx.checkpoints()).unwrap();
    fx
}

#[test]
fn the_sample_verifies() {
    let fx = copy_of_sample();
    let report = verify_log(&fx.log, &fx.key.verifying_key(), None).unwrap();
    assert_eq!((report.entries, report.checkpoints), (10, 3));
}
