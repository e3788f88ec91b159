//! `k0x token create|list|invalidate`: join tokens, managed by the running server over its admin
//! socket (the server holds the etcd client and knows the join URLs and the CA).

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use k0x_join::TokenRole;
use k0x_join::admin::{AdminClient, parse_expiry};
use k0x_join::store::{TokenInfo, unix_now};

use crate::cli::{GlobalArgs, OutputFormat, block_on};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a join token and print it (give it to the node in a file: `--token-file`).
    Create {
        /// What the token lets a node join as.
        #[arg(long, value_enum)]
        role: TokenRoleArg,
        /// Validity: e.g. 24h, 30m, 7d, 1h30m; 0 never expires (not recommended).
        #[arg(long, default_value = "24h")]
        expiry: String,
    },
    /// List usable tokens: id, role, expiry, uses (never the secret).
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Invalidate tokens by id, at once, on every controller.
    Invalidate {
        /// Token ids, as shown by `k0x token list`.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TokenRoleArg {
    Worker,
    Controller,
}

impl From<TokenRoleArg> for TokenRole {
    fn from(role: TokenRoleArg) -> Self {
        match role {
            TokenRoleArg::Worker => Self::Worker,
            TokenRoleArg::Controller => Self::Controller,
        }
    }
}

pub fn run(global: &GlobalArgs, args: &TokenArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(global.run_dir().admin_socket());
    block_on(async {
        match &args.command {
            TokenCommand::Create { role, expiry } => create(&client, *role, expiry).await,
            TokenCommand::List { output } => list(&client, *output).await,
            TokenCommand::Invalidate { ids } => invalidate(&client, ids).await,
        }
    })?
}

#[allow(clippy::print_stdout)]
async fn create(client: &AdminClient, role: TokenRoleArg, expiry: &str) -> anyhow::Result<()> {
    let expiry = parse_expiry(expiry)?;
    let created = client.create_token(role.into(), expiry).await?;
    if let Some(warning) = &created.warning {
        eprintln!("Warning: {warning}");
    }
    println!("{}", created.token);
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn list(client: &AdminClient, output: OutputFormat) -> anyhow::Result<()> {
    let tokens = client.list_tokens().await?.tokens;
    match output.structured(&tokens)? {
        Some(text) => print!("{text}"),
        None => {
            println!("{:<10} {:<11} {:<14} USES", "ID", "ROLE", "EXPIRES IN");
            for token in &tokens {
                println!(
                    "{:<10} {:<11} {:<14} {}",
                    token.id,
                    token.role,
                    expires_in(token),
                    token.uses
                );
            }
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn invalidate(client: &AdminClient, ids: &[String]) -> anyhow::Result<()> {
    let answer = client.invalidate_tokens(ids).await?;
    for id in &answer.invalidated {
        println!("invalidated {id}");
    }
    if !answer.unknown.is_empty() {
        anyhow::bail!(
            "no usable token with id {}: check the ids with `k0x token list`",
            answer.unknown.join(", ")
        );
    }
    Ok(())
}

fn expires_in(token: &TokenInfo) -> String {
    if token.expires == 0 {
        return "never".into();
    }
    let left = Duration::from_secs(token.expires.saturating_sub(unix_now()));
    let (hours, minutes) = (left.as_secs() / 3600, left.as_secs() % 3600 / 60);
    match hours {
        0 => format!("{minutes}m"),
        h if h >= 48 => format!("{}d{}h", h / 24, h % 24),
        h => format!("{h}h{minutes}m"),
    }
}
