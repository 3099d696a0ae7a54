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

use super::heads::Heads;
use super::rules::{self, SiteRules};
use super::types;
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
    /// The response heads of this form, prepared on its first answer
    /// ([`super::heads`]).
    pub heads: OnceLock<Heads>,
}

/// Files above the in-memory limit and up to this size are served from a
/// mapping kept in the index; larger ones are read per response.
pub const MAPPED_MAX: u64 = 64 << 20;

impl Representation {
    /// The bytes, if held in memory already.
    pub fn cached(&self) -> Option<&Bytes> {
        self.cache.as_ref().and_then(|c| c.get())
    }

    /// The prepared response heads of this form of `entry` (made on the
    /// first call; `entry` must be the file this form belongs to).
    pub fn heads(&self, entry: &FileEntry) -> &Heads {
        self.heads.get_or_init(|| Heads::new(entry, self))
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
    /// The name carries a content fingerprint ([`rules::immutable`]) and
    /// no retained deployment holds other bytes under this path.
    pub fingerprinted: bool,
    /// Some retained deployment holds other bytes under this path: never
    /// immutable, whatever the name or `immutable_paths` say.
    pub bytes_vary: bool,
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
    /// Fingerprinted names refused the immutable policy because a retained
    /// deployment holds other bytes under them.
    pub immutable_refused: Vec<String>,
}

/// The immutable index of one deployment of one service.
#[derive(Debug)]
pub struct Deployment {
    pub service: String,
    pub id: String,
    pub dir: PathBuf,
    pub meta: Option<DeploymentMeta>,
    /// The date validator of every file answered from this deployment: a
    /// time no earlier than the moment its URLs started answering with this
    /// content, rounded *up* to whole seconds (see [`Deployment::modified`]).
    modified: SystemTime,
    /// `modified` as an HTTP-date.
    last_modified: HeaderValue,
    /// FxHash: looked up on every request (SipHash was ≈ 2 % of a request's
    /// instructions); keys come from the deployment, never from a request.
    files: HashMap<Box<str>, FileEntry, rustc_hash::FxBuildHasher>,
    /// Directories, as relative paths without trailing slash ("" is the top).
    dirs: HashSet<Box<str>, rustc_hash::FxBuildHasher>,
    pub stats: IndexStats,
    pub memory: MemoryBudget,
    /// The site's own `_redirects` and `_headers`, compiled.
    pub rules: SiteRules,
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

    /// The `Last-Modified` time of every file of this deployment (RFC 9110
    /// §8.8.2), whole seconds. For the current deployment it is when it
    /// became current ([`Deployment::became_current`]: the `current`
    /// symlink's own mtime, which every flip renews); otherwise when its
    /// directory was committed (its ctime), which suits preview URLs, whose
    /// content never changes. Never a file's mtime: deduplication and
    /// rollbacks bring back old inodes whose mtimes would make the date go
    /// backwards while the content changed.
    pub fn modified(&self) -> SystemTime {
        self.modified
    }

    /// [`Deployment::modified`] as an HTTP-date, for `Last-Modified`.
    pub fn last_modified(&self) -> &HeaderValue {
        &self.last_modified
    }

    /// Marks this index as the service's current deployment since `since`
    /// (the `current` link's mtime, [`crate::store::Layout::current_since`]).
    /// Rounded up: a date validator `D` (whole seconds) then matches only
    /// when the flip happened at or before `D`.
    pub fn became_current(mut self, since: SystemTime) -> Deployment {
        self.modified = ceil_to_secs(since);
        self.last_modified = http_date(self.modified);
        self
    }

