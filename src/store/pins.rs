//! Pinned deployments: kept whatever `keep` says.
//!
//! `<root>/<service>/.pinned.json` holds the sorted list of pinned ids,
//! replaced atomically (written aside, fsynced, renamed) under the service
//! lock. Retention ([`super::deployments::prune`]) never removes a pinned
//! deployment and does not count it against `keep`; deleting one is refused
//! until it is unpinned.

use std::collections::BTreeSet;
use std::io;

use anyhow::{Context, Result};

use super::flip::{fsync_dir, unique_suffix};
use super::Layout;

/// The pin file's name inside the service directory.
pub const PIN_FILE: &str = ".pinned.json";

/// The pinned ids of `service` (empty when none or unreadable as JSON).
pub fn read(layout: &Layout, service: &str) -> Result<BTreeSet<String>> {
    let path = layout.service_dir(service).join(PIN_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "pin file is not a JSON list; treating as empty");
            BTreeSet::new()
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Pins (`pinned = true`) or unpins `id`. The caller holds the service lock
/// and has checked that the deployment exists. Returns whether anything changed.
pub fn set(layout: &Layout, service: &str, id: &str, pinned: bool) -> Result<bool> {
    let mut pins = read(layout, service)?;
    let changed = if pinned {
        pins.insert(id.to_string())
    } else {
        pins.remove(id)
    };
    if changed {
        write(layout, service, &pins)?;
    }
    Ok(changed)
}

fn write(layout: &Layout, service: &str, pins: &BTreeSet<String>) -> Result<()> {
    let dir = layout.service_dir(service);
    let path = dir.join(PIN_FILE);
    let tmp = dir.join(format!("{PIN_FILE}.{}.tmp", unique_suffix()));
    let json = serde_json::to_vec(pins).context("cannot encode pins")?;
    let write = || -> io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        io::Write::write_all(&mut &file, &json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    fsync_dir(&dir)
}
