//! The agentsafe execution pipeline as a library: the runner that turns a verified,
//! single-use ticket into exactly one executor call, with credentials, prechecks, state
//! capture, an execution record and rollback planning around it.
//!
//! The `agentsafe` binary is built on this library; integrators use it to run their own
//! [`agentsafe_core::Executor`] through the same pipeline (see `examples/custom-executor`).

pub mod credentials;
pub mod error;
pub mod executors;
pub mod pipeline;
pub mod rollback;

pub use credentials::{
    AmbientProvider, CredentialProvider, CredentialRequest, EnvFileProvider, SimulatedProvider,
};
pub use error::RunnerError;
pub use executors::dry_run::DryRunExecutor;
pub use pipeline::{RunKind, RunOutcome, RunReport, Runner, Timeouts};
pub use rollback::RollbackPlan;