    /// Builds the index of `<dir>`, the versioned directory of `id`.
    ///
    /// Only regular files are indexed. A symlink is followed only when its
    /// resolved target is a regular file or a directory inside the
    /// deployment directory (a directory's files are indexed under the
    /// link's path, as nginx would serve them; a link back to a directory
    /// above it is a cycle and skipped); anything else is skipped and
    /// reported in [`IndexStats::skipped`].
    /// Names starting with `.` are never indexed: they are never served.
    pub fn build(
        service: &str,
        id: &str,
        dir: &Path,
        options: IndexOptions,
    ) -> io::Result<Deployment> {
        let root = dir.canonicalize()?;
        let committed = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&root)?;
            UNIX_EPOCH
                + Duration::new(
                    u64::try_from(m.ctime()).unwrap_or(0),
                    u32::try_from(m.ctime_nsec()).unwrap_or(0),
                )
        };
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
        let mut dirs: HashSet<Box<str>, rustc_hash::FxBuildHasher> = walked
            .dirs
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        dirs.insert(Box::<str>::from(""));
        let mut found = walked.files;
        // `_redirects` and `_headers` configure the site; never served.
        found.retain(|(rel, ..)| !rules::is_rule_file(rel));
        let site_rules = SiteRules::load(&root, &rules::Limits::unlimited()).unwrap_or_else(|e| {
            // Checked at upload; only a deployment made by hand gets here.
            stats.skipped.push(format!("{e} (rules not applied)"));
            SiteRules::default()
        });

        // A file's bytes are only read here when its digest is not in the
        // manifest (a deployment made by hand): then a small one is kept,
        // since it was read anyway. Otherwise the build only stats, so a
        // flip of a 10 000-file deployment stays in the tens of ms.
        let memory = MemoryBudget::new(options.memory_budget_bytes);
        let mut plain: HashMap<String, Representation> = HashMap::with_capacity(found.len());
        let mut digests: HashMap<String, String> = HashMap::with_capacity(found.len());
        for (rel, disk_path, size) in found {
            let small = size <= options.memory_file_max_bytes;
            let cache = small.then(|| Arc::new(OnceLock::new()));
            // A path reached through a symlink has its target's digest.
            let digest = match manifest.get(&rel).or_else(|| {
                disk_path
                    .strip_prefix(&root)
                    .ok()
                    .and_then(|p| p.to_str())
                    .and_then(|p| manifest.get(p))
            }) {
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
            digests.insert(rel.clone(), digest.clone());
            let representation = Representation {
                encoding: None,
                disk_path,
                size,
                etag: etag_from_digest(&digest),
                mapping: (cache.is_none() && size > 0 && size <= MAPPED_MAX)
                    .then(|| Arc::new(OnceLock::new())),
                cache,
                heads: OnceLock::new(),
            };
            plain.insert(rel, representation);
        }

        // Attach precompressed siblings: `app.js.br` is an encoding of `app.js`
        // (and stays servable under its own name too).
        let mut files = HashMap::with_capacity_and_hasher(plain.len(), rustc_hash::FxBuildHasher);
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
            let Some(rep) = plain.get(&rel) else {
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
                    heads: OnceLock::new(),
                });
        }
        // The immutable rule's safety half: other bytes under the same
        // path in a retained deployment (read from their manifests).
        digests.retain(|rel, _| !rel.ends_with(".html") && !rel.ends_with(".htm"));
        let candidates: HashSet<&str> = digests
            .keys()
            .map(String::as_str)
            .filter(|rel| rules::immutable::is_fingerprinted(rel))
            .collect();
        let varying = rules::immutable::varying_paths(&root, &digests, &candidates);
        // Per extension: the type without a declared charset, whether it is
        // HTML, and whether the file's first bytes may declare a charset.
        let mut types: HashMap<String, (HeaderValue, bool, bool)> = HashMap::new();
        for (rel, identity) in plain {
            let mut encoded = encoded_by_base.remove(&rel).unwrap_or_default();
            encoded.sort_by_key(|r| Encoding::ALL.iter().position(|e| Some(*e) == r.encoding));
            let extension = rel
                .rsplit('/')
                .next()
                .and_then(|n| n.rsplit_once('.'))
                .map_or("", |(_, e)| e);
            let (mut content_type, is_html, declarable) = types
                .entry(extension.to_ascii_lowercase())
                .or_insert_with(|| {
                    let (value, is_html) = types::content_type(&rel, b"");
                    let declarable = types::may_declare_charset(&types::media_type(&rel));
                    (value, is_html, declarable)
                })
                .clone();
            if declarable {
                // One small read per HTML/XML/CSS file, at index time.
                let head = match identity.cached() {
                    Some(bytes) => bytes[..bytes.len().min(types::PRESCAN_BYTES)].to_vec(),
                    None => read_head(&identity.disk_path, types::PRESCAN_BYTES)?,
                };
                content_type = types::content_type(&rel, &head).0;
            }
            let bytes_vary = varying.contains(&rel);
            let fingerprinted = !is_html && rules::immutable::is_fingerprinted(&rel);
            if fingerprinted && bytes_vary {
                stats.immutable_refused.push(rel.clone());
            }
            files.insert(
                rel.into_boxed_str(),
                FileEntry {
                    identity,
                    encoded,
                    content_type,
                    is_html,
                    fingerprinted: fingerprinted && !bytes_vary,
                    bytes_vary,
                },
            );
        }

        // Siblings generated at deploy time (listed in the metadata) are
        // encodings of their base file only, not URLs: never uploaded.
        for rel in deployment_meta.iter().flat_map(|m| &m.generated) {
            files.remove(rel.as_str());
        }

        stats.skipped.sort();
        stats.immutable_refused.sort();
        Ok(Deployment {
            service: service.to_string(),
            id: id.to_string(),
            dir: root,
            meta: deployment_meta,
            modified: ceil_to_secs(committed),
            last_modified: http_date(ceil_to_secs(committed)),
            files,
            dirs,
            stats,
            memory,
            rules: site_rules,
        })
    }
}

