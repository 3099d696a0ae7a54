//! The admin API (default `127.0.0.1:9080`): uploads, flips, rollbacks,
//! history, events, metrics.
//!
//! A request flows: [`auth`] → [`handle`] (routing over the table in
//! [`routes`], which [`openapi`]'s document is tested against) → an operation
//! in [`deploy`] (which drives the store under the service lock, then
//! publishes the new index in the registry) → a JSON answer. Errors are
//! `{"error": "<what happened and what to do>"}` with the fitting status.
//! `GET /openapi.json` needs no token.

pub mod auth;
pub mod dashboard;
pub mod deploy;
pub mod events;
pub mod metrics;
pub mod openapi;
pub mod query;
mod rfc3339;
pub mod routes;
pub mod session;
pub mod tokens;
mod tokens_api;
pub mod traffic;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::config::Config;
use crate::serve::body::{self, Body};
use crate::site::Registry;
use crate::store::lock::ServiceLocks;
use crate::store::{self, Layout};

/// Everything the admin API works with.
pub struct AdminState {
    pub layout: Layout,
    pub registry: Arc<Registry>,
    pub locks: Arc<ServiceLocks>,
    pub events: events::Events,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<ArcSwap<Config>>,
    pub auth: auth::Auth,
    /// Dashboard logins.
    pub sessions: session::Sessions,
    /// Signs preview links ([`crate::previews`]).
    pub preview_key: crate::previews::Key,
    /// Webhook delivery counters ([`webhooks`]).
    pub webhook_stats: Arc<webhooks::WebhookStats>,
    /// The last hour of requests per service, for the dashboard's charts.
    pub traffic: Arc<traffic::Traffic>,
    /// Where the public listener is bound (its port is reported with an
    /// upload as `publicPort`, so `deploy` verifies through it).
    pub public_addr: SocketAddr,
}

impl AdminState {
    /// The deploy workflow over this state's parts.
    pub fn workflow(&self) -> crate::deploy::Workflow {
        crate::deploy::Workflow {
            layout: self.layout.clone(),
            registry: self.registry.clone(),
            locks: self.locks.clone(),
            events: self.events.clone(),
            metrics: self.metrics.clone(),
            config: self.config.clone(),
        }
    }
}

/// A JSON answer.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let text = value.to_string();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, text.len())
        .header(CACHE_CONTROL, "no-store")
        .body(body::full(text))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

/// `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

/// An error after which the rest of the request body is not read: the
/// connection is closed instead (an oversized upload is not drained).
pub fn error_and_close(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = error_response(status, message);
    response
        .headers_mut()
        .insert(CONNECTION, http::HeaderValue::from_static("close"));
    response
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Answers one admin request, with a log line on stderr.
pub async fn handle(
    state: Arc<AdminState>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if let Some(why) = crate::host::refusal(request.version(), request.headers(), request.uri()) {
        return error_response(StatusCode::BAD_REQUEST, why);
    }
    let mut request = request;
    // HEAD is GET without the body (RFC 9110 §9.3.2), wherever GET answers.
    if method == Method::HEAD {
        *request.method_mut() = Method::GET;
    }
    let mut response = route(&state, request, peer).await;
    if method == Method::HEAD {
        response = without_body(response);
    }
    tracing::info!(
        target: "admin",
        method = %method,
        path,
        status = response.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        peer = %peer.ip(),
        "admin request"
    );
    response
}

/// The answer to a HEAD: the GET's status and headers, no body; its
/// Content-Length is the GET body's when that size is known.
fn without_body(response: Response<Body>) -> Response<Body> {
    use hyper::body::Body as _;
    let (mut parts, body) = response.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts
            .headers
            .insert(CONTENT_LENGTH, http::HeaderValue::from(len));
    }
    Response::from_parts(parts, body::empty())
}

