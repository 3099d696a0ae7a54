//! What is being served: deployment indexes and the registry that publishes them.
//!
//! The store says which deployment is current; this module turns that into an
//! [`index::Deployment`] and publishes it in the [`registry::Registry`]. The
//! public server only ever reads the registry.

pub mod index;
pub mod registry;

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::store::Layout;
pub use index::{Deployment, IndexOptions};
pub use registry::Registry;

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
    let Some(id) = layout.read_current(service)? else {
        return Ok(None);
    };
    let dir = layout.deployment_dir(service, &id);
    let deployment = Deployment::build(service, &id, &dir, options)
        .with_context(|| format!("cannot index deployment {}", dir.display()))?;
    Ok(Some(deployment))
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
    /// (service, deployment id) newly published by this scan.
    pub changed: Vec<(String, String)>,
}

/// Scans the root and makes the registry match the disk: every service's
/// current deployment is indexed and published (unchanged ones are kept as
/// they are), services that disappeared are dropped. With `clean_tmp`
/// (startup only: no upload can be running yet) leftover `<id>.tmp`
/// directories are removed first. A broken service is logged and skipped;
/// it never stops the others from being served.
pub fn scan(
    layout: &Layout,
    registry: &Registry,
    config: &Config,
    clean_tmp: bool,
) -> Result<ScanReport> {
    layout.ensure_root()?;
    let options = IndexOptions::from_config(config);
    let mut report = ScanReport::default();
    let services = layout.services()?;
    for service in &services {
        if clean_tmp {
            match layout.clean_tmp(service) {
                Ok(removed) => {
                    for path in removed {
                        tracing::info!(service, path = %path.display(), "removed unfinished upload");
                    }
                }
                Err(e) => {
                    tracing::warn!(service, error = format!("{e:#}"), "cannot clean leftovers")
                }
            }
        }
        let current = layout.read_current(service);
        if let (Ok(Some(id)), Some(existing)) = (&current, registry.get(service)) {
            if &existing.id == id {
                report.served.push((service.clone(), id.clone()));
                continue;
            }
        }
        match load_current(layout, service, options) {
            Ok(Some(deployment)) => {
                // `current` may have moved again while the index was built
                // (a flip by this process or another): publish only what
                // is still current; the next scan picks up the rest.
                if layout.read_current(service).ok().flatten().as_deref()
                    != Some(deployment.id.as_str())
                {
                    continue;
                }
                log_skipped(&deployment);
                report.served.push((service.clone(), deployment.id.clone()));
                report
                    .changed
                    .push((service.clone(), deployment.id.clone()));
                registry.publish(Arc::new(deployment));
            }
            Ok(None) => {
                registry.remove(service);
                report.empty.push(service.clone());
            }
            Err(e) => {
                let message = format!("{e:#}");
                // Keep serving what was loaded before, if anything: a broken
                // link on disk must not take a working site down.
                report.broken.push((service.clone(), message));
            }
        }
    }
    for (name, _) in registry.snapshot() {
        if !services.contains(&name) {
            registry.remove(&name);
        }
    }
    Ok(report)
}

/// Logs what the index left out, once per load.
pub fn log_skipped(deployment: &Deployment) {
    for reason in &deployment.stats.skipped {
        tracing::warn!(service = %deployment.service, deployment = %deployment.id, "not served: {reason}");
    }
}
