//! Finding the payload and reading it as a stream.
//!
//! The payload is appended to the linked k0x binary, followed by a fixed 96-byte trailer:
//!
//! ```text
//! offset  size  field
//!      0     8  payload offset in the file (u64, little endian)
//!      8     8  payload length (u64, little endian)
//!     16    32  sha256 of the payload bytes
//!     48    32  sha256 of the payload's manifest.json
//!     80     4  trailer version (u32, little endian) = 1
//!     84     4  reserved, zero
//!     88     8  magic "K0XPAYLD"
//! ```
//!
//! The trailer sits at the very end so `/proc/self/exe` can be checked by reading 96 bytes.
//! `strip` and re-linking rewrite the ELF and drop anything after it; such a binary simply has no
//! trailer, and every caller says so in one line with the way out ([`crate::NO_PAYLOAD_HINT`]).
//!
//! `K0X_PAYLOAD=FILE` points at a payload for development: either a bare `payload.tar.zst` (no
//! payload-level digest; every file is still checked against the manifest) or any file carrying a
//! trailer. A FIFO works too and is read strictly sequentially.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::error::{AssetsError, Result};
use crate::manifest::{MAX_MANIFEST_BYTES, PAYLOAD_MANIFEST_NAME, PayloadManifest};

/// Environment variable naming a payload file to use instead of the embedded one.
pub const PAYLOAD_ENV: &str = "K0X_PAYLOAD";
const MAGIC: &[u8; 8] = b"K0XPAYLD";
const TRAILER_VERSION: u32 = 1;
/// Size of the trailer at the end of a binary that carries a payload.
pub const TRAILER_LEN: u64 = 96;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Where a payload was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Appended to the running k0x binary.
    Embedded,
    /// Named by `K0X_PAYLOAD`.
    Environment,
    /// Opened explicitly by path.
    File,
}

/// A located payload: a byte range of a file plus the digests that guard it.
#[derive(Debug, Clone)]
pub struct Payload {
    path: PathBuf,
    offset: u64,
    /// `None` for a FIFO, whose length is only known once it is read.
    length: Option<u64>,
    sha256: Option<[u8; 32]>,
    manifest_sha256: Option<[u8; 32]>,
    origin: Origin,
}

/// The largest zstd window a payload may use: `zstd --long` (2^27 = 128 MiB, its default), so the
/// Go binaries' shared code compresses across files while extraction memory stays bounded.
pub const LONG_WINDOW_LOG: u32 = 27;

impl Payload {
    /// The payload of this process: `K0X_PAYLOAD` if set, otherwise the one appended to
    /// `/proc/self/exe`. `Ok(None)` means the binary carries none.
    pub fn locate() -> Result<Option<Self>> {
        if let Some(path) = std::env::var_os(PAYLOAD_ENV).filter(|p| !p.is_empty()) {
            let mut payload = Self::open(Path::new(&path))?;
            payload.origin = Origin::Environment;
            return Ok(Some(payload));
        }
        Self::embedded_in(&own_executable())
    }

    /// Like [`Payload::locate`], but a missing payload is an error that says how to get one.
    pub fn require() -> Result<Self> {
        Self::locate()?.ok_or_else(AssetsError::no_payload)
    }

