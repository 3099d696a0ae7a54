//! Admin operations: upload, activate, rollback, delete, list.
//!
//! An upload streams the request body through a bounded channel into a
//! blocking extractor (so memory stays flat whatever the upload size),
//! then, under the service lock: commit the directory, build its index,
//! flip `current`, publish the index, prune. A failure at any step before
//! the flip leaves the served deployment untouched and nothing on disk.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::mpsc;

use super::{error_and_close, error_response, json_response, status, AdminState};
use crate::serve::body::Body;
use crate::site::{self, Deployment, IndexOptions};
use crate::store::dedup::{self, ContentIndex};
use crate::store::deployments::{self, Committed};
use crate::store::ingest::Extracted;
use crate::store::ingest::{self, IngestError, LimitExceeded, Limits};
use crate::store::{self, flip, precompress, StoreError};

/// Upload chunks in flight between the socket and the extractor.
const CHANNEL_CHUNKS: usize = 8;

pub async fn list_services(state: &AdminState) -> Response<Body> {
    let layout = state.layout.clone();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<serde_json::Value>> {
        let mut services = Vec::new();
        for name in layout.services()? {
            let current = layout.read_current(&name).ok().flatten();
            services.push(json!({ "name": name, "current": current }));
        }
        Ok(services)
    })
    .await;
    match result {
        Ok(Ok(services)) => json_response(StatusCode::OK, &json!({ "services": services })),
        Ok(Err(e)) => internal(&e),
        Err(e) => internal(&anyhow::anyhow!("{e}")),
    }
}

pub async fn history(state: &AdminState, service: &str) -> Response<Body> {
    let (layout, name) = (state.layout.clone(), service.to_string());
    let result = tokio::task::spawn_blocking(move || {
        if !layout.service_dir(&name).is_dir() {
            return Ok(None);
        }
        let current = layout.read_current(&name).ok().flatten();
        // Real disk use: files shared between deployments (hard links) count once.
        let disk = store::disk_usage(&layout.service_dir(&name));
        deployments::list(&layout, &name).map(|list| Some((current, list, disk)))
    })
    .await;
    match result {
        Ok(Ok(Some((current, list, disk)))) => json_response(
            StatusCode::OK,
            &json!({ "service": service, "current": current, "diskBytes": disk, "deployments": list }),
        ),
        Ok(Ok(None)) => error_response(StatusCode::NOT_FOUND, &format!("no service {service}")),
        Ok(Err(e)) => internal(&e),
        Err(e) => internal(&anyhow::anyhow!("{e}")),
    }
}

fn internal(error: &anyhow::Error) -> Response<Body> {
    tracing::error!(error = format!("{error:#}"), "admin operation failed");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error:#}"))
}

fn store_error(error: StoreError) -> Response<Body> {
    if let StoreError::Other(e) = &error {
        return internal(e);
    }
    error_response(status(error.status()), &error.to_string())
}

/// Query parameters of an upload.
struct UploadOptions {
    id: Option<String>,
    activate: bool,
    require_index: bool,
    strip_components: usize,
    partial: bool,
}

fn parse_upload_query(query: Option<&str>) -> Result<UploadOptions, String> {
    let mut options = UploadOptions {
        id: None,
        activate: true,
        require_index: true,
        strip_components: 0,
        partial: false,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = || match value {
            "true" | "1" | "" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("{key}={other}: expected true or false")),
        };
        match key {
            "id" if store::is_valid_name(value) && value != store::CURRENT => {
                options.id = Some(value.to_string())
            }
            "id" => {
                return Err(format!(
                    "invalid deployment id {value:?}: use 1-64 of A-Z a-z 0-9 _ -"
                ))
            }
            "activate" => options.activate = flag()?,
            "require_index" => options.require_index = flag()?,
            "partial" => options.partial = flag()?,
            "strip_components" => {
                options.strip_components = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= 8)
                    .ok_or_else(|| format!("strip_components={value}: expected 0 to 8"))?
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?} (known: id, activate, require_index, strip_components, partial)"
                ))
            }
        }
    }
    Ok(options)
}

