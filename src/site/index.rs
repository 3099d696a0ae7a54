//! The in-memory index of one deployment.
//!
//! Built once when a deployment becomes visible (startup, flip, external
//! change) and never mutated: deployments are immutable on disk, so every
//! answer precomputed here (ETag, content type, encodings, small files'
//! bytes) stays right for as long as the index lives. A request holds an
//! `Arc<Deployment>` and is answered wholly from it.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::store::meta::{self, DeploymentMeta};

/// Content codings the server can serve from precompressed siblings,
/// in the server's order of preference when the client likes them equally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The file suffix of a precompressed sibling.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }
}

/// One stored form of a file: the file itself, or a precompressed sibling.
#[derive(Debug)]
pub struct Representation {
    /// `None` for the identity form.
    pub encoding: Option<Encoding>,
    /// Absolute path inside the versioned deployment directory (a symlink
    /// inside the deployment is resolved once, at index time).
    pub disk_path: PathBuf,
    pub size: u64,
    /// Strong validator derived from this form's bytes, quoted.
    pub etag: HeaderValue,
    /// For files small enough to be held in memory: the bytes, filled on
    /// first use (or at index time when the file was read for hashing).
    /// Shared with the sibling's own entry, so `app.js.br` is held once.
    pub cache: Option<Arc<OnceLock<Bytes>>>,
    /// For larger files up to [`MAPPED_MAX`]: one read-only mapping of the
    /// whole file, made on first use and kept while the index lives, so
    /// later responses are slices of it with no open, mmap or munmap.
    /// Mapped pages are page cache (the kernel can reclaim them), not heap.
    pub mapping: Option<Arc<OnceLock<Bytes>>>,
}

/// Files above the in-memory limit and up to this size are served from a
/// mapping kept in the index; larger ones are read per response.
pub const MAPPED_MAX: u64 = 64 << 20;

impl Representation {
    /// The bytes, if held in memory already.
    pub fn cached(&self) -> Option<&Bytes> {
        self.cache.as_ref().and_then(|c| c.get())
    }
}

