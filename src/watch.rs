//! Noticing flips made outside this process: an operator running the seed
//! runbook's `ln -s` + `mv -T`, another replica on a shared volume, the
//! migration. Any change to a `current` link (or a service directory
//! appearing or going) triggers a rescan of the root, which rebuilds only
//! the services whose `current` changed. Picked up within 1 s.
//!
//! `notify` (inotify) watches the root and each service directory, not
//! recursively: writes inside deployments never wake it. `watch = "poll"`
//! (or a filesystem without inotify) reads every `current` twice a second.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::events::Events;
use crate::config::{Config, WatchMode};
use crate::deploy::Workflow;
use crate::site::{self, IndexOptions, Refresh, Registry};
use crate::store::lock::ServiceLocks;
use crate::store::Layout;

const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Events arriving together (a rename is two) are handled by one rescan.
const DEBOUNCE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Watch {
    pub layout: Layout,
    pub registry: Arc<Registry>,
    pub config: Arc<ArcSwap<Config>>,
    pub events: Events,
    pub locks: Arc<ServiceLocks>,
    /// Where an external flip is recorded (events, activation log).
    pub workflow: Workflow,
}

impl Watch {
    /// Runs until `shutdown`; never fails (falls back to polling).
    pub async fn run(self, mode: WatchMode, shutdown: CancellationToken) {
        // Flips made while no server ran go into the activation log first.
        for service in self.layout.services().unwrap_or_default() {
            self.workflow.record_if_unlogged(&service).await;
        }
        match mode {
            WatchMode::Off => {}
            WatchMode::Poll => self.poll(shutdown).await,
            WatchMode::Notify => {
                let (sender, receiver) = mpsc::channel(1);
                let root = self.layout.root().to_path_buf();
                let callback = move |event: notify::Result<notify::Event>| {
                    if let Ok(event) = event {
                        if event.paths.iter().any(|p| is_interesting(&root, p)) {
                            let _ = sender.try_send(());
                        }
                    }
                };
                match notify::recommended_watcher(callback) {
                    Ok(watcher) => self.notify(watcher, receiver, shutdown).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "inotify unavailable: polling for external flips instead");
                        self.poll(shutdown).await
                    }
                }
            }
        }
    }

    async fn poll(&self, shutdown: CancellationToken) {
        tracing::info!(
            interval_ms = POLL_INTERVAL.as_millis() as u64,
            "watching for external flips by polling"
        );
        let mut broken = HashSet::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
            self.rescan(&mut broken).await;
        }
    }

    async fn notify(
        &self,
        mut watcher: notify::RecommendedWatcher,
        mut receiver: mpsc::Receiver<()>,
        shutdown: CancellationToken,
    ) {
        let mut watched: HashSet<PathBuf> = HashSet::new();
        if let Err(e) = watcher.watch(self.layout.root(), RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, "cannot watch the root: polling for external flips instead");
            return self.poll(shutdown).await;
        }
        self.watch_services(&mut watcher, &mut watched);
        // This task starts after the startup scan (and after the server
        // said "listening"): a flip made in between raised no event for
        // these watches, so look once now that they are in place. Without
        // this, such a flip was never picked up (until some later event).
        let mut broken = HashSet::new();
        self.rescan(&mut broken).await;
        tracing::info!("watching for external flips with inotify");
        loop {
            tokio::select! {
                message = receiver.recv() => if message.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            tokio::time::sleep(DEBOUNCE).await;
            while receiver.try_recv().is_ok() {}
            self.watch_services(&mut watcher, &mut watched);
            self.rescan(&mut broken).await;
        }
    }

    /// Adds a watch for every service directory not yet watched.
    fn watch_services(
        &self,
        watcher: &mut notify::RecommendedWatcher,
        watched: &mut HashSet<PathBuf>,
    ) {
        watched.retain(|dir| dir.is_dir());
        for service in self.layout.services().unwrap_or_default() {
            let dir = self.layout.service_dir(&service);
            if !watched.contains(&dir) {
                match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        watched.insert(dir);
                    }
                    Err(e) => tracing::warn!(service, error = %e, "cannot watch service directory"),
                }
            }
        }
    }

    /// Makes the registry match the disk now (what SIGHUP does after
    /// re-reading the config), logging every broken service.
    pub async fn resync(&self) {
        self.rescan(&mut HashSet::new()).await;
    }

    /// Refreshes every service, each under its local lock so it cannot
    /// interleave with a flip this process is making.
    async fn rescan(&self, broken: &mut HashSet<String>) {
        let layout = self.layout.clone();
        let services = match tokio::task::spawn_blocking(move || layout.services()).await {
            Ok(Ok(services)) => services,
            Ok(Err(e)) => return tracing::warn!(error = format!("{e:#}"), "cannot list services"),
            Err(e) => return tracing::error!(error = %e, "listing services panicked"),
        };
        let options = IndexOptions::from_config(&self.config.load());
        let mut now_broken = HashSet::new();
        for service in &services {
            let guard = self.locks.local(service).await;
            let (layout, registry, name) =
                (self.layout.clone(), self.registry.clone(), service.clone());
            let outcome = tokio::task::spawn_blocking(move || {
                site::refresh(&layout, &registry, options, &name)
            })
            .await;
            match outcome {
                Ok(Refresh::Published(id)) => {
                    tracing::info!(service, deployment = id, "external flip picked up");
                    drop(guard); // the workflow takes both locks itself
                    self.workflow.external_flip(service, &id).await;
                }
                Ok(Refresh::Broken(error)) => {
                    if !broken.contains(service) {
                        tracing::error!(service, error, "current deployment cannot be loaded; still serving what was loaded before");
                    }
                    now_broken.insert(service.clone());
                }
                Ok(_) => {}
                Err(e) => tracing::error!(service, error = %e, "refresh panicked"),
            }
        }
        for (name, _) in self.registry.snapshot() {
            if !services.contains(&name) {
                let _guard = self.locks.local(&name).await;
                if site::forget_if_gone(&self.layout, &self.registry, &name) {
                    tracing::info!(service = name, "service directory gone: no longer served");
                }
            }
        }
        *broken = now_broken;
    }
}

/// A path whose change may mean a flip: a `current` link, or an entry of
/// the root itself (a service appearing or going).
fn is_interesting(root: &Path, path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == crate::store::CURRENT) || path.parent() == Some(root)
}
