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

use super::index::{Deployment, IndexOptions};
use super::Registry;
use crate::store::{deployments, is_valid_name, Layout};

/// At most this many retained indexes are kept; past it the cache starts over.
const MAX_CACHED: usize = 64;

pub struct Retained {
    layout: Layout,
    cache: Mutex<HashMap<(String, String), Arc<Deployment>>>,
}

impl Retained {
    pub fn new(layout: Layout) -> Self {
        Retained {
            layout,
            cache: Mutex::new(HashMap::new()),
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
        let dir = self.layout.deployment_dir(service, id);
        let key = (service.to_string(), id.to_string());
        if !dir.is_dir() {
            self.lock().remove(&key);
            return None;
        }
        if let Some(found) = self.lock().get(&key) {
            return Some(found.clone());
        }
        let options = IndexOptions {
            memory_file_max_bytes: 0,
            memory_budget_bytes: 0,
        };
        match Deployment::build(service, id, &dir, options) {
            Ok(index) => {
                let index = Arc::new(index);
                let mut cache = self.lock();
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(key, index.clone());
                Some(index)
            }
            Err(e) => {
                tracing::warn!(service, deployment = id, error = %e, "cannot index retained deployment");
                None
            }
        }
    }

    /// The newest retained deployment of `service`, other than `current_id`,
    /// that has a file at `path`. Blocking.
    pub fn newest_with(
        &self,
        registry: &Registry,
        service: &str,
        current_id: &str,
        path: &str,
    ) -> Option<Arc<Deployment>> {
        let listed = deployments::list(&self.layout, service).ok()?;
        listed
            .iter()
            .filter(|d| d.id != current_id)
            .filter_map(|d| self.get(registry, service, &d.id))
            .find(|index| index.file(path).is_some())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Deployment>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
