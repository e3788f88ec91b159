//! `k0x version`: the build facts compiled in by build.rs, and with `--components` the components
//! this binary expects (compiled-in lock) next to what it carries and what is extracted.

use clap::Args;
use k0x_assets::buildinfo::{self, GoBuildInfo};
use k0x_assets::{ComponentInfo, ComponentStatus, Origin, Payload};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};

pub const SHORT: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Also list every embedded component: expected and present version, sha256, source; with
    /// `-o json|yaml` also the Go modules each extracted binary was built from.
    #[arg(long)]
    pub components: bool,
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

/// Where the components come from, as reported to the user.
#[derive(Debug, Serialize)]
struct PayloadInfo {
    /// `embedded`, `K0X_PAYLOAD` or `none`.
    origin: &'static str,
    path: Option<String>,
    bytes: Option<u64>,
    /// Why there is no usable payload (one line with the way out).
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct ComponentsReport {
    #[serde(flatten)]
    build: VersionInfo,
    payload: PayloadInfo,
    components: Vec<Component>,
}

/// A component, and for an extracted Go binary the modules it was built from (its bill of
/// materials, read from the binary itself).
#[derive(Debug, Serialize)]
struct Component {
    #[serde(flatten)]
    info: ComponentInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    go_build: Option<GoBuildInfo>,
}

pub fn run(global: &GlobalArgs, args: &VersionArgs) -> anyhow::Result<()> {
    if args.components {
        return print_components(global, args.output);
    }
    print_build(args.output)
}

#[allow(clippy::print_stdout)]
fn print_build(output: OutputFormat) -> anyhow::Result<()> {
    match output.structured(&INFO)? {
        Some(text) => print!("{text}"),
        None => println!(
            "k0x {} (commit {}, {})",
            INFO.version, INFO.commit, INFO.target
        ),
    }
    Ok(())
}

fn gather(global: &GlobalArgs, with_modules: bool) -> ComponentsReport {
    let data = global.data_dir();
    let located = Payload::locate().and_then(|payload| match payload {
        Some(p) => p.read_manifest().map(|manifest| (Some(p), Some(manifest))),
        None => Ok((None, None)),
    });
    let (payload, manifest, problem) = match located {
        Ok((payload, manifest)) => (payload, manifest, None),
        Err(err) => (None, None, Some(err.to_string())),
    };
    let problem = problem.or_else(|| {
        payload
            .is_none()
            .then(|| k0x_assets::AssetsError::no_payload().to_string())
    });
    let payload_info = PayloadInfo {
        origin: match payload.as_ref().map(Payload::origin) {
            Some(Origin::Environment) => k0x_assets::PAYLOAD_ENV,
            Some(_) => "embedded",
            None => "none",
        },
        path: payload.as_ref().map(|p| p.path().display().to_string()),
        bytes: payload.as_ref().and_then(Payload::len),
        problem,
    };
    ComponentsReport {
        build: INFO,
        payload: payload_info,
        components: k0x_assets::components_report(&data, manifest.as_ref())
            .into_iter()
            .map(|info| Component {
                go_build: (with_modules && info.status == ComponentStatus::Extracted)
                    .then(|| buildinfo::read(&data.bin().join(&info.name)).ok().flatten())
                    .flatten(),
                info,
            })
            .collect(),
    }
}

#[allow(clippy::print_stdout)]
fn print_components(global: &GlobalArgs, output: OutputFormat) -> anyhow::Result<()> {
    let report = gather(global, output != OutputFormat::Text);
    match output.structured(&report)? {
        Some(text) => print!("{text}"),
        None => print!("{}", render_text(&report)),
    }
    Ok(())
}

fn render_text(report: &ComponentsReport) -> String {
    let mut out = format!(
        "k0x {} (commit {}, {})\n",
        report.build.version, report.build.commit, report.build.target
    );
    match (&report.payload.path, &report.payload.problem) {
        (Some(path), _) => out.push_str(&format!(
            "payload: {} ({}, {} bytes)\n",
            path,
            report.payload.origin,
            report
                .payload
                .bytes
                .map_or("?".to_owned(), |b| b.to_string())
        )),
        (None, Some(problem)) => out.push_str(&format!("payload: none: {problem}\n")),
        (None, None) => out.push_str("payload: none\n"),
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut rows = vec![
        [
            "COMPONENT",
            "EXPECTED",
            "PRESENT",
            "STATUS",
            "SOURCE",
            "SHA256",
        ]
        .map(String::from),
    ];
    for c in report.components.iter().map(|c| &c.info) {
        let status = match c.status {
            ComponentStatus::Extracted => "extracted",
            ComponentStatus::InPayload => "in-payload",
            ComponentStatus::Missing => "MISSING",
        };
        let sha = c.sha256.as_deref().map_or("-", |s| &s[..s.len().min(16)]);
        rows.push([
            c.name.clone(),
            dash(&c.expected_version),
            dash(&c.present_version),
            status.to_owned(),
            dash(&c.source),
            sha.to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|col| rows.iter().map(|row| row[col].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if let Some(hint) = report.components.iter().find_map(|c| c.info.hint.as_ref()) {
        let missing: Vec<&str> = report
            .components
            .iter()
            .filter(|c| c.info.status == ComponentStatus::Missing)
            .map(|c| c.info.name.as_str())
            .collect();
        out.push_str(&format!("missing: {}: {hint}\n", missing.join(", ")));
    }
    out
}
