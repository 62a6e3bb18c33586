//! Tidy checks: crate layering, forbidden dependencies of `agentsafe-core`, file headers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Which workspace crates each crate may depend on (normal dependencies). Dependencies
/// point only downward; a crate missing from this table fails the test, so adding a
/// crate forces a decision about its layer.
const ALLOWED: &[(&str, &[&str])] = &[
    ("agentsafe-core", &[]),
    ("agentsafe-fs", &[]),
    ("agentsafe-registry", &["agentsafe-core"]),
    ("agentsafe-pdp", &["agentsafe-core", "agentsafe-registry"]),
    ("agentsafe-audit", &["agentsafe-core"]),
    ("agentsafe-tickets", &["agentsafe-core", "agentsafe-fs"]),
    ("agentsafe-state", &["agentsafe-core", "agentsafe-fs"]),
    (
        "agentsafe-gate",
        &[
            "agentsafe-core",
            "agentsafe-registry",
            "agentsafe-pdp",
            "agentsafe-audit",
            "agentsafe-tickets",
            "agentsafe-state",
        ],
    ),
    (
        "agentsafe-runner",
        &[
            "agentsafe-core",
            "agentsafe-registry",
            "agentsafe-pdp",
            "agentsafe-audit",
            "agentsafe-tickets",
            "agentsafe-executor-k8s",
            "agentsafe-executor-aws",
        ],
    ),
    (
        "agentsafe",
        &[
            "agentsafe-core",
            "agentsafe-registry",
            "agentsafe-pdp",
            "agentsafe-audit",
            "agentsafe-tickets",
            "agentsafe-state",
            "agentsafe-gate",
            "agentsafe-runner",
        ],
    ),
    (
        "agentsafe-cli",
        &[
            "agentsafe",
            "agentsafe-core",
            "agentsafe-registry",
            "agentsafe-pdp",
            "agentsafe-audit",
            "agentsafe-tickets",
            "agentsafe-state",
            "agentsafe-gate",
            "agentsafe-runner",
        ],
    ),
    (
        "agentsafe-bench",
        &[
            "agentsafe-core",
            "agentsafe-registry",
            "agentsafe-pdp",
            "agentsafe-audit",
            "agentsafe-tickets",
            "agentsafe-state",
            "agentsafe-gate",
        ],
    ),
    (
        "agentsafe-testkit",
        &["agentsafe-core", "agentsafe-registry"],
    ),
    ("agentsafe-executor-k8s", &["agentsafe-core"]),
    ("agentsafe-executor-aws", &["agentsafe-core"]),
    (
        "agentsafe-example-custom-executor",
        &[
            "agentsafe-core",
            "agentsafe-registry",
            "agentsafe-pdp",
            "agentsafe-audit",
            "agentsafe-tickets",
            "agentsafe-gate",
            "agentsafe-runner",
            "agentsafe-cli",
        ],
    ),
    ("agentsafe-bench-cedar", &[]),
    ("agentsafe-e2e", &[]),
    ("xtask", &[]),
];

