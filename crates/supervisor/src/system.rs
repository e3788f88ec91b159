//! The real host: one spawner thread, one reaper task, log forwarding and /proc.
//!
//! PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, not the process. Tokio's
//! blocking threads come and go, so forking from them would SIGKILL children at random. Every
//! child is therefore forked by one dedicated spawner thread that lives as long as the
//! [`SystemHost`]; if k0x dies (even by SIGKILL) the kernel kills every child.
//!
//! The reaper is a single task woken by SIGCHLD. It only waits for pids it was given (never
//! `waitpid(-1)`, which would steal exit statuses from other code in the process) and observes
//! exits with `WNOWAIT`: the zombie keeps the pid and the process group id reserved until the
//! runner has swept the rest of the group, so a signal can never hit a reused id.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::host::{Exited, Launch, MARKER_VAR, ProcessHost, ProcessTable, Spawned, Zombie};
use crate::logs::{self, LogSink};
use crate::probe;
use crate::spec::Probe;
use crate::status::ExitReason;
use crate::tail::OutputTail;

/// Host side effects on the real system.
#[derive(Debug)]
pub struct SystemHost {
    spawner: std_mpsc::Sender<SpawnRequest>,
    reaper: mpsc::UnboundedSender<(Pid, oneshot::Sender<Exited>)>,
    logs: LogSink,
}

struct SpawnRequest {
    launch: Launch,
    reply: oneshot::Sender<io::Result<RawChild>>,
}

impl std::fmt::Debug for SpawnRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnRequest")
            .field("component", &self.launch.component)
            .finish()
    }
}

struct RawChild {
    pid: Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl SystemHost {
    /// Starts the spawner thread, the log thread and the reaper task. Must be called within a
    /// tokio runtime (with IO and signal support enabled).
    pub fn new() -> io::Result<Self> {
        let (spawner, requests) = std_mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("k0x-spawner".into())
            .spawn(move || {
                for request in requests {
                    // Nobody waits for this child any more (k0x is shutting down): end it
                    // rather than leave it unsupervised.
                    if let Err(Ok(child)) = request.reply.send(spawn_child(&request.launch)) {
                        let _ = killpg(child.pid, Signal::SIGKILL);
                        let _ = nix::sys::wait::waitpid(child.pid, None);
                    }
                }
            })?;
        let sigchld = signal(SignalKind::child())?;
        let (reaper, registrations) = mpsc::unbounded_channel();
        tokio::spawn(reap(sigchld, registrations));
        Ok(Self {
            spawner,
            reaper,
            logs: LogSink::start_thread(logs::QUEUE_LINES)?,
        })
    }
}

/// Forks and execs one child; runs on the spawner thread only.
fn spawn_child(launch: &Launch) -> io::Result<RawChild> {
    let parent = std::process::id();
    let mut command = Command::new(&launch.path);
    command
        .args(&launch.args)
        .envs(&launch.env)
        .env_remove("NOTIFY_SOCKET")
        .env(MARKER_VAR, &launch.marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &launch.dir {
        command.current_dir(dir);
    }
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid) without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // k0x died between fork and prctl: the signal was never armed, so do not run.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("stdout and stderr were configured as pipes");
    };
    Ok(RawChild {
        pid: Pid::from_raw(child.id() as i32),
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

/// The reaper: learns pids to watch, and on every SIGCHLD checks each of them.
async fn reap(
    mut sigchld: tokio::signal::unix::Signal,
    mut registrations: mpsc::UnboundedReceiver<(Pid, oneshot::Sender<Exited>)>,
) {
    let mut watched: HashMap<Pid, oneshot::Sender<Exited>> = HashMap::new();
    let mut open = true;
    while open || !watched.is_empty() {
        tokio::select! {
            registration = registrations.recv(), if open => match registration {
                // A child that exited before it was registered is caught by this check.
                Some((pid, notify)) => {
                    watched.insert(pid, notify);
                    deliver_exits(&mut watched);
                }
                None => open = false,
            },
            _ = sigchld.recv() => deliver_exits(&mut watched),
        }
    }
}

fn deliver_exits(watched: &mut HashMap<Pid, oneshot::Sender<Exited>>) {
    let exited: Vec<(Pid, ExitReason)> = watched
        .keys()
        .filter_map(|pid| exit_of(*pid).map(|reason| (*pid, reason)))
        .collect();
    for (pid, reason) in exited {
        if let Some(notify) = watched.remove(&pid) {
            // Nobody listening any more: dropping the returned value reaps the zombie.
            let _ = notify.send(Exited {
                reason,
                zombie: Some(Zombie(pid)),
            });
        }
    }
}

/// The exit of `pid` if it has exited, leaving it unreaped.
fn exit_of(pid: Pid) -> Option<ExitReason> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), flags) {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitReason::Code(code)),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(ExitReason::Signal(signal as i32)),
        // ECHILD: already reaped elsewhere; report it rather than wait forever.
        Err(Errno::ECHILD) => Some(ExitReason::Code(-1)),
        _ => None,
    }
}

