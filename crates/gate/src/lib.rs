//! The agentsafe enforcement point as a library: one long-lived [`Gate`] that every
//! decision of a process goes through.
//!
//! A request is authenticated (a verified identity token, or a plain id where
//! configuration allows), decided by the PDP, charged to the limits of the root of its
//! delegation chain (pause, breaker, rate, cumulative risk), given a signed single-use
//! ticket when it is ALLOW, and appended to the tamper-evident audit log before the answer
//! leaves the gate. A REQUIRE_APPROVAL creates an approval request only after that record.
//! Anything that goes wrong is a DENY with its reason code.
//!
//! Build the gate once, share it behind an [`std::sync::Arc`], and call it from any number
//! of threads: it owns the loaded configuration and keys (swapped atomically by
//! [`Gate::reload`]), one open audit log whose group commit concurrent callers share, the
//! state store and a notifier with a bounded queue. Only the gate signs tickets (the
//! issuer lives in `agentsafe_tickets::danger`).
//!
//! ```
//! use std::sync::Arc;
//! use agentsafe_core::{Params, Request, Timestamp, Verdict};
//! use agentsafe_gate::{Claimed, Gate, GatePaths, GateSettings};
//! use agentsafe_tickets::{HumanDuration, IdentityIssuer, IdentityRequest, Signer, keys};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
//! let dir = tempfile::tempdir()?;
//! let key_dir = dir.path().join("keys");
//! keys::generate_key_files(&key_dir, &keys::KeyPurpose::ALL, false)?;
//! let paths = GatePaths {
//!     actions: root.join("actions"),
//!     policies: root.join("policies"),
//!     inventory: root.join("inventory.toml"),
//!     state_dir: dir.path().join("state"),
//!     key_dir: key_dir.clone(),
//!     base: root.clone(),
//! };
//! let gate = Arc::new(Gate::open(GateSettings::new(paths))?);
//!
//! // An identity token for an SRE agent, as `agentsafe token issue` makes one.
//! let signer = Signer::load(&keys::KeyPurpose::Identity.private_key_path(&key_dir))?;
//! let issuer = IdentityIssuer::new(signer, &Default::default())?;
//! let who = IdentityRequest { agent: "deploy-bot".into(), roles: vec!["sre".into()], groups: vec![] };
//! let token = issuer.issue(&who, HumanDuration::from_secs(600), Timestamp::now())?.token;
//!
//! let mut params = Params::new();
//! params.insert("replicas".into(), 3.into());
//! let request = Request {
//!     action: "scale-deployment".into(),
//!     target: "staging/api-server".into(),
//!     params,
//!     ..Request::default()
//! };
//! let outcome = gate.check(&Claimed::token(token), request);
//! assert_eq!(outcome.decision.decision, Verdict::Allow, "{}", outcome.decision.reason);
//! assert!(outcome.ticket.is_some() && outcome.audit_seq.is_some());
//! gate.shutdown()?;
//! # Ok(())
//! # }
//! ```

mod approvals;
mod error;
mod gate;
pub mod limits;
pub mod notify;
mod settings;
mod snapshot;

pub use approvals::{ApprovalsConfig, ApproveOutcome, summary_json};
pub use error::GateError;
pub use gate::{Claimed, Gate, Outcome, Reloaded};
pub use limits::LimitsConfig;
pub use notify::{NotificationsConfig, Notifier};
pub use settings::{GateConfig, GatePaths, GateSettings};
pub use snapshot::load_pdp;

pub use agentsafe_state::{ApprovalRecord, ApprovalState, CallerState};