/// Crates `agentsafe-core` must never pull in, directly or transitively.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "tokio",
    "kube",
    "kube-client",
    "rusqlite",
    "libsqlite3-sys",
    "hyper",
    "reqwest",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn crates_depend_only_downward() {
    let meta = metadata();
    let members: BTreeSet<String> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        if !members.contains(pkg["id"].as_str().unwrap()) {
            continue;
        }
        let name = pkg["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            problems.push(format!(
                "`{name}` has no layer in tests/tests/tidy.rs ALLOWED"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let normal = dep["kind"].is_null();
            if normal && dep_name.starts_with("agentsafe-") && !ok.contains(&dep_name) {
                problems.push(format!(
                    "`{name}` depends on `{dep_name}`, which is not below it"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The names of every crate `name` pulls in through normal dependencies, itself included.
fn normal_closure(meta: &Value, name: &str) -> BTreeSet<String> {
    let packages = meta["packages"].as_array().unwrap();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let name_of = |id: &str| -> String {
        packages
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let start = packages
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no package `{name}`"));
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap().to_owned());
            }
        }
    }
    seen.iter().map(|id| name_of(id)).collect()
}

#[test]
fn core_pulls_in_no_runtime_or_io_stack() {
    let names = normal_closure(&metadata(), "agentsafe-core");
    let bad: Vec<&String> = names
        .iter()
        .filter(|n| FORBIDDEN_IN_CORE.contains(&n.as_str()) || n.starts_with("aws-"))
        .collect();
    assert!(bad.is_empty(), "agentsafe-core pulls in {bad:?}");
}

/// The AWS SDK takes many CPU-minutes to build and kube a good part of one: only the
/// executor crates (and the binary that bundles them through its default features) may
/// have them, so an integrator who takes the policy or audit crates never compiles either.
#[test]
fn the_aws_sdk_and_kube_stay_in_their_executor_crates() {
    let meta = metadata();
    let mut problems = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        for dep in pkg["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            if !dep["kind"].is_null() {
                continue;
            }
            let aws = dep_name.starts_with("aws-");
            let kube =
                dep_name == "kube" || dep_name.starts_with("kube-") || dep_name == "k8s-openapi";
            let misplaced =
                aws && name != "agentsafe-executor-aws" || kube && name != "agentsafe-executor-k8s";
            // Only our own crates (no `source`); the SDK's crates depend on each other.
            if misplaced && pkg["source"].is_null() {
                problems.push(format!("`{name}` depends directly on `{dep_name}`"));
            }
        }
    }
    for lib in [
        "agentsafe-core",
        "agentsafe-registry",
        "agentsafe-pdp",
        "agentsafe-audit",
        "agentsafe-tickets",
        "agentsafe-state",
        "agentsafe-testkit",
        "agentsafe-gate",
    ] {
        for n in normal_closure(&meta, lib) {
            if n.starts_with("aws-") || n == "kube" || n == "k8s-openapi" {
                problems.push(format!("`{lib}` pulls in `{n}`"));
            }
        }
    }
    let k8s = normal_closure(&meta, "agentsafe-executor-k8s");
    if let Some(n) = k8s.iter().find(|n| n.starts_with("aws-sdk")) {
        problems.push(format!("agentsafe-executor-k8s pulls in `{n}`"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "fixtures" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests", "bench", "examples"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line:\n{}",
        missing.join("\n")
    );
}

/// Only the binaries parse command lines: clap stays in `agentsafe-cli` (and xtask), so a
/// library user of the gate, the runner or the facade never compiles it.
#[test]
fn only_the_binary_crate_sees_clap() {
    let meta = metadata();
    let mut problems = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        if !pkg["source"].is_null() || name == "agentsafe-cli" || name == "xtask" {
            continue;
        }
        for dep in pkg["dependencies"].as_array().unwrap() {
            if dep["name"] == "clap" && dep["kind"].is_null() {
                problems.push(format!("`{name}` depends on clap"));
            }
        }
    }
    for lib in ["agentsafe-gate", "agentsafe-runner", "agentsafe"] {
        if normal_closure(&meta, lib).contains("clap") {
            problems.push(format!("`{lib}` pulls in clap"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The gate and the runner are peers: a rollback is the runner planning a request that the
/// composition root hands to the gate, so neither may depend on the other.
#[test]
fn the_gate_and_the_runner_do_not_depend_on_each_other() {
    let meta = metadata();
    assert!(!normal_closure(&meta, "agentsafe-gate").contains("agentsafe-runner"));
    assert!(!normal_closure(&meta, "agentsafe-runner").contains("agentsafe-gate"));
}

/// The lean build is the default: no library or binary crate turns the real executors
/// (and the AWS SDK) on unless asked, so `cargo run --release -- demo` builds in minutes.
#[test]
fn the_real_executors_are_opt_in() {
    let meta = metadata();
    for name in ["agentsafe-runner", "agentsafe", "agentsafe-cli"] {
        let pkg = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        let default = pkg["features"]["default"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            default.is_empty(),
            "`{name}` has default features {default:?}"
        );
        for f in ["k8s", "aws"] {
            assert!(
                !pkg["features"][f].is_null(),
                "`{name}` has no `{f}` feature"
            );
        }
    }
}
