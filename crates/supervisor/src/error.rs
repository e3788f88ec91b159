//! Errors of the supervisor; each says what went wrong and what to do.

use std::path::PathBuf;

/// Why the supervisor could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "component name {0:?} is not usable: use letters, digits, '-', '_' and '.', not starting with '.'"
    )]
    InvalidName(String),
    #[error("component {0} is defined twice; give each component a unique name")]
    DuplicateName(String),
    #[error(
        "component {component} depends on {dependency}, which is not defined; define it or remove the dependency"
    )]
    UnknownDependency {
        component: String,
        dependency: String,
    },
    #[error("components depend on each other in a cycle: {0}; remove one of these dependencies")]
    Cycle(String),
    #[error("component {component} did not start: {reason}")]
    Start { component: String, reason: String },
    #[error("cannot use run directory {path}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot end processes left by a previous k0x: {0}")]
    Orphans(std::io::Error),
}
