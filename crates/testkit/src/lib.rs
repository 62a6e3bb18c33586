//! Test support for executors: the conformance suite every executor must pass, and a
//! configurable mock executor.
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

pub mod conformance;
pub mod mock;

pub use conformance::{ConformanceCase, assert_conformance, check, run_blocking};
pub use mock::{DryRunBehaviour, ExecuteBehaviour, MockExecutor};
