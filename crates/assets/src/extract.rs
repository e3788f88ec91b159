//! Verified, streamed, crash-safe extraction of the payload into `<data-dir>/bin`.
//!
//! How the guarantees are met:
//! - **Streaming, one pass.** The payload is read once: file range -> sha256 of the compressed
//!   bytes -> zstd -> tar. Nothing holds the whole payload; peak memory is the zstd window plus
//!   a copy buffer.
//! - **Integrity before anything changes.** Every file needing an update is written to a staging
//!   directory inside `bin/` (same file system, so the final rename is atomic) and hashed while it
//!   streams; its writeback starts as soon as it is written. Only when every staged file matched
//!   the manifest *and* the whole payload matched the trailer's digest are the staged files
//!   fsync'd and renamed into place. A corrupt, truncated or
//!   missing payload, a full disk or a crash therefore never replaces a good binary.
//! - **Cheap warm starts.** `bin/.manifest` records sha256, size and mtime of each verified file.
//!   A file whose size and mtime still match its record is trusted without re-hashing, so a warm
//!   start reads only the payload's manifest (a few KiB of the stream). A file changed on disk no
//!   longer matches its record, is re-hashed and, if its content differs, replaced.
//!   (Someone who rewrites a binary *and* restores its size and mtime defeats this check; that
//!   takes root, who could equally replace k0x itself.)
//! - **One binary, several names.** The Kubernetes multi-call binary is staged under each of its
//!   names as hard links, which tar stores once: a link entry becomes a hard link to its target in
//!   staging (or to the intact target in `bin/`), and its manifest entry must carry the target's
//!   sha256. Processes running any of the names then share one copy of the code in memory.
//! - **Concurrency.** An exclusive flock on `bin/.lock` serializes extractions; the staging
//!   directory of a process killed mid-way is removed by the next one under that lock.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k0x_config::layout::{BIN_DIR_MODE, ensure_dir};
use k0x_config::{DataDir, fsutil};
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::error::{AssetsError, Result, is_no_space};
use crate::lock::HOST_ARCH;
use crate::manifest::{BinManifest, BinRecord, PayloadFile, PayloadManifest};
use crate::payload::{Payload, PayloadStream, payload_read_error, read_manifest_entry};

/// Mode of every extracted binary.
pub const BINARY_MODE: u32 = 0o750;
const LOCK_NAME: &str = ".lock";
const STAGING_PREFIX: &str = ".staging-";
const COPY_BUFFER: usize = 1 << 18;

/// How extraction reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A progress bar on stderr when it is a terminal and extraction takes noticeable time;
    /// otherwise one log line per file.
    #[default]
    Auto,
    /// One log line per extracted file.
    Lines,
    /// Nothing but the final result.
    Silent,
}

/// What [`extract`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Files written (new, changed in the payload, or modified on disk).
    pub extracted: Vec<String>,
    /// Files already present with the right content.
    pub unchanged: Vec<String>,
    /// Of `unchanged`, those whose stat no longer matched `bin/.manifest` and were re-hashed.
    pub rehashed: Vec<String>,
    /// Bytes written to disk.
    pub bytes_written: u64,
    pub elapsed: Duration,
}

