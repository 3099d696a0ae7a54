//! The public HTTP server: `GET /s/<service>/<path>` and `GET /health`.
//!
//! A request flows: [`listener`] (connection limit, header timeout, draining)
//! → [`handle`] (method, host routing, [`path`] decoding, one registry
//! snapshot per request) → [`file`] (encoding, conditionals, ranges, body).
//! Each HTTP concern has its own module so it can be tested alone.

pub mod body;
pub mod conditional;
pub mod encoding;
pub mod file;
pub mod io;
pub mod listener;
pub mod path;
pub mod range;
pub mod workers;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use self::body::Body;
use self::file::{finish, FileAnswer};
use crate::config::Config;
use crate::site::{Cached, Deployment, Registry, Retained};

/// The parts of the configuration the public server reads per request,
/// preconverted; swapped as a whole on SIGHUP.
#[derive(Debug)]
pub struct Settings {
    pub cache_control_html: HeaderValue,
    pub cache_control_assets: HeaderValue,
    /// `.project.example.com`, lowercased, with the leading dot.
    pub host_suffix: Option<String>,
    pub spa_services: HashSet<String>,
    pub previews: bool,
    pub skew_protection: bool,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings> {
        let header = |name: &str, value: &str| {
            HeaderValue::from_str(value)
                .with_context(|| format!("{name} = {value:?} is not a valid header value"))
        };
        Ok(Settings {
            cache_control_html: header("cache_control_html", &config.cache_control_html)?,
            cache_control_assets: header("cache_control_assets", &config.cache_control_assets)?,
            host_suffix: config
                .host_suffix
                .as_ref()
                .map(|s| format!(".{}", s.to_ascii_lowercase())),
            spa_services: config
                .services
                .iter()
                .filter(|(_, s)| s.spa_fallback)
                .map(|(name, _)| name.clone())
                .collect(),
            previews: config.previews,
            skew_protection: config.skew_protection,
        })
    }
}

/// Everything a public request needs.
pub struct PublicState {
    pub registry: Arc<Registry>,
    pub settings: ArcSwap<Settings>,
    /// How files are read from disk (chosen once at startup).
    pub io: io::FileIo,
    /// Indexes of retained, non-current deployments (previews, skew).
    pub retained: Arc<Retained>,
}

/// Which deployment answered; put in the response's extensions for the access log.
#[derive(Debug, Clone)]
pub struct ServedFrom(pub Arc<Deployment>);

/// Marks a response answered from an older deployment by skew protection
/// (counted in the metrics).
#[derive(Debug, Clone, Copy)]
pub struct SkewServed;

/// `Cache-Control` of a file answered by skew protection: short, because
/// the file is only there for pages loaded before the flip.
pub const SKEW_CACHE_CONTROL: &str = "public, max-age=60";

