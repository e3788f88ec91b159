//! The images a worker's pods need, put into containerd: the sandbox image before the kubelet
//! starts, the others beside it.
//!
//! No registry is reachable where k0x runs, so nothing may depend on a pull. The pod sandbox
//! image is the first thing the kubelet asks containerd for: k0x builds it from its own static
//! `pause` program (a file in the bin dir, put there by the payload like every component) and
//! imports it into containerd's `k8s.io` namespace, under the reference containerd pins as its
//! sandbox image (`spec.images.pause`). Only references in k0x's own domain are built: any other
//! reference names an image the user brings. The user's archives in `<data-dir>/images/*.tar`
//! (k0s's convention) are imported next, and while the node runs, each archive added or changed
//! there is imported too ([`ArchiveWatch`]); a bad one is reported in one line and skipped, so one
//! broken file never keeps a node from running its other pods. The import uses the `ctr` that
//! comes with containerd, the tool containerd documents for it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use k0x_config::schema::Images;
use k0x_images::{File, Image, Platform, RunConfig, Source};

use crate::{NodeContext, NodeError, paths};

/// The component that starts only once the images are in containerd.
pub const NEEDED_BY: &str = crate::kubelet::NAME;

/// The domain of the images k0x builds itself; no registry is ever contacted under it.
pub const K0X_IMAGE_DOMAIN: &str = "k0x.io/";

/// containerd's namespace for the images the kubelet's CRI sees.
const CRI_NAMESPACE: &str = "k8s.io";

/// An image k0x builds from one static binary of its bin dir.
#[derive(Debug, Clone, Copy)]
struct K0xImage {
    /// The config field naming its reference, and how to read it.
    field: &'static str,
    reference: fn(&Images) -> &str,
    /// The bin dir's binary, put at `/<binary>` in the image and run as its entrypoint.
    binary: &'static str,
    /// `uid:gid` the container runs as unless the pod says otherwise.
    user: Option<&'static str>,
    /// Whether the node cannot run any pod without it (the sandbox image).
    required: bool,
}

/// The pause process runs as upstream's image sets it (`nobody`-like); CoreDNS binds port 53
/// with `NET_BIND_SERVICE` granted by its pod, and metrics-server runs as upstream's nonroot.
const K0X_IMAGES: [K0xImage; 3] = [
    K0xImage {
        field: "spec.images.pause",
        reference: |images| &images.pause,
        binary: "pause",
        user: Some("65535:65535"),
        required: true,
    },
    K0xImage {
        field: "spec.images.coredns",
        reference: |images| &images.coredns,
        binary: "coredns",
        user: None,
        required: false,
    },
    K0xImage {
        field: "spec.images.metricsserver",
        reference: |images| &images.metrics_server,
        binary: "metrics-server",
        user: Some("65532:65532"),
        required: false,
    },
];

impl K0xImage {
    /// The image of `reference`, streaming the bin dir's binary into its layer.
    fn image(self, ctx: &NodeContext, reference: &str) -> Image {
        let path = format!("/{}", self.binary);
        Image {
            reference: reference.to_owned(),
            platform: Platform::host(),
            config: RunConfig {
                entrypoint: vec![path.clone()],
                user: self.user.map(str::to_owned),
                ..RunConfig::default()
            },
            files: vec![File {
                path,
                source: Source::Path(ctx.node.binary(self.binary)),
                mode: 0o755,
            }],
        }
    }

    /// Builds and imports the image when its reference is in k0x's domain. A missing binary
    /// of an optional image is a warning: its pods wait, every other pod runs.
    fn import(self, ctx: &NodeContext) -> Result<(), NodeError> {
        let reference = (self.reference)(&ctx.config.spec.images);
        if !reference.starts_with(K0X_IMAGE_DOMAIN) {
            tracing::info!(
                image = %reference,
                "{} is not k0x's own image: it must be in containerd already",
                self.field
            );
            return Ok(());
        }
        let fail = |reason: String| NodeError::Image {
            reference: reference.to_owned(),
            reason,
        };
        let binary = ctx.node.binary(self.binary);
        if !self.required && !binary.is_file() {
            tracing::warn!(
                image = %reference,
                "not built: {} is missing (see `k0x version --components`)",
                binary.display()
            );
            return Ok(());
        }
        let archive = paths::built_images(&ctx.data).join(format!("{}.tar", self.binary));
        let digest = k0x_images::write_oci_archive(&self.image(ctx, reference), &archive)
            .map_err(|e| fail(e.to_string()))?;
        ctr_import(ctx, &archive).map_err(fail)?;
        tracing::info!(image = %reference, %digest, "{} image imported", self.binary);
        Ok(())
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

/// The `*.tar` files in `<data-dir>/images/` with their size and mtime, in name order (none
/// when it does not exist).
fn user_archives(dir: &Path) -> Vec<(PathBuf, FileStamp)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut archives: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .filter_map(|p| {
            let meta = p.metadata().ok().filter(fs::Metadata::is_file)?;
            Some((p, (meta.len(), meta.modified().ok()?)))
        })
        .collect();
    archives.sort();
    archives
}

/// A file's size and modification time: a changed stamp means a changed file.
type FileStamp = (u64, SystemTime);

/// The user's archives the node has already imported (or refused), so only new and changed ones
/// are imported while it runs. A file is imported once its stamp held still between two looks:
/// an archive still being copied in is not read half-written.
#[derive(Debug, Default)]
pub struct ArchiveWatch {
    imported: BTreeMap<PathBuf, FileStamp>,
    settling: BTreeMap<PathBuf, FileStamp>,
}

impl ArchiveWatch {
    /// Imports the archives that are new or changed since the last look and have held still
    /// since the one before. Each failure is one warning; the node goes on. Blocks while `ctr`
    /// runs.
    pub fn import_changed(&mut self, ctx: &NodeContext) {
        let current = user_archives(&ctx.data.images());
        let mut settling = BTreeMap::new();
        for (archive, stamp) in current {
            if self.imported.get(&archive) == Some(&stamp) {
                continue;
            }
            if self.settling.get(&archive) != Some(&stamp) {
                settling.insert(archive, stamp);
                continue;
            }
            import_archive(ctx, &archive);
            self.imported.insert(archive, stamp);
        }
        self.settling = settling;
    }