/// Brings `<data-dir>/bin` in line with `payload`. See the module docs for the guarantees.
///
/// The steps: lock `bin/`, plan from the payload's manifest (reading only), give intact files
/// their mode back, stream the planned files into staging, verify the whole payload, commit the
/// staged files, and record them in `bin/.manifest`.
pub fn extract(payload: &Payload, data: &DataDir, progress: Progress) -> Result<ExtractReport> {
    let started = Instant::now();
    let bin = prepare_bin_dir(data)?;
    let _lock = lock_bin_dir(&bin)?;
    remove_stale_staging(&bin);

    let mut stream = PayloadStream::open(payload)?;
    let mut entries = stream
        .archive
        .entries()
        .map_err(|e| payload_read_error(payload, &e))?;
    let manifest = host_manifest(&mut entries, payload)?;
    let manifest_path = data.bin_manifest();
    let previous = BinManifest::load(&manifest_path);
    let plan = plan(&bin, &manifest, &previous)?;

    let mut report = ExtractReport {
        unchanged: plan
            .unchanged
            .iter()
            .map(|(name, _)| name.clone())
            .collect(),
        rehashed: plan.rehashed.clone(),
        ..ExtractReport::default()
    };
    let mut records = BinManifest {
        files: plan.unchanged.iter().cloned().collect(),
    };
    fix_modes(&bin, &plan.wrong_mode)?;
    if !plan.to_extract.is_empty() {
        let mut staging = stage(&bin, &mut entries, &manifest, &plan, payload, progress)?;
        stream.finish()?;
        staging.sync_all()?;
        for (name, record) in commit(&staging, &bin, &manifest, &plan, payload)? {
            if !staging.linked.contains(&name) {
                report.bytes_written += record.size;
            }
            report.extracted.push(name.clone());
            records.files.insert(name, record);
        }
    }
    if records != previous {
        records.save(&manifest_path)?;
    }
    report.elapsed = started.elapsed();
    log_outcome(&report, &bin);
    Ok(report)
}

/// The payload's manifest, refused when its binaries are for another architecture.
fn host_manifest<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    payload: &Payload,
) -> Result<PayloadManifest> {
    let (manifest, _) = read_manifest_entry(entries, payload)?;
    if manifest.arch != HOST_ARCH {
        return Err(AssetsError::corrupt(
            payload.path(),
            format!(
                "it holds {} binaries but this k0x runs on {HOST_ARCH}",
                manifest.arch
            ),
        ));
    }
    Ok(manifest)
}

/// Streams the planned files into a new staging directory, each hashed as it is written; the
/// other entries are read past, so the whole payload passes through its digest.
fn stage<R: Read>(
    bin: &Path,
    entries: &mut tar::Entries<'_, R>,
    manifest: &PayloadManifest,
    plan: &Plan,
    payload: &Payload,
    progress: Progress,
) -> Result<Staging> {
    let mut contents = BTreeSet::new();
    let needed: u64 = plan
        .to_extract
        .iter()
        .filter_map(|name| manifest.file(name))
        .filter(|file| contents.insert(&file.sha256))
        .map(|file| file.size)
        .sum();
    let mut staging = Staging::create(bin, needed)?;
    let mut meter = Meter::new(progress, needed);
    for entry in entries {
        let mut entry = entry.map_err(|e| payload_read_error(payload, &e))?;
        let file = listed_file(&entry, manifest, payload)?;
        if plan.to_extract.contains(&file.name) {
            match link_target(&entry, file, manifest, payload)? {
                Some(target) => {
                    let source = if plan.to_extract.contains(&target.name) {
                        staging.dir.join(&target.name)
                    } else {
                        bin.join(&target.name)
                    };
                    staging.link(&source, file, payload)?;
                    meter.file_done(&file.name, file.size);
                }
                None => staging.write_verified(&mut entry, file, payload, &mut meter)?,
            }
        } else {
            io::copy(&mut entry, &mut io::sink()).map_err(|e| payload_read_error(payload, &e))?;
        }
    }
    meter.finish();
    Ok(staging)
}

/// Renames every planned file from staging into `bin/`, once all of them are there; returns
/// the record of each for `bin/.manifest`.
fn commit(
    staging: &Staging,
    bin: &Path,
    manifest: &PayloadManifest,
    plan: &Plan,
    payload: &Payload,
) -> Result<Vec<(String, BinRecord)>> {
    if let Some(missing) = plan.to_extract.iter().find(|name| !staging.holds(name)) {
        return Err(AssetsError::corrupt(
            payload.path(),
            format!("{missing} is listed in its manifest but missing from it"),
        ));
    }
    let mut committed = Vec::with_capacity(plan.to_extract.len());
    for name in &plan.to_extract {
        let file = manifest
            .file(name)
            .expect("planned files come from the manifest");
        let meta = staging.commit(name, bin)?;
        committed.push((name.clone(), BinRecord::verified(file, &meta)));
    }
    sync_dir(bin)?;
    Ok(committed)
}