/// Answers one public request.
pub async fn handle<B>(state: &PublicState, request: &Request<B>) -> Response<Body> {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return finish(
                Response::builder()
                    .status(StatusCode::METHOD_NOT_ALLOWED)
                    .header(ALLOW, "GET, HEAD")
                    .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                    .header(CONTENT_LENGTH, 19),
                body::full("method not allowed\n"),
            )
        }
    };
    let raw_path = request.uri().path();
    let query = request.uri().query();
    let decoded = match path::decode(raw_path) {
        Ok(decoded) => decoded,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("bad request: {e}")),
    };
    if decoded.segments.len() == 1 && decoded.segments[0] == "health" && !decoded.trailing_slash {
        return text_response(StatusCode::OK, "ok", head);
    }
    let settings = state.settings.load();
    let site = SiteRequest {
        state,
        settings: &settings,
        headers: request.headers(),
        raw_path,
        query,
        head,
        trailing_slash: decoded.trailing_slash,
    };
    if let Some(service) = host_service(&settings, request.headers()) {
        if !crate::store::is_valid_name(&service) {
            return plain(
                StatusCode::BAD_REQUEST,
                "bad request: invalid service name in Host",
            );
        }
        return site.answer(&service, &decoded.segments).await;
    }
    match decoded.segments.as_slice() {
        [s, target, rest @ ..] if s == "s" && target.contains('@') => {
            let Some((service, id)) = target.split_once('@') else {
                return plain(StatusCode::NOT_FOUND, "not found");
            };
            if !settings.previews {
                return plain(StatusCode::NOT_FOUND, "not found: previews are disabled");
            }
            if !crate::store::is_valid_name(service) || !crate::store::is_valid_name(id) {
                return plain(StatusCode::BAD_REQUEST, "bad request: invalid preview name");
            }
            if rest.is_empty() && !decoded.trailing_slash {
                return redirect(&format!("{raw_path}/"), query);
            }
            site.preview(service, id, rest).await
        }
        [s, service, rest @ ..] if s == "s" => {
            if !crate::store::is_valid_name(service) {
                return plain(StatusCode::BAD_REQUEST, "bad request: invalid service name");
            }
            if rest.is_empty() && !decoded.trailing_slash {
                return redirect(&format!("{raw_path}/"), query);
            }
            site.answer(service, rest).await
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `Host: <service><host_suffix>` → `<service>`, when host routing is on.
fn host_service(settings: &Settings, headers: &HeaderMap) -> Option<String> {
    let suffix = settings.host_suffix.as_deref()?;
    let host = headers.get(HOST)?.to_str().ok()?;
    let host = crate::host::without_port(host)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let service = host.strip_suffix(suffix)?;
    (!service.is_empty()).then(|| service.to_string())
}

/// One request for a file of a service.
struct SiteRequest<'a> {
    state: &'a PublicState,
    settings: &'a Settings,
    headers: &'a HeaderMap,
    raw_path: &'a str,
    query: Option<&'a str>,
    head: bool,
    trailing_slash: bool,
}

impl SiteRequest<'_> {
    async fn answer(&self, service: &str, rel: &[String]) -> Response<Body> {
        // The one snapshot this request is answered from, even if a flip
        // happens while the body is being sent.
        let Some(deployment) = self.state.registry.get(service) else {
            return plain(StatusCode::NOT_FOUND, "not found: no such service");
        };
        let mut response = self.answer_from(&deployment, service, rel, true).await;
        if response.extensions().get::<ServedFrom>().is_none() {
            response.extensions_mut().insert(ServedFrom(deployment));
        }
        response
    }

    /// `/s/<service>@<id>/…`: any retained deployment, read-only, never
    /// cached, never indexed by search engines.
    async fn preview(&self, service: &str, id: &str, rel: &[String]) -> Response<Body> {
        let (retained, registry) = (self.state.retained.clone(), self.state.registry.clone());
        let (owned_service, owned_id) = (service.to_string(), id.to_string());
        let found =
            tokio::task::spawn_blocking(move || retained.get(&registry, &owned_service, &owned_id))
                .await
                .ok()
                .flatten();
        let mut response = match &found {
            Some(deployment) => self.answer_from(deployment, service, rel, false).await,
            None => plain(StatusCode::NOT_FOUND, "not found: no such deployment"),
        };
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
        if let Some(deployment) = found {
            response.extensions_mut().insert(ServedFrom(deployment));
        }
        response
    }

    /// Skew protection: the newest retained deployment other than the
    /// current one that has `path` as a non-HTML file.
    async fn skewed(&self, service: &str, current_id: &str, path: &str) -> Option<Response<Body>> {
        let older = match self
            .state
            .retained
            .newest_with_cached(service, current_id, path)
        {
            Cached::Known(older) => older?,
            Cached::Unknown => {
                let (retained, registry) =
                    (self.state.retained.clone(), self.state.registry.clone());
                let (service, current_id, owned_path) = (
                    service.to_string(),
                    current_id.to_string(),
                    path.to_string(),
                );
                tokio::task::spawn_blocking(move || {
                    retained.newest_with(&registry, &service, &current_id, &owned_path)
                })
                .await
                .ok()
                .flatten()?
            }
        };
        let entry = older.file(path)?;
        if entry.is_html {
            return None;
        }
        let cache_control = HeaderValue::from_static(SKEW_CACHE_CONTROL);
        let mut response = self.file_with(&older, entry, &cache_control).await;
        response.extensions_mut().insert(SkewServed);
        response.extensions_mut().insert(ServedFrom(older.clone()));
        Some(response)
    }

    async fn answer_from(
        &self,
        deployment: &Deployment,
        service: &str,
        rel: &[String],
        current: bool,
    ) -> Response<Body> {
        if rel.iter().any(|s| s.starts_with('.')) {
            return self.not_found(deployment).await;
        }
        let joined = rel.join("/");
        if self.trailing_slash || joined.is_empty() {
            let index = if joined.is_empty() {
                "index.html".to_string()
            } else {
                format!("{joined}/index.html")
            };
            return match deployment.file(&index) {
                Some(entry) => self.file(deployment, entry).await,
                None => self.not_found(deployment).await,
            };
        }
        if let Some(entry) = deployment.file(&joined) {
            return self.file(deployment, entry).await;
        }
        if deployment.is_dir(&joined) {
            return redirect(&format!("{}/", self.raw_path), self.query);
        }
        let looks_like_asset = rel.last().is_some_and(|name| name.contains('.'));
        if !looks_like_asset && self.settings.spa_services.contains(service) {
            if let Some(entry) = deployment.file("index.html") {
                return self.file(deployment, entry).await;
            }
        }
        if current && looks_like_asset && self.settings.skew_protection {
            if let Some(response) = self.skewed(service, &deployment.id, &joined).await {
                return response;
            }
        }
        self.not_found(deployment).await
    }

    async fn file(
        &self,
        deployment: &Deployment,
        entry: &crate::site::index::FileEntry,
    ) -> Response<Body> {
        let cache_control = if entry.is_html {
            &self.settings.cache_control_html
        } else {
            &self.settings.cache_control_assets
        };
        self.file_with(deployment, entry, cache_control).await
    }

    async fn file_with(
        &self,
        deployment: &Deployment,
        entry: &crate::site::index::FileEntry,
        cache_control: &HeaderValue,
    ) -> Response<Body> {
        FileAnswer {
            entry,
            request_headers: self.headers,
            head: self.head,
            cache_control,
            error_status: None,
            memory: &deployment.memory,
            io: &self.state.io,
        }
        .respond()
        .await
    }

    /// 404, with the deployment's own `404.html` as the body when it has one.
    async fn not_found(&self, deployment: &Deployment) -> Response<Body> {
        match deployment.file("404.html") {
            Some(entry) => {
                FileAnswer {
                    entry,
                    request_headers: self.headers,
                    head: self.head,
                    cache_control: &self.settings.cache_control_html,
                    error_status: Some(StatusCode::NOT_FOUND),
                    memory: &deployment.memory,
                    io: &self.state.io,
                }
                .respond()
                .await
            }
            None => text_response(StatusCode::NOT_FOUND, "not found\n", self.head),
        }
    }
}

