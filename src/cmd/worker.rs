//! `k0x worker [TOKEN] [--token-file FILE]`: join this host to a cluster as a worker and run
//! containerd and the kubelet.

use std::path::PathBuf;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::server::{self, Role, ServerOptions};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Join token from `k0x token create --role worker`. Prefer --token-file: arguments are
    /// visible to every user in `ps`.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding the join token (recommended).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Components not to run, comma separated (containerd, kubelet).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub disable_components: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: &WorkerArgs) -> anyhow::Result<()> {
    let config = global.load_config()?;
    // The token is only needed for the first start; a joined worker restarts without one.
    let token = match k0x_join::token::load(args.token.as_deref(), args.token_file.as_deref()) {
        Ok(token) => Some(token),
        Err(k0x_join::token::LoadError::Missing) => None,
        Err(err) => return Err(err.into()),
    };
    if let Some(token) = &token {
        anyhow::ensure!(
            token.role == k0x_join::Role::Worker,
            "this is a {} token; `k0x worker` needs one from `k0x token create --role worker`",
            token.role.as_str()
        );
    }
    let options = ServerOptions {
        role: Role {
            controller: false,
            worker: true,
        },
        disabled: args.disable_components.clone(),
        token,
    };
    server::run(config, global.data_dir(), global.run_dir(), &options)
}
