//! Test support for executors: the conformance suite every executor must pass (on its own,
//! or starting from an action definition), and a configurable mock executor.
//!
//! A third-party executor crate adds `agentsafe-testkit` as a dev-dependency and runs
//! the same suite as agentsafe's own executors:
//!
//! ```
//! use agentsafe_testkit::{ConformanceCase, MockExecutor, assert_conformance};
//!
//! let executor = MockExecutor::new();
//! assert_conformance(&executor, &ConformanceCase::new("scale-deployment", "staging/api-server"));
//! ```
//!
//! Starting from an action definition, the suite also checks that the executor implements
//! what the definition declares: every non-advisory precheck, every state field path in
//! the captured object, and the rollback params of a reversible action:
//!
//! ```
//! use agentsafe_testkit::{ConformanceCase, MockExecutor, Registry, assert_definition_conformance};
//! use serde_json::json;
//!
//! let registry = Registry::from_sources(&[("restart.toml", r#"
//!     name = "restart"
//!     version = "1.0.0"
//!     description = "Restart a service"
//!     risk = "low"
//!     target_types = ["service"]
//!     reversible = false
//!     [[state_fields]]
//!     name = "ready"
//!     path = "status.ready"
//!     [[prechecks]]
//!     name = "service_exists"
//!     description = "The service exists"
//! "#)])?;
//! let def = registry.get("restart").ok_or("no action `restart`")?;
//! let executor = MockExecutor::new().with_object("staging/api", json!({"status": {"ready": true}}));
//! let case = ConformanceCase::from_definition(def, "staging/api", json!({}));
//! assert_definition_conformance(&executor, def, &case);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod conformance;
pub mod definition;
pub mod mock;

pub use agentsafe_registry::{ActionDef, Registry};
pub use conformance::{ConformanceCase, assert_conformance, check, run_blocking};
pub use definition::{assert_definition_conformance, check_definition};
pub use mock::{DryRunBehaviour, ExecuteBehaviour, MockExecutor};
