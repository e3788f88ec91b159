//! Turning a stack's files into the objects to apply.
//!
//! A stack parses whole or not at all: one file that does not parse makes the stack unreadable,
//! because applying the readable rest and then pruning would delete whatever the broken file
//! holds. The error names the file, the line and column where the parser gives them, and what
//! to fix, in one line.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::scan::{ManifestFile, StackFiles};

/// One object from a manifest file, and where it came from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub file: PathBuf,
    /// The 1-based document of the file the object is in.
    pub document: usize,
    pub object: Value,
}

/// Why a stack cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    pub path: PathBuf,
    /// Line and column (1-based) when the parser knows them.
    pub position: Option<(u64, u64)>,
    pub problem: String,
    pub hint: String,
}

impl fmt::Display for BadFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {} ({})", self.problem, self.hint)
    }
}

/// Every object of the stack, file by file in name order, `kind: List` items expanded.
pub fn parse_stack(stack: &StackFiles) -> Result<Vec<Manifest>, BadFile> {
    check_stack_name(stack)?;
    let files = stack.files.as_ref().map_err(|why| BadFile {
        path: stack.dir.clone(),
        position: None,
        problem: why.clone(),
        hint: "make the directory readable by root".to_owned(),
    })?;
    let mut manifests = Vec::new();
    for file in files {
        manifests.extend(parse_file(file)?);
    }
    Ok(manifests)
}

/// The stack name goes into a label value and a ConfigMap name: a lower-case DNS label.
fn check_stack_name(stack: &StackFiles) -> Result<(), BadFile> {
    let name = &stack.name;
    if k0x_config::is_dns_label(name) && !name.chars().any(|c| c.is_ascii_uppercase()) {
        return Ok(());
    }
    Err(BadFile {
        path: stack.dir.clone(),
        position: None,
        problem: format!("the stack name {name:?} is not a lower-case DNS label"),
        hint: "rename the directory to at most 63 of a-z, 0-9 and '-', starting and ending with \
               a letter or digit"
            .to_owned(),
    })
}

fn parse_file(file: &ManifestFile) -> Result<Vec<Manifest>, BadFile> {
    let bad = |position, problem: String, hint: &str| BadFile {
        path: file.path.clone(),
        position,
        problem,
        hint: hint.to_owned(),
    };
    let text = file
        .text
        .as_ref()
        .map_err(|why| bad(None, why.clone(), "save the file as UTF-8 YAML or JSON"))?;
    let documents = if file.path.extension().is_some_and(|ext| ext == "json") {
        parse_json(text).map_err(|(position, problem)| {
            bad(position, problem, "fix the JSON syntax at this position")
        })?
    } else {
        parse_yaml(text).map_err(|(position, problem)| {
            bad(position, problem, "fix the YAML syntax at this position")
        })?
    };
    let mut manifests = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        let document_number = index + 1;
        for object in expand_lists(document) {
            check_object(&object).map_err(|problem| {
                bad(
                    None,
                    format!("document {document_number}: {problem}"),
                    "every object needs apiVersion, kind and metadata.name",
                )
            })?;
            manifests.push(Manifest {
                file: file.path.clone(),
                document: document_number,
                object,
            });
        }
    }
    Ok(manifests)
}

type SyntaxError = (Option<(u64, u64)>, String);

/// The documents of a YAML stream (`---` separated); empty documents are skipped.
fn parse_yaml(text: &str) -> Result<Vec<Value>, SyntaxError> {
    serde_saphyr::from_multiple::<Value>(text).map_err(|err| {
        let position = err.location().map(|at| (at.line(), at.column()));
        let message = err.without_snippet().to_string();
        (position, format!("invalid YAML: {}", headline(&message)))
    })
}

/// A JSON file holds one document.
fn parse_json(text: &str) -> Result<Vec<Value>, SyntaxError> {
    serde_json::from_str::<Value>(text)
        .map(|value| vec![value])
        .map_err(|err| {
            let position = Some((err.line() as u64, err.column() as u64));
            let message = err.to_string();
            (position, format!("invalid JSON: {}", headline(&message)))
        })
}