/// The memory a deployment may use for file bytes, reserved as files are
/// first served.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicU64,
    limit: u64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Self {
        MemoryBudget {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Reserves `n` bytes; false when that would cross the limit.
    pub fn try_reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// A servable file of a deployment.
#[derive(Debug)]
pub struct FileEntry {
    pub identity: Representation,
    /// Precompressed siblings, in [`Encoding::ALL`] order.
    pub encoded: Vec<Representation>,
    pub content_type: HeaderValue,
    pub is_html: bool,
    /// Modification time, truncated to whole seconds (HTTP dates have no more).
    pub modified: SystemTime,
    pub last_modified: HeaderValue,
}

impl FileEntry {
    pub fn representation(&self, encoding: Option<Encoding>) -> &Representation {
        match encoding {
            None => &self.identity,
            Some(e) => self
                .encoded
                .iter()
                .find(|r| r.encoding == Some(e))
                .unwrap_or(&self.identity),
        }
    }

    pub fn encodings(&self) -> impl Iterator<Item = Encoding> + '_ {
        self.encoded.iter().filter_map(|r| r.encoding)
    }
}

/// Limits for holding file bytes in memory.
#[derive(Debug, Clone, Copy)]
pub struct IndexOptions {
    /// Files up to this size are candidates for memory.
    pub memory_file_max_bytes: u64,
    /// Total bytes held in memory for one deployment.
    pub memory_budget_bytes: u64,
}

/// What the index build found, for logs and metrics.
#[derive(Debug, Clone, Default)]
pub struct IndexStats {
    pub files: u64,
    pub bytes: u64,
    /// File bytes held in memory right after the build (more are loaded
    /// on first request, within the budget).
    pub memory_bytes: u64,
    /// Files whose ETag had to be computed because the manifest lacked them.
    pub hashed: u64,
    /// Entries not indexed: symlinks leading outside, special files, non-UTF-8 names.
    pub skipped: Vec<String>,
}

/// The immutable index of one deployment of one service.
#[derive(Debug)]
pub struct Deployment {
    pub service: String,
    pub id: String,
    pub dir: PathBuf,
    pub meta: Option<DeploymentMeta>,
    files: HashMap<Box<str>, FileEntry>,
    /// Directories, as relative paths without trailing slash ("" is the top).
    dirs: HashSet<Box<str>>,
    pub stats: IndexStats,
    pub memory: MemoryBudget,
}

impl Deployment {
    /// Looks up a file by its relative, `/`-separated path.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.get(path)
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Builds the index of `<dir>`, the versioned directory of `id`.
    ///
    /// Only regular files are indexed. A symlink is followed only when its
    /// resolved target is a regular file inside the deployment directory;
    /// anything else is skipped and reported in [`IndexStats::skipped`].
    /// Names starting with `.` are never indexed: they are never served.
    pub fn build(
        service: &str,
        id: &str,
        dir: &Path,
        options: IndexOptions,
    ) -> io::Result<Deployment> {
        let root = dir.canonicalize()?;
        let manifest = meta::read_manifest(&root)?;
        let deployment_meta = DeploymentMeta::read(&root).unwrap_or_else(|e| {
            tracing::warn!(service, deployment = id, error = %e, "ignoring unreadable {}", meta::META_FILE);
            None
        });
        let walked = walk(&root)?;
        let mut stats = IndexStats {
            skipped: walked.skipped,
            ..IndexStats::default()
        };
        stats.skipped.sort();
        let mut dirs: HashSet<Box<str>> = walked
            .dirs
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        dirs.insert(Box::<str>::from(""));
        let found = walked.files;

        // A file's bytes are only read here when its digest is not in the
        // manifest (a deployment made by hand): then a small one is kept,
        // since it was read anyway. Otherwise the build only stats, so a
        // flip of a 10 000-file deployment stays in the tens of ms.
        let memory = MemoryBudget::new(options.memory_budget_bytes);
        let mut plain: HashMap<String, (Representation, SystemTime)> =
            HashMap::with_capacity(found.len());
        for (rel, disk_path, size, mtime) in found {
            let small = size <= options.memory_file_max_bytes;
            let cache = small.then(|| Arc::new(OnceLock::new()));
            let digest = match manifest.get(&rel) {
                Some(d) => d.clone(),
                None => {
                    stats.hashed += 1;
                    match &cache {
                        Some(cell) => {
                            let data = Bytes::from(std::fs::read(&disk_path)?);
                            let digest = hex::encode(Sha256::digest(&data));
                            if data.len() as u64 == size && memory.try_reserve(size) {
                                stats.memory_bytes += size;
                                let _ = cell.set(data);
                            }
                            digest
                        }
                        None => sha256_file(&disk_path)?,
                    }
                }
            };
            stats.files += 1;
            stats.bytes += size;
            let representation = Representation {
                encoding: None,
                disk_path,
                size,
                etag: etag_from_digest(&digest),
                mapping: (cache.is_none() && size > 0 && size <= MAPPED_MAX)
                    .then(|| Arc::new(OnceLock::new())),
                cache,
            };
            plain.insert(rel, (representation, mtime));
        }

        // Attach precompressed siblings: `app.js.br` is an encoding of `app.js`
        // (and stays servable under its own name too).
        let mut files = HashMap::with_capacity(plain.len());
        let mut siblings: Vec<(String, Encoding)> = Vec::new();
        for rel in plain.keys() {
            for encoding in Encoding::ALL {
                if let Some(base) = rel.strip_suffix(encoding.suffix()) {
                    if plain.contains_key(base) {
                        siblings.push((rel.clone(), encoding));
                    }
                }
            }
        }
        let mut encoded_by_base: HashMap<String, Vec<Representation>> = HashMap::new();
        for (rel, encoding) in siblings {
            let Some((rep, _)) = plain.get(&rel) else {
                continue;
            };
            let base = rel[..rel.len() - encoding.suffix().len()].to_string();
            encoded_by_base
                .entry(base)
                .or_default()
                .push(Representation {
                    encoding: Some(encoding),
                    disk_path: rep.disk_path.clone(),
                    size: rep.size,
                    etag: rep.etag.clone(),
                    cache: rep.cache.clone(),
                    mapping: rep.mapping.clone(),
                });
        }
        let mut types: HashMap<String, (HeaderValue, bool)> = HashMap::new();
        for (rel, (identity, mtime)) in plain {
            let mut encoded = encoded_by_base.remove(&rel).unwrap_or_default();
            encoded.sort_by_key(|r| Encoding::ALL.iter().position(|e| Some(*e) == r.encoding));
            let extension = rel
                .rsplit('/')
                .next()
                .and_then(|n| n.rsplit_once('.'))
                .map_or("", |(_, e)| e);
            let (content_type, is_html) = types
                .entry(extension.to_ascii_lowercase())
                .or_insert_with(|| content_type_for(&rel))
                .clone();
            let modified = truncate_to_secs(mtime);
            let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            files.insert(
                rel.into_boxed_str(),
                FileEntry {
                    identity,
                    encoded,
                    content_type,
                    is_html,
                    modified,
                    last_modified,
                },
            );
        }

        Ok(Deployment {
            service: service.to_string(),
            id: id.to_string(),
            dir: root,
            meta: deployment_meta,
            files,
            dirs,
            stats,
            memory,
        })
    }
}

type Found = (String, PathBuf, u64, SystemTime);

/// What walking a deployment found.
#[derive(Default)]
struct Walked {
    files: Vec<Found>,
    dirs: Vec<String>,
    skipped: Vec<String>,
}

/// Directories waiting to be read, shared by the walking threads.
struct Queue {
    pending: Vec<(PathBuf, String)>,
    busy: usize,
    error: Option<io::Error>,
}

/// Walks the deployment with one thread per core: on a flip the stat
/// calls of a 10 000-file tree are most of the index build.
fn walk(root: &Path) -> io::Result<Walked> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let queue = Mutex::new(Queue {
        pending: vec![(root.to_path_buf(), String::new())],
        busy: 0,
        error: None,
    });
    let wake = Condvar::new();
    let results: Vec<Walked> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| walk_worker(root, &queue, &wake)))
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let queue = queue.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(error) = queue.error {
        return Err(error);
    }
    let mut all = Walked::default();
    for part in results {
        all.files.extend(part.files);
        all.dirs.extend(part.dirs);
        all.skipped.extend(part.skipped);
    }
    Ok(all)
}

