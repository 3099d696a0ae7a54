//! The admin API (default `127.0.0.1:9080`): uploads, flips, rollbacks,
//! history, events, metrics.
//!
//! A request flows: [`auth`] → [`handle`] (routing) → an operation in
//! [`deploy`] (which drives the store under the service lock, then publishes
//! the new index in the registry) → a JSON answer. Errors are
//! `{"error": "<what happened and what to do>"}` with the fitting status.

pub mod auth;
pub mod dashboard;
pub mod deploy;
pub mod events;
pub mod metrics;
pub mod session;

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
    let response = route(&state, request, peer).await;
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
    let browser_events = request.method() == Method::GET
        && request.uri().path() == "/events"
        && state.sessions.from_headers(request.headers()).is_some();
    if !browser_events && !state.auth.check(request.headers(), peer.ip()).await {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing or wrong admin token: send Authorization: Bearer <token>"}),
        );
    }
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = request.method().clone();
    // Validate the service segment before anything touches the disk.
    if let ["services", service, ..] = segments.as_slice() {
        if !store::is_valid_name(service) {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("invalid service name {service:?}: use 1-64 of A-Z a-z 0-9 _ -"),
            );
        }
    }
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, ["metrics"]) => metrics_response(state).await,
        (&Method::GET, ["events"]) => Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .header(CACHE_CONTROL, "no-store")
            .body(state.events.subscribe())
            .unwrap_or_else(|_| Response::new(body::empty())),
        (&Method::GET, ["services"]) => deploy::list_services(state).await,
        (&Method::GET, ["services", service, "deployments"]) => {
            deploy::history(state, service).await
        }
        (&Method::POST, ["services", service, "deployments"]) => {
            let service = service.to_string();
            deploy::upload(state, &service, request).await
        }
        (&Method::POST, ["services", service, "deployments", "manifest"]) => {
            let service = service.to_string();
            deploy::missing_content(state, &service, request).await
        }
        (&Method::DELETE, ["services", service, "deployments", id]) => {
            deploy::delete(state, service, id).await
        }
        (&Method::POST, ["services", service, "activate"]) => {
            let service = service.to_string();
            let body = match small_json_body(request).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            match body.get("id").and_then(Value::as_str) {
                Some(id) => deploy::activate(state, &service, id, "deployment.activated").await,
                None => error_response(
                    StatusCode::BAD_REQUEST,
                    "body must be JSON like {\"id\": \"<deploymentId>\"}",
                ),
            }
        }
        (&Method::POST, ["services", service, "rollback"]) => {
            deploy::rollback(state, service).await
        }
        (_, ["healthz"] | ["metrics"] | ["events"] | ["services"])
        | (_, ["services", _, "deployments" | "activate" | "rollback"])
        | (_, ["services", _, "deployments", _]) => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not allowed on {path}"),
        ),
        _ => error_response(StatusCode::NOT_FOUND, &format!("no admin route {path}")),
    }
}

/// Reads a small JSON body (at most 64 KiB).
async fn small_json_body(request: Request<Incoming>) -> Result<Value, Response<Body>> {
    let limited = http_body_util::Limited::new(request.into_body(), 64 * 1024);
    let bytes: Bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(error_and_close(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body over 64 KiB",
            ))
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        error_response(
            StatusCode::BAD_REQUEST,
            &format!("body is not valid JSON: {e}"),
        )
    })
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
    let text = state.metrics.render(&disk);
    Response::builder()
        .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
        .header(CONTENT_LENGTH, text.len())
        .body(body::full(text))
        .unwrap_or_else(|_| Response::new(body::empty()))
}