async fn route(
    state: &Arc<AdminState>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    // The dashboard has its own login (a session cookie, CSRF-checked
    // forms); its event stream may use that session too.
    if dashboard::is_dashboard_route(request.method(), request.uri().path()) {
        return dashboard::handle(state, request, peer).await;
    }
    // The API's description is public, like most APIs publish theirs.
    if request.uri().path() == openapi::PATH {
        if request.method() == Method::GET {
            return openapi::response();
        }
        // Public, so a wrong method is a 405 (not a 401) whoever asks.
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{} is not allowed on {} (allowed: GET, HEAD)",
                request.method(),
                openapi::PATH
            ),
        );
        response.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return response;
    }
    let browser_events = request.method() == Method::GET
        && request.uri().path() == "/events"
        && state.sessions.from_headers(request.headers()).is_some();
    let identity = if browser_events {
        Ok(tokens::Identity::admin("dashboard"))
    } else {
        state.auth.identify(request.headers(), peer.ip()).await
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(refusal) => {
            let message = match refusal {
                // A header that is not `Bearer …` sent no token we could read.
                tokens::Refusal::Missing
                    if request.headers().contains_key(http::header::AUTHORIZATION) =>
                {
                    tokens::Refusal::Unknown.message()
                }
                other => other.message(),
            };
            return json_response(StatusCode::UNAUTHORIZED, &json!({ "error": message }));
        }
    };
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = request.method().clone();
    // Validate the service segment before anything touches the disk.
    if let ["services", service, ..] = segments.as_slice() {
        if let Err(message) = store::check_service_name(service) {
            return error_response(StatusCode::BAD_REQUEST, &message);
        }
    }
    let (op, params) = match routes::resolve(method.as_str(), &segments) {
        routes::Resolved::Found(op, params) => (op, params),
        routes::Resolved::WrongMethod(allowed) => {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not allowed on {path} (allowed: {allowed})"),
            );
            if let Ok(value) = http::HeaderValue::from_str(&allowed) {
                response.headers_mut().insert(http::header::ALLOW, value);
            }
            return response;
        }
        routes::Resolved::NotFound => {
            return error_response(StatusCode::NOT_FOUND, &format!("no admin route {path}"))
        }
    };
    if let Some(needed) = required_scope(&method, &segments) {
        if let Err(message) = identity.require(&needed) {
            return error_response(StatusCode::FORBIDDEN, &message);
        }
    }
    // Who is asking: recorded as the actor of what they change.
    let actor = identity.name.clone();
    // The path's placeholders, in template order ({service}, then {id} or {name}).
    let first = params.first().copied().unwrap_or("").to_string();
    let second = params.get(1).copied().unwrap_or("").to_string();
    let (service, id, name) = (first.as_str(), second.as_str(), first.as_str());
    use routes::Op;
    match op {
        // Answered above, before authentication.
        Op::OpenApi => openapi::response(),
        Op::Health => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Op::Metrics => metrics_response(state).await,
        Op::Events => match events_after(request.uri().query()) {
            Ok(after) => Response::builder()
                .header(CONTENT_TYPE, "text/event-stream")
                .header(CACHE_CONTROL, "no-store")
                .body(state.events.subscribe(after))
                .unwrap_or_else(|_| Response::new(body::empty())),
            Err(message) => error_response(StatusCode::BAD_REQUEST, &message),
        },
        Op::ListServices => deploy::list_services(state).await,
        Op::History => deploy::history(state, service).await,
        Op::Upload => deploy::upload(state, service, request, &actor).await,
        Op::Manifest => deploy::missing_content(state, service, request).await,
        Op::DeleteDeployment => deploy::delete(state, service, id).await,
        Op::Activate => {
            let body = match small_json_body(request).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            let why = match body.get("reason") {
                None | Some(Value::Null) => crate::deploy::Why::Activate,
                Some(Value::String(reason)) if reason == "activate" => crate::deploy::Why::Activate,
                Some(Value::String(reason)) if reason == "verify-rollback" => {
                    crate::deploy::Why::VerifyRollback
                }
                Some(other) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!("reason {other}: expected \"activate\" or \"verify-rollback\""),
                    )
                }
            };
            match body.get("id").and_then(Value::as_str) {
                Some(id) => deploy::activate(state, service, id, why, &actor).await,
                None => error_response(
                    StatusCode::BAD_REQUEST,
                    "body must be JSON like {\"id\": \"<deploymentId>\"}",
                ),
            }
        }
        Op::Rollback => deploy::rollback(state, service, &actor).await,
        Op::Preview => {
            // A bad id or a missing deployment answers before the body is read.
            if let Some(refusal) = deploy::preview_target_refusal(state, service, id) {
                return refusal;
            }
            let body = match small_json_body_or_empty(request).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            deploy::preview_link(state, service, id, &body).await
        }
        Op::Pin => deploy::pin(state, service, id, true, &actor).await,
        Op::Unpin => deploy::pin(state, service, id, false, &actor).await,
        Op::ListTokens => tokens_api::list(state),
        Op::CreateToken => match small_json_body(request).await {
            Ok(body) => tokens_api::create(state, &body).await,
            Err(response) => response,
        },
        Op::RevokeToken => tokens_api::revoke(state, name).await,
        Op::Activations => deploy::activations(state, service, request.uri().query()).await,
    }
}

