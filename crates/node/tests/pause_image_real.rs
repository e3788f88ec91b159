//! k0x's own pause image in the real containerd k0x configures: the archive k0x-images writes
//! around the static pause binary is imported into the `k8s.io` namespace under its full
//! reference and digest, and runs with runc as PID 1: it prints its version, stays up, and ends
//! with status 0 on SIGTERM (as PID 1 it would ignore the signal without its handler) without
//! the not-PID-1 warning. No registry is involved; guards remove the container and containerd.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k0x_images::{File, Image, Platform, RunConfig, Source, write_oci_archive};
use k0x_testkit::cni::random_suffix;
use support::ChildGuard;
use support::containerd::ContainerdUnderTest;

const REFERENCE: &str = "k0x.io/pause:3.10-k0x";
/// Bounds a hung wait; nothing asserts on how long anything took.
const LIMIT: Duration = Duration::from_secs(60);

fn pause_image(binary: &Path) -> Image {
    Image {
        reference: REFERENCE.to_owned(),
        platform: Platform::host(),
        config: RunConfig {
            entrypoint: vec!["/pause".to_owned()],
            user: Some("65535:65535".to_owned()),
            ..RunConfig::default()
        },
        files: vec![File {
            path: "/pause".to_owned(),
            source: Source::Path(binary.to_path_buf()),
            mode: 0o755,
        }],
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `ctr tasks ls` lists `id` as running.
fn task_running(containerd: &ContainerdUnderTest, id: &str) -> bool {
    let out = support::run(containerd.ctr().args(["tasks", "ls"]));
    text(&out.stdout)
        .lines()
        .any(|l| l.starts_with(id) && l.trim_end().ends_with("RUNNING"))
}

#[test]
fn the_pause_image_imports_and_runs_as_pid_1() {
    let test = "the_pause_image_imports_and_runs_as_pid_1";
    if !k0x_testkit::require_root(test) {
        return;
    }
    let required = ["containerd", "containerd-shim-runc-v2", "runc", "ctr"];
    let Some(found) = k0x_testkit::require_binaries(test, &required) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bin = support::bin_dir(tmp.path(), &found[..3]);
    let ctx = support::context(tmp.path(), "node-a", "127.0.0.1", &bin);
    let pause = k0x_testkit::pause::static_pause(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let archive = tmp.path().join("images/pause.tar");
    let digest = write_oci_archive(&pause_image(&pause), &archive).unwrap();

    let id = format!("k0x-pause-{}", random_suffix());
    let containerd = ContainerdUnderTest::start(&ctx, tmp.path(), "k8s.io", id.clone());
    let import = support::run(containerd.ctr().args(["images", "import"]).arg(&archive));
    assert!(import.status.success(), "import: {}", text(&import.stderr));
    let images = support::run(containerd.ctr().args(["images", "ls"]));
    let listed = text(&images.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&format!("{REFERENCE} ")) && l.contains(&digest)),
        "{REFERENCE} with digest {digest} not listed:\n{listed}"
    );

    let run = || {
        let mut ctr = containerd.ctr();
        ctr.args(["run", "--rm", "--runc-binary"])
            .arg(ctx.node.binary("runc"))
            .args([REFERENCE, &id]);
        ctr
    };
    let version = support::run(run().args(["/pause", "-v"]));
    assert!(
        version.status.success(),
        "ctr run -v: {}\ncontainerd log:\n{}",
        text(&version.stderr),
        containerd.log()
    );
    assert_eq!(text(&version.stdout), "pause 3.10-k0x\n");

    let mut sandbox = ChildGuard::spawn(run().stdout(Stdio::null()).stderr(Stdio::piped()));
    let running = support::wait_until(LIMIT, || task_running(&containerd, &id));
    assert!(running, "pause never ran:\n{}", containerd.log());
    let kill = support::run(
        containerd
            .ctr()
            .args(["tasks", "kill", "--signal", "SIGTERM", &id]),
    );
    assert!(kill.status.success(), "kill: {}", text(&kill.stderr));
    let ended = support::wait_until(LIMIT, || matches!(sandbox.0.try_wait(), Ok(Some(_))));
    assert!(ended, "pause as PID 1 ignored SIGTERM");
    let status = sandbox.0.wait().unwrap();
    let mut stderr = String::new();
    sandbox
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "pause ended with {status}: {stderr}");
    assert!(
        !stderr.contains("first process"),
        "pause was not PID 1: {stderr}"
    );
    assert!(
        stderr.contains("Shutting down, got signal: Terminated"),
        "{stderr}"
    );
}
