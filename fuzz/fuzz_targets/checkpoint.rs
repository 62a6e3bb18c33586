//! Fuzz target: parsing a signed checkpoint note never panics. The seed corpus holds
//! checkpoints signed by the seed-42 key the audit tests use.
#![no_main]

use std::sync::LazyLock;

use agentsafe_audit::{Checkpoint, SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;

static KEY: LazyLock<VerifyingKey> =
    LazyLock::new(|| SigningKey::from_bytes(&[42; 32]).verifying_key());

fuzz_target!(|note: &str| {
    let _ = Checkpoint::from_note(note, &KEY);
});
