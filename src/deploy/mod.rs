//! The deploy workflow, in one place and without HTTP: ingest → commit →
//! activate → prune → record → emit.
//!
//! The admin API ([`crate::admin::deploy`]), the dashboard, the watcher
//! ([`crate::watch`]) and — through the admin API — `migrate` are thin
//! adapters over [`Workflow`]: they turn their input (a request body, a
//! form, an inotify event) into a call here and the [`Error`] back into
//! their own answer. Everything that must happen on every change of a
//! service — the service lock, the flip, publishing the index, retention,
//! metrics, the event — happens here, so a new rule lands once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::json;

use crate::admin::events::Events;
use crate::admin::metrics::Metrics;
use crate::config::Config;
use crate::site::{self, Deployment, IndexOptions, Registry};
use crate::store::activations::{self, Activation};
use crate::store::dedup::{self, ContentIndex};
use crate::store::deployments::{self, Committed, DeploymentInfo};
use crate::store::ingest::{self, Extracted, IngestError, Limits};
use crate::store::lock::ServiceLocks;
use crate::store::meta::Provenance;
use crate::store::upload::UploadDir;
use crate::store::{self, flip, precompress, Layout, StoreError};

/// Why a workflow step failed; [`Error::status`] is the HTTP status an
/// adapter answers with (RFC 9110 §15).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request itself is wrong (an invalid id): 400.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::Ingest(e) => e.status(),
            Error::Store(e) => e.status(),
            Error::Invalid(_) => 400,
        }
    }

    /// True for failures of the server, not of the request (logged as errors).
    pub fn is_internal(&self) -> bool {
        self.status() >= 500 && !matches!(self, Error::Store(StoreError::DiskFull(_)))
    }
}

/// Why `current` changes: the `why` of the activation log, and the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// An upload activated on arrival.
    Deploy,
    /// `POST …/activate`, the dashboard's Activate.
    Activate,
    /// `POST …/rollback`, the dashboard's Rollback.
    Rollback,
    /// A verified deploy failed its check and the deployer went back.
    VerifyRollback,
    /// A flip made outside this API (an operator's `mv -T`, seen by the watcher).
    External,
}

impl Why {
    /// The word in the activation log.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Deploy => "deploy",
            Why::Activate => "activate",
            Why::Rollback => "rollback",
            Why::VerifyRollback => "verify-rollback",
            Why::External => "external",
        }
    }

    fn event(self) -> &'static str {
        match self {
            Why::Rollback | Why::VerifyRollback => "deployment.rollback",
            _ => "deployment.activated",
        }
    }
}

/// What a deploy asks for besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// The deployment id; default: the first 12 hex digits of the content digest.
    pub id: Option<String>,
    pub activate: bool,
    /// Message, commit, labels, actor: stored in the metadata, carried in the events.
    pub provenance: Provenance,
    /// The upload's size when known (Content-Length), for the free-space check.
    pub expected_bytes: Option<u64>,
}

/// A finished deploy.
#[derive(Clone)]
pub struct Deployed {
    pub id: String,
    pub outcome: Committed,
    pub extracted: Extracted,
    /// Whether `id` is what the service serves now.
    pub active: bool,
}

/// A finished change of `current`.
#[derive(Debug, Clone)]
pub struct Activated {
    pub current: String,
    pub previous: Option<String>,
}

/// The shared parts a workflow step works with. Cheap to clone.
#[derive(Clone)]
pub struct Workflow {
    pub layout: Layout,
    pub registry: Arc<Registry>,
    pub locks: Arc<ServiceLocks>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ArcSwap<Config>>,
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::Store(StoreError::Other(anyhow::anyhow!(
            "{what} panicked: {e}"
        ))))
    })
}

fn check_id(id: &str) -> Result<(), Error> {
    if !store::is_valid_name(id) || id == store::CURRENT {
        return Err(Error::Invalid(format!("invalid deployment id {id:?}")));
    }
    Ok(())
}

