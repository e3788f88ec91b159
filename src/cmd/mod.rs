//! One module per subcommand; each exposes its clap arguments and a `run` function.

pub mod completion;
pub mod config;
pub mod etcd;
pub mod install;
pub mod kubeconfig;
pub mod kubectl;
pub mod launch;
pub mod node;
pub mod pki;
pub mod reset;
pub mod server;
pub mod service;
pub mod status;
pub mod sysinfo;
pub mod token;
pub mod user;
pub mod version;
pub mod worker;

use clap::Subcommand;

use crate::cli::Cli;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a controller (etcd and the Kubernetes control plane); with --enable-worker also a worker.
    Server(server::ServerArgs),
    /// Join this host to a cluster as a worker (containerd, kubelet, kube-proxy) and run it.
    Worker(worker::WorkerArgs),
    /// Show the running node's role and components.
    Status(status::StatusArgs),
    /// Run kubectl with the admin kubeconfig.
    Kubectl(kubectl::KubectlArgs),
    /// Print the k0x version, commit and target.
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish).
    Completion(completion::CompletionArgs),
    /// Print the default cluster configuration or validate a configuration file.
    Config(config::ConfigArgs),
    /// Create people's kubeconfigs (client certificates signed by the cluster CA).
    User(user::UserArgs),
    /// Print kubeconfigs k0x keeps (admin).
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Manage the cluster PKI in the data dir.
    Pki(pki::PkiArgs),
    /// Create, list and invalidate join tokens (talks to the running server).
    Token(token::TokenArgs),
    /// List the controllers' etcd members, or remove one.
    Etcd(etcd::EtcdArgs),
    /// Forget a worker so that a reinstalled host can join again under its name.
    Node(node::NodeArgs),
    /// Install the k0x service unit (systemd or OpenRC); does not start it.
    Install(install::InstallArgs),
    /// Start the installed k0x service.
    Start,
    /// Stop the installed k0x service; running containers keep running (--workloads ends them).
    Stop(service::StopArgs),
    /// Check the host for what k0x needs; --fix applies the safe fixes.
    Sysinfo(sysinfo::SysinfoArgs),
    /// Remove everything k0x created on this host (refused while k0x runs).
    Reset(reset::ResetArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Server(args) => server::run(global, &args),
        Command::Worker(args) => worker::run(global, &args),
        Command::Status(args) => status::run(global, &args),
        Command::Kubectl(args) => kubectl::run(global, &args),
        Command::Version(args) => version::run(global, &args),
        Command::Completion(args) => completion::run(&args),
        Command::Config(args) => config::run(global, &args),
        Command::User(args) => user::run(global, &args),
        Command::Kubeconfig(args) => kubeconfig::run(global, &args),
        Command::Pki(args) => pki::run(global, &args),
        Command::Token(args) => token::run(global, &args),
        Command::Etcd(args) => etcd::run(global, &args),
        Command::Node(args) => node::run(global, &args),
        Command::Install(args) => install::run(global, &args),
        Command::Start => service::run_action(k0x_host::service::Action::Start),
        Command::Stop(args) => service::stop(global, &args),
        Command::Sysinfo(args) => sysinfo::run(global, &args),
        Command::Reset(args) => reset::run(global, &args),
    }
}
