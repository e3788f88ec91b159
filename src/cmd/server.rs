//! `k0x server [--enable-worker]`: run a controller (etcd, kube-apiserver, kube-scheduler,
//! kube-controller-manager), optionally also a worker (containerd, kubelet).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::server::{self, Role, ServerOptions};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Also run the worker components (containerd, kubelet) so this node runs pods; the control
    /// plane is not tainted.
    #[arg(long)]
    pub enable_worker: bool,
    /// Components not to run, comma separated (etcd, kube-apiserver, kube-scheduler,
    /// kube-controller-manager, containerd, kubelet).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub disable_components: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: &ServerArgs) -> anyhow::Result<()> {
    // Refuse unknown names before anything is locked or written (the PKI comes first).
    k0x_node::filter_disabled(Vec::new(), &args.disable_components)?;
    let config = global.load_config()?;
    let options = ServerOptions {
        role: Role {
            controller: true,
            worker: args.enable_worker,
        },
        disabled: args.disable_components.clone(),
        token: None,
    };
    server::run(config, global.data_dir(), global.run_dir(), &options)
}
