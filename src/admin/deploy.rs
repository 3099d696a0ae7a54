//! Admin operations over HTTP: upload, activate, rollback, delete, list.
//!
//! A thin adapter over [`crate::deploy::Workflow`]: an upload streams the
//! request body through a bounded channel into the workflow's blocking
//! extractor (so memory stays flat whatever the upload size); the workflow
//! commits, flips, prunes, records and emits; this module turns its result
//! or [`workflow::Error`] into a JSON answer.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::mpsc;

use super::{error_and_close, error_response, json_response, status, AdminState};
use crate::deploy::{self as workflow, DeployOptions};
use crate::serve::body::Body;
use crate::store::dedup::ContentIndex;
use crate::store::deployments::{self, Committed};
use crate::store::ingest::{IngestError, LimitExceeded, Limits};
use crate::store::meta::Provenance;
use crate::store::{self, StoreError};

/// A deployment id an upload may not take: `…/deployments/manifest` is a route.
const RESERVED_MANIFEST: &str = "manifest";

/// Upload chunks in flight between the socket and the extractor.
const CHANNEL_CHUNKS: usize = 8;

pub async fn list_services(state: &AdminState) -> Response<Body> {
    let layout = state.layout.clone();
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<serde_json::Value>> {
        let mut services = Vec::new();
        for name in layout.services()? {
            if !deployments::has_any(&layout, &name) {
                continue;
            }
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

/// Query parameters of an upload.
struct UploadOptions {
    id: Option<String>,
    activate: bool,
    require_index: bool,
    strip_components: usize,
    partial: bool,
    provenance: Provenance,
}

/// Checks an upload's query as `POST …/deployments` parses it; `Err` holds
/// the message a 400 would carry. The CLI asks before sending, so a
/// refused `--id`, `--message` or `--label` is said before the body goes.
pub fn check_upload_query(query: Option<&str>) -> Result<(), String> {
    parse_upload_query(query).map(|_| ())
}

/// Parses an upload's query (`application/x-www-form-urlencoded`, so a
/// message may carry any character, percent-encoded).
fn parse_upload_query(query: Option<&str>) -> Result<UploadOptions, String> {
    let mut options = UploadOptions {
        id: None,
        activate: true,
        require_index: true,
        strip_components: 0,
        partial: false,
        provenance: Provenance::default(),
    };
    for (key, value) in super::query::parse(query)? {
        let (key, value) = (key.as_str(), value.as_str());
        let flag = || match value {
            "true" | "1" | "" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("{key}={other}: expected true or false")),
        };
        match key {
            // `manifest` names the route `POST …/deployments/manifest`.
            "id" if store::is_valid_name(value)
                && value != store::CURRENT
                && value != RESERVED_MANIFEST =>
            {
                options.id = Some(value.to_string())
            }
            "id" => {
                return Err(format!(
                    "invalid deployment id {value:?}: use 1-64 of A-Z a-z 0-9 _ - \
                     (not \"current\" or \"manifest\")"
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
            "message" => options.provenance.message = Some(value.to_string()),
            "commit" => options.provenance.commit = Some(value.to_string()),
            "branch" => options.provenance.branch = Some(value.to_string()),
            "dirty" => options.provenance.dirty = Some(flag()?),
            "label" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("label={value}: expected label=<key>=<value>"))?;
                options
                    .provenance
                    .labels
                    .insert(k.to_string(), v.to_string());
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?} (known: id, activate, require_index, \
                     strip_components, partial, message, commit, branch, dirty, label)"
                ))
            }
        }
    }
    options.provenance.validate()?;
    Ok(options)
}

