//! The volume: where services and their deployments live on disk.
//!
//! ```text
//! <root>/<service>/<deploymentId>/...          immutable file tree
//! <root>/<service>/<deploymentId>/.deployer-meta.json
//! <root>/<service>/<deploymentId>/.deployer-manifest   "sha256  path" lines
//! <root>/<service>/current -> <deploymentId>   relative symlink
//! <root>/<service>/upload-<n>.tmp/             upload in progress (flocked by its owner), never served
//! <root>/<service>/.activations.jsonl          every change of current (activations.rs)
//! <root>/<service>/.pinned.json                pinned deployment ids (pins.rs)
//! ```
//!
//! This module knows names and paths and nothing about HTTP. Everything that
//! reads a name from a client or from the disk checks it with
//! [`is_valid_name`] before joining it to a path.

pub mod activations;
pub mod dedup;
pub mod deployments;
pub mod flip;
pub mod ingest;
pub mod lock;
pub mod meta;
pub mod pins;
pub mod precompress;
pub mod space;
pub mod upload;
pub mod writer;
pub mod zip_ingest;

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

/// Errors of operations on deployments that the admin API maps to statuses.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    pub fn status(&self) -> u16 {
        match self {
            StoreError::NotFound(_) => 404,
            StoreError::Conflict(_) => 409,
            StoreError::DiskFull(_) => 507,
            StoreError::Other(_) => 500,
        }
    }
}

/// The name of the symlink that says which deployment is live.
pub const CURRENT: &str = "current";
/// Suffix of a deployment directory still being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// The refusal of a service name that is not [`is_valid_name`], as the
/// admin API answers it (400) and the CLI says it before sending.
pub fn check_service_name(name: &str) -> Result<(), String> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid service name {name:?}: use 1-64 of A-Z a-z 0-9 _ -"
        ))
    }
}

/// `^[A-Za-z0-9_-]{1,64}$`: the only shape a service name or deployment id takes.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Paths inside one root. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<service>`. The caller has checked the name.
    pub fn service_dir(&self, service: &str) -> PathBuf {
        debug_assert!(is_valid_name(service));
        self.root.join(service)
    }

    /// `<root>/<service>/<id>`. The caller has checked both names.
    pub fn deployment_dir(&self, service: &str, id: &str) -> PathBuf {
        debug_assert!(is_valid_name(id));
        self.service_dir(service).join(id)
    }

    pub fn current_link(&self, service: &str) -> PathBuf {
        self.service_dir(service).join(CURRENT)
    }

    /// Which deployment `current` names and since when: the link's own
    /// mtime. Every flip creates a new link (ours renames a fresh one over
    /// it, `ln -sfn` unlinks and recreates), so this is when the deployment
    /// became current, the same for every process reading the volume
    /// (watcher, replicas, restarts). The link is looked at twice around the
    /// read so the time and the id belong to the same link.
    pub fn read_current_since(&self, service: &str) -> Result<Option<(String, SystemTime)>> {
        use std::os::unix::fs::MetadataExt;
        let link = self.current_link(service);
        let stat = |link: &Path| match std::fs::symlink_metadata(link) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot stat {}", link.display())),
        };
        for _ in 0..8 {
            let Some(before) = stat(&link)? else {
                return Ok(None);
            };
            let Some(id) = self.read_current(service)? else {
                return Ok(None);
            };
            let Some(after) = stat(&link)? else {
                return Ok(None);
            };
            if (before.ino(), before.mtime(), before.mtime_nsec())
                == (after.ino(), after.mtime(), after.mtime_nsec())
            {
                let since = before
                    .modified()
                    .with_context(|| format!("no mtime for {}", link.display()))?;
                return Ok(Some((id, since)));
            }
        }
        anyhow::bail!("{} keeps changing while being read", link.display())
    }

    /// The mtime of `current`: when the deployment it names became current
    /// (see [`Layout::read_current_since`]).
    pub fn current_since(&self, service: &str) -> Result<SystemTime> {
        let link = self.current_link(service);
        std::fs::symlink_metadata(&link)
            .and_then(|m| m.modified())
            .with_context(|| format!("cannot stat {}", link.display()))
    }

    /// Creates the root if it is missing (first start from a checkout).
    pub fn ensure_root(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create root directory {}", self.root.display()))
    }

    /// Every directory under the root whose name is a valid service name, sorted.
    /// Other entries (`_health`, stray files) are ignored.
    pub fn services(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot list root directory {}", self.root.display()))?;
        let mut services = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", self.root.display()))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_valid_name(&name) && entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                services.push(name);
            }
        }
        services.sort();
        Ok(services)
    }

    /// Which deployment `current` names, or `None` when the service has no
    /// `current` link yet. A link that points at something other than a valid
    /// deployment directory of this service is an error.
    pub fn read_current(&self, service: &str) -> Result<Option<String>> {
        let link = self.current_link(service);
        let target = match std::fs::read_link(&link) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read symlink {}", link.display()))
            }
        };
        // The seed runbook writes `current -> <id>`; tolerate `./<id>` and an
        // absolute path into this very service directory, nothing else.
        let name = match target.components().collect::<Vec<_>>().as_slice() {
            [std::path::Component::Normal(n)] => n.to_str(),
            [std::path::Component::CurDir, std::path::Component::Normal(n)] => n.to_str(),
            _ if target.is_absolute() && target.parent() == Some(&self.service_dir(service)) => {
                target.file_name().and_then(|n| n.to_str())
            }
            _ => None,
        };
        let id = match name {
            Some(id) if is_valid_name(id) && id != CURRENT => id.to_string(),
            _ => anyhow::bail!(
                "{} points at {:?}, which is not a deployment of this service",
                link.display(),
                target
            ),
        };
        let dir = self.deployment_dir(service, &id);
        let meta = std::fs::symlink_metadata(&dir)
            .with_context(|| format!("{} points at missing {}", link.display(), dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!(
                "{} points at {}, which is not a directory",
                link.display(),
                dir.display()
            );
        }
        Ok(Some(id))
    }

    /// Removes leftovers of uploads, deletions and flips that never
    /// finished (`*.tmp` directories, `current.tmp-*` links) — but only
    /// those no live process owns: an upload directory another process
    /// holds a `flock` on ([`upload`]) is reported in `in_use` and kept, and
    /// `current.tmp-*` links are kept while another process holds the
    /// service's `.lock` (it is flipping). Called at startup.
    pub fn clean_tmp(&self, service: &str) -> Result<Cleaned> {
        let dir = self.service_dir(service);
        let mut cleaned = Cleaned::default();
        let mut flipping: Option<bool> = None;
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let result = if (name.ends_with(TMP_SUFFIX)
                || name.starts_with(upload::CREATING_PREFIX))
                && is_dir
            {
                // Held until removed, so its owner cannot be mid-way either.
                let _lock = match upload::try_lock(&path) {
                    Ok(Some(lock)) => lock,
                    Ok(None) => {
                        cleaned.in_use.push(path);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                    }
                };
                std::fs::remove_dir_all(&path)
            } else if name.ends_with(TMP_SUFFIX) || name.starts_with("current.tmp-") {
                let busy = *flipping.get_or_insert_with(|| {
                    matches!(upload::try_lock(&dir.join(".lock")), Ok(None))
                });
                if busy {
                    cleaned.in_use.push(path);
                    continue;
                }
                std::fs::remove_file(&path)
            } else {
                continue;
            };
            match result {
                Ok(()) => cleaned.removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot remove leftover {}", path.display()))
                }
            }
        }
        Ok(cleaned)
    }
}