/// `POST /services/{service}/deployments`
pub async fn upload(
    state: &Arc<AdminState>,
    service: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let options = match parse_upload_query(request.uri().query()) {
        Ok(options) => options,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let config = state.config.load_full();
    let limits = Limits {
        max_upload_bytes: config.max_upload_bytes,
        max_files: config.max_files,
        require_index: options.require_index,
        strip_components: options.strip_components,
        partial: options.partial,
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_upload_bytes) {
        state.metrics.record_failure(service);
        return failed(
            state,
            service,
            IngestError::TooLarge(format!(
                "upload of {} bytes is over max_upload_bytes = {}",
                declared.unwrap_or(0),
                limits.max_upload_bytes
            )),
        );
    }
    let started = Instant::now();
    let layout = state.layout.clone();
    let name = service.to_string();
    let upload_dir = match tokio::task::spawn_blocking(move || {
        deployments::new_upload_dir(&layout, &name)
    })
    .await
    {
        Ok(Ok(dir)) => dir,
        Ok(Err(e)) => return internal(&e),
        Err(e) => return internal(&anyhow::anyhow!("{e}")),
    };

    // Socket → channel (async) → extractor (blocking thread).
    let (sender, reader) = crate::bridge::channel(CHANNEL_CHUNKS);
    let idle = config.upload_idle_timeout;
    let pump = tokio::spawn(pump_body(
        request.into_body(),
        sender,
        limits.max_upload_bytes,
        idle,
    ));
    let dir = upload_dir.clone();
    let extracted = tokio::task::spawn_blocking(move || ingest::extract(reader, &dir, &limits))
        .await
        .unwrap_or_else(|e| Err(IngestError::Io(format!("extractor panicked: {e}"))));
    pump.abort();
    let extracted = match extracted {
        Ok(extracted) => {
            let (dir, layout, name) = (
                upload_dir.clone(),
                state.layout.clone(),
                service.to_string(),
            );
            let (precompress, budget) = (config.precompress, config.precompress_budget_bytes);
            let require_index = options.require_index;
            tokio::task::spawn_blocking(move || {
                finish_upload(
                    &layout,
                    &name,
                    &dir,
                    extracted,
                    require_index,
                    precompress,
                    budget,
                )
            })
            .await
            .unwrap_or_else(|e| {
                Err(IngestError::Io(format!(
                    "finishing the upload panicked: {e}"
                )))
            })
        }
        Err(e) => Err(e),
    };
    let extracted = match extracted {
        Ok(extracted) => extracted,
        Err(error) => {
            remove_dir(upload_dir).await;
            state.metrics.record_failure(service);
            return failed(state, service, error);
        }
    };

    // From here on, one deploy of this service at a time (across processes too).
    let guard = match state.locks.lock(&state.layout, service).await {
        Ok(guard) => guard,
        Err(e) => {
            remove_dir(upload_dir).await;
            return internal(&e);
        }
    };
    let (layout, name, requested, ex) = (
        state.layout.clone(),
        service.to_string(),
        options.id.clone(),
        extracted.clone(),
    );
    let dir = upload_dir.clone();
    let committed = tokio::task::spawn_blocking(move || {
        deployments::commit(&layout, &name, &dir, &ex, requested.as_deref(), "upload")
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::Other(anyhow::anyhow!("commit panicked: {e}"))));
    let (id, outcome) = match committed {
        Ok(done) => done,
        Err(error) => {
            remove_dir(upload_dir).await;
            state.metrics.record_failure(service);
            state.events.emit(
                "deployment.failed",
                json!({"service": service, "error": error.to_string()}),
            );
            return store_error(error);
        }
    };
    if outcome == Committed::Created {
        state.events.emit(
            "deployment.deployed",
            json!({"service": service, "id": id, "files": extracted.files, "bytes": extracted.bytes,
                   "elapsedMs": started.elapsed().as_millis() as u64}),
        );
    }
    let mut active = false;
    if options.activate {
        if let Err(response) = activate_locked(state, service, &id, "deployment.activated").await {
            return response;
        }
        active = true;
    } else {
        active |= state.registry.get(service).is_some_and(|d| d.id == id);
    }
    state.metrics.record_deploy(service);
    prune_locked(state, service, config.keep).await;
    drop(guard);
    let code = match outcome {
        Committed::Created => StatusCode::CREATED,
        Committed::Existing => StatusCode::OK,
    };
    json_response(
        code,
        &json!({"service": service, "id": id, "files": extracted.files, "bytes": extracted.bytes,
                "received": extracted.received, "linked": extracted.linked, "active": active}),
    )
}

/// Largest manifest body `POST …/deployments/manifest` reads.
const MAX_MANIFEST_BODY: usize = 64 << 20;

/// `POST /services/{service}/deployments/manifest`: the first half of a
/// differential deploy. The body is `{path: sha256}` for the whole tree;
/// the answer lists the digests the server has no file for, which the
/// follow-up `POST …/deployments?partial=true` must carry.
pub async fn missing_content(
    state: &Arc<AdminState>,
    service: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let limited = http_body_util::Limited::new(request.into_body(), MAX_MANIFEST_BODY);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error_and_close(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("manifest body over {MAX_MANIFEST_BODY} bytes"),
            )
        }
    };
    let declared: std::collections::BTreeMap<String, String> = match serde_json::from_slice(&bytes)
    {
        Ok(map) => map,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("body must be a JSON object {{\"<path>\": \"<sha256 hex>\"}}: {e}"),
            )
        }
    };
    if let Some((path, _)) = declared
        .iter()
        .find(|(_, d)| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            &format!("the digest of {path:?} is not 64 hex digits of SHA-256"),
        );
    }
    let (layout, name) = (state.layout.clone(), service.to_string());
    let content =
        match tokio::task::spawn_blocking(move || ContentIndex::of_service(&layout, &name, None))
            .await
        {
            Ok(content) => content,
            Err(e) => return internal(&anyhow::anyhow!("{e}")),
        };
    let missing: std::collections::BTreeSet<String> = declared
        .values()
        .map(|d| d.to_ascii_lowercase())
        .filter(|d| !content.has(d))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"service": service, "files": declared.len(), "missing": missing}),
    )
}

