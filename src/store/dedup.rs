//! Content-addressed storage within a service: a file whose SHA-256 equals
//! a file of another deployment of the same service is a hard link to it,
//! not a second copy; and differential uploads are completed from those
//! files.
//!
//! The "content store" is not a separate directory: it is the
//! `.deployer-manifest` of each retained deployment (path → digest), so
//! nothing has to be kept in sync and deleting or pruning a deployment
//! never breaks another one (a hard link keeps the data alive while any
//! deployment names it). Linking is only an optimisation: when a source
//! vanished under us (pruned concurrently) the file keeps its own copy.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::meta::{self, Manifest};
use super::{is_valid_name, Layout, CURRENT};

/// Digest → a file with that content, from the service's deployments.
#[derive(Debug, Default)]
pub struct ContentIndex {
    files: HashMap<String, PathBuf>,
}

impl ContentIndex {
    /// Reads the manifests of every deployment of `service` (not `*.tmp`
    /// uploads, not `exclude`).
    pub fn of_service(layout: &Layout, service: &str, exclude: Option<&Path>) -> ContentIndex {
        let mut files = HashMap::new();
        let Ok(entries) = fs::read_dir(layout.service_dir(service)) else {
            return ContentIndex { files };
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !is_valid_name(&name)
                || name == CURRENT
                || Some(path.as_path()) == exclude
                || !entry.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let Ok(manifest) = meta::read_manifest(&path) else {
                continue;
            };
            for (rel, digest) in manifest {
                files.entry(digest).or_insert_with(|| path.join(rel));
            }
        }
        ContentIndex { files }
    }

    pub fn has(&self, digest: &str) -> bool {
        self.files.contains_key(digest)
    }

    pub fn source(&self, digest: &str) -> Option<&Path> {
        self.files.get(digest).map(PathBuf::as_path)
    }
}

/// What linking saved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Linked {
    pub files: u64,
    pub bytes: u64,
}

/// Replaces every file of `dir` listed in `manifest` whose content another
/// deployment already has by a hard link to that file.
pub fn link_duplicates(
    dir: &Path,
    manifest: &[(String, String)],
    index: &ContentIndex,
) -> io::Result<Linked> {
    let mut linked = Linked::default();
    for (n, (rel, digest)) in manifest.iter().enumerate() {
        let Some(source) = index.source(digest) else {
            continue;
        };
        let target = dir.join(rel);
        let (Ok(ours), Ok(theirs)) = (fs::symlink_metadata(&target), fs::symlink_metadata(source))
        else {
            continue;
        };
        if !ours.is_file()
            || !theirs.is_file()
            || ours.len() != theirs.len()
            || (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino())
            || ours.dev() != theirs.dev()
        {
            continue;
        }
        if replace_with_link(source, &target, n)? {
            linked.files += 1;
            linked.bytes += ours.len();
        }
    }
    Ok(linked)
}

/// Links `source` at `target` atomically (link to a temporary name, then
/// rename over). `Ok(false)` when the source vanished.
fn replace_with_link(source: &Path, target: &Path, n: usize) -> io::Result<bool> {
    let tmp = target.with_file_name(format!(".dedup-{n}.tmp"));
    match fs::hard_link(source, &tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(true)
}

/// Why a differential upload cannot be completed.
#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    #[error("{0} was uploaded but is not in the upload's manifest")]
    NotDeclared(String),
    #[error("{path} does not match its digest in the upload's manifest")]
    Mismatch { path: String },
    #[error(
        "the server no longer has the content of {path} (sha256 {digest}); \
         ask POST /services/<service>/deployments/manifest again and resend"
    )]
    Lacking { path: String, digest: String },
    /// The manifest names a path the upload cannot have: not a normal
    /// relative path, through a file, taken by an uploaded link or
    /// directory, too long. The client's to fix (422), never a 5xx.
    #[error("{path} in the upload's manifest: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
}

/// Completes a differential upload in `dir`: every path of `declared`
/// that was not uploaded is linked from a file with its digest (one
/// uploaded in this same upload, or one of another deployment). Uploaded
/// files must be declared, with the digest they were declared with.
/// Returns the number of files linked in.
pub fn complete_partial(
    dir: &Path,
    uploaded: &[(String, String)],
    declared: &Manifest,
    index: &ContentIndex,
) -> Result<u64, PartialError> {
    let mut here: HashMap<&str, PathBuf> = HashMap::new();
    for (rel, digest) in uploaded {
        match declared.get(rel) {
            None => return Err(PartialError::NotDeclared(rel.clone())),
            Some(d) if d != digest => return Err(PartialError::Mismatch { path: rel.clone() }),
            Some(_) => {
                here.entry(digest.as_str()).or_insert_with(|| dir.join(rel));
            }
        }
    }
    let uploaded_paths: std::collections::HashSet<&str> =
        uploaded.iter().map(|(rel, _)| rel.as_str()).collect();
    let mut declared_sorted: Vec<(&String, &String)> = declared.iter().collect();
    declared_sorted.sort();
    let mut filled = 0;
    for (rel, digest) in declared_sorted {
        if uploaded_paths.contains(rel.as_str()) {
            continue;
        }
        let components = super::ingest::normal_components(rel.as_bytes()).map_err(|e| {
            PartialError::Invalid {
                path: rel.clone(),
                reason: e.to_string(),
            }
        })?;
        if components.is_empty()
            || components.join("/") != *rel
            || rel == meta::META_FILE
            || rel == meta::MANIFEST_FILE
        {
            return Err(PartialError::Invalid {
                path: rel.clone(),
                reason: "not a normal relative path".to_string(),
            });
        }
        let source = here
            .get(digest.as_str())
            .cloned()
            .or_else(|| index.source(digest).map(Path::to_path_buf))
            .ok_or_else(|| PartialError::Lacking {
                path: rel.clone(),
                digest: digest.clone(),
            })?;
        let target = dir.join(rel);
        let io_error = |error| PartialError::Io {
            path: rel.clone(),
            error,
        };
        let invalid = |reason: String| PartialError::Invalid {
            path: rel.clone(),
            reason,
        };
        super::ingest::make_dirs(dir, &components[..components.len() - 1]).map_err(|e| {
            if e.status() < 500 {
                invalid(e.to_string())
            } else {
                io_error(io::Error::other(e.to_string()))
            }
        })?;
        match fs::hard_link(&source, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PartialError::Lacking {
                    path: rel.clone(),
                    digest: digest.clone(),
                })
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EEXIST) => {
                    return Err(invalid(
                        "the upload already has a link or directory there".to_string(),
                    ))
                }
                Some(libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP) => {
                    return Err(invalid(e.to_string()))
                }
                _ => return Err(io_error(e)),
            },
        }
        filled += 1;
    }
    Ok(filled)
}
