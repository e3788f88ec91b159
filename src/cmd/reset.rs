//! `k0x reset`: removes everything k0x created on this host; `--dry-run` only lists it.

use std::path::{Path, PathBuf};

use clap::Args;
use k0x_host::reset::{Done, ResetOptions, Step, ensure_not_running, plan, reset};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// List what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Root of the installed units and host files (for images and tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

#[allow(clippy::print_stdout)]
pub fn run(global: &GlobalArgs, args: &ResetArgs) -> anyhow::Result<()> {
    let options = ResetOptions {
        root: args.root.clone(),
        ..ResetOptions::new(global.data_dir(), global.run_dir())
    };
    if args.dry_run {
        let _lock = ensure_not_running(&options)?;
        let steps = plan(&options)?;
        if steps.is_empty() {
            println!("nothing to reset");
        }
        for step in steps {
            println!("would {step}");
        }
        return Ok(());
    }
    let done = reset(&options)?;
    if done.is_empty() {
        println!("nothing to reset");
    }
    let failed = print_done(&done);
    let removed_units = done
        .iter()
        .any(|d| matches!(&d.step, Step::RemoveFile { path } if path.extension().is_some_and(|e| e == "service")));
    if removed_units && args.root == Path::new("/") {
        super::install::reload_systemd();
    }
    if failed > 0 {
        anyhow::bail!(
            "reset left {failed} step(s) undone (marked FAILED above); fix the cause and rerun `k0x reset`"
        );
    }
    Ok(())
}

/// Prints one line per step taken (`done` or `FAILED` with the cause); returns how many failed.
#[allow(clippy::print_stdout)]
pub(super) fn print_done(done: &[Done]) -> usize {
    for d in done {
        match &d.error {
            None => println!("done   {}", d.step),
            Some(err) => println!("FAILED {}: {err}", d.step),
        }
    }
    done.iter().filter(|d| d.error.is_some()).count()
}