/// 301 to `location`, keeping the query string.
fn redirect(location: &str, query: Option<&str>) -> Response<Body> {
    let target = match query {
        Some(q) => format!("{location}?{q}"),
        None => location.to_string(),
    };
    finish(
        Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(LOCATION, target)
            .header(CONTENT_LENGTH, 0),
        body::empty(),
    )
}

/// A short `text/plain` answer (errors, health).
pub fn plain(status: StatusCode, message: &str) -> Response<Body> {
    text_response(status, &format!("{}\n", message.trim_end()), false)
}

fn text_response(status: StatusCode, text: &str, head: bool) -> Response<Body> {
    let builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CONTENT_LENGTH, text.len())
        .header(CACHE_CONTROL, "no-cache")
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff");
    let body = if head {
        body::empty()
    } else {
        body::full(text.to_string())
    };
    finish(builder, body)
}

/// Writes the access-log line of a finished request (target `access`,
/// stdout); returns the status and body bytes it logged.
pub fn log_access(
    method: &Method,
    path: &str,
    response: &Response<Body>,
    started: Instant,
) -> (u16, u64) {
    let status = response.status().as_u16();
    let bytes: u64 = if *method == Method::HEAD {
        0
    } else {
        response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let duration_us = started.elapsed().as_micros() as u64;
    let (service, deployment) = match response.extensions().get::<ServedFrom>() {
        Some(ServedFrom(d)) => (d.service.as_str(), d.id.as_str()),
        None => ("-", "-"),
    };
    tracing::info!(target: "access", method = %method, path, status, bytes, duration_us, service, deployment);
    (status, bytes)
}
