//! What is being served: deployment indexes and the registry that publishes them.
//!
//! The store says which deployment is current; this module turns that into an
//! [`index::Deployment`] and publishes it in the [`registry::Registry`]. The
//! public server only ever reads the registry.

pub mod heads;
pub mod index;
pub mod registry;
pub mod retained;
pub mod rules;
pub mod types;

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::store::Layout;
pub use index::{Deployment, IndexOptions};
pub use registry::Registry;
pub use retained::{Cached, Retained};

impl IndexOptions {
    pub fn from_config(config: &Config) -> Self {
        IndexOptions {
            memory_file_max_bytes: config.memory_file_max_bytes,
            memory_budget_bytes: config.memory_budget_bytes,
        }
    }
}

/// Builds the index of a service's current deployment; `Ok(None)` when the
/// service has no `current` yet.
pub fn load_current(
    layout: &Layout,
    service: &str,
    options: IndexOptions,
) -> Result<Option<Deployment>> {
    let Some((id, since)) = layout.read_current_since(service)? else {
        return Ok(None);
    };
    let dir = layout.deployment_dir(service, &id);
    let deployment = Deployment::build(service, &id, &dir, options)
        .with_context(|| format!("cannot index deployment {}", dir.display()))?;
    Ok(Some(deployment.became_current(since)))
}

/// What a scan of the root did.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// (service, deployment id) now served.
    pub served: Vec<(String, String)>,
    /// Services with a directory but no `current` yet.
    pub empty: Vec<String>,
    /// Services skipped because their current deployment could not be loaded
    /// (the caller logs them; the watcher only when the set changes).
    pub broken: Vec<(String, String)>,
}

/// The startup scan: removes leftover `upload-<n>.tmp` directories no live
/// process owns (another server on the same root may be receiving one),
/// then indexes and publishes every service's current deployment. A broken service is reported and skipped; it never stops the
/// others from being served. Later resyncs go through the watcher, which
/// holds each service's lock.
pub fn scan(layout: &Layout, registry: &Registry, config: &Config) -> Result<ScanReport> {
    layout.ensure_root()?;
    let options = IndexOptions::from_config(config);
    let mut report = ScanReport::default();
    let services = layout.services()?;
    for service in &services {
        match layout.clean_tmp(service) {
            Ok(cleaned) => {
                for path in cleaned.removed {
                    tracing::info!(service, path = %path.display(), "removed unfinished upload");
                }
                for path in cleaned.in_use {
                    tracing::info!(
                        service,
                        path = %path.display(),
                        "kept an unfinished upload another live process owns (another server on this root?)"
                    );
                }
            }
            Err(e) => tracing::warn!(service, error = format!("{e:#}"), "cannot clean leftovers"),
        }
        match refresh(layout, registry, options, service) {
            Refresh::Unchanged(id) => report.served.push((service.clone(), id)),
            Refresh::Published(id) => report.served.push((service.clone(), id)),
            Refresh::Empty => report.empty.push(service.clone()),
            Refresh::Broken(message) => report.broken.push((service.clone(), message)),
            Refresh::Moved => {}
        }
    }
    Ok(report)
}

/// Stops serving `service` if its directory is gone. The directory is checked
/// again here, not taken from an earlier listing: a service created (and
/// published by an upload) after the listing must not be dropped. Callers
/// that race with this process's flips hold the service's local lock.
pub fn forget_if_gone(layout: &Layout, registry: &Registry, service: &str) -> bool {
    if layout.service_dir(service).is_dir() {
        return false;
    }
    registry.remove(service).is_some()
}

/// What [`refresh`] did for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The registry already served the current deployment.
    Unchanged(String),
    /// A new index was built and published.
    Published(String),
    /// No `current` link: the service is not served.
    Empty,
    /// `current` cannot be loaded; whatever was served before still is.
    Broken(String),
    /// `current` moved again while indexing; nothing published (the next
    /// refresh picks it up).
    Moved,
}

/// Makes the registry serve what `<service>/current` names, rebuilding the
/// index only when it changed. Callers that race with flips of this process
/// hold the service's local lock.
pub fn refresh(
    layout: &Layout,
    registry: &Registry,
    options: IndexOptions,
    service: &str,
) -> Refresh {
    // Unchanged only when it is the same link: a flip away and back (seen
    // by another replica, or between two looks of the watcher) renews the
    // date validators too.
    let current = layout.read_current_since(service);
    if let (Ok(Some((id, since))), Some(existing)) = (&current, registry.get(service)) {
        if &existing.id == id && existing.modified() == index::ceil_to_secs(*since) {
            return Refresh::Unchanged(id.clone());
        }
    }
    match load_current(layout, service, options) {
        Ok(Some(deployment)) => {
            let still = layout.read_current_since(service).ok().flatten();
            if still.map(|(id, since)| (id, index::ceil_to_secs(since)))
                != Some((deployment.id.clone(), deployment.modified()))
            {
                return Refresh::Moved;
            }
            log_skipped(&deployment);
            let id = deployment.id.clone();
            registry.publish(Arc::new(deployment));
            Refresh::Published(id)
        }
        Ok(None) => {
            registry.remove(service);
            Refresh::Empty
        }
        // Keep serving what was loaded before, if anything: a broken link
        // on disk must not take a working site down.
        Err(e) => Refresh::Broken(format!("{e:#}")),
    }
}

/// Logs what the index left out, once per load.
pub fn log_skipped(deployment: &Deployment) {
    for reason in &deployment.stats.skipped {
        tracing::warn!(service = %deployment.service, deployment = %deployment.id, "not served: {reason}");
    }
    for path in &deployment.stats.immutable_refused {
        tracing::warn!(service = %deployment.service, deployment = %deployment.id, path = %path,
            "not immutable: a retained deployment holds other bytes under this fingerprinted name");
    }
}
