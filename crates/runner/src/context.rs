//! Everything a subcommand needs to know about where it runs: resolved paths, config and output format.

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigFile};

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

/// Resolved settings for one invocation.
#[derive(Debug)]
pub struct Context {
    /// Output format.
    pub output: OutputFormat,
    /// The parsed config file (defaults when there is none).
    pub config: ConfigFile,
    /// The config file in use, if any.
    pub config_path: Option<PathBuf>,
    /// Folder of action definitions.
    pub actions_dir: PathBuf,
    /// Folder of policy files.
    pub policies_dir: PathBuf,
    /// Inventory file.
    pub inventory_path: PathBuf,
    /// Folder for the SQLite database and the audit log.
    pub state_dir: PathBuf,
    /// Folder holding signing keys.
    pub key_dir: PathBuf,
}

impl Context {
    /// Resolves flags, then the config file, then defaults.
    ///
    /// # Errors
    /// When the config file named by `--config` is missing or any config file is invalid.
    pub fn resolve(args: &GlobalArgs) -> anyhow::Result<Context> {
        let (config, config_path) = match &args.config {
            Some(path) => (config::load(path)?, Some(path.clone())),
            None => {
                let default = PathBuf::from("agentsafe.toml");
                if default.is_file() {
                    (config::load(&default)?, Some(default))
                } else {
                    (ConfigFile::default(), None)
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
        let key_dir = match (&args.key_dir, &paths.key_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => base.join(p),
            (None, None) => default_key_dir(),
        };
        Ok(Context {
            output: args.output,
            actions_dir: pick(&args.actions, &paths.actions, "actions"),
            policies_dir: pick(&args.policies, &paths.policies, "policies"),
            inventory_path: pick(&args.inventory, &paths.inventory, "inventory.toml"),
            state_dir: pick(&args.state_dir, &paths.state_dir, ".agentsafe"),
            key_dir,
            config,
            config_path,
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

    /// Whether data should be printed as JSON.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
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

impl Context {
    /// Loads the registry, policies and inventory this invocation uses.
    ///
    /// # Errors
    /// When any of them is missing or invalid: the message names each file, line and key.
    pub fn load_pdp(&self) -> anyhow::Result<agentsafe_pdp::Pdp> {
        for (what, path, hint) in [
            ("actions folder", &self.actions_dir, "--actions"),
            ("policies folder", &self.policies_dir, "--policies"),
            ("inventory", &self.inventory_path, "--inventory"),
        ] {
            if !path.exists() {
                anyhow::bail!(
                    "no {what} at `{}`; run `agentsafe init DIR` to scaffold a project, or pass {hint}",
                    path.display()
                );
            }
        }
        agentsafe_pdp::Pdp::load(&self.actions_dir, &self.policies_dir, &self.inventory_path)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}
