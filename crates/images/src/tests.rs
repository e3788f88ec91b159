//! The archive read back: its layout, that every digest names its content, that the config's
//! diff_id is the layer, the layer's entries, determinism, and the inputs that are refused.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;

const REFERENCE: &str = "k0x.io/pause:3.10-k0x";

/// One tar entry: its header facts and contents.
#[derive(Debug, PartialEq)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    bytes: Vec<u8>,
}

fn read_tar(reader: impl Read) -> Vec<Entry> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().unwrap().map(|entry| {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        Entry {
            path: entry.path().unwrap().display().to_string(),
            kind: header.entry_type(),
            mode: header.mode().unwrap(),
            owner: (header.uid().unwrap(), header.gid().unwrap()),
            mtime: header.mtime().unwrap(),
            bytes,
        }
    });
    entries.collect()
}

fn image(files: Vec<File>) -> Image {
    Image {
        reference: REFERENCE.to_owned(),
        platform: Platform {
            os: "linux".to_owned(),
            architecture: "amd64".to_owned(),
            variant: None,
        },
        config: RunConfig {
            entrypoint: vec!["/pause".to_owned()],
            cmd: Vec::new(),
            env: vec!["PATH=/".to_owned()],
            user: Some("65535:65535".to_owned()),
        },
        files,
    }
}

fn file(path: &str, source: Source, mode: u32) -> File {
    File {
        path: path.to_owned(),
        source,
        mode,
    }
}

fn pause_files() -> Vec<File> {
    vec![file(
        "/pause",
        Source::Bytes(b"\x7fELF pause".to_vec()),
        0o755,
    )]
}

fn json(entries: &[Entry], path: &str) -> Value {
    let entry = entries.iter().find(|e| e.path == path).unwrap();
    serde_json::from_slice(&entry.bytes).unwrap()
}

fn blob<'a>(entries: &'a [Entry], digest: &Value) -> &'a Entry {
    let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    let path = format!("blobs/sha256/{hex}");
    entries.iter().find(|e| e.path == path).unwrap()
}

#[test]
fn the_archive_is_an_oci_layout_whose_digests_name_their_content() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("images/pause.tar");
    let manifest_digest = write_oci_archive(&image(pause_files()), &out).unwrap();
    let entries = read_tar(std::fs::File::open(&out).unwrap());

    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(paths[5..], ["index.json", "oci-layout"]);
    assert!(paths[2..5].is_sorted(), "{paths:?}");
    for entry in &entries {
        assert_eq!((entry.owner, entry.mtime), ((0, 0), 0), "{}", entry.path);
        if let Some(hex) = entry
            .path
            .strip_prefix("blobs/sha256/")
            .filter(|h| !h.is_empty())
        {
            assert_eq!(format!("{:x}", Sha256::digest(&entry.bytes)), hex);
        }
    }
    assert_eq!(
        json(&entries, "oci-layout"),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );

    let index = json(&entries, "index.json");
    let descriptor = &index["manifests"][0];
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(descriptor["digest"], manifest_digest.as_str());
    assert_eq!(
        descriptor["annotations"]["io.containerd.image.name"],
        REFERENCE
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"],
        REFERENCE
    );
    assert_eq!(
        descriptor["platform"],
        serde_json::json!({"architecture": "amd64", "os": "linux"})
    );

    let manifest_entry = blob(&entries, &descriptor["digest"]);
    assert_eq!(descriptor["size"], manifest_entry.bytes.len());
    let manifest: Value = serde_json::from_slice(&manifest_entry.bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], descriptor["mediaType"]);
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(layer["size"], blob(&entries, &layer["digest"]).bytes.len());
    let config: Value =
        serde_json::from_slice(&blob(&entries, &manifest["config"]["digest"]).bytes).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([layer["digest"]])
    );
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    assert_eq!(
        config["config"],
        serde_json::json!({"User": "65535:65535", "Env": ["PATH=/"], "Entrypoint": ["/pause"]})
    );
}

