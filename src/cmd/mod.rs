//! One module per subcommand; each exposes its clap arguments and a `run` function.

pub mod completion;
pub mod install;
pub mod reset;
pub mod service;
pub mod sysinfo;
pub mod version;

use clap::Subcommand;

use crate::cli::Cli;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the k0x version, commit and target.
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish).
    Completion(completion::CompletionArgs),
    /// Install the k0x service unit (systemd or OpenRC); does not start it.
    Install(install::InstallArgs),
    /// Start the installed k0x service.
    Start,
    /// Stop the installed k0x service.
    Stop,
    /// Check the host for what k0x needs; --fix applies the safe fixes.
    Sysinfo(sysinfo::SysinfoArgs),
    /// Remove everything k0x created on this host (refused while k0x runs).
    Reset(reset::ResetArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Version(args) => version::run(global, &args),
        Command::Completion(args) => completion::run(&args),
        Command::Install(args) => install::run(global, &args),
        Command::Start => service::run_action(k0x_host::service::Action::Start),
        Command::Stop => service::run_action(k0x_host::service::Action::Stop),
        Command::Sysinfo(args) => sysinfo::run(global, &args),
        Command::Reset(args) => reset::run(global, &args),
    }
}
