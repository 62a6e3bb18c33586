//! Signed identities, delegation, single-use execution tickets and exactly-once redemption.
//!
//! * [`keys`]: ed25519 key pairs in PEM files, key ids (RFC 7638 thumbprints), [`KeySet`]s of
//!   trusted public keys and JWKS. Identity, ticket and audit signing use separate keys.
//! * [`identity`]: agent identity tokens (EdDSA JWTs), delegation through nested `act`
//!   claims (RFC 8693) limited by configuration, and [`IdentityConfig::resolve_caller`], the
//!   policy that turns a request's token or plain id into a [`agentsafe_core::Caller`].
//! * tickets: execution tickets (compact JWS, `typ` `agentsafe-ticket+jwt`) issued for
//!   ALLOW decisions and verified into a [`VerifiedTicket`].
//! * [`store`]: the ISSUED → PENDING → COMMITTED state machine that makes each ticket
//!   execute at most once, in memory or in a SQLite file shared by several processes, and
//!   [`store::conformance`], the suite every store (and a new backend) must pass.
//!
//! Tokens are RFC 8785 canonical JSON in compact JWS form, base64url without padding, so
//! any JWT library with EdDSA support can verify them and known-answer tests pin their bytes.

pub mod bench;
pub mod config;
pub mod duration;
pub mod error;
pub mod identity;
mod jws;
pub mod keys;
pub mod store;
mod ticket;

pub use config::{IdentityConfig, TicketConfig};
pub use duration::HumanDuration;
pub use error::{IdentityError, KeyError, StoreError, TicketError};
pub use identity::{
    IdentityIssuer, IdentityRequest, IdentityVerifier, IssuedIdentity, VerifiedIdentity,
};
pub use keys::{KeyPurpose, KeySet, Signer, VerifyingKey};
pub use store::{
    MemoryTicketStore, Outcome, PendingGuard, Receipt, Redemption, SqliteTicketStore, StoreOptions,
    TicketRecord, TicketState, TicketStore,
};
pub use ticket::{
    Nonce, NonceParseError, SignedTicket, TicketExpectation, TicketVerifier, VerifiedTicket,
    params_digest,
};

/// What weakens a guarantee when misused, kept apart as rustls keeps its `danger` module.
///
/// * [`danger::TicketIssuer`] signs a ticket for any ALLOW decision it is handed. The
///   enforcement point (`agentsafe-gate`) is the one place that should hold it: it issues
///   only for decisions that went through identity, policy, limits and the audit log.
///   Tests, benchmarks and known-answer vectors use it directly.
/// * [`danger::decode_unverified`] shows a token's claims without checking anything.
pub mod danger {
    pub use crate::ticket::TicketIssuer;
    pub use crate::ticket::danger::decode_unverified;
}
