//! Indexes of retained deployments other than the current one, built on
//! demand: preview URLs (`/s/<service>@<id>/…`) and skew protection (a miss
//! in the current deployment answered from a deployment that was live
//! shortly before) read through here.
//!
//! Deployments are immutable, so an index stays right as long as its
//! directory is the one it was built from; each lookup checks that (one
//! `stat`: the directory's device, inode and ctime) so a pruned or deleted
//! deployment, or another one made later under the same id, is never
//! answered from. These indexes hold no file bytes in memory: previews and
//! skew misses are rare, and the memory budget belongs to what is current.
//!
//! Skew protection only ever answers from a deployment that was live (the
//! activation log, [`activations::History`], says so for that very
//! deployment, not only its id) and stopped being live less than
//! `skew_window` ago. Those facts are read with the service's listing and
//! cached with it, so a miss costs no file read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::index::{Deployment, IndexOptions};
use super::Registry;
use crate::store::activations::{self, LiveUntil};
use crate::store::{deployments, is_valid_name, Layout};

/// At most this many retained indexes are kept; past it the cache starts over.
const MAX_CACHED: usize = 64;

/// A listing is trusted only when the directory's mtime is at least this old:
/// two changes within one tick of the kernel's coarse clock share an mtime,
/// so a younger one may hide a change made right after it was read.
const SETTLED: Duration = Duration::from_secs(1);

/// A deployment the activation log shows was live.
struct WasLive {
    id: String,
    /// Its `createdAt` ([`deployments::created_at`]) when listed.
    created_at: String,
    until: LiveUntil,
}

