//! Reading a configuration file and reporting every problem in it at once.
//!
//! The pipeline: parse the YAML into a position-carrying tree; check `apiVersion` and `kind`;
//! translate a k0s file; then deserialize the typed [`ClusterConfig`] error by error: each
//! schema error (unknown field, wrong type, bad enum value) is recorded with its position, the
//! offending node is dropped so its default applies, and deserialization runs again until it
//! succeeds. Last, the semantic checks of `validate.rs` run on the result. A file therefore gets
//! all its errors in one go instead of one per edit-and-retry.

use std::io::Read;
use std::path::Path;

use crate::error::{ConfigErrors, Diagnostic, Severity};
use crate::k0s;
use crate::layout::DEFAULT_CONFIG_FILE;
use crate::schema::{API_VERSION, ClusterConfig, K0S_API_VERSION, KIND};
use crate::tree::{self, FieldPath, Node, Pos, Segment, Value};

/// Old k0s releases wrote `kind: Cluster`; accepted in k0s files only.
const K0S_OLD_KIND: &str = "Cluster";
/// The file name that stands for standard input.
pub const STDIN: &str = "-";

/// A configuration that passed validation, and the k0s settings that were ignored on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub config: ClusterConfig,
    pub warnings: Vec<Diagnostic>,
}

impl ClusterConfig {
    /// Reads and validates the file at `path` (`-` reads standard input). Warnings about ignored
    /// k0s settings are logged; use [`check_file`] to get them instead.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        check_file(path).map(log_warnings)
    }

    /// Like [`ClusterConfig::load`], but a missing file at the default location
    /// (`/etc/k0x/k0x.yaml`) means the built-in defaults. A file the user named must exist.
    pub fn load_or_default(path: &Path) -> Result<Self, ConfigErrors> {
        if path == Path::new(DEFAULT_CONFIG_FILE) && !path.exists() {
            tracing::debug!("no configuration at {DEFAULT_CONFIG_FILE}: using the defaults");
            return Ok(Self::default());
        }
        Self::load(path)
    }

    /// Validates YAML text; `source_name` is what error lines start with.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self, ConfigErrors> {
        check_yaml(text, source_name).map(log_warnings)
    }

    /// The configuration as YAML, every field written out (what `k0x config create` prints).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a ClusterConfig always serializes")
    }
}

fn log_warnings(checked: Checked) -> ClusterConfig {
    for warning in &checked.warnings {
        tracing::warn!("{warning}");
    }
    checked.config
}

