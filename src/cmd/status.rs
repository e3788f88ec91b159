//! `k0x status`: the running node's role and components, from its admin socket.

use std::io::Write;

use anyhow::Context;
use clap::Args;

use crate::cli::{GlobalArgs, OutputFormat, block_on};
use crate::node::admin::{self, NodeStatus};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let status = block_on(admin::fetch_status(&global.run_dir()))??;
    let text = match args.output.structured(&status)? {
        Some(text) => text,
        None => render(&status),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

fn render(status: &NodeStatus) -> String {
    let mut out = format!(
        "Role:        {}\nNode:        {}\nAPI address: {}\nData dir:    {}\nk0x pid:     {}\n\n",
        status.role,
        status.node_name,
        status.api_address,
        status.data_dir.display(),
        status.pid
    );
    out += &format!(
        "{:<24} {:<9} {:>8} {:>8}  {:<24} {}\n",
        "COMPONENT", "STATE", "PID", "RESTARTS", "VERSION", "DETAIL"
    );
    for c in &status.components {
        let pid = c.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let detail = c
            .message
            .clone()
            .or_else(|| c.last_exit.as_ref().map(|e| format!("last exit: {e}")))
            .unwrap_or_default();
        let version = c.version.as_deref().unwrap_or("-");
        out += &format!(
            "{:<24} {:<9} {:>8} {:>8}  {:<24} {}\n",
            c.name, c.state, pid, c.restarts, version, detail
        );
    }
    out
}
