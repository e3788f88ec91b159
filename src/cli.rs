//! Argument definitions shared by every subcommand.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, ValueEnum};
use k0x_config::{ClusterConfig, DataDir, RunDir, layout};
use k0x_host::sysinfo::HostFixes;

use crate::cmd::Command;

/// k0x: a single-binary Kubernetes distribution.
///
/// One binary turns a Linux host into a controller (etcd, kube-apiserver, kube-scheduler,
/// kube-controller-manager), a worker (containerd, kubelet, kube-proxy) or both.
#[derive(Debug, Parser)]
#[command(name = "k0x", version = crate::cmd::version::SHORT, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand honours.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Data directory: binaries, PKI, etcd and worker state.
    #[arg(long, global = true, env = "K0X_DATA_DIR", default_value = layout::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Run directory: admin socket, pid files, containerd socket.
    #[arg(long, global = true, env = "K0X_RUN_DIR", default_value = layout::DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Cluster configuration file (YAML).
    #[arg(short = 'c', long, global = true, env = "K0X_CONFIG", default_value = layout::DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// More log output: -v debug, -vv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl GlobalArgs {
    pub fn data_dir(&self) -> DataDir {
        DataDir::new(&self.data_dir)
    }

    pub fn run_dir(&self) -> RunDir {
        RunDir::new(&self.run_dir)
    }

    /// The cluster configuration from `--config`; the built-in defaults when the default file is absent.
    pub fn load_config(&self) -> anyhow::Result<ClusterConfig> {
        ClusterConfig::load_or_default(&self.config).map_err(|errors| anyhow::anyhow!("{errors}"))
    }
}

/// `--no-host-fixes`: of `k0x server` and `k0x worker`, and of `k0x install`, which writes it
/// into the unit.
#[derive(Debug, Clone, Copy, Args)]
pub struct HostFixesArg {
    /// Do not load kernel modules or set sysctls at start, for hosts another tool prepares: k0x
    /// then only checks them and refuses to start while a fatal check fails. Same as
    /// `spec.host.applyFixes: false` in the configuration.
    #[arg(long)]
    pub no_host_fixes: bool,
}

impl HostFixesArg {
    /// What a node does to its host at start: fixes unless the flag or the configuration say no.
    pub fn host_fixes(self, config: &ClusterConfig) -> HostFixes {
        if config.spec.host.apply_fixes && !self.no_host_fixes {
            HostFixes::Apply
        } else {
            HostFixes::Off
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Output format of commands that report state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
    Yaml,
}

impl OutputFormat {
    /// `value` as pretty JSON or as YAML, each ending in a newline; `None` for text, which each
    /// command renders its own way.
    pub fn structured(self, value: &impl serde::Serialize) -> anyhow::Result<Option<String>> {
        Ok(match self {
            Self::Text => None,
            Self::Json => Some(serde_json::to_string_pretty(value)? + "\n"),
            Self::Yaml => Some(serde_saphyr::to_string(value)?),
        })
    }
}

/// Runs a subcommand's async work to its end on a current-thread runtime.
pub fn block_on<F: Future>(work: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(work))
}

/// Logs go to stderr so that stdout stays clean for the kubeconfigs, tokens and reports we print.
pub fn init_logging(global: &GlobalArgs) {
    let level = match global.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("K0X_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The error as the one line a user reads: each cause in the chain once. Many messages already
/// embed their cause ("cannot create X: File exists (os error 17)") and also report it as their
/// source; printing the chain as is would say it twice.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain().map(ToString::to_string) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that embeds its source in its message, as many of ours do.
    #[derive(Debug)]
    struct Embeds {
        source: std::io::Error,
    }

    impl std::fmt::Display for Embeds {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot create /x: {}", self.source)
        }
    }

    impl std::error::Error for Embeds {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_the_message_embeds_is_said_once() {
        let io = std::io::Error::from_raw_os_error(17);
        let err = anyhow::Error::new(Embeds { source: io }).context("pki init");
        let line = error_line(&err);
        assert_eq!(line.matches("os error 17").count(), 1, "{line}");
        assert!(line.starts_with("pki init: cannot create /x: "), "{line}");
    }
}
