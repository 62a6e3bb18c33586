//! One configuration as loaded: the bytes of every file read, and the decision point built
//! from exactly those bytes, so `config_loaded` records what the PDP decides with.

use std::path::{Path, PathBuf};

use agentsafe_audit::LoadedFile;
use agentsafe_pdp::{Inventory, Pdp, PolicySet};
use agentsafe_registry::Registry;

use crate::GateError;
use crate::settings::GatePaths;

/// A loaded configuration: the PDP and the bytes of the files it came from.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) pdp: Pdp,
    pub(crate) files: Sources,
}

/// The files a configuration was built from, as read: their SHA-256 are computed only when
/// `config_loaded` is written (a process over an unchanged configuration never does).
#[derive(Debug, Default)]
pub(crate) struct Sources(Vec<(String, Vec<u8>)>);

impl Sources {
    /// Every file with its SHA-256, for `config_loaded`.
    pub(crate) fn loaded_files(&self) -> Vec<LoadedFile> {
        self.0
            .iter()
            .map(|(name, bytes)| LoadedFile::new(name.clone(), bytes))
            .collect()
    }
}

/// Reads every file once, then builds the PDP from those bytes.
///
/// # Errors
/// A missing folder or file (with a hint), unreadable or non-UTF-8 files, and every
/// problem of every file otherwise.
pub(crate) fn load(
    paths: &GatePaths,
    extra: Option<&(PathBuf, Vec<u8>)>,
) -> Result<Snapshot, GateError> {
    for (what, path, hint) in [
        ("actions folder", &paths.actions, "--actions"),
        ("policies folder", &paths.policies, "--policies"),
        ("inventory", &paths.inventory, "--inventory"),
    ] {
        if !path.exists() {
            return Err(GateError::Config {
                what,
                path: path.clone(),
                message: format!(
                    "not found; run `agentsafe init DIR` to scaffold a project, or pass {hint}"
                ),
            });
        }
    }
    let actions = read_dir("actions folder", &paths.actions)?;
    let policies = read_dir("policies folder", &paths.policies)?;
    let inventory = read_text("inventory", &paths.inventory)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::with_capacity(actions.len() + policies.len() + 2);
    for (name, text) in actions.iter().chain(policies.iter()) {
        files.push((name.clone(), text.as_bytes().to_vec()));
    }
    files.push((
        paths.inventory.display().to_string(),
        inventory.as_bytes().to_vec(),
    ));
    if let Some((path, bytes)) = extra {
        files.push((path.display().to_string(), bytes.clone()));
    }
    // The registry is the largest part; the policies and the inventory parse on a second
    // thread meanwhile (a short-lived `agentsafe check` spends most of its time here).
    let inventory_name = paths.inventory.display().to_string();
    let (registry, rest) = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            (
                PolicySet::from_sources(&policies),
                Inventory::parse(&inventory_name, &inventory),
            )
        });
        let registry = Registry::from_sources(&actions);
        (registry, other.join())
    });
    let registry = registry.map_err(agentsafe_pdp::PdpError::from)?;
    let (policies, inventory) = rest.map_err(|_| GateError::Config {
        what: "policies folder",
        path: paths.policies.clone(),
        message: "loading panicked".to_owned(),
    })?;
    let policies = policies?;
    let inventory = inventory?;
    Ok(Snapshot {
        pdp: Pdp::new(registry, policies, inventory),
        files: Sources(files),
    })
}

/// `(display path, text)` of every `*.toml` directly in `dir`, sorted by name.
fn read_dir(what: &'static str, dir: &Path) -> Result<Vec<(String, String)>, GateError> {
    let err = |e: std::io::Error| GateError::Config {
        what,
        path: dir.to_path_buf(),
        message: format!("cannot read: {e}"),
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| Ok((p.display().to_string(), read_text(what, &p)?)))
        .collect()
}

fn read_text(what: &'static str, path: &Path) -> Result<String, GateError> {
    let bytes = std::fs::read(path).map_err(|e| GateError::Config {
        what,
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|e| GateError::Config {
        what,
        path: path.to_path_buf(),
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })
}

/// Loads the decision point from `paths` with the same checks and hints the gate uses,
/// for commands that only read the configuration (validate, list actions, policy tests).
///
/// # Errors
/// As the gate: a missing or unreadable file, and every problem of every file.
pub fn load_pdp(paths: &GatePaths) -> Result<Pdp, GateError> {
    load(paths, None).map(|s| s.pdp)
}
