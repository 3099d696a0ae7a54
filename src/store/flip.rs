//! The atomic flip of `<service>/current`.
//!
//! `ln -sfn` unlinks then creates, so a reader can see no link at all. Here
//! a new link `current.tmp-<rand>` is created and `rename(2)`d over
//! `current`, which replaces it atomically, then the directory is fsynced so
//! the flip survives a crash.

use std::io;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Layout, CURRENT};

/// Points `current` at `id`. The caller holds the service lock and has
/// checked that the deployment directory exists.
pub fn flip_current(layout: &Layout, service: &str, id: &str) -> Result<()> {
    let dir = layout.service_dir(service);
    let tmp = dir.join(format!("{CURRENT}.tmp-{}", unique_suffix()));
    std::os::unix::fs::symlink(id, &tmp)
        .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, dir.join(CURRENT)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot rename {} over {CURRENT}", tmp.display()));
    }
    fsync_dir(&dir)?;
    Ok(())
}

/// fsync a directory so renames and unlinks in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let handle =
        std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    handle
        .sync_all()
        .with_context(|| format!("cannot fsync {}", dir.display()))
}

/// A name suffix unique within this host: pid, time and a counter.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:08x}{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Flushes everything written to the filesystem holding `path` (one
/// `syncfs(2)` instead of an fsync per file of a 10 000-file upload).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let handle = std::fs::File::open(path)?;
    // SAFETY: syncfs on a file descriptor we own.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
