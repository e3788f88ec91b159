//! A container image built locally from the host's static busybox, so container tests never
//! need a registry: a docker-archive (`ctr images import` reads it) with one layer holding
//! /bin/busybox and a few applet links.

use std::fs;
use std::io;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

/// The applets linked to busybox in the image (what the tests run inside containers).
pub const APPLETS: &[&str] = &[
    "sh", "ip", "echo", "cat", "sleep", "hostname", "mkdir", "httpd", "nc", "nslookup", "dd",
    "time",
];

/// Writes a docker-archive image tagged `tag` (e.g. `k0x.test/busybox:latest`) whose default
/// command is `/bin/sh` to `out`.
pub fn busybox_image(busybox: &Path, tag: &str, out: &Path) -> io::Result<()> {
    busybox_image_with_cmd(busybox, tag, &["/bin/sh"], out)
}

/// Like [`busybox_image`] with another default command (e.g. a long `sleep`, which makes the
/// image a stand-in for the pod sandbox "pause" image when no registry is reachable).
pub fn busybox_image_with_cmd(
    busybox: &Path,
    tag: &str,
    cmd: &[&str],
    out: &Path,
) -> io::Result<()> {
    let layer = busybox_layer(busybox)?;
    let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
    let config = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": cmd },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    })
    .to_string();
    let manifest = json!([{ "Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"] }])
        .to_string();
    let mut archive = tar::Builder::new(fs::File::create(out)?);
    for (name, data) in [
        ("layer.tar", layer.as_slice()),
        ("config.json", config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        archive.append_data(&mut header, name, data)?;
    }
    archive.finish()
}

fn busybox_layer(busybox: &Path) -> io::Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    for name in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        layer.append_data(&mut dir.clone(), name, io::empty())?;
    }
    let binary = fs::read(busybox)?;
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o755);
    file.set_size(binary.len() as u64);
    layer.append_data(&mut file, "bin/busybox", binary.as_slice())?;
    for applet in APPLETS {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        layer.append_link(&mut link, format!("bin/{applet}"), "busybox")?;
    }
    layer.into_inner()
}

/// The OCI name of this machine's architecture.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}
