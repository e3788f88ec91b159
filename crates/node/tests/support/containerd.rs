//! The real containerd, started with exactly the spec (configuration, socket, state paths) k0x
//! generates, for tests that drive it with `ctr`. Dropping it removes the test's container,
//! stops containerd and unmounts anything left below the test root, also when a test failed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k0x_node::{NodeContext, worker_components};
use k0x_supervisor::{Probe, Spec};

use super::{ChildGuard, wait_until};

/// containerd under test, in `root`, and the one container id the test uses.
pub struct ContainerdUnderTest {
    process: Option<ChildGuard>,
    pub socket: PathBuf,
    root: PathBuf,
    namespace: &'static str,
    pub container: String,
}

impl ContainerdUnderTest {
    /// Starts containerd for `ctx` (logging to `<root>/containerd.log`) and waits until it
    /// answers `ctr version` on its socket; panics with its log when it never does.
    pub fn start(
        ctx: &NodeContext,
        root: &Path,
        namespace: &'static str,
        container: String,
    ) -> Self {
        let spec = containerd_spec(ctx);
        let Probe::UnixSocket(socket) = spec.readiness.probe.clone() else {
            panic!("containerd must be probed on its socket");
        };
        let mut containerd = Self {
            process: None,
            socket,
            root: root.to_path_buf(),
            namespace,
            container,
        };
        let log_file = fs::File::create(root.join("containerd.log")).unwrap();
        containerd.process = Some(ChildGuard::spawn(
            Command::new(&spec.path)
                .args(&spec.args)
                .envs(&spec.env)
                .stdout(Stdio::null())
                .stderr(log_file),
        ));
        let ready = wait_until(Duration::from_secs(60), || {
            containerd
                .ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(
            ready,
            "containerd never answered on its socket:\n{}",
            containerd.log()
        );
        containerd
    }

    /// `ctr` on this containerd's socket, in the test's namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", self.namespace]);
        cmd
    }

    /// What containerd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for ContainerdUnderTest {
    fn drop(&mut self) {
        let quiet = |mut cmd: Command| {
            let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        let mut kill = self.ctr();
        kill.args(["tasks", "rm", "--force", &self.container]);
        quiet(kill);
        let mut rm = self.ctr();
        rm.args(["containers", "rm", &self.container]);
        quiet(rm);
        if let Some(process) = self.process.take() {
            process.stop();
        }
        k0x_testkit::unmount_below(&self.root);
    }
}

/// The containerd spec k0x plans for `ctx`, with its files written.
pub fn containerd_spec(ctx: &NodeContext) -> Spec {
    let components = worker_components(Default::default());
    let containerd = components
        .iter()
        .find(|c| c.name() == "containerd")
        .unwrap();
    containerd.prepare(ctx).unwrap();
    containerd.spec(ctx).unwrap()
}
