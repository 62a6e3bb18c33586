//! The executors built into this binary, and how `--executor NAME` finds one.
//!
//! `dry-run` is always there. `k8s` ([`agentsafe_executor_k8s`]) and `aws`
//! ([`agentsafe_executor_aws`]) are there with the `k8s` and `aws` cargo features (on by
//! default). Integrators add their own executor through the library (`Runner::run` takes
//! any `Arc<dyn Executor>`), see `examples/custom-executor`.

pub mod dry_run;

/// The names `--executor` accepts in this build.
pub fn built_in() -> Vec<&'static str> {
    [
        Some(dry_run::NAME),
        #[cfg(feature = "k8s")]
        Some(agentsafe_executor_k8s::NAME),
        #[cfg(feature = "aws")]
        Some(agentsafe_executor_aws::NAME),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Executors that exist but were left out of this build, with the feature that adds them.
const OPTIONAL: &[(&str, &str)] = &[("k8s", "k8s"), ("aws", "aws")];

/// Whether `name` is an executor of this build.
pub fn is_built_in(name: &str) -> bool {
    built_in().contains(&name)
}

/// Why `name` cannot be used with this binary, for names that are not built in.
pub fn unavailable(name: &str) -> String {
    match OPTIONAL.iter().find(|(n, _)| *n == name) {
        Some((_, feature)) => format!(
            "executor `{name}` is not built into this binary: build agentsafe-runner with the `{feature}` feature"
        ),
        None => format!(
            "unknown executor `{name}`: this binary has {}; custom executors run through the library (`agentsafe_runner::Runner`)",
            built_in()
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