/// What skew protection may answer from, as of the service directory's
/// mtime (adding, pruning, deleting a deployment or flipping `current`
/// changes it) and the activation log's length (every append changes it).
struct Listing {
    modified: SystemTime,
    log_len: u64,
    /// The deployments that were live, most recently live first.
    live: Arc<[WasLive]>,
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

/// Which directory an index was built from: a directory deleted and made
/// again under the same name has another inode or ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirStamp {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl DirStamp {
    /// The stamp of `dir`; `None` when it is not a directory (any more).
    fn of(dir: &std::path::Path) -> Option<DirStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
        Some(DirStamp {
            dev: m.dev(),
            ino: m.ino(),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

struct Entry {
    index: Arc<Deployment>,
    stamp: DirStamp,
}

pub struct Retained {
    layout: Layout,
    cache: Mutex<HashMap<(String, String), Entry>>,
    listings: Mutex<HashMap<String, Listing>>,
}

/// The `createdAt` of an indexed deployment: from the metadata it was
/// built with, else (made by hand) its directory's mtime.
fn created_at_of(index: &Deployment) -> Option<String> {
    match &index.meta {
        Some(meta) => Some(meta.created_at.clone()),
        None => deployments::created_at(&index.dir),
    }
}

/// Whether `index` is the deployment the listing knew under its id (a
/// cheap check: only the metadata already in memory is compared).
fn same_deployment(index: &Deployment, listed: &WasLive) -> bool {
    index
        .meta
        .as_ref()
        .is_none_or(|meta| meta.created_at == listed.created_at)
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
        // Taken before the build: if the directory is replaced meanwhile,
        // the next lookup sees another stamp and builds again.
        let stamp = DirStamp::of(&dir)?;
        match Deployment::build(service, id, &dir, options) {
            Ok(index) => {
                let index = Arc::new(index);
                let mut cache = self.lock();
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(
                    (service.to_string(), id.to_string()),
                    Entry {
                        index: index.clone(),
                        stamp,
                    },
                );
                Some(index)
            }
            Err(e) => {
                tracing::warn!(service, deployment = id, error = %e, "cannot index retained deployment");
                None
            }
        }
    }

    /// The `createdAt` of deployment `id` of `service` (what a signed
    /// preview link is bound to, [`crate::previews`]): from the index in
    /// memory when there is one, else from its metadata on disk (one small
    /// file); `None` when it does not exist. Blocking.
    pub fn created_at(&self, registry: &Registry, service: &str, id: &str) -> Option<String> {
        if !is_valid_name(service) || !is_valid_name(id) || id == crate::store::CURRENT {
            return None;
        }
        if let Some(current) = registry.get(service) {
            if current.id == id {
                return created_at_of(&current);
            }
        }
        match self.lookup_cached(service, id) {
            Lookup::Found(index) => created_at_of(&index),
            Lookup::Gone => None,
            Lookup::NotCached => deployments::created_at(&self.layout.deployment_dir(service, id)),
        }
    }

    /// [`Self::get`], only if the deployment is still the one created at
    /// `created_at` (a signed preview link's, already checked against it):
    /// `None` when it is gone or was made again under the same id. Blocking.
    pub fn get_created_at(
        &self,
        registry: &Registry,
        service: &str,
        id: &str,
        created_at: &str,
    ) -> Option<Arc<Deployment>> {
        let index = self.get(registry, service, id)?;
        (created_at_of(&index).as_deref() == Some(created_at)).then_some(index)
    }

    /// The most recently live deployment of `service`, other than
    /// `current_id`, that stopped being live less than `window` ago and has
    /// a file at `path`. A deployment that was never live (uploaded with
    /// `activate=false`, or an id reused for new content) never qualifies.
    /// Blocking: may list the service, read its activation log and build
    /// indexes.
    pub fn newest_with(
        &self,
        registry: &Registry,
        service: &str,
        current_id: &str,
        path: &str,
        window: Duration,
    ) -> Option<Arc<Deployment>> {
        let now = SystemTime::now();
        let live = self.listing(service, true)?;
        live.iter()
            .filter(|d| d.id != current_id && d.until.within(window, now))
            .filter_map(|d| {
                self.get(registry, service, &d.id)
                    .filter(|index| same_deployment(index, d))
            })
            .find(|index| index.file(path).is_some())
    }

    /// [`Self::newest_with`] from what is cached, with only `stat` calls
    /// (the service directory, its activation log, each eligible
    /// deployment's directory), so a flood of misses for asset-like paths
    /// costs no thread hop, directory listing or file reads.
    pub fn newest_with_cached(
        &self,
        service: &str,
        current_id: &str,
        path: &str,
        window: Duration,
    ) -> Cached {
        let Some(live) = self.listing(service, false) else {
            return Cached::Unknown;
        };
        let now = SystemTime::now();
        for d in live
            .iter()
            .filter(|d| d.id != current_id && d.until.within(window, now))
        {
            match self.lookup_cached(service, &d.id) {
                Lookup::Found(index)
                    if same_deployment(&index, d) && index.file(path).is_some() =>
                {
                    return Cached::Known(Some(index))
                }
                Lookup::Found(_) | Lookup::Gone => {}
                Lookup::NotCached => return Cached::Unknown,
            }
        }
        Cached::Known(None)
    }

    /// The cached index of deployment `id`, checking (one `stat`) that its
    /// directory is still the one it was built from: a pruned or deleted
    /// deployment is dropped from the cache and never answered from, and
    /// one made again under the same id is indexed anew.
    fn lookup_cached(&self, service: &str, id: &str) -> Lookup {
        let key = (service.to_string(), id.to_string());
        let Some(stamp) = DirStamp::of(&self.layout.deployment_dir(service, id)) else {
            self.lock().remove(&key);
            return Lookup::Gone;
        };
        let mut cache = self.lock();
        match cache.get(&key) {
            Some(entry) if entry.stamp == stamp => Lookup::Found(entry.index.clone()),
            Some(_) => {
                cache.remove(&key);
                Lookup::NotCached
            }
            None => Lookup::NotCached,
        }
    }

    /// The service's deployments that were live, most recently live first:
    /// cached while the directory's mtime is unchanged and settled and the
    /// activation log has the same length; read again (only if `read`)
    /// otherwise. `None`: unknown, or the service cannot be listed.
    fn listing(&self, service: &str, read: bool) -> Option<Arc<[WasLive]>> {
        let dir = self.layout.service_dir(service);
        let modified = std::fs::metadata(&dir).and_then(|m| m.modified()).ok()?;
        // Before the log is read: an append after this makes the key stale,
        // never the listing.
        let log_len = std::fs::metadata(dir.join(activations::LOG_FILE)).map_or(0, |m| m.len());
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= SETTLED);
        if settled {
            let listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(listing) = listings.get(service) {
                if listing.modified == modified && listing.log_len == log_len {
                    return Some(listing.live.clone());
                }
            }
        }
        if !read {
            return None;
        }
        let list = deployments::list(&self.layout, service).ok()?;
        let log = match activations::read(&self.layout, service) {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(
                    service,
                    error = format!("{e:#}"),
                    "cannot read the activation log: no skew protection"
                );
                Vec::new()
            }
        };
        let history = activations::History::from_log(&log);
        let mut live: Vec<WasLive> = list
            .into_iter()
            .filter_map(|d| {
                let until = history.live_until(&d.id, &d.created_at)?;
                Some(WasLive {
                    id: d.id,
                    created_at: d.created_at,
                    until,
                })
            })
            .collect();
        // Still live first, then the latest end first.
        live.sort_by_key(|d| match d.until {
            LiveUntil::Still => (0, std::cmp::Reverse(SystemTime::UNIX_EPOCH)),
            LiveUntil::Ended(end) => (1, std::cmp::Reverse(end)),
        });
        let live: Arc<[WasLive]> = live.into();
        if settled {
            let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            if listings.len() >= MAX_CACHED {
                listings.clear();
            }
            listings.insert(
                service.to_string(),
                Listing {
                    modified,
                    log_len,
                    live: live.clone(),
                },
            );
        }
        Some(live)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
