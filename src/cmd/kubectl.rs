//! `k0x kubectl ...`: kubectl with the admin kubeconfig, no setup needed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct KubectlArgs {
    /// Arguments passed to kubectl unchanged.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Replaces this process with kubectl (the extracted one, else the host's).
pub fn run(global: &GlobalArgs, args: &KubectlArgs) -> anyhow::Result<()> {
    let data = global.data_dir();
    let kubeconfig = data.admin_kubeconfig();
    anyhow::ensure!(
        kubeconfig.is_file(),
        "no admin kubeconfig at {}: start the controller first (`k0x server`), or pass its --data-dir",
        kubeconfig.display()
    );
    let extracted = data.bin().join("kubectl");
    let kubectl = if extracted.is_file() {
        extracted
    } else {
        PathBuf::from("kubectl")
    };
    let err = std::process::Command::new(&kubectl)
        .env("KUBECONFIG", &kubeconfig)
        .args(&args.args)
        .exec();
    anyhow::bail!(
        "cannot run {}: {err}; it comes with the payload, or install kubectl",
        kubectl.display()
    )
}
