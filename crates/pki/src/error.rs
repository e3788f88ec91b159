//! One error type whose every message is a single line: what went wrong, which file or input,
//! and what to do about it.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = PkiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("cannot {op} {}: {source}{}", path.display(), io_hint(op, source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Material on disk is unusable (corrupt, mismatched, missing its CA).
    #[error("{}: {problem}; {fix}", path.display())]
    Material {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    /// An input (user name, group, CIDR, duration, CSR...) is invalid.
    #[error("{0}")]
    Input(String),
    /// Key generation or signing failed inside the crypto libraries.
    #[error("{what}: {detail}")]
    Crypto { what: String, detail: String },
}

impl PkiError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn material(
        path: &Path,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::Material {
            path: path.to_owned(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn crypto(what: impl Into<String>, detail: &dyn std::fmt::Display) -> Self {
        Self::Crypto {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// The `op` of a directory the PKI needs (the data dir, `pki/`, `pki/etcd/`).
pub(crate) const CREATE_DIR: &str = "create the directory";

fn io_hint(op: &str, err: &io::Error) -> &'static str {
    match (op, err.kind()) {
        (_, io::ErrorKind::PermissionDenied) => " (the PKI is readable by root only: run as root)",
        (CREATE_DIR, io::ErrorKind::AlreadyExists) | (_, io::ErrorKind::NotADirectory) => {
            " (a file stands where a directory belongs: check --data-dir)"
        }
        _ => "",
    }
}
