//! `k0x pki init`: creates or refreshes the controller PKI in the data dir, exactly as the server
//! does at start. Useful before the first start (e.g. to hand out user kubeconfigs early), in
//! scripts, and to measure PKI generation on slow hardware.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
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
    let config = global.load_config()?;
    let request = PkiRequest::from_config(&config);
    let report = k0x_pki::ensure_pki(&global.data_dir(), &request)?;
    std::io::stdout()
        .lock()
        .write_all(report.to_string().as_bytes())
        .context("writing the report to stdout")
}
