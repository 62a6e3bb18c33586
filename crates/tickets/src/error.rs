//! The error types of `agentsafe-tickets`: keys, identities, tickets and the redemption store.
//!
//! The crate has one error type per concern rather than one for the whole crate, because each
//! maps onto its own set of stable reason codes: an identity failure becomes DENY
//! `invalid_identity` (or `delegation_too_deep`), a ticket failure has its own documented code
//! (`expired`, `bad_signature`, ...), and a store failure is an operational error. Every
//! variant's message is lowercase and never contains key material.

use std::path::PathBuf;

use agentsafe_core::ReasonCode;

/// Errors while generating, reading or writing keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("cannot access key file `{path}`: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key file exists and overwriting it was not asked for.
    #[error("key file `{0}` already exists (use --force to replace it)")]
    Exists(PathBuf),
    /// A private key file is readable by other users.
    #[error(
        "private key file `{path}` has mode {mode:o}; it must not be readable by group or others (chmod 600)"
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file is not a valid PEM-encoded ed25519 key.
    #[error("key file `{path}` is not a valid {kind} ed25519 key")]
    InvalidPem {
        /// The key file.
        path: PathBuf,
        /// `PKCS#8 private` or `SPKI public`.
        kind: &'static str,
    },
    /// Encoding a key as PEM failed.
    #[error("cannot encode {0} key as PEM")]
    Encode(&'static str),
    /// A key purpose name that is not one of `identity`, `ticket`, `audit`.
    #[error("unknown key purpose `{0}`, expected one of identity, ticket, audit, all")]
    UnknownPurpose(String),
    /// A public key of small order, under which any signature verifies.
    #[error("public key `{0}` is a weak (small-order) key and cannot be trusted")]
    WeakKey(String),
    /// The key set holds no key.
    #[error("no trusted public key is configured")]
    NoKeys,
}

/// Why an identity token or a caller was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The token is not a well-formed compact JWS with the expected header and claims.
    #[error("malformed identity token: {0}")]
    Malformed(String),
    /// The token's `typ` is not `JWT` (for example a ticket presented as an identity).
    #[error("token type `{0}` is not an identity token")]
    WrongType(String),
    /// The token's `alg` is not `EdDSA`.
    #[error("unsupported token algorithm `{0}`, expected EdDSA")]
    UnsupportedAlgorithm(String),
    /// The token's key id is not among the trusted identity keys.
    #[error("identity token signed by unknown key `{0}`")]
    UnknownKey(String),
    /// The signature does not verify under the key its `kid` names.
    #[error("identity token signature is invalid")]
    BadSignature,
    /// The token's issuer is not the configured one.
    #[error("identity token issuer `{0}` is not trusted")]
    WrongIssuer(String),
    /// The token's audience is not the configured one.
    #[error("identity token audience `{0}` is not this service")]
    WrongAudience(String),
    /// The token expired (beyond the allowed clock skew).
    #[error("identity token expired at {0}")]
    Expired(jiff::Timestamp),
    /// The token is not valid yet (beyond the allowed clock skew).
    #[error("identity token is not valid before {0}")]
    NotYetValid(jiff::Timestamp),
    /// The delegation chain is longer than configuration allows.
    #[error("delegation chain of depth {depth} exceeds the configured maximum of {max}")]
    DelegationTooDeep {
        /// The depth of the presented or requested chain.
        depth: usize,
        /// The configured `max_delegation_depth`.
        max: usize,
    },
    /// A hop of the delegation chain breaks its constraints (wider roles, longer life, empty id).
    #[error("invalid delegation chain: {0}")]
    InvalidDelegation(String),
    /// Delegation asked for a role the parent does not hold.
    #[error("cannot delegate role `{role}`: the parent `{parent}` does not hold it")]
    RoleNotHeld {
        /// The extra role.
        role: String,
        /// The parent agent id.
        parent: String,
    },
    /// Delegation asked for a group the parent does not belong to.
    #[error("cannot delegate group `{group}`: the parent `{parent}` is not in it")]
    GroupNotHeld {
        /// The extra group.
        group: String,
        /// The parent agent id.
        parent: String,
    },
    /// Delegation asked for a lifetime beyond the parent token's expiry.
    #[error(
        "requested expiry {requested} is after the parent token's expiry {parent_exp}; ask for at most {remaining_secs}s"
    )]
    OutlivesParent {
        /// The requested expiry.
        requested: jiff::Timestamp,
        /// The parent's expiry.
        parent_exp: jiff::Timestamp,
        /// Seconds the parent has left.
        remaining_secs: i64,
    },
    /// An identity request is invalid (empty agent id, zero lifetime).
    #[error("invalid identity request: {0}")]
    InvalidRequest(String),
    /// A plain caller id was given but configuration requires a signed identity.
    #[error("caller `{0}` is not authenticated and unauthenticated callers are not allowed")]
    Unauthenticated(String),
    /// Neither an identity token nor a caller id was given.
    #[error("no identity token and no caller id given")]
    MissingIdentity,
    /// A caller id given beside a token names another agent than the token.
    #[error("caller id `{given}` does not match the identity token's subject `{subject}`")]
    CallerMismatch {
        /// The plain id given.
        given: String,
        /// The token's subject.
        subject: String,
    },
    /// Encoding the token failed.
    #[error("cannot encode identity token: {0}")]
    Encode(String),
}

