//! Configuration problems as one-line messages a person can act on.
//!
//! Every problem renders as `FILE:LINE:COL: FIELD.PATH: what is wrong (how to fix it)`, the shape
//! compilers use, so editors and terminals can jump to the spot.

use std::fmt;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file is usable, but part of it is ignored (k0s settings k0x does not implement).
    Warning,
}

/// One problem in a configuration file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file name as given by the user (`-` is shown as `<stdin>`).
    pub source: String,
    /// 1-based line; 0 when the problem is about the file as a whole (it cannot be read).
    pub line: u64,
    /// 1-based column; 0 together with `line`.
    pub column: u64,
    /// Field path such as `spec.network.podCIDR`; empty when the problem has no field.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{} ({})", self.message, self.hint)
    }
}

/// Every error found in a configuration (never just the first), plus the warnings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// Sorted by line and column.
    pub errors: Vec<Diagnostic>,
    /// Ignored k0s settings, also sorted; reported even when there are errors.
    pub warnings: Vec<Diagnostic>,
}

impl ConfigErrors {
    /// A single error that concerns the file as a whole (unreadable, not found).
    pub fn file(source: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            errors: vec![Diagnostic {
                severity: Severity::Error,
                source: source.to_owned(),
                line: 0,
                column: 0,
                path: String::new(),
                message: message.into(),
                hint: hint.into(),
            }],
            warnings: Vec::new(),
        }
    }
}

/// One error per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostic(severity: Severity, line: u64) -> Diagnostic {
        Diagnostic {
            severity,
            source: "k0x.yaml".into(),
            line,
            column: line * 2,
            path: if line > 0 {
                "spec.api.port".into()
            } else {
                String::new()
            },
            message: "port 0 is not usable".into(),
            hint: "use 1-65535".into(),
        }
    }

    #[test]
    fn renders_file_line_column_path_message_hint() {
        assert_eq!(
            diagnostic(Severity::Error, 3).to_string(),
            "k0x.yaml:3:6: spec.api.port: port 0 is not usable (use 1-65535)"
        );
        assert_eq!(
            diagnostic(Severity::Warning, 3).to_string(),
            "k0x.yaml:3:6: spec.api.port: warning: port 0 is not usable (use 1-65535)"
        );
        assert_eq!(
            diagnostic(Severity::Error, 0).to_string(),
            "k0x.yaml: port 0 is not usable (use 1-65535)"
        );
    }

    #[test]
    fn errors_render_one_per_line() {
        let errors = ConfigErrors {
            errors: vec![
                diagnostic(Severity::Error, 1),
                diagnostic(Severity::Error, 2),
            ],
            warnings: vec![diagnostic(Severity::Warning, 3)],
        };
        assert_eq!(errors.to_string().lines().count(), 2);
    }
}
