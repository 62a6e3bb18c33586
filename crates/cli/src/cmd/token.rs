//! `agentsafe token`: issue, verify and delegate agent identity tokens (EdDSA JWTs).

use std::io::Read as _;
use std::process::ExitCode;

use agentsafe_core::Timestamp;
use agentsafe_tickets::{
    HumanDuration, IdentityIssuer, IdentityRequest, IdentityVerifier, IssuedIdentity, KeySet,
    Signer,
};

use crate::context::Context;
use crate::exit;

/// `agentsafe token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a signed identity token for an agent (signs with the identity key)
    Issue(IssueArgs),
    /// Verify an identity token; exits 1 with the reason when it is invalid
    Verify(VerifyArgs),
    /// Issue a token delegated by a verified parent token: roles and groups a subset of the
    /// parent's, expiry no later than the parent's, depth limited by configuration
    Delegate(DelegateArgs),
}

/// Who a new token is for.
#[derive(Debug, clap::Args)]
pub struct SubjectArgs {
    /// The agent id (the token's `sub`).
    #[arg(long)]
    pub agent: String,
    /// A role to grant (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// A group the agent belongs to (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
}

impl SubjectArgs {
    fn request(self) -> IdentityRequest {
        IdentityRequest {
            agent: self.agent,
            roles: self.roles,
            groups: self.groups,
        }
    }
}

/// Arguments of `agentsafe token issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// Lifetime such as `30m` or `8h` (default: `[identity] default_ttl`, 1h).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<HumanDuration>,
}

/// Arguments of `agentsafe token verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The token, or `-` to read it from stdin.
    pub token: String,
}

/// Arguments of `agentsafe token delegate`.
#[derive(Debug, clap::Args)]
pub struct DelegateArgs {
    /// The parent's token, or `-` to read it from stdin; it is verified first.
    pub parent_token: String,
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// Lifetime (default: until the parent expires). Asking for more than the parent has
    /// left is refused, not shortened.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<HumanDuration>,
}

/// Runs `agentsafe token ...`.
///
/// # Errors
/// When keys cannot be loaded or a token cannot be issued.
pub fn run(cmd: TokenCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Issue(args) => {
            let issuer = issuer(ctx)?;
            let ttl = args.ttl.unwrap_or(ctx.config.identity.default_ttl);
            let issued = issuer.issue(&args.subject.request(), ttl, Timestamp::now())?;
            print_issued(ctx, &issued, issuer.kid())
        }
        TokenCommand::Verify(args) => {
            let token = read_token(&args.token)?;
            match verifier(ctx)?.verify(&token, Timestamp::now()) {
                Ok(identity) => {
                    if ctx.json() {
                        let doc = serde_json::json!({
                            "valid": true,
                            "caller": identity.caller(),
                            "kid": identity.kid(),
                            "expires_at": identity.expires_at(),
                            "claims": identity.claims_json(),
                        });
                        out!("{}", serde_json::to_string_pretty(&doc)?);
                    } else {
                        let chain = identity.delegation_chain();
                        out!("valid identity `{}`", identity.subject());
                        out!("  roles:      {}", list(identity.roles()));
                        out!("  groups:     {}", list(identity.groups()));
                        if !chain.is_empty() {
                            out!("  delegated:  {} (root first)", chain.join(" -> "));
                        }
                        out!("  expires at: {}", identity.expires_at());
                        out!("  key id:     {}", identity.kid());
                    }
                    Ok(ExitCode::from(exit::ALLOW))
                }
                Err(e) => super::print_invalid(
                    ctx,
                    "identity token",
                    e.code(),
                    Some(e.reason_code()),
                    &e.to_string(),
                ),
            }
        }
        TokenCommand::Delegate(args) => {
            let token = read_token(&args.parent_token)?;
            let now = Timestamp::now();
            let parent = verifier(ctx)?
                .verify(&token, now)
                .map_err(|e| anyhow::anyhow!("the parent token is invalid ({}): {e}", e.code()))?;
            let issuer = issuer(ctx)?;
            let issued = issuer.delegate(&parent, &args.subject.request(), args.ttl, now)?;
            print_issued(ctx, &issued, issuer.kid())
        }
    }
}

fn print_issued(ctx: &Context, issued: &IssuedIdentity, kid: &str) -> anyhow::Result<ExitCode> {
    if ctx.json() {
        let doc = serde_json::json!({
            "token": issued.token,
            "jti": issued.jti,
            "expires_at": issued.expires_at,
            "kid": kid,
        });
        out!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        out!("{}", issued.token);
    }
    Ok(ExitCode::from(exit::ALLOW))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn issuer(ctx: &Context) -> anyhow::Result<IdentityIssuer> {
    let cfg = &ctx.config.identity;
    let signer = Signer::load(&cfg.signing_key_path(&ctx.config_base(), &ctx.key_dir))?;
    Ok(IdentityIssuer::new(signer, cfg)?)
}

fn verifier(ctx: &Context) -> anyhow::Result<IdentityVerifier> {
    let cfg = &ctx.config.identity;
    let keys = KeySet::load(&cfg.trusted_key_paths(&ctx.config_base(), &ctx.key_dir))?;
    Ok(IdentityVerifier::new(keys, cfg))
}

/// The token argument, or stdin when it is `-` (keeps tokens out of shell history and `ps`).
pub(crate) fn read_token(arg: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text.trim().to_owned())
}
