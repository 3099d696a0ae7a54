//! A service's deployments on disk: listing, committing an upload,
//! retention and deletion. The caller holds the service lock for anything
//! that changes the directory.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use super::flip::{fsync_dir, sync_filesystem, unique_suffix};
use super::ingest::Extracted;
use super::meta::{self, DeploymentMeta, Provenance};
use super::{is_valid_name, Layout, StoreError, TMP_SUFFIX};

/// One deployment as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    pub id: String,
    pub created_at: String,
    pub files: u64,
    pub bytes: u64,
    pub active: bool,
    /// Pinned: never pruned, not counted against `keep`.
    pub pinned: bool,
    #[serde(skip)]
    pub digest: Option<String>,
    /// Message, commit, branch, dirty, labels, actor (absent ones left out).
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// Every deployment of `service`, newest first (by `createdAt`, then id).
pub fn list(layout: &Layout, service: &str) -> Result<Vec<DeploymentInfo>> {
    let dir = layout.service_dir(service);
    let current = layout.read_current(service).ok().flatten();
    let pins = super::pins::read(layout, service).unwrap_or_default();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut all = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let Ok(id) = entry.file_name().into_string() else {
            continue;
        };
        if !is_valid_name(&id)
            || id == super::CURRENT
            || !entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
        {
            continue;
        }
        let path = entry.path();
        let info = match DeploymentMeta::read(&path).ok().flatten() {
            Some(m) => DeploymentInfo {
                created_at: m.created_at,
                files: m.files,
                bytes: m.bytes,
                digest: Some(m.digest),
                active: false,
                pinned: false,
                id: id.clone(),
                provenance: m.provenance,
            },
            None => {
                // Made by hand (seed runbook): count what is there.
                let (files, bytes) = count_tree(&path);
                let modified = entry.metadata().ok();
                DeploymentInfo {
                    created_at: hand_made_created_at(modified.as_ref()),
                    files,
                    bytes,
                    digest: None,
                    active: false,
                    pinned: false,
                    id: id.clone(),
                    provenance: Provenance::default(),
                }
            }
        };
        all.push(DeploymentInfo {
            active: current.as_deref() == Some(id.as_str()),
            pinned: pins.contains(&id),
            ..info
        });
    }
    all.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(all)
}

/// The `createdAt` of the deployment in `dir`, as [`list`] reports it: from
/// its `.deployer-meta.json`, or for a deployment made by hand (no
/// metadata) the directory's mtime. `None` when the directory is gone.
///
/// Immutable for a deployment's life and different for a deployment made
/// again under the same id, so it names one deployment, not one id: signed
/// preview links ([`crate::previews`]) and the activation log
/// ([`super::activations`]) are bound to it.
pub fn created_at(dir: &Path) -> Option<String> {
    if let Ok(Some(meta)) = DeploymentMeta::read(dir) {
        return Some(meta.created_at);
    }
    let metadata = std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir())?;
    Some(hand_made_created_at(Some(&metadata)))
}

/// The `createdAt` of a deployment without metadata: its directory's mtime.
fn hand_made_created_at(metadata: Option<&std::fs::Metadata>) -> String {
    rfc3339(
        metadata
            .and_then(|m| m.modified().ok())
            .unwrap_or(UNIX_EPOCH),
    )
}

/// Whether `service` has at least one deployment directory. A service
/// directory holding none (only an upload in progress, or what a failed
/// first deploy left) is not a service to list.
pub fn has_any(layout: &Layout, service: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(layout.service_dir(service)) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .is_some_and(|id| is_valid_name(id) && id != super::CURRENT)
            && entry.file_type().is_ok_and(|t| t.is_dir())
    })
}

/// The last instant RFC 3339 can write, in seconds since the Unix epoch:
/// 9999-12-31T23:59:59Z (plus up to 999 999 999 ns).
pub const MAX_RFC3339_UNIX_SECS: u64 = 253_402_300_799;

/// RFC 3339 with nanoseconds: fixed width, so it sorts as text.
///
/// Times past 9999-12-31T23:59:59.999999999Z (which RFC 3339 cannot write,
/// and which a file's mtime on disk may still carry) are clamped to it.
pub fn rfc3339(time: SystemTime) -> String {
    let last = std::time::UNIX_EPOCH + std::time::Duration::new(MAX_RFC3339_UNIX_SECS, 999_999_999);
    humantime::format_rfc3339_nanos(time.min(last)).to_string()
}

fn count_tree(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    super::for_each_file(dir, true, |meta| {
        files += 1;
        bytes += meta.len();
    });
    (files, bytes)
}