/// `POST /services/{service}/deployments`
pub async fn upload(
    state: &Arc<AdminState>,
    service: &str,
    request: Request<Incoming>,
    actor: &str,
) -> Response<Body> {
    let config = state.config.load_full();
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // What a refused upload's body is read for (bounded in time too): all
    // of what the client declared, so one that writes it all before
    // reading gets the answer, not a broken pipe.
    let rest = declared.unwrap_or(0).max(config.max_upload_bytes);
    let options = match parse_upload_query(request.uri().query()) {
        Ok(options) => options,
        Err(message) => {
            tokio::spawn(linger(request.into_body(), rest));
            return error_response(StatusCode::BAD_REQUEST, &message);
        }
    };
    let limits = Limits {
        max_upload_bytes: config.max_upload_bytes,
        max_files: config.max_files,
        require_index: options.require_index,
        strip_components: options.strip_components,
        partial: options.partial,
    };
    if declared.is_some_and(|len| len > limits.max_upload_bytes) {
        let error = workflow::Error::Ingest(IngestError::TooLarge(format!(
            "upload of {} bytes is over max_upload_bytes = {}",
            declared.unwrap_or(0),
            limits.max_upload_bytes
        )));
        state.workflow().failed(service, actor, &error);
        tokio::spawn(linger(request.into_body(), rest));
        return workflow_error(error);
    }
    // Socket → channel (async) → extractor (blocking thread, in the workflow).
    let (sender, reader) = crate::bridge::channel(CHANNEL_CHUNKS);
    let pump = tokio::spawn(pump_body(
        request.into_body(),
        sender,
        limits.max_upload_bytes,
        config.upload_idle_timeout,
    ));
    let deploy_options = DeployOptions {
        id: options.id.clone(),
        activate: options.activate,
        provenance: Provenance {
            actor: Some(actor.to_string()),
            ..options.provenance
        },
        expected_bytes: declared,
    };
    let result = state
        .workflow()
        .deploy(service, reader, deploy_options, limits)
        .await;
    // The pump ends by itself: at the body's end, or after lingering on a
    // refused one (bounded in bytes and time) so the client reads the answer.
    drop(pump);
    match result {
        Ok(done) => {
            let code = match done.outcome {
                Committed::Created => StatusCode::CREATED,
                Committed::Existing => StatusCode::OK,
            };
            let ex = &done.extracted;
            let preview =
                preview_path(state, service, &done.id, None, crate::previews::DEFAULT_TTL)
                    .map(|(path, _)| path);
            let preview_host = preview
                .as_ref()
                .and_then(|_| preview_host(state, service, &done.id));
            let preview_host_path = preview_host.as_ref().and(preview.as_deref()).map(host_path);
            json_response(
                code,
                &json!({"service": service, "id": done.id, "files": ex.files, "bytes": ex.bytes,
                        "received": ex.received, "linked": ex.linked,
                        "generated": ex.generated.len(), "active": done.active,
                        "preview": preview, "previewHost": preview_host,
                        "previewHostPath": preview_host_path,
                        "publicPort": state.public_addr.port()}),
            )
        }
        Err(error) => workflow_error(error),
    }
}

/// The answer to a failed workflow step: its status and message; a body
/// left unread (a refused upload) closes the connection instead of being drained.
pub fn workflow_error(error: workflow::Error) -> Response<Body> {
    if let workflow::Error::Store(StoreError::Other(e)) = &error {
        return internal(e);
    }
    let code = status(error.status());
    let closes = (matches!(error, workflow::Error::Ingest(_))
        && matches!(
            code,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT
        ))
        || code == StatusCode::INSUFFICIENT_STORAGE;
    if closes {
        error_and_close(code, &error.to_string())
    } else {
        error_response(code, &error.to_string())
    }
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

/// How long a refused upload's remaining body is read and discarded at
/// most (nginx's `lingering_time` is 30 s).
const LINGER_TOTAL: Duration = Duration::from_secs(30);

/// How long the lingering read waits for each further chunk (nginx's
/// `lingering_timeout` is 5 s).
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// Reads and discards what is left of a refused upload's body — at most
/// `max_bytes`, for at most [`LINGER_TOTAL`], giving up after
/// [`LINGER_IDLE`] of silence — so a client still writing can finish and
/// read the refusal (a 413 or 507) already sent, instead of failing with
/// "broken pipe" when the server closes on unread data (nginx's lingering
/// close). Only authenticated uploads reach this (a 413 by
/// `Content-Length`, a query refused, an archive refused mid-stream).
pub async fn linger(mut body: Incoming, max_bytes: u64) {
    let deadline = tokio::time::Instant::now() + LINGER_TOTAL;
    let mut read: u64 = 0;
    while read <= max_bytes {
        let wait = LINGER_IDLE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

/// Reads the request body frame by frame into the channel; stops at the
/// size limit, on a stalled client, or when the extractor has given up —
/// then lingers ([`linger`]) so the client can read the answer.
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
            drop(sender);
            return linger(body, limit).await;
        }
        if sender.send(Ok(data)).await.is_err() {
            // The extractor gave up (a refusal): let the client finish.
            return linger(body, limit).await;
        }
    }
}

