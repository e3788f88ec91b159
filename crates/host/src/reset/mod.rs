//! `k0x reset`: removes what k0x created on this host, and nothing else.
//!
//! The order matters: processes first, workloads included (they hold mounts and recreate files),
//! and the emptied cgroups of their containers, then the containers runc still knows (`runc
//! delete --force`: also those whose shim died before), then mounts deepest first, then the
//! kubelet's emptied pod cgroups, then the pod network (bridge, veths, CNI-* rules, and the
//! kubelet's KUBE-* chains) and its CNI state, then the directories (only once no mount is left below them, so a recursive removal
//! can never reach into another filesystem), then installed units and the files
//! `k0x sysinfo --fix` and `k0x install` wrote. Every step is idempotent, so
//! running reset twice is fine, and [`plan`] lists the steps without doing any of them.
//!
//! A stop of k0x keeps the workloads running (see [`k0x_supervisor::workloads`]);
//! [`stop_workloads`] (`k0x stop --workloads`) takes the first steps of a reset, the ones that
//! end workloads (processes, containers, their mounts), and keeps the data and the pod network
//! for the next start.

mod cgroups;
mod containers;
mod mounts;
pub mod network;
pub mod processes;

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k0x_config::{DataDir, RunDir};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use crate::install::token_path;
use crate::sysinfo::fix::{MODULES_LOAD_FILE, SYSCTL_FILE};
use crate::units::{InitSystem, UnitRole};

/// What to reset.
#[derive(Debug, Clone)]
pub struct ResetOptions {
    pub data_dir: DataDir,
    pub run_dir: RunDir,
    /// Filesystem root of the installed units and host files (`/` on a real host).
    pub root: PathBuf,
    /// How long marked processes get between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl ResetOptions {
    pub fn new(data_dir: DataDir, run_dir: RunDir) -> Self {
        Self {
            data_dir,
            run_dir,
            root: PathBuf::from("/"),
            grace: Duration::from_secs(10),
        }
    }
}

/// One thing reset does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    StopProcesses {
        processes: Vec<(i32, String)>,
        /// Cgroups that held only descendants of marked processes (containers), removed once
        /// the processes are gone.
        cgroups: Vec<PathBuf>,
    },
    DeleteContainer {
        runc: PathBuf,
        root: PathBuf,
        id: String,
    },
    Unmount {
        path: PathBuf,
    },
    RemoveCgroup {
        path: PathBuf,
    },
    DeleteLink {
        name: String,
    },
    Iptables {
        program: String,
        args: Vec<String>,
    },
    RemoveDir {
        path: PathBuf,
    },
    RemoveFile {
        path: PathBuf,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::StopProcesses { processes, cgroups } => {
                write!(f, "stop {} k0x process(es):", processes.len())?;
                processes
                    .iter()
                    .try_for_each(|(pid, cmd)| write!(f, " {pid} ({cmd})"))?;
                if !cgroups.is_empty() {
                    write!(f, "; then rmdir their cgroups:")?;
                    cgroups
                        .iter()
                        .try_for_each(|dir| write!(f, " {}", dir.display()))?;
                }
                Ok(())
            }
            Step::DeleteContainer { runc, root, id } => write!(
                f,
                "{} --root {} delete --force {}",
                runc.display(),
                root.display(),
                shell_quote(id)
            ),
            Step::Unmount { path } => write!(f, "umount {}", path.display()),
            Step::RemoveCgroup { path } => {
                write!(f, "rmdir the cgroup {} and those below it", path.display())
            }
            Step::DeleteLink { name } => write!(f, "ip link delete {name}"),
            Step::Iptables { program, args } => {
                let words: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
                write!(f, "{program} {}", words.join(" "))
            }
            Step::RemoveDir { path } if mounts::is_mount_point(path) => {
                write!(f, "rm -r {}/* (a mount point: kept)", path.display())
            }
            Step::RemoveDir { path } => write!(f, "rm -r {}", path.display()),
            Step::RemoveFile { path } => write!(f, "rm {}", path.display()),
        }
    }
}

