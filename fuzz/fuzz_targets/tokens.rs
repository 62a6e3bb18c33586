//! Fuzz target: identity-token and ticket verification never panic. The seed corpus holds
//! tokens signed by the seed-7 key at 2023-11-14T22:13:20Z, so mutations reach the claims.
#![no_main]

use std::sync::LazyLock;

use agentsafe_tickets::{
    IdentityConfig, IdentityVerifier, KeySet, Signer, TicketConfig, TicketVerifier,
};
use libfuzzer_sys::fuzz_target;

static VERIFIERS: LazyLock<(IdentityVerifier, TicketVerifier, jiff::Timestamp)> =
    LazyLock::new(|| {
        let mut keys = KeySet::new();
        let _ = keys.insert(Signer::from_seed(&[7; 32]).verifying_key());
        (
            IdentityVerifier::new(keys.clone(), &IdentityConfig::default()),
            TicketVerifier::new(keys, &TicketConfig::default()),
            jiff::Timestamp::from_second(1_700_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        )
    });

fuzz_target!(|token: &str| {
    let (identities, tickets, now) = &*VERIFIERS;
    if let Err(e) = identities.verify(token, *now) {
        let _ = (e.code(), e.reason_code());
    }
    if let Err(e) = tickets.verify(token, *now) {
        let _ = e.code();
    }
});
