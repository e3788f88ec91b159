//! The outer tar of an OCI image layout: `oci-layout`, `index.json` and `blobs/sha256/<hex>` for
//! the config, the layer and the manifest, in path order with fixed metadata like the layer's.

use std::fs;
use std::io::{self, BufWriter, Read, Seek, Write};

use crate::layer::header;
use crate::oci::{Blobs, LAYOUT};

/// Writes the archive to `out`, copying the layer from `layer` (the file [`crate::layer::write`]
/// wrote).
pub(crate) fn write(out: &mut fs::File, blobs: &Blobs, layer: &mut fs::File) -> io::Result<()> {
    layer.rewind()?;
    let mut builder = tar::Builder::new(BufWriter::new(out));
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        builder.append_data(&mut header, dir, io::empty())?;
    }
    let mut sorted = [
        (
            &blobs.config.blob.digest,
            Content::Document(&blobs.config.bytes),
        ),
        (
            &blobs.manifest.blob.digest,
            Content::Document(&blobs.manifest.bytes),
        ),
        (&blobs.layer.digest, Content::Layer),
    ];
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (digest, content) in sorted {
        let path = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        match content {
            Content::Document(bytes) => append(&mut builder, &path, bytes)?,
            Content::Layer => {
                let size = blobs.layer.size;
                let mut header = header(tar::EntryType::Regular, 0o644, size);
                builder.append_data(&mut header, path, (&mut *layer).take(size))?;
            }
        }
    }
    append(&mut builder, "index.json", &blobs.index)?;
    append(&mut builder, "oci-layout", LAYOUT)?;
    builder.into_inner()?.flush()
}

fn append<W: Write>(builder: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    builder.append_data(&mut header, path, bytes)
}

/// What a blob entry holds: a JSON document, or the layer in its temporary file.
enum Content<'a> {
    Document(&'a [u8]),
    Layer,
}
