//! Build and test tool for the k0x payload.
//!
//! `scripts/build.sh` uses `attach` to append the staged payload to the release binary; tests and
//! benchmarks use `extract` to run an extraction in a process of its own (so it can be killed
//! mid-way or run twice at once) and `manifest` to inspect a payload.

use std::path::PathBuf;
use std::process::ExitCode;

use k0x_assets::{Payload, Progress};
use k0x_config::DataDir;

const USAGE: &str = "usage:
  k0x-payload attach TARGET PAYLOAD [OUT]   append PAYLOAD to TARGET, written to OUT (default: TARGET)
  k0x-payload extract DATA_DIR [PAYLOAD]    extract PAYLOAD (default: K0X_PAYLOAD) into DATA_DIR/bin
  k0x-payload manifest PAYLOAD              print the payload's manifest as JSON";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("K0X_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["attach", target, payload, rest @ ..] if rest.len() <= 1 => {
            let out = rest.first().unwrap_or(target);
            attach(target, payload, out)
        }
        ["extract", data_dir, rest @ ..] if rest.len() <= 1 => extract(data_dir, rest.first()),
        ["manifest", payload] => manifest(payload),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(line) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("Error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn attach(target: &str, payload: &str, out: &str) -> k0x_assets::Result<String> {
    let report = k0x_assets::attach(target.as_ref(), payload.as_ref(), out.as_ref())?;
    Ok(format!(
        "{out}: {} bytes of binary + {} bytes of payload ({} files, sha256 {})",
        report.binary_bytes, report.payload_bytes, report.files, report.payload_sha256
    ))
}

fn extract(data_dir: &str, payload: Option<&&str>) -> k0x_assets::Result<String> {
    let payload = match payload {
        Some(path) => Payload::open(&PathBuf::from(path))?,
        None => Payload::require()?,
    };
    let report = k0x_assets::extract(&payload, &DataDir::new(data_dir), Progress::Auto)?;
    Ok(format!(
        "extracted {} unchanged {} rehashed {} bytes {} ms {}",
        report.extracted.len(),
        report.unchanged.len(),
        report.rehashed.len(),
        report.bytes_written,
        report.elapsed.as_millis()
    ))
}

fn manifest(payload: &str) -> k0x_assets::Result<String> {
    let manifest = Payload::open(&PathBuf::from(payload))?.read_manifest()?;
    Ok(serde_json::to_string_pretty(&manifest).expect("manifest serializes"))
}