impl Workflow {
    /// Ingests a tar stream (`source` reads it on a blocking thread), then
    /// commits, activates (when asked), prunes and emits. A failure before
    /// the flip leaves the served deployment untouched and nothing on disk.
    pub async fn deploy(
        &self,
        service: &str,
        source: impl Read + Send + 'static,
        options: DeployOptions,
        limits: Limits,
    ) -> Result<Deployed, Error> {
        self.deploy_inner(service, source, options, limits).await
    }

    /// Records a failed deploy (also one refused before any byte was read)
    /// by `actor` (the uploading token's name), in the metrics and as a
    /// `deployment.failed` event `{service, error, actor}`.
    pub fn failed(&self, service: &str, actor: &str, error: &Error) {
        self.metrics.record_failure(service);
        self.events.emit(
            "deployment.failed",
            json!({"service": service, "error": error.to_string(), "actor": actor}),
        );
    }

    async fn deploy_inner(
        &self,
        service: &str,
        source: impl Read + Send + 'static,
        options: DeployOptions,
        limits: Limits,
    ) -> Result<Deployed, Error> {
        let config = self.config.load_full();
        let started = Instant::now();
        let actor = options.provenance.actor.clone().unwrap_or_default();
        let actor = actor.as_str();
        if let Some(space) = store::space::of(self.layout.root()) {
            if let Err(message) =
                store::space::check(space, options.expected_bytes, config.min_free_bytes)
            {
                let error = Error::Store(StoreError::DiskFull(message));
                self.failed(service, actor, &error);
                return Err(error);
            }
        }
        let (layout, name) = (self.layout.clone(), service.to_string());
        // Locked until this function returns (store::upload): another server
        // starting on the same root leaves it alone.
        let owned = blocking("creating the upload directory", move || {
            UploadDir::create(&layout, &name).map_err(|e| StoreError::Other(e).into())
        })
        .await?;
        let upload_dir = owned.path().to_path_buf();
        let (dir, layout, name) = (upload_dir.clone(), self.layout.clone(), service.to_string());
        let (precompress_on, budget) = (config.precompress, config.precompress_budget_bytes);
        let rule_limits = config.rule_limits();
        let extracted = blocking("ingest", move || {
            let require_index = limits.require_index;
            let extracted = ingest::extract(source, &dir, &limits)?;
            Ok(finish_upload(
                &layout,
                &name,
                &dir,
                extracted,
                require_index,
                (precompress_on, budget),
                &rule_limits,
            )?)
        })
        .await;
        let extracted = match extracted {
            Ok(extracted) => extracted,
            Err(e) => {
                let e = vanished_or(&upload_dir, e);
                remove_dir(upload_dir).await;
                self.forget_if_empty(service).await;
                self.failed(service, actor, &e);
                return Err(e);
            }
        };

        // From here on, one deploy of this service at a time (across processes too).
        let guard = match self.locks.lock(&self.layout, service).await {
            Ok(guard) => guard,
            Err(e) => {
                remove_dir(upload_dir).await;
                return Err(StoreError::Other(e).into());
            }
        };
        let (layout, name, requested, ex, dir, provenance) = (
            self.layout.clone(),
            service.to_string(),
            options.id.clone(),
            extracted.clone(),
            upload_dir.clone(),
            options.provenance.clone(),
        );
        let committed = blocking("commit", move || {
            Ok(deployments::commit(
                &layout,
                &name,
                &dir,
                &ex,
                requested.as_deref(),
                "upload",
                &provenance,
            )?)
        })
        .await;
        let (id, outcome) = match committed {
            Ok(done) => done,
            Err(error) => {
                let error = vanished_or(&upload_dir, error);
                remove_dir(upload_dir).await;
                self.failed(service, actor, &error);
                return Err(error);
            }
        };
        if outcome == Committed::Created {
            let mut data = json!({"service": service, "id": id, "files": extracted.files,
                "bytes": extracted.bytes, "elapsedMs": started.elapsed().as_millis() as u64});
            if let (Some(data), Ok(serde_json::Value::Object(extra))) = (
                data.as_object_mut(),
                serde_json::to_value(&options.provenance),
            ) {
                data.extend(extra);
            }
            self.events.emit("deployment.deployed", data);
        }
        let active = if options.activate {
            let actor = options.provenance.actor.as_deref().unwrap_or("-");
            self.activate_locked(service, &id, Why::Deploy, actor)
                .await?;
            true
        } else {
            self.registry.get(service).is_some_and(|d| d.id == id)
        };
        self.metrics.record_deploy(service);
        self.prune_locked(service, config.keep).await;
        drop(guard);
        Ok(Deployed {
            id,
            outcome,
            extracted,
            active,
        })
    }