/// What [`Layout::clean_tmp`] found.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Leftovers removed.
    pub removed: Vec<PathBuf>,
    /// Leftovers kept because a live process (another server on this
    /// root) still owns them.
    pub in_use: Vec<PathBuf>,
}

/// Calls `visit` with the metadata of every regular file under `dir`
/// (symlinks are not followed; entries starting with `.` are skipped when
/// `skip_hidden`). Unreadable directories are passed over.
pub fn for_each_file(dir: &Path, skip_hidden: bool, mut visit: impl FnMut(&std::fs::Metadata)) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if skip_hidden && entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                visit(&meta);
            }
        }
    }
}

/// Bytes on disk under `dir`, each inode counted once (hard links shared
/// between deployments are not counted twice).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for_each_file(dir, false, |meta| {
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
    });
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn names() {
        assert!(is_valid_name("site"));
        assert!(is_valid_name("a_b-C9"));
        assert!(is_valid_name(&"x".repeat(64)));
        assert!(!is_valid_name(&"x".repeat(65)));
        for bad in ["", ".", "..", "a.b", "a/b", "a b", "é", "a\0"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn current_and_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(dir.path().join("web/abc")).unwrap();
        std::fs::create_dir_all(dir.path().join("web/def.tmp/x")).unwrap();
        std::fs::write(dir.path().join("stray-file"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("_health")).unwrap();
        assert_eq!(layout.services().unwrap(), vec!["_health", "web"]);
        assert_eq!(layout.read_current("web").unwrap(), None);
        symlink("abc", dir.path().join("web/current")).unwrap();
        assert_eq!(layout.read_current("web").unwrap().as_deref(), Some("abc"));
        let cleaned = layout.clean_tmp("web").unwrap();
        assert_eq!(cleaned.removed.len(), 1);
        assert!(!dir.path().join("web/def.tmp").exists());
        assert!(dir.path().join("web/abc").exists());

        std::fs::remove_file(dir.path().join("web/current")).unwrap();
        symlink("../../etc", dir.path().join("web/current")).unwrap();
        assert!(layout.read_current("web").is_err());
        std::fs::remove_file(dir.path().join("web/current")).unwrap();
        symlink("gone", dir.path().join("web/current")).unwrap();
        assert!(layout.read_current("web").is_err());
    }
}