    /// Imports every archive there is now, as a worker does at start.
    fn import_all(&mut self, ctx: &NodeContext) {
        for (archive, stamp) in user_archives(&ctx.data.images()) {
            import_archive(ctx, &archive);
            self.imported.insert(archive, stamp);
        }
    }
}

fn import_archive(ctx: &NodeContext, archive: &Path) {
    match ctr_import(ctx, archive) {
        Ok(()) => tracing::info!(archive = %archive.display(), "image archive imported"),
        Err(reason) => tracing::warn!(
            archive = %archive.display(),
            "image archive not imported: {reason}; replace or remove the file"
        ),
    }
}

/// Puts the sandbox image into containerd: the kubelet asks for it first, and no pod can run
/// without it, so an error stops the start. containerd must be running. Blocks while `ctr` runs.
pub fn import_sandbox_image(ctx: &NodeContext) -> Result<(), NodeError> {
    K0X_IMAGES
        .iter()
        .filter(|image| image.required)
        .try_for_each(|image| image.import(ctx))
}

/// Puts the other images into containerd: those of the system stacks, then the user's archives.
/// It runs beside the kubelet, not before it, so the node is Ready without waiting for tens of
/// megabytes to be hashed and unpacked; a pod that asks for an image first retries until it is
/// there. Each failure is one warning. Returns the watch that imports the archives added later.
/// Blocks while `ctr` runs.
pub fn import_pod_images(ctx: &NodeContext) -> ArchiveWatch {
    for image in K0X_IMAGES.iter().filter(|image| !image.required) {
        if let Err(err) = image.import(ctx) {
            tracing::warn!("{err}; its pods cannot start");
        }
    }
    let mut watch = ArchiveWatch::default();
    watch.import_all(ctx);
    watch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    #[test]
    fn pause_image_runs_the_bin_dirs_pause_as_nobody() {
        let ctx = context();
        let image = K0X_IMAGES[0].image(&ctx, "k0x.io/pause:3.10-k0x");
        assert_eq!(image.config.entrypoint, ["/pause"]);
        assert_eq!(image.config.user.as_deref(), Some("65535:65535"));
        let Source::Path(source) = &image.files[0].source else {
            panic!("pause is streamed from the bin dir");
        };
        assert_eq!(source, Path::new("/var/lib/k0x/bin/pause"));
    }

    #[test]
    fn default_references_are_k0xs_own_and_match_their_fields() {
        let ctx = context();
        let images = &ctx.config.spec.images;
        let wanted = [&images.pause, &images.coredns, &images.metrics_server];
        for (image, wanted) in K0X_IMAGES.iter().zip(wanted) {
            assert_eq!((image.reference)(images), wanted, "{}", image.field);
            assert!(wanted.starts_with(K0X_IMAGE_DOMAIN), "{wanted}");
            let entry = &image.image(&ctx, wanted).config.entrypoint;
            assert_eq!(entry, &[format!("/{}", image.binary)]);
        }
    }

    #[test]
    fn an_archive_is_imported_once_it_held_still_and_again_when_it_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ctx = context();
        ctx.data = k0x_config::DataDir::new(tmp.path());
        let images = ctx.data.images();
        fs::create_dir_all(&images).unwrap();
        let archive = images.join("app.tar");
        let mut watch = ArchiveWatch::default();
        watch.import_all(&ctx);
        assert!(watch.imported.is_empty());
        fs::write(&archive, "part").unwrap();
        watch.import_changed(&ctx);
        assert!(
            watch.imported.is_empty(),
            "imported while it may still grow"
        );
        watch.import_changed(&ctx);
        assert!(watch.imported.contains_key(&archive));
        let first = watch.imported[&archive];
        watch.import_changed(&ctx);
        assert_eq!(
            watch.imported[&archive], first,
            "an unchanged file is left alone"
        );
        fs::write(&archive, "a longer content").unwrap();
        watch.import_changed(&ctx);
        assert_eq!(
            watch.imported[&archive], first,
            "a changed file settles first"
        );
        watch.import_changed(&ctx);
        assert_ne!(watch.imported[&archive], first);
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
            .map(|(p, _)| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.tar", "b.tar"]);
        assert!(user_archives(&tmp.path().join("missing")).is_empty());
    }
}