/// Parser messages may end with their own position or a source excerpt; the line gives both.
fn headline(message: &str) -> &str {
    let line = message.lines().next().unwrap_or(message).trim();
    match line.rfind(" at line ") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The objects of one document: a `kind: List` is its items (nested lists too), anything else is
/// itself. A null document (`---` with nothing after it) holds nothing.
fn expand_lists(document: Value) -> Vec<Value> {
    match document {
        Value::Null => Vec::new(),
        Value::Object(mut map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
            match map.remove("items") {
                Some(Value::Array(items)) => items.into_iter().flat_map(expand_lists).collect(),
                Some(Value::Null) | None => Vec::new(),
                Some(other) => vec![other],
            }
        }
        other => vec![other],
    }
}

/// What an object needs before it can be applied: a mapping with apiVersion, kind, metadata.name.
fn check_object(object: &Value) -> Result<(), String> {
    if !object.is_object() {
        return Err(format!(
            "expected a mapping (an object), found {}",
            shape(object)
        ));
    }
    for field in ["apiVersion", "kind"] {
        match object.get(field) {
            Some(Value::String(text)) if !text.is_empty() => {}
            _ => return Err(format!("{field} is missing or not a string")),
        }
    }
    match object.pointer("/metadata/name") {
        Some(Value::String(name)) if !name.is_empty() => Ok(()),
        _ => Err("metadata.name is missing or not a string".to_owned()),
    }
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stack(files: &[(&str, &str)]) -> StackFiles {
        StackFiles {
            name: "app".to_owned(),
            dir: PathBuf::from("manifests/app"),
            files: Ok(files
                .iter()
                .map(|(name, text)| ManifestFile {
                    path: PathBuf::from("manifests/app").join(name),
                    text: Ok((*text).to_owned()),
                })
                .collect()),
            hash: 0,
        }
    }

    fn names(manifests: &[Manifest]) -> Vec<&str> {
        manifests
            .iter()
            .map(|m| m.object["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n---\n\
                    # only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n---\n";
        let manifests = parse_stack(&stack(&[("a.yaml", yaml)])).unwrap();
        assert_eq!(names(&manifests), ["one", "two"]);
        assert_eq!(manifests[1].document, 2);
    }

    #[test]
    fn lists_are_expanded_in_yaml_and_json() {
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, \
                    metadata: {name: one}}\n- {apiVersion: v1, kind: List, items: [{apiVersion: v1, \
                    kind: Secret, metadata: {name: two}}]}\n";
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Secret","metadata":{"name":"three"}}]}"#;
        let manifests = parse_stack(&stack(&[("a.yaml", yaml), ("b.json", json)])).unwrap();
        assert_eq!(names(&manifests), ["one", "two", "three"]);
    }

    #[test]
    fn bad_yaml_names_file_line_and_column() {
        let good = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n";
        let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n";
        let err = parse_stack(&stack(&[("a.yaml", good), ("b.yaml", bad)])).unwrap_err();
        assert_eq!(err.path, Path::new("manifests/app/b.yaml"));
        assert!(err.position.is_some(), "{err}");
        let line = err.to_string();
        assert!(line.starts_with("manifests/app/b.yaml:"), "{line}");
        assert!(
            line.contains("invalid YAML") && line.contains("fix the YAML"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
    }

    #[test]
    fn bad_json_names_its_position() {
        let err =
            parse_stack(&stack(&[("a.json", "{\"apiVersion\": \"v1\",\n  oops}")])).unwrap_err();
        assert_eq!(err.position, Some((2, 3)), "{err}");
        assert!(err.problem.starts_with("invalid JSON"), "{err}");
    }

    #[test]
    fn an_object_without_a_name_is_a_bad_file() {
        let err =
            parse_stack(&stack(&[("a.yaml", "apiVersion: v1\nkind: ConfigMap\n")])).unwrap_err();
        assert!(err.problem.contains("document 1: metadata.name"), "{err}");
        let err = parse_stack(&stack(&[("a.yaml", "- just\n- a list\n")])).unwrap_err();
        assert!(err.problem.contains("expected a mapping"), "{err}");
    }

    #[test]
    fn stack_names_must_be_dns_labels() {
        let mut bad = stack(&[]);
        bad.name = "My_Stack".to_owned();
        let err = parse_stack(&bad).unwrap_err();
        assert!(err.problem.contains("My_Stack"), "{err}");
        assert!(parse_stack(&stack(&[])).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_file_is_a_bad_file() {
        let mut unreadable = stack(&[]);
        unreadable.files = Ok(vec![ManifestFile {
            path: PathBuf::from("manifests/app/bin.yaml"),
            text: Err("is not UTF-8 text".to_owned()),
        }]);
        let err = parse_stack(&unreadable).unwrap_err();
        assert!(err.to_string().contains("bin.yaml: is not UTF-8"), "{err}");
    }
}