/// Quotes a word for a shell when it needs it, so a dry-run line can be pasted.
fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,!".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// A step and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub step: Step,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "k0x is running on data dir {} (it holds the lock on {}); stop it first with `k0x stop`, then rerun `k0x reset`",
        data_dir.display(), lock.display()
    )]
    Running { data_dir: PathBuf, lock: PathBuf },
    #[error(
        "the {unit} service is {state}; stop it first with `k0x stop` (systemd would restart k0x in the middle of the reset)"
    )]
    ServiceActive { unit: String, state: String },
    #[error(
        "refusing to remove {}: it does not look like a k0x data or run directory; check --data-dir / --run-dir",
        .0.display()
    )]
    UnsafeDir(PathBuf),
    #[error("cannot check the lock on {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
}

/// Holds the data dir's lock for the duration of a reset, so a k0x cannot start meanwhile.
#[derive(Debug)]
pub struct ResetLock {
    _held: Option<Flock<File>>,
}

/// Fails when a k0x holds the data dir's lock or a k0x service is active; otherwise takes the
/// lock (when the lock file exists) and returns it.
pub fn ensure_not_running(options: &ResetOptions) -> Result<ResetLock, ResetError> {
    check_services(&options.root)?;
    let path = options.data_dir.lock_file();
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(ResetLock { _held: None }),
        Err(source) => return Err(ResetError::Lock { path, source }),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(ResetLock { _held: Some(lock) }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(ResetError::Running {
            data_dir: options.data_dir.root().into(),
            lock: path,
        }),
        Err((_, errno)) => Err(ResetError::Lock {
            path,
            source: errno.into(),
        }),
    }
}

/// With systemd running, an installed unit that is active or restarting would bring k0x back.
fn check_services(root: &Path) -> Result<(), ResetError> {
    if root != Path::new("/") || !k0x_config::systemd::booted() {
        return Ok(());
    }
    for role in UnitRole::ALL {
        if !root.join(InitSystem::Systemd.unit_path(role)).exists() {
            continue;
        }
        let unit = role.service_name();
        let state = Command::new("systemctl")
            .args(["is-active", unit])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if matches!(
            state.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        ) {
            return Err(ResetError::ServiceActive {
                unit: unit.into(),
                state,
            });
        }
    }
    Ok(())
}

/// The steps a reset takes now, in order, without doing any of them.
pub fn plan(options: &ResetOptions) -> Result<Vec<Step>, ResetError> {
    let dirs = k0x_dirs(options)?;
    let mut steps = workload_steps(options, &dirs);
    // The kubelet's pod cgroups and chains: only once this data dir's kubelet ran.
    let kubelet_ran = options.data_dir.kubelet().is_dir();
    if kubelet_ran {
        steps.extend(
            cgroups::kubelet_trees()
                .into_iter()
                .map(|path| Step::RemoveCgroup { path }),
        );
    }

    let networks = network::k0x_networks(&options.data_dir.etc());
    steps.extend(
        network::links_to_delete(&networks, kubelet_ran)
            .into_iter()
            .map(|name| Step::DeleteLink { name }),
    );
    steps.extend(
        network::iptables_changes(&networks, kubelet_ran)
            .into_iter()
            .map(|c| Step::Iptables {
                program: c.program.into(),
                args: c.args,
            }),
    );

    steps.extend(
        network::state_paths(&options.root, &networks)
            .into_iter()
            .map(|path| {
                if path.is_dir() {
                    Step::RemoveDir { path }
                } else {
                    Step::RemoveFile { path }
                }
            }),
    );
    steps.extend(
        dirs.into_iter()
            .filter(|d| has_something_to_remove(d))
            .map(|path| Step::RemoveDir { path }),
    );
    steps.extend(
        host_files(&options.root)
            .into_iter()
            .filter(|f| f.symlink_metadata().is_ok())
            .map(|path| Step::RemoveFile { path }),
    );
    Ok(steps)
}

