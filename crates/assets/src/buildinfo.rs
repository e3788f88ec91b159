//! The build information every Go binary carries (what `go version -m` prints): the Go version and
//! each module it was built from, with its version and go.sum hash. Read from the extracted
//! binaries, it is the bill of materials of a node, at hand without Go or network.
//!
//! Go 1.18+ writes a 32-byte header at a 16-byte aligned offset of the `.go.buildinfo` section:
//! the magic `\xff Go buildinf:`, the pointer size, a flags byte whose bit 1 says the two strings
//! follow inline, each as a uvarint length and bytes. The module text sits between two 16-byte
//! sentinels.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::Serialize;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER: usize = 32;
const FLAG_INLINE_STRINGS: u8 = 0x2;
const SENTINEL: usize = 16;
const CHUNK: usize = 1 << 20;

/// A module a binary was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoModule {
    pub path: String,
    pub version: String,
    /// The go.sum hash (`h1:...`), absent for the main module of a local build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<String>,
}

/// What a Go binary says about its own build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoBuildInfo {
    pub go_version: String,
    /// The main package's path.
    pub path: String,
    pub modules: Vec<GoModule>,
}

/// Reads the build information of the Go binary at `path`; `Ok(None)` for a binary without it.
pub fn read(path: &Path) -> io::Result<Option<GoBuildInfo>> {
    let mut file = File::open(path)?;
    let mut window = Vec::with_capacity(CHUNK + HEADER);
    let mut consumed = 0usize;
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        window.extend_from_slice(&chunk[..n]);
        if let Some(at) = find_header(&window, consumed) {
            let mut rest = window.split_off(at);
            file.take(1 << 20).read_to_end(&mut rest)?;
            return Ok(parse(&rest));
        }
        // Keep the unaligned tail so a header crossing the chunk boundary is still found.
        let keep = (window.len() % SENTINEL + SENTINEL).min(window.len());
        consumed += window.len() - keep;
        window.drain(..window.len() - keep);
    }
}

/// The offset in `window` of a header at a 16-byte aligned file offset (`base` = file offset of
/// `window[0]`).
fn find_header(window: &[u8], base: usize) -> Option<usize> {
    let first = (SENTINEL - base % SENTINEL) % SENTINEL;
    (first..window.len().saturating_sub(MAGIC.len()))
        .step_by(SENTINEL)
        .find(|&i| &window[i..i + MAGIC.len()] == MAGIC)
}

fn parse(bytes: &[u8]) -> Option<GoBuildInfo> {
    if bytes.len() < HEADER || bytes[15] & FLAG_INLINE_STRINGS == 0 {
        return None;
    }
    let (go_version, rest) = inline_bytes(&bytes[HEADER..])?;
    let (modinfo, _) = inline_bytes(rest)?;
    // The sentinels are binary; only the text between them is UTF-8.
    let text = modinfo.get(SENTINEL..modinfo.len().checked_sub(SENTINEL)?)?;
    Some(modules(
        std::str::from_utf8(go_version).ok()?,
        std::str::from_utf8(text).ok()?,
    ))
}

fn inline_bytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = uvarint(bytes)?;
    let end = used.checked_add(usize::try_from(len).ok()?)?;
    Some((bytes.get(used..end)?, &bytes[end..]))
}

fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// `path`, `mod` and `dep` lines; a `=>` line replaces the module before it.
fn modules(go_version: &str, text: &str) -> GoBuildInfo {
    let mut info = GoBuildInfo {
        go_version: go_version.to_owned(),
        path: String::new(),
        modules: Vec::new(),
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[..] {
            ["path", path, ..] => info.path = path.to_owned(),
            ["mod" | "dep", path, version, ..] => info.modules.push(GoModule {
                path: path.to_owned(),
                version: version.to_owned(),
                sum: fields.get(3).map(|s| (*s).to_owned()),
            }),
            ["=>", path, version, ..] => {
                if let Some(last) = info.modules.last_mut() {
                    last.path = path.to_owned();
                    last.version = version.to_owned();
                    last.sum = fields.get(3).map(|s| (*s).to_owned());
                }
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = n as u64;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn binary(prefix: usize, modinfo: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; prefix];
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&[8, FLAG_INLINE_STRINGS]);
        bytes.resize(prefix + HEADER, 0);
        for text in [
            "go1.26.8".to_owned(),
            format!("{}{modinfo}{}", "s".repeat(16), "e".repeat(16)),
        ] {
            bytes.extend(varint(text.len()));
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes.extend_from_slice(&[0u8; 64]);
        bytes
    }

    const MODINFO: &str = "path\tk8s.io/kubernetes/cmd/kubelet\n\
        mod\tk0x.io/embedded-bins/kubernetes\t(devel)\t\n\
        dep\tk8s.io/kubernetes\tv1.34.4\th1:abc=\n\
        dep\tk8s.io/api\tv0.0.0\t\n\
        =>\tk8s.io/api\tv0.34.4\th1:def=\n\
        build\tCGO_ENABLED=0\n";

    #[test]
    fn modules_and_replacements_are_read_from_an_aligned_header_past_a_chunk_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, binary(CHUNK + 16 * 3, MODINFO)).unwrap();
        let info = read(&path).unwrap().unwrap();
        assert_eq!(info.go_version, "go1.26.8");
        assert_eq!(info.path, "k8s.io/kubernetes/cmd/kubelet");
        assert_eq!(info.modules[1].path, "k8s.io/kubernetes");
        assert_eq!(info.modules[1].sum.as_deref(), Some("h1:abc="));
        assert_eq!(info.modules[2].version, "v0.34.4");
        assert_eq!(info.modules[2].sum.as_deref(), Some("h1:def="));
    }

    #[test]
    fn an_unaligned_magic_or_a_binary_without_one_has_no_build_info() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, binary(16 * 4 + 3, MODINFO)).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        assert_eq!(read(&path).unwrap(), None);
    }
}
