//! The pause binary as a real process: its version, exit status 0 on SIGTERM and SIGINT (after the
//! not-PID-1 warning), reaping of children that exit before and after it starts, and the static
//! build the image needs (no dynamic loader). Every process a test starts is killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const PAUSE: &str = env!("CARGO_BIN_EXE_pause");
const WARNING: &str = "Warning: pause should be the first process";
/// Bounds a hung wait; nothing asserts on how long anything took.
const LIMIT: Duration = Duration::from_secs(20);

/// A started pause (or a shell that execs it) in its own process group, killed with the group on
/// drop. Its first stderr line has been read: pause writes it after installing its handlers.
struct Running {
    child: Child,
    stderr: BufReader<ChildStderr>,
    first_line: String,
}

impl Running {
    fn start(command: &mut Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn pause");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first_line = String::new();
        stderr.read_line(&mut first_line).unwrap();
        Self {
            child,
            stderr,
            first_line,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The exit status, or `None` when it is still running after `limit`.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(-self.pid().as_raw()), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// True when `pid` is no child of `parent` any more (exited and reaped, or never was).
fn not_a_child_of(pid: u32, parent: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Fields after the parenthesised command name: state, ppid, ...
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(1) != Some(parent.to_string().as_str())
}

fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn version_flag_prints_the_version_and_exits_zero() {
    for args in [&["-v"][..], &["-V"], &["other", "-v"]] {
        let out = Command::new(PAUSE).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "pause 3.10-k0x\n");
    }
}

#[test]
fn sigterm_and_sigint_end_it_with_status_zero() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut pause = Running::start(&mut Command::new(PAUSE));
        assert_eq!(pause.first_line.trim_end(), WARNING);
        assert!(
            pause.wait_for_exit(Duration::from_millis(200)).is_none(),
            "pause ended by itself"
        );
        kill(pause.pid(), signal).unwrap();
        let status = pause.wait_for_exit(LIMIT);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{signal}: {status:?}"
        );
        let mut rest = String::new();
        pause.stderr.read_to_string(&mut rest).unwrap();
        assert!(rest.starts_with("Shutting down, got signal: "), "{rest}");
    }
}

#[test]
fn reaps_children_that_exited_before_and_after_it_started() {
    // The shell's children become pause's when it execs pause: one exits at once, one runs
    // until the test kills it.
    let script = r#"true & early=$!; sleep 30 & late=$!; echo "$early $late"; exec "$0""#;
    let mut pause = Running::start(
        Command::new("sh")
            .args(["-c", script, PAUSE])
            .stdout(Stdio::piped()),
    );
    assert_eq!(pause.first_line.trim_end(), WARNING);
    let mut pids = String::new();
    BufReader::new(pause.child.stdout.take().unwrap())
        .read_line(&mut pids)
        .unwrap();
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    kill(Pid::from_raw(pids[1] as i32), Signal::SIGKILL).unwrap();
    let parent = pause.pid();
    let reaped = wait_until(LIMIT, || pids.iter().all(|&p| not_a_child_of(p, parent)));
    assert!(reaped, "children {pids:?} left as zombies of pause");
    let status = pause.wait_for_exit(Duration::ZERO);
    assert!(status.is_none(), "pause ended: {status:?}");
}

/// The program header types of an ELF file (p_type is the first word of each entry).
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[5], 1, "not little-endian");
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let (table, entry_size_at) = match elf[4] {
        1 => (u32_at(0x1c) as usize, 0x2a),
        2 => (
            u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize,
            0x36,
        ),
        class => panic!("unknown ELF class {class}"),
    };
    let (entry_size, count) = (u16_at(entry_size_at), u16_at(entry_size_at + 2));
    (0..count).map(|i| u32_at(table + i * entry_size)).collect()
}

#[test]
fn the_image_build_is_static_and_small() {
    const PT_INTERP: u32 = 3;
    let pause = k0x_testkit::pause::static_pause(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let elf = std::fs::read(&pause).unwrap();
    assert!(
        !program_header_types(&elf).contains(&PT_INTERP),
        "{} asks for a dynamic loader: it cannot run alone in an image",
        pause.display()
    );
    eprintln!("static pause: {} bytes", elf.len());
    assert!(
        elf.len() < 4 << 20,
        "{} bytes: not the size profile",
        elf.len()
    );
    let out = Command::new(&pause).arg("-v").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pause 3.10-k0x\n");
}
