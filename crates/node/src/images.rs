//! The images a worker's pods need, put into containerd before the kubelet starts.
//!
//! No registry is reachable where k0x runs, so nothing may depend on a pull. The pod sandbox
//! image is the first thing the kubelet asks containerd for: k0x builds it from its own static
//! `pause` program (a file in the bin dir, put there by the payload like every component) and
//! imports it into containerd's `k8s.io` namespace, under the reference containerd pins as its
//! sandbox image (`spec.images.pause`). Only references in k0x's own domain are built: any other
//! reference names an image the user brings. The user's archives in `<data-dir>/images/*.tar`
//! (k0s's convention) are imported next; a bad one is reported in one line and skipped, so one
//! broken file never keeps a node from running its other pods. The import uses the `ctr` that
//! comes with containerd, the tool containerd documents for it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use k0x_images::{File, Image, Platform, RunConfig, Source};

use crate::{NodeContext, NodeError, paths};

/// The component that starts only once the images are in containerd.
pub const NEEDED_BY: &str = crate::kubelet::NAME;

/// The domain of the images k0x builds itself; no registry is ever contacted under it.
pub const K0X_IMAGE_DOMAIN: &str = "k0x.io/";

/// containerd's namespace for the images the kubelet's CRI sees.
const CRI_NAMESPACE: &str = "k8s.io";

/// The user and group of the pause process, as upstream's image sets them (`nobody`-like).
const PAUSE_USER: &str = "65535:65535";

/// The pause image for `reference`, built from the bin dir's `pause`.
fn pause_image(ctx: &NodeContext, reference: &str) -> Image {
    Image {
        reference: reference.to_owned(),
        platform: Platform::host(),
        config: RunConfig {
            entrypoint: vec!["/pause".to_owned()],
            user: Some(PAUSE_USER.to_owned()),
            ..RunConfig::default()
        },
        files: vec![File {
            path: "/pause".to_owned(),
            source: Source::Path(ctx.node.binary("pause")),
            mode: 0o755,
        }],
    }
}

/// Imports one archive into the CRI namespace with `ctr`.
fn ctr_import(ctx: &NodeContext, archive: &Path) -> Result<(), String> {
    let ctr = ctx.node.binary("ctr");
    let output = Command::new(&ctr)
        .arg("--address")
        .arg(ctx.run.containerd_socket())
        .args(["--namespace", CRI_NAMESPACE, "images", "import"])
        .arg(archive)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ctr.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().rfind(|l| !l.trim().is_empty());
    Err(format!(
        "ctr images import failed ({}): {}",
        output.status,
        last.unwrap_or("no output")
    ))
}

/// Builds and imports k0x's pause image when `spec.images.pause` is in k0x's domain.
fn import_pause(ctx: &NodeContext) -> Result<(), NodeError> {
    let reference = &ctx.config.spec.images.pause;
    if !reference.starts_with(K0X_IMAGE_DOMAIN) {
        tracing::info!(
            image = %reference,
            "spec.images.pause is not k0x's own image: it must be in containerd already"
        );
        return Ok(());
    }
    let archive = paths::built_images(&ctx.data).join("pause.tar");
    let fail = |reason: String| NodeError::Image {
        reference: reference.clone(),
        reason,
    };
    let digest = k0x_images::write_oci_archive(&pause_image(ctx, reference), &archive)
        .map_err(|e| fail(e.to_string()))?;
    ctr_import(ctx, &archive).map_err(fail)?;
    tracing::info!(image = %reference, %digest, "pause image imported");
    Ok(())
}

/// The `*.tar` files in `<data-dir>/images/`, in name order (none when it does not exist).
fn user_archives(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut archives: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar") && p.is_file())
        .collect();
    archives.sort();
    archives
}

/// Puts every image the node's pods need into containerd: k0x's pause image (an error stops the
/// start: no pod could run), then the user's archives (each failure is one warning).
/// containerd must be running. Blocks while `ctr` runs.
pub fn import_images(ctx: &NodeContext) -> Result<(), NodeError> {
    import_pause(ctx)?;
    for archive in user_archives(&ctx.data.images()) {
        match ctr_import(ctx, &archive) {
            Ok(()) => tracing::info!(archive = %archive.display(), "image archive imported"),
            Err(reason) => tracing::warn!(
                archive = %archive.display(),
                "image archive not imported: {reason}; replace or remove the file"
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    #[test]
    fn pause_image_runs_the_bin_dirs_pause_as_nobody() {
        let ctx = context();
        let image = pause_image(&ctx, "k0x.io/pause:3.10-k0x");
        assert_eq!(image.config.entrypoint, ["/pause"]);
        assert_eq!(image.config.user.as_deref(), Some("65535:65535"));
        let Source::Path(source) = &image.files[0].source else {
            panic!("pause is streamed from the bin dir");
        };
        assert_eq!(source, Path::new("/var/lib/k0x/bin/pause"));
    }

    #[test]
    fn default_pause_reference_is_k0xs_own() {
        let ctx = context();
        assert!(ctx.config.spec.images.pause.starts_with(K0X_IMAGE_DOMAIN));
    }

    #[test]
    fn user_archives_are_tar_files_in_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["b.tar", "a.tar", "notes.txt"] {
            fs::write(tmp.path().join(name), "x").unwrap();
        }
        fs::create_dir(tmp.path().join("dir.tar")).unwrap();
        let names: Vec<_> = user_archives(tmp.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.tar", "b.tar"]);
        assert!(user_archives(&tmp.path().join("missing")).is_empty());
    }
}
