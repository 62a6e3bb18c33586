//! One project as the configuration describes it: every path resolved (flags, then
//! `agentsafe.toml`, then defaults), and the parts built from it (the gate, the runner's
//! verifier, store and executors).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentsafe_gate::{Gate, GatePaths, GateSettings};
use agentsafe_pdp::Pdp;
use agentsafe_runner::{Admission, ExecutorEnv, Executors, RunCode, RunKind, RunReport, Runner};
use agentsafe_tickets::{KeySet, SqliteTicketStore, TicketVerifier, VerifiedTicket};

use crate::Error;
use crate::config::{self, ConfigFile};

/// Paths given on a command line (or by an embedding program); each overrides the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The config file (default: `./agentsafe.toml` when it exists).
    pub config: Option<PathBuf>,
    /// Folder of action definitions.
    pub actions: Option<PathBuf>,
    /// Folder of policy files.
    pub policies: Option<PathBuf>,
    /// Inventory file.
    pub inventory: Option<PathBuf>,
    /// Folder for the state databases and the audit log.
    pub state_dir: Option<PathBuf>,
    /// Folder holding signing keys.
    pub key_dir: Option<PathBuf>,
}

/// A resolved project: the parsed configuration and where everything is.
#[derive(Debug, Clone)]
pub struct Project {
    /// The parsed config file (defaults when there is none).
    pub config: ConfigFile,
    /// The config file in use, if any.
    pub config_path: Option<PathBuf>,
    /// The config file's bytes as read (recorded in `config_loaded`).
    pub config_bytes: Option<Vec<u8>>,
    /// Folder of action definitions.
    pub actions_dir: PathBuf,
    /// Folder of policy files.
    pub policies_dir: PathBuf,
    /// Inventory file.
    pub inventory_path: PathBuf,
    /// Folder for the state databases and the audit log.
    pub state_dir: PathBuf,
    /// Folder holding signing keys.
    pub key_dir: PathBuf,
}

impl Project {
    /// Resolves overrides, then the config file, then defaults. The config file is read
    /// once, here.
    ///
    /// # Errors
    /// When the config file named by `overrides.config` is missing, or any config file is invalid.
    pub fn resolve(overrides: &Overrides) -> Result<Project, Error> {
        let (config, config_path, config_bytes) = match &overrides.config {
            Some(path) => {
                let (c, bytes) = config::load(path)?;
                (c, Some(path.clone()), Some(bytes))
            }
            None => {
                let default = PathBuf::from("agentsafe.toml");
                if default.is_file() {
                    let (c, bytes) = config::load(&default)?;
                    (c, Some(default), Some(bytes))
                } else {
                    (ConfigFile::default(), None, None)
                }
            }
        };
        let base = config_path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let pick = |flag: &Option<PathBuf>, file: &Option<PathBuf>, default: &str| -> PathBuf {
            match (flag, file) {
                (Some(p), _) => p.clone(),
                (None, Some(p)) => base.join(p),
                (None, None) => base.join(default),
            }
        };
        let paths = &config.paths;
        let key_dir = match (&overrides.key_dir, &paths.key_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => base.join(p),
            (None, None) => default_key_dir(),
        };
        Ok(Project {
            actions_dir: pick(&overrides.actions, &paths.actions, "actions"),
            policies_dir: pick(&overrides.policies, &paths.policies, "policies"),
            inventory_path: pick(&overrides.inventory, &paths.inventory, "inventory.toml"),
            state_dir: pick(&overrides.state_dir, &paths.state_dir, ".agentsafe"),
            key_dir,
            config,
            config_path,
            config_bytes,
        })
    }