/// `POST /services/{service}/activate`
pub async fn activate(
    state: &AdminState,
    service: &str,
    id: &str,
    why: workflow::Why,
    actor: &str,
) -> Response<Body> {
    activated(
        service,
        state.workflow().activate(service, id, why, actor).await,
    )
}

/// `POST /services/{service}/rollback`: to the deployment that was live before
/// the current one ([`crate::deploy::rollback_target`]).
pub async fn rollback(state: &AdminState, service: &str, actor: &str) -> Response<Body> {
    activated(service, state.workflow().rollback(service, actor).await)
}

/// `GET /services/{service}/activations[?at=<RFC 3339>]`: the activation
/// log, oldest first, or what was live at one time.
pub async fn activations(state: &AdminState, service: &str, query: Option<&str>) -> Response<Body> {
    let mut at = None;
    let pairs = match super::query::parse(query) {
        Ok(pairs) => pairs,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    for (key, value) in pairs {
        match key.as_str() {
            "at" => match super::rfc3339::parse(&value) {
                Ok(time) => at = Some(time),
                Err(e) => {
                    return error_response(StatusCode::BAD_REQUEST, &format!("at: {e}"));
                }
            },
            other => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown query parameter {other:?} (known: at)"),
                )
            }
        }
    }
    let (layout, name) = (state.layout.clone(), service.to_string());
    let result = tokio::task::spawn_blocking(move || {
        if !layout.service_dir(&name).is_dir() {
            return Ok(None);
        }
        store::activations::read(&layout, &name).map(Some)
    })
    .await;
    let log = match result {
        Ok(Ok(Some(log))) => log,
        Ok(Ok(None)) => {
            return error_response(StatusCode::NOT_FOUND, &format!("no service {service}"))
        }
        Ok(Err(e)) => return internal(&e),
        Err(e) => return internal(&anyhow::anyhow!("{e}")),
    };
    match at {
        None => json_response(
            StatusCode::OK,
            &json!({"service": service, "activations": log}),
        ),
        Some(time) => {
            let entry = store::activations::live_at(&log, time);
            json_response(
                StatusCode::OK,
                &json!({"service": service, "at": crate::store::deployments::rfc3339(time),
                        "live": entry.map(|e| e.to.clone()), "since": entry.map(|e| e.when.clone()),
                        "activation": entry}),
            )
        }
    }
}

fn activated(
    service: &str,
    result: Result<workflow::Activated, workflow::Error>,
) -> Response<Body> {
    match result {
        Ok(done) => json_response(
            StatusCode::OK,
            &json!({"service": service, "current": done.current, "previous": done.previous}),
        ),
        Err(error) => workflow_error(error),
    }
}

/// `DELETE /services/{service}/deployments/{id}`
pub async fn delete(state: &AdminState, service: &str, id: &str) -> Response<Body> {
    match state.workflow().delete(service, id).await {
        Ok(()) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(crate::serve::body::empty())
            .unwrap_or_else(|_| Response::new(crate::serve::body::empty())),
        Err(error) => workflow_error(error),
    }
}

/// `PUT|DELETE /services/{service}/deployments/{id}/pin`
pub async fn pin(
    state: &AdminState,
    service: &str,
    id: &str,
    pinned: bool,
    actor: &str,
) -> Response<Body> {
    match state.workflow().pin(service, id, pinned, actor).await {
        Ok(pinned) => json_response(
            StatusCode::OK,
            &json!({"service": service, "id": id, "pinned": pinned}),
        ),
        Err(error) => workflow_error(error),
    }
}

