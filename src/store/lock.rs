//! Serializing deploys, flips and prunes of one service.
//!
//! Two layers: an async mutex per service (tasks of this process queue
//! without blocking threads), then `flock(2)` on `<root>/<service>/.lock`
//! so that another server process on the same volume (a replica, a
//! migration) never interleaves with this one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::sync::OwnedMutexGuard;

use super::Layout;

/// Held while a service's deployments are being changed.
pub struct ServiceGuard {
    _local: OwnedMutexGuard<()>,
    /// The flock is released when the file is closed.
    _file: File,
}

#[derive(Default)]
pub struct ServiceLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ServiceLocks {
    /// The in-process lock alone (for readers that only need ordering with
    /// this process's own flips, like the watcher).
    pub async fn local(&self, service: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(service.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Both locks; creates the service directory if needed.
    pub async fn lock(&self, layout: &Layout, service: &str) -> Result<ServiceGuard> {
        let local = self.local(service).await;
        let dir = layout.service_dir(service);
        let file = tokio::task::spawn_blocking(move || -> Result<File> {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(".lock");
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open lock file {}", path.display()))?;
            // SAFETY: flock on a file descriptor we own; blocks until granted.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot lock {}", path.display()));
            }
            Ok(file)
        })
        .await
        .context("lock task panicked")??;
        Ok(ServiceGuard {
            _local: local,
            _file: file,
        })
    }
}
