//! Streaming tar ingest: an upload becomes a directory tree, or nothing.
//!
//! The upload is read once, as a stream, and never held in memory: the format
//! is detected from magic bytes (gzip, zstd or plain tar), every entry is
//! validated before anything is written, each file is hashed while it is
//! written, and totals are capped as they grow so a decompression bomb stops
//! early. Entries are iterated one by one with the `tar` crate (never
//! `unpack`), so the rules are ours:
//!
//! * only regular files, directories, and links that stay inside the upload;
//! * every path component a normal name (no `/`-rooted paths, no `..`, no
//!   control characters or backslashes); a leading `./` is fine;
//! * files are created with create-new + `O_NOFOLLOW` (a later entry can't
//!   write through an earlier symlink), mode 0644, directories 0755, owners
//!   never restored.
//!
//! The caller owns the destination directory and removes it on any error.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::Path;

use sha2::{Digest, Sha256};
use tar::EntryType;

use super::meta::{MANIFEST_FILE, META_FILE};
use super::writer::{FileWriter, CHUNK};

/// Limits on one upload.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of the (possibly compressed) upload, and of the extracted files.
    pub max_upload_bytes: u64,
    pub max_files: u64,
    pub require_index: bool,
    /// Leading path components to drop from every entry, like
    /// `tar --strip-components` (entries with no more components are skipped).
    pub strip_components: usize,
    /// A differential upload: it carries only some files plus a top-level
    /// `.deployer-manifest` of the whole tree ([`Extracted::declared`]);
    /// the caller completes it (`store::dedup::complete_partial`).
    pub partial: bool,
}

/// Why an upload was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotTar(String),
    #[error("{0}")]
    Truncated(String),
    #[error("disk full while writing the upload: {0}")]
    DiskFull(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("{0}")]
    Io(String),
    /// The upload directory was removed under the upload (by another
    /// process): a conflict with the state of the store, not a server bug.
    #[error("{0}")]
    Gone(String),
}

impl IngestError {
    pub fn status(&self) -> u16 {
        match self {
            IngestError::Rejected(_) => 422,
            IngestError::TooLarge(_) => 413,
            IngestError::NotTar(_) => 415,
            IngestError::Truncated(_) => 400,
            IngestError::DiskFull(_) => 507,
            IngestError::TimedOut(_) => 408,
            IngestError::Io(_) => 500,
            IngestError::Gone(_) => 409,
        }
    }

    /// Maps an I/O error met while reading or writing, recognising the
    /// limit and truncation errors the readers below raise.
    pub fn from_io(error: io::Error, context: &str) -> IngestError {
        if let Some(inner) = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<LimitExceeded>())
        {
            return IngestError::TooLarge(inner.0.clone());
        }
        match error.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                return IngestError::DiskFull(format!("{context}: {error}"))
            }
            _ => {}
        }
        match error.kind() {
            io::ErrorKind::TimedOut => IngestError::TimedOut(format!("{context}: {error}")),
            io::ErrorKind::UnexpectedEof => {
                IngestError::Truncated(format!("upload is truncated ({context})"))
            }
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::Other => {
                IngestError::Truncated(format!(
                    "upload is not a valid archive ({context}): {error}"
                ))
            }
            _ => IngestError::Io(format!("{context}: {error}")),
        }
    }
}

/// The payload of an `io::Error` raised when a limit is crossed mid-stream.
#[derive(Debug)]
pub struct LimitExceeded(pub String);

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

/// What an upload contained.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub files: u64,
    pub bytes: u64,
    /// SHA-256 over the sorted manifest; its first 12 hex digits are the default id.
    pub digest: String,
    /// (path, sha256) of every regular file, sorted by path.
    pub manifest: Vec<(String, String)>,
    /// Symlinks as (path, target), sorted: part of the digest.
    pub links: Vec<(String, String)>,
    /// Regular files that came in the upload itself (a differential upload
    /// sends fewer than `files`).
    pub received: u64,
    /// Partial uploads: the manifest of the whole tree the upload declared.
    pub declared: Option<super::meta::Manifest>,
    /// Uploaded files hard-linked to identical ones of other deployments.
    pub linked: u64,
    /// Precompressed siblings the server generated (`app.js.br`): in
    /// `manifest`, not in `files`, `received` or `linked`, and never
    /// addressable by their own URL (recorded in the metadata).
    pub generated: Vec<String>,
}

/// The deployment digest: SHA-256 over the sorted manifest and symlinks.
/// Its first 12 hex digits are the default deployment id, so the same tree
/// gets the same id whether it came whole or as a differential upload.
pub fn tree_digest(manifest: &[(String, String)], links: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for (path, digest) in manifest {
        hasher.update(format!("{digest}  {path}\n"));
    }
    for (path, target) in links {
        hasher.update(format!("symlink:{target}  {path}\n"));
    }
    hex::encode(hasher.finalize())
}

