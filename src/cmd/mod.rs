//! One module per subcommand; each exposes its clap arguments and a `run` function.

pub mod completion;
pub mod config;
pub mod etcd;
pub mod token;
pub mod version;

use clap::Subcommand;

use crate::cli::Cli;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the k0x version, commit and target.
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish).
    Completion(completion::CompletionArgs),
    /// Print the default cluster configuration or validate a configuration file.
    Config(config::ConfigArgs),
    /// Create, list and invalidate join tokens (talks to the running server).
    Token(token::TokenArgs),
    /// List the controllers' etcd members, or remove one.
    Etcd(etcd::EtcdArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Version(args) => version::run(global, &args),
        Command::Completion(args) => completion::run(&args),
        Command::Config(args) => config::run(global, &args),
        Command::Token(args) => token::run(global, &args),
        Command::Etcd(args) => etcd::run(global, &args),
    }
}
