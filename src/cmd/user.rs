//! `k0x user create NAME --groups a,b`: a kubeconfig for a person, with a client certificate
//! (CN=NAME, one O per group) signed by the cluster CA read from the data dir. It works whether or
//! not the server runs; it needs the CA key, so root. What the user may do is up to RBAC bindings
//! to the name or the groups (docs/users-and-rbac.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use k0x_pki::{CLUSTER_ADMIN_GROUP, UserRequest};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Print a kubeconfig for a new user, authenticated by a client certificate.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// User name (the certificate's CN, what RBAC subjects of kind User refer to).
    pub name: String,
    /// Groups, comma separated (one O attribute each; RBAC subjects of kind Group).
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Validity of the certificate: a number with unit d, h, m or s (8760h, 30d, 1d12h).
    #[arg(long, default_value = "8760h")]
    pub expiry: String,
    /// Write the kubeconfig to FILE (created 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// API server URL for the kubeconfig [default: https://<spec.api.address or this host's
    /// address>:<spec.api.port>].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &UserArgs) -> anyhow::Result<()> {
    match &args.command {
        UserCommand::Create(create) => run_create(global, create),
    }
}

fn run_create(global: &GlobalArgs, args: &CreateArgs) -> anyhow::Result<()> {
    let config = global.load_config()?;
    if let Some(path) = &args.output {
        check_output(path, args.force, &args.name)?;
    }
    let server = match &args.server {
        Some(url) => url.clone(),
        // The address the node advertises, not just any local one: once pods run, the pod
        // bridge's address sorts first and is not in the apiserver's certificate.
        None => {
            let advertised = k0x_node::context::primary_address()
                .map_or_else(|_| k0x_pki::host_addresses(), |ip| vec![ip]);
            k0x_pki::public_api_url(&config, &advertised)
        }
    };
    let groups: Vec<String> = args
        .groups
        .iter()
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect();
    let request = UserRequest {
        name: args.name.clone(),
        groups,
        validity: k0x_pki::parse_duration(&args.expiry).context("--expiry")?,
        server,
        cluster_name: config.metadata.name.clone(),
        key_type: config.spec.pki.key_type,
    };
    let kubeconfig = k0x_pki::user_kubeconfig(&global.data_dir(), &request)?;
    if request.groups.iter().any(|g| g == CLUSTER_ADMIN_GROUP) {
        eprintln!(
            "Warning: group {CLUSTER_ADMIN_GROUP} grants cluster-admin: RBAC does not apply to \
             it and the certificate cannot be revoked before it expires"
        );
    }
    match &args.output {
        None => std::io::stdout()
            .lock()
            .write_all(kubeconfig.as_bytes())
            .context("writing the kubeconfig to stdout"),
        Some(path) => write_output(path, &kubeconfig, args.force),
    }
}

/// Refuses an `--output` that cannot take the kubeconfig, before a certificate is issued.
fn check_output(path: &Path, force: bool, user: &str) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "--output {} is a directory: name a file, e.g. {}",
            path.display(),
            path.join(format!("{user}.conf")).display()
        );
    }
    if path.exists() && !force {
        anyhow::bail!(
            "--output {} already exists; pass --force to replace it",
            path.display()
        );
    }
    Ok(())
}

fn write_output(path: &Path, kubeconfig: &str, force: bool) -> anyhow::Result<()> {
    let bytes = kubeconfig.as_bytes();
    if force {
        k0x_pki::write_atomic(path, bytes, k0x_pki::SECRET_MODE)?;
    } else {
        k0x_pki::write_new(path, bytes, k0x_pki::SECRET_MODE)?;
    }
    eprintln!("Wrote {} (mode 0600)", path.display());
    Ok(())
}