/// The refusal of an upload without a top-level `index.html` (`paths`: its
/// files and links). When the whole upload is under one directory that
/// has an `index.html` (a tarball of `dist/` rather than of its contents),
/// it says so and names `strip_components=1`.
pub fn no_index<'a>(paths: impl Iterator<Item = &'a str>) -> IngestError {
    let mut top: Option<&str> = None;
    let mut one_dir = true;
    let mut nested_index = false;
    for path in paths {
        let Some((first, rest)) = path.split_once('/') else {
            one_dir = false;
            break;
        };
        if top.is_some_and(|t| t != first) {
            one_dir = false;
            break;
        }
        top = Some(first);
        nested_index |= rest == "index.html";
    }
    match top {
        Some(dir) if one_dir && nested_index => IngestError::Rejected(format!(
            "upload has no top-level index.html, but {dir}/index.html: the whole upload is \
             under {dir}/ (send strip_components=1 to serve {dir}/ as the site)"
        )),
        _ => IngestError::Rejected(
            "upload has no top-level index.html (send require_index=false to allow that)"
                .to_string(),
        ),
    }
}

/// Largest `.deployer-manifest` a differential upload may carry.
const MAX_DECLARED_MANIFEST: u64 = 64 << 20;

/// Reads an upload (tar, tar.gz or tar.zst) from `reader` into `dest`, an
/// empty directory the caller created.
pub fn extract(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Extracted, IngestError> {
    let (prefix, rest) = peek(reader, 4)?;
    let source = io::Cursor::new(prefix.clone()).chain(rest);
    if super::zip_ingest::is_zip(&prefix) {
        return super::zip_ingest::extract(source, dest, limits);
    }
    let decoded: Box<dyn Read> = if prefix.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(source))
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::new(source)
                .map_err(|e| IngestError::from_io(e, "zstd"))?,
        )
    } else {
        Box::new(source)
    };
    // Cap what comes out of the decompressor too: a small gzip bomb stops
    // at the limit instead of filling the disk.
    let limited = Limited {
        inner: decoded,
        remaining: limits.max_upload_bytes.saturating_add(64 * 1024),
        what: "extracted archive",
    };
    let (header, rest) = peek(limited, 512)?;
    if !looks_like_tar(&header) {
        return Err(IngestError::NotTar(
            "upload is neither a tar archive (plain, gzip- or zstd-compressed) nor a zip"
                .to_string(),
        ));
    }
    let mut archive = tar::Archive::new(io::Cursor::new(header).chain(rest));
    let mut state = State::new(dest, limits);
    let entries = archive
        .entries()
        .map_err(|e| IngestError::from_io(e, "reading tar"))?;
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::from_io(e, "reading tar entry"))?;
        state.add(entry)?;
    }
    // The tar reader stops at the end-of-archive blocks; what follows
    // (record padding, and for gzip the trailer with the CRC-32 and size,
    // RFC 1952 §2.3.1; zstd's content checksum) is read too, so a damaged
    // or cut compressed stream is refused instead of deployed unchecked.
    // The decompressed bytes stay capped by `limited`.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| IngestError::from_io(e, "reading the end of the archive"))?;
    state.finish()
}

/// Reads up to `n` bytes to look at, returning them and the reader.
fn peek<R: Read>(mut reader: R, n: usize) -> Result<(Vec<u8>, R), IngestError> {
    let mut prefix = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match reader.read(&mut prefix[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IngestError::from_io(e, "reading upload")),
        }
    }
    prefix.truncate(filled);
    Ok((prefix, reader))
}

/// A POSIX/GNU tar header: `ustar` magic, or at least a valid checksum.
fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == Some(computed) && block.iter().any(|b| *b != 0)
}

/// Fails with [`LimitExceeded`] once more than `remaining` bytes were read.
pub struct Limited<R> {
    pub inner: R,
    pub remaining: u64,
    pub what: &'static str,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.remaining {
            return Err(io::Error::other(LimitExceeded(format!(
                "{} is larger than max_upload_bytes",
                self.what
            ))));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

pub(super) struct State<'a> {
    dest: &'a Path,
    limits: &'a Limits,
    files: u64,
    entries: u64,
    bytes: u64,
    /// path → sha256 of regular files written so far (hard links resolve here).
    digests: HashMap<String, String>,
    /// Symlinks as (path, target): part of the digest, not of the manifest.
    links: Vec<(String, String)>,
    /// Paths of every file, symlink and hard link so far: a second entry
    /// of any type with one of these names is refused the same way.
    taken: std::collections::HashSet<String>,
    /// The whole tree's manifest, read from a partial upload.
    declared: Option<super::meta::Manifest>,
    writer: FileWriter,
}