type Found = (String, PathBuf, u64);

/// At most this many files and directories are indexed through directory
/// symlinks: links can multiply a tree (ten links to a directory with ten
/// links to …), and ingest refuses such uploads, but a hand-made deployment
/// must not make an index build run away.
const LINKED_MAX: u64 = 200_000;

/// What walking a deployment found.
#[derive(Default)]
struct Walked {
    files: Vec<Found>,
    dirs: Vec<String>,
    skipped: Vec<String>,
}

/// One directory to read: where it is on disk, the URL prefix its entries
/// get, the (device, inode) of every directory from the top down to it (a
/// directory symlink leading back into that chain is a cycle), and whether
/// it was reached through a directory symlink.
struct Job {
    dir: PathBuf,
    prefix: String,
    chain: Arc<Vec<(u64, u64)>>,
    linked: bool,
}

/// Directories waiting to be read, shared by the walking threads.
struct Queue {
    pending: Vec<Job>,
    busy: usize,
    error: Option<io::Error>,
}

/// Walks the deployment with one thread per core: on a flip the stat
/// calls of a 10 000-file tree are most of the index build.
fn walk(root: &Path) -> io::Result<Walked> {
    use std::os::unix::fs::MetadataExt;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let top = std::fs::metadata(root)?;
    let queue = Mutex::new(Queue {
        pending: vec![Job {
            dir: root.to_path_buf(),
            prefix: String::new(),
            chain: Arc::new(vec![(top.dev(), top.ino())]),
            linked: false,
        }],
        busy: 0,
        error: None,
    });
    let wake = Condvar::new();
    let linked = AtomicU64::new(0);
    let results: Vec<Walked> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| walk_worker(root, &queue, &wake, &linked)))
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

