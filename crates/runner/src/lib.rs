//! The agentsafe execution pipeline as a library: the runner that turns a verified,
//! single-use ticket into exactly one executor call, with credentials, prechecks, state
//! capture, a typed execution record and rollback planning around it.
//!
//! Library only: the `agentsafe` command line (`agentsafe-cli`) and the composition root
//! (`agentsafe`) are built on it, and integrators use it to run their own
//! [`agentsafe_core::Executor`] through the same pipeline (see `examples/custom-executor`).
//! The real backends come in through the `k8s` and `aws` features ([`Executors`]).

pub mod config;
pub mod credentials;
pub mod error;
pub mod executors;
pub mod harness;
pub mod pipeline;
pub mod record;
pub mod rollback;

pub use config::{CredentialSource, ExecutorsConfig, RunnerConfig};
pub use credentials::{
    AmbientProvider, CredentialProvider, CredentialRequest, EnvFileProvider, SimulatedProvider,
};
pub use error::RunnerError;
pub use executors::dry_run::DryRunExecutor;
pub use executors::{ExecutorEnv, ExecutorFactory, Executors};
pub use harness::Harness;
pub use pipeline::{Admission, RunKind, RunOutcome, RunReport, Runner, Timeouts};
pub use record::{ExecutionRecord, PrecheckEntry, RunCode, StateDiff};
pub use rollback::RollbackPlan;
