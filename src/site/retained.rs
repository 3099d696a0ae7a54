//! Indexes of retained deployments other than the current one, built on
//! demand: preview URLs (`/s/<service>@<id>/…`) and skew protection (a miss
//! in the current deployment answered from a newer-than-the-rest older one)
//! read through here.
//!
//! Deployments are immutable, so an index stays right as long as its
//! directory exists; each lookup checks that (one `stat`) so a pruned or
//! deleted deployment is never answered from. These indexes hold no file
//! bytes in memory: previews and skew misses are rare, and the memory budget
//! belongs to what is current.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::index::{Deployment, IndexOptions};
use super::Registry;
use crate::store::{deployments, is_valid_name, Layout};

/// At most this many retained indexes are kept; past it the cache starts over.
const MAX_CACHED: usize = 64;

/// A listing is trusted only when the directory's mtime is at least this old:
/// two changes within one tick of the kernel's coarse clock share an mtime,
/// so a younger one may hide a change made right after it was read.
const SETTLED: Duration = Duration::from_secs(1);

/// A service's deployment ids, newest first, as of the directory's mtime
/// (adding, pruning, deleting a deployment or flipping `current` changes it).
struct Listing {
    modified: SystemTime,
    ids: Arc<[String]>,
}

/// What [`Retained::newest_with_cached`] could tell without blocking work.
pub enum Cached {
    /// The answer: the deployment to serve from, or none has the path.
    Known(Option<Arc<Deployment>>),
    /// Something must be read or indexed first: ask [`Retained::newest_with`].
    Unknown,
}

/// What the cache knows of one deployment.
enum Lookup {
    Found(Arc<Deployment>),
    /// Its directory is gone (pruned or deleted).
    Gone,
    NotCached,
}

pub struct Retained {
    layout: Layout,
    cache: Mutex<HashMap<(String, String), Arc<Deployment>>>,
    listings: Mutex<HashMap<String, Listing>>,
}

impl Retained {
    pub fn new(layout: Layout) -> Self {
        Retained {
            layout,
            cache: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
        }
    }

    /// The index of deployment `id` of `service`, current or not; `None`
    /// when it does not exist (any more). Blocking: builds an index on a miss.
    pub fn get(&self, registry: &Registry, service: &str, id: &str) -> Option<Arc<Deployment>> {
        if !is_valid_name(service) || !is_valid_name(id) || id == crate::store::CURRENT {
            return None;
        }
        if let Some(current) = registry.get(service) {
            if current.id == id {
                return Some(current);
            }
        }
        match self.lookup_cached(service, id) {
            Lookup::Found(index) => return Some(index),
            Lookup::Gone => return None,
            Lookup::NotCached => {}
        }
        let options = IndexOptions {
            memory_file_max_bytes: 0,
            memory_budget_bytes: 0,
        };
        let dir = self.layout.deployment_dir(service, id);
        match Deployment::build(service, id, &dir, options) {
            Ok(index) => {
                let index = Arc::new(index);
                let mut cache = self.lock();
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert((service.to_string(), id.to_string()), index.clone());
                Some(index)
            }
            Err(e) => {
                tracing::warn!(service, deployment = id, error = %e, "cannot index retained deployment");
                None
            }
        }
    }

    /// The newest retained deployment of `service`, other than `current_id`,
    /// that has a file at `path`. Blocking: may list the service and build
    /// indexes.
    pub fn newest_with(
        &self,
        registry: &Registry,
        service: &str,
        current_id: &str,
        path: &str,
    ) -> Option<Arc<Deployment>> {
        let ids = self.listing(service, true)?;
        ids.iter()
            .filter(|id| id.as_str() != current_id)
            .filter_map(|id| self.get(registry, service, id))
            .find(|index| index.file(path).is_some())
    }

    /// [`Self::newest_with`] from what is cached, with only `stat` calls
    /// (the service directory, each candidate deployment's directory), so a
    /// flood of misses for asset-like paths costs no thread hop, directory
    /// listing or file reads.
    pub fn newest_with_cached(&self, service: &str, current_id: &str, path: &str) -> Cached {
        let Some(ids) = self.listing(service, false) else {
            return Cached::Unknown;
        };
        for id in ids.iter().filter(|id| id.as_str() != current_id) {
            match self.lookup_cached(service, id) {
                Lookup::Found(index) if index.file(path).is_some() => {
                    return Cached::Known(Some(index))
                }
                Lookup::Found(_) | Lookup::Gone => {}
                Lookup::NotCached => return Cached::Unknown,
            }
        }
        Cached::Known(None)
    }

    /// The cached index of deployment `id`, checking (one `stat`) that its
    /// directory still exists: a pruned or deleted deployment is dropped
    /// from the cache and never answered from.
    fn lookup_cached(&self, service: &str, id: &str) -> Lookup {
        let key = (service.to_string(), id.to_string());
        if !self.layout.deployment_dir(service, id).is_dir() {
            self.lock().remove(&key);
            return Lookup::Gone;
        }
        match self.lock().get(&key) {
            Some(index) => Lookup::Found(index.clone()),
            None => Lookup::NotCached,
        }
    }

    /// The service's deployment ids, newest first: cached while the
    /// directory's mtime is unchanged and settled; read again (only if
    /// `read`) otherwise. `None`: unknown, or the service cannot be listed.
    fn listing(&self, service: &str, read: bool) -> Option<Arc<[String]>> {
        let modified = std::fs::metadata(self.layout.service_dir(service))
            .and_then(|m| m.modified())
            .ok()?;
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= SETTLED);
        if settled {
            let listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(listing) = listings.get(service) {
                if listing.modified == modified {
                    return Some(listing.ids.clone());
                }
            }
        }
        if !read {
            return None;
        }
        let ids: Arc<[String]> = deployments::list(&self.layout, service)
            .ok()?
            .into_iter()
            .map(|d| d.id)
            .collect();
        if settled {
            let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            if listings.len() >= MAX_CACHED {
                listings.clear();
            }
            listings.insert(
                service.to_string(),
                Listing {
                    modified,
                    ids: ids.clone(),
                },
            );
        }
        Some(ids)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Deployment>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
