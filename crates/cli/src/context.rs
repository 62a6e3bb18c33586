//! Everything a subcommand needs to know about where it runs: the resolved project, the
//! output format, the executors of this build, and the one gate of the process.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use agentsafe::{Overrides, Project};
use agentsafe_gate::Gate;
use agentsafe_runner::Executors;

/// How a subcommand prints data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document (or JSON Lines for streams).
    Json,
}

/// Global options shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Config file (default: `./agentsafe.toml` when it exists).
    #[arg(long, global = true, env = "AGENTSAFE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder of action definitions.
    #[arg(long, global = true)]
    pub actions: Option<PathBuf>,
    /// Folder of policy files.
    #[arg(long, global = true)]
    pub policies: Option<PathBuf>,
    /// Inventory file.
    #[arg(long, global = true)]
    pub inventory: Option<PathBuf>,
    /// Folder for the SQLite database and the audit log.
    #[arg(long, global = true, env = "AGENTSAFE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Folder holding signing keys.
    #[arg(long, global = true, env = "AGENTSAFE_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Output format for data.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl GlobalArgs {
    /// The paths these flags override.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            actions: self.actions.clone(),
            policies: self.policies.clone(),
            inventory: self.inventory.clone(),
            state_dir: self.state_dir.clone(),
            key_dir: self.key_dir.clone(),
        }
    }
}

/// Resolved settings for one invocation.
#[derive(Debug)]
pub struct Context {
    /// Output format.
    pub output: OutputFormat,
    /// The project: configuration and paths.
    pub project: Project,
    /// The executors `run --executor` can use.
    pub executors: Executors,
    gate: OnceLock<Arc<Gate>>,
}

impl Deref for Context {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.project
    }
}

impl Context {
    /// Resolves flags, then the config file, then defaults.
    ///
    /// # Errors
    /// When the config file named by `--config` is missing or any config file is invalid.
    pub fn resolve(args: &GlobalArgs, executors: Executors) -> anyhow::Result<Context> {
        Ok(Context::from_project(
            Project::resolve(&args.overrides())?,
            args.output,
            executors,
        ))
    }

    /// A context over an already resolved project.
    pub fn from_project(project: Project, output: OutputFormat, executors: Executors) -> Context {
        Context {
            output,
            project,
            executors,
            gate: OnceLock::new(),
        }
    }

    /// The gate of this process, built on first use.
    ///
    /// # Errors
    /// When the actions, policies or inventory are missing or invalid.
    pub fn gate(&self) -> anyhow::Result<Arc<Gate>> {
        if let Some(g) = self.gate.get() {
            return Ok(Arc::clone(g));
        }
        let g = self.project.open_gate()?;
        Ok(Arc::clone(self.gate.get_or_init(|| g)))
    }

    /// Flushes notifications and closes the audit log of the gate, if one was built.
    pub fn shutdown(&self) -> Option<String> {
        self.gate
            .get()
            .and_then(|g| g.shutdown().err())
            .map(|e| e.to_string())
    }

    /// Whether data should be printed as JSON.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}
