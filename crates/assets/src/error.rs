//! Errors a user can meet while k0x finds, checks or unpacks its components.
//!
//! Each renders as one line naming what went wrong, where, and what to do about it, and every
//! failure path of extraction leaves the previous `bin/` untouched.

use std::io;
use std::path::PathBuf;

/// The hint given wherever a payload is missing.
pub const NO_PAYLOAD_HINT: &str = "rebuild with scripts/build.sh or set K0X_PAYLOAD=FILE";

#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    #[error("{exe} {why}; {NO_PAYLOAD_HINT}", exe = exe.display(), why = no_payload_reason())]
    NoPayload { exe: PathBuf },

    #[error(
        "payload {path} is unusable: {what}; {NO_PAYLOAD_HINT} (bin/ was left as it was)",
        path = path.display()
    )]
    Corrupt { path: PathBuf, what: String },

    #[error(
        "{dir} is on a noexec mount ({mount}): extracted components could not run there; remount it with exec or pick another --data-dir",
        dir = dir.display()
    )]
    NoExec { dir: PathBuf, mount: String },

    #[error(
        "no space left on the device of {dir} while extracting components (about {needed_mib} MiB needed); free space or pick another --data-dir (bin/ was left as it was)",
        dir = dir.display()
    )]
    NoSpace { dir: PathBuf, needed_mib: u64 },

    #[error(
        "only {free_mib} MiB are free on the device of {dir}, and the components need about {needed_mib} MiB; free space or pick another --data-dir (nothing was extracted)",
        dir = dir.display()
    )]
    TooLittleSpace {
        dir: PathBuf,
        free_mib: u64,
        needed_mib: u64,
    },

    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AssetsError {
    /// Wraps an I/O error with what was being done to which path. A full disk stays an I/O
    /// error here: the writers that know how much room they needed report
    /// [`AssetsError::NoSpace`] themselves.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The running binary carries no payload.
    pub fn no_payload() -> Self {
        Self::NoPayload {
            exe: crate::payload::own_executable(),
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.into(),
            what: what.into(),
        }
    }
}

/// Set by scripts/build.sh when it compiles the binary it then attaches a payload to, so a copy
/// that lost the payload afterwards (strip, objcopy, re-link) can say exactly that.
const BUILT_FOR_A_PAYLOAD: bool = option_env!("K0X_EXPECT_PAYLOAD").is_some();

fn no_payload_reason() -> &'static str {
    if BUILT_FOR_A_PAYLOAD {
        "was built to carry a payload but has lost it (stripped or re-linked after scripts/build.sh)"
    } else {
        "carries no payload (stripped or built without one)"
    }
}

/// True when an I/O error means the disk is full (or the quota is exhausted).
pub(crate) fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

pub type Result<T, E = AssetsError> = std::result::Result<T, E>;