impl State<'_> {
    fn add<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), IngestError> {
        self.entries += 1;
        if self.entries > self.limits.max_files.saturating_mul(2).saturating_add(16) {
            return Err(IngestError::TooLarge(format!(
                "upload has more than {} entries",
                self.limits.max_files
            )));
        }
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        let mut components = normal_components(&raw_path)?;
        let strip = self.limits.strip_components;
        if strip > 0 {
            if components.len() <= strip {
                return Ok(());
            }
            components.drain(..strip);
        }
        let rel = components.join("/");
        if rel.is_empty() {
            if kind == EntryType::Directory {
                return Ok(()); // "./" itself
            }
            return Err(IngestError::Rejected(format!(
                "entry {:?} has an empty path",
                lossy(&raw_path)
            )));
        }
        if components.len() == 1 && rel == MANIFEST_FILE && self.limits.partial {
            if kind != EntryType::Regular && kind != EntryType::Continuous {
                return Err(IngestError::Rejected(format!(
                    "{MANIFEST_FILE} must be a file"
                )));
            }
            let mut text = Vec::new();
            (&mut entry)
                .take(MAX_DECLARED_MANIFEST + 1)
                .read_to_end(&mut text)
                .map_err(|e| IngestError::from_io(e, "reading the upload's manifest"))?;
            if text.len() as u64 > MAX_DECLARED_MANIFEST {
                return Err(IngestError::TooLarge(format!(
                    "{MANIFEST_FILE} is larger than {MAX_DECLARED_MANIFEST} bytes"
                )));
            }
            let declared = super::meta::parse_manifest(&text[..])
                .map_err(|e| IngestError::Rejected(format!("{MANIFEST_FILE}: {e}")))?;
            if declared.len() as u64 > self.limits.max_files {
                return Err(IngestError::TooLarge(format!(
                    "{MANIFEST_FILE} declares more than max_files = {} files",
                    self.limits.max_files
                )));
            }
            self.declared = Some(declared);
            return Ok(());
        }
        if components.len() == 1 && (rel == META_FILE || rel == MANIFEST_FILE) {
            // Ours to write; an upload of a downloaded deployment may carry old copies.
            return Ok(());
        }
        let path = self.dest.join(&rel);
        if kind == EntryType::Directory && self.taken.contains(&rel) {
            return Err(duplicate(&rel));
        }
        if kind != EntryType::Directory {
            // Before anything is written: the writer thread creates files
            // later, so the disk alone cannot tell. A directory of that name
            // (made by make_dirs, synchronously) is found on disk.
            if self.taken.contains(&rel) || fs::symlink_metadata(&path).is_ok() {
                return Err(duplicate(&rel));
            }
            self.taken.insert(rel.clone());
        }
        match kind {
            EntryType::Directory => self.make_dirs(&components),
            EntryType::Regular | EntryType::Continuous => {
                self.count_file(&rel)?;
                self.make_dirs(&components[..components.len() - 1])?;
                let declared_size = entry.header().size().unwrap_or(CHUNK as u64);
                let digest = self.write_file(&mut entry, declared_size, &path, &rel)?;
                self.digests.insert(rel, digest);
                Ok(())
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| IngestError::Rejected(format!("symlink {rel} has no target")))?
                    .into_owned();
                let target = symlink_target_inside(&components, &target)
                    .ok_or_else(|| IngestError::Rejected(format!("symlink {rel} points outside the deployment")))?;
                self.count_file(&rel)?;
                self.make_dirs(&components[..components.len() - 1])?;
                symlink(&target, &path).map_err(|e| self.write_error(e, &rel))?;
                self.links.push((rel, target));
                Ok(())
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| IngestError::Rejected(format!("hard link {rel} has no target")))?
                    .into_owned();
                let target_components = normal_components(&target)
                    .map_err(|_| IngestError::Rejected(format!("hard link {rel} points outside the deployment")))?;
                let target_rel = target_components.get(strip..).unwrap_or_default().join("/");
                let Some(digest) = self.digests.get(&target_rel).cloned() else {
                    return Err(IngestError::Rejected(format!(
                        "hard link {rel} points at {target_rel}, which is not a file earlier in this upload"
                    )));
                };
                self.count_file(&rel)?;
                self.make_dirs(&components[..components.len() - 1])?;
                self.flush_writer()?;
                fs::hard_link(self.dest.join(&target_rel), &path).map_err(|e| self.write_error(e, &rel))?;
                let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
                self.add_bytes(size)?;
                self.digests.insert(rel, digest);
                Ok(())
            }
            other => Err(IngestError::Rejected(format!(
                "entry {rel} is a {}; only files, directories and links inside the upload are allowed",
                describe(other)
            ))),
        }
    }

    fn count_file(&mut self, rel: &str) -> Result<(), IngestError> {
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(IngestError::TooLarge(format!(
                "upload has more than max_files = {} files (at {rel})",
                self.limits.max_files
            )));
        }
        Ok(())
    }

    fn add_bytes(&mut self, n: u64) -> Result<(), IngestError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_upload_bytes {
            return Err(IngestError::TooLarge(format!(
                "extracted files exceed max_upload_bytes = {}",
                self.limits.max_upload_bytes
            )));
        }
        Ok(())
    }

    fn make_dirs(&self, components: &[String]) -> Result<(), IngestError> {
        make_dirs(self.dest, components)
    }

    /// Hashes a file's bytes here while the writer thread writes them.
    /// `declared_size` (from the tar header) only sizes the read buffer, so
    /// a small file does not zero a whole chunk; the bytes read decide.
    fn write_file(
        &mut self,
        entry: &mut impl Read,
        declared_size: u64,
        path: &Path,
        rel: &str,
    ) -> Result<String, IngestError> {
        self.check_writer()?;
        self.writer
            .create(path.to_path_buf(), rel.to_string())
            .map_err(|e| self.write_error(e, rel))?;
        let mut hasher = Sha256::new();
        // +1: a file matching its header ends on a zero-length read.
        let mut want = usize::try_from(declared_size.saturating_add(1))
            .unwrap_or(CHUNK)
            .clamp(1, CHUNK);
        loop {
            let mut buf = self.writer.buffer();
            buf.resize(want, 0);
            want = CHUNK;
            let n = read_full(entry, &mut buf)
                .map_err(|e| IngestError::from_io(e, &format!("reading {rel}")))?;
            if n == 0 {
                self.writer.give_back(buf);
                break;
            }
            // read_full stops short only at the end of the entry.
            let last = n < buf.len();
            buf.truncate(n);
            self.add_bytes(n as u64)?;
            self.check_writer()?;
            hasher.update(&buf);
            self.writer
                .write(buf)
                .map_err(|e| self.write_error(e, rel))?;
            if last {
                break;
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Reports an error the writer thread met (a duplicate entry, disk full).
    fn check_writer(&self) -> Result<(), IngestError> {
        match self.writer.take_failure() {
            None => Ok(()),
            Some((rel, e)) if e.kind() == io::ErrorKind::AlreadyExists => Err(duplicate(&rel)),
            Some((rel, e)) => Err(self.write_error(e, &rel)),
        }
    }

    /// Waits for every file sent so far to be written, then reports errors.
    fn flush_writer(&self) -> Result<(), IngestError> {
        self.writer
            .barrier()
            .map_err(|e| self.write_error(e, "files"))?;
        self.check_writer()
    }

    fn write_error(&self, error: io::Error, rel: &str) -> IngestError {
        write_error(error, rel)
    }

    fn finish(self) -> Result<Extracted, IngestError> {
        self.flush_writer()?;
        if self.limits.partial && self.declared.is_none() {
            return Err(IngestError::Rejected(format!(
                "a differential upload (partial=true) must carry a top-level {MANIFEST_FILE}"
            )));
        }
        if self.limits.require_index
            && !self.limits.partial
            && !self.digests.contains_key("index.html")
            && !self.links.iter().any(|(p, _)| p == "index.html")
        {
            let paths = self.digests.keys().chain(self.links.iter().map(|(p, _)| p));
            return Err(no_index(paths.map(String::as_str)));
        }
        if !self.links.is_empty() {
            check_linked_tree(self.dest, self.limits.max_files)?;
        }
        let mut manifest: Vec<(String, String)> = self.digests.into_iter().collect();
        manifest.sort();
        let mut links = self.links;
        links.sort();
        Ok(Extracted {
            files: self.files,
            bytes: self.bytes,
            digest: tree_digest(&manifest, &links),
            received: manifest.len() as u64,
            manifest,
            links,
            declared: self.declared,
            linked: 0,
            generated: Vec::new(),
        })
    }
}

/// Walks the extracted tree the way the index will serve it, following
/// symlinks to directories: one leading back to a directory above it (a
/// cycle, `docs/up -> ..`) is refused, and so is a tree that links make
/// larger than `max_files` entries (links to links multiply). Only run when
/// the upload has symlinks.
fn check_linked_tree(dest: &Path, max_files: u64) -> Result<(), IngestError> {
    use std::os::unix::fs::MetadataExt;
    let io_error = |e: io::Error| IngestError::from_io(e, "checking directory symlinks");
    let top = fs::metadata(dest).map_err(io_error)?;
    // (directory on disk, its path as served, the (dev, ino) chain above it)
    let mut stack = vec![(
        dest.to_path_buf(),
        String::new(),
        vec![(top.dev(), top.ino())],
    )];
    let mut seen: u64 = 0;
    let limit = max_files.saturating_mul(2).saturating_add(16);
    while let Some((dir, prefix, chain)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            seen += 1;
            if seen > limit {
                return Err(IngestError::TooLarge(format!(
                    "through its directory symlinks the upload has more than {limit} entries"
                )));
            }
            let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
            // Follows a symlink; a dangling one is left to the index to skip.
            let Ok(m) = fs::metadata(entry.path()) else {
                continue;
            };
            if !m.is_dir() {
                continue;
            }
            if chain.contains(&(m.dev(), m.ino())) {
                return Err(IngestError::Rejected(format!(
                    "symlink {rel} leads back to a directory above it: the tree would be endless"
                )));
            }
            let mut below = chain.clone();
            below.push((m.dev(), m.ino()));
            stack.push((entry.path(), format!("{rel}/"), below));
        }
    }
    Ok(())
}

/// The refusal of a second entry with an earlier entry's path, whatever the
/// types of both (GNU tar would replace the first; the upload is ambiguous).
fn duplicate(rel: &str) -> IngestError {
    IngestError::Rejected(format!("entry {rel} appears twice in the upload"))
}

/// An error writing entry `rel`. What the upload's own names and shape
/// cause (a name twice, a path too long for the filesystem, too many links
/// to one file, a path through a non-directory) is the client's to fix:
/// 422 naming the entry, never a 5xx.
fn write_error(error: io::Error, rel: &str) -> IngestError {
    match error.raw_os_error() {
        Some(libc::EEXIST) => duplicate(rel),
        Some(libc::ENAMETOOLONG) => IngestError::Rejected(format!(
            "entry {rel}: the path is too long for the filesystem"
        )),
        Some(libc::EMLINK) => IngestError::Rejected(format!(
            "entry {rel}: too many links to one file or directory"
        )),
        Some(libc::ENOTDIR) | Some(libc::ELOOP) => IngestError::Rejected(format!(
            "entry {rel}: its path goes through something that is not a directory"
        )),
        _ => IngestError::from_io(error, &format!("writing {rel}")),
    }
}

/// The same rules for the other archive front-ends ([`super::zip_ingest`]):
/// an entry's path, then a directory, a file or a symlink.
impl<'a> State<'a> {
    pub(super) fn new(dest: &'a Path, limits: &'a Limits) -> State<'a> {
        State {
            dest,
            limits,
            files: 0,
            entries: 0,
            bytes: 0,
            digests: HashMap::new(),
            links: Vec::new(),
            taken: std::collections::HashSet::new(),
            declared: None,
            writer: FileWriter::new(),
        }
    }

    /// Claims `rel` for an entry of the upload: a second entry of any type
    /// with an earlier file's, link's or (for non-directories) directory's
    /// name is refused the same way, before anything is written.
    fn claim(&mut self, rel: &str, is_dir: bool) -> Result<(), IngestError> {
        if is_dir {
            if self.taken.contains(rel) {
                return Err(duplicate(rel));
            }
            return Ok(());
        }
        // The writer thread creates files later, so the disk alone cannot
        // tell; a directory of that name (made synchronously) is on disk.
        if self.taken.contains(rel) || fs::symlink_metadata(self.dest.join(rel)).is_ok() {
            return Err(duplicate(rel));
        }
        self.taken.insert(rel.to_string());
        Ok(())
    }

    /// The checked components of an entry's path after `strip_components`;
    /// `None` when the entry is to be skipped (stripped away, the top
    /// directory itself, or a metadata file of ours).
    pub(super) fn entry_components(
        &mut self,
        raw_path: &[u8],
        is_dir: bool,
    ) -> Result<Option<Vec<String>>, IngestError> {
        self.entries += 1;
        if self.entries > self.limits.max_files.saturating_mul(2).saturating_add(16) {
            return Err(IngestError::TooLarge(format!(
                "upload has more than {} entries",
                self.limits.max_files
            )));
        }
        let mut components = normal_components(raw_path)?;
        let strip = self.limits.strip_components;
        if strip > 0 {
            if components.len() <= strip {
                return Ok(None);
            }
            components.drain(..strip);
        }
        if components.is_empty() {
            if is_dir {
                return Ok(None);
            }
            return Err(IngestError::Rejected(format!(
                "entry {:?} has an empty path",
                lossy(raw_path)
            )));
        }
        if components.len() == 1 && (components[0] == META_FILE || components[0] == MANIFEST_FILE) {
            return Ok(None);
        }
        Ok(Some(components))
    }

    pub(super) fn add_dir(&mut self, components: &[String]) -> Result<(), IngestError> {
        self.claim(&components.join("/"), true)?;
        self.make_dirs(components)
    }

    /// A regular file; `size_hint` only sizes the first read buffer.
    pub(super) fn add_regular(
        &mut self,
        components: &[String],
        reader: &mut impl Read,
        size_hint: u64,
    ) -> Result<(), IngestError> {
        let rel = components.join("/");
        self.claim(&rel, false)?;
        self.count_file(&rel)?;
        self.make_dirs(&components[..components.len() - 1])?;
        let path = self.dest.join(&rel);
        let digest = self.write_file(reader, size_hint, &path, &rel)?;
        self.digests.insert(rel, digest);
        Ok(())
    }

    pub(super) fn add_symlink(
        &mut self,
        components: &[String],
        target: &[u8],
    ) -> Result<(), IngestError> {
        let rel = components.join("/");
        self.claim(&rel, false)?;
        let target = symlink_target_inside(components, target).ok_or_else(|| {
            IngestError::Rejected(format!("symlink {rel} points outside the deployment"))
        })?;
        self.count_file(&rel)?;
        self.make_dirs(&components[..components.len() - 1])?;
        symlink(&target, self.dest.join(&rel)).map_err(|e| self.write_error(e, &rel))?;
        self.links.push((rel, target));
        Ok(())
    }

    pub(super) fn finish_archive(self) -> Result<Extracted, IngestError> {
        self.finish()
    }
}