    /// The folder relative paths in the config file are resolved against.
    pub fn config_base(&self) -> PathBuf {
        self.config_path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Where the gate's files are.
    pub fn gate_paths(&self) -> GatePaths {
        GatePaths {
            actions: self.actions_dir.clone(),
            policies: self.policies_dir.clone(),
            inventory: self.inventory_path.clone(),
            state_dir: self.state_dir.clone(),
            key_dir: self.key_dir.clone(),
            base: self.config_base(),
        }
    }

    /// What the gate is built from.
    pub fn gate_settings(&self) -> GateSettings {
        GateSettings {
            config: self.config.gate(),
            paths: self.gate_paths(),
            config_file: self.config_path.clone().zip(self.config_bytes.clone()),
        }
    }

    /// Builds the project's gate, to be shared for the life of the process.
    ///
    /// # Errors
    /// When the actions, policies or inventory are missing or invalid.
    pub fn open_gate(&self) -> Result<Arc<Gate>, Error> {
        Ok(Arc::new(Gate::open(self.gate_settings())?))
    }

    /// Loads the decision point alone (validation, listings, policy tests).
    ///
    /// # Errors
    /// When the actions, policies or inventory are missing or invalid.
    pub fn load_pdp(&self) -> Result<Pdp, Error> {
        Ok(agentsafe_gate::load_pdp(&self.gate_paths())?)
    }

    /// The ticket verifier for the configured trusted ticket keys.
    ///
    /// # Errors
    /// When the keys cannot be loaded.
    pub fn ticket_verifier(&self) -> Result<TicketVerifier, Error> {
        let t = &self.config.tickets;
        Ok(TicketVerifier::new(
            KeySet::load(&t.trusted_key_paths(&self.config_base(), &self.key_dir))?,
            t,
        ))
    }

    /// The ticket store shared by every process of the project.
    ///
    /// # Errors
    /// When the database cannot be opened.
    pub fn ticket_store(&self) -> Result<SqliteTicketStore, Error> {
        let t = &self.config.tickets;
        Ok(SqliteTicketStore::open_with(
            &t.database_path(&self.config_base(), &self.state_dir),
            &t.store_options(),
        )?)
    }

    /// Runs `token` through the pipeline with the executor `executor` of `executors`,
    /// asking `gate` before redemption whether the ticket's caller may act (pause,
    /// breaker), and appending the record to the gate's audit log.
    ///
    /// # Errors
    /// When the executor is not available or the keys, ticket store or audit log cannot be
    /// opened: nothing is redeemed then. Every later problem is in the report.
    pub fn run_ticket(
        &self,
        gate: &Gate,
        executors: &Executors,
        token: &str,
        executor: &str,
        kind: &RunKind,
    ) -> Result<RunReport, Error> {
        let pdp = gate.pdp();
        let registry = Arc::new(pdp.registry().clone());
        let base = self.config_base();
        let exec = executors.open(
            executor,
            &ExecutorEnv {
                config: &self.config.executors,
                base: &base,
                state_dir: &self.state_dir,
                registry: &registry,
            },
        )?;
        let verifier = self.ticket_verifier()?;
        let store = gate.ticket_store()?;
        let audit = gate.audit_log()?;
        let credentials = self.config.runner.credential_provider(&base, executor);
        let admission = GateAdmission(gate);
        let runner = Runner::new(
            pdp.registry(),
            pdp.inventory(),
            &verifier,
            store.as_ref(),
            &audit,
            credentials.as_ref(),
        )
        .with_admission(&admission)
        .with_timeouts(self.config.runner.timeouts());
        Ok(runner.run_blocking(token, exec, kind)?)
    }
}

/// The gate as the runner's admission: the root caller's pause and breaker.
struct GateAdmission<'a>(&'a Gate);

impl Admission for GateAdmission<'_> {
    fn admit(&self, ticket: &VerifiedTicket) -> Result<(), (RunCode, String)> {
        self.0.may_act(ticket.caller()).map_err(|(code, why)| {
            let run = match code {
                agentsafe_core::ReasonCode::CallerPaused => RunCode::CallerPaused,
                agentsafe_core::ReasonCode::CircuitOpen => RunCode::CircuitOpen,
                _ => RunCode::AdmissionFailed,
            };
            (run, format!("{why}; the ticket was not redeemed"))
        })
    }
}

/// `$XDG_CONFIG_HOME/agentsafe/keys`, else `~/.config/agentsafe/keys`, else `.agentsafe-keys`.
pub fn default_key_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("agentsafe").join("keys");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home)
            .join(".config")
            .join("agentsafe")
            .join("keys");
    }
    PathBuf::from(".agentsafe-keys")
}
