//! The pause process: the first process of every pod sandbox, holding the pod's namespaces open
//! while the pod's containers come and go.
//!
//! No registry is reachable, so k0x cannot pull upstream's pause image; it builds its own from
//! this program. It behaves like upstream's `build/pause/linux/pause.c`: `-v` prints a version,
//! SIGINT and SIGTERM end it with status 0 (as PID 1 of a PID namespace it would otherwise ignore
//! them, and a pod stop would wait for SIGKILL), SIGCHLD reaps zombies (in a shared PID namespace
//! orphans are re-parented to it), and otherwise it sleeps in `pause()`. One difference: it reaps
//! once after installing its handlers, so a child that exited before then is not left a zombie.
//!
//! It must run in an image with no other files, so it is built static; see `scripts/build-pause.sh`.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use nix::libc::c_int;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, pause};

/// Upstream's pause version this program matches, marked as k0x's build; also the image tag.
const VERSION: &str = "3.10-k0x";

fn main() -> ExitCode {
    if wants_version(std::env::args_os().skip(1)) {
        let _ = writeln!(std::io::stdout(), "pause {VERSION}");
        return ExitCode::SUCCESS;
    }
    if let Err(code) = install_handlers() {
        let _ = writeln!(std::io::stderr(), "pause: cannot install signal handlers");
        return ExitCode::from(code);
    }
    if getpid().as_raw() != 1 {
        // Not an error: pause is also used outside of pod sandboxes.
        let _ = writeln!(
            std::io::stderr(),
            "Warning: pause should be the first process"
        );
    }
    reap_children();
    loop {
        pause();
    }
}

/// True when any argument is `-v` (in any case), as upstream checks.
fn wants_version(mut args: impl Iterator<Item = OsString>) -> bool {
    args.any(|arg| arg.eq_ignore_ascii_case("-v"))
}

/// Installs the handlers; on failure, the exit status upstream uses for that signal.
fn install_handlers() -> Result<(), u8> {
    let handlers: [(Signal, extern "C" fn(c_int), SaFlags, u8); 3] = [
        (Signal::SIGINT, on_shutdown, SaFlags::empty(), 1),
        (Signal::SIGTERM, on_shutdown, SaFlags::empty(), 2),
        (Signal::SIGCHLD, on_child, SaFlags::SA_NOCLDSTOP, 3),
    ];
    for (signal, handler, flags, code) in handlers {
        let action = SigAction::new(SigHandler::Handler(handler), flags, SigSet::empty());
        // SAFETY: both handlers call only async-signal-safe functions (write, _exit, waitpid).
        unsafe { sigaction(signal, &action) }.map_err(|_| code)?;
    }
    Ok(())
}

extern "C" fn on_shutdown(signal: c_int) {
    let message: &[u8] = if signal == Signal::SIGINT as c_int {
        b"Shutting down, got signal: Interrupt\n"
    } else {
        b"Shutting down, got signal: Terminated\n"
    };
    let _ = nix::unistd::write(std::io::stderr(), message);
    exit_now(0);
}

extern "C" fn on_child(_signal: c_int) {
    reap_children();
}

/// Ends the process at once, without running exit handlers: what a signal handler may do.
fn exit_now(status: c_int) -> ! {
    // SAFETY: _exit is async-signal-safe and touches no Rust state.
    unsafe { nix::libc::_exit(status) }
}

/// Reaps every child that has exited, without blocking.
fn reap_children() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use nix::unistd::{ForkResult, fork};

    #[test]
    fn version_flag_is_found_anywhere_in_any_case() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_version(args(&["-v"]).into_iter()));
        assert!(wants_version(args(&["x", "-V"]).into_iter()));
        assert!(!wants_version(args(&["--version", "v"]).into_iter()));
    }

    #[test]
    fn reaps_a_child_that_exited() {
        // SAFETY: the child calls only _exit, which is async-signal-safe, so forking from the
        // multi-threaded test harness is sound.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => exit_now(0),
            ForkResult::Parent { child } => child,
        };
        let stat = format!("/proc/{child}/stat");
        let zombie = || std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z "));
        for _ in 0..1000 {
            if zombie() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(zombie(), "the child never became a zombie");
        reap_children();
        assert_eq!(
            waitpid(child, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        );
    }
}
