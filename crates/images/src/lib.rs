//! Container images built from files k0x already has, written as OCI image-layout archives.
//!
//! No registry is reachable where k0x runs, so every image a pod needs (the sandbox's pause,
//! CoreDNS, ...) is made locally: one layer holding a static binary, plus the image config, in an
//! archive that `ctr -n k8s.io images import` stores under the image's full reference. The archive
//! is deterministic (fixed mtimes and owners, sorted entries, fixed JSON field order), so the same
//! inputs give the same bytes and digests on every node and every start. Large binaries are
//! streamed through a temporary layer file, never held in memory, and the archive replaces its
//! destination atomically.

mod archive;
mod layer;
mod oci;

use std::path::{Path, PathBuf};

/// An image of one layer: the files in it and how a container runs it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The full reference containerd stores it under, e.g. `k0x.io/pause:3.10-k0x`.
    pub reference: String,
    pub platform: Platform,
    pub config: RunConfig,
    /// The layer's files; parent directories are added (mode 0755).
    pub files: Vec<File>,
}

/// The platform the image's binaries run on, in OCI terms (`linux`, `amd64`, `arm` + `v7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the running machine.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            other => (other, None),
        };
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }
}

/// How a container runs the image (the OCI config's `config` object); empty fields are left out.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// `uid[:gid]` or a name the image's /etc/passwd knows.
    pub user: Option<String>,
}

/// One regular file of the layer.
#[derive(Debug, Clone)]
pub struct File {
    /// Its path in the image, e.g. `/pause` or `/bin/coredns`.
    pub path: String,
    pub source: Source,
    /// Permission bits, e.g. `0o755`.
    pub mode: u32,
}

/// Where a file's contents come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A file on disk, streamed (for binaries of many megabytes).
    Path(PathBuf),
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image reference {reference:?} {reason}")]
    Reference {
        reference: String,
        reason: &'static str,
    },
    #[error("image file path {path:?} {reason}")]
    FilePath { path: String, reason: &'static str },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Writes `image` to `out` as an OCI image-layout tar archive and returns its manifest digest
/// (`sha256:...`, what `ctr images ls` shows). The layer is uncompressed
/// (`application/vnd.oci.image.layer.v1.tar`); its temporary file lives beside `out`.
pub fn write_oci_archive(image: &Image, out: &Path) -> Result<String, Error> {
    check_reference(&image.reference)?;
    let entries = layer::entries(&image.files)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io_error = |context: String| move |source| Error::Io { context, source };
    std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    let mut layer_file = tempfile::tempfile_in(dir).map_err(io_error(format!(
        "creating a temporary layer file in {}",
        dir.display()
    )))?;
    let layer = layer::write(&entries, &mut layer_file)?;
    let blobs = oci::Blobs::new(image, layer);
    k0x_config::fsutil::write_atomic_with(out, 0o644, |file| {
        archive::write(file, &blobs, &mut layer_file)
    })
    .map_err(io_error(format!("writing {}", out.display())))?;
    Ok(blobs.manifest.blob.digest)
}

/// Refuses references containerd would store under a name the kubelet never asks for: the
/// kubelet expands a short name such as `pause:3.10` with the default registry's domain, so
/// k0x's images carry a domain and a tag (or a digest).
fn check_reference(reference: &str) -> Result<(), Error> {
    let fail = |reason| {
        Err(Error::Reference {
            reference: reference.to_owned(),
            reason,
        })
    };
    let Some((domain, rest)) = reference.split_once('/') else {
        return fail("has no domain: write it in full, such as k0x.io/pause:3.10-k0x");
    };
    if !(domain.contains('.') || domain.contains(':') || domain == "localhost") {
        return fail("does not start with a domain, such as k0x.io/");
    }
    let Some((repository, tag)) = rest.split_once('@').or_else(|| rest.rsplit_once(':')) else {
        return fail("has no tag, such as :3.10-k0x");
    };
    let repository_ok =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    let tag_ok = |c: char| c.is_ascii_alphanumeric() || "._-:".contains(c);
    if repository.is_empty() || !repository.chars().all(repository_ok) {
        return fail("has an empty name or one with characters other than a-z 0-9 . _ - /");
    }
    if tag.is_empty() || !tag.chars().all(tag_ok) {
        return fail("has an empty tag or one with characters other than A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
