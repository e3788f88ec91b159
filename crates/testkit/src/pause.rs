//! The static pause binary, built exactly as k0x's pause image gets it (`scripts/build-pause.sh`),
//! for tests that run it alone in an image or check how it is linked.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds (or finds up to date) the static pause binary below `target_dir` and returns its path.
/// Pass the test's own `CARGO_TARGET_TMPDIR`: a build dir apart from the one the running cargo
/// holds locked.
pub fn static_pause(target_dir: &Path) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = target_dir.join("pause-static");
    let out = Command::new("bash")
        .arg(workspace.join("scripts/build-pause.sh"))
        .env("CARGO", env!("CARGO"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("run scripts/build-pause.sh");
    assert!(
        out.status.success(),
        "scripts/build-pause.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