/// Gives files that are in place but lost their mode [`BINARY_MODE`] back.
fn fix_modes(bin: &Path, names: &[String]) -> Result<()> {
    for name in names {
        let path = bin.join(name);
        fs::set_permissions(&path, fs::Permissions::from_mode(BINARY_MODE))
            .map_err(|e| AssetsError::io("cannot chmod", &path, e))?;
    }
    Ok(())
}

/// The path of component `name` in `bin/`, if it is there.
pub fn binary_path(data: &DataDir, name: &str) -> Option<PathBuf> {
    let path = data.bin().join(name);
    path.is_file().then_some(path)
}

fn log_outcome(report: &ExtractReport, bin: &Path) {
    if report.extracted.is_empty() {
        tracing::debug!(
            bin = %bin.display(),
            unchanged = report.unchanged.len(),
            rehashed = report.rehashed.len(),
            "components up to date"
        );
    } else {
        tracing::info!(
            bin = %bin.display(),
            extracted = report.extracted.len(),
            unchanged = report.unchanged.len(),
            mib = report.bytes_written >> 20,
            ms = report.elapsed.as_millis() as u64,
            "components extracted"
        );
    }
}

/// Creates the data dir (0700) and `bin/` (0750) and refuses a noexec mount.
fn prepare_bin_dir(data: &DataDir) -> Result<PathBuf> {
    let bin = data.bin();
    data.create()
        .and_then(|()| ensure_dir(&bin, BIN_DIR_MODE))
        .map_err(|e| {
            if is_no_space(&e) {
                AssetsError::NoSpace {
                    dir: bin.clone(),
                    needed_mib: 1,
                }
            } else {
                AssetsError::io("cannot create", &bin, e)
            }
        })?;
    let flags = nix::sys::statvfs::statvfs(&bin)
        .map_err(|e| AssetsError::io("cannot statvfs", &bin, e.into()))?
        .flags();
    if flags.contains(nix::sys::statvfs::FsFlags::ST_NOEXEC) {
        return Err(AssetsError::NoExec {
            mount: mount_point_of(&bin),
            dir: bin,
        });
    }
    Ok(bin)
}

/// The mount point holding `path` (longest matching entry of /proc/self/mounts).
fn mount_point_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|mount| mount.replace("\\040", " "))
        .filter(|mount| path.starts_with(mount))
        .max_by_key(|mount| mount.len())
        .map(|mount| format!("mounted at {mount}"))
        .unwrap_or_else(|| "mount flags say noexec".to_owned())
}

/// Takes the exclusive extraction lock on `bin/.lock`, waiting (and saying so) if another k0x
/// holds it.
fn lock_bin_dir(bin: &Path) -> Result<Flock<File>> {
    let path = bin.join(LOCK_NAME);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| AssetsError::io("cannot open", &path, e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            tracing::info!(lock = %path.display(), "another k0x is extracting components; waiting for it");
            Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| AssetsError::io("cannot lock", &path, e.into()))
        }
        Err((_, e)) => Err(AssetsError::io("cannot lock", &path, e.into())),
    }
}

