//! Fuzz target: parsing an audit log line never panics, nor does reading what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(entry) = agentsafe_audit::Entry::parse(line) {
        let _ = (
            entry.decision(),
            entry.action(),
            entry.caller_id(),
            entry.target_id(),
            entry.reason_code(),
        );
    }
});
