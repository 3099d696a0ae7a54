//! The registry: service name → the deployment currently served.
//!
//! Readers (every request) take a snapshot with one atomic load and never
//! block; writers (flips, rescans, the watcher) swap whole pointers. A flip is
//! therefore atomic for readers: a request sees the old deployment or the new
//! one, never a mix.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::index::Deployment;

type Slot = Arc<ArcSwap<Deployment>>;

#[derive(Default)]
pub struct Registry {
    /// The map itself is swapped only when a service appears or disappears;
    /// a flip swaps the service's slot and leaves the map alone.
    /// FxHash: one lookup per request; names come from the volume.
    services: ArcSwap<HashMap<String, Slot, rustc_hash::FxBuildHasher>>,
    /// Serializes writers so two concurrent "add service" updates don't lose one.
    write: std::sync::Mutex<()>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The deployment a request for `service` is answered from.
    pub fn get(&self, service: &str) -> Option<Arc<Deployment>> {
        self.services
            .load()
            .get(service)
            .map(|slot| slot.load_full())
    }

    /// Makes `deployment` the one served for its service; returns the one it replaced.
    pub fn publish(&self, deployment: Arc<Deployment>) -> Option<Arc<Deployment>> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let services = self.services.load();
        if let Some(slot) = services.get(&deployment.service) {
            return Some(slot.swap(deployment));
        }
        let mut next = HashMap::clone(&services);
        next.insert(
            deployment.service.clone(),
            Arc::new(ArcSwap::new(deployment)),
        );
        self.services.store(Arc::new(next));
        None
    }

    /// Stops serving a service (its directory or `current` disappeared).
    pub fn remove(&self, service: &str) -> Option<Arc<Deployment>> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let services = self.services.load();
        let slot = services.get(service)?.clone();
        let mut next = HashMap::clone(&services);
        next.remove(service);
        self.services.store(Arc::new(next));
        Some(slot.load_full())
    }

    /// Names and current deployments, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, Arc<Deployment>)> {
        let mut all: Vec<_> = self
            .services
            .load()
            .iter()
            .map(|(name, slot)| (name.clone(), slot.load_full()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
