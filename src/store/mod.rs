//! The volume: where services and their deployments live on disk.
//!
//! ```text
//! <root>/<service>/<deploymentId>/...          immutable file tree
//! <root>/<service>/<deploymentId>/.deployer-meta.json
//! <root>/<service>/<deploymentId>/.deployer-manifest   "sha256  path" lines
//! <root>/<service>/current -> <deploymentId>   relative symlink
//! <root>/<service>/<deploymentId>.tmp/         upload in progress, never served
//! ```
//!
//! This module knows names and paths and nothing about HTTP. Everything that
//! reads a name from a client or from the disk checks it with
//! [`is_valid_name`] before joining it to a path.

pub mod dedup;
pub mod deployments;
pub mod flip;
pub mod ingest;
pub mod lock;
pub mod meta;
pub mod precompress;
pub mod writer;

use std::io;
use std::path::{Path, PathBuf};

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

    /// Removes `<id>.tmp` directories: uploads that never finished. Called at
    /// startup, before anything can be uploading. Returns what was removed.
    pub fn clean_tmp(&self, service: &str) -> Result<Vec<PathBuf>> {
        let dir = self.service_dir(service);
        let mut removed = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_tmp = name.ends_with(TMP_SUFFIX) || name.starts_with("current.tmp-");
            if !is_tmp {
                continue;
            }
            let path = entry.path();
            let result = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            result.with_context(|| format!("cannot remove leftover {}", path.display()))?;
            removed.push(path);
        }
        Ok(removed)
    }
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
        let removed = layout.clean_tmp("web").unwrap();
        assert_eq!(removed.len(), 1);
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
