//! Errors a user can cause or fix: each message names what went wrong, where, and what to do.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("--disable-components: unknown component {name:?}; use one of: {known}")]
    UnknownComponent { name: String, known: String },

    #[error("{field}: {value:?} is not a valid {expected}; {hint}")]
    InvalidConfig {
        field: String,
        value: String,
        expected: &'static str,
        hint: &'static str,
    },

    #[error(
        "{field}.{flag}: the flag was removed from {component} ({note}); delete it from the config"
    )]
    RemovedFlag {
        field: &'static str,
        flag: String,
        component: &'static str,
        note: String,
    },

    #[error(
        "worker profile {name:?} is not defined in spec.workerProfiles of the configuration; define it there{}",
        if known.is_empty() { String::new() } else { format!(" or pick one of: {known}") }
    )]
    UnknownWorkerProfile { name: String, known: String },

    #[error("spec.workerProfiles[{profile}].values.{key}: {reason}")]
    InvalidProfileValue {
        profile: String,
        key: String,
        reason: &'static str,
    },

    #[error("{}: {reason}; fix the file or remove it (containerd drop-ins use config version 3)", path.display())]
    DropIn { path: PathBuf, reason: String },

    #[error(
        "image {reference}: {reason}; check that the bin dir holds pause and ctr and that containerd runs"
    )]
    Image { reference: String, reason: String },

    #[error("cannot detect {what}: {reason}; {hint}")]
    HostDetection {
        what: &'static str,
        reason: String,
        hint: &'static str,
    },

    #[error("cannot read {}: {reason}; k0x writes it with the PKI at start: check the data dir's pki/", path.display())]
    ReadPki { path: PathBuf, reason: String },

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Lease(#[from] crate::cni::LeaseError),

    #[error("cannot write {}: {source}; check that the directory is writable and the disk not full", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl NodeError {
    /// An I/O failure while reading `path`.
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Read { path, source }
    }

    /// An I/O failure while creating or writing `path`.
    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Write { path, source }
    }
}