fn walk_worker(root: &Path, queue: &Mutex<Queue>, wake: &Condvar) -> Walked {
    let mut mine = Walked::default();
    loop {
        let (dir, prefix) = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if q.error.is_some() {
                    return mine;
                }
                if let Some(job) = q.pending.pop() {
                    q.busy += 1;
                    break job;
                }
                if q.busy == 0 {
                    wake.notify_all();
                    return mine;
                }
                q = wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut subdirs = Vec::new();
        let result = read_one_dir(root, &dir, &prefix, &mut mine, &mut subdirs);
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        q.busy -= 1;
        match result {
            Ok(()) => q.pending.extend(subdirs),
            Err(e) => {
                q.error.get_or_insert(e);
            }
        }
        wake.notify_all();
    }
}

fn read_one_dir(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Walked,
    subdirs: &mut Vec<(PathBuf, String)>,
) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            out.skipped.push(format!(
                "{prefix}{}: name is not UTF-8",
                name.to_string_lossy()
            ));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let rel = format!("{prefix}{name}");
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            subdirs.push((path, format!("{rel}/")));
            out.dirs.push(rel);
        } else if file_type.is_file() {
            let metadata = entry.metadata()?;
            out.files.push((
                rel,
                path,
                metadata.len(),
                metadata.modified().unwrap_or(UNIX_EPOCH),
            ));
        } else if file_type.is_symlink() {
            // Resolve once, here; a target outside the deployment (or a
            // directory, which could loop) is never indexed, so never served.
            match path.canonicalize() {
                Ok(target) if target.starts_with(root) => match std::fs::metadata(&target) {
                    Ok(m) if m.is_file() => {
                        out.files
                            .push((rel, target, m.len(), m.modified().unwrap_or(UNIX_EPOCH)))
                    }
                    _ => out.skipped.push(format!("{rel}: symlink to a non-file")),
                },
                _ => out
                    .skipped
                    .push(format!("{rel}: symlink leading outside the deployment")),
            }
        } else {
            out.skipped.push(format!("{rel}: not a regular file"));
        }
    }
    Ok(())
}

