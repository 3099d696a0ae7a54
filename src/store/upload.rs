//! Who owns an unfinished upload: `flock(2)` on its directory.
//!
//! An upload is written into `<service>/upload-<n>.tmp/` and the process
//! receiving it holds an exclusive `flock` on that directory until the
//! upload is committed or removed. Startup cleanup ([`super::Layout::clean_tmp`])
//! removes a leftover only when it can take that lock itself without
//! waiting: the directory of a process that died is unlocked (the kernel
//! drops a dead process's locks), the one a live server — a replica on the
//! same volume, or a second `serve` started by mistake — is still writing
//! is not, and is left alone.
//!
//! A lock on a directory follows the inode, so it survives the rename that
//! commits the upload and the rename that sets a doomed deployment aside.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::flip::unique_suffix;
use super::{Layout, TMP_SUFFIX};

/// Name prefix of an upload directory while it is being created and locked
/// (see [`UploadDir::create`]); a leading dot keeps it out of every listing.
pub const CREATING_PREFIX: &str = ".upload-creating-";

/// An upload directory this process owns; the lock is released on drop.
pub struct UploadDir {
    path: PathBuf,
    _lock: File,
}

impl UploadDir {
    /// Creates `<service>/upload-<unique>.tmp` (and the service directory
    /// if needed) and locks it.
    ///
    /// The directory is made and locked under a name nothing else acts on
    /// ([`CREATING_PREFIX`]`<unique>`), then renamed into place: so no other
    /// process ever sees an upload directory that is not yet locked (a
    /// second server's startup cleanup would otherwise remove it between
    /// `mkdir` and `flock`). A leftover of a crash between the two steps is
    /// unlocked and removed by cleanup like any other.
    pub fn create(layout: &Layout, service: &str) -> Result<UploadDir> {
        let service_dir = layout.service_dir(service);
        let unique = unique_suffix();
        let staging = service_dir.join(format!("{CREATING_PREFIX}{unique}"));
        let path = service_dir.join(format!("upload-{unique}{TMP_SUFFIX}"));
        // A failed first deploy removes the service directory when it is
        // empty (admin::deploy); one that races with us is made again.
        let mut attempts = 0;
        loop {
            std::fs::create_dir_all(&service_dir)
                .with_context(|| format!("cannot create {}", service_dir.display()))?;
            match std::fs::create_dir(&staging) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", staging.display()))
                }
            }
        }
        let lock = match try_lock(&staging) {
            Ok(Some(lock)) => lock,
            Ok(None) => anyhow::bail!("{} is locked by another process", staging.display()),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e).with_context(|| format!("cannot lock {}", staging.display()));
            }
        };
        if let Err(e) = std::fs::rename(&staging, &path) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e)
                .with_context(|| format!("cannot rename {} into place", staging.display()));
        }
        Ok(UploadDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes an exclusive `flock` on `path` (a directory or a file) without
/// waiting: `Ok(None)` when another open file description holds it (a
/// live process is using it).
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let file = File::open(path)?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_upload_survives_cleanup_and_an_abandoned_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let live = UploadDir::create(&layout, "web").unwrap();
        let abandoned = UploadDir::create(&layout, "web").unwrap();
        let abandoned_path = abandoned.path().to_path_buf();
        drop(abandoned);
        let cleaned = layout.clean_tmp("web").unwrap();
        assert_eq!(cleaned.removed, vec![abandoned_path]);
        assert_eq!(cleaned.in_use, vec![live.path().to_path_buf()]);
        assert!(live.path().is_dir());
        drop(live);
        // A crash between mkdir and the rename into place leaves a staging
        // directory nobody holds: removed too.
        let staging = dir.path().join("web").join(format!("{CREATING_PREFIX}1-2"));
        std::fs::create_dir(&staging).unwrap();
        let cleaned = layout.clean_tmp("web").unwrap();
        assert_eq!(cleaned.removed.len(), 2, "{:?}", cleaned.removed);
        assert!(!staging.exists());
        assert!(cleaned.in_use.is_empty());
    }
}