/// Whether a commit made a new deployment or found the same content already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Created,
    Existing,
}

/// Turns a fully extracted upload directory into `<service>/<id>`:
/// writes the metadata and manifest, flushes the filesystem, renames.
/// Same content as an existing deployment of that id → `Existing` (the
/// upload directory is removed); other content under that id → conflict.
pub fn commit(
    layout: &Layout,
    service: &str,
    upload_dir: &Path,
    extracted: &Extracted,
    requested_id: Option<&str>,
    source: &str,
    provenance: &Provenance,
) -> Result<(String, Committed), StoreError> {
    let id = requested_id.map_or_else(|| extracted.digest[..12].to_string(), str::to_string);
    let target = layout.deployment_dir(service, &id);
    if target.exists() {
        let existing = DeploymentMeta::read(&target).ok().flatten();
        return if existing.is_some_and(|m| m.digest == extracted.digest) {
            let _ = std::fs::remove_dir_all(upload_dir);
            Ok((id, Committed::Existing))
        } else {
            Err(StoreError::Conflict(format!(
                "deployment id {id} is already used by other content"
            )))
        };
    }
    let write = || -> std::io::Result<()> {
        let manifest = std::fs::File::create(upload_dir.join(meta::MANIFEST_FILE))?;
        meta::write_manifest(std::io::BufWriter::new(manifest), &extracted.manifest)?;
        let info = DeploymentMeta {
            id: id.clone(),
            created_at: rfc3339(SystemTime::now()),
            files: extracted.files,
            bytes: extracted.bytes,
            digest: extracted.digest.clone(),
            source: source.to_string(),
            generated: extracted.generated.clone(),
            provenance: provenance.clone(),
        };
        let json = serde_json::to_vec_pretty(&info).map_err(std::io::Error::other)?;
        std::fs::write(upload_dir.join(meta::META_FILE), json)?;
        sync_filesystem(upload_dir)?;
        std::fs::rename(upload_dir, &target)
    };
    write().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreError::DiskFull(e.to_string()),
        _ => StoreError::Other(
            anyhow::Error::new(e).context(format!("cannot commit deployment {id}")),
        ),
    })?;
    fsync_dir(&layout.service_dir(service)).map_err(StoreError::Other)?;
    Ok((id, Committed::Created))
}

/// Removes one deployment directory: renamed to a `.tmp` name first (so a
/// crash mid-removal leaves something startup cleans), then deleted.
fn remove(layout: &Layout, service: &str, id: &str) -> Result<()> {
    let dir = layout.deployment_dir(service, id);
    // Held while it is removed: a server starting on this root meanwhile
    // leaves the `.tmp` it is becoming alone (store::upload).
    let _owned = super::upload::try_lock(&dir).ok().flatten();
    let doomed = layout
        .service_dir(service)
        .join(format!("{id}-deleted-{}{TMP_SUFFIX}", unique_suffix()));
    std::fs::rename(&dir, &doomed)
        .with_context(|| format!("cannot move {} aside", dir.display()))?;
    std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))
}

/// Keeps the newest `keep` unpinned deployments, every pinned one and the
/// active one; removes the rest.
pub fn prune(layout: &Layout, service: &str, keep: usize) -> Result<Vec<String>> {
    let all = list(layout, service)?;
    let mut removed = Vec::new();
    for info in all.iter().filter(|d| !d.pinned).skip(keep) {
        if info.active {
            continue;
        }
        remove(layout, service, &info.id)?;
        removed.push(info.id.clone());
    }
    Ok(removed)
}

/// Deletes an inactive deployment.
pub fn delete(layout: &Layout, service: &str, id: &str) -> Result<(), StoreError> {
    let all = list(layout, service).map_err(StoreError::Other)?;
    match all.iter().find(|d| d.id == id) {
        None => Err(StoreError::NotFound(format!(
            "service {service} has no deployment {id}"
        ))),
        Some(d) if d.active => Err(StoreError::Conflict(format!(
            "deployment {id} is active; activate another one first"
        ))),
        Some(d) if d.pinned => Err(StoreError::Conflict(format!(
            "deployment {id} is pinned; unpin it first"
        ))),
        Some(_) => remove(layout, service, id).map_err(StoreError::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_clamps_past_year_9999_instead_of_panicking() {
        let far = UNIX_EPOCH + Duration::from_secs(MAX_RFC3339_UNIX_SECS + 86_400 * 400);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_769_868_300)),
            "2026-01-31T14:05:00.000000000Z"
        );
    }
}