    /// The payload appended to `binary`, or `None` when it has no trailer.
    pub fn embedded_in(binary: &Path) -> Result<Option<Self>> {
        let mut file = File::open(binary).map_err(|e| AssetsError::io("cannot open", binary, e))?;
        let len = file
            .metadata()
            .map_err(|e| AssetsError::io("cannot stat", binary, e))?
            .len();
        if len < TRAILER_LEN {
            return Ok(None);
        }
        let mut raw = [0u8; TRAILER_LEN as usize];
        file.seek(SeekFrom::Start(len - TRAILER_LEN))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(|e| AssetsError::io("cannot read", binary, e))?;
        if &raw[88..96] != MAGIC {
            return Ok(None);
        }
        let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let digest_at = |at: usize| -> [u8; 32] { raw[at..at + 32].try_into().expect("32 bytes") };
        let version = u32::from_le_bytes(raw[80..84].try_into().expect("4 bytes"));
        if version != TRAILER_VERSION {
            return Err(AssetsError::corrupt(
                binary,
                format!("trailer version {version} is not understood by this k0x"),
            ));
        }
        let (offset, length) = (u64_at(0), u64_at(8));
        if offset
            .checked_add(length)
            .and_then(|end| end.checked_add(TRAILER_LEN))
            != Some(len)
        {
            return Err(AssetsError::corrupt(
                binary,
                "the trailer does not match the file size (truncated or modified)",
            ));
        }
        Ok(Some(Self {
            path: binary.to_path_buf(),
            offset,
            length: Some(length),
            sha256: Some(digest_at(16)),
            manifest_sha256: Some(digest_at(48)),
            origin: Origin::File,
        }))
    }

    /// A payload file: a binary with a trailer, a bare `payload.tar.zst`, or a FIFO streaming one.
    pub fn open(path: &Path) -> Result<Self> {
        let meta =
            fs::metadata(path).map_err(|e| AssetsError::io("cannot open payload", path, e))?;
        let bare = |length| Self {
            path: path.to_path_buf(),
            offset: 0,
            length,
            sha256: None,
            manifest_sha256: None,
            origin: Origin::File,
        };
        if meta.file_type().is_fifo() {
            return Ok(bare(None));
        }
        if let Some(payload) = Self::embedded_in(path)? {
            return Ok(payload);
        }
        let mut magic = [0u8; 4];
        let starts_like_zstd = File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && magic == ZSTD_MAGIC;
        if !starts_like_zstd {
            return Err(AssetsError::corrupt(
                path,
                "it is neither a tar.zst payload nor a binary carrying one",
            ));
        }
        Ok(bare(Some(meta.len())))
    }

    /// The file holding the payload.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the payload was found.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Compressed size, when known.
    pub fn len(&self) -> Option<u64> {
        self.length
    }

    /// True when the payload is known to hold no bytes.
    pub fn is_empty(&self) -> bool {
        self.length == Some(0)
    }

    /// Reads only the manifest (the first tar entry): cheap, used by reports and warm starts.
    pub fn read_manifest(&self) -> Result<PayloadManifest> {
        let mut stream = PayloadStream::open(self)?;
        let mut entries = stream
            .archive
            .entries()
            .map_err(|e| payload_read_error(self, &e))?;
        let manifest = read_manifest_entry(&mut entries, self)?;
        Ok(manifest.0)
    }

    pub(crate) fn expected_manifest_sha256(&self) -> Option<&[u8; 32]> {
        self.manifest_sha256.as_ref()
    }
}

