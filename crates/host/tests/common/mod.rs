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
