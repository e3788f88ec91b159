//! `k0x config create|validate`: print the default configuration, check a configuration file.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use k0x_config::{ClusterConfig, layout::DEFAULT_CONFIG_FILE};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the full default configuration (every field, with its default value).
    ///
    /// Start a configuration with `k0x config create > /etc/k0x/k0x.yaml` and edit it.
    Create,
    /// Check a configuration file and print every problem, one line each:
    /// FILE:LINE:COL: FIELD.PATH: what is wrong (how to fix it).
    ///
    /// Exits non-zero when there is an error. k0s files (apiVersion k0s.k0sproject.io/v1beta1)
    /// are accepted; their settings k0x does not implement are reported as warnings.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// File to check; `-` reads standard input. Defaults to --config.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &ConfigArgs) -> anyhow::Result<()> {
    match &args.command {
        ConfigCommand::Create => create(),
        ConfigCommand::Validate(validate_args) => {
            validate(validate_args.file.as_deref().unwrap_or(&global.config))
        }
    }
}

#[allow(clippy::print_stdout)]
fn create() -> anyhow::Result<()> {
    print!("{}", ClusterConfig::default().to_yaml());
    Ok(())
}

#[allow(clippy::print_stdout)]
fn validate(path: &Path) -> anyhow::Result<()> {
    if path == Path::new(DEFAULT_CONFIG_FILE) && !path.exists() {
        println!(
            "{DEFAULT_CONFIG_FILE} does not exist: k0x uses the built-in defaults, which are valid"
        );
        return Ok(());
    }
    let source = k0x_config::source_name(path);
    match k0x_config::check_file(path) {
        Ok(checked) => {
            for warning in &checked.warnings {
                eprintln!("{warning}");
            }
            println!("{source}: valid");
            Ok(())
        }
        Err(errors) if errors.errors.len() == 1 && errors.errors[0].line == 0 => {
            // The file could not be read: that one line is the whole story.
            anyhow::bail!("{}", errors.errors[0])
        }
        Err(errors) => {
            for line in errors.warnings.iter().chain(&errors.errors) {
                eprintln!("{line}");
            }
            let count = errors.errors.len();
            let noun = if count == 1 { "error" } else { "errors" };
            anyhow::bail!(
                "{source}: {count} {noun} in the configuration (fix the lines above, then run `k0x config validate` again)"
            )
        }
    }
}
