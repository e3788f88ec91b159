//! `k0x kubeconfig admin`: prints the admin kubeconfig (`pki/admin.conf`, O=system:masters), as
//! `k0s kubeconfig admin` does.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[command(subcommand)]
    pub command: KubeconfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum KubeconfigCommand {
    /// Print the cluster-admin kubeconfig (server https://127.0.0.1:<api port>).
    Admin,
}

pub fn run(global: &GlobalArgs, args: &KubeconfigArgs) -> anyhow::Result<()> {
    match args.command {
        KubeconfigCommand::Admin => {
            let text = k0x_pki::admin_kubeconfig(&global.data_dir())?;
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .context("writing the kubeconfig to stdout")
        }
    }
}