/// The path of a preview of `service@id` readers can open: signed (valid
/// for `ttl`) when previews are signed, plain when public, `None` when off.
/// A signature is bound to the deployment's `createdAt` (`created_at`, or
/// read from its metadata when `None`: one small file), so the link dies
/// with the deployment even if its id is reused.
pub fn preview_path(
    state: &AdminState,
    service: &str,
    id: &str,
    created_at: Option<&str>,
    ttl: Duration,
) -> Option<(String, Option<u64>)> {
    use crate::previews::Mode;
    match state.config.load().preview_mode() {
        Mode::Off => None,
        Mode::Public => Some((format!("/s/{service}@{id}/"), None)),
        Mode::Signed => {
            let created_at = match created_at {
                Some(created_at) => created_at.to_string(),
                // Gone meanwhile: a link that opens nothing, as the deployment.
                None => store::deployments::created_at(&state.layout.deployment_dir(service, id))
                    .unwrap_or_default(),
            };
            let (path, expires) = state.preview_key.signed_path(service, id, &created_at, ttl);
            Some((path, Some(expires)))
        }
    }
}

/// The host of the preview of `service@id` under host routing
/// (`<id>--<service>.<host_suffix>`, [`crate::serve::host_routing`]), when a
/// host suffix is configured, previews are on, and the pair has a
/// subdomain form; its path there is `/` plus the query of
/// [`preview_path`]'s path.
pub fn preview_host(state: &AdminState, service: &str, id: &str) -> Option<String> {
    let config = state.config.load();
    if config.preview_mode() == crate::previews::Mode::Off {
        return None;
    }
    crate::serve::host_routing::preview_host(config.host_suffix.as_deref()?, service, id)
}

/// The path of a preview on its own host: `/`, with the signature of
/// `path` (a [`preview_path`]) when it has one.
pub fn host_path(path: &str) -> String {
    match path.split_once('?') {
        Some((_, query)) => format!("/?{query}"),
        None => "/".to_string(),
    }
}

/// The answer refusing a preview link of `service@id` before its body is
/// read: 400 for an invalid id, 404 when the deployment does not exist.
pub fn preview_target_refusal(
    state: &AdminState,
    service: &str,
    id: &str,
) -> Option<Response<Body>> {
    if !store::is_valid_name(id) || id == store::CURRENT {
        return Some(error_response(
            StatusCode::BAD_REQUEST,
            &format!("invalid deployment id {id:?}"),
        ));
    }
    if !state.layout.deployment_dir(service, id).is_dir() {
        return Some(error_response(
            StatusCode::NOT_FOUND,
            &format!("service {service} has no deployment {id}"),
        ));
    }
    None
}

/// `POST /services/{service}/deployments/{id}/preview` with an optional
/// `{"ttl": "7d"}`: a preview link to hand to a reviewer.
pub async fn preview_link(
    state: &AdminState,
    service: &str,
    id: &str,
    body: &serde_json::Value,
) -> Response<Body> {
    if let Some(refusal) = preview_target_refusal(state, service, id) {
        return refusal;
    }
    if !body.is_object() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object like {\"ttl\": \"7d\"} (or empty)",
        );
    }
    let ttl = match body.get("ttl") {
        None | Some(serde_json::Value::Null) => crate::previews::DEFAULT_TTL,
        Some(serde_json::Value::String(text)) => match humantime::parse_duration(text) {
            Ok(ttl) if ttl <= crate::previews::MAX_TTL && !ttl.is_zero() => ttl,
            _ => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("ttl {text:?}: expected a duration like 7d or 12h, at most 366d"),
                )
            }
        },
        Some(_) => {
            return error_response(StatusCode::BAD_REQUEST, "ttl must be a string like \"7d\"")
        }
    };
    match preview_path(state, service, id, None, ttl) {
        None => error_response(
            StatusCode::CONFLICT,
            "previews are off (previews = \"off\")",
        ),
        Some((path, expires)) => {
            let host = preview_host(state, service, id);
            let host_path = host.as_ref().map(|_| host_path(&path));
            json_response(
                StatusCode::OK,
                &json!({"service": service, "id": id, "path": path,
                        "host": host, "hostPath": host_path,
                        "expiresAt": expires.map(|e| crate::store::deployments::rfc3339(
                            std::time::UNIX_EPOCH + Duration::from_secs(e)))}),
            )
        }
    }
}