/// The path of the running executable (what `/proc/self/exe` points at).
pub fn own_executable() -> PathBuf {
    fs::read_link("/proc/self/exe")
        .or_else(|_| std::env::current_exe())
        .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

/// The payload bytes, hashed as they are read so the payload digest costs no second pass.
struct HashingReader {
    inner: io::Take<File>,
    hasher: Sha256,
    read: u64,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Decompressed bytes travel between threads in chunks of this size...
const CHUNK: usize = 256 << 10;
/// ...with at most this many in flight, bounding the memory the pipeline adds to 1 MiB.
const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = io::Result<Vec<u8>>;

/// A payload opened for streaming. One thread reads the file range, hashes it and decompresses;
/// the caller's thread parses tar, hashes and writes files. The two halves cost about the same,
/// so the pipeline runs at the speed of `zstd -dc | tar -x`, which is the same split.
pub(crate) struct PayloadStream<'p> {
    pub archive: tar::Archive<ChunkReader>,
    payload: &'p Payload,
    decoder: std::thread::JoinHandle<Result<()>>,
}

impl<'p> PayloadStream<'p> {
    pub fn open(payload: &'p Payload) -> Result<Self> {
        let path = &payload.path;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| AssetsError::io("cannot open payload", path, e))?;
        if payload.offset > 0 {
            file.seek(SeekFrom::Start(payload.offset))
                .map_err(|e| AssetsError::io("cannot read payload", path, e))?;
        }
        let reader = HashingReader {
            inner: file.take(payload.length.unwrap_or(u64::MAX)),
            hasher: Sha256::new(),
            read: 0,
        };
        let (chunks, receiver) = mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
        let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
        let owned = payload.clone();
        let decoder = std::thread::Builder::new()
            .name("k0x-payload-decode".into())
            .spawn(move || decode(&owned, reader, &chunks, &recycled))
            .map_err(|e| AssetsError::io("cannot start decompressing", path, e))?;
        let reader = ChunkReader {
            chunks: receiver,
            recycle,
            current: Vec::new(),
            position: 0,
        };
        Ok(Self {
            archive: tar::Archive::new(reader),
            payload,
            decoder,
        })
    }

    /// Reads what is left (tar padding, the zstd epilogue, any trailing bytes); the decoding
    /// thread then checks the payload's length and digest. Call after the last entry.
    pub fn finish(self) -> Result<()> {
        let mut rest = self.archive.into_inner();
        let drained = io::copy(&mut rest, &mut io::sink());
        let decoded = self.decoder.join().unwrap_or_else(|_| {
            Err(AssetsError::corrupt(
                &self.payload.path,
                "the decompressing thread panicked",
            ))
        });
        decoded?;
        drained.map_err(|e| payload_read_error(self.payload, &e))?;
        Ok(())
    }
}

/// The decoding thread: decompress into chunks until the end, then verify length and digest.
/// Stops quietly when the reader is dropped (a warm start needs only the manifest).
fn decode(
    payload: &Payload,
    reader: HashingReader,
    chunks: &mpsc::SyncSender<Chunk>,
    recycled: &mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    let fail = |err: io::Error| {
        let forwarded = io::Error::new(err.kind(), err.to_string());
        let _ = chunks.send(Err(forwarded));
        payload_read_error(payload, &err)
    };
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 17, reader))
            .map_err(fail)?;
    decoder.window_log_max(LONG_WINDOW_LOG).map_err(fail)?;
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        chunk.resize(CHUNK, 0);
        let filled = fill(&mut decoder, &mut chunk).map_err(fail)?;
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        if chunks.send(Ok(chunk)).is_err() {
            return Ok(());
        }
    }
    let mut raw = decoder.finish().into_inner();
    io::copy(&mut raw, &mut io::sink()).map_err(fail)?;
    let problem = if payload.length.is_some_and(|expected| raw.read != expected) {
        Some(format!(
            "it ends after {} of {} bytes (truncated)",
            raw.read,
            payload.length.unwrap_or_default()
        ))
    } else if payload
        .sha256
        .is_some_and(|expected| <[u8; 32]>::from(raw.hasher.finalize()) != expected)
    {
        Some("its sha256 does not match the trailer (corrupted on disk or in transit)".to_owned())
    } else {
        None
    };
    match problem {
        Some(what) => Err(AssetsError::corrupt(&payload.path, what)),
        None => Ok(()),
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The consuming end of the pipeline, read by tar.
pub(crate) struct ChunkReader {
    chunks: mpsc::Receiver<Chunk>,
    recycle: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.send(used);
                    self.position = 0;
                }
                Ok(Err(err)) => return Err(err),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

pub(crate) fn payload_read_error(payload: &Payload, err: &io::Error) -> AssetsError {
    let what = if err.kind() == io::ErrorKind::UnexpectedEof {
        "it ends early (truncated)".to_owned()
    } else {
        format!("decompression failed ({err})")
    };
    AssetsError::corrupt(&payload.path, what)
}

/// Reads the first entry, which must be `manifest.json`, and checks it against the trailer.
pub(crate) fn read_manifest_entry<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    payload: &Payload,
) -> Result<(PayloadManifest, [u8; 32])> {
    let path = &payload.path;
    let mut entry = entries
        .next()
        .ok_or_else(|| AssetsError::corrupt(path, "it holds no entries"))?
        .map_err(|e| payload_read_error(payload, &e))?;
    let name = entry
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name != PAYLOAD_MANIFEST_NAME || entry.size() > MAX_MANIFEST_BYTES {
        return Err(AssetsError::corrupt(
            path,
            format!("its first entry is {name:?}, not a {PAYLOAD_MANIFEST_NAME}"),
        ));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| payload_read_error(payload, &e))?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if let Some(expected) = payload.expected_manifest_sha256()
        && *expected != digest
    {
        return Err(AssetsError::corrupt(
            path,
            "its manifest does not match the trailer's digest",
        ));
    }
    Ok((PayloadManifest::parse(&bytes, path)?, digest))
}