/// The steps that end the workloads and every other process of k0x: the processes (and the
/// cgroups of the containers among them), the containers runc still knows, then the mounts
/// below the data and run dirs.
fn workload_steps(options: &ResetOptions, dirs: &[PathBuf]) -> Vec<Step> {
    let mut steps = Vec::new();
    let marker_values = marker_paths(options.data_dir.root());
    let marked = processes::find_marked(
        &marker_values
            .iter()
            .map(PathBuf::as_path)
            .collect::<Vec<_>>(),
    );
    if !marked.is_empty() {
        steps.push(Step::StopProcesses {
            cgroups: container_cgroups(&marked),
            processes: marked.into_iter().map(|p| (p.pid, p.command)).collect(),
        });
    }
    let runc = options.data_dir.bin().join("runc");
    steps.extend(
        containers::find(&options.run_dir.runc_root())
            .into_iter()
            .map(|c| Step::DeleteContainer {
                runc: runc.clone(),
                root: c.root,
                id: c.id,
            }),
    );
    steps.extend(
        mounts::mounts_under(dirs)
            .into_iter()
            .map(|path| Step::Unmount { path }),
    );
    steps
}

/// The steps [`stop_workloads`] takes now, without doing any of them.
pub fn plan_stop_workloads(options: &ResetOptions) -> Result<Vec<Step>, ResetError> {
    let dirs = k0x_dirs(options)?;
    Ok(workload_steps(options, &dirs))
}

/// Ends the workloads k0x left running (shims, containers, their mounts) and any other
/// process of k0x, refusing while k0x runs; keeps the data, the configuration and the pod
/// network for the next start. Continues past a failed step and reports each.
pub fn stop_workloads(options: &ResetOptions) -> Result<Vec<Done>, ResetError> {
    let _lock = ensure_not_running(options)?;
    take_all(options, plan_stop_workloads(options)?)
}

/// Takes every step of [`plan`], refusing while k0x runs. Continues past a failed step and
/// reports each; a directory is only removed when no mount is left below it.
pub fn reset(options: &ResetOptions) -> Result<Vec<Done>, ResetError> {
    let _lock = ensure_not_running(options)?;
    take_all(options, plan(options)?)
}

/// Takes `steps` in order, past a failed one, and reports each.
fn take_all(options: &ResetOptions, steps: Vec<Step>) -> Result<Vec<Done>, ResetError> {
    let dirs = k0x_dirs(options)?;
    Ok(steps
        .into_iter()
        .map(|step| {
            let error = take(&step, options, &dirs).err();
            Done { step, error }
        })
        .collect())
}

