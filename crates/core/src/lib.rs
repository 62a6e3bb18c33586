//! Shared vocabulary of agentsafe: risk classes, requests, callers and decisions.
//!
//! This crate does no I/O and pulls in no async runtime, so executor crates and
//! integrators can depend on it without inheriting anything heavy. Every other
//! agentsafe crate builds on these types.

pub mod caller;
pub mod canonical;
pub mod decision;
pub mod duration;
pub mod error;
pub mod request;
pub mod risk;

pub use caller::Caller;
pub use decision::{Decision, DecisionId, ReasonCode, TargetInfo, Verdict};
pub use error::CoreError;
pub use jiff::Timestamp;
pub use request::{Params, Request};
pub use risk::{Risk, Sensitivity, effective_risk};