/// After extraction, on a blocking thread: completes a differential upload
/// from the service's content, adds precompressed siblings, and hard-links
/// every file another deployment already has.
fn finish_upload(
    layout: &store::Layout,
    service: &str,
    dir: &std::path::Path,
    mut extracted: Extracted,
    require_index: bool,
    precompress_on: bool,
    precompress_budget: u64,
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
            return Err(IngestError::Rejected(
                "upload has no top-level index.html (send require_index=false to allow that)"
                    .to_string(),
            ));
        }
    }
    if precompress_on {
        let added = precompress::precompress(dir, &extracted.manifest, precompress_budget)
            .map_err(|e| IngestError::from_io(e, "precompressing"))?;
        // Siblings join the manifest (their ETags), not the digest (the id).
        extracted.manifest.extend(added.siblings);
        extracted.manifest.sort();
    }
    let linked = dedup::link_duplicates(dir, &extracted.manifest, &content)
        .map_err(|e| IngestError::from_io(e, "linking duplicate files"))?;
    extracted.linked = linked.files + filled;
    Ok(extracted)
}

fn failed(state: &AdminState, service: &str, error: IngestError) -> Response<Body> {
    state.events.emit(
        "deployment.failed",
        json!({"service": service, "error": error.to_string()}),
    );
    let code = status(error.status());
    if matches!(
        code,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT
    ) {
        // The rest of the body is not read: close instead of draining it.
        error_and_close(code, &error.to_string())
    } else {
        error_response(code, &error.to_string())
    }
}

async fn remove_dir(dir: std::path::PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::error!(path = %dir.display(), error = %e, "cannot remove failed upload");
            }
        }
    })
    .await;
}

/// Reads the request body frame by frame into the channel; stops at the
/// size limit, on a stalled client, or when the extractor has given up.
async fn pump_body(
    mut body: Incoming,
    sender: mpsc::Sender<io::Result<Bytes>>,
    limit: u64,
    idle: Duration,
) {
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                let _ = sender
                    .send(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "upload stalled: no data within the idle timeout",
                    )))
                    .await;
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                let _ = sender
                    .send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("upload interrupted: {e}"),
                    )))
                    .await;
                return;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit {
            let _ = sender
                .send(Err(io::Error::other(LimitExceeded(format!(
                    "upload is larger than max_upload_bytes = {limit}"
                )))))
                .await;
            return;
        }
        if sender.send(Ok(data)).await.is_err() {
            return;
        }
    }
}

/// Builds the index of `id`, flips `current` to it, publishes it. The
/// caller holds the service lock. Returns the previous current id.
async fn activate_locked(
    state: &AdminState,
    service: &str,
    id: &str,
    event: &str,
) -> Result<Option<String>, Response<Body>> {
    let options = IndexOptions::from_config(&state.config.load());
    let (layout, name, target) = (state.layout.clone(), service.to_string(), id.to_string());
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(
        move || -> Result<(Deployment, Option<String>, u64), StoreError> {
            let dir = layout.deployment_dir(&name, &target);
            if !dir.is_dir() {
                return Err(StoreError::NotFound(format!(
                    "service {name} has no deployment {target}"
                )));
            }
            let previous = layout.read_current(&name).ok().flatten();
            let index_started = Instant::now();
            let deployment = Deployment::build(&name, &target, &dir, options).map_err(|e| {
                StoreError::Other(
                    anyhow::Error::new(e).context(format!("cannot index {}", dir.display())),
                )
            })?;
            let index_ms = index_started.elapsed().as_millis() as u64;
            flip::flip_current(&layout, &name, &target)?;
            Ok((deployment, previous, index_ms))
        },
    )
    .await
    .unwrap_or_else(|e| {
        Err(StoreError::Other(anyhow::anyhow!(
            "activation panicked: {e}"
        )))
    });
    let (deployment, previous, index_ms) = result.map_err(store_error)?;
    site::log_skipped(&deployment);
    state.registry.publish(Arc::new(deployment));
    state.metrics.record_activation(service);
    state.events.emit(
        event,
        json!({"service": service, "current": id, "previous": previous,
               "elapsedMs": started.elapsed().as_millis() as u64, "indexMs": index_ms}),
    );
    Ok(previous)
}