impl IdentityError {
    /// The stable reason code a decision point reports for this failure:
    /// `delegation_too_deep` for an over-long chain, `invalid_identity` otherwise.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            IdentityError::DelegationTooDeep { .. } => ReasonCode::DelegationTooDeep,
            _ => ReasonCode::InvalidIdentity,
        }
    }

    /// A short stable name for the failure (`expired`, `bad_signature`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::Malformed(_) => "malformed",
            IdentityError::WrongType(_) => "wrong_type",
            IdentityError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            IdentityError::UnknownKey(_) => "unknown_key",
            IdentityError::BadSignature => "bad_signature",
            IdentityError::WrongIssuer(_) => "wrong_issuer",
            IdentityError::WrongAudience(_) => "wrong_audience",
            IdentityError::Expired(_) => "expired",
            IdentityError::NotYetValid(_) => "not_yet_valid",
            IdentityError::DelegationTooDeep { .. } => "delegation_too_deep",
            IdentityError::InvalidDelegation(_) => "invalid_delegation",
            IdentityError::RoleNotHeld { .. } => "role_not_held",
            IdentityError::GroupNotHeld { .. } => "group_not_held",
            IdentityError::OutlivesParent { .. } => "outlives_parent",
            IdentityError::InvalidRequest(_) => "invalid_request",
            IdentityError::Unauthenticated(_) => "unauthenticated",
            IdentityError::MissingIdentity => "missing_identity",
            IdentityError::CallerMismatch { .. } => "caller_mismatch",
            IdentityError::Encode(_) => "encode_error",
        }
    }
}

/// Why a ticket could not be issued or was refused at verification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// Only ALLOW decisions get tickets.
    #[error("cannot issue a ticket for a `{0}` decision, only for allow")]
    NotAllowed(agentsafe_core::Verdict),
    /// The token is not a well-formed compact JWS with the expected header and claims.
    #[error("malformed ticket: {0}")]
    Malformed(String),
    /// The token's `typ` is not `agentsafe-ticket+jwt` (for example an identity token).
    #[error("token type `{0}` is not an agentsafe ticket")]
    WrongType(String),
    /// The token's `alg` is not `EdDSA`.
    #[error("unsupported ticket algorithm `{0}`, expected EdDSA")]
    UnsupportedAlgorithm(String),
    /// The ticket's key id is not among the trusted ticket keys.
    #[error("ticket signed by unknown key `{0}`")]
    UnknownKey(String),
    /// The signature does not verify under the key its `kid` names.
    #[error("ticket signature is invalid")]
    BadSignature,
    /// The ticket expired (beyond the allowed clock skew).
    #[error("ticket expired at {0}")]
    Expired(jiff::Timestamp),
    /// The ticket was issued in the future (beyond the allowed clock skew).
    #[error("ticket is not valid before {0}")]
    NotYetValid(jiff::Timestamp),
    /// The ticket is meant for another runner.
    #[error("ticket audience `{0}` is not this runner")]
    WrongAudience(String),
    /// The params digest does not match the params the ticket carries.
    #[error("ticket params digest does not match its params")]
    ParamsDigestMismatch,
    /// The ticket is for another action than the one to be run.
    #[error("ticket is for action `{actual}`, not `{expected}`")]
    ActionMismatch {
        /// The action expected by the runner.
        expected: String,
        /// The action in the ticket.
        actual: String,
    },
    /// The ticket is for another target than the one to be acted on.
    #[error("ticket is for target `{actual}`, not `{expected}`")]
    TargetMismatch {
        /// The target expected by the runner.
        expected: String,
        /// The target in the ticket.
        actual: String,
    },
    /// Encoding the ticket failed.
    #[error("cannot encode ticket: {0}")]
    Encode(String),
}

impl TicketError {
    /// The stable reason code of this failure (`bad_signature`, `expired`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            TicketError::NotAllowed(_) => "not_allowed",
            TicketError::Malformed(_) => "malformed",
            TicketError::WrongType(_) => "wrong_type",
            TicketError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            TicketError::UnknownKey(_) => "unknown_key",
            TicketError::BadSignature => "bad_signature",
            TicketError::Expired(_) => "expired",
            TicketError::NotYetValid(_) => "not_yet_valid",
            TicketError::WrongAudience(_) => "wrong_audience",
            TicketError::ParamsDigestMismatch => "params_digest_mismatch",
            TicketError::ActionMismatch { .. } => "action_mismatch",
            TicketError::TargetMismatch { .. } => "target_mismatch",
            TicketError::Encode(_) => "encode_error",
        }
    }
}

/// Errors of the redemption store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("ticket store database error while {op}: {source}")]
    Database {
        /// What the store was doing.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database folder or file could not be created or made private, or the writer
    /// thread could not be started.
    #[error("ticket store `{path}`: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database cannot be used as a ticket store (no WAL support, newer schema).
    #[error("cannot use `{path}` as a ticket store: {detail}")]
    Setup {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The store's writer thread is gone (the store was closed or the thread failed).
    #[error("ticket store writer is not running")]
    WriterGone,
    /// The ticket expired longer ago than the store's retention: its record may have been
    /// pruned, so the store refuses to start redeeming it.
    #[error("ticket `{0}` expired too long ago to be redeemed")]
    TooOld(String),
    /// No ticket with this nonce is known to the store.
    #[error("no ticket with nonce `{0}` in the store")]
    NotFound(String),
    /// A commit or reconciliation found the ticket not PENDING.
    #[error("ticket `{nonce}` is {state}, not pending")]
    NotPending {
        /// The ticket nonce.
        nonce: String,
        /// Its current state.
        state: crate::store::TicketState,
    },
    /// A value read from the database is not what the store wrote.
    #[error("corrupt ticket store row for `{nonce}`: {detail}")]
    Corrupt {
        /// The ticket nonce.
        nonce: String,
        /// What is wrong.
        detail: String,
    },
}