/// Removes staging directories left by a k0x that died mid-extraction (we hold the lock).
fn remove_stale_staging(bin: &Path) {
    let Ok(entries) = fs::read_dir(bin) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            tracing::debug!(path = %entry.path().display(), "removing an interrupted extraction");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Which manifest files are already in place and which must be (re)written.
struct Plan {
    unchanged: Vec<(String, BinRecord)>,
    rehashed: Vec<String>,
    /// Of `unchanged`, those whose mode is not [`BINARY_MODE`].
    wrong_mode: Vec<String>,
    to_extract: BTreeSet<String>,
}

/// Compares `bin/` with the payload's manifest, re-hashing files whose stat no longer matches
/// their record; changes nothing.
fn plan(bin: &Path, manifest: &PayloadManifest, previous: &BinManifest) -> Result<Plan> {
    let mut plan = Plan {
        unchanged: Vec::new(),
        rehashed: Vec::new(),
        wrong_mode: Vec::new(),
        to_extract: BTreeSet::new(),
    };
    for file in &manifest.files {
        let path = bin.join(&file.name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            plan.to_extract.insert(file.name.clone());
            continue;
        };
        let record = previous.files.get(&file.name);
        let trusted = record.is_some_and(|r| r.sha256 == file.sha256 && r.matches_stat(&meta));
        let intact = trusted
            || (meta.is_file() && meta.len() == file.size && {
                plan.rehashed.push(file.name.clone());
                hash_file(&path)? == file.sha256
            });
        if !intact {
            plan.to_extract.insert(file.name.clone());
            continue;
        }
        if meta.permissions().mode() & 0o7777 != BINARY_MODE {
            plan.wrong_mode.push(file.name.clone());
        }
        let record = match record {
            Some(r) if trusted => BinRecord {
                version: file.version.clone(),
                source: file.source.clone(),
                ..r.clone()
            },
            _ => BinRecord::verified(file, &meta),
        };
        plan.unchanged.push((file.name.clone(), record));
    }
    plan.rehashed.retain(|name| !plan.to_extract.contains(name));
    Ok(plan)
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| AssetsError::io("cannot read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| AssetsError::io("cannot read", path, e))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// The manifest entry a tar entry claims to be; anything unlisted, or neither a regular file nor a
/// hard link, is refused.
fn listed_file<'m, R: Read>(
    entry: &tar::Entry<'_, R>,
    manifest: &'m PayloadManifest,
    payload: &Payload,
) -> Result<&'m PayloadFile> {
    let name = entry
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = entry.header().entry_type();
    let file = manifest
        .file(&name)
        .filter(|_| kind.is_file() || kind.is_hard_link())
        .ok_or_else(|| {
            AssetsError::corrupt(
                payload.path(),
                format!("it holds {name:?}, which its manifest does not list"),
            )
        })?;
    if kind.is_file() && entry.size() != file.size {
        return Err(AssetsError::corrupt(
            payload.path(),
            format!(
                "{name} is {} bytes but its manifest says {}",
                entry.size(),
                file.size
            ),
        ));
    }
    Ok(file)
}

/// The manifest entry a hard-link entry points at (`None` for a regular file); refused unless the
/// manifest gives both names the same content.
fn link_target<'m, R: Read>(
    entry: &tar::Entry<'_, R>,
    file: &PayloadFile,
    manifest: &'m PayloadManifest,
    payload: &Payload,
) -> Result<Option<&'m PayloadFile>> {
    if !entry.header().entry_type().is_hard_link() {
        return Ok(None);
    }
    let target = entry
        .link_name()
        .ok()
        .flatten()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    match manifest.file(&target) {
        Some(target) if target.sha256 == file.sha256 && target.size == file.size => {
            Ok(Some(target))
        }
        _ => Err(AssetsError::corrupt(
            payload.path(),
            format!(
                "{} links to {target:?}, which its manifest does not list with the same sha256",
                file.name
            ),
        )),
    }
}

/// A private directory inside `bin/` where files are verified before they are renamed into place;
/// removed on drop, so every failure leaves `bin/` as it was.
struct Staging {
    dir: PathBuf,
    needed_mib: u64,
    /// Staged files, fsync'd together once the whole payload has been verified.
    written: Vec<File>,
    /// Names staged as hard links to another name's content.
    linked: BTreeSet<String>,
}

