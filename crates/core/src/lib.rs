//! Shared vocabulary of agentsafe: risk classes, requests, callers, decisions and the
//! executor contract.
//!
//! This crate does no I/O and pulls in no async runtime, so executor crates and
//! integrators can depend on it without inheriting anything heavy. Every other
//! agentsafe crate builds on these types.

pub mod caller;
pub mod canonical;
pub mod decision;
pub mod duration;
pub mod error;
pub mod executor;
pub mod request;
pub mod risk;
pub mod text;

pub use caller::Caller;
pub use decision::{ApprovalPolicy, Decision, DecisionId, ReasonCode, TargetInfo, Verdict};
pub use error::CoreError;
pub use executor::{
    ActionContext, ActionSupport, Cancel, Credentials, ExecutionReport, Executor, PrecheckResult,
    Secret,
};
pub use jiff::Timestamp;
pub use request::{Params, Request};
pub use risk::{Risk, Sensitivity, effective_risk};
