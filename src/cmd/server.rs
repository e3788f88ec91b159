//! `k0x server [--enable-worker]`: run a controller (etcd, kube-apiserver, kube-scheduler,
//! kube-controller-manager), optionally also a worker (containerd, kubelet, kube-proxy). With a
//! controller token (`k0x server --token-file FILE`) it joins an existing cluster as one more
//! controller.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, HostFixesArg};
use crate::cmd::launch::{NodeToken, run_node};
use crate::node::NodeRole;
use clap::Args;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Controller join token from `k0x token create --role controller`, for the first start of
    /// an additional controller. Prefer --token-file: arguments are visible to every user in `ps`.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding the controller join token (recommended).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Also run the worker components (containerd, kubelet, kube-proxy) so this node runs pods;
    /// the control plane is not tainted.
    #[arg(long)]
    pub enable_worker: bool,
    /// With --enable-worker: register the node with the control-plane taint
    /// (node-role.kubernetes.io/control-plane:NoSchedule), so only pods that tolerate it run here.
    #[arg(long, requires = "enable_worker")]
    pub taint_control_plane: bool,
    /// With --enable-worker: the worker profile (`spec.workerProfiles[].name` in the configuration) whose values are
    /// merged into the kubelet configuration; without it, a profile named `default` applies when
    /// one exists.
    #[arg(long, value_name = "NAME", requires = "enable_worker")]
    pub profile: Option<String>,
    /// Components not to run, comma separated (etcd, kube-apiserver, kube-scheduler,
    /// kube-controller-manager, containerd, kubelet, kube-proxy), and system stacks not to
    /// apply (coredns, metrics-server).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub disable_components: Vec<String>,
    #[command(flatten)]
    pub host_fixes: HostFixesArg,
}

pub fn run(global: &GlobalArgs, args: &ServerArgs) -> anyhow::Result<()> {
    // Only an additional controller's first start needs a token; without one a new cluster starts
    // (or this controller restarts from its data).
    let role = match args.enable_worker {
        true => NodeRole::ControllerWorker {
            tainted: args.taint_control_plane,
        },
        false => NodeRole::Controller,
    };
    let token = NodeToken {
        argument: args.token.as_deref(),
        file: args.token_file.as_deref(),
        role: k0x_join::TokenRole::Controller,
        wrong_role_hint: "`k0x server` joins with a token from `k0x token create --role \
                          controller` (use `k0x worker` for a worker token)",
    };
    run_node(
        global,
        role,
        &token,
        &args.disable_components,
        args.profile.as_deref(),
        args.host_fixes,
    )
}