/// Creates each missing directory of `components` under `dest`; an existing
/// component must be a real directory (never a symlink or a file, which
/// could lead outside the deployment). Shared with differential uploads.
pub(super) fn make_dirs(dest: &Path, components: &[String]) -> Result<(), IngestError> {
    let mut path = dest.to_path_buf();
    for component in components {
        path.push(component);
        let write_error = |e| write_error(e, component);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(IngestError::Rejected(format!(
                    "{} is used both as a directory and as a file or link",
                    path.strip_prefix(dest).unwrap_or(&path).display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(e)),
        }
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(write_error)?;
    }
    Ok(())
}

/// Reads until `buf` is full or the entry ends (fewer, larger writes).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Splits an archive path into normal components, dropping `.` and empty
/// ones; refuses absolute paths, `..`, and names with NUL, control
/// characters or backslashes, or that are not UTF-8.
pub fn normal_components(raw: &[u8]) -> Result<Vec<String>, IngestError> {
    let text = std::str::from_utf8(raw).map_err(|_| {
        IngestError::Rejected(format!(
            "entry {:?} has a name that is not UTF-8",
            lossy(raw)
        ))
    })?;
    if text.starts_with('/') {
        return Err(IngestError::Rejected(format!(
            "entry {text:?} has an absolute path"
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(IngestError::Rejected(format!(
            "entry {text:?} contains a forbidden character {c:?}"
        )));
    }
    let mut components = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => continue,
            ".." => return Err(IngestError::Rejected(format!("entry {text:?} contains .."))),
            name if name.len() > 255 => {
                return Err(IngestError::Rejected(format!(
                    "entry {text:?} has a name over 255 bytes"
                )))
            }
            name => components.push(name.to_string()),
        }
    }
    Ok(components)
}

/// A symlink at `link` (components) with `target`: the target as written if
/// it is relative and, resolved lexically from the link's directory, stays
/// inside the deployment; `None` otherwise.
fn symlink_target_inside(link: &[String], target: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(target).ok()?;
    if text.is_empty() || text.starts_with('/') || text.chars().any(|c| c.is_control() || c == '\\')
    {
        return None;
    }
    let mut resolved: Vec<&str> = link[..link.len() - 1].iter().map(String::as_str).collect();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                resolved.pop()?;
            }
            name => resolved.push(name),
        }
    }
    (!resolved.is_empty()).then(|| text.to_string())
}

