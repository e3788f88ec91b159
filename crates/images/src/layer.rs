//! The layer: a tar of the image's files and their parent directories in path order, with
//! owner 0:0 and mtime 0 so it depends only on the files' paths, modes and contents. It is
//! hashed while it is written (its digest is both the manifest's layer digest and the config's
//! diff_id, as it is uncompressed), so a large binary is read exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufWriter, Read, Write};

use sha2::{Digest, Sha256};

use crate::oci::Blob;
use crate::{Error, File, Source};

/// One entry of the layer, at its path without a leading `/`.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    path: String,
    file: Option<&'a File>,
}

/// The layer's entries, sorted by path: each file once, every parent directory before it.
pub(crate) fn entries(files: &[File]) -> Result<Vec<Entry<'_>>, Error> {
    let mut by_path = BTreeMap::new();
    for file in files {
        if by_path.insert(layer_path(&file.path)?, file).is_some() {
            return Err(path_error(&file.path, "appears twice"));
        }
    }
    let dirs: BTreeSet<String> = by_path.keys().flat_map(|path| parents(path)).collect();
    if let Some(clash) = dirs.iter().find(|dir| by_path.contains_key(*dir)) {
        return Err(path_error(
            clash,
            "is a file and the directory of another file",
        ));
    }
    let mut entries: Vec<Entry> = dirs
        .into_iter()
        .map(|path| Entry { path, file: None })
        .chain(by_path.into_iter().map(|(path, file)| Entry {
            path,
            file: Some(file),
        }))
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// `path` relative to the image root, or why it cannot be a path in an image.
fn layer_path(path: &str) -> Result<String, Error> {
    let relative = path.trim_start_matches('/');
    let bad = |c: &str| c.is_empty() || c == "." || c == "..";
    if relative.is_empty() || relative.split('/').any(bad) {
        return Err(path_error(path, "is not a plain path below the image root"));
    }
    Ok(relative.to_owned())
}

fn parents(path: &str) -> impl Iterator<Item = String> + '_ {
    path.match_indices('/')
        .map(|(end, _)| path[..end].to_owned())
}

fn path_error(path: &str, reason: &'static str) -> Error {
    Error::FilePath {
        path: path.to_owned(),
        reason,
    }
}

/// Writes the layer tar to `out` and returns its digest and size.
pub(crate) fn write(entries: &[Entry], out: &mut fs::File) -> Result<Blob, Error> {
    let mut builder = tar::Builder::new(Hashing::new(BufWriter::new(out)));
    for entry in entries {
        append(&mut builder, entry).map_err(|source| Error::Io {
            context: entry.context(),
            source,
        })?;
    }
    builder
        .into_inner()
        .and_then(Hashing::finish)
        .map_err(|source| Error::Io {
            context: "writing the layer's temporary file".to_owned(),
            source,
        })
}

impl Entry<'_> {
    fn context(&self) -> String {
        match self.file.map(|f| &f.source) {
            Some(Source::Path(source)) => {
                format!("adding /{} from {}", self.path, source.display())
            }
            _ => format!("adding /{}", self.path),
        }
    }
}

fn append<W: Write>(builder: &mut tar::Builder<W>, entry: &Entry) -> io::Result<()> {
    let Some(file) = entry.file else {
        let mut dir = header(tar::EntryType::Directory, 0o755, 0);
        return builder.append_data(&mut dir, format!("{}/", entry.path), io::empty());
    };
    match &file.source {
        Source::Bytes(bytes) => {
            let mut header = header(tar::EntryType::Regular, file.mode, bytes.len() as u64);
            builder.append_data(&mut header, &entry.path, bytes.as_slice())
        }
        Source::Path(source) => {
            let source = fs::File::open(source)?;
            let size = source.metadata()?.len();
            let mut header = header(tar::EntryType::Regular, file.mode, size);
            builder.append_data(&mut header, &entry.path, Exact::new(source, size))
        }
    }
}

/// A tar header that carries nothing of the machine or the moment: owner 0:0, mtime 0.
pub(crate) fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// Reads exactly `remaining` bytes: the tar header has announced that size, so a file that
/// shrinks while it is read must fail the layer rather than corrupt it (one that grows is cut).
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R> Exact<R> {
    fn new(inner: R, size: u64) -> Self {
        Self {
            inner,
            remaining: size,
        }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..max])?;
        if read == 0 {
            let shrank = "the file became shorter while it was read";
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, shrank));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Passes writes through while hashing them.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(mut self) -> io::Result<Blob> {
        self.inner.flush()?;
        Ok(Blob {
            digest: format!("sha256:{:x}", self.hasher.finalize()),
            size: self.size,
        })
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_shorter_than_announced_is_an_error() {
        let mut out = Vec::new();
        let err = io::copy(&mut Exact::new(&b"abc"[..], 5), &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut out = Vec::new();
        io::copy(&mut Exact::new(&b"abcdef"[..], 5), &mut out).unwrap();
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn the_digest_is_of_the_bytes_written() {
        let mut hashing = Hashing::new(Vec::new());
        hashing.write_all(b"layer").unwrap();
        let blob = hashing.finish().unwrap();
        assert_eq!(
            blob.digest,
            format!("sha256:{:x}", Sha256::digest(b"layer"))
        );
        assert_eq!(blob.size, 5);
    }
}
