//! `k0x pki init`: creates or refreshes the controller PKI in the data dir, exactly as the server
//! does at start. Useful before the first start (e.g. to hand out user kubeconfigs early), in
//! scripts, and to measure PKI generation on slow hardware.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use k0x_config::ClusterConfig;
use k0x_pki::PkiRequest;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create missing CAs, keys, certificates and kubeconfigs; renew expiring leafs.
    ///
    /// Existing valid material is kept; a CA is never replaced. Prints one line per file.
    Init,
}

pub fn run(global: &GlobalArgs, args: &PkiArgs) -> anyhow::Result<()> {
    match args.command {
        PkiCommand::Init => init(global),
    }
}

fn init(global: &GlobalArgs) -> anyhow::Result<()> {
    let config = load_cluster_config(global)?;
    let request = PkiRequest::from_config(&config)?;
    let report = k0x_pki::ensure_pki(&global.data_dir(), &request)?;
    std::io::stdout()
        .lock()
        .write_all(report.to_string().as_bytes())
        .context("writing the report to stdout")
}

/// The cluster configuration from `--config`, or the defaults when that file does not exist.
pub fn load_cluster_config(global: &GlobalArgs) -> anyhow::Result<ClusterConfig> {
    let path = &global.config;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ClusterConfig::default());
        }
        Err(err) => anyhow::bail!("cannot read {}: {err}", path.display()),
    };
    serde_saphyr::from_str(&text).map_err(|err| {
        let headline = err.to_string();
        let headline = headline
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        anyhow::anyhow!(
            "{}: invalid cluster configuration ({headline}); fix the file or pass another --config",
            path.display()
        )
    })
}