impl Staging {
    /// Refuses at once when the device cannot hold `needed` bytes, rather than half-way.
    fn create(bin: &Path, needed: u64) -> Result<Self> {
        let free =
            fsutil::available_bytes(bin).map_err(|e| AssetsError::io("cannot stat", bin, e))?;
        if free < needed {
            return Err(AssetsError::TooLittleSpace {
                dir: bin.to_path_buf(),
                free_mib: fsutil::mib(free),
                needed_mib: fsutil::mib(needed),
            });
        }
        let dir = bin.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        let staging = Self {
            dir,
            needed_mib: fsutil::mib(needed),
            written: Vec::new(),
            linked: BTreeSet::new(),
        };
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging.dir)
            .map_err(|e| staging.write_error(e))?;
        Ok(staging)
    }

    fn write_error(&self, err: io::Error) -> AssetsError {
        if is_no_space(&err) {
            AssetsError::NoSpace {
                dir: self.dir.parent().unwrap_or(&self.dir).to_path_buf(),
                needed_mib: self.needed_mib,
            }
        } else {
            AssetsError::io("cannot write", &self.dir, err)
        }
    }

    /// Streams `entry` into the staging dir, hashing as it goes; starts its writeback (the fsync
    /// comes in [`Staging::sync_all`]), then checks the digest.
    fn write_verified(
        &mut self,
        entry: &mut impl Read,
        file: &PayloadFile,
        payload: &Payload,
        meter: &mut Meter,
    ) -> Result<()> {
        let path = self.dir.join(&file.name);
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(BINARY_MODE)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| self.write_error(e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| payload_read_error(payload, &e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| self.write_error(e))?;
            meter.advance(n as u64);
        }
        start_writeback(&out);
        self.written.push(out);
        if hex::encode(hasher.finalize()) != file.sha256 {
            return Err(AssetsError::corrupt(
                payload.path(),
                format!("{} does not match the sha256 in its manifest", file.name),
            ));
        }
        meter.file_done(&file.name, file.size);
        Ok(())
    }

    /// Stages `file` as a hard link to `source`: its target, verified in staging or intact in
    /// `bin/`. A target that is not there yet came after the link in the payload.
    fn link(&mut self, source: &Path, file: &PayloadFile, payload: &Payload) -> Result<()> {
        match fs::hard_link(source, self.dir.join(&file.name)) {
            Ok(()) => {
                self.linked.insert(file.name.clone());
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(AssetsError::corrupt(
                payload.path(),
                format!("{} links to a file that comes after it", file.name),
            )),
            Err(err) => Err(self.write_error(err)),
        }
    }

    /// Makes every staged file durable before any of them is renamed into place. Their
    /// writeback started as each was written, so this mostly waits for what is still in flight.
    fn sync_all(&mut self) -> Result<()> {
        for file in std::mem::take(&mut self.written) {
            file.sync_all().map_err(|e| self.write_error(e))?;
        }
        Ok(())
    }

    fn holds(&self, name: &str) -> bool {
        self.dir.join(name).is_file()
    }

    /// Renames a verified file into `bin/`; returns its metadata for `bin/.manifest`.
    fn commit(&self, name: &str, bin: &Path) -> Result<fs::Metadata> {
        let target = bin.join(name);
        fs::rename(self.dir.join(name), &target)
            .and_then(|()| fs::metadata(&target))
            .map_err(|e| AssetsError::io("cannot install", &target, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Asks the kernel to start writing `file` back now, so the fsync before the renames finds most
/// of the data already on disk while decompression carried on.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is owned by `file`,
    // which outlives the call. A failure is harmless: the later fsync does the work instead.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AssetsError::io("cannot sync", dir, e))
}

/// Progress: a bar on a terminal once extraction has run for a moment, log lines otherwise.
struct Meter {
    bar: bool,
    lines: bool,
    total: u64,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Meter {
    const QUIET_PERIOD: Duration = Duration::from_millis(300);
    const REDRAW: Duration = Duration::from_millis(100);

    fn new(progress: Progress, total: u64) -> Self {
        let terminal = io::stderr().is_terminal();
        Self {
            bar: progress == Progress::Auto && terminal,
            lines: progress == Progress::Lines || (progress == Progress::Auto && !terminal),
            total: total.max(1),
            done: 0,
            started: Instant::now(),
            last_draw: None,
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.bar || self.started.elapsed() < Self::QUIET_PERIOD {
            return;
        }
        if self.last_draw.is_some_and(|at| at.elapsed() < Self::REDRAW) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let width = 30;
        let filled = (self.done * width / self.total) as usize;
        eprint!(
            "\rextracting components [{}{}] {:>3}% {}/{} MiB",
            "#".repeat(filled),
            ".".repeat(width as usize - filled.min(width as usize)),
            self.done * 100 / self.total,
            self.done >> 20,
            self.total >> 20
        );
    }

    fn file_done(&self, name: &str, size: u64) {
        if self.lines {
            tracing::info!(file = name, bytes = size, "extracted");
        }
    }

    fn finish(&self) {
        if self.last_draw.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Our own checks, independent of zstd's frame checksum: payloads are built here with a
    //! manifest or trailer that lies, which zstd cannot notice.
    use super::*;
    use crate::manifest::PayloadFile;

    fn payload_bytes(files: &[(&str, &[u8])], lie_about: Option<&str>) -> Vec<u8> {
        let manifest = PayloadManifest {
            format: 1,
            arch: HOST_ARCH.into(),
            mode: "from-system".into(),
            created: String::new(),
            files: files
                .iter()
                .map(|(name, bytes)| PayloadFile {
                    name: (*name).into(),
                    version: "1".into(),
                    lock_version: "1".into(),
                    sha256: if lie_about == Some(*name) {
                        "0".repeat(64)
                    } else {
                        hex::encode(Sha256::digest(bytes))
                    },
                    size: bytes.len() as u64,
                    source: "test".into(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut append = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, name, bytes).unwrap();
        };
        append(crate::manifest::PAYLOAD_MANIFEST_NAME, &json);
        for (name, bytes) in files {
            append(name, bytes);
        }
        zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()
    }

    fn attach_to_stub(dir: &Path, payload: &[u8]) -> PathBuf {
        let (stub, bare, out) = (dir.join("stub"), dir.join("p.tar.zst"), dir.join("k0x"));
        fs::write(&stub, b"\x7fELF not really").unwrap();
        fs::write(&bare, payload).unwrap();
        crate::payload::attach(&stub, &bare, &out).unwrap();
        out
    }

    #[test]
    fn a_file_not_matching_its_manifest_digest_is_never_installed() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let good = attach_to_stub(
            dir.path(),
            &payload_bytes(&[("a", b"one"), ("b", b"two")], None),
        );
        extract(&Payload::open(&good).unwrap(), &data, Progress::Silent).unwrap();
        fs::remove_file(data.bin().join("b")).unwrap();

        let lying = payload_bytes(&[("a", b"one"), ("b", b"TWO")], Some("b"));
        let bare = dir.path().join("lying.tar.zst");
        fs::write(&bare, lying).unwrap();
        let err = extract(&Payload::open(&bare).unwrap(), &data, Progress::Silent).unwrap_err();
        assert!(
            err.to_string().contains("b does not match the sha256"),
            "{err}"
        );
        assert!(!data.bin().join("b").exists());
        assert_eq!(fs::read(data.bin().join("a")).unwrap(), b"one");
    }

    #[test]
    fn a_payload_not_matching_the_trailer_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let binary = attach_to_stub(dir.path(), &payload_bytes(&[("a", b"one")], None));
        let mut bytes = fs::read(&binary).unwrap();
        let digest_at = bytes.len() - TRAILER_LEN_USIZE + 16;
        bytes[digest_at] ^= 1;
        fs::write(&binary, bytes).unwrap();
        let err = extract(&Payload::open(&binary).unwrap(), &data, Progress::Silent).unwrap_err();
        assert!(
            err.to_string().contains("does not match the trailer"),
            "{err}"
        );
        assert!(!data.bin().join("a").exists());
    }

    #[test]
    fn a_manifest_not_matching_the_trailer_is_refused_even_on_a_warm_start() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let binary = attach_to_stub(dir.path(), &payload_bytes(&[("a", b"one")], None));
        extract(&Payload::open(&binary).unwrap(), &data, Progress::Silent).unwrap();
        let mut bytes = fs::read(&binary).unwrap();
        let manifest_digest_at = bytes.len() - TRAILER_LEN_USIZE + 48;
        bytes[manifest_digest_at] ^= 1;
        fs::write(&binary, bytes).unwrap();
        let err = extract(&Payload::open(&binary).unwrap(), &data, Progress::Silent).unwrap_err();
        assert!(err.to_string().contains("manifest does not match"), "{err}");
    }

    #[test]
    fn entries_the_manifest_does_not_list_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let bare = dir.path().join("extra.tar.zst");
        let mut with_extra = payload_bytes(&[("a", b"one")], None);
        // Re-pack: manifest lists only "a", the archive also holds "../evil".
        let raw = zstd::decode_all(&with_extra[..]).unwrap();
        let mut archive = tar::Archive::new(&raw[..]);
        let mut repacked = tar::Builder::new(Vec::new());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut header = entry.header().clone();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            repacked.append(&header, &body[..]).unwrap();
            if entry.path().unwrap().to_string_lossy() == "a" {
                header.set_path("evil").unwrap();
                header.set_cksum();
                repacked.append(&header, &body[..]).unwrap();
            }
        }
        with_extra = zstd::encode_all(&repacked.into_inner().unwrap()[..], 3).unwrap();
        fs::write(&bare, with_extra).unwrap();
        let err = extract(&Payload::open(&bare).unwrap(), &data, Progress::Silent).unwrap_err();
        assert!(err.to_string().contains("does not list"), "{err}");
        assert!(!data.bin().join("a").exists() && !data.bin().join("evil").exists());
    }

    /// A payload whose entries are files or hard links; the manifest lists each name with the
    /// digest of `claimed` content, so a link can claim content its target does not have.
    fn payload_with_links(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let record = |name: &str, claimed: &[u8]| PayloadFile {
            name: name.into(),
            version: "1".into(),
            lock_version: "1".into(),
            sha256: hex::encode(Sha256::digest(claimed)),
            size: claimed.len() as u64,
            source: "test".into(),
        };
        let manifest = PayloadManifest {
            format: 1,
            arch: HOST_ARCH.into(),
            mode: "from-system".into(),
            created: String::new(),
            files: entries
                .iter()
                .map(|(name, _, claimed)| record(name, claimed))
                .collect(),
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(json.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(
                &mut header,
                crate::manifest::PAYLOAD_MANIFEST_NAME,
                &json[..],
            )
            .unwrap();
        for (name, target, bytes) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o755);
            match target {
                Some(target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, name, target).unwrap();
                }
                None => {
                    header.set_size(bytes.len() as u64);
                    header.set_cksum();
                    builder.append_data(&mut header, name, *bytes).unwrap();
                }
            }
        }
        zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()
    }

    fn extract_bare(dir: &Path, data: &DataDir, payload: &[u8]) -> Result<ExtractReport> {
        let bare = dir.join("linked.tar.zst");
        fs::write(&bare, payload).unwrap();
        extract(&Payload::open(&bare).unwrap(), data, Progress::Silent)
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn a_link_entry_installs_one_copy_under_both_names() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let payload = payload_with_links(&[("a", None, b"one"), ("b", Some("a"), b"one")]);
        let report = extract_bare(dir.path(), &data, &payload).unwrap();
        assert_eq!(
            report.bytes_written, 3,
            "the link's bytes are not written again"
        );
        assert_eq!(fs::read(data.bin().join("b")).unwrap(), b"one");
        assert_eq!(inode(&data.bin().join("a")), inode(&data.bin().join("b")));

        fs::remove_file(data.bin().join("b")).unwrap();
        let report = extract_bare(dir.path(), &data, &payload).unwrap();
        assert_eq!(report.extracted, ["b"], "only the missing name is restored");
        assert_eq!(inode(&data.bin().join("a")), inode(&data.bin().join("b")));
    }

    #[test]
    fn a_link_claiming_other_content_than_its_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let payload = payload_with_links(&[("a", None, b"one"), ("b", Some("a"), b"two")]);
        let err = extract_bare(dir.path(), &data, &payload).unwrap_err();
        assert!(err.to_string().contains("b links to \"a\""), "{err}");
        assert!(!data.bin().join("a").exists() && !data.bin().join("b").exists());
    }

    #[test]
    fn a_link_before_its_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let payload = payload_with_links(&[("b", Some("a"), b"one"), ("a", None, b"one")]);
        let err = extract_bare(dir.path(), &data, &payload).unwrap_err();
        assert!(err.to_string().contains("comes after it"), "{err}");
        assert!(!data.bin().join("a").exists() && !data.bin().join("b").exists());
    }

    const TRAILER_LEN_USIZE: usize = crate::payload::TRAILER_LEN as usize;
}