    /// Makes `id` the served deployment of `service`, recorded as `why` by `actor`.
    pub async fn activate(
        &self,
        service: &str,
        id: &str,
        why: Why,
        actor: &str,
    ) -> Result<Activated, Error> {
        check_id(id)?;
        let _guard = self.lock_existing(service).await?;
        let previous = self.activate_locked(service, id, why, actor).await?;
        Ok(Activated {
            current: id.to_string(),
            previous,
        })
    }

    /// Activates the deployment that was live before the current one: the
    /// newest deployment created before it that the activation log shows
    /// was live ([`rollback_target`]). One that was never live (uploaded
    /// with `activate=false` and never activated, or an id reused for new
    /// content) is passed over. Nothing to go back to: 409.
    pub async fn rollback(&self, service: &str, actor: &str) -> Result<Activated, Error> {
        let _guard = self.lock_existing(service).await?;
        let list = self.list_locked(service).await?;
        let (layout, name) = (self.layout.clone(), service.to_string());
        let log = blocking("reading the activation log", move || {
            activations::read(&layout, &name).map_err(|e| StoreError::Other(e).into())
        })
        .await?;
        let Some(current) = list.iter().find(|d| d.active) else {
            return Err(StoreError::Conflict(format!(
                "service {service} has no active deployment to roll back from"
            ))
            .into());
        };
        let Some(older) = rollback_target(&list, &log) else {
            return Err(StoreError::Conflict(format!(
                "service {service} has no deployment older than {} that was ever live",
                current.id
            ))
            .into());
        };
        let target = older.id.clone();
        let previous = self
            .activate_locked(service, &target, Why::Rollback, actor)
            .await?;
        Ok(Activated {
            current: target,
            previous,
        })
    }

    /// Deletes an inactive deployment.
    pub async fn delete(&self, service: &str, id: &str) -> Result<(), Error> {
        check_id(id)?;
        let _guard = self.lock_existing(service).await?;
        let (layout, name, target) = (self.layout.clone(), service.to_string(), id.to_string());
        blocking("delete", move || {
            Ok(deployments::delete(&layout, &name, &target)?)
        })
        .await?;
        self.events.emit(
            "deployment.retain.pruned",
            json!({"service": service, "removed": [id], "reason": "deleted"}),
        );
        Ok(())
    }

    /// Pins or unpins `id`: a pinned deployment is never pruned and does
    /// not count against `keep`. Returns the new state.
    pub async fn pin(
        &self,
        service: &str,
        id: &str,
        pinned: bool,
        actor: &str,
    ) -> Result<bool, Error> {
        check_id(id)?;
        let _guard = self.lock_existing(service).await?;
        let (layout, name, target) = (self.layout.clone(), service.to_string(), id.to_string());
        let changed = blocking("pin", move || {
            if !layout.deployment_dir(&name, &target).is_dir() {
                return Err(StoreError::NotFound(format!(
                    "service {name} has no deployment {target}"
                ))
                .into());
            }
            store::pins::set(&layout, &name, &target, pinned)
                .map_err(|e| StoreError::Other(e).into())
        })
        .await?;
        if changed {
            self.events.emit(
                if pinned {
                    "deployment.pinned"
                } else {
                    "deployment.unpinned"
                },
                json!({"service": service, "id": id, "actor": actor}),
            );
        }
        if !pinned {
            // Unpinned, it counts against `keep` again.
            self.prune_locked(service, self.config.load().keep).await;
        }
        Ok(pinned)
    }

