//! The exclusive lock a running k0x holds on its data dir.
//!
//! Two k0x processes on one data dir would fight over etcd's data and each other's children. The
//! lock is an flock on `<data dir>/.lock`, released by the kernel when the holder dies, however
//! it dies, so a stale lock never needs cleaning up. The file records the holder's pid for the
//! error message. Its descriptor is close-on-exec, so children never inherit the lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use k0x_config::DataDir;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held for the life of a k0x process that runs components on a data dir.
#[derive(Debug)]
pub struct DataDirLock {
    data: DataDir,
    _lock: Flock<File>,
}

/// Why the data dir lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another k0x{} is running with data dir {}; stop it first", holder(.pid), .data_dir.display())]
    Held { pid: Option<u32>, data_dir: PathBuf },
    #[error("cannot lock data dir {}: {source}", .data_dir.display())]
    Io {
        data_dir: PathBuf,
        source: std::io::Error,
    },
}

fn holder(pid: &Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

impl DataDirLock {
    /// Creates the data dir if needed (mode 0700) and locks it, or says who holds the lock.
    pub fn acquire(data: &DataDir) -> Result<Self, LockError> {
        let io_error = |source| LockError::Io {
            data_dir: data.root().to_path_buf(),
            source,
        };
        data.create().map_err(io_error)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(data.lock_file())
            .map_err(io_error)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                record_pid(&mut lock).map_err(io_error)?;
                Ok(Self {
                    data: data.clone(),
                    _lock: lock,
                })
            }
            Err((mut file, Errno::EWOULDBLOCK)) => Err(LockError::Held {
                pid: recorded_pid(&mut file),
                data_dir: data.root().to_path_buf(),
            }),
            Err((_, errno)) => Err(io_error(errno.into())),
        }
    }
}

impl DataDirLock {
    /// The data dir this lock is held on.
    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }
}

fn record_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()
}

fn recorded_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_who_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        let first = DataDirLock::acquire(&data).unwrap();
        let second = DataDirLock::acquire(&data).unwrap_err();
        assert_eq!(
            second.to_string(),
            format!(
                "another k0x (pid {}) is running with data dir {}; stop it first",
                std::process::id(),
                data.root().display()
            )
        );
        drop(first);
        DataDirLock::acquire(&data).expect("the lock is free once its holder is gone");
    }
}
