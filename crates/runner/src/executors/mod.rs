//! The executors built into this binary, and how `--executor NAME` finds one.
//!
//! Only the dry-run executor is built in so far. The Kubernetes and AWS executors are
//! separate issues; until they land, asking for them is a clear error rather than a stub
//! that pretends. Integrators add their own executor through the library
//! (`Runner::run` takes any `Arc<dyn Executor>`), see `examples/custom-executor`.

pub mod dry_run;

/// The executors a later release will build in, with what they will need.
pub const PLANNED: &[(&str, &str)] = &[
    ("k8s", "the Kubernetes executor"),
    ("aws", "the AWS executor"),
];

/// Why `name` cannot be used with this binary, for names that are not built in.
pub fn unavailable(name: &str) -> String {
    match PLANNED.iter().find(|(n, _)| *n == name) {
        Some((_, what)) => format!(
            "executor `{name}` ({what}) is not built into this binary yet; use `--executor dry-run`"
        ),
        None => format!(
            "unknown executor `{name}`: this binary has `dry-run`; custom executors run through the library (`agentsafe_runner::Runner`)"
        ),
    }
}