    /// Records a flip this process did not make (an operator's `mv -T`,
    /// another replica), which the watcher has just published: an event,
    /// and — unless the activation log already ends at `id` (the other
    /// replica made the flip and logged it) — a log entry. Takes the
    /// service lock, so it waits for a flip in progress to be logged first.
    ///
    /// The event carries `previous`, `why` and `actor` like any other
    /// activation: from the log entry that names this flip (`external` when
    /// this process wrote it; the other replica's when it did).
    pub async fn external_flip(&self, service: &str, id: &str) {
        let entry = self.record_if_unlogged(service).await;
        let entry = entry.filter(|e| e.to == id);
        self.events.emit(
            "deployment.activated",
            json!({"service": service, "current": id, "source": "external",
                   "previous": entry.as_ref().and_then(|e| e.from.clone()),
                   "why": entry.as_ref().map_or(Why::External.as_str(), |e| e.why.as_str()),
                   "actor": entry.as_ref().map_or("external", |e| e.actor.as_str())}),
        );
    }

    /// Appends an `external` entry when `current` on disk is not where the
    /// activation log ends (a flip made while no server was running, or
    /// by hand). Called for every service at startup and after each
    /// external flip; idempotent. Returns the log's last entry afterwards
    /// (the one just appended, or the one already ending at `current`).
    pub async fn record_if_unlogged(&self, service: &str) -> Option<Activation> {
        let Ok(_guard) = self.lock(service).await else {
            return None;
        };
        let (layout, name) = (self.layout.clone(), service.to_string());
        let outcome = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Activation>> {
            let Some(current) = layout.read_current(&name)? else {
                return Ok(None);
            };
            let last = activations::read(&layout, &name)?.pop();
            if last.as_ref().is_some_and(|l| l.to == current) {
                return Ok(last);
            }
            let entry = Activation {
                when: activations::now(),
                from: last.map(|l| l.to),
                to_created_at: deployments::created_at(&layout.deployment_dir(&name, &current)),
                to: current,
                why: Why::External.as_str().to_string(),
                actor: "external".to_string(),
            };
            activations::append(&layout, &name, &entry, activations::DEFAULT_LIMIT)?;
            Ok(Some(entry))
        })
        .await;
        match outcome {
            Ok(Ok(last)) => return last,
            Ok(Err(e)) => tracing::error!(
                service,
                error = format!("{e:#}"),
                "cannot record an external flip in the activation log"
            ),
            Err(e) => tracing::error!(service, error = %e, "recording an external flip panicked"),
        }
        None
    }

    /// After a failed first deploy: removes the service directory if the
    /// upload left it empty, so no phantom service stays behind. `rmdir`
    /// fails harmlessly when anything else (another upload, a deployment,
    /// the lock file) is in it.
    async fn forget_if_empty(&self, service: &str) {
        let dir = self.layout.service_dir(service);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir(dir)).await;
    }

    /// The service lock, for changing a service that must already exist:
    /// a name that is no service is a 404, and no directory or lock file is
    /// left behind for it (taking the lock would create both).
    async fn lock_existing(&self, service: &str) -> Result<store::lock::ServiceGuard, Error> {
        if !self.layout.service_dir(service).is_dir() {
            return Err(StoreError::NotFound(format!("no such service {service}")).into());
        }
        self.lock(service).await
    }

    async fn lock(&self, service: &str) -> Result<store::lock::ServiceGuard, Error> {
        self.locks
            .lock(&self.layout, service)
            .await
            .map_err(|e| StoreError::Other(e).into())
    }

    async fn list_locked(&self, service: &str) -> Result<Vec<DeploymentInfo>, Error> {
        let (layout, name) = (self.layout.clone(), service.to_string());
        blocking("listing", move || {
            deployments::list(&layout, &name).map_err(|e| StoreError::Other(e).into())
        })
        .await
    }

    /// Builds the index of `id`, flips `current` to it, publishes it. The
    /// caller holds the service lock. Returns the previous current id.
    async fn activate_locked(
        &self,
        service: &str,
        id: &str,
        why: Why,
        actor: &str,
    ) -> Result<Option<String>, Error> {
        let options = IndexOptions::from_config(&self.config.load());
        let (layout, name, target) = (self.layout.clone(), service.to_string(), id.to_string());
        let started = Instant::now();
        let who = actor.to_string();
        let (deployment, previous, index_ms) = blocking("activation", move || {
            let dir = layout.deployment_dir(&name, &target);
            if !dir.is_dir() {
                return Err(StoreError::NotFound(format!(
                    "service {name} has no deployment {target}"
                ))
                .into());
            }
            let previous = layout.read_current(&name).ok().flatten();
            let index_started = Instant::now();
            let deployment = Deployment::build(&name, &target, &dir, options).map_err(|e| {
                StoreError::Other(
                    anyhow::Error::new(e).context(format!("cannot index {}", dir.display())),
                )
            })?;
            // What the log binds the entry to: this deployment, not its id.
            let created_at = match &deployment.meta {
                Some(meta) => Some(meta.created_at.clone()),
                None => deployments::created_at(&dir),
            };
            let index_ms = index_started.elapsed().as_millis() as u64;
            flip::flip_current(&layout, &name, &target).map_err(StoreError::from)?;
            // Last-Modified of every file is the flip's time (site::index).
            let since = layout
                .current_since(&name)
                .map_err(|e| Error::Store(StoreError::Other(e)))?;
            let deployment = deployment.became_current(since);
            if previous.as_deref() != Some(target.as_str()) {
                // After the flip, under the same lock: the log never names a
                // flip that did not happen. A failure here is logged, not
                // answered: the flip is done.
                let entry = Activation {
                    when: activations::now(),
                    from: previous.clone(),
                    to: target.clone(),
                    why: why.as_str().to_string(),
                    actor: who,
                    to_created_at: created_at,
                };
                if let Err(e) =
                    activations::append(&layout, &name, &entry, activations::DEFAULT_LIMIT)
                {
                    tracing::error!(
                        service = name,
                        error = format!("{e:#}"),
                        "cannot append to the activation log"
                    );
                }
            }
            Ok((deployment, previous, index_ms))
        })
        .await?;
        site::log_skipped(&deployment);
        self.registry.publish(Arc::new(deployment));
        if previous.as_deref() == Some(id) {
            // A no-op (activating what is already current): re-indexed and
            // republished, but nothing changed, so nothing is logged or emitted.
            return Ok(previous);
        }
        self.metrics.record_activation(service);
        self.events.emit(
            why.event(),
            json!({"service": service, "current": id, "previous": previous, "why": why.as_str(),
                   "actor": actor, "elapsedMs": started.elapsed().as_millis() as u64, "indexMs": index_ms}),
        );
        Ok(previous)
    }

    async fn prune_locked(&self, service: &str, keep: usize) {
        let (layout, name) = (self.layout.clone(), service.to_string());
        match tokio::task::spawn_blocking(move || deployments::prune(&layout, &name, keep)).await {
            Ok(Ok(removed)) => {
                if !removed.is_empty() {
                    self.metrics.record_prunes(service, removed.len() as u64);
                    self.events.emit(
                        "deployment.retain.pruned",
                        json!({"service": service, "removed": removed, "keep": keep}),
                    );
                }
            }
            Ok(Err(e)) => tracing::error!(service, error = format!("{e:#}"), "retention failed"),
            Err(e) => tracing::error!(service, error = %e, "retention panicked"),
        }
    }
}

