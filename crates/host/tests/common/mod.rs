//! Helpers shared by the host integration tests.

use std::process::Command;

/// A network namespace that is deleted when dropped, also when the test fails.
pub struct ScratchNetns(pub String);

impl ScratchNetns {
    pub fn create(purpose: &str) -> Self {
        let name = format!("k0x-{purpose}-{}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        Self(name)
    }

    /// Runs the ignored helper test `child` of this test binary inside the namespace (its own
    /// network and mount namespaces) with `env` set, and fails unless it passed.
    pub fn run_child_test(&self, child: &str, env: &[(&str, &std::path::Path)]) {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.0])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", child, "--include-ignored", "--nocapture"]);
        for (key, value) in env {
            command.env(key, value);
        }
        command.env(PARENT_NETNS_ENV, own_netns());
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stderr}");
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{child} failed:\n{stdout}\n{stderr}"
        );
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

const PARENT_NETNS_ENV: &str = "K0X_TEST_PARENT_NETNS";

fn own_netns() -> std::path::PathBuf {
    std::fs::read_link("/proc/self/ns/net").unwrap()
}

/// Panics unless this helper test runs in another network namespace than the test that started
/// it: the helpers change network state and must never do so on the host itself.
pub fn assert_in_scratch_netns() {
    let parent = std::env::var_os(PARENT_NETNS_ENV).expect("started by run_child_test");
    assert_ne!(
        own_netns(),
        std::path::PathBuf::from(parent),
        "helper test started outside its scratch namespace"
    );
}
