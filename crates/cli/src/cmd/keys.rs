//! `agentsafe keys`: generate the identity, ticket and audit signing key pairs and publish
//! the public keys as a JWKS.

use std::path::PathBuf;
use std::process::ExitCode;

use agentsafe_tickets::KeySet;
use agentsafe_tickets::keys::{self, KeyPurpose};

use crate::context::Context;
use crate::exit;

/// `agentsafe keys ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate ed25519 key pairs: `<purpose>.key.pem` (PKCS#8, mode 0600) and `<purpose>.pub.pem`
    Generate(GenerateArgs),
    /// Print the public keys of the key folder as a JWKS, for verifying tokens with any JWT library
    Jwks(JwksArgs),
}

/// Arguments of `agentsafe keys generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Folder to write the keys to (default: the key folder).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Which key pair to generate.
    #[arg(long, value_enum, default_value_t = PurposeArg::All)]
    pub purpose: PurposeArg,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `agentsafe keys jwks`.
#[derive(Debug, clap::Args)]
pub struct JwksArgs {
    /// Folder to read `*.pub.pem` from (default: the key folder).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Which key pair `keys generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PurposeArg {
    /// Signs agent identity tokens.
    Identity,
    /// Signs execution tickets.
    Ticket,
    /// Signs audit log checkpoints.
    Audit,
    /// All three.
    All,
}

impl PurposeArg {
    fn purposes(self) -> Vec<KeyPurpose> {
        match self {
            PurposeArg::Identity => vec![KeyPurpose::Identity],
            PurposeArg::Ticket => vec![KeyPurpose::Ticket],
            PurposeArg::Audit => vec![KeyPurpose::Audit],
            PurposeArg::All => KeyPurpose::ALL.to_vec(),
        }
    }
}

/// Runs `agentsafe keys ...`.
///
/// # Errors
/// When key files exist without `--force`, or cannot be written or read.
pub fn run(cmd: KeysCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate(args) => generate(args, ctx),
        KeysCommand::Jwks(args) => jwks(args, ctx),
    }
}

fn generate(args: GenerateArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let dir = args.out.unwrap_or_else(|| ctx.key_dir.clone());
    let made = keys::generate_key_files(&dir, &args.purpose.purposes(), args.force)?;
    if ctx.json() {
        out!("{}", serde_json::to_string_pretty(&made)?);
    } else {
        for key in &made {
            out!(
                "{:<8}  kid {}  {} (private, 0600)  {}",
                key.purpose,
                key.kid,
                key.private_key.display(),
                key.public_key.display()
            );
        }
    }
    Ok(ExitCode::from(exit::ALLOW))
}

fn jwks(args: JwksArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| ctx.key_dir.clone());
    let found = keys::public_keys_in(&dir)?;
    if found.is_empty() {
        anyhow::bail!(
            "no public key (`*.pub.pem`) in `{}`; run `agentsafe keys generate`",
            dir.display()
        );
    }
    let set = KeySet::from_keys(found.into_iter().map(|(_, key)| key))?;
    out!("{}", serde_json::to_string_pretty(&set.jwks())?);
    Ok(ExitCode::from(exit::ALLOW))
}