/// Appends `payload` (a bare tar.zst from `embedded-bins/stage`) to `target` and writes the result
/// to `out` atomically (mode 0755). A payload already attached to `target` is replaced.
pub fn attach(target: &Path, payload_file: &Path, out: &Path) -> Result<AttachReport> {
    let payload = Payload::open(payload_file)?;
    if payload.sha256.is_some() || payload.len().is_none() {
        return Err(AssetsError::corrupt(
            payload_file,
            "attach wants a bare payload.tar.zst from embedded-bins/stage",
        ));
    }
    let (manifest, manifest_sha256) = {
        let mut stream = PayloadStream::open(&payload)?;
        let mut entries = stream
            .archive
            .entries()
            .map_err(|e| payload_read_error(&payload, &e))?;
        read_manifest_entry(&mut entries, &payload)?
    };
    let binary_len = match Payload::embedded_in(target)? {
        Some(existing) => existing.offset,
        None => fs::metadata(target)
            .map_err(|e| AssetsError::io("cannot stat", target, e))?
            .len(),
    };
    let tmp = out.with_extension(format!("attach-{}", std::process::id()));
    let written = write_attached(target, binary_len, payload_file, &tmp, manifest_sha256)
        .and_then(|report| {
            fs::rename(&tmp, out)?;
            Ok(report)
        })
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            AssetsError::io("cannot write", out, e)
        })?;
    Ok(AttachReport {
        files: manifest.files.len(),
        ..written
    })
}

/// What [`attach`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachReport {
    pub binary_bytes: u64,
    pub payload_bytes: u64,
    pub payload_sha256: String,
    pub files: usize,
}

fn write_attached(
    target: &Path,
    binary_len: u64,
    payload_file: &Path,
    tmp: &Path,
    manifest_sha256: [u8; 32],
) -> io::Result<AttachReport> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(tmp)?;
    let copied = io::copy(&mut File::open(target)?.take(binary_len), &mut out)?;
    if copied != binary_len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "target shrank while copying",
        ));
    }
    let mut hasher = Sha256::new();
    let mut payload = File::open(payload_file)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut payload_len = 0u64;
    loop {
        let n = payload.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        payload_len += n as u64;
    }
    let sha: [u8; 32] = hasher.finalize().into();
    let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
    trailer.extend_from_slice(&binary_len.to_le_bytes());
    trailer.extend_from_slice(&payload_len.to_le_bytes());
    trailer.extend_from_slice(&sha);
    trailer.extend_from_slice(&manifest_sha256);
    trailer.extend_from_slice(&TRAILER_VERSION.to_le_bytes());
    trailer.extend_from_slice(&0u32.to_le_bytes());
    trailer.extend_from_slice(MAGIC);
    out.write_all(&trailer)?;
    out.set_permissions(fs::Permissions::from_mode(0o755))?;
    out.sync_all()?;
    Ok(AttachReport {
        binary_bytes: binary_len,
        payload_bytes: payload_len,
        payload_sha256: hex::encode(sha),
        files: 0,
    })
}