/// Where a rollback from the current deployment of a service goes: the
/// newest deployment of `list` (newest first, as [`deployments::list`]
/// gives it) created before the active one that `log` shows was live
/// ([`activations::History`]). `None`: no active deployment, or none older
/// that was ever live. The dashboard offers Rollback only when this is some.
pub fn rollback_target<'a>(
    list: &'a [DeploymentInfo],
    log: &[Activation],
) -> Option<&'a DeploymentInfo> {
    let position = list.iter().position(|d| d.active)?;
    let history = activations::History::from_log(log);
    list[position + 1..]
        .iter()
        .find(|d| history.was_live(&d.id, &d.created_at))
}

/// After extraction, on a blocking thread: completes a differential upload
/// from the service's content, validates the site's `_redirects` and
/// `_headers` (422 naming the file and line), adds precompressed siblings,
/// and hard-links every file another deployment already has.
fn finish_upload(
    layout: &Layout,
    service: &str,
    dir: &Path,
    mut extracted: Extracted,
    require_index: bool,
    (precompress_on, precompress_budget): (bool, u64),
    rule_limits: &site::rules::Limits,
) -> Result<Extracted, IngestError> {
    let content = ContentIndex::of_service(layout, service, Some(dir));
    let mut filled = 0;
    if let Some(declared) = extracted.declared.take() {
        filled = dedup::complete_partial(dir, &extracted.manifest, &declared, &content).map_err(
            |e| match e {
                dedup::PartialError::Io { .. } => IngestError::Io(e.to_string()),
                _ => IngestError::Rejected(e.to_string()),
            },
        )?;
        let mut manifest: Vec<(String, String)> = declared.into_iter().collect();
        manifest.sort();
        extracted.bytes = manifest
            .iter()
            .map(|(rel, _)| std::fs::metadata(dir.join(rel)).map_or(0, |m| m.len()))
            .sum();
        extracted.files = (manifest.len() + extracted.links.len()) as u64;
        extracted.digest = ingest::tree_digest(&manifest, &extracted.links);
        extracted.manifest = manifest;
        if require_index
            && !extracted.manifest.iter().any(|(p, _)| p == "index.html")
            && !extracted.links.iter().any(|(p, _)| p == "index.html")
        {
            let paths = extracted.manifest.iter().map(|(p, _)| p);
            let paths = paths.chain(extracted.links.iter().map(|(p, _)| p));
            return Err(ingest::no_index(paths.map(String::as_str)));
        }
    }
    site::rules::SiteRules::load(dir, rule_limits)
        .map_err(|e| IngestError::Rejected(e.to_string()))?;
    let mut siblings = Vec::new();
    if precompress_on {
        siblings = precompress::precompress(dir, &extracted.manifest, precompress_budget)
            .map_err(|e| IngestError::from_io(e, "precompressing"))?
            .siblings;
    }
    // Uploaded files and generated siblings are linked and counted apart:
    // `linked` speaks of what the user sent.
    let linked = dedup::link_duplicates(dir, &extracted.manifest, &content)
        .map_err(|e| IngestError::from_io(e, "linking duplicate files"))?;
    dedup::link_duplicates(dir, &siblings, &content)
        .map_err(|e| IngestError::from_io(e, "linking duplicate files"))?;
    extracted.linked = linked.files + filled;
    // Siblings join the manifest (their ETags), not the digest (the id).
    extracted.generated = siblings.iter().map(|(path, _)| path.clone()).collect();
    extracted.manifest.extend(siblings);
    extracted.manifest.sort();
    Ok(extracted)
}

/// `error`, unless the upload directory is gone: then the step that failed
/// does not matter, and the client is told what happened instead (409).
fn vanished_or(dir: &Path, error: Error) -> Error {
    if dir.exists() {
        return error;
    }
    Error::Ingest(IngestError::Gone(format!(
        "the upload was removed from disk while it was being received (another process \
         cleaned up {}: is another server running on this root?); nothing was deployed, send it again",
        dir.parent().map_or_else(|| dir.display(), |p| p.display())
    )))
}

async fn remove_dir(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(path = %dir.display(), error = %e, "cannot remove failed upload");
            }
        }
    })
    .await;
}
