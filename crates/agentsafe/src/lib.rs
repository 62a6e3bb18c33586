//! agentsafe's composition root: reads `agentsafe.toml` once, resolves every path, and
//! builds the parts every front end shares (the command line today, the HTTP server and
//! the MCP gateway next): the long-lived [`agentsafe_gate::Gate`], the runner's ticket
//! verifier and store, and the executors ([`agentsafe_runner::Executors`], with the `k8s`
//! and `aws` features adding the real backends).
//!
//! ```no_run
//! use agentsafe::{Overrides, Project};
//! # fn main() -> Result<(), agentsafe::Error> {
//! let project = Project::resolve(&Overrides::default())?;
//! let gate = project.open_gate()?;
//! println!("deciding with policy {}", gate.pdp().policy_hash());
//! # Ok(())
//! # }
//! ```

pub mod config;
mod error;
pub mod project;

pub use config::ConfigFile;
pub use error::Error;
pub use project::{Overrides, Project, default_key_dir};

pub use agentsafe_gate as gate;
pub use agentsafe_runner as runner;