fn describe(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMITS: Limits = Limits {
        max_upload_bytes: 1 << 20,
        max_files: 100,
        require_index: true,
        strip_components: 0,
        partial: false,
    };

    /// Builds a tar by hand so hostile entries can be made exactly.
    fn tar_of(entries: &[(&str, EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o7777);
            header.set_uid(12345);
            {
                let bytes = header.as_old_mut();
                let name = path.as_bytes();
                bytes.name[..name.len()].copy_from_slice(name);
                let l = link.as_bytes();
                bytes.linkname[..l.len()].copy_from_slice(l);
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn run(tar: &[u8]) -> (tempfile::TempDir, Result<Extracted, IngestError>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("up.tmp");
        fs::create_dir(&dest).unwrap();
        let result = extract(tar, &dest, &LIMITS);
        (dir, result)
    }

    #[test]
    fn extracts_files_dirs_and_inside_links() {
        let tar = tar_of(&[
            ("./", EntryType::Directory, b"", ""),
            ("./index.html", EntryType::Regular, b"<h1>x</h1>", ""),
            ("assets/", EntryType::Directory, b"", ""),
            ("assets/app.js", EntryType::Regular, b"js", ""),
            ("assets/alias.js", EntryType::Symlink, b"", "app.js"),
            ("copy.js", EntryType::Link, b"", "assets/app.js"),
        ]);
        let (dir, result) = run(&tar);
        let extracted = result.unwrap();
        let dest = dir.path().join("up.tmp");
        assert_eq!(extracted.files, 4);
        assert_eq!(fs::read(dest.join("assets/app.js")).unwrap(), b"js");
        assert_eq!(fs::read(dest.join("copy.js")).unwrap(), b"js");
        assert_eq!(
            fs::read_link(dest.join("assets/alias.js")).unwrap(),
            Path::new("app.js")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dest.join("index.html"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o644, "mode from the archive is not restored");
        let paths: Vec<_> = extracted.manifest.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["assets/app.js", "copy.js", "index.html"]);
        assert_eq!(extracted.digest.len(), 64);
    }

    #[test]
    fn same_content_same_digest_whatever_the_order_or_compression() {
        let a = tar_of(&[
            ("index.html", EntryType::Regular, b"i", ""),
            ("b", EntryType::Regular, b"b", ""),
        ]);
        let b = tar_of(&[
            ("./b", EntryType::Regular, b"b", ""),
            ("./index.html", EntryType::Regular, b"i", ""),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&a).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&a[..], 1).unwrap();
        let digests: Vec<String> = [&a, &b, &gz, &zst]
            .iter()
            .map(|t| run(t).1.unwrap().digest)
            .collect();
        assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
        let c = tar_of(&[("index.html", EntryType::Regular, b"j", "")]);
        assert_ne!(run(&c).1.unwrap().digest, digests[0]);
    }

    /// Without a top-level index.html, a tarball of the build directory
    /// itself (`dist/…`) is told apart and gets the fix named.
    #[test]
    fn a_missing_index_names_the_directory_it_is_in() {
        let text = |paths: &[&str]| no_index(paths.iter().copied()).to_string();
        let nested = text(&["dist/index.html", "dist/assets/app.js"]);
        assert!(
            nested.contains("but dist/index.html") && nested.contains("strip_components=1"),
            "{nested}"
        );
        for paths in [
            &["dist/index.html", "other/a.js"][..],
            &["dist/about.html", "dist/docs/index.html"],
            &["readme.txt"],
            &["dist/index.html", "top.txt"],
            &[],
        ] {
            let plain = text(paths);
            assert!(
                plain.contains("require_index=false") && !plain.contains("strip_components"),
                "{paths:?}: {plain}"
            );
        }
        let tar = tar_of(&[("dist/index.html", EntryType::Regular, b"<h1>x</h1>", "")]);
        let Err(refused) = run(&tar).1 else {
            panic!("a tarball of dist/ was accepted")
        };
        let refused = refused.to_string();
        assert!(refused.contains("dist/index.html"), "{refused}");
    }

    /// A gzip stream whose trailer is cut off or whose CRC-32 does not
    /// match (RFC 1952 §2.3.1) is refused, though the tar inside ended
    /// well: the tar reader alone stops before the trailer. Trailing bytes
    /// after the last member are refused too, as `tar xzf` (through
    /// `gzip -d`, exit 2) does.
    #[test]
    fn a_gzip_stream_is_checked_to_its_end() {
        let a = tar_of(&[("index.html", EntryType::Regular, b"<h1>x</h1>", "")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&a).unwrap();
        let gz = gz.finish().unwrap();
        assert!(run(&gz).1.is_ok());
        let mut twice = gz.clone();
        twice.extend_from_slice(&gz);
        assert!(run(&twice).1.is_ok(), "concatenated members are one stream");
        let cut = &gz[..gz.len() - 8];
        let mut bad_crc = gz.clone();
        let at = gz.len() - 6;
        bad_crc[at] ^= 0xff;
        let mut trailing = gz.clone();
        trailing.extend_from_slice(&[0u8; 512]);
        for (what, bytes) in [("cut", cut), ("crc", &bad_crc), ("trailing", &trailing)] {
            match run(bytes).1 {
                Err(e) => assert_eq!(e.status(), 400, "{what}: {e}"),
                Ok(_) => panic!("{what}: accepted"),
            }
        }
    }

    #[test]
    fn hostile_entries_are_rejected() {
        let index = ("index.html", EntryType::Regular, &b"x"[..], "");
        type Entry<'a> = (&'a str, EntryType, &'a [u8], &'a str);
        let cases: Vec<(Vec<Entry>, u16)> = vec![
            (
                vec![index, ("/etc/evil", EntryType::Regular, b"x", "")],
                422,
            ),
            (
                vec![index, ("a/../../evil", EntryType::Regular, b"x", "")],
                422,
            ),
            (vec![index, ("../evil", EntryType::Regular, b"x", "")], 422),
            (
                vec![index, ("link", EntryType::Symlink, b"", "/etc/passwd")],
                422,
            ),
            (
                vec![index, ("link", EntryType::Symlink, b"", "../outside")],
                422,
            ),
            (
                vec![index, ("a/link", EntryType::Symlink, b"", "../../outside")],
                422,
            ),
            (
                vec![index, ("hard", EntryType::Link, b"", "/etc/passwd")],
                422,
            ),
            (vec![index, ("hard", EntryType::Link, b"", "../x")], 422),
            (vec![index, ("dev", EntryType::Char, b"", "")], 422),
            (vec![index, ("blk", EntryType::Block, b"", "")], 422),
            (vec![index, ("fifo", EntryType::Fifo, b"", "")], 422),
            (
                vec![index, ("bad\u{1}name", EntryType::Regular, b"x", "")],
                422,
            ),
            (
                vec![index, ("bad\\name", EntryType::Regular, b"x", "")],
                422,
            ),
            (
                vec![
                    index,
                    ("twice", EntryType::Regular, b"x", ""),
                    ("twice", EntryType::Regular, b"y", ""),
                ],
                422,
            ),
            // Writing through a symlink planted by an earlier entry.
            (
                vec![
                    index,
                    ("sub/", EntryType::Directory, b"", ""),
                    ("d", EntryType::Symlink, b"", "sub"),
                    ("d/x", EntryType::Regular, b"x", ""),
                ],
                422,
            ),
            (vec![("other.html", EntryType::Regular, b"x", "")], 422),
        ];
        for (entries, status) in cases {
            let tar = tar_of(&entries);
            let (_dir, result) = run(&tar);
            let err = result.expect_err(&format!(
                "{:?} accepted",
                entries.iter().map(|e| e.0).collect::<Vec<_>>()
            ));
            assert_eq!(err.status(), status, "{err}");
        }
    }

    /// Issue 11 input 5: any entry type reusing any earlier entry's path
    /// is refused like two regular entries with one name (422 naming it),
    /// never a 5xx (a hard link to itself gave `500 File exists`).
    #[test]
    fn a_path_used_twice_is_422_whatever_the_entry_types() {
        let index = ("index.html", EntryType::Regular, &b"x"[..], "");
        let other = ("other", EntryType::Regular, &b"o"[..], "");
        let firsts = [
            ("VERSION", EntryType::Regular, &b"1"[..], ""),
            ("VERSION", EntryType::Symlink, &b""[..], "other"),
            ("VERSION", EntryType::Link, &b""[..], "other"),
            ("VERSION/", EntryType::Directory, &b""[..], ""),
        ];
        let seconds = [
            ("VERSION", EntryType::Regular, &b"2"[..], ""),
            ("VERSION", EntryType::Symlink, &b""[..], "other"),
            ("VERSION", EntryType::Link, &b""[..], "other"),
            ("VERSION", EntryType::Link, &b""[..], "VERSION"),
        ];
        for first in firsts {
            for second in seconds {
                if first.1 == EntryType::Directory && second.3 == "VERSION" {
                    continue; // a hard link to a directory: refused anyway, below
                }
                let tar = tar_of(&[index, other, first, second]);
                let (_dir, result) = run(&tar);
                let err = result.expect_err(&format!("{first:?} then {second:?} accepted"));
                assert_eq!(err.status(), 422, "{first:?} then {second:?}: {err}");
                assert!(err.to_string().contains("VERSION"), "{err}");
            }
        }
        // The exact input of the issue.
        let tar = tar_of(&[
            index,
            ("VERSION", EntryType::Regular, b"1", ""),
            ("VERSION", EntryType::Link, b"", "VERSION"),
        ]);
        let err = run(&tar).1.unwrap_err();
        assert_eq!(err.status(), 422);
        assert_eq!(err.to_string(), "entry VERSION appears twice in the upload");
        // A hard link to a directory, and a file below a file.
        for entries in [
            vec![
                index,
                ("d/", EntryType::Directory, &b""[..], ""),
                ("h", EntryType::Link, &b""[..], "d"),
            ],
            vec![
                index,
                ("f", EntryType::Regular, &b"f"[..], ""),
                ("f/x", EntryType::Regular, &b"x"[..], ""),
            ],
        ] {
            let err = run(&tar_of(&entries)).1.unwrap_err();
            assert!(err.status() < 500, "{err}");
        }
    }

    /// Issue 11 input 6: directory symlinks inside the upload are kept (the
    /// index serves them); one leading back above itself is a cycle: 422.
    #[test]
    fn directory_symlinks_are_kept_and_cycles_refused() {
        let index = ("index.html", EntryType::Regular, &b"x"[..], "");
        let tar = tar_of(&[
            index,
            ("latest", EntryType::Symlink, b"", "v2"),
            ("v2/app.js", EntryType::Regular, b"js", ""),
            ("v2/index.html", EntryType::Regular, b"v2", ""),
        ]);
        let (dir, result) = run(&tar);
        result.unwrap();
        assert_eq!(
            fs::read(dir.path().join("up.tmp/latest/app.js")).unwrap(),
            b"js"
        );
        type Entry<'a> = (&'a str, EntryType, &'a [u8], &'a str);
        let cycles: Vec<Vec<Entry>> = vec![
            vec![index, ("docs/up", EntryType::Symlink, b"", "..")],
            vec![index, ("docs/self", EntryType::Symlink, b"", ".")],
            vec![
                index,
                ("a/", EntryType::Directory, b"", ""),
                ("b/", EntryType::Directory, b"", ""),
                ("a/to-b", EntryType::Symlink, b"", "../b"),
                ("b/to-a", EntryType::Symlink, b"", "../a"),
            ],
        ];
        for entries in cycles {
            let err = run(&tar_of(&entries)).1.unwrap_err();
            assert_eq!(err.status(), 422, "{err}");
        }
        // Links to links multiply a tree: 2^12 paths from 12 small directories.
        let mut entries: Vec<(String, EntryType, &[u8], String)> =
            vec![("index.html".into(), EntryType::Regular, b"x", String::new())];
        for level in 0..12 {
            entries.push((
                format!("d{level}/f"),
                EntryType::Regular,
                b"f",
                String::new(),
            ));
            if level > 0 {
                for side in ["l", "r"] {
                    entries.push((
                        format!("d{level}/{side}"),
                        EntryType::Symlink,
                        b"",
                        format!("../d{}", level - 1),
                    ));
                }
            }
        }
        let refs: Vec<Entry> = entries
            .iter()
            .map(|(p, k, d, l)| (p.as_str(), *k, *d, l.as_str()))
            .collect();
        let err = run(&tar_of(&refs)).1.unwrap_err();
        assert_eq!(err.status(), 413, "{err}");
    }

    #[test]
    fn not_a_tar_truncated_and_limits() {
        assert_eq!(
            run(b"hello, this is not a tarball at all")
                .1
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(run(b"").1.unwrap_err().status(), 415);
        assert_eq!(run(&[0u8; 2048]).1.unwrap_err().status(), 415);
        let tar = tar_of(&[("index.html", EntryType::Regular, &[7u8; 5000], "")]);
        assert_eq!(
            run(&tar[..3000]).1.unwrap_err().status(),
            400,
            "cut inside file data"
        );
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(run(&gz[..gz.len() / 2]).1.unwrap_err().status(), 400);

        let many: Vec<String> = (0..101).map(|i| format!("f{i}")).collect();
        let mut entries: Vec<(&str, EntryType, &[u8], &str)> =
            vec![("index.html", EntryType::Regular, b"x", "")];
        entries.extend(
            many.iter()
                .map(|n| (n.as_str(), EntryType::Regular, &b"x"[..], "")),
        );
        assert_eq!(run(&tar_of(&entries)).1.unwrap_err().status(), 413);

        // A gzip bomb: 64 MiB of zeros compresses to ~64 KiB; the 1 MiB cap stops it.
        let big = vec![0u8; 64 << 20];
        let bomb_tar = tar_of(&[("index.html", EntryType::Regular, &big, "")]);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&bomb_tar).unwrap();
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert_eq!(run(&bomb).1.unwrap_err().status(), 413);
    }

    #[test]
    fn strip_components_drops_the_top_folder() {
        let tar = tar_of(&[
            ("html/", EntryType::Directory, b"", ""),
            ("html/index.html", EntryType::Regular, b"i", ""),
            ("html/a/b.txt", EntryType::Regular, b"b", ""),
            ("html/copy.txt", EntryType::Link, b"", "html/a/b.txt"),
            ("top-level-file", EntryType::Regular, b"skipped", ""),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            strip_components: 1,
            ..LIMITS
        };
        let extracted = extract(&tar[..], dir.path(), &limits).unwrap();
        let paths: Vec<_> = extracted.manifest.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a/b.txt", "copy.txt", "index.html"]);
        assert!(!dir.path().join("top-level-file").exists());
    }

    #[test]
    fn symlink_targets() {
        let link = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
        assert!(symlink_target_inside(&link("a/b"), b"c").is_some());
        assert!(symlink_target_inside(&link("a/b"), b"../c").is_some());
        assert!(symlink_target_inside(&link("a/b"), b"../../c").is_none());
        assert!(symlink_target_inside(&link("b"), b"..").is_none());
        assert!(
            symlink_target_inside(&link("a/b"), b"..").is_none(),
            "the deployment root itself"
        );
        assert!(symlink_target_inside(&link("b"), b"/etc").is_none());
    }
}