impl ProcessHost for SystemHost {
    async fn spawn(&self, launch: Launch) -> io::Result<Spawned> {
        let component: Arc<str> = launch.component.as_str().into();
        let (reply, child) = oneshot::channel();
        self.spawner
            .send(SpawnRequest { launch, reply })
            .map_err(|_| io::Error::other("the spawner thread has ended"))?;
        let child = child
            .await
            .map_err(|_| io::Error::other("the spawner thread has ended"))??;
        // The child exists from here on: if it cannot be supervised it is killed, not leaked.
        let (notify, exited) = oneshot::channel();
        if self.reaper.send((child.pid, notify)).is_err() {
            let _ = killpg(child.pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child.pid, None);
            return Err(io::Error::other("the reaper has ended"));
        }
        let pipes = pipe::Receiver::from_owned_fd(child.stdout)
            .and_then(|stdout| Ok((stdout, pipe::Receiver::from_owned_fd(child.stderr)?)));
        let (stdout, stderr) = match pipes {
            Ok(pipes) => pipes,
            Err(error) => {
                // The reaper reaps it: nobody listens on `exited` any more.
                let _ = killpg(child.pid, Signal::SIGKILL);
                return Err(error);
            }
        };
        let output = OutputTail::new(2);
        for (pipe, stream) in [(stdout, "stdout"), (stderr, "stderr")] {
            tokio::spawn(logs::forward(
                pipe,
                component.clone(),
                stream,
                self.logs.clone(),
                output.clone(),
            ));
        }
        Ok(Spawned {
            pid: child.pid,
            exited,
            output,
        })
    }

    fn signal_group(&self, pgid: Pid, signal: Signal) -> io::Result<()> {
        match killpg(pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    async fn probe(&self, probe: &Probe, attempt_timeout: Duration) -> Result<(), String> {
        probe::check(probe, attempt_timeout).await
    }
}

impl ProcessTable for SystemHost {
    fn pids(&self) -> io::Result<Vec<Pid>> {
        ProcFs.pids()
    }

    fn carries_marker(&self, pid: Pid, marker: &[u8]) -> bool {
        ProcFs.carries_marker(pid, marker)
    }

    fn signal_if_marked(&self, pid: Pid, marker: &[u8], signal: Signal) -> io::Result<bool> {
        ProcFs.signal_if_marked(pid, marker, signal)
    }

    fn children(&self, pid: Pid) -> Vec<Pid> {
        ProcFs.children(pid)
    }

    fn signal_if_child_of(&self, pid: Pid, parent: Pid, signal: Signal) -> io::Result<bool> {
        ProcFs.signal_if_child_of(pid, parent, signal)
    }

    fn executable(&self, pid: Pid) -> Option<std::path::PathBuf> {
        ProcFs.executable(pid)
    }
}

/// The process table as /proc shows it; signals go through pidfds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcFs;

impl ProcessTable for ProcFs {
    fn pids(&self) -> io::Result<Vec<Pid>> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let name = entry?.file_name();
            if let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) {
                pids.push(Pid::from_raw(pid));
            }
        }
        Ok(pids)
    }

    /// A marker names a data dir by its path, which means something only inside one mount
    /// namespace: a process of another (a second host on the machine, with its own
    /// `/var/lib/k0x`) is never ours.
    fn carries_marker(&self, pid: Pid, marker: &[u8]) -> bool {
        let mut environ = Vec::new();
        let read = std::fs::File::open(format!("/proc/{pid}/environ"))
            .and_then(|mut file| file.read_to_end(&mut environ));
        read.is_ok()
            && environ.split(|b| *b == 0).any(|entry| entry == marker)
            && same_mount_namespace(pid)
    }

    fn signal_if_marked(&self, pid: Pid, marker: &[u8], signal: Signal) -> io::Result<bool> {
        signal_pinned(pid, signal, || self.carries_marker(pid, marker))
    }

    fn children(&self, pid: Pid) -> Vec<Pid> {
        self.pids()
            .unwrap_or_default()
            .into_iter()
            .filter(|child| parent_of(*child) == Some(pid))
            .collect()
    }

    fn signal_if_child_of(&self, pid: Pid, parent: Pid, signal: Signal) -> io::Result<bool> {
        signal_pinned(pid, signal, || parent_of(pid) == Some(parent))
    }

    fn executable(&self, pid: Pid) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/{pid}/exe")).ok()
    }
}

fn same_mount_namespace(pid: Pid) -> bool {
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    namespace(&pid.to_string()).is_some_and(|theirs| namespace("self") == Some(theirs))
}

/// The parent pid of a live process from /proc/PID/stat (state and ppid follow the command
/// name, which is in parentheses and may contain anything); `None` for a zombie, which has
/// exited and only waits to be reaped.
fn parent_of(pid: Pid) -> Option<Pid> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    (state != "Z" && state != "X").then(|| Pid::from_raw(ppid))
}

/// Sends `signal` to `pid` if `still_ours` holds while a pidfd pins the process: if it is still
/// alive after the check, the check was of that very process, not of a reused pid.
fn signal_pinned(pid: Pid, signal: Signal, still_ours: impl Fn() -> bool) -> io::Result<bool> {
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
        Err(error) => return Err(error),
    };
    if !still_ours() || has_exited(&pidfd)? {
        return Ok(false);
    }
    // SAFETY: plain syscall on a pidfd we own; null siginfo means "as kill(2) would".
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match sent {
        0 => Ok(true),
        _ if Errno::last() == Errno::ESRCH => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new file descriptor that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pidfd polls readable once its process has exited.
fn has_exited(pidfd: &OwnedFd) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready > 0)
}
