//! The JSON documents of an OCI image layout (image-spec v1.0): config, manifest and index.
//!
//! They are serialised from structs, whose field order is fixed, rather than from maps, whose order
//! depends on serde_json features some other crate of the build may switch on: the digests must not
//! change with the build.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Image;

pub(crate) const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The name `ctr images import` gives the image (it falls back to the OCI ref name).
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A blob's content address and length.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub digest: String,
    pub size: u64,
}

impl Blob {
    fn of(bytes: &[u8]) -> Self {
        Self {
            digest: format!("sha256:{:x}", Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }
}

/// A JSON document and its blob.
#[derive(Debug)]
pub(crate) struct Document {
    pub bytes: Vec<u8>,
    pub blob: Blob,
}

impl Document {
    fn of(value: &impl Serialize) -> Self {
        let bytes = serde_json::to_vec(value).expect("structs of strings always serialise");
        let blob = Blob::of(&bytes);
        Self { bytes, blob }
    }
}

/// Everything of the archive except the layer's bytes.
#[derive(Debug)]
pub(crate) struct Blobs {
    pub layer: Blob,
    pub config: Document,
    pub manifest: Document,
    /// index.json (not a blob; its digest is never referenced).
    pub index: Vec<u8>,
}

impl Blobs {
    pub(crate) fn new(image: &Image, layer: Blob) -> Self {
        let config = Document::of(&config(image, &layer.digest));
        let manifest = Document::of(&Manifest {
            schema_version: 2,
            media_type: MANIFEST,
            config: Descriptor::new(CONFIG, &config.blob),
            layers: [Descriptor::new(LAYER, &layer)],
        });
        let index = Document::of(&Index {
            schema_version: 2,
            media_type: INDEX,
            manifests: [Descriptor {
                platform: Some(platform(image)),
                annotations: BTreeMap::from([
                    (CONTAINERD_NAME, image.reference.as_str()),
                    (OCI_REF_NAME, image.reference.as_str()),
                ]),
                ..Descriptor::new(MANIFEST, &manifest.blob)
            }],
        });
        Self {
            layer,
            config,
            manifest,
            index: index.bytes,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: [Descriptor<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor<'a>,
    layers: [Descriptor<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'static str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, &'a str>,
}

impl<'a> Descriptor<'a> {
    fn new(media_type: &'static str, blob: &'a Blob) -> Self {
        Self {
            media_type,
            digest: &blob.digest,
            size: blob.size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Serialize)]
struct Platform<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

fn platform(image: &Image) -> Platform<'_> {
    Platform {
        architecture: &image.platform.architecture,
        os: &image.platform.os,
        variant: image.platform.variant.as_deref(),
    }
}

#[derive(Serialize)]
struct Config<'a> {
    #[serde(flatten)]
    platform: Platform<'a>,
    config: RunConfig<'a>,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cmd: &'a [String],
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [&'a str; 1],
}

/// The image config; the layer is uncompressed, so its diff_id is its digest.
fn config<'a>(image: &'a Image, layer_digest: &'a str) -> Config<'a> {
    let run = &image.config;
    Config {
        platform: platform(image),
        config: RunConfig {
            user: run.user.as_deref(),
            env: &run.env,
            entrypoint: &run.entrypoint,
            cmd: &run.cmd,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: [layer_digest],
        },
    }
}
