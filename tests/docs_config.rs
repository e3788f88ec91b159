//! docs/configuration.md stays in step with `k0x config create` and the schema.

use std::collections::BTreeSet;
use std::process::Command;

use k0x_config::{ClusterConfig, K0S_ONLY_FIELDS};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    std::fs::read_to_string(path).expect("docs/configuration.md is readable")
}

/// The lines between `<!-- BEGIN name -->` and `<!-- END name -->`.
fn section(doc: &str, name: &str) -> Vec<String> {
    let begin = format!("<!-- BEGIN {name} -->");
    let end = format!("<!-- END {name} -->");
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == begin)
        .expect("begin marker");
    let stop = lines.iter().position(|l| *l == end).expect("end marker");
    lines[start + 1..stop]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Field paths of the default configuration: every mapping key, down to the leaves.
fn default_paths() -> BTreeSet<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                walk(&path, child, out);
            }
        }
    }
    let mut paths = BTreeSet::new();
    let value = serde_json::to_value(ClusterConfig::default()).unwrap();
    walk("", &value, &mut paths);
    paths
}

/// Paths in the first column of the reference tables: lines like "| `spec.api.port` | ...".
fn documented_paths(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(path, _)| path.to_owned())
        .collect()
}

#[test]
fn embedded_default_is_what_config_create_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_k0x"))
        .args(["config", "create"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let created = String::from_utf8(out.stdout).unwrap();
    let block = section(&doc(), "config create");
    assert_eq!(block.first().map(String::as_str), Some("```yaml"));
    assert_eq!(block.last().map(String::as_str), Some("```"));
    let embedded = block[1..block.len() - 1].join("\n") + "\n";
    assert_eq!(
        embedded, created,
        "docs/configuration.md: paste the output of `k0x config create` between the markers"
    );
}

#[test]
fn every_default_field_is_documented() {
    let documented = documented_paths(&doc());
    let missing: Vec<_> = default_paths()
        .into_iter()
        .filter(|path| !documented.contains(path))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn every_documented_field_exists() {
    let known = default_paths();
    let unknown: Vec<_> = documented_paths(&doc())
        .into_iter()
        .filter(|path| {
            // `spec.workerProfiles[].name` documents the items of a list the default leaves empty.
            let container = path.split("[]").next().unwrap_or(path);
            !known.contains(container)
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "documented but not in the schema: {unknown:?}"
    );
}

#[test]
fn k0s_only_list_matches_the_code() {
    let listed: Vec<String> = section(&doc(), "k0s-only")
        .iter()
        .map(|line| {
            line.trim_start_matches("- `")
                .trim_end_matches('`')
                .to_owned()
        })
        .collect();
    assert_eq!(listed, K0S_ONLY_FIELDS);
}