fn walk_worker(root: &Path, queue: &Mutex<Queue>, wake: &Condvar, linked: &AtomicU64) -> Walked {
    let mut mine = Walked::default();
    loop {
        let job = {
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
        let result = read_one_dir(root, &job, &mut mine, &mut subdirs, linked);
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
    job: &Job,
    out: &mut Walked,
    subdirs: &mut Vec<Job>,
    linked: &AtomicU64,
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let prefix = job.prefix.as_str();
    for entry in std::fs::read_dir(&job.dir)? {
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
        if job.linked && linked.fetch_add(1, Ordering::Relaxed) >= LINKED_MAX {
            out.skipped.push(format!(
                "{rel}: more than {LINKED_MAX} entries reached through directory symlinks"
            ));
            continue;
        }
        let mut push_dir = |dir: PathBuf, m: &std::fs::Metadata, through_link: bool| {
            let mut chain = Vec::clone(&job.chain);
            chain.push((m.dev(), m.ino()));
            subdirs.push(Job {
                dir,
                prefix: format!("{rel}/"),
                chain: Arc::new(chain),
                linked: job.linked || through_link,
            });
            out.dirs.push(rel.clone());
        };
        if file_type.is_dir() {
            let m = entry.metadata()?;
            push_dir(path, &m, false);
        } else if file_type.is_file() {
            let metadata = entry.metadata()?;
            out.files.push((rel, path, metadata.len()));
        } else if file_type.is_symlink() {
            // Resolve once, here; a target outside the deployment is never
            // indexed, so never served. A directory is indexed under the
            // link's path unless it leads back to a directory above the
            // link (a cycle: `a/up -> ..` would be endless).
            match path.canonicalize() {
                Ok(target) if target.starts_with(root) => match std::fs::metadata(&target) {
                    Ok(m) if m.is_file() => out.files.push((rel, target, m.len())),
                    Ok(m) if m.is_dir() => {
                        if job.chain.contains(&(m.dev(), m.ino())) {
                            out.skipped
                                .push(format!("{rel}: directory symlink makes a cycle"));
                        } else {
                            push_dir(target, &m, true);
                        }
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

/// The `Content-Type` of a path when its content declares nothing (see
/// [`super::types`]), and whether it is HTML.
pub fn content_type_for(path: &str) -> (HeaderValue, bool) {
    types::content_type(path, b"")
}

/// Up to `n` first bytes of a file.
fn read_head(path: &Path, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    std::fs::File::open(path)?
        .take(n as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// An HTTP-date header value (RFC 9110 §5.6.7).
pub fn http_date(time: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(time))
        .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// `time` rounded up to whole seconds (HTTP dates have no more).
pub fn ceil_to_secs(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
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
    fn directory_symlinks_are_indexed_under_the_link_and_cycles_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d1");
        std::fs::create_dir_all(dir.join("v2/css")).unwrap();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("index.html"), "top").unwrap();
        std::fs::write(dir.join("v2/index.html"), "v2").unwrap();
        std::fs::write(dir.join("v2/css/a.css"), "a").unwrap();
        std::fs::write(tmp.path().join("outside.txt"), "secret").unwrap();
        symlink("v2", dir.join("latest")).unwrap();
        symlink("..", dir.join("docs/up")).unwrap();
        symlink("..", dir.join("out")).unwrap();
        symlink("../css", dir.join("v2/css/again")).unwrap();

        let d = Deployment::build("web", "d1", &dir, OPTIONS).unwrap();
        assert!(d.is_dir("latest") && d.is_dir("latest/css"));
        let a = d.file("latest/css/a.css").unwrap();
        assert_eq!(a.identity.disk_path, d.dir.join("v2/css/a.css"));
        assert!(d.file("latest/index.html").is_some());
        assert!(!d.is_dir("docs/up") && !d.is_dir("out") && !d.is_dir("latest/css/again"));
        assert!(d.file("out/outside.txt").is_none());
        let skipped = d.stats.skipped.join("; ");
        assert!(
            skipped.contains("docs/up: directory symlink makes a cycle"),
            "{skipped}"
        );
        assert!(
            skipped.contains("out: symlink leading outside"),
            "{skipped}"
        );
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