/// The scope a route needs (`None`: any accepted token, or no such route).
/// Changing a service's deployments needs `deploy:<service>`; reading
/// needs `read`; tokens need `admin`.
pub fn required_scope(method: &Method, segments: &[&str]) -> Option<tokens::Scope> {
    use tokens::Scope;
    match (method, segments) {
        (_, ["tokens", ..]) => Some(Scope::Admin),
        (&Method::GET, ["services", ..] | ["metrics"] | ["events"]) => Some(Scope::Read),
        (_, ["services", service, ..]) => Some(Scope::Deploy(Some(service.to_string()))),
        _ => None,
    }
}

/// Like [`small_json_body`], but an empty body (none at all, `Content-Length:
/// 0`, or only whitespace) is `{}`: for requests whose body is optional.
async fn small_json_body_or_empty(request: Request<Incoming>) -> Result<Value, Response<Body>> {
    let bytes = small_body(request).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    parse_json(&bytes).map_err(|e| *e)
}

/// A request body of at most 64 KiB; 413 (and close) above.
async fn small_body(request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let limited = http_body_util::Limited::new(request.into_body(), 64 * 1024);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(error_and_close(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over 64 KiB",
        )),
    }
}

/// `bytes` as JSON, or the 400 saying why not.
fn parse_json(bytes: &[u8]) -> Result<Value, Box<Response<Body>>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            &format!("body is not valid JSON: {e}"),
        ))
    })
}

/// Reads a small JSON body (at most 64 KiB).
async fn small_json_body(request: Request<Incoming>) -> Result<Value, Response<Body>> {
    parse_json(&small_body(request).await?).map_err(|e| *e)
}

/// `GET /events?after=<n>`: the event count the client is up to date with
/// ([`events::Events::subscribe`]). Other query parameters are ignored.
fn events_after(query: Option<&str>) -> Result<Option<u64>, String> {
    /// 2^53 - 1, as documented: what a JSON number holds exactly.
    const MAX: u64 = (1 << 53) - 1;
    let mut values = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "after")
        .map(|(_, v)| v);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("after is given more than once".to_string());
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX && value.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(format!(
            "after must be a whole number from 0 to {MAX}, not {value:?}"
        )),
    }
}

async fn metrics_response(state: &Arc<AdminState>) -> Response<Body> {
    let layout = state.layout.clone();
    let disk = tokio::task::spawn_blocking(move || {
        layout
            .services()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let bytes = store::disk_usage(&layout.service_dir(&s));
                (s, bytes)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut text = state.metrics.render(&disk);
    if !state.config.load().webhooks.is_empty() {
        text.push_str(&state.webhook_stats.render());
    }
    let root = state.layout.root().to_path_buf();
    if let Ok(Some(space)) = tokio::task::spawn_blocking(move || store::space::of(&root)).await {
        use std::fmt::Write as _;
        let _ = write!(
            text,
            "# HELP project_http_volume_free_bytes Bytes free on the volume holding the root (statvfs f_bavail).\n\
             # TYPE project_http_volume_free_bytes gauge\n\
             project_http_volume_free_bytes {}\n\
             # HELP project_http_volume_total_bytes Size of the volume holding the root (statvfs f_blocks).\n\
             # TYPE project_http_volume_total_bytes gauge\n\
             project_http_volume_total_bytes {}\n",
            space.free, space.total
        );
    }
    Response::builder()
        .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
        .header(CONTENT_LENGTH, text.len())
        .body(body::full(text))
        .unwrap_or_else(|_| Response::new(body::empty()))
}