/// The name error lines use for `path`: standard input is `<stdin>`.
pub fn source_name(path: &Path) -> String {
    if path == Path::new(STDIN) {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads `path` (`-` is standard input) and validates it, returning the warnings too.
pub fn check_file(path: &Path) -> Result<Checked, ConfigErrors> {
    let source = source_name(path);
    let mut text = String::new();
    let read = if path == Path::new(STDIN) {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|err| {
        let hint = match err.kind() {
            std::io::ErrorKind::NotFound => format!(
                "create it with `k0x config create > {source}`, or point --config at another file"
            ),
            std::io::ErrorKind::InvalidData => "save the file as UTF-8 text".to_owned(),
            _ => "check the path and its permissions".to_owned(),
        };
        let reason = err.to_string();
        let reason = reason.split(" (os error").next().unwrap_or(&reason);
        ConfigErrors::file(
            &source,
            format!("cannot read the configuration: {reason}"),
            hint,
        )
    })?;
    check_yaml(&text, &source)
}

/// Validates YAML text and returns the configuration with its warnings, or every error.
pub fn check_yaml(text: &str, source_name: &str) -> Result<Checked, ConfigErrors> {
    let mut report = Report::new(source_name);
    let root = match tree::parse(text) {
        Ok(root) => root,
        Err(err) => {
            report.error_at(err.pos, "", err.message, err.hint);
            return Err(report.into_errors());
        }
    };
    let config = check_tree(&root, &mut report);
    match config {
        Some(config) if report.errors.is_empty() => Ok(Checked {
            config,
            warnings: report.sorted_warnings(),
        }),
        _ => Err(report.into_errors()),
    }
}

fn check_tree(root: &Node, report: &mut Report) -> Option<ClusterConfig> {
    if root.as_map().is_none() {
        let what = if root.value == Value::Null {
            "the file is empty"
        } else {
            "the configuration must be a YAML mapping with apiVersion, kind and spec"
        };
        report.error_at(
            root.pos,
            "",
            what,
            "start from the output of `k0x config create`",
        );
        return None;
    }
    let mut work = root.clone();
    let dialect = check_header(&mut work, report);
    strip_nulls(&mut work, &FieldPath::default());
    if dialect == Dialect::K0s {
        for ignored in k0s::translate(&mut work) {
            report.warning_at(
                ignored.pos,
                &ignored.path.to_string(),
                "k0s setting that k0x does not implement, ignored",
                "remove it to silence this warning",
            );
        }
    }
    let config = deserialize_collecting(root, &mut work, report)?;
    for problem in config.problems() {
        let pos = root.nearest_pos(&FieldPath::parse(&problem.path));
        report.error_at(pos, &problem.path, problem.message, problem.hint);
    }
    Some(config)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    K0x,
    K0s,
}

/// Checks `apiVersion` and `kind` and leaves valid values in `work` so that deserialization
/// can go on and report the rest of the file.
fn check_header(work: &mut Node, report: &mut Report) -> Dialect {
    let text = |node: &Node, key: &str| match node.get(key).map(|n| &n.value) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let api_version = text(work, "apiVersion");
    let dialect = match api_version.as_deref() {
        Some(API_VERSION) => Dialect::K0x,
        Some(K0S_API_VERSION) => Dialect::K0s,
        _ => {
            let (pos, what) = match work.get("apiVersion") {
                Some(node) => (node.pos, "unsupported apiVersion"),
                None => (work.pos, "missing apiVersion"),
            };
            report.error_at(
                pos,
                "apiVersion",
                what,
                format!("use `apiVersion: {API_VERSION}`, or {K0S_API_VERSION} for a k0s file"),
            );
            set(work, "apiVersion", API_VERSION);
            Dialect::K0x
        }
    };
    let kind = text(work, "kind");
    let kind_ok = kind.as_deref() == Some(KIND)
        || (dialect == Dialect::K0s && kind.as_deref() == Some(K0S_OLD_KIND));
    if !kind_ok {
        let (pos, what) = match work.get("kind") {
            Some(node) => (node.pos, "unsupported kind"),
            None => (work.pos, "missing kind"),
        };
        report.error_at(pos, "kind", what, format!("use `kind: {KIND}`"));
    }
    set(work, "kind", KIND);
    dialect
}

fn set(node: &mut Node, key: &str, value: &str) {
    let pos = node.pos;
    let Some(entries) = node.as_map_mut() else {
        return;
    };
    let value = Node {
        value: Value::Str(value.to_owned()),
        pos,
    };
    match entries.iter_mut().find(|entry| entry.key == key) {
        Some(entry) => entry.value = value,
        None => entries.push(tree::Entry {
            key: key.to_owned(),
            key_pos: pos,
            value,
        }),
    }
}

/// Maps whose values are free-form: a null there is a value, not "use the default".
const FREE_FORM_KEYS: &[&str] = &["values", "extraArgs", "timeoutSeconds"];

/// `key:` with nothing after it (null) means "the default", as in Kubernetes manifests.
fn strip_nulls(node: &mut Node, path: &FieldPath) {
    match &mut node.value {
        Value::Map(entries) => {
            entries.retain(|entry| entry.value.value != Value::Null);
            for entry in entries.iter_mut() {
                if !FREE_FORM_KEYS.contains(&entry.key.as_str()) {
                    strip_nulls(&mut entry.value, &path.child(&entry.key));
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                strip_nulls(item, &path.index(i));
            }
        }
        _ => {}
    }
}

/// Deserializes `work` into a [`ClusterConfig`], recording every schema error and dropping the
/// node at fault until deserialization succeeds. `None` when the document cannot be repaired.
fn deserialize_collecting(
    root: &Node,
    work: &mut Node,
    report: &mut Report,
) -> Option<ClusterConfig> {
    let mut dropped: Vec<FieldPath> = Vec::new();
    // Each round drops a node, so the loop ends within the node count.
    for _ in 0..=work.count() {
        let json = work.to_json();
        let err = match serde_path_to_error::deserialize::<_, ClusterConfig>(&json) {
            Ok(config) => return Some(config),
            Err(err) => err,
        };
        let path = to_field_path(err.path());
        let message = err.inner().to_string();
        let fault = classify(&message);
        let (report_path, pos, remove) = match &fault {
            Fault::DuplicateField(field) => {
                // serde names the canonical field; the file wrote it under its alias too.
                let alias = alias_of(field).unwrap_or(field);
                let pos = root
                    .key_pos(&path.child(alias))
                    .unwrap_or_else(|| root.nearest_pos(&path));
                (path.child(alias), pos, path.child(alias))
            }
            Fault::MissingField(field) => {
                let field_path = path.child(field);
                (field_path, root.nearest_pos(&path), path.clone())
            }
            Fault::UnknownField => {
                let pos = root
                    .key_pos(&path)
                    .unwrap_or_else(|| root.nearest_pos(&path));
                (path.clone(), pos, path.clone())
            }
            Fault::Other => (path.clone(), root.nearest_pos(&path), path.clone()),
        };
        // A required field we dropped ourselves was reported already.
        if !dropped.contains(&report_path) {
            let (what, hint) = describe(&message, &fault);
            report.error_at(pos, &report_path.to_string(), what, hint);
        }
        if !work.remove(&remove) {
            // Nothing left to drop (the document itself is at fault); what was found is reported.
            return None;
        }
        dropped.push(remove);
    }
    None
}

fn to_field_path(path: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment as S;
    FieldPath(
        path.iter()
            .filter_map(|segment| match segment {
                S::Map { key } => Some(Segment::Key(key.clone())),
                S::Seq { index } => Some(Segment::Index(*index)),
                S::Enum { .. } | S::Unknown => None,
            })
            .collect(),
    )
}

enum Fault {
    UnknownField,
    MissingField(String),
    /// A field set twice: under its name and under the alias the schema accepts for it.
    DuplicateField(String),
    Other,
}

/// Fields the schema accepts under a second name (k0s's), as (name, alias).
const ALIASES: &[(&str, &str)] = &[("k0xApiPort", "k0sApiPort")];

fn alias_of(field: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, alias)| *alias)
}

fn classify(message: &str) -> Fault {
    let field_in = |rest: &str| rest.trim_end_matches('`').to_owned();
    if message.starts_with("unknown field") {
        Fault::UnknownField
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        Fault::MissingField(field_in(rest))
    } else if let Some(rest) = message.strip_prefix("duplicate field `") {
        Fault::DuplicateField(field_in(rest))
    } else {
        Fault::Other
    }
}

/// Turns serde's message into "what is wrong" and "how to fix it".
fn describe(message: &str, fault: &Fault) -> (String, String) {
    let (what, expected) = match message.split_once(", expected ") {
        Some((what, expected)) => (what.to_owned(), Some(expected)),
        None => (message.to_owned(), None),
    };
    if let Fault::DuplicateField(field) = fault {
        return match alias_of(field) {
            Some(alias) => (
                format!("`{alias}` is another name for `{field}`, and both are set"),
                format!("keep only `{field}`"),
            ),
            None => (format!("`{field}` is set twice"), "keep one".to_owned()),
        };
    }
    let hint = match (fault, expected) {
        (Fault::UnknownField, Some(expected)) => {
            format!("remove it or fix the spelling; expected {expected}")
        }
        (Fault::UnknownField, None) => "remove it: this section takes no fields".to_owned(),
        (Fault::MissingField(field), _) => format!("add `{field}`"),
        (Fault::Other, Some(expected)) => format!("write {}", humanize(expected)),
        (Fault::Other, None) | (Fault::DuplicateField(_), _) => "fix the value".to_owned(),
    };
    (what, hint)
}

fn humanize(expected: &str) -> String {
    match expected {
        // Every u16 of the schema is a port, every u32 a count of seconds or days.
        "u16" => "a port number from 1 to 65535".to_owned(),
        "u32" => "a whole number of seconds or days, such as 120".to_owned(),
        "a string" => "text; quote it if it looks like a number or boolean".to_owned(),
        "a sequence" => "a YAML list".to_owned(),
        "a map" => "a YAML mapping".to_owned(),
        other if other.starts_with("struct ") => "a YAML mapping".to_owned(),
        other => other.to_owned(),
    }
}

struct Report {
    source: String,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Report {
    fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn diagnostic(
        &self,
        severity: Severity,
        pos: Pos,
        path: &str,
        message: String,
        hint: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            source: self.source.clone(),
            line: pos.line,
            column: pos.column,
            path: path.to_owned(),
            message,
            hint,
        }
    }

    fn error_at(
        &mut self,
        pos: Pos,
        path: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let diagnostic = self.diagnostic(Severity::Error, pos, path, message.into(), hint.into());
        self.errors.push(diagnostic);
    }

    fn warning_at(&mut self, pos: Pos, path: &str, message: &str, hint: &str) {
        let diagnostic = self.diagnostic(
            Severity::Warning,
            pos,
            path,
            message.to_owned(),
            hint.to_owned(),
        );
        self.warnings.push(diagnostic);
    }

    fn sorted_warnings(&mut self) -> Vec<Diagnostic> {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.sort_by_key(|d| (d.line, d.column));
        warnings
    }

    fn into_errors(mut self) -> ConfigErrors {
        let warnings = self.sorted_warnings();
        let mut errors = self.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        ConfigErrors { errors, warnings }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_yaml_round_trips() {
        let yaml = ClusterConfig::default().to_yaml();
        let checked = check_yaml(&yaml, "default.yaml").unwrap();
        assert_eq!(checked.config, ClusterConfig::default());
        assert!(checked.warnings.is_empty());
    }

    #[test]
    fn a_partial_file_means_defaults_for_the_rest() {
        let config = ClusterConfig::from_yaml(
            "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  api:\n    port: 7443\n    sans:\n",
            "partial.yaml",
        )
        .unwrap();
        assert_eq!(config.spec.api.port, 7443);
        assert_eq!(config.spec.network, crate::schema::Network::default());
    }

    #[test]
    fn missing_default_file_means_defaults_but_a_named_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.yaml");
        let err = ClusterConfig::load_or_default(&missing).unwrap_err();
        assert!(
            err.to_string().contains("absent.yaml: cannot read"),
            "{err}"
        );
        if !Path::new(DEFAULT_CONFIG_FILE).exists() {
            let config = ClusterConfig::load_or_default(Path::new(DEFAULT_CONFIG_FILE)).unwrap();
            assert_eq!(config, ClusterConfig::default());
        }
    }
}