fn take(step: &Step, options: &ResetOptions, dirs: &[PathBuf]) -> Result<(), String> {
    match step {
        Step::StopProcesses { cgroups, .. } => {
            let marker_values = marker_paths(options.data_dir.root());
            let markers: Vec<&Path> = marker_values.iter().map(PathBuf::as_path).collect();
            let left = processes::stop(&markers, options.grace);
            if !left.is_empty() {
                return Err(format!("still running after SIGKILL: {left:?}"));
            }
            let kept = cgroups::remove(cgroups);
            if kept.is_empty() {
                Ok(())
            } else {
                Err(format!("cgroups left: {kept:?}"))
            }
        }
        Step::DeleteContainer { runc, root, id } => {
            let root = root.display().to_string();
            let args = ["--root", root.as_str(), "delete", "--force", id.as_str()];
            let program = if runc.is_file() {
                runc.display().to_string()
            } else {
                "runc".to_owned()
            };
            run(&program, &args).or_else(|error| {
                // Gone meanwhile (a dying shim's own `runc delete`) is what was asked for.
                let state = Path::new(&root).join(id);
                if state.exists() { Err(error) } else { Ok(()) }
            })
        }
        Step::RemoveCgroup { path } => cgroups::remove_tree(path),
        // Stopping a process may already have unmounted it (a shim tearing down a rootfs).
        Step::Unmount { path } if !mounts::is_mount_point(path) => Ok(()),
        Step::Unmount { path } => mounts::unmount(path).map_err(|e| e.to_string()),
        // A pod veth goes with its network namespace, which the unmounts above ended; the
        // kernel deletes it a moment later, so gone before or during the delete is done.
        Step::DeleteLink { name } => {
            let gone = || !Path::new("/sys/class/net").join(name).exists();
            if gone() {
                return Ok(());
            }
            run("ip", &["link", "delete", name]).or_else(|e| if gone() { Ok(()) } else { Err(e) })
        }
        Step::Iptables { program, args } => run(
            program,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        Step::RemoveDir { path } => {
            // Mounts that appeared after the plan was made (a dying kubelet's last volume).
            for mount in mounts::mounts_under(dirs)
                .iter()
                .filter(|m| m.starts_with(path))
            {
                let _ = mounts::unmount(mount);
            }
            let left = mounts::mounts_under(dirs);
            if let Some(mount) = left.iter().find(|m| m.starts_with(path)) {
                return Err(format!(
                    "{} is still mounted; unmount it and rerun k0x reset",
                    mount.display()
                ));
            }
            remove_dir(path).map_err(|e| e.to_string())
        }
        Step::RemoveFile { path } => ignore_missing(fs::remove_file(path)),
    }
}

/// Removes `dir` with everything in it; when a filesystem is mounted on `dir` itself (a disk
/// given to k0x), only its contents go and the mount stays.
fn remove_dir(dir: &Path) -> io::Result<()> {
    if !mounts::is_mount_point(dir) {
        return ignore_missing_io(fs::remove_dir_all(dir));
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.symlink_metadata()?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// A dir that exists and, when it is a mount point, is not empty yet.
fn has_something_to_remove(dir: &Path) -> bool {
    if mounts::is_mount_point(dir) {
        fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
    } else {
        dir.exists()
    }
}

fn ignore_missing_io(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn ignore_missing(result: io::Result<()>) -> Result<(), String> {
    match result {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err.to_string()),
        _ => Ok(()),
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Cgroups of the found processes that carry no marker (container processes) and that no
/// marked process shares: a container's own cgroup, never the k0x unit's or a login session's.
fn container_cgroups(found: &[processes::MarkedProcess]) -> Vec<PathBuf> {
    let pids = |marked: bool| -> Vec<i32> {
        found
            .iter()
            .filter(|p| p.marked == marked)
            .map(|p| p.pid)
            .collect()
    };
    let shared = cgroups::of_processes(&pids(true));
    cgroups::of_processes(&pids(false))
        .into_iter()
        .filter(|dir| cgroups::is_cgroup_dir(dir) && !shared.contains(dir))
        .collect()
}

/// The values the marker may hold: the data dir as given, absolute, and canonical.
fn marker_paths(data_dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![data_dir.to_path_buf()];
    if let Ok(absolute) = std::path::absolute(data_dir) {
        paths.push(absolute);
    }
    if let Ok(canonical) = fs::canonicalize(data_dir) {
        paths.push(canonical);
    }
    paths.dedup();
    paths
}

/// The data and run dirs as absolute, canonical paths, after making sure neither is a system
/// directory a typo could point at.
fn k0x_dirs(options: &ResetOptions) -> Result<Vec<PathBuf>, ResetError> {
    let data = options.data_dir.root();
    let run = options.run_dir.root();
    [(data, DATA_DIR_ENTRIES), (run, RUN_DIR_ENTRIES)]
        .into_iter()
        .map(|(dir, known)| {
            let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            let canonical = fs::canonicalize(&absolute).unwrap_or(absolute);
            if is_system_dir(&canonical) || !looks_like_k0x(&canonical, known) {
                Err(ResetError::UnsafeDir(canonical))
            } else {
                Ok(canonical)
            }
        })
        .collect()
}

/// Entries k0x creates in its data dir; a non-empty dir holding none of them is not k0x's (a
/// `--data-dir` typo pointing at a home directory must not be wiped).
const DATA_DIR_ENTRIES: &[&str] = &[
    ".lock",
    "bin",
    "pki",
    "etcd",
    "containerd",
    "kubelet",
    "manifests",
    "etc",
];
/// Entries k0x creates in its run dir (besides `<component>.pid` files).
const RUN_DIR_ENTRIES: &[&str] = &["k0x.sock", "status", "containerd", "cni"];

/// True when `dir` is missing, empty, or holds at least one entry k0x creates there.
fn looks_like_k0x(dir: &Path, known: &[&str]) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return true;
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.is_empty()
        || names
            .iter()
            .any(|n| known.contains(&n.as_str()) || n.ends_with(".pid"))
}

/// `/`, a top-level directory, or a well-known system directory.
fn is_system_dir(path: &Path) -> bool {
    let normal = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    const SYSTEM: &[&str] = &[
        "/var/lib",
        "/var/run",
        "/var/log",
        "/usr/bin",
        "/usr/lib",
        "/usr/local",
        "/usr/sbin",
        "/usr/share",
        "/etc/systemd",
        "/run/user",
        "/home",
    ];
    normal < 2 || SYSTEM.iter().any(|s| path == Path::new(s))
}

/// Files outside the data dir that k0x writes: units (and their boot links), the worker token,
/// and what `k0x sysinfo --fix` persisted.
fn host_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for role in UnitRole::ALL {
        for init in [InitSystem::Systemd, InitSystem::OpenRc] {
            files.push(root.join(init.boot_link(role)));
            files.push(root.join(init.unit_path(role)));
        }
    }
    for role in UnitRole::ALL {
        files.push(root.join(token_path(role).trim_start_matches('/')));
    }
    files.push(root.join(MODULES_LOAD_FILE));
    files.push(root.join(SYSCTL_FILE));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_lines_can_be_pasted_into_a_shell() {
        let step = Step::Iptables {
            program: "iptables".into(),
            args: vec![
                "-D".into(),
                "X".into(),
                "--comment".into(),
                "name: \"k0x\"".into(),
            ],
        };
        assert_eq!(step.to_string(), "iptables -D X --comment 'name: \"k0x\"'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn system_dirs_are_refused() {
        for dir in ["/", "/var", "/var/lib", "/home", "/tmp"] {
            assert!(is_system_dir(Path::new(dir)), "{dir}");
        }
        for dir in ["/var/lib/k0x", "/run/k0x", "/tmp/x"] {
            assert!(!is_system_dir(Path::new(dir)), "{dir}");
        }
    }

    #[test]
    fn a_dir_holding_nothing_of_k0x_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        fs::create_dir_all(home.join("photos")).unwrap();
        let options = ResetOptions::new(DataDir::new(&home), RunDir::new(tmp.path().join("run")));
        assert!(matches!(plan(&options), Err(ResetError::UnsafeDir(p)) if p == home));
        fs::create_dir(home.join("pki")).unwrap();
        assert!(plan(&options).is_ok());
        assert!(looks_like_k0x(
            &tmp.path().join("missing"),
            DATA_DIR_ENTRIES
        ));
        fs::create_dir(tmp.path().join("run")).unwrap();
        fs::write(tmp.path().join("run/etcd.pid"), "1").unwrap();
        assert!(looks_like_k0x(&tmp.path().join("run"), RUN_DIR_ENTRIES));
    }

    #[test]
    fn a_typo_pointing_at_a_system_dir_is_refused() {
        let options = ResetOptions::new(DataDir::new("/var/lib"), RunDir::new("/run/k0x"));
        assert!(
            matches!(plan(&options), Err(ResetError::UnsafeDir(p)) if p == Path::new("/var/lib"))
        );
    }
}
