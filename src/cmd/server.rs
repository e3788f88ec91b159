//! `k0x server [--enable-worker]`: run a controller (etcd, kube-apiserver, kube-scheduler,
//! kube-controller-manager), optionally also a worker (containerd, kubelet). With a controller
//! token (`k0x server --token-file FILE`) it joins an existing cluster as one more controller.

use std::path::PathBuf;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::server::{self, Role, ServerOptions};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Controller join token from `k0x token create --role controller`, for the first start of
    /// an additional controller. Prefer --token-file: arguments are visible to every user in `ps`.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding the controller join token (recommended).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
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
    // Only an additional controller's first start needs a token; without one a new cluster starts
    // (or this controller restarts from its data).
    let token = match k0x_join::token::load(args.token.as_deref(), args.token_file.as_deref()) {
        Ok(token) => Some(token),
        Err(k0x_join::token::LoadError::Missing) => None,
        Err(err) => return Err(err.into()),
    };
    if let Some(token) = &token {
        anyhow::ensure!(
            token.role == k0x_join::Role::Controller,
            "this is a {} token; `k0x server` joins with one from `k0x token create --role controller` \
             (use `k0x worker` for a worker token)",
            token.role.as_str()
        );
    }
    let options = ServerOptions {
        role: Role {
            controller: true,
            worker: args.enable_worker,
        },
        disabled: args.disable_components.clone(),
        token,
    };
    server::run(config, global.data_dir(), global.run_dir(), &options)
}
