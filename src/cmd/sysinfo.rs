//! `k0x sysinfo`: host checks with a fix each; `--fix` applies the safe ones and persists them.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use k0x_host::sysinfo::{Options, Parts, RealHost, fix, run_checks};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};

#[derive(Debug, Args)]
pub struct SysinfoArgs {
    /// Load missing kernel modules and set sysctls, persisted in /etc/modules-load.d and
    /// /etc/sysctl.d.
    #[arg(long)]
    pub fix: bool,
    /// Which parts of k0x the host is checked for.
    #[arg(long, value_enum, default_value_t = CheckRole::ControllerWorker)]
    pub role: CheckRole,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Root below which `--fix` persists its files (for images and tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckRole {
    Controller,
    Worker,
    ControllerWorker,
}

impl From<CheckRole> for Parts {
    fn from(role: CheckRole) -> Self {
        match role {
            CheckRole::Controller => Self::Controller,
            CheckRole::Worker => Self::Worker,
            CheckRole::ControllerWorker => Self::ControllerWorker,
        }
    }
}

#[derive(Debug, Serialize)]
struct Structured<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed: Option<&'a [fix::Fixed]>,
    #[serde(flatten)]
    report: &'a k0x_host::sysinfo::Report,
}

#[allow(clippy::print_stdout)]
pub fn run(global: &GlobalArgs, args: &SysinfoArgs) -> anyhow::Result<()> {
    let config = global.load_config()?;
    let options = Options::new(global.data_dir(), args.role.into(), &config.spec);
    let mut report = run_checks(&RealHost, &options);
    let fixed = args
        .fix
        .then(|| fix::apply(&RealHost, &report, fix::Keep::Persisted(&args.root)));
    if fixed.is_some() {
        report = run_checks(&RealHost, &options);
    }
    let structured = Structured {
        fixed: fixed.as_deref(),
        report: &report,
    };
    match args.output.structured(&structured)? {
        Some(text) => print!("{text}"),
        None => {
            for f in fixed.iter().flatten() {
                match &f.error {
                    None => println!(
                        "fixed  {f} ({}, kept in {})",
                        f.action,
                        f.persisted_in
                            .as_deref()
                            .unwrap_or(Path::new("-"))
                            .display()
                    ),
                    Some(err) => println!("failed {}: {err}", f.action),
                }
            }
            print!("{}", report.to_text());
        }
    }
    let fatal = report.fatal_failures().count();
    if fatal > 0 {
        anyhow::bail!(
            "{fatal} check(s) would stop k0x from starting (marked FAIL above); apply their fixes{}",
            if args.fix {
                ""
            } else {
                " or run `k0x sysinfo --fix`"
            }
        );
    }
    Ok(())
}
