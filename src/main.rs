//! The k0x command line: parse, set up logging, hand over to the crates. No logic lives here.

mod cli;
mod cmd;
mod node;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(&cli.global);
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {}", cli::error_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
