//! `k0x worker [TOKEN] [--token-file FILE]`: join this host to a cluster as a worker and run
//! containerd and the kubelet.

use std::path::PathBuf;

use clap::Args;

use crate::cli::{GlobalArgs, HostFixesArg};
use crate::cmd::launch::{NodeToken, run_node};
use crate::node::NodeRole;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Join token from `k0x token create --role worker`. Prefer --token-file: arguments are
    /// visible to every user in `ps`.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding the join token (recommended).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Components not to run, comma separated (containerd, kubelet, kube-proxy).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub disable_components: Vec<String>,
    /// The worker profile (`spec.workerProfiles[].name` in the configuration) whose values are
    /// merged into the kubelet configuration; without it, a profile named `default` applies when
    /// one exists.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    #[command(flatten)]
    pub host_fixes: HostFixesArg,
}

pub fn run(global: &GlobalArgs, args: &WorkerArgs) -> anyhow::Result<()> {
    // The token is only needed for the first start; a joined worker restarts without one.
    let token = NodeToken {
        argument: args.token.as_deref(),
        file: args.token_file.as_deref(),
        role: k0x_join::TokenRole::Worker,
        wrong_role_hint: "`k0x worker` needs one from `k0x token create --role worker`",
    };
    run_node(
        global,
        NodeRole::Worker,
        &token,
        &args.disable_components,
        args.profile.as_deref(),
        args.host_fixes,
    )
}
