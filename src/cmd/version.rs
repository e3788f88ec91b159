//! `k0x version`: the build facts compiled in by build.rs.

use clap::Args;
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};

pub const SHORT: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Serialize)]
struct VersionInfo {
    version: &'static str,
    commit: &'static str,
    target: &'static str,
}

const INFO: VersionInfo = VersionInfo {
    version: SHORT,
    commit: env!("K0X_GIT_COMMIT"),
    target: env!("K0X_TARGET"),
};

#[allow(clippy::print_stdout)]
pub fn run(_global: &GlobalArgs, args: &VersionArgs) -> anyhow::Result<()> {
    match args.output {
        OutputFormat::Text => println!(
            "k0x {} (commit {}, {})",
            INFO.version, INFO.commit, INFO.target
        ),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&INFO)?),
        OutputFormat::Yaml => print!(
            "version: {}\ncommit: {}\ntarget: {}\n",
            INFO.version, INFO.commit, INFO.target
        ),
    }
    Ok(())
}