/// A strong ETag from a SHA-256 hex digest: its first 32 hex digits, quoted.
pub fn etag_from_digest(digest_hex: &str) -> HeaderValue {
    let short = &digest_hex[..digest_hex.len().min(32)];
    HeaderValue::from_str(&format!("\"{short}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// SHA-256 of a file's content, hex, read in 256 KiB blocks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The `Content-Type` of a path, with `charset=utf-8` on text types.
pub fn content_type_for(path: &str) -> (HeaderValue, bool) {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let is_html = essence == "text/html";
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    let value = if texty && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    };
    let header = HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    (header, is_html)
}

fn truncate_to_secs(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const OPTIONS: IndexOptions = IndexOptions {
        memory_file_max_bytes: 8,
        memory_budget_bytes: 12,
    };

    #[test]
    fn indexes_files_dirs_siblings_and_skips_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d1");
        std::fs::create_dir_all(dir.join("assets/deep")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(dir.join("assets/app.js"), "let a=1;").unwrap();
        std::fs::write(dir.join("assets/app.js.gz"), "gz").unwrap();
        std::fs::write(dir.join("assets/app.js.br"), "br").unwrap();
        std::fs::write(dir.join(".git/config"), "secret").unwrap();
        std::fs::write(dir.join(".env"), "secret").unwrap();
        std::fs::write(tmp.path().join("outside"), "secret").unwrap();
        symlink("../outside", dir.join("escape")).unwrap();
        symlink("/etc/passwd", dir.join("passwd")).unwrap();
        symlink("assets/app.js", dir.join("alias.js")).unwrap();

        let d = Deployment::build("web", "d1", &dir, OPTIONS).unwrap();
        assert!(d.file("index.html").is_some());
        assert!(d.is_dir("assets") && d.is_dir("assets/deep") && d.is_dir(""));
        assert!(d.file(".env").is_none() && d.file(".git/config").is_none());
        assert!(d.file("escape").is_none() && d.file("passwd").is_none());
        assert_eq!(d.stats.skipped.len(), 2, "{:?}", d.stats.skipped);
        let alias = d.file("alias.js").unwrap();
        assert_eq!(alias.identity.disk_path, d.dir.join("assets/app.js"));

        let js = d.file("assets/app.js").unwrap();
        let encodings: Vec<_> = js.encodings().collect();
        assert_eq!(encodings, vec![Encoding::Br, Encoding::Gzip]);
        assert_eq!(js.content_type, "text/javascript; charset=utf-8");
        assert_ne!(js.identity.etag, js.representation(Some(Encoding::Br)).etag);
        // Budget of 12 bytes with 8-byte files: only some are in memory.
        assert!(d.stats.memory_bytes <= 12);
        assert_eq!(d.memory.used(), d.stats.memory_bytes);
        assert!(
            d.file("index.html").unwrap().identity.cache.is_none(),
            "11 bytes > 8: never held"
        );
        assert!(!d.memory.try_reserve(13));
        assert!(d.file("index.html").unwrap().is_html);
    }

    #[test]
    fn etag_depends_on_content_not_time_or_size() {
        let tmp = tempfile::tempdir().unwrap();
        let epoch = std::fs::FileTimes::new().set_modified(UNIX_EPOCH);
        for (id, body) in [("a", "AAAA"), ("b", "BBBB")] {
            let dir = tmp.path().join(id);
            std::fs::create_dir_all(&dir).unwrap();
            let file = std::fs::File::create(dir.join("f.txt")).unwrap();
            std::io::Write::write_all(&mut &file, body.as_bytes()).unwrap();
            file.set_times(epoch).unwrap();
        }
        let a = Deployment::build("s", "a", &tmp.path().join("a"), OPTIONS).unwrap();
        let b = Deployment::build("s", "b", &tmp.path().join("b"), OPTIONS).unwrap();
        let (fa, fb) = (a.file("f.txt").unwrap(), b.file("f.txt").unwrap());
        assert_eq!(fa.modified, fb.modified);
        assert_eq!(fa.identity.size, fb.identity.size);
        assert_ne!(fa.identity.etag, fb.identity.etag);
    }

    #[test]
    fn manifest_digests_are_used() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f.txt"), "x").unwrap();
        let digest = "ab".repeat(32);
        std::fs::write(
            tmp.path().join(meta::MANIFEST_FILE),
            format!("{digest}  f.txt\n"),
        )
        .unwrap();
        let d = Deployment::build("s", "a", tmp.path(), OPTIONS).unwrap();
        assert_eq!(d.stats.hashed, 0);
        assert_eq!(
            d.file("f.txt").unwrap().identity.etag,
            format!("\"{}\"", &digest[..32]).as_str()
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("a.html").0, "text/html; charset=utf-8");
        assert_eq!(content_type_for("a.css").0, "text/css; charset=utf-8");
        assert_eq!(content_type_for("a.png").0, "image/png");
        assert_eq!(
            content_type_for("a.json").0,
            "application/json; charset=utf-8"
        );
        assert_eq!(content_type_for("noext").0, "application/octet-stream");
    }
}