#[test]
fn the_layer_holds_the_files_below_their_directories_with_fixed_owner_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let binary = tmp.path().join("coredns");
    std::fs::write(&binary, b"coredns binary").unwrap();
    let files = vec![
        file(
            "/etc/coredns/Corefile",
            Source::Bytes(b".:53 {}".to_vec()),
            0o644,
        ),
        file("/bin/coredns", Source::Path(binary), 0o755),
    ];
    let out = tmp.path().join("coredns.tar");
    write_oci_archive(&image(files), &out).unwrap();
    let entries = read_tar(std::fs::File::open(&out).unwrap());
    let manifest = blob(
        &entries,
        &json(&entries, "index.json")["manifests"][0]["digest"],
    );
    let manifest: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let layer = read_tar(
        blob(&entries, &manifest["layers"][0]["digest"])
            .bytes
            .as_slice(),
    );

    let dir = |path: &str| Entry {
        path: path.to_owned(),
        kind: tar::EntryType::Directory,
        mode: 0o755,
        owner: (0, 0),
        mtime: 0,
        bytes: Vec::new(),
    };
    let regular = |path: &str, mode: u32, bytes: &[u8]| Entry {
        kind: tar::EntryType::Regular,
        mode,
        bytes: bytes.to_vec(),
        ..dir(path)
    };
    assert_eq!(
        layer,
        [
            dir("bin/"),
            regular("bin/coredns", 0o755, b"coredns binary"),
            dir("etc/"),
            dir("etc/coredns/"),
            regular("etc/coredns/Corefile", 0o644, b".:53 {}"),
        ]
    );
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("pause");
    std::fs::write(&source, b"\x7fELF pause").unwrap();
    let from_bytes = [
        file("/pause", Source::Bytes(b"\x7fELF pause".to_vec()), 0o755),
        file("/etc/a", Source::Bytes(b"a".to_vec()), 0o644),
    ];
    let from_path_reordered = vec![
        file("etc/a", Source::Bytes(b"a".to_vec()), 0o644),
        file("pause", Source::Path(source), 0o755),
    ];
    let first = tmp.path().join("first.tar");
    let second = tmp.path().join("second.tar");
    let digest = write_oci_archive(&image(from_bytes.to_vec()), &first).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        write_oci_archive(&image(from_path_reordered), &second).unwrap(),
        digest
    );
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap());

    let mut other = image(from_bytes.to_vec());
    other.config.cmd = vec!["-v".to_owned()];
    assert_ne!(write_oci_archive(&other, &second).unwrap(), digest);
}

#[test]
fn references_without_domain_or_tag_are_refused() {
    for good in [
        REFERENCE,
        "localhost/x:1",
        "k0x.io:5000/a/b:c",
        "k0x.io/p@sha256:ab12",
    ] {
        check_reference(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "pause:3.10",
        "pause",
        "k0x.io/pause",
        "k0x.io/Pause:1",
        "k0x.io/:1",
        "k0x.io/p:",
        "k0x.io/p:a b",
    ] {
        let err = check_reference(bad).unwrap_err();
        assert!(matches!(err, Error::Reference { .. }), "{bad}: {err}");
    }
    let mut unnamed = image(pause_files());
    unnamed.reference = "pause:3.10".to_owned();
    let err = write_oci_archive(&unnamed, Path::new("never-written.tar")).unwrap_err();
    assert!(err.to_string().contains("has no domain"), "{err}");
}

#[test]
fn paths_that_are_not_plain_or_clash_are_refused() {
    let bytes = || Source::Bytes(Vec::new());
    let cases = [
        (vec![file("/", bytes(), 0o644)], "not a plain path"),
        (vec![file("/a/../b", bytes(), 0o644)], "not a plain path"),
        (vec![file("a//b", bytes(), 0o644)], "not a plain path"),
        (
            vec![file("/a", bytes(), 0o644), file("a", bytes(), 0o644)],
            "appears twice",
        ),
        (
            vec![file("/a", bytes(), 0o644), file("/a/b", bytes(), 0o644)],
            "directory of another file",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (files, reason) in cases {
        let err = write_oci_archive(&image(files), &tmp.path().join("x.tar")).unwrap_err();
        assert!(err.to_string().contains(reason), "{err}");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn a_missing_source_fails_naming_it_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-binary");
    let files = vec![file("/bin/coredns", Source::Path(missing.clone()), 0o755)];
    let err = write_oci_archive(&image(files), &tmp.path().join("coredns.tar")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("adding /bin/coredns from "), "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