async fn prune_locked(state: &AdminState, service: &str, keep: usize) {
    let (layout, name) = (state.layout.clone(), service.to_string());
    match tokio::task::spawn_blocking(move || deployments::prune(&layout, &name, keep)).await {
        Ok(Ok(removed)) => {
            if !removed.is_empty() {
                state.metrics.record_prunes(service, removed.len() as u64);
                state.events.emit(
                    "deployment.retain.pruned",
                    json!({"service": service, "removed": removed, "keep": keep}),
                );
            }
        }
        Ok(Err(e)) => tracing::error!(service, error = format!("{e:#}"), "retention failed"),
        Err(e) => tracing::error!(service, error = %e, "retention panicked"),
    }
}

/// Refuses an invalid deployment id, then takes the service lock.
async fn checked_id_and_lock(
    state: &AdminState,
    service: &str,
    id: &str,
) -> Result<store::lock::ServiceGuard, Response<Body>> {
    if !store::is_valid_name(id) || id == store::CURRENT {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("invalid deployment id {id:?}"),
        ));
    }
    state
        .locks
        .lock(&state.layout, service)
        .await
        .map_err(|e| internal(&e))
}

/// `POST /services/{service}/activate`
pub async fn activate(state: &AdminState, service: &str, id: &str, event: &str) -> Response<Body> {
    let _guard = match checked_id_and_lock(state, service, id).await {
        Ok(guard) => guard,
        Err(response) => return response,
    };
    match activate_locked(state, service, id, event).await {
        Ok(previous) => json_response(
            StatusCode::OK,
            &json!({"service": service, "current": id, "previous": previous}),
        ),
        Err(response) => response,
    }
}

/// `POST /services/{service}/rollback`: to the deployment created before the current one.
pub async fn rollback(state: &AdminState, service: &str) -> Response<Body> {
    let _guard = match state.locks.lock(&state.layout, service).await {
        Ok(guard) => guard,
        Err(e) => return internal(&e),
    };
    let (layout, name) = (state.layout.clone(), service.to_string());
    let list = match tokio::task::spawn_blocking(move || deployments::list(&layout, &name)).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => return internal(&e),
        Err(e) => return internal(&anyhow::anyhow!("{e}")),
    };
    let Some(position) = list.iter().position(|d| d.active) else {
        return error_response(
            StatusCode::CONFLICT,
            &format!("service {service} has no active deployment to roll back from"),
        );
    };
    let Some(older) = list.get(position + 1) else {
        return error_response(
            StatusCode::CONFLICT,
            &format!(
                "service {service} has no deployment older than {}",
                list[position].id
            ),
        );
    };
    match activate_locked(state, service, &older.id, "deployment.rollback").await {
        Ok(previous) => json_response(
            StatusCode::OK,
            &json!({"service": service, "current": older.id, "previous": previous}),
        ),
        Err(response) => response,
    }
}

/// `DELETE /services/{service}/deployments/{id}`
pub async fn delete(state: &AdminState, service: &str, id: &str) -> Response<Body> {
    let _guard = match checked_id_and_lock(state, service, id).await {
        Ok(guard) => guard,
        Err(response) => return response,
    };
    let (layout, name, target) = (state.layout.clone(), service.to_string(), id.to_string());
    match tokio::task::spawn_blocking(move || deployments::delete(&layout, &name, &target)).await {
        Ok(Ok(())) => {
            state.events.emit(
                "deployment.retain.pruned",
                json!({"service": service, "removed": [id], "reason": "deleted"}),
            );
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(crate::serve::body::empty())
                .unwrap_or_else(|_| Response::new(crate::serve::body::empty()))
        }
        Ok(Err(e)) => store_error(e),
        Err(e) => internal(&anyhow::anyhow!("{e}")),
    }
}
